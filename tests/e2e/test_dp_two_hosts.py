"""E2E: two hosts on an underlay bridge, one VM behind each, vpe's userspace forwarder.

R3.1 / R3.3 / R5.1 / R7.1 / R7.2 / R8.1: a VM pings a VM on the other host
through ``python -m vpe.dataplane.process`` running in each host namespace,
programmed over the FIB channel with static routes (no BGP). The tenant
192.0.2.0/24 and 2001:db8:1::/64 exist only in the VM namespaces and in the
forwarders' VRF "red"; the underlay (198.18.0.0/24) knows nothing of them.
Both MPLS-in-UDP and MPLS-in-GRE are proven.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_lab import DRIVERS

from vpe.dataplane.channel import FibClient
from vpe.dataplane.driver import LabelEntry, NextHop, Peer, Port, Route, State

pytestmark = pytest.mark.e2e

ROOT = os.geteuid() == 0
IP = shutil.which("ip")
PING = shutil.which("ping")
GW_MAC = "02:00:5e:00:00:01"


def sh(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def nsx(
    ns: str, *args: str, check: bool = True, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass
class Lab:
    prefix: str
    tmp: Path
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        nsx(full, "ip", "link", "set", "lo", "up")
        return full

    def forwarder(self, host_ns: str, underlay_ip: str, sock: Path, driver: str = "userspace") -> None:
        log = open(self.tmp / f"{Path(sock).stem}.log", "wb")  # noqa: SIM115 - lives as the process
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host_ns,
                sys.executable,
                "-m",
                "vpe.dataplane.process",
                "--driver",
                driver,
                "--underlay-if",
                "ul0",
                "--underlay-ip",
                underlay_ip,
                "--socket",
                str(sock),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"forwarder exited: {(self.tmp / f'{sock.stem}.log').read_text()}"
                )
            if sock.exists():
                try:
                    FibClient.connect(str(sock), timeout=2).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("forwarder did not open its FIB channel within 10 s")

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


def vm_mac(i: int) -> str:
    return f"02:00:00:00:01:{i:02x}"


def build(lab: Lab) -> dict[str, str]:
    """Underlay bridge + two hosts + one VM per host. Returns namespace names."""
    ul = lab.ns("ul")
    h1, h2 = lab.ns("h1"), lab.ns("h2")
    vm1, vm2 = lab.ns("vm1"), lab.ns("vm2")
    nsx(ul, "ip", "link", "add", "br0", "type", "bridge")
    nsx(ul, "ip", "link", "set", "br0", "up")
    for i, (host, uip) in enumerate(((h1, "198.18.0.1"), (h2, "198.18.0.2")), start=1):
        sh(
            "ip",
            "link",
            "add",
            "ul0",
            "netns",
            host,
            "type",
            "veth",
            "peer",
            "name",
            f"h{i}",
            "netns",
            ul,
        )
        nsx(ul, "ip", "link", "set", f"h{i}", "master", "br0", "up")
        nsx(host, "ip", "addr", "add", f"{uip}/24", "dev", "ul0")
        nsx(host, "ip", "link", "set", "ul0", "up")
    for i, (host, vm) in enumerate(((h1, vm1), (h2, vm2)), start=1):
        sh(
            "ip",
            "link",
            "add",
            "eth0",
            "netns",
            vm,
            "address",
            vm_mac(i),
            "type",
            "veth",
            "peer",
            "name",
            f"vp{i}",
            "netns",
            host,
        )
        nsx(host, "sysctl", "-qw", f"net.ipv6.conf.vp{i}.disable_ipv6=1")
        nsx(host, "ip", "link", "set", f"vp{i}", "up")
        nsx(vm, "ip", "addr", "add", f"192.0.2.{10 * i}/24", "dev", "eth0")
        nsx(vm, "ip", "-6", "addr", "add", f"2001:db8:1::{10 * i}/64", "dev", "eth0", "nodad")
        nsx(vm, "ip", "link", "set", "eth0", "up")
        # Unfinished checksums / 64 KiB TSO frames must not reach AF_PACKET.
        nsx(vm, sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
        nsx(vm, "ip", "route", "add", "default", "via", "192.0.2.1")
        nsx(vm, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
    return {"h1": h1, "h2": h2, "vm1": vm1, "vm2": vm2}


def host_state(i: int, encap: str) -> State:
    """What the control plane would program on host i (1 or 2) for VRF red."""
    j = 3 - i
    port = Port(
        f"vm{i}",
        f"vp{i}",
        "red",
        vm_mac(i),
        ips=(f"192.0.2.{10 * i}/24", f"2001:db8:1::{10 * i}/64"),
        gateway_ips=("192.0.2.1", "2001:db8:1::1"),
        gateway_mac=GW_MAC,
    )
    remote = NextHop.remote(f"198.18.0.{j}", 1000 + j, encap)  # type: ignore[arg-type]
    routes = (
        Route("red", f"192.0.2.{10 * i}/32", (NextHop.local(f"vm{i}"),)),
        Route("red", f"2001:db8:1::{10 * i}/128", (NextHop.local(f"vm{i}"),)),
        Route("red", f"192.0.2.{10 * j}/32", (remote,)),
        Route("red", f"2001:db8:1::{10 * j}/128", (remote,)),
    )
    return State(
        ports=(port,),
        routes=routes,
        labels=(LabelEntry(1000 + i, "vrf", "red"),),
        peers=(Peer(f"198.18.0.{j}"),),
    )


TCP_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.20", 9998))
s.listen(1)
s.settimeout(8)
c, _ = s.accept()
c.settimeout(8)
n = 0
while n < 100000:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
print(n)
"""
TCP_CLIENT = """
import socket, time
deadline = time.monotonic() + 5
while True:
    try:
        s = socket.create_connection(("192.0.2.20", 9998), timeout=3)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
s.sendall(b"x" * 100000)
s.close()
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    if not ROOT:
        pytest.skip("needs root: creates network namespaces, veth pairs and raw sockets")
    if IP is None:
        pytest.skip("needs iproute2 (`ip`): apt-get install -y iproute2")
    if PING is None:
        pytest.skip("needs ping: apt-get install -y iputils-ping")
    tmp = Path(tempfile.mkdtemp(prefix="vpe-dp-"))
    the_lab = Lab(prefix=f"vpedp{uuid.uuid4().hex[:6]}", tmp=tmp)
    try:
        yield the_lab
    finally:
        the_lab.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("encap", ["mpls-in-udp", "mpls-in-gre"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_dp_r3_1_r7_1_vm_to_vm_ping_across_hosts(lab: Lab, encap: str, driver: str) -> None:
    """R3.1 R3.3 R7.1 R7.2 R8.1: VM1 on host 1 reaches VM2 on host 2: ping v4/v6, TCP."""
    ns = build(lab)
    socks = {i: lab.tmp / f"h{i}.sock" for i in (1, 2)}
    lab.forwarder(ns["h1"], "198.18.0.1", socks[1], driver)
    lab.forwarder(ns["h2"], "198.18.0.2", socks[2], driver)
    for i in (1, 2):
        with FibClient.connect(str(socks[i])) as client:
            client.sync(host_state(i, encap))
    r4 = nsx(
        ns["vm1"], "ping", "-c", "3", "-W", "1", "-i", "0.2", "192.0.2.20", check=False, timeout=15
    )
    assert r4.returncode == 0, r4.stdout + r4.stderr
    r6 = nsx(
        ns["vm1"],
        "ping",
        "-6",
        "-c",
        "3",
        "-W",
        "1",
        "-i",
        "0.2",
        "2001:db8:1::20",
        check=False,
        timeout=15,
    )
    assert r6.returncode == 0, r6.stdout + r6.stderr
    # TCP through the tunnel (needs the offloads turned off: see vpe.dataplane.userspace.offload).
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns["vm2"], sys.executable, "-c", TCP_SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        client = nsx(ns["vm1"], sys.executable, "-c", TCP_CLIENT, check=False, timeout=10)
        got = server.communicate(timeout=10)[0].strip()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)
    assert client.returncode == 0, client.stderr[-500:]
    assert got == "100000"
    # The gateway itself answers (first-hop router, R7.2), and the tenant address
    # space is not routable in the underlay (R5.1): host 1 has no route to it.
    gw = nsx(ns["vm1"], "ping", "-c", "1", "-W", "1", "192.0.2.1", check=False, timeout=5)
    assert gw.returncode == 0, gw.stdout + gw.stderr
    under = nsx(ns["h1"], "ip", "route", "get", "192.0.2.20", check=False)
    assert under.returncode != 0
    with FibClient.connect(str(socks[1])) as client:
        counters = client.counters()
    assert counters["vrfs"]["red"]["encapsulated"] >= 6
    assert counters["vrfs"]["red"]["decapsulated"] >= 6
    assert counters["ports"]["vm1"]["tx_packets"] >= 6
    # The FIB survives the control plane's disconnect (we connected twice).
    assert counters["generation"] == 1
    if driver == "ebpf":
        fast = counters["ebpf"]["fast_path"]
        if encap == "mpls-in-udp":  # the kernel did the work; GRE is the slow path's
            assert fast["encapsulated"] >= 6 and fast["decapsulated"] >= 6, fast
        # the forwarder leaves no tc qdisc or filter behind when it exits
        for p in lab.procs:
            p.terminate()
            p.wait(timeout=10)
        for host, port in (("h1", "vp1"), ("h2", "vp2")):
            for dev in ("ul0", port):
                q = nsx(ns[host], "tc", "qdisc", "show", "dev", dev).stdout
                assert "clsact" not in q, f"{host} {dev}: {q}"
