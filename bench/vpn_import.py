"""Benchmark: import 1,000,000 VPNv4 routes into 100 VRFs through VpnService.apply.

100 VRFs, VRF i importing ``target:65000:i``; the routes come from 50
remote PEs (RD ``198.18.0.p:1``), in batches of 200 sharing one interned
attribute set whose single RT picks one VRF (so each route lands in exactly
one VRF: 10,000 prefixes per VRF). The VpnPath values are built before the
clock starts; what is measured is the VPN layer alone: identity bookkeeping,
RT -> VRF lookup, VRF table insert, and the flush of VRF table changes
(one :class:`VrfTableChange` per route, as the FIB channel would get).

Prints the median of 3 runs (each on a fresh service).

    .venv/bin/python bench/vpn_import.py [--routes N] [--vrfs 100] [--batch 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from ipaddress import IPv4Address

from vpe.bgp.wire.attributes import (
    AsPath,
    ExtendedCommunities,
    LocalPref,
    Origin,
    OriginType,
    PathAttributes,
    RouteTarget,
)
from vpe.bgp.wire.attributes.extended_communities import Encapsulation
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.rd import RouteDistinguisher
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.vpn import VpnPath, VpnPathsChanged, VpnService

PES = 50


def build(n_routes: int, n_vrfs: int, batch: int) -> list[VpnPathsChanged]:
    nhs = [IPv4Address(f"198.18.0.{p + 1}") for p in range(PES)]
    rds = [RouteDistinguisher.type1(nh, 1).raw for nh in nhs]
    batches: list[VpnPathsChanged] = []
    i = 0
    b = 0
    while i < n_routes:
        vrf_i = b % n_vrfs
        pe = b % PES
        attrs = PathAttributes(
            (
                Origin(OriginType.IGP),
                AsPath(),
                LocalPref(100),
                ExtendedCommunities((RouteTarget(65000, vrf_i), Encapsulation(13))),
            )
        )
        adds = []
        for _ in range(min(batch, n_routes - i)):
            # a /24 unique per route: (10 + i>>16).(i>>8).(i).0/24
            key = b"\x18" + rds[pe] + bytes((10 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF))
            nlri = VPNv4Prefix(key, 0, (1000 + (i & 0xFFFF),))
            adds.append(VpnPath(VPNV4, nlri, attrs, nhs[pe], nlri.labels))
            i += 1
        batches.append(VpnPathsChanged(adds=adds))
        b += 1
    return batches


def run(batches: list[VpnPathsChanged], n_vrfs: int) -> tuple[float, float, int, int]:
    svc = VpnService("192.0.2.1")
    for v in range(n_vrfs):
        svc.add_vrf(f"vrf{v}", import_rts=[f"65000:{v}"], multipath=2)
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    changes = 0
    for ch in batches:
        changes += len(svc.apply(ch).table_changes)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    entries = sum(len(v) for v in svc.vrfs.values())
    return dt, cpu, changes, entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--vrfs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    batches = build(a.routes, a.vrfs, a.batch)
    times: list[float] = []
    cpus: list[float] = []
    for _ in range(a.runs):
        dt, cpu, changes, entries = run(batches, a.vrfs)
        if changes != a.routes or entries != a.routes:
            raise SystemExit(f"wrong result: {changes} changes, {entries} entries")
        times.append(dt)
        cpus.append(cpu)
    med = statistics.median(times)
    print(
        f"vpn import: {a.routes} VPNv4 routes into {a.vrfs} VRFs, batch {a.batch}: "
        f"median {med:.3f} s wall, {statistics.median(cpus):.3f} s CPU of {a.runs} runs "
        f"({a.routes / med / 1e6:.2f} M routes/s)"
    )


if __name__ == "__main__":
    main()
