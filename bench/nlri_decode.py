"""Micro benchmark of the NLRI family codecs: routes/s decoded and encoded.

One NLRI field of 200 routes per family, as one MP_REACH_NLRI would carry:
VPNv4 (/32, one label, type 0 RD), VPNv6 (/128, one label, type 0 RD),
IPv4 unicast (/24). Each figure is the median of 5 runs; each run repeats
the field for a fixed number of rounds (bounded in count).

Time is this process's CPU time by default, so that other work on a shared
machine does not swing the figures; ``--wall`` uses the wall clock instead.

    .venv/bin/python bench/nlri_decode.py [--rounds N] [--wall]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4, VPNV6, Family
from vpe.bgp.wire.nlri import NLRI_CODECS, IPv4Prefix, Nlri, VPNv4Prefix, VPNv6Prefix

ROUTES = 200
RUNS = 5


def _routes(family: Family) -> list[Nlri]:
    out: list[Nlri] = []
    for i in range(ROUTES):
        if family == VPNV4:
            out.append(VPNv4Prefix.from_str(f"65000:{i % 7}:198.18.{i >> 8}.{i & 255}/32", [16 + i]))
        elif family == VPNV6:
            out.append(VPNv6Prefix.from_str(f"65000:{i % 7}:2001:db8::{i:x}/128", [16 + i]))
        else:
            out.append(IPv4Prefix.from_str(f"198.18.{i}.0/24"))
    return out


def _rate(fn: Callable[[], object], rounds: int, clock: Callable[[], float]) -> float:
    samples = []
    for _ in range(RUNS):
        t0 = clock()
        for _ in range(rounds):
            fn()
        samples.append(ROUTES * rounds / max(clock() - t0, 1e-9))
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=500, help="fields decoded per run")
    ap.add_argument("--wall", action="store_true", help="wall clock instead of CPU time")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    rounds = max(1, min(args.rounds, 100_000))
    print(f"{'family':<14}{'decode routes/s':>18}{'encode routes/s':>18}{'field octets':>14}")
    for family in (VPNV4, VPNV6, IPV4_UNICAST):
        codec = NLRI_CODECS[family]
        routes = _routes(family)
        wire = codec.encode(routes, False)
        assert codec.decode(wire, False) == routes
        dec = _rate(lambda c=codec, w=wire: c.decode(w, False), rounds, clock)
        enc = _rate(lambda c=codec, r=routes: c.encode(r, False), rounds, clock)
        print(f"{family.name:<14}{dec:>18,.0f}{enc:>18,.0f}{len(wire):>14}")


if __name__ == "__main__":
    main()
