"""Helpers of the end-to-end suite: a running lab, commands in its namespaces,
bounded listeners and captures, the agents' APIs and the forwarders' counters.

Everything that waits is bounded in time, every loop in count. Traffic tools
are small Python programs run with ``ip netns exec`` (the machine may have no
tcpdump): a capture is an AF_PACKET socket, a listener a UDP socket, each
stopping at a frame/datagram count, at a deadline, or when the test closes
its stdin, whichever comes first.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest

from vpe.dataplane.channel import FibClient
from vpe.lab import build, netns
from vpe.lab import move as lab_move
from vpe.lab.configs import host_vrfs, vrf_name
from vpe.lab.layout import Lab
from vpe.lab.topology import VmConfig, load_topology

LABS = Path(__file__).resolve().parent / "labs"
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "vpe" / "lab" / "examples"
GATEWAY_MAC = "02:00:5e:00:00:01"
UNDERLAY_NETS = (ip_network("198.18.0.0/15"), ip_network("2001:db8:ffff::/48"))

_why = netns.ip_available()
#: marks of every e2e module: root and `ip netns` or a clear skip
E2E = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why is not None, reason=f"e2e tests need root and `ip netns`: {_why}"),
]


def ebpf_missing() -> str | None:
    """Why the ebpf driver cannot run here (None: it can)."""
    if shutil.which("clang") is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        return "the ebpf driver needs clang and libbpf-dev (make deps installs them)"
    return None


#: the dataplane drivers the e2e suite runs against (the lab's ``driver``)
DRIVERS = [
    "userspace",
    pytest.param("ebpf", marks=pytest.mark.skipif(ebpf_missing() is not None, reason=str(ebpf_missing()))),
]


def new_prefix(tag: str = "e") -> str:
    return tag + uuid.uuid4().hex[:8]


# -- programs run inside namespaces --------------------------------------------------

#: a UDP listener: family bind port count timeout [group ifname]; prints READY,
#: then one JSON line [[payload, source], ...]
UDP_LISTEN = r"""
import json, select, socket, struct, sys, time
fam, bind, port, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
group = sys.argv[6] if len(sys.argv) > 6 else ""
af = socket.AF_INET if fam == "4" else socket.AF_INET6
s = socket.socket(af, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if af == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((bind, port))
if group and af == socket.AF_INET:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
elif group:
    idx = socket.if_nametoindex("eth0")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(af, group) + struct.pack("@I", idx))
print("READY", flush=True)
got = []
end = time.monotonic() + timeout
while len(got) < count:
    left = end - time.monotonic()
    if left <= 0:
        break
    r, _, _ = select.select([s, sys.stdin], [], [], left)
    if sys.stdin in r:
        break
    if s in r:
        data, src = s.recvfrom(65535)
        got.append([data.decode(errors="replace"), src[0]])
print(json.dumps(got), flush=True)
"""

#: a UDP sender: dst port payload count [ttl]; broadcast allowed, multicast out of eth0
UDP_SEND = r"""
import socket, struct, sys, time
dst, port, payload, count = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
ttl = int(sys.argv[5]) if len(sys.argv) > 5 else 0
af = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(af, socket.SOCK_DGRAM)
if af == socket.AF_INET:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
    if ttl:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
else:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
    if ttl:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
for i in range(count):
    s.sendto(payload, (dst, port))
    time.sleep(0.02)
"""

#: an AF_PACKET capture: ifname count timeout; prints READY, then one hex frame per line
CAPTURE = r"""
import select, socket, sys, time
ifname, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
print("READY", flush=True)
frames = []
end = time.monotonic() + timeout
while len(frames) < count:
    left = end - time.monotonic()
    if left <= 0:
        break
    r, _, _ = select.select([s, sys.stdin], [], [], left)
    if s in r:
        data, addr = s.recvfrom(65535)
        if addr[0] == ifname:
            frames.append(f"{addr[2]} {data.hex()}")
    elif sys.stdin in r:
        # drain what is already queued, then stop
        while len(frames) < count:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                break
            data, addr = s.recvfrom(65535)
            if addr[0] == ifname:
                frames.append(f"{addr[2]} {data.hex()}")
        break
print("\n".join(frames), flush=True)
"""

#: send raw Ethernet frames (hex arguments) out of an interface
SEND_FRAMES = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
    time.sleep(0.01)
"""

#: TCP receiver: bind port timeout; READY, then "<octets> <sha256>"
TCP_SINK = r"""
import hashlib, socket, sys
bind, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
af = socket.AF_INET6 if ":" in bind else socket.AF_INET
srv = socket.socket(af, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((bind, port))
srv.listen(1)
srv.settimeout(timeout)
print("READY", flush=True)
c, _ = srv.accept()
c.settimeout(timeout)
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(h.hexdigest().encode())
c.close()
print(n, h.hexdigest(), flush=True)
"""

#: TCP sender: dst port octets seed timeout; prints "<octets> <sha256 sent> <sha256 echoed by the sink>"
TCP_SOURCE = r"""
import hashlib, random, socket, sys
dst, port, size, seed, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
data = random.Random(seed).randbytes(size)
af = socket.AF_INET6 if ":" in dst else socket.AF_INET
c = socket.create_connection((dst, port), timeout=timeout)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
echo = b""
while len(echo) < 64:
    d = c.recv(64)
    if not d:
        break
    echo += d
print(len(data), hashlib.sha256(data).hexdigest(), echo.decode(), flush=True)
"""


class Background:
    """A program running in a namespace, started and synchronised on its READY line."""

    def __init__(self, ns: str, code: str, *args: str, ready_timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        r, _, _ = select.select([self.proc.stdout], [], [], ready_timeout)
        line = self.proc.stdout.readline() if r else ""
        if line.strip() != "READY":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"{ns}: program did not start: {line!r} {err}")

    def finish(self, settle: float = 0.3, timeout: float = 15.0) -> str:
        """Let in-flight packets land, tell the program to stop, return its output."""
        time.sleep(settle)
        try:
            out, err = self.proc.communicate(input="stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"program did not stop in {timeout} s: {err}") from None
        if self.proc.returncode != 0:
            raise AssertionError(f"program failed ({self.proc.returncode}): {err}")
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


@dataclass
class Frame:
    """A captured frame: packet type (0 in, 4 out), bytes."""

    pkttype: int
    data: bytes

    @property
    def src_mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.data[6:12])

    @property
    def dst_mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.data[0:6])

    @property
    def ethertype(self) -> int:
        return int.from_bytes(self.data[12:14], "big")


def parse_frames(text: str) -> list[Frame]:
    out = []
    for line in text.splitlines():
        if line.strip():
            kind, hexdata = line.split()
            out.append(Frame(int(kind), bytes.fromhex(hexdata)))
    return out


# -- the lab ---------------------------------------------------------------------------


@dataclass
class RunningLab:
    """A lab that is up, with ways to act in it and look at it."""

    lab: Lab
    prefix: str
    extra_namespaces: list[str] = field(default_factory=list)

    @property
    def topology(self) -> Any:
        return self.lab.topology

    def ns(self, node: str) -> str:
        return self.lab.ns(node)

    def vm(self, name: str) -> VmConfig:
        for vm in self.topology.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def mac(self, vm: str) -> str:
        return self.lab.vm_mac(self.vm(vm))

    def ip4(self, vm: str) -> str:
        return str(self.vm(vm).ipv4.ip)

    def ip6(self, vm: str) -> str:
        return str(self.vm(vm).ipv6.ip)

    def underlay(self, host: str) -> str:
        return str(self.topology.host(host).address)

    def run(self, node: str, *cmd: str, timeout: float = 15.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", self.ns(node), *cmd], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{node}: {' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def py(self, node: str, code: str, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return self.run(node, sys.executable, "-c", code, *args, timeout=timeout, check=True)

    def start(self, node: str, code: str, *args: str) -> Background:
        return Background(self.ns(node), code, *args)

    def ping(self, vm: str, dst: str, *, count: int = 1, ttl: int | None = None, wait: float = 1.0) -> subprocess.CompletedProcess[str]:
        cmd = ["ping", "-n", "-c", str(count), "-W", str(wait), "-i", "0.2"]
        if ttl is not None:
            cmd += ["-t", str(ttl)]
        return self.run(vm, *cmd, dst, timeout=count * (wait + 0.5) + 5)

    def reaches(self, vm: str, dst: str, count: int = 2) -> bool:
        """ping succeeds (at least one reply of ``count``)."""
        return self.ping(vm, dst, count=count).returncode == 0

    def api(self, host: str, path: str) -> Any:
        sock = str(self.lab.node_dir(host) / "vpe.sock")
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=10) as c:
            r = c.get(f"http://vpe{path}")
        r.raise_for_status()
        return r.json()

    def counters(self, host: str) -> dict[str, Any]:
        with FibClient.connect(str(self.lab.node_dir(host) / "forwarder.sock"), 5.0) as c:
            return c.counters()

    @property
    def driver(self) -> str:
        """The dataplane driver the lab's forwarders run."""
        return self.lab.topology.driver

    def fast_path(self, host: str) -> dict[str, int]:
        """What the kernel programs forwarded on ``host`` (ebpf driver; {} for userspace)."""
        return dict(self.counters(host).get("ebpf", {}).get("fast_path", {}))

    def drops(self, host: str) -> dict[str, int]:
        return dict(self.counters(host)["drops"])

    def neighbours(self, vm: str) -> dict[str, str]:
        """The VM's kernel neighbour cache: address -> link-layer address."""
        out = self.run(vm, "ip", "-j", "neigh", "show", "dev", "eth0", check=True).stdout
        return {n["dst"]: n.get("lladdr", "") for n in json.loads(out or "[]")}

    def capture(self, node: str, ifname: str, *, count: int = 2000, timeout: float = 10.0) -> Background:
        return self.start(node, CAPTURE, ifname, str(count), str(timeout))

    def listen(self, vm: str, port: int, *, family: int = 4, count: int = 50, timeout: float = 8.0,
               group: str = "") -> Background:
        bind = "0.0.0.0" if family == 4 else "::"
        args = [str(family), bind, str(port), str(count), str(timeout)]
        if group:
            args.append(group)
        return self.start(vm, UDP_LISTEN, *args)

    def send_udp(self, vm: str, dst: str, port: int, payload: str, count: int = 3, ttl: int = 0) -> None:
        self.py(vm, UDP_SEND, dst, str(port), payload, str(count), str(ttl))

    def send_frames(self, node: str, ifname: str, frames: Iterable[bytes]) -> None:
        self.py(node, SEND_FRAMES, ifname, *(f.hex() for f in frames))

    def iperf(self, client: str, server: str, dst: str, args: list[str], duration: int,
              port: int = 5399) -> dict[str, Any]:
        """One iperf3 run from VM ``client`` to ``dst`` (an address of VM ``server``, where a
        one-shot server listens); its JSON report (benchmarks)."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns(server), "iperf3", "-s", "-1", "-B", dst,
                                "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.4)
            r = self.run(client, "iperf3", "-c", dst, "-p", str(port), "-t", str(duration), "-J", *args,
                         timeout=duration + 25)
            data: dict[str, Any] = json.loads(r.stdout)
            if "error" in data:
                raise RuntimeError(f"iperf3 {args}: {data['error']}")
            return data
        finally:
            try:
                srv.wait(timeout=5)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait(timeout=5)

    def tcp_transfer(self, src: str, dst: str, dst_ip: str, size: int, port: int = 5001) -> tuple[str, str]:
        """Send ``size`` random octets over TCP from VM ``src`` to ``dst_ip`` (VM ``dst``);
        the sha256 the sender computed and the one the receiver computed."""
        sink = self.start(dst, TCP_SINK, "::" if ":" in dst_ip else "0.0.0.0", str(port), "20")
        try:
            sent = self.py(src, TCP_SOURCE, dst_ip, str(port), str(size), "7", "20", timeout=30).stdout.split()
            got = sink.finish(settle=0, timeout=25).split()
        finally:
            sink.kill()
        assert int(sent[0]) == size and int(got[0]) == size, (sent, got)
        assert sent[2] == got[1]
        return sent[1], got[1]

    # -- extra namespaces on the underlay (R13.2) -----------------------------------

    def add_underlay_node(self, name: str, address: str) -> str:
        """A namespace ``<prefix>-<name>`` on the underlay bridge with ``address``/24:
        an underlay host that is not a vPE. Deleted by :func:`teardown`."""
        ns = self.ns(name)
        netns.netns_add(ns)
        self.extra_namespaces.append(ns)
        netns.veth_add(ns, "ul0", self.lab.underlay_ns, f"p-{name}")
        netns.link_set(self.lab.underlay_ns, f"p-{name}", master="br0")
        netns.link_set(ns, "ul0")
        plen = self.topology.underlay.ipv4.prefixlen
        netns.addr_add(ns, "ul0", f"{address}/{plen}")
        return ns

    # -- convergence -------------------------------------------------------------------

    def expected_routes(self) -> dict[str, set[tuple[str, str]]]:
        """host -> (vrf, prefix) its forwarder must hold once BGP converged."""
        t = self.topology
        exports: dict[str, set[str]] = {}
        for vm in t.vms:
            exports[vm.name] = {rt for v in vm.vpns for rt in t.vpn(v).export}
        out: dict[str, set[tuple[str, str]]] = {}

        def summarised(vm: VmConfig, ip: Any) -> bool:  # withheld by a summary_only aggregate
            return any(g.summary_only and ip in g.prefix for v in vm.vpns for g in t.vpn(v).aggregates)

        for h in t.hosts:
            want: set[tuple[str, str]] = set()
            for vrf in host_vrfs(self.lab, h):
                imports = set(vrf["import"])
                for vm in t.vms:
                    local = vm.host == h.name and vrf_name(vm) == vrf["name"]
                    if not local and not (exports[vm.name] & imports):
                        continue
                    for a in (vm.ipv4, vm.ipv6):
                        if a is not None and (local or not summarised(vm, a.ip)):
                            want.add((vrf["name"], f"{a.ip}/{a.max_prefixlen}"))
                for _, vpn in t.vpns():
                    if set(vpn.export) & imports:
                        for r in vpn.routes:
                            want.add((vrf["name"], str(r.prefix)))
                        own = {str(x.prefix) for v in vrf["vpns"] for x in t.vpn(v).aggregates}
                        for g in vpn.aggregates:  # R10.3: another vPE's aggregate (ours is no FIB route)
                            if str(g.prefix) not in own:
                                want.add((vrf["name"], str(g.prefix)))
            out[h.name] = want
        return out

    def wait_converged(self, timeout: float = 40.0) -> None:
        want = self.expected_routes()
        deadline = time.monotonic() + timeout
        missing: dict[str, set[tuple[str, str]]] = {}
        while time.monotonic() < deadline:
            missing = {}
            for host, routes in want.items():
                try:
                    fib = self.api(host, "/v1/fib")
                except (httpx.HTTPError, OSError):
                    missing[host] = routes
                    continue
                have = {(r["vrf"], r["prefix"]) for r in fib.get("routes", [])}
                lack = routes - have
                if lack or not fib.get("connected"):
                    missing[host] = lack
            if not missing:
                return
            time.sleep(0.3)
        raise AssertionError(f"lab {self.prefix} did not converge in {timeout} s; missing: {missing}")

    # -- moves (docs/mobility.md) ---------------------------------------------------

    def move(self, vm: str, src: str, dst: str, hold: float | None = 30.0) -> lab_move.MoveResult:
        """Move a movable VM (``start_lab(movable=...)``) from host ``src`` to ``dst``:
        prepare, activate, release through the agents' APIs, its link re-plugged."""
        return lab_move.move(self.lab, self.vm(vm), src, dst, hold=hold)

    def teardown(self) -> None:
        try:
            build.down(self.prefix, self.lab.state_dir)
        finally:
            for ns in self.extra_namespaces + build.prefix_namespaces(self.prefix):
                subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
            shutil.rmtree(self.lab.state_dir, ignore_errors=True)


def example_lab(example: str, tag: str, converge_timeout: float = 60.0,
                driver: str | None = None) -> Iterator[RunningLab]:
    """A module fixture's body for ``src/vpe/lab/examples/<example>.yaml``: skip without
    root, build it under a fresh prefix (every host on ``driver`` when given), yield it
    converged, always tear it down."""
    why = netns.ip_available()
    if why is not None:
        pytest.skip(f"e2e tests need root and `ip netns`: {why}")
    if driver == "ebpf" and ebpf_missing() is not None:
        pytest.skip(str(ebpf_missing()))
    topo = load_topology(EXAMPLES / f"{example}.yaml")
    if driver is not None:
        topo = topo.with_driver(driver)
    p = new_prefix(tag)
    lab = build.make_lab(topo, p)
    running = RunningLab(lab, p)
    try:
        build.up(lab)
        running.wait_converged(timeout=converge_timeout)
        yield running
    finally:
        running.teardown()


def start_lab(name: str, prefix: str | None = None, driver: str | None = None,
              movable: Iterable[str] = ()) -> RunningLab:
    """Build ``labs/<name>.yaml`` under a fresh prefix and wait until routing converged;
    ``driver``: every host's dataplane driver (default: the file's); ``movable``: VMs
    wired through a cable namespace so that :meth:`RunningLab.move` can move them.
    On any failure everything built is removed before the error propagates."""
    env_keep = os.environ.pop("VPE_LAB_FORWARDER", None)
    topo = load_topology(LABS / f"{name}.yaml")
    if driver is not None:
        topo = topo.with_driver(driver)
    p = prefix or new_prefix()
    lab = build.make_lab(topo, p)
    running = RunningLab(lab, p)
    movers = set(movable)

    def attach(lb: Lab, vm: VmConfig) -> object:
        if vm.name in movers:
            lab_move.make_movable(lb, vm)
        return build.attach_vm(lb, vm)

    try:
        build.up(lab, attach=attach)
        running.wait_converged()
    except BaseException:
        running.teardown()
        raise
    finally:
        if env_keep is not None:
            os.environ["VPE_LAB_FORWARDER"] = env_keep
    return running


def in_underlay(addr: str) -> bool:
    a = ip_address(addr)
    return any(a in n for n in UNDERLAY_NETS)


def host_route_prefixes(iface_text: str) -> str:
    i = ip_interface(iface_text)
    return f"{i.ip}/{i.max_prefixlen}"


@dataclass
class Tunnelled:
    """One MPLS-in-UDP / MPLS-in-GRE packet seen on the underlay."""

    src: str
    dst: str
    encap: str
    label: int
    outer_ttl: int
    inner: bytes
    frame: Frame


def tunnel_packets(frames: Iterable[Frame]) -> list[Tunnelled]:
    """The tunnelled packets among captured underlay frames (outer IPv4 or IPv6)."""
    out = []
    for f in frames:
        d = f.data
        if f.ethertype == 0x0800 and len(d) >= 34:
            ihl = (d[14] & 0x0F) * 4
            proto, ttl = d[23], d[22]
            src, dst = str(ip_address(d[26:30])), str(ip_address(d[30:34]))
            off = 14 + ihl
        elif f.ethertype == 0x86DD and len(d) >= 54:
            proto, ttl = d[20], d[21]
            src, dst = str(ip_address(d[22:38])), str(ip_address(d[38:54]))
            off = 54
        else:
            continue
        if proto == 17 and len(d) >= off + 12 and int.from_bytes(d[off + 2 : off + 4], "big") == 6635:
            encap, mpls = "mpls-in-udp", off + 8
        elif proto == 47 and len(d) >= off + 8 and d[off + 2 : off + 4] == b"\x88\x47":
            encap, mpls = "mpls-in-gre", off + 4
        else:
            continue
        label = int.from_bytes(d[mpls : mpls + 3], "big") >> 4
        out.append(Tunnelled(src, dst, encap, label, ttl, bytes(d[mpls + 4 :]), f))
    return out


def inner_addresses(inner: bytes) -> tuple[str, str]:
    """(source, destination) of a tunnelled inner IP packet."""
    if inner[0] >> 4 == 4:
        return str(ip_address(inner[12:16])), str(ip_address(inner[16:20]))
    return str(ip_address(inner[8:24])), str(ip_address(inner[24:40]))


# -- hand-made packets (R6.1, R13.x) ----------------------------------------------------


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    """An IPv4 packet carrying UDP (UDP checksum 0: allowed over IPv4)."""
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
    total = 20 + len(udp) + len(payload)
    hdr = bytearray(b"\x45\x00" + total.to_bytes(2, "big") + b"\x12\x34\x40\x00" + bytes([ttl, 17]) + b"\0\0")
    hdr += ip_address(src).packed + ip_address(dst).packed
    hdr[10:12] = _csum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + udp + payload


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, hlim: int = 64) -> bytes:
    """An IPv6 packet carrying UDP with its (mandatory) checksum."""
    length = 8 + len(payload)
    s, d = ip_address(src).packed, ip_address(dst).packed
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + length.to_bytes(2, "big") + b"\0\0"
    pseudo = s + d + length.to_bytes(4, "big") + b"\0\0\0\x11"
    c = _csum(pseudo + udp + payload) or 0xFFFF
    udp = udp[:6] + c.to_bytes(2, "big")
    return b"\x60\0\0\0" + length.to_bytes(2, "big") + bytes([17, hlim]) + s + d + udp + payload


def ether(dst_mac: str, src_mac: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + ethertype.to_bytes(2, "big") + payload


def arp_frame(src_mac: str, sender_ip: str, target_ip: str, *, op: int = 1, dst_mac: str = "ff:ff:ff:ff:ff:ff",
              target_mac: str = "00:00:00:00:00:00") -> bytes:
    body = (b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big") + mac_bytes(src_mac) + ip_address(sender_ip).packed
            + mac_bytes(target_mac) + ip_address(target_ip).packed)
    return ether(dst_mac, src_mac, 0x0806, body)


def mpls(label: int, ttl: int = 64) -> bytes:
    """One MPLS label stack entry, bottom of stack."""
    return ((label << 12) | 0x100 | ttl).to_bytes(4, "big")


def delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


class Bird:
    """BIRD (a real BGP daemon) running inside a lab node's namespace (a VM that speaks BGP
    with its VRF: PE-CE sessions through its port); ``stop`` ends it and removes its files."""

    def __init__(self, lab: RunningLab, node: str, config: str) -> None:
        path = shutil.which("bird") or ("/usr/sbin/bird" if Path("/usr/sbin/bird").exists() else None)
        if path is None:
            pytest.skip("bird not installed: apt-get install bird2")
        self.dir = Path(tempfile.mkdtemp(prefix="vpe-bird-"))
        (self.dir / "bird.conf").write_text(config)
        self.sock = str(self.dir / "bird.ctl")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns(node), path, "-f", "-c", str(self.dir / "bird.conf"), "-s", self.sock],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def birdc(self, cmd: str, timeout: float = 10.0) -> str:
        birdc = shutil.which("birdc") or "/usr/sbin/birdc"
        return subprocess.run([birdc, "-s", self.sock, *cmd.split()], capture_output=True, text=True,
                              timeout=timeout).stdout

    def established(self, proto: str) -> bool:
        return "Established" in self.birdc(f"show protocols {proto}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
