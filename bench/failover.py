"""Benchmark: prefix-independent failover to pre-installed backups (R11.2).

    sudo .venv/bin/python bench/failover.py [--prefixes 1000,10000] [--driver userspace,ebpf]

Namespaces (removed at the end): an underlay bridge; h1 (the forwarder under
test, with a VM), h2 (the primary vPE) and h3 (the backup vPE), all three
forwarders running with ``--liveness 0.05`` (3 missed probes: down). h1 holds
N IPv6 VPN prefixes (2001:db8:100:i::/64) behind h2, each with a backup via
h3 - what the control plane programs when two vPEs advertise the prefixes.
A VM behind h1 streams 2,000 packets/s round robin over 64 of the prefixes
(spread over the whole table); h2's underlay link is set down; a capture on
h3 sees when each sampled prefix's traffic arrives over the backup.

Reported per (driver, N): the failover time (link down -> first packet over
the backup) as median and worst over the sampled prefixes, and what BGP alone
would take: the hold timer (vpe's default, 90 s; 3 s at the RFC minimum)
before anything is withdrawn, plus the measured time to reprogram all N
routes through the FIB channel (the per-prefix work PIC avoids). One JSON
line per run. The target: under 1 s, the same for 1k and 10k prefixes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from ipaddress import ip_network
from pathlib import Path

from vpe.dataplane.channel import FibClient
from vpe.dataplane.driver import Batch, LabelEntry, NextHop, Port, Route, State

PRIMARY, BACKUP = NextHop.remote("198.18.0.2", 700), NextHop.remote("198.18.0.3", 800)
SAMPLE = 64

CAPTURE = r"""
import json, socket, struct, sys, time
count, timeout, me = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("ul0", 0))
s.settimeout(0.2)
print("READY", flush=True)
first, n, end = {}, 0, time.monotonic() + timeout
while n < count and time.monotonic() < end:
    try:
        f, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(f) < 14 + 20 + 12 + 40 or f[23] != 17:
        continue
    if socket.inet_ntoa(f[30:34]) != me:
        continue
    inner = 14 + (f[14] & 15) * 4 + 12
    if f[inner] >> 4 != 6:
        continue
    n += 1
    dst = socket.inet_ntop(socket.AF_INET6, f[inner + 24:inner + 40])
    first.setdefault(dst, time.monotonic())
print(json.dumps(first), flush=True)
"""

STREAM = r"""
import socket, sys, time
dsts, rate, secs = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("2001:db8:1::10", 40000))
gap, t, end, i = 1.0 / rate, time.monotonic(), time.monotonic() + secs, 0
while time.monotonic() < end:
    s.sendto(b"vpe-failover", (dsts[i % len(dsts)], 53))
    i += 1
    t += gap
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
"""


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


class Lab:
    def __init__(self, driver: str) -> None:
        self.prefix = f"vpefo{uuid.uuid4().hex[:6]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="vpe-failover-"))
        self.ns: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.driver = driver

    def x(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns[name], *args, check=check)

    def add(self, name: str) -> None:
        self.ns[name] = f"{self.prefix}{name}"
        sh("ip", "netns", "add", self.ns[name])
        self.x(name, "ip", "link", "set", "lo", "up")

    def build(self) -> None:
        self.add("ul")
        self.x("ul", "ip", "link", "add", "br0", "type", "bridge")
        self.x("ul", "ip", "link", "set", "br0", "up")
        for i, h in enumerate(("h1", "h2", "h3"), start=1):
            self.add(h)
            sh("ip", "link", "add", "ul0", "netns", self.ns[h], "type", "veth", "peer", "name", f"p{i}",
               "netns", self.ns["ul"])  # fmt: skip
            self.x("ul", "ip", "link", "set", f"p{i}", "master", "br0", "up")
            self.x(h, "ip", "addr", "add", f"198.18.0.{i}/24", "dev", "ul0")
            self.x(h, "ip", "link", "set", "ul0", "up")
            self.forwarder(h, f"198.18.0.{i}", self.driver if h == "h1" else "userspace")
        self.add("vm1")
        sh("ip", "link", "add", "eth0", "netns", self.ns["vm1"], "address", "02:00:00:00:03:01",
           "type", "veth", "peer", "name", "vp1", "netns", self.ns["h1"])  # fmt: skip
        self.x("h1", "ip", "link", "set", "vp1", "up")
        self.x("vm1", "ip", "-6", "addr", "add", "2001:db8:1::10/64", "dev", "eth0", "nodad")
        self.x("vm1", "ip", "link", "set", "eth0", "up")
        self.x("vm1", sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
        self.x("vm1", "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")

    def forwarder(self, host: str, ip: str, driver: str) -> None:
        sock = self.tmp / f"{host}.sock"
        log = open(self.tmp / f"{host}.log", "wb")  # noqa: SIM115 - lives as the process
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns[host], sys.executable, "-m", "vpe.dataplane.process",
             "--driver", driver, "--underlay-if", "ul0", "--underlay-ip", ip, "--socket", str(sock),
             "--liveness", "0.05", "--log-level", "ERROR"], stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                FibClient.connect(str(sock), timeout=2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"forwarder of {host} did not start: {(self.tmp / f'{host}.log').read_text()}")

    def client(self, host: str) -> FibClient:
        return FibClient.connect(str(self.tmp / f"{host}.sock"), timeout=120)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in reversed(list(self.ns.values())):
            sh("ip", "netns", "del", ns, check=False)


def prefixes(n: int) -> list[str]:
    return [f"2001:db8:100:{i:x}::/64" for i in range(n)]


def run(driver: str, n: int) -> dict[str, object]:
    lab = Lab(driver)
    try:
        lab.build()
        port = Port("vm1", "vp1", "red", "02:00:00:00:03:01", ips=("2001:db8:1::10/64",),  # type: ignore[arg-type]
                    gateway_ips=("2001:db8:1::1",))  # type: ignore[arg-type]  # fmt: skip
        routes = [Route("red", "2001:db8:1::10/128", (NextHop.local("vm1"),))]
        routes += [Route("red", p, (PRIMARY,), backup=(BACKUP,)) for p in prefixes(n)]
        t0 = time.perf_counter()
        with lab.client("h1") as c:
            c.sync(State(ports=(port,), routes=tuple(routes), labels=(LabelEntry(100, "vrf", "red"),)))
        program_s = time.perf_counter() - t0
        # the per-prefix alternative: every route rewritten to the backup (what a
        # withdrawal of each prefix makes the control plane send), measured then undone
        moved = tuple(Route("red", p, (BACKUP,)) for p in prefixes(n))
        t0 = time.perf_counter()
        with lab.client("h1") as c:
            c.apply(Batch(add_routes=moved))
        reprogram_s = time.perf_counter() - t0
        with lab.client("h1") as c:
            c.apply(Batch(add_routes=tuple(routes[1:])))
        time.sleep(2.0)  # the liveness refresh (1 s) sees h2/h3; they answer
        step = max(1, n // SAMPLE)
        sample = [str(ip_network(p)[1]) for p in prefixes(n)[::step][:SAMPLE]]
        cap = subprocess.Popen(["ip", "netns", "exec", lab.ns["h3"], sys.executable, "-c", CAPTURE,
                                "20000", "5", "198.18.0.3"], stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert cap.stdout is not None and cap.stdout.readline().strip() == "READY"
        stream = subprocess.Popen(["ip", "netns", "exec", lab.ns["vm1"], sys.executable, "-c", STREAM,
                                   ",".join(sample), "2000", "3.5"])  # fmt: skip
        time.sleep(1.0)
        t_kill = time.monotonic()
        lab.x("h2", "ip", "link", "set", "ul0", "down")
        stream.wait(timeout=15)
        first = json.loads(cap.communicate(timeout=15)[0].strip().splitlines()[-1])
        early = [d for d, t in first.items() if t < t_kill]
        times = [first[d] - t_kill for d in sample if d in first]
        return {
            "bench": "failover", "driver": driver, "prefixes": n, "sampled": len(sample),
            "switched": len(times), "backup_used_before_failure": len(early),
            "failover_median_ms": round(1000 * statistics.median(times), 1) if times else None,
            "failover_worst_ms": round(1000 * max(times), 1) if times else None,
            "liveness": "50 ms x 3",
            "bgp_alone_hold_timer_s": {"default": 90, "rfc_minimum": 3},
            "bgp_alone_reprogram_all_ms": round(1000 * reprogram_s, 1),
            "program_all_ms": round(1000 * program_s, 1),
        }  # fmt: skip
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefixes", default="1000,10000")
    ap.add_argument("--driver", default="userspace,ebpf")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/failover.py needs root (network namespaces)")
    for driver in args.driver.split(","):
        for n in args.prefixes.split(","):
            print(json.dumps(run(driver, int(n))), flush=True)


if __name__ == "__main__":
    main()
