"""Codec benchmark: decode and encode rates for 200-route VPNv4 UPDATEs.

Run: .venv/bin/python bench/codec.py [--updates 5000] [--runs 5]

Builds UPDATEs the way a route reflector sends a large VPN table: 200 VPNv4
host routes per UPDATE, each UPDATE with its own RD/RT (100 of them) and the
usual attributes (ORIGIN, AS_PATH, LOCAL_PREF, EXTENDED_COMMUNITIES with a
route target and the MPLS-in-UDP encapsulation community). Prints the median
routes per second of decode (wire -> Update with NLRI values and the shared
attribute set) and of encode (routes + attributes -> packed UPDATE messages).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import time

from vpe.bgp.wire import CodecContext, MessageReader, decode_message
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    RouteTarget,
)
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.bgp.wire.update import pack_announcements

ROUTES_PER_UPDATE = 200


def build_updates(n_updates: int, ctx: CodecContext) -> tuple[list[bytes], int]:
    msgs: list[bytes] = []
    nexthop = ipaddress.IPv4Address("198.18.0.10")
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    routes = 0
    for u in range(n_updates):
        vpn = u % 100 + 1
        attrs = PathAttributes(
            [
                Origin(0),
                AsPath.sequence(),
                LocalPref(100),
                ExtendedCommunities(
                    (RouteTarget.from_str(f"65000:{vpn}"), Encapsulation.from_str("encap:mpls-in-udp"))
                ),
            ]
        )
        nlri = [
            VPNv4Prefix.from_str(
                f"65000:{vpn}:{ipaddress.IPv4Address(base + u * ROUTES_PER_UPDATE + i)}/32",
                labels=(16 + vpn,),
            )
            for i in range(ROUTES_PER_UPDATE)
        ]
        out = pack_announcements(VPNV4, attrs, nexthop, nlri, ctx)
        msgs.extend(out)
        routes += len(nlri)
    return msgs, routes


def decode_all(stream: bytes, ctx: CodecContext) -> int:
    reader = MessageReader(ctx.max_message_len)
    reader.feed(stream)
    count = 0
    nxt = reader.next_message
    while True:
        m = nxt()
        if m is None:
            return count
        upd = decode_message(m[0], m[1], ctx)
        count += len(upd.mp_reach.nlri)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    ctx = CodecContext(asn4=True, ibgp=True)
    msgs, routes = build_updates(args.updates, ctx)
    stream = b"".join(msgs)
    print(f"vpe codec benchmark: {routes} VPNv4 routes in {len(msgs)} UPDATEs "
          f"({len(stream) / 1e6:.1f} MB), {os.cpu_count()} CPUs, {args.runs} runs")

    dec = []
    for _ in range(args.runs):
        t = time.perf_counter()
        got = decode_all(stream, ctx)
        dec.append(time.perf_counter() - t)
        assert got == routes, (got, routes)
    # the same, with the attribute intern table cleared before each run
    from vpe.bgp.wire import update as upd_mod

    cold = []
    for _ in range(args.runs):
        upd_mod._INTERN.clear()
        t = time.perf_counter()
        decode_all(stream, ctx)
        cold.append(time.perf_counter() - t)

    # encode: the route objects exist; measure packing into UPDATE messages
    pre = []
    for u in range(args.updates):
        m = decode_message(2, msgs[u][19:], ctx)
        pre.append((m.attributes, m.mp_reach.next_hop, m.mp_reach.nlri))
    enc = []
    for _ in range(args.runs):
        t = time.perf_counter()
        for attrs, nh, nlri in pre:
            pack_announcements(VPNV4, attrs, nh, nlri, ctx)
        enc.append(time.perf_counter() - t)

    d, c, e = statistics.median(dec), statistics.median(cold), statistics.median(enc)
    print(f"decode: {routes / d:12,.0f} routes/s  (median {d:.3f} s)")
    print(f"decode, cold attribute cache: {routes / c:12,.0f} routes/s  (median {c:.3f} s)")
    print(f"encode: {routes / e:12,.0f} routes/s  (median {e:.3f} s)")


if __name__ == "__main__":
    main()
