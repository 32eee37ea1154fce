"""Route Target Constraint (RFC 4684) in Adj-RIB-Out, and the filter itself."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from test_rib_out_common import LOCAL, attrs, out_peer, peer, sent_routes, setup, vpn

from vpe.bgp.wire.attributes import RouteTarget
from vpe.bgp.wire.constants import RTC, VPNV4
from vpe.bgp.wire.nlri import RouteTargetMembership
from vpe.rib import PeerInfo, Rib, RibChange
from vpe.rib.adj_rib_out import AdjRibOut
from vpe.rib.rtc import RtcFilter, local_rtc_routes

C1, C2, C3 = peer(2, client=True), peer(3, client=True), peer(4, client=True)
N1 = peer(5)
NH = ip_address("198.51.100.1")
RT1, RT2, RT3 = "target:65000:1", "target:65000:2", "target:65001:7"
R1 = "65000:1:203.0.113.0/24"  # carries RT1
R2 = "65000:2:198.51.100.0/24"  # carries RT2
R3 = "65000:3:192.0.2.0/24"  # carries RT3


def load_vpn(rib: Rib) -> list[bytes]:
    keys = rib.announce(N1, VPNV4, attrs(rts=(RT1,)), NH, [vpn("203.0.113.0/24", rd="65000:1")])
    keys += rib.announce(N1, VPNV4, attrs(rts=(RT2,)), NH, [vpn("198.51.100.0/24", rd="65000:2")])
    keys += rib.announce(N1, VPNV4, attrs(rts=(RT3,)), NH, [vpn("192.0.2.0/24", rd="65000:3")])
    return keys


def membership(rib: Rib, aro: AdjRibOut, who: PeerInfo, *routes: RouteTargetMembership) -> list[bytes]:
    """``who`` replaces its RTC routes by ``routes``; returns the re-filtering messages."""
    adj = rib.adj_rib_in(who.address, RTC)
    old = list(adj.nlris()) if adj is not None else []
    keys = rib.withdraw(who, RTC, old)
    keys += rib.announce(who, RTC, attrs(rts=()), who.address, list(routes))
    aro.on_change(RibChange(RTC, tuple(dict.fromkeys(keys))))
    return aro.rtc_changed(who.address)


def rtm(rt: str, asn: int = 65000) -> RouteTargetMembership:
    return RouteTargetMembership.from_parts(asn, rt)


def test_rtc_peer_with_no_membership_gets_no_vpn_routes() -> None:
    rib, aro = setup()
    load_vpn(rib)
    p = out_peer(C1, (VPNV4, RTC), rtc=True)
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert s.prefixes() == set() and s.eor == [RTC, VPNV4]


def test_peer_without_rtc_gets_every_vpn_route() -> None:
    rib, aro = setup()
    load_vpn(rib)
    p = out_peer(C1, (VPNV4, RTC), rtc=False)
    assert sent_routes(aro.peer_up(p), p.ctx).prefixes() == {R1, R2, R3}


def test_exact_route_target_and_membership_change() -> None:
    rib, aro = setup()
    load_vpn(rib)
    p = out_peer(C1, (VPNV4, RTC), rtc=True)
    aro.peer_up(p)
    s = sent_routes(membership(rib, aro, C1, rtm(RT1)), p.ctx)
    assert s.prefixes() == {R1} and not s.withdrawn
    assert aro.sent(C1.address, VPNV4) == 1
    # RT1 -> RT2 and RT3: R1 withdrawn, R2 and R3 announced
    s = sent_routes(membership(rib, aro, C1, rtm(RT2), rtm(RT3, asn=65001)), p.ctx)
    assert s.withdrawn_prefixes() == {R1} and s.prefixes() == {R2, R3}
    assert aro.sent(C1.address, VPNV4) == 2
    # unchanged membership: nothing to do
    assert aro.rtc_changed(C1.address) == []
    # new VPN routes follow the filter
    keys = rib.announce(N1, VPNV4, attrs(rts=(RT1, RT2)), NH, [vpn("198.18.0.0/24", rd="65000:9")])
    keys += rib.announce(N1, VPNV4, attrs(rts=(RT1,)), NH, [vpn("198.18.1.0/24", rd="65000:9")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert sent_routes(out[C1.address], p.ctx).prefixes() == {"65000:9:198.18.0.0/24"}


def test_default_membership_gets_everything() -> None:
    rib, aro = setup()
    load_vpn(rib)
    p = out_peer(C1, (VPNV4, RTC), rtc=True)
    aro.peer_up(p)
    s = sent_routes(membership(rib, aro, C1, RouteTargetMembership.default()), p.ctx)
    assert s.prefixes() == {R1, R2, R3}
    s = sent_routes(membership(rib, aro, C1), p.ctx)
    assert s.withdrawn_prefixes() == {R1, R2, R3}
    assert aro.sent(C1.address, VPNV4) == 0


def test_peers_with_equal_membership_share_a_group() -> None:
    rib, aro = setup()
    load_vpn(rib)
    peers = {c: out_peer(c, (VPNV4, RTC), rtc=True) for c in (C1, C2, C3)}
    for p in peers.values():
        aro.peer_up(p)
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address, C3.address}
    membership(rib, aro, C1, rtm(RT1))
    membership(rib, aro, C2, rtm(RT1))
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address}
    assert aro.group_of(C3.address) == (C3.address,)
    keys = rib.announce(N1, VPNV4, attrs(rts=(RT1,)), NH, [vpn("198.18.0.0/24", rd="65000:9")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert out[C1.address][0] is out[C2.address][0]
    assert C3.address not in out
    # leaving the group: C2 goes back to an empty membership
    s = sent_routes(membership(rib, aro, C2), peers[C2].ctx)
    assert s.withdrawn_prefixes() == {R1, "65000:9:198.18.0.0/24"}
    assert set(aro.group_of(C2.address)) == {C2.address, C3.address}


def test_rtc_routes_are_reflected_first() -> None:
    rib, aro = setup()
    p2 = out_peer(C2, (VPNV4, RTC), rtc=True)
    aro.peer_up(p2)
    rib.announce(LOCAL, RTC, attrs(rts=(), lp=None), None, local_rtc_routes(65000, [RT2]))
    rib.announce(C1, RTC, attrs(rts=()), C1.address, [rtm(RT1)])
    out = aro.on_change(RibChange(RTC, tuple(rib.loc_rib(RTC).keys())))
    s = sent_routes(out[C2.address], p2.ctx)
    assert s.prefixes(RTC) == {str(rtm(RT1)), str(rtm(RT2))}
    p1 = out_peer(C1, (VPNV4, RTC), rtc=True)
    s1 = sent_routes(aro.peer_up(p1), p1.ctx)
    assert s1.prefixes(RTC) == {str(rtm(RT2))}  # not its own back
    assert isinstance(s1.updates[0].mp_reach.nlri[0], RouteTargetMembership)  # type: ignore[union-attr]
    assert s1.eor == [RTC, VPNV4]


def test_other_families_survive_a_group_move() -> None:
    rib, aro = setup()
    load_vpn(rib)
    rib.announce(C3, RTC, attrs(rts=()), C3.address, [rtm(RT3)])
    p = out_peer(C1, (VPNV4, RTC), rtc=True)
    first = sent_routes(aro.peer_up(p), p.ctx)
    assert first.prefixes(RTC) == {str(rtm(RT3))}
    membership(rib, aro, C1, rtm(RT1))
    assert aro.sent(C1.address, RTC) == 1
    assert sent_routes(aro.refresh(C1.address, RTC), p.ctx).prefixes(RTC) == {str(rtm(RT3))}


# -- the filter ---------------------------------------------------------------


def octets(rt: str) -> bytes:
    return RouteTarget.from_str(rt).encode()


@pytest.mark.parametrize(
    ("members", "rts", "expected"),
    [
        ([], [RT1], False),
        ([RouteTargetMembership.default()], [], True),
        ([RouteTargetMembership.default()], [RT1], True),
        ([rtm(RT1)], [RT1], True),
        ([rtm(RT1)], [RT2], False),
        ([rtm(RT1)], [RT2, RT1], True),
        ([rtm(RT1, asn=4200000000)], [RT1], True),  # origin AS does not matter
        ([rtm(RT1)], [], False),
        ([RouteTargetMembership.from_parts(65000, None)], [RT3], True),  # AS only: any RT
        ([RouteTargetMembership.from_parts(65000, octets(RT1), 32)], [RT2], True),  # type+65000
        ([RouteTargetMembership.from_parts(65000, octets(RT1), 32)], [RT3], False),  # 65001
        ([RouteTargetMembership.from_parts(65000, octets(RT1), 60)], [RT1], True),
        ([RouteTargetMembership.from_parts(65000, octets(RT1), 63)], [RT2], False),  # last bit differs
        ([RouteTargetMembership.from_parts(65000, octets(RT1), 62)], [RT2], True),
    ],
)
def test_rtc_filter(members: list[RouteTargetMembership], rts: list[str], expected: bool) -> None:
    f = RtcFilter(frozenset(m.key for m in members))
    assert f.matches([octets(rt) for rt in rts]) is expected


def test_local_rtc_routes() -> None:
    routes = local_rtc_routes(65000, [RT1, "65000:2", RouteTarget.from_str(RT1), octets(RT3)])
    assert [str(r) for r in routes] == [
        str(rtm(RT1)),
        str(rtm(RT2)),
        str(rtm(RT3)),
    ]
    assert all(r.prefix_len == 96 and r.origin_as == 65000 for r in routes)
    with pytest.raises(ValueError):
        local_rtc_routes(65000, [b"\x00\x02"])


# -- many RTC peers: work follows the interested groups (issue 15) -------------------------


def test_route_changing_its_route_target_moves_between_narrow_groups() -> None:
    """A destination whose RT changes reaches the group of the new RT and is
    withdrawn from the group of the old one, though the index finds them by RT."""
    rib, aro = setup()
    load_vpn(rib)
    p1, p2 = out_peer(C1, (VPNV4, RTC), rtc=True), out_peer(C2, (VPNV4, RTC), rtc=True)
    aro.peer_up(p1)
    aro.peer_up(p2)
    assert sent_routes(membership(rib, aro, C1, rtm(RT1)), p1.ctx).prefixes() == {R1}
    assert sent_routes(membership(rib, aro, C2, rtm(RT2)), p2.ctx).prefixes() == {R2}
    keys = rib.announce(N1, VPNV4, attrs(rts=(RT2,)), NH, [vpn("203.0.113.0/24", rd="65000:1")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert sent_routes(out[C1.address], p1.ctx).withdrawn_prefixes() == {R1}
    assert sent_routes(out[C2.address], p2.ctx).prefixes() == {R1}
    keys = rib.withdraw(N1, VPNV4, [vpn("203.0.113.0/24", rd="65000:1")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert set(out) == {C2.address}
    assert sent_routes(out[C2.address], p2.ctx).withdrawn_prefixes() == {R1}
    assert aro.sent(C1.address, VPNV4) == 0 and aro.sent(C2.address, VPNV4) == 1


def test_work_per_route_does_not_grow_with_uninterested_rtc_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys looked at by Adj-RIB-Out for one VPN route: the same with 3 and with
    40 RTC peers, each importing its own RT (today: once per update group)."""
    looked: list[int] = []
    plain = AdjRibOut._process_plain

    def counting(fs: object, keys: object, *a: object) -> None:
        keys = list(keys)  # type: ignore[call-overload]
        looked.append(len(keys))
        plain(fs, keys, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(AdjRibOut, "_process_plain", staticmethod(counting))

    def work_with(n: int) -> int:
        rib, aro = setup()
        for i in range(n):
            who = peer(10 + i, client=True)
            p = out_peer(who, (VPNV4, RTC), rtc=True)
            aro.peer_up(p)
            membership(rib, aro, who, rtm(f"target:65000:{100 + i}"))
        looked.clear()
        keys = rib.announce(N1, VPNV4, attrs(rts=("target:65000:100",)), NH, [vpn("198.18.5.0/24", rd="65000:5")])
        out = aro.on_change(RibChange(VPNV4, tuple(keys)))
        assert set(out) == {peer(10, client=True).address}
        return sum(looked)

    assert work_with(40) == work_with(3) == 1


def test_rtc_routes_are_processed_once_for_groups_that_differ_by_filter_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RTC peers with different memberships are different update groups, but their
    view of the RTC family is the same: computed once per change, and correct for
    a peer joining later and after a peer leaves."""
    rib, aro = setup()
    ps = [out_peer(peer(10 + i, client=True), (VPNV4, RTC), rtc=True) for i in range(3)]
    for i, p in enumerate(ps[:2]):
        aro.peer_up(p)
        membership(rib, aro, p.info, rtm(f"target:65000:{100 + i}"))
    calls: list[int] = []
    plain = AdjRibOut._process_plain

    def counting(fs: object, keys: object, *a: object) -> None:
        calls.append(1)
        plain(fs, keys, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(AdjRibOut, "_process_plain", staticmethod(counting))
    keys = rib.announce(N1, RTC, attrs(rts=()), NH, [rtm("target:65000:555")])
    out = aro.on_change(RibChange(RTC, tuple(keys)))
    assert len(calls) == 1
    assert set(out) == {ps[0].address, ps[1].address}
    assert out[ps[0].address] == out[ps[1].address]
    # a third peer (another filter) joins: it gets the whole RTC table
    msgs = aro.peer_up(ps[2])
    assert aro.sent(ps[2].address, RTC) == 3  # 555 and the two others' (a member is not sent its own)
    assert aro.sent(ps[0].address, RTC) == aro.sent(ps[1].address, RTC) == 2
    assert len(sent_routes(msgs, ps[2].ctx).announced) >= 1
    membership(rib, aro, ps[2].info, rtm("target:65000:102"))
    aro.peer_down(ps[0].address)
    keys = rib.withdraw(N1, RTC, [rtm("target:65000:555")])
    out = aro.on_change(RibChange(RTC, tuple(keys)))
    assert set(out) == {ps[1].address, ps[2].address}
    assert aro.sent(ps[1].address, RTC) == aro.sent(ps[2].address, RTC) == 2  # 555 withdrawn; a member is not sent its own
