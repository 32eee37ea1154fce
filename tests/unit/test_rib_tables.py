"""Adj-RIB-In + Loc-RIB bookkeeping: replace, withdraw, add-path, events, UPDATEs."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from vpe.bgp.wire.attributes import (
    AsPath,
    LocalPref,
    NextHop,
    Origin,
    OriginatorId,
    OriginType,
    PathAttributes,
)
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4
from vpe.bgp.wire.nlri import IPv4Prefix, VPNv4Prefix
from vpe.bgp.wire.update import MpReach, MpUnreach, Update
from vpe.rib import DecisionOptions, PeerInfo, Rib, RibChange

A = PeerInfo(ip_address("127.0.0.2"), IPv4Address("192.0.2.2"), 65000, ibgp=True)
B = PeerInfo(ip_address("127.0.0.3"), IPv4Address("192.0.2.3"), 65000, ibgp=True)
NH = ip_address("192.0.2.1")


def attrs(lp: int = 100) -> PathAttributes:
    return PathAttributes([Origin(OriginType.IGP), AsPath.sequence(), LocalPref(lp)])


def vpn(prefix: str, label: int = 100, pid: int = 0) -> VPNv4Prefix:
    return VPNv4Prefix.from_str(f"65000:1:{prefix}", labels=(label,), path_id=pid)


def test_announce_then_read_back() -> None:
    rib = Rib()
    n = vpn("198.51.100.0/24")
    assert rib.announce(A, VPNV4, attrs(), NH, [n]) == [n.key]
    loc = rib.loc_rib(VPNV4)
    best = loc.best(n.key)
    assert best is not None
    assert best.peer == A and best.attrs == attrs() and best.next_hop == NH
    assert best.labels == (100,) and best.nlri is n and not best.stale
    assert loc.multipath(n.key) == (best,)
    adj = rib.adj_rib_in(A.address, VPNV4)
    assert adj is not None and len(adj) == 1
    assert adj.get(n.key) == best
    assert list(adj) == [best]
    assert list(loc.best_paths()) == [(n.key, best)]


def test_identical_reannounce_is_not_a_change() -> None:
    rib = Rib()
    rib.announce(A, VPNV4, attrs(), NH, [vpn("198.51.100.0/24")])
    before = rib.loc_rib(VPNV4).best(vpn("198.51.100.0/24").key)
    assert rib.announce(A, VPNV4, attrs(), NH, [vpn("198.51.100.0/24")]) == []
    assert rib.loc_rib(VPNV4).best(vpn("198.51.100.0/24").key) == before


def test_replacement_is_a_change() -> None:
    rib = Rib()
    k = vpn("198.51.100.0/24").key
    rib.announce(A, VPNV4, attrs(), NH, [vpn("198.51.100.0/24")])
    assert rib.announce(A, VPNV4, attrs(200), NH, [vpn("198.51.100.0/24")]) == [k]
    assert rib.announce(A, VPNV4, attrs(200), NH, [vpn("198.51.100.0/24", label=101)]) == [k]
    best = rib.loc_rib(VPNV4).best(k)
    assert best is not None and best.labels == (101,)
    assert rib.announce(A, VPNV4, attrs(200), ip_address("192.0.2.9"), [vpn("198.51.100.0/24", 101)]) == [k]
    assert len(rib.adj_rib_in(A.address, VPNV4) or ()) == 1
    assert len(rib.loc_rib(VPNV4).paths(k)) == 1


def test_withdraw_of_best_promotes_next() -> None:
    rib = Rib()
    n = vpn("198.51.100.0/24")
    rib.announce(A, VPNV4, attrs(200), NH, [n])
    rib.announce(B, VPNV4, attrs(100), NH, [vpn("198.51.100.0/24", 200)])
    loc = rib.loc_rib(VPNV4)
    assert loc.best(n.key).peer == A  # type: ignore[union-attr]
    assert rib.withdraw(A, VPNV4, [vpn("198.51.100.0/24", 0)]) == [n.key]
    best = loc.best(n.key)
    assert best is not None and best.peer == B and best.labels == (200,)
    assert rib.withdraw(B, VPNV4, [n]) == [n.key]
    assert loc.best(n.key) is None and n.key not in loc


def test_withdraw_of_non_best_is_not_a_change() -> None:
    rib = Rib()
    n = vpn("198.51.100.0/24")
    rib.announce(A, VPNV4, attrs(200), NH, [n])
    rib.announce(B, VPNV4, attrs(100), NH, [n])
    assert rib.withdraw(B, VPNV4, [n]) == []
    assert rib.withdraw(B, VPNV4, [n]) == []  # unknown: ignored
    assert rib.withdraw(ip_address("127.0.0.77"), VPNV4, [n]) == []


def test_replacing_best_with_worse_promotes_other_peer() -> None:
    rib = Rib()
    n = vpn("198.51.100.0/24")
    rib.announce(A, VPNV4, attrs(200), NH, [n])
    rib.announce(B, VPNV4, attrs(150), NH, [n])
    assert rib.announce(A, VPNV4, attrs(100), NH, [n]) == [n.key]
    assert rib.loc_rib(VPNV4).best(n.key).peer == B  # type: ignore[union-attr]


def test_add_path_keeps_both_path_ids_of_one_peer() -> None:
    rib = Rib(DecisionOptions(max_paths=2))
    p1, p2 = vpn("198.51.100.0/24", 100, 1), vpn("198.51.100.0/24", 101, 2)
    rib.announce(A, VPNV4, attrs(), NH, [p1, p2])
    loc = rib.loc_rib(VPNV4)
    assert {p.path_id for p in loc.paths(p1.key)} == {1, 2}
    assert len(loc.multipath(p1.key)) == 2
    adj = rib.adj_rib_in(A.address, VPNV4)
    assert adj is not None and len(adj) == 2
    assert adj.get(p1.key, 1).labels == (100,)  # type: ignore[union-attr]
    assert adj.get(p1.key, 2).labels == (101,)  # type: ignore[union-attr]
    assert adj.get(p1.key) is None
    # replace path 2 only (now better: path 1 leaves the multipath set),
    # then withdraw path 1: not a change, path 2 stays
    assert rib.announce(A, VPNV4, attrs(300), NH, [vpn("198.51.100.0/24", 102, 2)]) == [p1.key]
    assert loc.best(p1.key).path_id == 2  # type: ignore[union-attr]
    assert len(loc.multipath(p1.key)) == 1
    assert rib.withdraw(A, VPNV4, [vpn("198.51.100.0/24", 0, 1)]) == []
    assert [p.labels for p in loc.paths(p1.key)] == [(102,)]


def test_path_id_zero_and_nonzero_are_distinct_routes() -> None:
    rib = Rib()
    rib.announce(A, VPNV4, attrs(), NH, [vpn("198.51.100.0/24", 1, 0), vpn("198.51.100.0/24", 2, 9)])
    k = vpn("198.51.100.0/24").key
    assert len(rib.loc_rib(VPNV4).paths(k)) == 2
    rib.withdraw(A, VPNV4, [vpn("198.51.100.0/24", 0, 9)])
    assert rib.loc_rib(VPNV4).best(k).labels == (1,)  # type: ignore[union-attr]


def test_subscribers_get_batches() -> None:
    rib = Rib()
    seen: list[RibChange] = []
    unsubscribe = rib.subscribe(seen.append)
    ns = [vpn(f"198.51.100.{i}/32") for i in range(3)]
    rib.announce(A, VPNV4, attrs(), NH, ns)
    rib.announce(A, VPNV4, attrs(), NH, ns)  # no change: no event
    assert seen == [RibChange(VPNV4, tuple(n.key for n in ns))]
    unsubscribe()
    rib.withdraw(A, VPNV4, ns)
    assert len(seen) == 1


def test_apply_update_withdraws_first_and_groups_by_family() -> None:
    rib = Rib()
    n4 = IPv4Prefix.from_str("203.0.113.0/24")
    nv = vpn("198.51.100.0/24")
    at = attrs().replace(NextHop(IPv4Address("192.0.2.1")))
    u = Update(attributes=at, nlri=[n4], mp_reach=MpReach(VPNV4, NH, [nv]))
    changes = rib.apply_update(A, u)
    assert {c.family: c.keys for c in changes} == {IPV4_UNICAST: (n4.key,), VPNV4: (nv.key,)}
    assert rib.loc_rib(IPV4_UNICAST).best(n4.key).next_hop == IPv4Address("192.0.2.1")  # type: ignore[union-attr]
    u2 = Update(mp_unreach=MpUnreach(VPNV4, [vpn("198.51.100.0/24", 0)]), withdrawn=[n4])
    changes = rib.apply_update(A, u2)
    assert {c.family: c.keys for c in changes} == {IPV4_UNICAST: (n4.key,), VPNV4: (nv.key,)}
    assert len(rib.loc_rib(VPNV4)) == 0 and len(rib.loc_rib(IPV4_UNICAST)) == 0


def test_apply_update_drops_reflection_loops_as_withdrawals() -> None:
    rib = Rib(router_id=IPv4Address("192.0.2.100"))
    nv = vpn("198.51.100.0/24")
    rib.apply_update(A, Update(attributes=attrs(), mp_reach=MpReach(VPNV4, NH, [nv])))
    looped = attrs().replace(OriginatorId(IPv4Address("192.0.2.100")))
    changes = rib.apply_update(A, Update(attributes=looped, mp_reach=MpReach(VPNV4, NH, [nv])))
    assert changes == [RibChange(VPNV4, (nv.key,))]
    assert rib.loc_rib(VPNV4).best(nv.key) is None


def test_apply_update_drops_as_loops_from_ebgp() -> None:
    rib = Rib(local_asn=65000)
    e = PeerInfo(ip_address("127.0.0.5"), IPv4Address("192.0.2.5"), 65001, ibgp=False)
    at = PathAttributes([Origin(OriginType.IGP), AsPath.sequence(65001, 65000, 65002)])
    assert rib.apply_update(e, Update(attributes=at, mp_reach=MpReach(VPNV4, NH, [vpn("198.51.100.0/24")]))) == []
    assert len(rib.loc_rib(VPNV4)) == 0


def test_peer_down_removes_and_promotes() -> None:
    rib = Rib()
    ns = [vpn(f"198.51.100.{i}/32") for i in range(4)]
    rib.announce(A, VPNV4, attrs(200), NH, ns)
    rib.announce(B, VPNV4, attrs(100), NH, ns[:2])
    changes = rib.peer_down(A.address)
    assert changes == [RibChange(VPNV4, tuple(n.key for n in ns))]
    loc = rib.loc_rib(VPNV4)
    assert [loc.best(n.key).peer for n in ns[:2]] == [B, B]  # type: ignore[union-attr]
    assert len(loc) == 2 and rib.adj_rib_in(A.address, VPNV4) is None


def test_unreachable_sole_path_has_no_best_and_reevaluate_restores() -> None:
    reachable: set = set()
    rib = Rib(DecisionOptions(igp_cost=lambda nh: 1 if nh in reachable else None))
    n = vpn("198.51.100.0/24")
    assert rib.announce(A, VPNV4, attrs(), NH, [n]) == []
    loc = rib.loc_rib(VPNV4)
    assert loc.best(n.key) is None and len(loc.paths(n.key)) == 1
    reachable.add(NH)
    assert rib.reevaluate() == [RibChange(VPNV4, (n.key,))]
    assert loc.best(n.key) is not None
    reachable.clear()
    assert rib.reevaluate() == [RibChange(VPNV4, (n.key,))]
    assert loc.best(n.key) is None
    assert rib.withdraw(A, VPNV4, [n]) == []
    assert n.key not in loc


def test_igp_change_flips_best() -> None:
    costs = {ip_address("192.0.2.10"): 1, ip_address("192.0.2.20"): 2}
    rib = Rib(DecisionOptions(igp_cost=costs.get))
    n = vpn("198.51.100.0/24")
    rib.announce(B, VPNV4, attrs(), ip_address("192.0.2.10"), [n])
    rib.announce(A, VPNV4, attrs(), ip_address("192.0.2.20"), [n])
    loc = rib.loc_rib(VPNV4)
    assert loc.best(n.key).peer == B  # type: ignore[union-attr]
    costs[ip_address("192.0.2.10")] = 3
    assert rib.reevaluate([VPNV4]) == [RibChange(VPNV4, (n.key,))]
    assert loc.best(n.key).peer == A  # type: ignore[union-attr]


def test_per_family_options() -> None:
    rib = Rib(family_options={VPNV4: DecisionOptions(max_paths=4)})
    assert rib.loc_rib(VPNV4).options.max_paths == 4
    assert rib.loc_rib(IPV4_UNICAST).options.max_paths == 1


def test_apply_update_treat_as_withdraw() -> None:
    from vpe.bgp.wire.errors import UpdateAction

    rib = Rib()
    nv = vpn("198.51.100.0/24")
    rib.apply_update(A, Update(attributes=attrs(), mp_reach=MpReach(VPNV4, NH, [nv])))
    bad = Update(attributes=attrs(), mp_reach=MpReach(VPNV4, NH, [nv]), action=UpdateAction.TREAT_AS_WITHDRAW)
    assert rib.apply_update(A, bad) == [RibChange(VPNV4, (nv.key,))]
    assert len(rib.loc_rib(VPNV4)) == 0
