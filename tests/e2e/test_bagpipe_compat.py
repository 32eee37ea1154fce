"""E2E: networking-bagpipe's real ``bagpipe-rest-attach`` drives a vpe host.

The two-host lab (``src/vpe/lab/examples/two-hosts.yaml``, own prefix) with
h1's agent serving the bagpipe-bgp compatibility listener
(``[bagpipe_compat] enabled = true``, 127.0.0.1:8082 in h1's namespace).
The real client, from PyPI ``networking-bagpipe`` in a virtualenv of its own
(``make bagpipe-client``; ``VPE_BAGPIPE_VENV`` points elsewhere), is run in
h1's namespace exactly as on a bagpipe-bgp host:

* ``bagpipe-rest-attach --attach --port netns`` creates a namespace and a
  veth into it and attaches the host side to a new VPN instance with the
  blue VPN's route target: the namespace then reaches blue2 on h2 (and blue2
  reaches it);
* ``bagpipe-looking-glass vpns instances`` lists the instance;
* ``--detach`` removes the port and the instance it created; the address is
  unreachable again;
* ``--readv-from-rt``/``--readv-to-rt`` (bagpipe's service chaining) make the
  instance re-advertise blue's routes via the port, as h2 sees over BGP;
* ``GET /ping`` answers another number after the agent is restarted.

The test creates the client's namespace itself (the client's own ``ip
netns add``, run inside ``ip netns exec``'s private mount namespace, would
vanish with it). The client reads bagpipe-bgp's ``/etc/bagpipe-bgp/bgp.conf`` (its API port)
and fails without it: the test writes one when there is none and removes it
afterwards. It runs its ``ip`` commands through ``root_helper`` (sudo by
default); the test is root and sets it to ``env`` (``OS_COMMON__ROOT_HELPER``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from e2e_lab import E2E, RunningLab, new_prefix

from vpe.lab import build, runner
from vpe.lab.layout import Lab
from vpe.lab.processes import default_host_processes
from vpe.lab.topology import HostConfig, load_topology

ROOT = Path(__file__).resolve().parents[2]
TWO_HOSTS = ROOT / "src" / "vpe" / "lab" / "examples" / "two-hosts.yaml"
VENV = Path(os.environ.get("VPE_BAGPIPE_VENV") or ROOT / ".bagpipe-venv")
REST_ATTACH = VENV / "bin" / "bagpipe-rest-attach"
LOOKING_GLASS = VENV / "bin" / "bagpipe-looking-glass"
BGP_CONF = Path("/etc/bagpipe-bgp/bgp.conf")

pytestmark = [
    *E2E,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (iputils-ping)"),
    pytest.mark.skipif(
        not REST_ATTACH.exists(),
        reason=f"networking-bagpipe's client is not installed in {VENV}: `make bagpipe-client` installs "
               "it from PyPI (needs the network; set VPE_BAGPIPE_VENV to use another virtualenv)"),
]

#: the endpoint the client plugs: an address of blue's subnet no lab VM uses
PORT_IP = "192.0.2.31"
BLUE2 = "192.0.2.12"


def with_compat(lab: Lab, host: HostConfig) -> list[runner.ProcessSpec]:
    """The lab's processes, h1's agent with the bagpipe-bgp compatibility listener."""
    specs = default_host_processes(lab, host)
    if host.name != "h1":
        return specs
    return [replace(s, config=(s.config or "") + '\n[bagpipe_compat]\nenabled = true\nlisten = "127.0.0.1:8082"\n')
            if s.name == "agent" else s for s in specs]


@pytest.fixture(scope="module")
def bgp_conf() -> Iterator[None]:
    """bagpipe-bgp's configuration file, which the client insists on reading."""
    made_dir = not BGP_CONF.parent.exists()
    made = not BGP_CONF.exists()
    if made:
        BGP_CONF.parent.mkdir(parents=True, exist_ok=True)
        BGP_CONF.write_text("# written by vpe's e2e test for bagpipe-rest-attach; removed after it\n"
                            "[API]\nport = 8082\n")
    try:
        yield
    finally:
        if made:
            BGP_CONF.unlink(missing_ok=True)
        if made_dir:
            shutil.rmtree(BGP_CONF.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(bgp_conf: None) -> Iterator[RunningLab]:
    env_keep = os.environ.pop("VPE_LAB_FORWARDER", None)
    prefix = new_prefix("bp")
    running = RunningLab(build.make_lab(load_topology(TWO_HOSTS), prefix), prefix)
    try:
        build.up(running.lab, processes=with_compat)
        running.wait_converged()
        yield running
    finally:
        if env_keep is not None:
            os.environ["VPE_LAB_FORWARDER"] = env_keep
        running.teardown()


def client(lab: RunningLab, tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A networking-bagpipe tool run in h1's namespace, as on a bagpipe-bgp host."""
    env = dict(os.environ, OS_COMMON__ROOT_HELPER="env", NO_PROXY="127.0.0.1")
    return subprocess.run(["ip", "netns", "exec", lab.ns("h1"), str(tool), *args], capture_output=True,
                          text=True, timeout=60, env=env)


def ping_from(lab: RunningLab, ns: str, dst: str, tries: int) -> bool:
    for _ in range(tries):
        r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst],
                           capture_output=True, timeout=5)
        if r.returncode == 0:
            return True
        time.sleep(0.3)
    return False


def compat_get(lab: RunningLab, path: str) -> Any:
    code = ("import json, sys, urllib.request; "
            "print(urllib.request.urlopen('http://127.0.0.1:8082' + sys.argv[1], timeout=5).read().decode())")
    r = lab.run("h1", "python3", "-c", code, path, check=True)
    return json.loads(r.stdout)


def wait_ping_answers(lab: RunningLab, timeout: float) -> int:
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        try:
            return int(compat_get(lab, "/ping"))
        except AssertionError as e:
            last = str(e)
            time.sleep(0.2)
    raise AssertionError(f"/ping did not answer within {timeout} s: {last}")


def test_rest_attach_netns_port_reaches_remote_vm_then_detach(lab: RunningLab) -> None:
    ns = f"{lab.prefix}-bp1"  # removed with the lab's namespaces (prefix-...)
    # made here, not by the client: its own `ip netns add` would run inside `ip netns exec`'s
    # private mount namespace, and the namespace (with the veth) would die with the client
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    lab.extra_namespaces.append(ns)
    linuxif = ("ns-" + ns)[:15]
    common = ["--port", "netns", "--netns", ns, "--network-type", "ipvpn", "--vpn-instance-id", "bagpipe1",
              "--rt", "65000:100", "--ip", f"{PORT_IP}/24", "--gateway-ip", "192.0.2.1"]
    t0 = time.monotonic()
    r = client(lab, REST_ATTACH, "--attach", *common)
    assert r.returncode == 0 and "response: 200" in r.stdout, r.stdout + r.stderr
    t_attach = time.monotonic() - t0

    port = lab.api("h1", f"/v1/ports/{linuxif}")
    assert port["vrf"] == "bagpipe1" and port["ips"] == [f"{PORT_IP}/24"] and port["ifname"] == linuxif
    assert lab.api("h1", "/v1/vpns/bagpipe1")["import_rts"] == ["target:65000:100"]
    assert ping_from(lab, ns, BLUE2, tries=40), "the bagpipe-attached namespace does not reach blue2 on h2"
    print(f"\nbagpipe-rest-attach --attach (netns, veth, attach_localport): {t_attach * 1000:.0f} ms; "
          f"the namespace reached blue2 {(time.monotonic() - t0) * 1000:.0f} ms after the attach began")
    assert ping_from(lab, lab.ns("blue2"), PORT_IP, tries=10), "blue2 does not reach the namespace"

    lg = client(lab, LOOKING_GLASS, "vpns", "instances")
    assert lg.returncode == 0 and "bagpipe1" in lg.stdout, lg.stdout + lg.stderr
    lg = client(lab, LOOKING_GLASS, "vpns", "instances", "bagpipe1", "ports")
    assert lg.returncode == 0 and PORT_IP in lg.stdout, lg.stdout + lg.stderr

    r = client(lab, REST_ATTACH, "--detach", *common)
    assert r.returncode == 0 and "response: 200" in r.stdout, r.stdout + r.stderr
    assert linuxif not in [p["name"] for p in lab.api("h1", "/v1/ports")]
    assert "bagpipe1" not in [v["name"] for v in lab.api("h1", "/v1/vpns")]
    time.sleep(1.0)  # the withdrawal reaches h2
    assert not ping_from(lab, lab.ns("blue2"), PORT_IP, tries=2), "the detached port is still reachable"

    # what vpe cannot honour: refused, naming the field, nothing changed
    r = client(lab, REST_ATTACH, "--attach", *common[:-4], "--ip", f"{PORT_IP}/24", "--vni", "5000")
    assert r.returncode != 0 and "vni: " in r.stdout, r.stdout + r.stderr
    assert linuxif not in [p["name"] for p in lab.api("h1", "/v1/ports")]


def test_rest_attach_readvertise_reaches_the_other_host(lab: RunningLab) -> None:
    """--readv-from-rt/--readv-to-rt: blue's routes (65000:100) re-advertised by h1 via the
    attached port with the instance's RT 65000:200, as h2 receives them over BGP."""
    ns = f"{lab.prefix}-bp2"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    lab.extra_namespaces.append(ns)
    common = ["--port", "netns", "--netns", ns, "--network-type", "ipvpn", "--vpn-instance-id", "svc1",
              "--rt", "65000:200", "--readv-from-rt", "65000:100", "--readv-to-rt", "65000:200",
              "--ip", "198.51.100.10/24", "--gateway-ip", "198.51.100.1"]
    r = client(lab, REST_ATTACH, "--attach", *common)
    assert r.returncode == 0 and "response: 200" in r.stdout, r.stdout + r.stderr
    assert lab.api("h1", "/v1/vpns/svc1")["service"]["address"] == "198.51.100.10"

    def readvertised() -> set[str]:
        routes = lab.api("h2", "/v1/bgp/routes?family=vpnv4&peer=198.18.0.11")["routes"]
        return {x["prefix"] for x in routes if "target:65000:200" in json.dumps(x)
                and "target:65000:100" not in json.dumps(x)}

    end = time.monotonic() + 15
    while time.monotonic() < end and not {"192.0.2.11/32", "192.0.2.12/32"} <= readvertised():
        time.sleep(0.3)
    assert {"192.0.2.11/32", "192.0.2.12/32"} <= readvertised(), readvertised()
    r = client(lab, REST_ATTACH, "--detach", *common)
    assert r.returncode == 0 and "response: 200" in r.stdout, r.stdout + r.stderr
    end = time.monotonic() + 15
    while time.monotonic() < end and readvertised():
        time.sleep(0.3)
    assert not readvertised() and "svc1" not in [v["name"] for v in lab.api("h1", "/v1/vpns")]


def test_ping_changes_when_the_agent_restarts(lab: RunningLab) -> None:
    before = wait_ping_answers(lab, 10)
    assert wait_ping_answers(lab, 10) == before
    h1 = lab.lab.node_dir("h1")
    pid = int((h1 / "agent.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while runner.pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert not runner.pid_alive(pid), "h1's agent did not stop on SIGTERM"
    host = next(h for h in lab.topology.hosts if h.name == "h1")
    spec = next(s for s in with_compat(lab.lab, host) if s.name == "agent")
    assert runner.start(lab.ns("h1"), spec, h1).alive
    after = wait_ping_answers(lab, 20)
    assert after != before
    lab.wait_converged()
