"""Benchmark: how many flows move when a service's instances come and go (R12.3).

    .venv/bin/python bench/chain.py [--flows 20000] [--sizes 8,64,512]

For each group size N, a route to one service prefix over N members
((address, label) pairs, listed in a shuffled order) is programmed into the
userspace forwarder (:class:`vpe.dataplane.userspace.pipeline.Forwarder`, the
executable reference the eBPF program is checked against), ``--flows``
UDP flows (random client addresses and ports) go through it, and the member
each flow is sent to is read off the encapsulated output. Then one member is
removed, and (from the original group) one is added, and the flows are sent
again (at N = 512, the largest group, addition is measured from 511). Reported per N: the fraction of flows that moved on removal and on
addition, the ideal (1/N, 1/(N+1)), the fraction of moved flows that did not
have to move (0 is the claim), the spread (largest / mean flows per member),
and the same fractions under plain modulo-N selection (what the forwarders
did before) for contrast. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from test_dp_helpers import VM1_MAC, eth, forwarder, udp4  # noqa: E402

from vpe.dataplane.driver import MAX_NEXT_HOPS, Batch, NextHop, Route  # noqa: E402
from vpe.dataplane.userspace.fib import flow_hash  # noqa: E402

PREFIX = "198.51.100.0/24"


def members(n: int) -> list[NextHop]:
    return [NextHop.remote(f"198.18.{2 + i // 64}.{1 + i % 64}", 7000 + i) for i in range(n)]


def flows(count: int) -> list[bytes]:
    rnd = random.Random(7)
    return [
        udp4("192.0.2.10", f"198.51.100.{rnd.randrange(1, 255)}",
             sport=rnd.randrange(1024, 65535), dport=rnd.choice((53, 80, 443)))  # fmt: skip
        for _ in range(count)
    ]


def choices(nhs: list[NextHop], pkts: list[bytes]) -> list[tuple[str, int]]:
    """The member each packet is sent to by a forwarder holding a route over ``nhs``."""
    fwd = forwarder()
    order = nhs[:]
    random.Random(len(nhs)).shuffle(order)  # arrival order must not matter
    fwd.apply(Batch(add_routes=(Route("red", PREFIX, tuple(order)),)))
    out = []
    for p in pkts:
        frame = eth(VM1_MAC, p)
        ((where, data),) = fwd.from_port("vm1", frame)
        label = int.from_bytes(bytes(data[8:11]), "big") >> 4
        out.append((where.endpoint, label))
    return out


def moved(a: list[Any], b: list[Any]) -> float:
    return sum(x != y for x, y in zip(a, b, strict=True)) / len(a)


def one_size(n: int, pkts: list[bytes]) -> dict[str, Any]:
    nhs = members(n + 1)
    base, extra = nhs[:n], nhs[n]
    gone = base[n // 2]
    t0 = time.perf_counter()
    before = choices(base, pkts)
    after_remove = choices([m for m in base if m != gone], pkts)
    # a group holds at most MAX_NEXT_HOPS: at that size, addition is measured from N-1 to N
    add_from = n if n < MAX_NEXT_HOPS else n - 1
    before_add = before if add_from == n else choices(base[:add_from], pkts)
    if add_from != n:
        extra = base[add_from]
    after_add = choices(base[:add_from] + [extra], pkts)
    elapsed = time.perf_counter() - t0
    gone_id = (str(gone.endpoint), gone.label)
    extra_id = (str(extra.endpoint), extra.label)
    needless_rm = sum(1 for x, y in zip(before, after_remove, strict=True) if x != y and x != gone_id)
    needless_add = sum(1 for x, y in zip(before_add, after_add, strict=True) if x != y and y != extra_id)
    counts: dict[tuple[str, int], int] = {}
    for c in before:
        counts[c] = counts.get(c, 0) + 1
    # plain modulo over the identity-sorted members, as before (flow hash % N)
    hashes = [flow_hash(p) for p in pkts]
    mod_before = [h % n for h in hashes]
    keep = [i for i in range(n) if i != n // 2]
    mod_rm = [keep[h % (n - 1)] for h in hashes]
    mod_add = [h % (n + 1) for h in hashes]
    return {
        "n": n,
        "moved_on_removal": round(moved(before, after_remove), 4),
        "ideal_removal": round(1 / n, 4),
        "addition_from": add_from,
        "moved_on_addition": round(moved(before_add, after_add), 4),
        "ideal_addition": round(1 / (add_from + 1), 4),
        "needless_moves": needless_rm + needless_add,
        "members_used": len(counts),
        "max_over_mean": round(max(counts.values()) / (len(pkts) / n), 2),
        "modulo_moved_on_removal": round(moved(mod_before, mod_rm), 4),
        "modulo_moved_on_addition": round(moved(mod_before, mod_add), 4),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=20000)
    ap.add_argument("--sizes", default="8,64,512")
    args = ap.parse_args()
    pkts = flows(args.flows)
    result = {"bench": "chain-consistency", "flows": args.flows,
              "groups": [one_size(int(n), pkts) for n in args.sizes.split(",")]}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
