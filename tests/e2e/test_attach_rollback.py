"""An attach the forwarder refuses is undone everywhere, and never blocks other ports.

Real `vpe agent` and forwarder processes in a network namespace: attaching a
port whose interface does not exist is answered 422 naming the field, leaves
no port in the agent, its store or the forwarder; a good port attached right
after is programmed normally (one bad port does not poison the FIB channel).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vpe.dataplane.channel import FibClient

pytestmark = pytest.mark.e2e


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=15)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to build a namespace")
    ns = "rb" + uuid.uuid4().hex[:6]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0p")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "198.18.25.1/24", "dev", "ul0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "ul0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "add", "vm-good", "type", "veth", "peer", "name", "vm-peer")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "vm-good", "up")
        with open(tmp_path / "fw.log", "wb") as log:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "vpe.dataplane.process",
                 "--underlay-if", "ul0", "--underlay-ip", "198.18.25.1", "--socket", str(tmp_path / "fw.sock")],
                stdout=log, stderr=subprocess.STDOUT))
        (tmp_path / "agent.toml").write_text(f"""
state_dir = "{tmp_path}/state"
[bgp]
local_as = 65000
router_id = "198.18.25.1"
[[vrfs]]
name = "red"
route_targets = ["65000:25"]
[dataplane]
driver = "userspace"
underlay_address = "198.18.25.1"
fib_socket = "{tmp_path}/fw.sock"
[api]
socket = "{tmp_path}/api.sock"
""")
        with open(tmp_path / "agent.log", "wb") as log:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "vpe.cli.main", "agent",
                 "-c", str(tmp_path / "agent.toml")], stdout=log, stderr=subprocess.STDOUT))
        yield tmp_path
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(5)
        sh("ip", "netns", "del", ns, check=False)


def test_refused_port_is_rolled_back_and_does_not_block_others(host: Path) -> None:
    api = httpx.Client(transport=httpx.HTTPTransport(uds=str(host / "api.sock")), timeout=10)
    end = time.monotonic() + 20
    while True:
        try:
            if api.get("http://vpe/v1/fib").json().get("connected"):
                break
        except (httpx.HTTPError, OSError):
            pass
        assert time.monotonic() < end, "agent never connected to its forwarder"
        time.sleep(0.2)
    port = {"vpn": "red", "mac": "02:00:00:00:25:0a", "ips": ["192.0.2.25/24"], "gateways": ["192.0.2.1"]}
    r = api.post("http://vpe/v1/ports", json={"name": "bad", "ifname": "vm-nosuch", **port})
    assert r.status_code == 422 and "ifname" in r.text and "vm-nosuch" in r.text, r.text
    assert api.get("http://vpe/v1/ports").json() == []
    assert "192.0.2.25/32" not in api.get("http://vpe/v1/vpns/red").json()["table"]
    r = api.post("http://vpe/v1/ports", json={"name": "good", "ifname": "vm-good", **port})
    assert r.status_code == 201, r.text
    with FibClient.connect(str(host / "fw.sock"), 5.0) as c:
        st = c.state()
    assert [p.name for p in st.ports] == ["good"]
    assert "192.0.2.25/32" in {str(x.prefix) for x in st.routes}
    fib = api.get("http://vpe/v1/fib").json()
    assert fib["connected"] and not fib["failed_ports"]
