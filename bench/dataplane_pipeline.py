"""Benchmark: the userspace forwarding pipeline and the two LPM tables.

    .venv/bin/python bench/dataplane_pipeline.py [--routes 100000] [--packets 200000]

Part 1 (LPM): a VRF FIB of ``--routes`` host routes (/32) plus 256 /24s and a
default, IPv4; lookups of random addresses, DictLpm (per-length dicts) vs
TrieLpm (pytricia, keyed by packed address, the fastest way to call it).
Part 2 (pipeline): packets per second of ``Forwarder.from_port`` /
``from_underlay`` on crafted frames, the pure code without sockets: local
delivery, MPLS-in-UDP and MPLS-in-GRE encapsulation, decapsulation, ARP,
and a packet arriving on the aggregate label re-tunnelled to the specific's vPE (R10.3).
Prints the best of 3 runs of each.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from test_dp_helpers import (  # noqa: E402
    VM1_MAC,
    arp_request,
    eth,
    forwarder,
    mpls_udp_payload,
    udp4,
)

from vpe.dataplane.driver import Batch, NextHop, Route  # noqa: E402
from vpe.dataplane.userspace.fib import AdaptiveLpm, DictLpm, TrieLpm  # noqa: E402


def best_of(n: int, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_lpm(routes: int, lookups: int) -> None:
    rnd = random.Random(1)
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    hosts = [base + rnd.randrange(1 << 17) for _ in range(routes)]
    d: DictLpm[int] = DictLpm(32)
    t: TrieLpm[int] = TrieLpm(32)
    t_build = time.perf_counter()
    for i, h in enumerate(hosts):
        d.insert(h, 32, i)
    for i in range(256):
        d.insert(base + (i << 8), 24, -i)
    d.insert(0, 0, -1000)
    t_dict = time.perf_counter() - t_build
    t_build = time.perf_counter()
    for i, h in enumerate(hosts):
        t.insert(h, 32, i)
    for i in range(256):
        t.insert(base + (i << 8), 24, -i)
    t.insert(0, 0, -1000)
    t_trie = time.perf_counter() - t_build
    addrs = [base + rnd.randrange(1 << 17) for _ in range(lookups)]
    packed = [a.to_bytes(4, "big") for a in addrs]

    def run_dict() -> None:
        look = d.lookup
        for a in addrs:
            look(a)

    def run_trie() -> None:
        look = t.lookup_packed
        for a in packed:
            look(a)

    def run_trie_int() -> None:
        look = t.lookup
        for a in addrs:
            look(a)

    for name, fn, build in (
        ("DictLpm", run_dict, t_dict),
        ("TrieLpm(bytes)", run_trie, t_trie),
        ("TrieLpm(int)", run_trie_int, t_trie),
    ):
        s = best_of(3, fn)
        print(
            f"lpm {name:16s} {lookups / s / 1e6:6.2f} M lookups/s  "
            f"(insert {routes + 257} routes, 3 lengths: {build:.2f} s)"
        )
    # Many populated lengths: where the per-length dict scheme loses.
    many_d: DictLpm[int] = DictLpm(32)
    many_t: TrieLpm[int] = TrieLpm(32)
    many_a: AdaptiveLpm[int] = AdaptiveLpm(32)
    for i in range(routes // 4):
        plen = rnd.randrange(8, 33)
        net = rnd.getrandbits(32) & ~((1 << (32 - plen)) - 1)
        for tbl in (many_d, many_t, many_a):
            tbl.insert(net, plen, i)
    rand_addrs = [rnd.getrandbits(32) for _ in range(lookups)]
    for name, tbl in (("DictLpm", many_d), ("TrieLpm(int)", many_t), ("AdaptiveLpm", many_a)):

        def run(look: Callable[[int], object] = tbl.lookup) -> None:
            for a in rand_addrs:
                look(a)

        s = best_of(3, run)
        print(
            f"lpm {name:16s} {lookups / s / 1e6:6.2f} M lookups/s  ({routes // 4} routes, 25 lengths)"
        )


def bench_pipeline(n: int) -> None:
    fwd = forwarder()
    agg = forwarder()
    agg.apply(Batch(add_routes=(
        Route("red", "192.0.2.20/32", (NextHop.remote("198.18.0.2", 2000, "mpls-in-udp"),), transit=True),)))
    cases: list[tuple[str, Callable[[bytes], object], bytes]] = [
        (
            "local delivery",
            lambda f: fwd.from_port("vm1", f),
            eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.11", payload=b"x" * 64)),
        ),
        (
            "encap mpls-in-udp",
            lambda f: fwd.from_port("vm1", f),
            eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.20", payload=b"x" * 64)),
        ),
        (
            "encap mpls-in-gre",
            lambda f: fwd.from_port("vm1", f),
            eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.30", payload=b"x" * 64)),
        ),
        (
            "decap (vrf label)",
            lambda f: fwd.from_underlay(f, "198.18.0.2", "mpls-in-udp"),
            mpls_udp_payload(1000, udp4("192.0.2.20", "192.0.2.10", payload=b"x" * 64)),
        ),
        (
            "arp reply",
            lambda f: fwd.from_port("vm1", f),
            arp_request(VM1_MAC, "192.0.2.10", "192.0.2.1"),
        ),
        (
            "aggregate retunnel",  # R10.3: the VRF label's lookup finds a transit route
            lambda f: agg.from_underlay(f, "198.18.0.3", "mpls-in-udp"),
            mpls_udp_payload(1000, udp4("198.51.100.7", "192.0.2.20", payload=b"x" * 64)),
        ),
    ]
    for name, fn, frame in cases:
        view = memoryview(bytearray(frame))
        assert fn(view), name

        def run(fn: Callable[[memoryview], object] = fn, view: memoryview = view) -> None:
            for _ in range(n):
                fn(view)

        s = best_of(3, run)
        print(f"pipeline {name:18s} {n / s / 1e3:7.1f} k packets/s  ({s / n * 1e6:.2f} us each)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=500_000)
    ap.add_argument("--packets", type=int, default=200_000)
    args = ap.parse_args()
    bench_lpm(args.routes, args.lookups)
    bench_pipeline(args.packets)


if __name__ == "__main__":
    main()
