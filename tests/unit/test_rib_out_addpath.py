"""Adj-RIB-Out with ADD-PATH (RFC 7911): all paths / best N, our own stable path ids."""

from __future__ import annotations

from ipaddress import ip_address

from test_rib_out_common import attrs, med, out_peer, peer, sent_routes, setup, vpn

from vpe.bgp.wire.constants import VPNV4
from vpe.rib import RibChange
from vpe.rib import attrs as A

C1, C2 = peer(2, client=True), peer(3, client=True)
N1, N2, N3 = peer(5), peer(6), peer(7)
NH = ip_address("198.51.100.1")
P = "65000:1:203.0.113.0/24"


def ids_by_origin(s: object) -> dict[object, int]:
    """path id -> ORIGINATOR_ID of what a client was sent for P."""
    return {
        A.originator_id(at): pid
        for (_, prefix, pid), (at, _, _) in s.announced.items()  # type: ignore[attr-defined]
        if prefix == P
    }


def test_all_paths_with_distinct_stable_ids() -> None:
    rib, aro = setup()
    p = out_peer(C1, addpath={VPNV4: "all"})
    aro.peer_up(p)
    n = vpn("203.0.113.0/24")
    for i, src in enumerate((N1, N2, N3)):
        rib.announce(src, VPNV4, attrs(lp=100 + i), NH, [n])
    # (the Rib reports best-path changes only; with add-path the engine names the key)
    s = sent_routes(aro.on_change(RibChange(VPNV4, (n.key,)))[C1.address], p.ctx)
    by = ids_by_origin(s)
    assert set(by) == {N1.router_id, N2.router_id, N3.router_id}
    assert sorted(by.values()) == [1, 2, 3]
    assert aro.sent(C1.address, VPNV4) == 3
    # N2 re-announces with new attributes: same path id, nothing else sent
    rib.announce(N2, VPNV4, attrs(med(9), lp=101), NH, [n])
    s2 = sent_routes(aro.on_change(RibChange(VPNV4, (n.key,)))[C1.address], p.ctx)
    assert list(s2.announced) == [(VPNV4, P, by[N2.router_id])] and not s2.withdrawn
    assert A.med(s2.one(P)[0]) == 9
    # N1 withdraws: exactly its id is withdrawn
    rib.withdraw(N1, VPNV4, [n])
    s3 = sent_routes(aro.on_change(RibChange(VPNV4, (n.key,)))[C1.address], p.ctx)
    assert s3.withdrawn == {(VPNV4, P, by[N1.router_id])} and not s3.announced
    assert aro.sent(C1.address, VPNV4) == 2
    # a newcomer takes the freed id; the others keep theirs
    rib.announce(N1, VPNV4, attrs(lp=50), NH, [n])
    s4 = sent_routes(aro.on_change(RibChange(VPNV4, (n.key,)))[C1.address], p.ctx)
    assert list(s4.announced) == [(VPNV4, P, by[N1.router_id])]
    # full table and refresh use the same ids
    r = sent_routes(aro.refresh(C1.address, VPNV4), p.ctx)
    assert ids_by_origin(r) == by


def test_best_two() -> None:
    rib, aro = setup()
    p = out_peer(C1, addpath={VPNV4: 2})
    plain = out_peer(C2)
    aro.peer_up(p)
    aro.peer_up(plain)
    n = vpn("203.0.113.0/24")
    for src, lp in ((N1, 300), (N2, 200), (N3, 100)):
        rib.announce(src, VPNV4, attrs(lp=lp), NH, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    s = sent_routes(out[C1.address], p.ctx)
    by = ids_by_origin(s)
    assert set(by) == {N1.router_id, N2.router_id}
    # the best-path-only peer gets just the best
    sp = sent_routes(out[C2.address], plain.ctx)
    assert [A.originator_id(at) for at, _, _ in sp.announced.values()] == [N1.router_id]
    # the best goes away: its id is withdrawn, the third path comes in with a new id
    rib.withdraw(N1, VPNV4, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    s2 = sent_routes(out[C1.address], p.ctx)
    assert s2.withdrawn == {(VPNV4, P, by[N1.router_id])}
    new = ids_by_origin(s2)
    assert set(new) == {N3.router_id} and new[N3.router_id] != by[N2.router_id]
    assert aro.sent(C1.address, VPNV4) == 2
    # the plain peer gets an implicit replacement (no withdrawal)
    sp2 = sent_routes(out[C2.address], plain.ctx)
    assert not sp2.withdrawn and A.originator_id(sp2.one(P)[0]) == N2.router_id


def test_addpath_split_horizon_skips_only_the_peers_own_path() -> None:
    rib, aro = setup()
    p1 = out_peer(C1, addpath={VPNV4: "all"})
    p2 = out_peer(C2, addpath={VPNV4: "all"})
    aro.peer_up(p1)
    aro.peer_up(p2)
    n = vpn("203.0.113.0/24")
    rib.announce(C1, VPNV4, attrs(lp=300), NH, [n])
    rib.announce(N1, VPNV4, attrs(lp=200), NH, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    s1 = sent_routes(out[C1.address], p1.ctx)
    s2 = sent_routes(out[C2.address], p2.ctx)
    assert set(ids_by_origin(s1)) == {N1.router_id}
    assert set(ids_by_origin(s2)) == {C1.router_id, N1.router_id}
    # ids agree between the two peers
    assert ids_by_origin(s1)[N1.router_id] == ids_by_origin(s2)[N1.router_id]
    # C1's own path goes away: C1 hears nothing new, C2 gets a withdrawal of that id
    rib.withdraw(C1, VPNV4, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    assert C1.address not in out
    assert sent_routes(out[C2.address], p2.ctx).withdrawn == {(VPNV4, P, ids_by_origin(s2)[C1.router_id])}
    # and a full table for a client coming up later skips its own path too
    rib.announce(C2, VPNV4, attrs(lp=400), NH, [n])
    aro.on_change(RibChange(VPNV4, (n.key,)))
    aro.peer_down(C2.address)
    s = sent_routes(aro.peer_up(p2), p2.ctx)
    assert set(ids_by_origin(s)) == {N1.router_id}


def test_addpath_send_without_negotiated_addpath_is_best_only() -> None:
    rib, aro = setup()
    p = out_peer(C1, addpath={VPNV4: "all"})
    p = type(p)(p.address, p.info, p.families, type(p.ctx)(), p.addpath_send)  # no path ids on the wire
    aro.peer_up(p)
    n = vpn("203.0.113.0/24")
    rib.announce(N1, VPNV4, attrs(lp=300), NH, [n])
    rib.announce(N2, VPNV4, attrs(lp=200), NH, [n])
    s = sent_routes(aro.on_change(RibChange(VPNV4, (n.key,)))[C1.address], p.ctx)
    assert list(s.announced) == [(VPNV4, P, 0)]


def test_third_path_reaches_addpath_peer_through_the_rib() -> None:
    """With report_all_paths, a path that is not best still triggers on_change (ADD-PATH all)."""
    from ipaddress import IPv4Address

    from vpe.bgp.wire.attributes.as_path import AsPath
    from vpe.bgp.wire.attributes.base import PathAttributes
    from vpe.bgp.wire.attributes.origin import Origin
    from vpe.bgp.wire.attributes.simple import LocalPref
    from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
    from vpe.rib import Rib
    from vpe.rib.decision import DecisionOptions
    from vpe.rib.path import PeerInfo

    rib = Rib(DecisionOptions(report_all_paths=True))
    seen: list[RibChange] = []
    rib.subscribe(seen.append)
    key_count_before = len(seen)
    a = PeerInfo(IPv4Address("127.0.0.1"), IPv4Address("198.18.0.1"), 65000, ibgp=True)
    b = PeerInfo(IPv4Address("127.0.0.2"), IPv4Address("198.18.0.2"), 65000, ibgp=True)
    c = PeerInfo(IPv4Address("127.0.0.3"), IPv4Address("198.18.0.3"), 65000, ibgp=True)
    n = VPNv4Prefix.from_str("65000:1:192.0.2.0/24", labels=(16,))
    attrs = PathAttributes([Origin(0), AsPath.sequence(), LocalPref(200)])
    worse = PathAttributes([Origin(0), AsPath.sequence(), LocalPref(50)])
    rib.announce(a, VPNV4, attrs, IPv4Address("198.18.0.1"), [n])
    rib.announce(b, VPNV4, worse, IPv4Address("198.18.0.2"), [n])
    rib.announce(c, VPNV4, worse, IPv4Address("198.18.0.3"), [n])
    assert len(seen) - key_count_before == 3
