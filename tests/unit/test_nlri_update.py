"""NLRI families inside UPDATE messages: MP_REACH next hop + routes, MP_UNREACH
withdrawals with the RFC 8277 compatibility field, ADD-PATH from the context."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.constants import VPNV4, VPNV6, Family
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.header import HEADER_LEN
from vpe.bgp.wire.nlri import VPNv4Prefix, VPNv6Prefix
from vpe.bgp.wire.update import decode_update, pack_announcements, pack_withdrawals


def _routes(n: int) -> list[VPNv4Prefix]:
    return [VPNv4Prefix.from_str(f"65000:1:198.18.{i >> 8}.{i & 255}/32", [16 + i]) for i in range(n)]


def test_vpnv4_announce_and_withdraw_through_update() -> None:
    ctx = CodecContext()
    routes = _routes(600)
    msgs = pack_announcements(VPNV4, PathAttributes(), IPv4Address("192.0.2.1"), routes, ctx)
    assert len(msgs) > 1 and all(len(m) <= 4096 for m in msgs)
    got = []
    for m in msgs:
        u = decode_update(m[HEADER_LEN:], ctx)
        assert u.mp_reach is not None and u.mp_reach.family == VPNV4
        assert u.mp_reach.next_hop == IPv4Address("192.0.2.1")
        got.extend(u.mp_reach.nlri)
    assert got == routes

    out = []
    for m in pack_withdrawals(VPNV4, routes, ctx):
        assert b"\x78\x80\x00\x00" in m  # compatibility field, not the label
        u = decode_update(m[HEADER_LEN:], ctx)
        assert u.mp_unreach is not None
        out.extend(u.mp_unreach.nlri)
    assert [(n.key, n.labels) for n in out] == [(r.key, ()) for r in routes]


def test_vpnv6_addpath_and_ipv6_nexthop_with_link_local() -> None:
    ctx = CodecContext(addpath=frozenset({Family(*VPNV6)}))
    routes = [VPNv6Prefix.from_str("65000:1:2001:db8::/64", [100, 200], path_id=p) for p in (1, 2)]
    nh, ll = IPv6Address("2001:db8::1"), IPv6Address("fe80::1")
    (m,) = pack_announcements(VPNV6, PathAttributes(), nh, routes, ctx, ll)
    u = decode_update(m[HEADER_LEN:], ctx)
    assert u.mp_reach is not None
    assert (u.mp_reach.next_hop, u.mp_reach.link_local) == (nh, ll)
    assert u.mp_reach.nlri == routes
