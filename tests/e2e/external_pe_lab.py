"""The external-PE world of R2.2 / R2.3 (docs/external-pe.md), in namespaces.

::

    vm1 --v1--+ br101 -- vx101 -+                                        +-- vm-2 -- vm2
    vm3 --v3--+ br102 -- vx102 -+- up0 == sw (br0) == ac0 -- tor ==ul0== ul0 -- h2
              h1 (no forwarder)       a plain switch           external PE    internal vPE

``h1`` is a host without a forwarder: each VM is bridged onto one VXLAN
segment (VNI 101, 102) toward its PE's address; ``sw`` is a Linux bridge
between them (it sees UDP between h1 and tor, and two MAC addresses);
``tor`` runs vpe (agent + forwarder), serving those segments as the VMs'
attachment circuits once h1 signals them (``POST /v1/endpoints`` to the
PE's address, with a bearer token). This kernel has no 802.1Q devices, so
the circuits are VXLAN ones; VLAN circuits are the same code path with
``vlan`` instead of ``vni`` (docs/external-pe.md). ``h2``
is an internal vPE with its own VM. tor and h2 peer over iBGP (VPNv4) on
their underlay link. Everything is removed on exit, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TOKEN = "r2-2-" + uuid.uuid4().hex
API_PORT = 8082
MGMT = {"h1": "198.18.26.21", "tor": "198.18.26.1"}
UNDERLAY = {"tor": "198.18.27.1", "h2": "198.18.27.2"}
VMS = {"vm1": ("192.0.2.21", "02:00:00:00:26:01"), "vm2": ("192.0.2.22", "02:00:00:00:26:02"),
       "vm3": ("192.0.2.23", "02:00:00:00:26:03")}
VNIS = {"vm1": 101, "vm3": 102}


def sh(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def until(pred: Any, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (OSError, httpx.HTTPError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


class World:
    def __init__(self, tmp: Path, driver: str = "userspace") -> None:
        self.tmp = tmp
        self.driver = driver
        self.pre = "x22" + uuid.uuid4().hex[:5]
        self.ns = {n: f"{self.pre}{n}" for n in ("h1", "sw", "tor", "h2", "vm1", "vm2", "vm3")}
        self.procs: list[subprocess.Popen[bytes]] = []
        #: node -> its agent process
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def x(self, node: str, *args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns[node], *args, check=check, timeout=timeout)

    def veth(self, a: str, an: str, b: str, bn: str) -> None:
        sh("ip", "link", "add", an, "netns", self.ns[a], "type", "veth", "peer", "name", bn, "netns", self.ns[b])
        self.x(a, "ip", "link", "set", an, "up")
        self.x(b, "ip", "link", "set", bn, "up")

    def api(self, node: str) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.tmp / node / "api.sock")),
                            base_url="http://vpe", timeout=10)

    def get(self, node: str, path: str) -> Any:
        with self.api(node) as c:
            return c.get(path).json()

    def signal(self, body: dict[str, Any]) -> tuple[int, Any]:
        """h1 tells its external PE about an endpoint, from h1's own namespace, over TCP."""
        code = ("import httpx, json, sys\n"
                f"r = httpx.post('http://{MGMT['tor']}:{API_PORT}/v1/endpoints', json=json.loads(sys.argv[1]),"
                f" headers={{'Authorization': 'Bearer {TOKEN}'}}, timeout=10)\n"
                "print(r.status_code); print(r.text)")
        r = self.x("h1", sys.executable, "-c", code, json.dumps(body))
        status, text = r.stdout.split("\n", 1)
        return int(status), json.loads(text) if text.strip() else None

    def withdraw(self, name: str) -> int:
        code = ("import httpx\n"
                f"r = httpx.delete('http://{MGMT['tor']}:{API_PORT}/v1/endpoints/{name}',"
                f" headers={{'Authorization': 'Bearer {TOKEN}'}}, timeout=10)\nprint(r.status_code)")
        return int(self.x("h1", sys.executable, "-c", code).stdout.strip())

    def ping(self, vm: str, dst: str, count: int = 2) -> subprocess.CompletedProcess[str]:
        return self.x(vm, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", dst, check=False)

    def start_vpe(self, node: str, neighbor: str, passive: bool, extra_api: str = "") -> None:
        d = self.tmp / node
        d.mkdir()
        me = UNDERLAY[node]
        with open(d / "fw.log", "wb") as log:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.ns[node], sys.executable, "-m", "vpe.dataplane.process",
                 "--driver", self.driver, "--underlay-if", "ul0", "--underlay-ip", me, "--socket", str(d / "fib.sock")],
                stdout=log, stderr=subprocess.STDOUT))
        (d / "agent.toml").write_text(f"""
state_dir = "{d}/state"
[bgp]
local_as = 65000
router_id = "{me}"
listen = ["{me}"]
[api]
socket = "{d}/api.sock"
{extra_api}
[dataplane]
driver = "{self.driver}"
underlay_address = "{me}"
fib_socket = "{d}/fib.sock"
[[neighbors]]
address = "{neighbor}"
remote_as = 65000
local_address = "{me}"
families = ["vpnv4"]
passive = {'true' if passive else 'false'}
connect_retry = 1.0
[[vrfs]]
name = "red"
route_targets = ["65000:26"]
""")
        self._start_agent(node, "wb")

    def _start_agent(self, node: str, mode: str) -> None:
        d = self.tmp / node
        with open(d / "agent.log", mode) as log:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[node], sys.executable, "-m", "vpe.cli.main", "agent", "-c",
                 str(d / "agent.toml")], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.agents[node] = p

    def restart_agent(self, node: str, while_down: Any = None) -> None:
        """Stop ``node``'s agent (its forwarder keeps running), call ``while_down()``, start
        the agent again on the same state directory; back when it has its forwarder."""
        p = self.agents[node]
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if while_down is not None:
            while_down()
        self._start_agent(node, "ab")
        until(lambda: self.get(node, "/v1/fib").get("connected") is True, what=f"{node}'s agent up again")

    def build(self) -> None:
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
            sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
        # the switch between h1 and its external PE: a plain bridge
        self.x("sw", "ip", "link", "add", "br0", "type", "bridge")
        self.x("sw", "ip", "link", "set", "br0", "up")
        self.veth("h1", "up0", "sw", "p-h1")
        self.veth("tor", "ac0", "sw", "p-tor")
        for p in ("p-h1", "p-tor"):
            self.x("sw", "ip", "link", "set", p, "master", "br0")
        self.x("h1", "ip", "addr", "add", f"{MGMT['h1']}/24", "dev", "up0")
        self.x("tor", "ip", "addr", "add", f"{MGMT['tor']}/24", "dev", "ac0")
        # h1's VMs: one bridge per VXLAN segment toward the PE, no routing, no vpe
        for vm, vni in VNIS.items():
            i = vm[-1]
            self.x("h1", "ip", "link", "add", f"vx{vni}", "type", "vxlan", "id", str(vni), "remote", MGMT["tor"],
                   "dstport", "4789", "dev", "up0")
            self.x("h1", "ip", "link", "add", f"br{vni}", "type", "bridge")
            self.veth("h1", f"v{i}", vm, "eth0")
            self.x(vm, "ip", "link", "set", "eth0", "mtu", "1450")  # the segment's MTU
            for p in (f"vx{vni}", f"v{i}"):
                self.x("h1", "ip", "link", "set", p, "master", f"br{vni}", "up")
            self.x("h1", "ip", "link", "set", f"br{vni}", "up")
        # the underlay between the external PE and the internal vPE
        self.veth("tor", "ul0", "h2", "ul0")
        for node, addr in UNDERLAY.items():
            self.x(node, "ip", "addr", "add", f"{addr}/24", "dev", "ul0")
        self.veth("h2", "vm-2", "vm2", "eth0")
        for vm, (ip, mac) in VMS.items():
            self.x(vm, "ip", "link", "set", "eth0", "address", mac)
            self.x(vm, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        self.start_vpe("tor", UNDERLAY["h2"], passive=True,
                       extra_api=f'tcp = "{MGMT["tor"]}:{API_PORT}"\ntoken = "{TOKEN}"')
        self.start_vpe("h2", UNDERLAY["tor"], passive=False)
        for node in ("tor", "h2"):
            until(lambda n=node: self.get(n, "/v1/fib").get("connected") is True, what=f"{node}'s agent up")  # type: ignore[misc]
        until(lambda: any(n.get("state") == "Established" for n in self.get("h2", "/v1/bgp/neighbors")),
              what="iBGP tor <-> h2")
        with self.api("h2") as c:
            ip, mac = VMS["vm2"]
            r = c.post("/v1/ports", json={"name": "vm2", "ifname": "vm-2", "vpn": "red", "mac": mac,
                                          "ips": [f"{ip}/24"], "gateways": ["192.0.2.1"]})
            assert r.status_code == 201, r.text

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for n in self.ns.values():
            sh("ip", "netns", "del", n, check=False)

    def logs(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(self.tmp.glob("*/*.log")))


@contextlib.contextmanager
def external_pe_world(tmp: Path, driver: str = "userspace") -> Iterator[World]:
    import os

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to build namespaces")
    if shutil.which("ping") is None:
        pytest.skip("needs ping (apt-get install iputils-ping)")
    w = World(tmp, driver)
    try:
        w.build()
        yield w
    finally:
        w.teardown()
