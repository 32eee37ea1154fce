"""R2.4: the control plane is decoupled from forwarding and runs as an ordinary application elsewhere.

A `vpe agent` runs in namespace "cp" (a plain process, no forwarder there);
the forwarder runs in namespace "fw", another host on the underlay. The agent
programs the forwarder over the FIB channel's TCP transport across the
underlay. Proof that forwarding follows the remote control plane: a VM behind
"fw" gets its gateway's ARP answered by the forwarder (only after the remote
agent attached its port), the forwarder's own state lists the port and the
VRF route the agent exported, and after the agent is killed the forwarder
keeps that state (it forwards without its control plane).
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

ROOT = os.geteuid() == 0
FIB_PORT = 7710


def sh(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def nsx(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def _until(pred, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, object]]:
    if not ROOT or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to build namespaces")
    pre = "r24" + uuid.uuid4().hex[:5]
    cp, fw, vm = f"{pre}cp", f"{pre}fw", f"{pre}vm"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (cp, fw, vm):
            sh("ip", "netns", "add", ns)
            nsx(ns, "ip", "link", "set", "lo", "up")
        # underlay between the control-plane host and the forwarding host
        sh("ip", "link", "add", "ul0", "netns", cp, "type", "veth", "peer", "name", "ul0", "netns", fw)
        nsx(cp, "ip", "addr", "add", "198.18.24.1/24", "dev", "ul0")
        nsx(fw, "ip", "addr", "add", "198.18.24.2/24", "dev", "ul0")
        nsx(cp, "ip", "link", "set", "ul0", "up")
        nsx(fw, "ip", "link", "set", "ul0", "up")
        # a VM behind the forwarding host
        sh("ip", "link", "add", "vm-a", "netns", fw, "type", "veth", "peer", "name", "eth0", "netns", vm)
        nsx(fw, "ip", "link", "set", "vm-a", "up")
        nsx(vm, "ip", "link", "set", "eth0", "address", "02:00:00:00:24:0a", "up")
        nsx(vm, "ip", "addr", "add", "192.0.2.10/24", "dev", "eth0")
        # the FIB channel over TCP is authenticated: one key, both ends (issue 13)
        key = tmp_path / "fib.key"
        key.write_text("r2-4-" + uuid.uuid4().hex + "\n")
        key.chmod(0o600)
        with open(tmp_path / "fw.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", fw, sys.executable, "-m", "vpe.dataplane.process",
                     "--underlay-if", "ul0", "--underlay-ip", "198.18.24.2",
                     "--socket", str(tmp_path / "fw.sock"), "--listen-tcp", f"198.18.24.2:{FIB_PORT}",
                     "--key-file", str(key)],
                    stdout=log, stderr=subprocess.STDOUT,
                )
            )
        cfg = tmp_path / "agent.toml"
        cfg.write_text(
            f"""
state_dir = "{tmp_path}/state"

[bgp]
local_as = 65000
router_id = "198.18.24.1"

[[vrfs]]
name = "red"
route_targets = ["65000:24"]
routes = [{{prefix = "203.0.113.0/24", kind = "aggregate"}}]

[dataplane]
driver = "userspace"
underlay_address = "198.18.24.2"
fib_socket = "tcp:198.18.24.2:{FIB_PORT}"
fib_key_file = "{key}"

[api]
socket = "{tmp_path}/api.sock"
"""
        )
        with open(tmp_path / "agent.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", cp, sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg)],
                    stdout=log, stderr=subprocess.STDOUT,
                )
            )
        yield {"cp": cp, "fw": fw, "vm": vm, "tmp": tmp_path, "agent": procs[-1], "fwsock": tmp_path / "fw.sock",
               "key": key.read_text().strip().encode()}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(5)
        for ns in (cp, fw, vm):
            sh("ip", "netns", "del", ns, check=False)


def test_r2_4_agent_on_another_host_programs_the_forwarder(world: dict[str, object]) -> None:
    tmp = world["tmp"]
    api = str(tmp / "api.sock")  # type: ignore[operator]
    _until(lambda: Path(api).exists(), what="agent API socket")

    def fib() -> dict[str, object]:
        with httpx.Client(transport=httpx.HTTPTransport(uds=api), timeout=5) as c:
            return c.get("http://vpe/v1/fib").json()  # type: ignore[no-any-return]

    _until(lambda: fib().get("connected") is True, what="agent connected to the remote forwarder over TCP")
    with httpx.Client(transport=httpx.HTTPTransport(uds=api), timeout=10) as c:
        r = c.post("http://vpe/v1/ports", json={
            "name": "a", "ifname": "vm-a", "vpn": "red", "mac": "02:00:00:00:24:0a",
            "ips": ["192.0.2.10/24"], "gateways": ["192.0.2.1"],
        })
        assert r.status_code == 201, r.text

    # the forwarder, on the other host, now holds what the remote agent programmed
    def fw_state() -> object:
        key: bytes = world["key"]  # type: ignore[assignment]
        with FibClient.connect(str(world["fwsock"]), 5.0, key=key) as c:
            return c.state()

    _until(lambda: any(p.name == "a" for p in fw_state().ports), what="port programmed")  # type: ignore[attr-defined]
    st = fw_state()
    assert {str(r.prefix) for r in st.routes} >= {"192.0.2.10/32"}  # type: ignore[attr-defined]
    assert any(e.kind == "vrf" and e.target == "red" for e in st.labels)  # type: ignore[attr-defined]
    # ... and forwards by it: the VM's gateway is answered by the forwarder (proxy ARP)
    nsx(str(world["vm"]), "ping", "-c", "1", "-W", "1", "192.0.2.1", check=False)
    neigh = nsx(str(world["vm"]), "ip", "neigh", "show", "192.0.2.1").stdout
    assert "02:00:5e:00:00:01" in neigh.lower(), neigh

    # the control plane goes away: the forwarder keeps its state
    agent = world["agent"]
    agent.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    agent.wait(5)  # type: ignore[attr-defined]
    time.sleep(0.5)
    st2 = fw_state()
    assert [p.name for p in st2.ports] == ["a"]  # type: ignore[attr-defined]
    assert {str(r.prefix) for r in st2.routes} == {str(r.prefix) for r in st.routes}  # type: ignore[attr-defined]
