"""R2.4: one control plane programs the forwarders of many hosts.

Namespaces: "cp" runs one ``vpe agent`` and no forwarder; "fw1", "fw2",
"fw3" are three hosts, each running a forwarder (its own underlay address,
FIB channel over authenticated TCP) with one VM behind it; "sw" is the
underlay switch (a Linux bridge) between the four. The agent's config lists
the three forwarders (``[[dataplane.forwarders]]``); each port names its
forwarder. Every VM pings the two others (real packets, MPLS-in-UDP between
the hosts; with each dataplane driver), and each forwarder holds its own VM's route as a local port and
the others' as tunnels to their hosts' underlay addresses, which are also
the next hops of the VPN routes the agent's one BGP speaker exports.

Broadcast and multicast (R3.2) cross between the forwarders of the one agent
as between vPEs: a datagram a red VM sends to the limited broadcast address
or to a multicast group reaches the red VMs behind the two other forwarders
exactly once each, and never "vm4", a VM of another VRF ("blue", same
subnet) behind fw2. "pe", a remote vPE of its own (agent, forwarder, "vm5"
in red; iBGP with the agent), gets an I-PMSI route from each forwarder: a
broadcast from vm5 reaches the VMs behind all three forwarders once each, and
theirs reach vm5 once.
"""

from __future__ import annotations

import json
import os
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
from e2e_lab import DRIVERS, UDP_LISTEN, UDP_SEND, Background

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = os.geteuid() == 0
FIB_PORT = 7711
#: vm4's address, in VRF blue behind fw2 (the same subnet as red's VMs)
BLUE_VM = "192.0.2.14"
#: "pe", a remote vPE of its own (agent and forwarder), and its VM vm5 in red
PE = "198.18.25.20"
PE_VM = "192.0.2.15"
HOSTS = {"fw1": ("198.18.25.11", "192.0.2.11"), "fw2": ("198.18.25.12", "192.0.2.12"),
         "fw3": ("198.18.25.13", "192.0.2.13")}


def sh(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def nsx(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def _until(pred: Any, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def _api(tmp: Path, timeout: float = 10, sock: str = "api.sock") -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(tmp / sock)), timeout=timeout)


@pytest.fixture(scope="module", params=DRIVERS)
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The lab, the agent connected to the three forwarders, the four VMs' ports attached."""
    driver: str = request.param
    tmp_path = tmp_path_factory.mktemp("m24")
    if not ROOT or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to build namespaces")
    if shutil.which("ping") is None:
        pytest.skip("needs ping (apt-get install iputils-ping)")
    pre = "m24" + uuid.uuid4().hex[:5]
    names = ["cp", "sw", "pe", *HOSTS, *(f"vm{i}" for i in (1, 2, 3, 4, 5))]
    ns = {n: f"{pre}{n}" for n in names}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in ns.values():
            sh("ip", "netns", "add", n)
            nsx(n, "ip", "link", "set", "lo", "up")
        nsx(ns["sw"], "ip", "link", "add", "br0", "type", "bridge")
        nsx(ns["sw"], "ip", "link", "set", "br0", "up")
        for node, addr in (("cp", "198.18.25.1"), ("pe", PE), *((h, a) for h, (a, _) in HOSTS.items())):
            sh("ip", "link", "add", "ul0", "netns", ns[node], "type", "veth", "peer", "name", f"p-{node}",
               "netns", ns["sw"])
            nsx(ns["sw"], "ip", "link", "set", f"p-{node}", "master", "br0", "up")
            nsx(ns[node], "ip", "addr", "add", f"{addr}/24", "dev", "ul0")
            nsx(ns[node], "ip", "link", "set", "ul0", "up")
        key = tmp_path / "fib.key"
        key.write_text("r2-4-many-" + uuid.uuid4().hex + "\n")
        key.chmod(0o600)
        fw_toml = []
        for i, (host, (addr, vm_ip)) in enumerate(HOSTS.items(), 1):
            vm = ns[f"vm{i}"]
            sh("ip", "link", "add", f"vm-{i}", "netns", ns[host], "type", "veth", "peer", "name", "eth0", "netns", vm)
            nsx(ns[host], "ip", "link", "set", f"vm-{i}", "up")
            nsx(vm, "ip", "link", "set", "eth0", "address", f"02:00:00:00:25:{i:02x}", "up")
            nsx(vm, "ip", "addr", "add", f"{vm_ip}/24", "dev", "eth0")
            nsx(vm, "ip", "route", "add", "default", "via", "192.0.2.1")
            # the forwarder reads frames raw: checksums filled in by the VM, not left to offload
            nsx(vm, sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
            with open(tmp_path / f"{host}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns[host], sys.executable, "-m", "vpe.dataplane.process",
                     "--driver", driver, "--underlay-if", "ul0", "--underlay-ip", addr, "--socket", str(tmp_path / f"{host}.sock"),
                     "--listen-tcp", f"{addr}:{FIB_PORT}", "--key-file", str(key)],
                    stdout=log, stderr=subprocess.STDOUT))
            fw_toml.append(f"""
[[dataplane.forwarders]]
name = "{host}"
fib_socket = "tcp:{addr}:{FIB_PORT}"
fib_key_file = "{key}"
underlay_address = "{addr}"
""")
        # vm4: VRF blue, same subnet as red, behind fw2
        sh("ip", "link", "add", "vm-4", "netns", ns["fw2"], "type", "veth", "peer", "name", "eth0", "netns", ns["vm4"])
        nsx(ns["fw2"], "ip", "link", "set", "vm-4", "up")
        nsx(ns["vm4"], "ip", "link", "set", "eth0", "address", "02:00:00:00:25:04", "up")
        nsx(ns["vm4"], "ip", "addr", "add", f"{BLUE_VM}/24", "dev", "eth0")
        nsx(ns["vm4"], "ip", "route", "add", "default", "via", "192.0.2.1")
        nsx(ns["vm4"], sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
        # pe: a remote vPE (its own agent and forwarder) with vm5 in red, iBGP with cp
        sh("ip", "link", "add", "vm-5", "netns", ns["pe"], "type", "veth", "peer", "name", "eth0", "netns", ns["vm5"])
        nsx(ns["pe"], "ip", "link", "set", "vm-5", "up")
        nsx(ns["vm5"], "ip", "link", "set", "eth0", "address", "02:00:00:00:25:05", "up")
        nsx(ns["vm5"], "ip", "addr", "add", f"{PE_VM}/24", "dev", "eth0")
        nsx(ns["vm5"], "ip", "route", "add", "default", "via", "192.0.2.1")
        nsx(ns["vm5"], sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
        with open(tmp_path / "pe-fw.log", "wb") as log:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns["pe"], sys.executable, "-m", "vpe.dataplane.process", "--driver", driver,
                 "--underlay-if", "ul0", "--underlay-ip", PE, "--socket", str(tmp_path / "pe-fib.sock")],
                stdout=log, stderr=subprocess.STDOUT))
        (tmp_path / "pe.toml").write_text(f"""
state_dir = "{tmp_path}/pe-state"
[bgp]
local_as = 65000
router_id = "{PE}"
[[neighbors]]
address = "198.18.25.1"
remote_as = 65000
local_address = "{PE}"
families = ["vpnv4", "mvpn"]
connect_retry = 1.0
[[vrfs]]
name = "red"
route_targets = ["65000:25"]
[api]
socket = "{tmp_path}/pe-api.sock"
[dataplane]
driver = "{driver}"
underlay_address = "{PE}"
fib_socket = "{tmp_path}/pe-fib.sock"
""")
        with open(tmp_path / "pe-agent.log", "wb") as log:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns["pe"], sys.executable, "-m", "vpe.cli.main", "agent", "-c",
                 str(tmp_path / "pe.toml")], stdout=log, stderr=subprocess.STDOUT))
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
state_dir = "{tmp_path}/state"

[bgp]
local_as = 65000
router_id = "198.18.25.1"
listen = ["198.18.25.1"]

[[neighbors]]
address = "{PE}"
remote_as = 65000
local_address = "198.18.25.1"
families = ["vpnv4", "mvpn"]
passive = true

[[vrfs]]
name = "red"
route_targets = ["65000:25"]

[[vrfs]]
name = "blue"
route_targets = ["65000:26"]

[api]
socket = "{tmp_path}/api.sock"

[dataplane]
driver = "{driver}"
{''.join(fw_toml)}""")
        with open(tmp_path / "agent.log", "wb") as log:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns["cp"], sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg)],
                stdout=log, stderr=subprocess.STDOUT))
        api = tmp_path / "api.sock"
        _until(api.exists, what="agent API socket")
        with _api(tmp_path, 5) as c:
            _until(lambda: c.get("http://vpe/v1/fib").json().get("connected") is True,
                   what="agent connected to the three forwarders")
        with _api(tmp_path) as c:
            for i, (host, (_addr, vm_ip)) in enumerate(HOSTS.items(), 1):
                r = c.post("http://vpe/v1/ports", json={
                    "name": f"vm{i}", "ifname": f"vm-{i}", "vpn": "red", "mac": f"02:00:00:00:25:{i:02x}",
                    "ips": [f"{vm_ip}/24"], "gateways": ["192.0.2.1"], "forwarder": host})
                assert r.status_code == 201, r.text
                assert r.json()["forwarder"] == host
            r = c.post("http://vpe/v1/ports", json={
                "name": "vm4", "ifname": "vm-4", "vpn": "blue", "mac": "02:00:00:00:25:04",
                "ips": [f"{BLUE_VM}/24"], "gateways": ["192.0.2.1"], "forwarder": "fw2"})
            assert r.status_code == 201, r.text
        pe_api = tmp_path / "pe-api.sock"
        _until(pe_api.exists, what="pe's agent API socket")
        with _api(tmp_path, 10, "pe-api.sock") as c:
            r = c.post("http://vpe/v1/ports", json={
                "name": "vm5", "ifname": "vm-5", "vpn": "red", "mac": "02:00:00:00:25:05",
                "ips": [f"{PE_VM}/24"], "gateways": ["192.0.2.1"]})
            assert r.status_code == 201, r.text
        yield {"ns": ns, "tmp": tmp_path}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for n in ns.values():
            sh("ip", "netns", "del", n, check=False)


def test_r2_4_one_agent_programs_many_forwarders(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    ns: dict[str, str] = world["ns"]

    def get(path: str) -> Any:
        with _api(tmp, 5) as c:
            return c.get(f"http://vpe{path}").json()

    with _api(tmp) as c:
        r = c.post("http://vpe/v1/ports", json={
            "name": "vm9", "ifname": "vm-9", "vpn": "red", "mac": "02:00:00:00:25:09",
            "ips": ["192.0.2.19/24"], "forwarder": "fw9"})
        assert r.status_code == 422 and "forwarder: 'fw9' is not a forwarder of this agent" in r.text, r.text

    # each forwarder: its VM as a port, the others as tunnels to their hosts
    fib = get("/v1/fib")
    for host, (addr, _vm_ip) in HOSTS.items():
        mine = fib["forwarders"][host]
        assert mine["underlay"] == addr and mine["connected"] is True
        routes = {r["prefix"]: r["next_hops"] for r in mine["routes"]}
        for other, (oaddr, oip) in HOSTS.items():
            if other == host:
                assert routes[f"{oip}/32"] == [{"port": f"vm{list(HOSTS).index(host) + 1}"}]
            else:
                assert [h["endpoint"] for h in routes[f"{oip}/32"]] == [oaddr], (host, routes)
    # the one BGP speaker exports each VM's route with its forwarder's address as next hop
    rib = {r["prefix"]: r for r in get("/v1/bgp/routes?family=vpnv4&peer=local")["routes"]}
    for _host, (addr, vm_ip) in HOSTS.items():
        assert rib[f"{vm_ip}/32"]["next_hop"] == addr, rib

    # real packets: every VM reaches the two others
    for i in (1, 2, 3):
        for _host, (_addr, dst) in HOSTS.items():
            if dst.endswith(f".1{i}"):
                continue
            r = nsx(ns[f"vm{i}"], "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", dst, check=False)
            assert r.returncode == 0, (i, dst, r.stdout, (tmp / "agent.log").read_text()[-2000:])


def _copies(ns: dict[str, str], sender: str, dst: str, port: int, token: str) -> dict[str, int]:
    """Listen on vm1..vm5 except ``sender``, send 3 datagrams to ``dst`` from ``sender``;
    how many carrying ``token`` each VM received."""
    group = dst if dst.startswith("233.") else ""
    listeners: dict[str, Background] = {}
    try:
        for vm in ("vm1", "vm2", "vm3", "vm4", "vm5"):
            if vm != sender:
                listeners[vm] = Background(ns[vm], UDP_LISTEN, "4", "0.0.0.0", str(port), "10", "10", group)
        nsx(ns[sender], sys.executable, "-c", UDP_SEND, dst, str(port), token, "3")
        got = {vm: json.loads(b.finish(settle=0.8 if i == 0 else 0.0) or "[]")
               for i, (vm, b) in enumerate(listeners.items())}
    finally:
        for b in listeners.values():
            b.kill()
    return {vm: sum(1 for payload, _src in pkts if payload == token) for vm, pkts in got.items()}


def test_r3_2_broadcast_multicast_between_forwarders_of_one_agent(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    ns: dict[str, str] = world["ns"]
    # each forwarder replicates red's copies to the two other forwarders (all have red VMs)
    # and to pe, whose I-PMSI route it imports; blue's to fw2, the one forwarder with blue VMs
    def lists_ok() -> bool:
        with _api(tmp, 5) as c:
            fib = c.get("http://vpe/v1/fib").json()
        for host in HOSTS:
            lists = {rl["vrf"]: sorted(m["endpoint"] for m in rl["members"])
                     for rl in fib["forwarders"][host]["replication"]}
            want = {"red": sorted([PE, *(a for h, (a, _i) in HOSTS.items() if h != host)]),
                    **({} if host == "fw2" else {"blue": [HOSTS["fw2"][0]]})}
            if lists != want:
                print(host, lists, want)
                return False
        return True

    _until(lists_ok, 30.0, "every forwarder's replication lists")
    # pe's list: every forwarder of the agent (an I-PMSI route from each)
    with _api(tmp, 5, "pe-api.sock") as c:
        pe_lists = {rl["vrf"]: sorted(m["endpoint"] for m in rl["members"])
                    for rl in c.get("http://vpe/v1/fib").json()["replication"]}
    assert pe_lists == {"red": sorted(a for a, _i in HOSTS.values())}, pe_lists
    # limited broadcast from fw1's VM, multicast from fw3's, subnet broadcast from fw2's:
    # every other red VM gets each datagram once; blue's VM (behind fw2, same subnet) never
    # (and from the remote vPE's VM: a copy to each forwarder, each floods to its own VMs)
    for sender, dst, port in (("vm1", "255.255.255.255", 7101), ("vm3", "233.252.0.1", 7102),
                              ("vm2", "192.0.2.255", 7103), ("vm5", "255.255.255.255", 7104)):
        token = uuid.uuid4().hex[:10]
        got = _copies(ns, sender, dst, port, token)
        want = {vm: (0 if vm == "vm4" else 3) for vm in got}
        if got != want:
            with _api(tmp, 10) as c:
                counters = c.get("http://vpe/v1/counters").json()["forwarders"]
            pytest.fail(f"{sender} -> {dst}: copies {got}, want {want}; forwarders' drops, ports, "
                        f"underlay: { {h: (v['drops'], v['ports'], v['underlay']) for h, v in counters.items()} }")
