"""Adj-RIB-Out: full tables, diffs, reflection rules, outbound attributes, update groups."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

import pytest
from test_rib_out_common import (
    CLUSTER_ID,
    LOCAL,
    LOCAL_ASN,
    NH_SELF,
    attrs,
    med,
    out_peer,
    peer,
    sent_routes,
    setup,
    vpn,
)

from vpe.bgp.wire.attributes import AsPath, OriginatorId, PathAttributes, UnknownAttribute
from vpe.bgp.wire.constants import IPV4_UNICAST, RTC, VPNV4, AttrCode, AttrFlag
from vpe.bgp.wire.nlri import IPv4Prefix
from vpe.bgp.wire.update import end_of_rib
from vpe.rib import PeerInfo, RibChange
from vpe.rib import attrs as A

C1, C2, C3 = peer(2, client=True), peer(3, client=True), peer(4, client=True)
N1, N2 = peer(5), peer(6)
E1, E2 = peer(7, asn=65001), peer(8, asn=65002)
NH = ip_address("198.51.100.1")


def test_peer_up_sends_the_table_then_end_of_rib() -> None:
    rib, aro = setup()
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("203.0.113.0/24"), vpn("203.0.113.128/25", 101)])
    p = out_peer(C1, (VPNV4, IPV4_UNICAST, RTC))
    msgs = aro.peer_up(p)
    s = sent_routes(msgs, p.ctx)
    assert s.eor == [RTC, IPV4_UNICAST, VPNV4]  # RTC first, End-of-RIB after each family
    assert msgs[-1] == end_of_rib(VPNV4)
    assert s.prefixes() == {"65000:1:203.0.113.0/24", "65000:1:203.0.113.128/25"}
    at, nh, labels = s.one("65000:1:203.0.113.128/25")
    assert nh == NH and labels == (101,)
    assert aro.sent(C1.address, VPNV4) == 2
    assert {str(n) for n, _, _ in aro.advertised(C1.address, VPNV4)} == s.prefixes()


def test_one_update_packs_many_routes() -> None:
    rib, aro = setup()
    p = out_peer(C1)
    aro.peer_up(p)
    keys = rib.announce(N1, VPNV4, attrs(), NH, [vpn(f"198.18.{i}.0/24") for i in range(200)])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert len(out[C1.address]) == 1
    assert len(sent_routes(out[C1.address], p.ctx).prefixes()) == 200


def test_only_changed_routes_are_sent() -> None:
    rib, aro = setup()
    p = out_peer(C1)
    aro.peer_up(p)
    a, b = vpn("203.0.113.0/24"), vpn("203.0.113.128/25")
    keys = rib.announce(N1, VPNV4, attrs(), NH, [a, b])
    aro.on_change(RibChange(VPNV4, tuple(keys)))
    # nothing changed: nothing sent
    assert aro.on_change(RibChange(VPNV4, (a.key, b.key))) == {}
    # new attributes for one route: that route only
    rib.announce(N1, VPNV4, attrs(med(5)), NH, [vpn("203.0.113.0/24")])
    out = aro.on_change(RibChange(VPNV4, (a.key, b.key)))
    s = sent_routes(out[C1.address], p.ctx)
    assert s.prefixes() == {"65000:1:203.0.113.0/24"} and not s.withdrawn
    assert A.med(s.one("65000:1:203.0.113.0/24")[0]) == 5
    # a new label is a change too
    rib.announce(N1, VPNV4, attrs(med(5)), NH, [vpn("203.0.113.0/24", label=999)])
    out = aro.on_change(RibChange(VPNV4, (a.key,)))
    assert sent_routes(out[C1.address], p.ctx).one("65000:1:203.0.113.0/24")[2] == (999,)
    # withdrawn
    keys = rib.withdraw(N1, VPNV4, [b])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    s = sent_routes(out[C1.address], p.ctx)
    assert s.withdrawn_prefixes() == {"65000:1:203.0.113.128/25"} and not s.announced
    assert aro.sent(C1.address, VPNV4) == 1


def test_split_horizon_not_back_to_the_sender() -> None:
    rib, aro = setup()
    peers = [out_peer(c) for c in (C1, C2, C3)]
    for p in peers:
        aro.peer_up(p)
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address, C3.address}
    n = vpn("203.0.113.0/24")
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C1, VPNV4, attrs(), NH, [n]))))
    assert C1.address not in out
    assert out[C2.address] == out[C3.address] and out[C2.address][0] is out[C3.address][0]
    s = sent_routes(out[C2.address], peers[1].ctx)
    at, nh, _ = s.one("65000:1:203.0.113.0/24")
    assert A.originator_id(at) == C1.router_id and A.cluster_list(at) == (CLUSTER_ID,)
    assert nh == NH
    assert aro.sent(C1.address, VPNV4) == 0 and aro.sent(C2.address, VPNV4) == 1
    assert list(aro.advertised(C1.address, VPNV4)) == []
    # a better path from C2: C1 now gets it, C2 must not keep C1's (withdrawn), C3 switches
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C2, VPNV4, attrs(lp=200), NH, [n]))))
    s1 = sent_routes(out[C1.address], peers[0].ctx)
    assert A.originator_id(s1.one("65000:1:203.0.113.0/24")[0]) == C2.router_id
    s2 = sent_routes(out[C2.address], peers[1].ctx)
    assert s2.withdrawn_prefixes() == {"65000:1:203.0.113.0/24"} and not s2.announced
    s3 = sent_routes(out[C3.address], peers[2].ctx)
    assert A.originator_id(s3.one("65000:1:203.0.113.0/24")[0]) == C2.router_id
    # back to C1's path
    out = aro.on_change(RibChange(VPNV4, tuple(rib.withdraw(C2, VPNV4, [n]))))
    assert sent_routes(out[C1.address], peers[0].ctx).withdrawn_prefixes() == {"65000:1:203.0.113.0/24"}
    assert sent_routes(out[C2.address], peers[1].ctx).prefixes() == {"65000:1:203.0.113.0/24"}
    assert aro.sent(C1.address, VPNV4) == 0 and aro.sent(C2.address, VPNV4) == 1
    assert aro.sent(C3.address, VPNV4) == 1
    # and gone
    out = aro.on_change(RibChange(VPNV4, tuple(rib.withdraw(C1, VPNV4, [n]))))
    assert C1.address not in out
    assert sent_routes(out[C2.address], peers[1].ctx).withdrawn_prefixes() == {"65000:1:203.0.113.0/24"}
    assert all(aro.sent(c.address, VPNV4) == 0 for c in (C1, C2, C3))


def test_split_horizon_member_gets_nothing_in_its_full_table() -> None:
    rib, aro = setup()
    rib.announce(C1, VPNV4, attrs(), NH, [vpn("203.0.113.0/24")])
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("198.51.100.0/24")])
    p2, p1 = out_peer(C2), out_peer(C1)
    s2 = sent_routes(aro.peer_up(p2), p2.ctx)
    s1 = sent_routes(aro.peer_up(p1), p1.ctx)
    assert s2.prefixes() == {"65000:1:203.0.113.0/24", "65000:1:198.51.100.0/24"}
    assert s1.prefixes() == {"65000:1:198.51.100.0/24"}
    assert s1.eor == s2.eor == [VPNV4]


def test_not_to_the_router_named_in_originator_id() -> None:
    rib, aro = setup()
    p2, p3 = out_peer(C2), out_peer(C3)
    aro.peer_up(p2)
    aro.peer_up(p3)
    at = attrs(OriginatorId(C2.router_id))
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(N1, VPNV4, at, NH, [vpn("203.0.113.0/24")]))))
    assert C2.address not in out
    assert sent_routes(out[C3.address], p3.ctx).prefixes() == {"65000:1:203.0.113.0/24"}


# source -> receiver: sent? (route reflector rules, RFC 4456)
MATRIX = [
    (C1, C2, True),
    (C1, N2, True),
    (C1, E2, True),
    (N1, C2, True),
    (N1, N2, False),
    (N1, E2, True),
    (E1, C2, True),
    (E1, N2, True),
    (E1, E2, True),
    (LOCAL, C2, True),
    (LOCAL, N2, True),
    (LOCAL, E2, True),
]


@pytest.mark.parametrize(("src", "dst", "expected"), MATRIX, ids=lambda v: getattr(v, "rr_client", v))
def test_reflection_matrix(src: PeerInfo, dst: PeerInfo, expected: bool) -> None:
    rib, aro = setup()
    p = out_peer(dst)
    aro.peer_up(p)
    path = (src.asn,) if src.ebgp else ()
    keys = rib.announce(src, VPNV4, attrs(path=path, lp=None if src.ebgp else 100), NH, [vpn("203.0.113.0/24")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert (dst.address in out) is expected
    if not expected:
        return
    s = sent_routes(out[dst.address], p.ctx)
    at, nh, _ = s.one("65000:1:203.0.113.0/24")
    reflected = src.ibgp and not src.local and dst.ibgp
    assert (A.originator_id(at) is not None) is reflected
    assert (AttrCode.CLUSTER_LIST in at) is reflected
    if dst.ebgp:
        assert nh == NH_SELF
        assert AttrCode.LOCAL_PREF not in at
        assert at[AttrCode.AS_PATH] == AsPath.sequence(LOCAL_ASN, *path)
    else:
        assert nh == NH
        assert A.local_pref(at, default=-1) == 100
        assert at[AttrCode.AS_PATH] == AsPath.sequence(*path)


def test_ebgp_outbound_attributes() -> None:
    rib, aro = setup()
    p = out_peer(E2)
    aro.peer_up(p)
    # learned from another AS, with MED: MED is not passed on
    at = attrs(med(7), path=(65001,), lp=None)
    keys = rib.announce(E1, VPNV4, at, NH, [vpn("203.0.113.0/24")])
    # reflected from inside our AS: ORIGINATOR_ID / CLUSTER_LIST / LOCAL_PREF dropped
    at2 = attrs(med(8), OriginatorId(IPv4Address("192.0.2.50")), path=(65009,), lp=300)
    at2 = at2.replace(*[a for a in A.with_cluster_id(at2, IPv4Address("192.0.2.99"))])
    keys += rib.announce(N1, VPNV4, at2, NH, [vpn("198.51.100.0/24")])
    # originated here (empty AS_PATH): MED kept
    keys += rib.announce(LOCAL, VPNV4, attrs(med(9), lp=None), None, [vpn("192.0.2.0/24")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    s = sent_routes(out[E2.address], p.ctx)
    a1, nh1, _ = s.one("65000:1:203.0.113.0/24")
    assert a1[AttrCode.AS_PATH] == AsPath.sequence(LOCAL_ASN, 65001)
    assert A.med(a1) is None and nh1 == NH_SELF
    a2, _, _ = s.one("65000:1:198.51.100.0/24")
    for code in (AttrCode.LOCAL_PREF, AttrCode.ORIGINATOR_ID, AttrCode.CLUSTER_LIST, AttrCode.MULTI_EXIT_DISC):
        assert code not in a2
    assert a2[AttrCode.AS_PATH] == AsPath.sequence(LOCAL_ASN, 65009)
    a3, nh3, _ = s.one("65000:1:192.0.2.0/24")
    assert A.med(a3) == 9 and a3[AttrCode.AS_PATH] == AsPath.sequence(LOCAL_ASN) and nh3 == NH_SELF
    assert A.route_targets(a3) == A.route_targets(attrs())


def test_not_to_an_ebgp_peer_whose_as_is_on_the_path() -> None:
    rib, aro = setup()
    p = out_peer(E2)
    aro.peer_up(p)
    keys = rib.announce(E1, VPNV4, attrs(path=(65001, 65002), lp=None), NH, [vpn("203.0.113.0/24")])
    assert aro.on_change(RibChange(VPNV4, tuple(keys))) == {}


def test_ebgp_routes_to_ibgp_get_local_pref_and_keep_next_hop() -> None:
    rib, aro = setup()
    p = out_peer(N2)
    aro.peer_up(p)
    keys = rib.announce(E1, VPNV4, attrs(med(3), path=(65001,), lp=None), NH, [vpn("203.0.113.0/24")])
    s = sent_routes(aro.on_change(RibChange(VPNV4, tuple(keys)))[N2.address], p.ctx)
    at, nh, _ = s.one("65000:1:203.0.113.0/24")
    assert A.local_pref(at, default=-1) == 100 and A.med(at) == 3 and nh == NH


def test_local_route_without_next_hop_uses_next_hop_self() -> None:
    rib, aro = setup()
    p = out_peer(C2)
    q = out_peer(C3, next_hop_self=None)
    aro.peer_up(p)
    aro.peer_up(q)
    keys = rib.announce(LOCAL, VPNV4, attrs(lp=None), None, [vpn("192.0.2.0/24")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    at, nh, _ = sent_routes(out[C2.address], p.ctx).one("65000:1:192.0.2.0/24")
    assert nh == NH_SELF and A.local_pref(at, default=-1) == 100 and A.originator_id(at) is None
    assert C3.address not in out  # no next hop to give it


def test_unknown_transitive_attribute_gets_partial_bit() -> None:
    rib, aro = setup()
    p = out_peer(C2)
    aro.peer_up(p)
    unknown = UnknownAttribute(99, AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE, b"\x01\x02")
    keys = rib.announce(N1, VPNV4, attrs(unknown), NH, [vpn("203.0.113.0/24")])
    at, _, _ = sent_routes(aro.on_change(RibChange(VPNV4, tuple(keys)))[C2.address], p.ctx).one(
        "65000:1:203.0.113.0/24"
    )
    assert at[99].flags & AttrFlag.PARTIAL


def test_ipv4_unicast_next_hop_attribute() -> None:
    rib, aro = setup()
    p = out_peer(E2, (IPV4_UNICAST,))
    q = out_peer(C2, (IPV4_UNICAST,))
    aro.peer_up(p)
    aro.peer_up(q)
    keys = rib.announce(N1, IPV4_UNICAST, attrs(rts=()), NH, [IPv4Prefix.from_str("203.0.113.0/24")])
    out = aro.on_change(RibChange(IPV4_UNICAST, tuple(keys)))
    sp = sent_routes(out[E2.address], p.ctx)
    at, nh, _ = sp.one("203.0.113.0/24", IPV4_UNICAST)
    assert nh == NH_SELF and sp.updates[0].mp_reach is None
    sq = sent_routes(out[C2.address], q.ctx)
    assert sq.one("203.0.113.0/24", IPV4_UNICAST)[1] == NH


def test_update_groups_share_bytes_and_split_on_policy() -> None:
    rib, aro = setup()
    same = [out_peer(c) for c in (C1, C2, C3)]
    two_octet = out_peer(peer(9, client=True), asn4=False)
    other_nh = out_peer(peer(10, client=True), next_hop_self=ip_address("192.0.2.77"))
    nonclient = out_peer(N2)
    for p in (*same, two_octet, other_nh, nonclient):
        aro.peer_up(p)
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address, C3.address}
    assert aro.group_of(two_octet.address) == (two_octet.address,)
    assert aro.group_of(other_nh.address) == (other_nh.address,)
    assert aro.group_of(N2.address) == (N2.address,)
    keys = rib.announce(E1, VPNV4, attrs(path=(4200000001,), lp=None), NH, [vpn(f"198.18.0.{i}/32") for i in range(50)])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    first = out[C1.address]
    for p in same[1:]:
        assert len(out[p.address]) == len(first)
        assert all(a is b for a, b in zip(out[p.address], first, strict=True))
    assert all(m is not first[0] for m in out[two_octet.address])
    # the 2-octet-AS peer is sent AS_TRANS and AS4_PATH, decoded back to the real path
    s = sent_routes(out[two_octet.address], two_octet.ctx)
    assert s.one("65000:1:198.18.0.1/32")[0][AttrCode.AS_PATH] == AsPath.sequence(4200000001)
    assert sent_routes(first, same[0].ctx).prefixes() == s.prefixes()
    # members coming up later reuse the group's encoded table
    rib2, aro2 = setup()
    rib2.announce(N1, VPNV4, attrs(), NH, [vpn(f"198.18.1.{i}/32") for i in range(10)])
    t1 = aro2.peer_up(same[0])
    t2 = aro2.peer_up(same[1])
    assert len(t1) == len(t2) and all(a is b for a, b in zip(t1[:-1], t2[:-1], strict=True))


def test_group_splits_member_specific_messages_only_for_its_own_routes() -> None:
    rib, aro = setup()
    peers = [out_peer(c) for c in (C1, C2, C3)]
    for p in peers:
        aro.peer_up(p)
    keys = rib.announce(N1, VPNV4, attrs(), NH, [vpn(f"198.18.0.{i}/32") for i in range(20)])
    keys += rib.announce(C1, VPNV4, attrs(med(1)), NH, [vpn("203.0.113.0/24")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    s1 = sent_routes(out[C1.address], peers[0].ctx)
    s2 = sent_routes(out[C2.address], peers[1].ctx)
    assert len(s1.prefixes()) == 20 and len(s2.prefixes()) == 21
    assert out[C1.address][0] is out[C2.address][0]  # the shared part is shared
    assert out[C2.address][-1] is out[C3.address][-1]  # C2 and C3 have the same extra


def test_refresh_and_peer_down_up() -> None:
    rib, aro = setup()
    p = out_peer(C2, (VPNV4, RTC))
    aro.peer_up(p)
    keys = rib.announce(N1, VPNV4, attrs(), NH, [vpn("203.0.113.0/24")])
    aro.on_change(RibChange(VPNV4, tuple(keys)))
    r = sent_routes(aro.refresh(C2.address, VPNV4), p.ctx)
    assert r.prefixes() == {"65000:1:203.0.113.0/24"} and r.eor == [VPNV4]
    assert aro.refresh(C2.address, IPV4_UNICAST) == []
    aro.peer_down(C2.address)
    assert aro.sent(C2.address, VPNV4) == 0 and aro.refresh(C2.address, VPNV4) == []
    assert aro.on_change(RibChange(VPNV4, tuple(keys))) == {}
    # while down, the route changes; on the way up the new state is sent in full
    rib.announce(N1, VPNV4, attrs(med(4)), NH, [vpn("203.0.113.0/24"), vpn("198.51.100.0/24")])
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert s.prefixes() == {"65000:1:203.0.113.0/24", "65000:1:198.51.100.0/24"}
    assert s.eor == [RTC, VPNV4]
    assert A.med(s.one("65000:1:203.0.113.0/24")[0]) == 4


def test_best_path_not_advertisable_means_withdraw() -> None:
    rib, aro = setup()
    p = out_peer(N2)
    aro.peer_up(p)
    n = vpn("203.0.113.0/24")
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C1, VPNV4, attrs(), NH, [n]))))
    assert sent_routes(out[N2.address], p.ctx).prefixes() == {"65000:1:203.0.113.0/24"}
    # a better path from a non-client cannot be reflected to a non-client: withdraw
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(N1, VPNV4, attrs(lp=500), NH, [n]))))
    assert sent_routes(out[N2.address], p.ctx).withdrawn_prefixes() == {"65000:1:203.0.113.0/24"}
    assert aro.sent(N2.address, VPNV4) == 0


def test_reflected_attributes_cached_per_attribute_set() -> None:
    rib, aro = setup()
    p = out_peer(C2)
    aro.peer_up(p)
    shared = attrs()
    keys = rib.announce(N1, VPNV4, shared, NH, [vpn("203.0.113.0/24")])
    keys += rib.announce(N1, VPNV4, shared, ip_address("198.51.100.2"), [vpn("198.51.100.0/24")])
    aro.on_change(RibChange(VPNV4, tuple(keys)))
    outs = {id(a) for _, a, _ in aro.advertised(C2.address, VPNV4)}
    assert len(outs) == 1  # one outbound attribute set for both next hops
    assert isinstance(next(iter(aro.advertised(C2.address, VPNV4)))[1], PathAttributes)
