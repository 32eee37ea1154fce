"""Split horizon inside an update group: members that are also sources (the route-reflector case).

A member's view is the group view minus the entries whose source (peer
address or ORIGINATOR_ID) is that member; these tests check the wire
result for the members involved, that everybody else still shares the very
same message objects, and the O(1) :meth:`AdjRibOut.sent` counters.
"""

from __future__ import annotations

from ipaddress import ip_address

from test_rib_out_common import attrs, med, out_peer, peer, sent_routes, setup, vpn

from vpe.bgp.wire.attributes import OriginatorId
from vpe.bgp.wire.constants import VPNV4
from vpe.rib import RibChange
from vpe.rib import attrs as A

C1, C2, C3, C4 = (peer(n, client=True) for n in (2, 3, 4, 10))
N1 = peer(5)
NH = ip_address("198.51.100.1")
P = "65000:1:203.0.113.0/24"


def test_sender_in_group_gets_nothing_and_the_others_share_bytes() -> None:
    rib, aro = setup()
    peers = [out_peer(c) for c in (C1, C2, C3, C4)]
    for p in peers:
        aro.peer_up(p)
    assert len(aro.group_of(C1.address)) == 4
    routes = [vpn(f"198.18.{i // 256}.{i % 256}/32") for i in range(600)]
    keys = rib.announce(C1, VPNV4, attrs(), NH, routes)
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert C1.address not in out
    first = out[C2.address]
    for c in (C3, C4):
        assert len(out[c.address]) == len(first)
        assert all(a is b for a, b in zip(out[c.address], first, strict=True))
    assert len(sent_routes(first, peers[1].ctx).prefixes()) == 600
    assert aro.sent(C1.address, VPNV4) == 0
    assert aro.sent(C2.address, VPNV4) == 600
    # the whole lot withdrawn: the three others hear it, the sender does not
    out = aro.on_change(RibChange(VPNV4, tuple(rib.withdraw(C1, VPNV4, routes))))
    assert C1.address not in out
    assert len(sent_routes(out[C4.address], peers[3].ctx).withdrawn_prefixes()) == 600
    assert all(aro.sent(c.address, VPNV4) == 0 for c in (C1, C2, C3, C4))


def test_best_moves_from_own_path_to_another_members_and_back() -> None:
    rib, aro = setup()
    peers = {c: out_peer(c) for c in (C1, C2, C3)}
    for p in peers.values():
        aro.peer_up(p)
    n = vpn("203.0.113.0/24")
    # C1's own path is best: C1 gets nothing, the others get it
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C1, VPNV4, attrs(lp=100), NH, [n]))))
    assert C1.address not in out and set(out) == {C2.address, C3.address}
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [0, 1, 1]
    # C2's better path: C1 gets C2's route; C2 gets C1's withdrawn; C3 an implicit replacement
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C2, VPNV4, attrs(lp=200), NH, [n]))))
    s1 = sent_routes(out[C1.address], peers[C1].ctx)
    assert s1.prefixes() == {P} and not s1.withdrawn
    assert A.originator_id(s1.one(P)[0]) == C2.router_id
    s2 = sent_routes(out[C2.address], peers[C2].ctx)
    assert s2.withdrawn_prefixes() == {P} and not s2.announced
    s3 = sent_routes(out[C3.address], peers[C3].ctx)
    assert not s3.withdrawn and A.originator_id(s3.one(P)[0]) == C2.router_id
    assert out[C1.address] == out[C3.address]  # the announcement is one encoding
    assert out[C1.address][0] is out[C3.address][0]
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [1, 0, 1]
    # C2's path worsens below C1's: back to C1's own path
    out = aro.on_change(RibChange(VPNV4, tuple(rib.announce(C2, VPNV4, attrs(lp=50), NH, [n]))))
    s1 = sent_routes(out[C1.address], peers[C1].ctx)
    assert s1.withdrawn_prefixes() == {P} and not s1.announced
    s2 = sent_routes(out[C2.address], peers[C2].ctx)
    assert A.originator_id(s2.one(P)[0]) == C1.router_id and not s2.withdrawn
    assert A.originator_id(sent_routes(out[C3.address], peers[C3].ctx).one(P)[0]) == C1.router_id
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [0, 1, 1]
    # a member coming up now gets the table minus its own route
    aro.peer_down(C1.address)
    assert sent_routes(aro.peer_up(peers[C1]), peers[C1].ctx).prefixes() == set()
    assert aro.sent(C1.address, VPNV4) == 0
    aro.peer_down(C2.address)
    assert sent_routes(aro.peer_up(peers[C2]), peers[C2].ctx).prefixes() == {P}
    assert aro.sent(C2.address, VPNV4) == 1


def test_two_members_excluded_by_originator_id() -> None:
    rib, aro = setup()
    peers = {c: out_peer(c) for c in (C2, C3, C4)}
    for p in peers.values():
        aro.peer_up(p)
    by2 = [vpn(f"198.18.0.{i}/32") for i in range(5)]
    by3 = [vpn(f"198.18.1.{i}/32") for i in range(7)]
    plain = [vpn(f"198.18.2.{i}/32") for i in range(3)]
    keys = rib.announce(N1, VPNV4, attrs(OriginatorId(C2.router_id)), NH, by2)
    keys += rib.announce(N1, VPNV4, attrs(OriginatorId(C3.router_id)), NH, by3)
    keys += rib.announce(N1, VPNV4, attrs(), NH, plain)
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    got = {c: sent_routes(out[c.address], p.ctx) for c, p in peers.items()}
    names = {c: {str(n) for n in ns} for c, ns in ((C2, by2), (C3, by3), (N1, plain))}
    assert got[C2].prefixes() == names[C3] | names[N1]
    assert got[C3].prefixes() == names[C2] | names[N1]
    assert got[C4].prefixes() == names[C2] | names[C3] | names[N1]
    assert [aro.sent(c.address, VPNV4) for c in (C2, C3, C4)] == [10, 8, 15]
    # every member's messages are drawn from the same encodings
    pool = {id(m) for m in out[C4.address]}
    assert all(id(m) in pool for c in (C2, C3) for m in out[c.address])
    # C2's originated routes now name C3: C2 learns them, C3 has them withdrawn
    keys = rib.announce(N1, VPNV4, attrs(OriginatorId(C3.router_id), med(1)), NH, by2)
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    s2 = sent_routes(out[C2.address], peers[C2].ctx)
    s3 = sent_routes(out[C3.address], peers[C3].ctx)
    s4 = sent_routes(out[C4.address], peers[C4].ctx)
    assert s2.prefixes() == names[C2] and not s2.withdrawn
    assert s3.withdrawn_prefixes() == names[C2] and not s3.announced
    assert s4.prefixes() == names[C2] and not s4.withdrawn
    assert [aro.sent(c.address, VPNV4) for c in (C2, C3, C4)] == [15, 3, 15]
    # full tables agree with what was sent incrementally
    for c, p in peers.items():
        assert len(sent_routes(aro.refresh(c.address, VPNV4), p.ctx).prefixes()) == aro.sent(c.address, VPNV4)


def test_originator_and_sender_both_excluded() -> None:
    rib, aro = setup()
    peers = {c: out_peer(c) for c in (C1, C2, C3)}
    for p in peers.values():
        aro.peer_up(p)
    # C1 reflects (as a client of ours) a route C2 originated: neither gets it back
    keys = rib.announce(C1, VPNV4, attrs(OriginatorId(C2.router_id)), NH, [vpn("203.0.113.0/24")])
    out = aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert set(out) == {C3.address}
    at = sent_routes(out[C3.address], peers[C3].ctx).one(P)[0]
    assert A.originator_id(at) == C2.router_id  # kept as received
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [0, 0, 1]


def test_addpath_members_that_are_sources() -> None:
    rib, aro = setup()
    ap = {VPNV4: "all"}
    peers = {c: out_peer(c, addpath=ap) for c in (C1, C2, C3)}
    for p in peers.values():
        aro.peer_up(p)
    assert len(aro.group_of(C1.address)) == 3
    n = vpn("203.0.113.0/24")
    rib.announce(C1, VPNV4, attrs(lp=300), NH, [n])
    rib.announce(N1, VPNV4, attrs(lp=200), NH, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))

    def ids(c: object, msgs: list[bytes]) -> dict[object, int]:
        s = sent_routes(msgs, peers[c].ctx)  # type: ignore[index]
        return {A.originator_id(at): pid for (_, _, pid), (at, _, _) in s.announced.items()}

    assert ids(C1, out[C1.address]).keys() == {N1.router_id}
    seen = ids(C3, out[C3.address])
    assert seen.keys() == {C1.router_id, N1.router_id}
    assert ids(C2, out[C2.address]) == seen
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [1, 2, 2]
    # In one batch C1's path goes and C2's comes: C2's path takes the freed id.
    # C1 gets it announced, C2 must lose that id (it was C1's path), C3 sees a replacement.
    rib.withdraw(C1, VPNV4, [n])
    rib.announce(C2, VPNV4, attrs(lp=250), NH, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    freed = seen[C1.router_id]
    s1 = sent_routes(out[C1.address], peers[C1].ctx)
    assert not s1.withdrawn and ids(C1, out[C1.address]) == {C2.router_id: freed}
    s2 = sent_routes(out[C2.address], peers[C2].ctx)
    assert s2.withdrawn == {(VPNV4, P, freed)} and not s2.announced
    s3 = sent_routes(out[C3.address], peers[C3].ctx)
    assert not s3.withdrawn and ids(C3, out[C3.address]) == {C2.router_id: freed}
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3)] == [2, 1, 2]
    # full tables match the counters
    for c, p in peers.items():
        assert len(sent_routes(aro.refresh(c.address, VPNV4), p.ctx).announced) == aro.sent(c.address, VPNV4)


def test_member_view_mixes_best_path_and_addpath_groups() -> None:
    """A best-path group and an add-path group over the same sources stay independent."""
    rib, aro = setup()
    plain = {c: out_peer(c) for c in (C1, C2)}
    ap = {c: out_peer(c, addpath={VPNV4: 2}) for c in (C3, C4)}
    for p in (*plain.values(), *ap.values()):
        aro.peer_up(p)
    n = vpn("203.0.113.0/24")
    rib.announce(C1, VPNV4, attrs(lp=300), NH, [n])
    rib.announce(C3, VPNV4, attrs(lp=200), NH, [n])
    rib.announce(N1, VPNV4, attrs(lp=100), NH, [n])
    out = aro.on_change(RibChange(VPNV4, (n.key,)))
    assert C1.address not in out  # its own path is best: nothing (no add-path)
    assert A.originator_id(sent_routes(out[C2.address], plain[C2].ctx).one(P)[0]) == C1.router_id
    s3 = sent_routes(out[C3.address], ap[C3].ctx)
    assert {A.originator_id(at) for at, _, _ in s3.announced.values()} == {C1.router_id}  # best 2 minus its own
    s4 = sent_routes(out[C4.address], ap[C4].ctx)
    assert {A.originator_id(at) for at, _, _ in s4.announced.values()} == {C1.router_id, C3.router_id}
    assert [aro.sent(c.address, VPNV4) for c in (C1, C2, C3, C4)] == [0, 1, 1, 2]
