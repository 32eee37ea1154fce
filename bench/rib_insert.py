"""Benchmark: load 1,000,000 VPNv4 paths into Adj-RIB-In + Loc-RIB.

The routes come from one iBGP peer (a route reflector) in UPDATEs of 200
routes each, every UPDATE with its own interned attribute set, as a full
table load after session establishment looks. The NLRI are decoded with the
VPNv4 codec from wire octets before timing starts: what is measured is the
RIB alone (``Rib.announce`` per UPDATE), with the garbage collector at its
defaults.

Prints the median of 3 runs of: seconds, RSS growth, and (in a separate
traced run, since tracing slows Python down) tracemalloc bytes per route.

    .venv/bin/python bench/rib_insert.py [--routes N] [--batch 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
from ipaddress import IPv4Address

from vpn_batches import Batch, make_batches

from vpe.bgp.wire.constants import VPNV4
from vpe.rib import PeerInfo, Rib


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(batches: list[Batch], peers: list[PeerInfo]) -> tuple[Rib, float]:
    rib = Rib()
    announce = rib.announce
    t0 = time.perf_counter()
    for peer in peers:
        for attrs, nh, nlris in batches:
            announce(peer, VPNV4, attrs, nh, nlris)
    return rib, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--peers", type=int, default=1,
        help="route reflectors sending the same table (>1: every destination has several paths)",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    batches = make_batches(args.routes, args.batch)
    n = sum(len(b[2]) for b in batches)
    print(f"generated {n} VPNv4 routes in {len(batches)} UPDATEs ({time.perf_counter() - t0:.1f} s)")
    peers = [
        PeerInfo(IPv4Address(f"127.0.0.{2 + i}"), IPv4Address(f"192.0.2.{254 - i}"), 65000, ibgp=True)
        for i in range(args.peers)
    ]
    paths = n * len(peers)

    secs: list[float] = []
    rss_deltas: list[int] = []
    for _ in range(args.runs):
        gc.collect()
        before = rss()
        rib, dt = load(batches, peers)
        rss_deltas.append(rss() - before)
        secs.append(dt)
        assert len(rib.loc_rib(VPNV4)) == n
        del rib
        gc.collect()

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rib, _ = load(batches, peers)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del rib

    med_s = statistics.median(secs)
    print(f"insert {paths} paths from {len(peers)} peer(s) (Adj-RIB-In + Loc-RIB): median {med_s:.3f} s "
          f"({paths / med_s / 1e6:.2f} M paths/s); runs: {', '.join(f'{s:.3f}' for s in secs)}")
    print(f"RSS growth: median {statistics.median(rss_deltas) / paths:.0f} bytes/path")
    print(f"tracemalloc: {traced / paths:.0f} bytes/path ({traced / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
