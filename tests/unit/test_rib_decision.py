"""Decision process (RFC 4271 9.1.2.2, RFC 4456 9): each step alone, then multipath.

Every step test builds two paths where the first is better in the step under
test and worse in every later step, and checks it wins in both insertion
orders; a path that is not better in the step loses on the later ones.
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

import pytest

from vpe.bgp.wire.attributes import (
    AsPath,
    ClusterList,
    LocalPref,
    Med,
    Origin,
    OriginatorId,
    OriginType,
    PathAttributes,
)
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri import VPNv4Prefix
from vpe.rib import DecisionOptions, PeerInfo, Rib

ROUTE = "65000:1:198.51.100.0/24"
KEY = VPNv4Prefix.from_str(ROUTE, labels=(100,)).key


def attrs(
    lp: int | None = None,
    med: int | None = None,
    path: tuple[int, ...] = (),
    origin: int = 0,
    oid: str | None = None,
    clusters: tuple[str, ...] = (),
) -> PathAttributes:
    parts = [Origin(OriginType(origin)), AsPath.sequence(*path)]
    if lp is not None:
        parts.append(LocalPref(lp))
    if med is not None:
        parts.append(Med(med))
    if oid is not None:
        parts.append(OriginatorId(IPv4Address(oid)))
    if clusters:
        parts.append(ClusterList.from_strs(clusters))
    return PathAttributes(parts)


def peer(addr: str, rid: str, asn: int = 65000, ibgp: bool = True) -> PeerInfo:
    return PeerInfo(ip_address(addr), IPv4Address(rid), asn, ibgp=ibgp)


# "good" peer wins later tie-breaks only when it must; "low" peers win ties.
HIGH = peer("127.0.0.9", "192.0.2.9")  # loses every tie-break
LOW = peer("127.0.0.2", "192.0.2.2")  # wins every tie-break


def winner(
    a: tuple[PeerInfo, PathAttributes, str],
    b: tuple[PeerInfo, PathAttributes, str],
    options: DecisionOptions | None = None,
) -> list[PeerInfo]:
    """Best peer for both insertion orders."""
    out = []
    for first, second in ((a, b), (b, a)):
        rib = Rib(options)
        for p, at, nh in (first, second):
            rib.announce(p, VPNV4, at, ip_address(nh), [VPNv4Prefix.from_str(ROUTE, labels=(100,))])
        best = rib.loc_rib(VPNV4).best(KEY)
        assert best is not None
        out.append(best.peer)
    return out


def test_local_pref_highest_wins() -> None:
    assert winner((HIGH, attrs(lp=200), "192.0.2.1"), (LOW, attrs(lp=100), "192.0.2.1")) == [HIGH] * 2


def test_missing_local_pref_counts_as_100() -> None:
    assert winner((HIGH, attrs(lp=101), "192.0.2.1"), (LOW, attrs(), "192.0.2.1")) == [HIGH] * 2
    assert winner((HIGH, attrs(lp=99), "192.0.2.1"), (LOW, attrs(), "192.0.2.1")) == [LOW] * 2


def test_shortest_as_path_wins() -> None:
    a = (HIGH, attrs(path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(path=(65001, 65002)), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2


def test_as_path_length_can_be_ignored() -> None:
    a = (HIGH, attrs(path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(path=(65001, 65002)), "192.0.2.1")
    assert winner(a, b, DecisionOptions(ignore_as_path_length=True)) == [LOW] * 2


def test_as_set_counts_one() -> None:
    from vpe.bgp.wire.attributes import AsSegment, SegmentType

    with_set = PathAttributes(
        [
            Origin(OriginType.IGP),
            AsPath(
                (
                    AsSegment(SegmentType.AS_SEQUENCE, (65001,)),
                    AsSegment(SegmentType.AS_SET, (65002, 65003, 65004)),
                )
            ),
        ]
    )
    a = (HIGH, with_set, "192.0.2.1")  # length 2
    b = (LOW, attrs(path=(65001, 65002, 65003)), "192.0.2.1")  # length 3
    assert winner(a, b) == [HIGH] * 2


def test_lowest_origin_wins() -> None:
    a = (HIGH, attrs(origin=0), "192.0.2.1")
    b = (LOW, attrs(origin=2), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2
    a = (HIGH, attrs(origin=1), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2


def test_lowest_med_wins_within_neighbor_as() -> None:
    a = (HIGH, attrs(med=10, path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(med=20, path=(65001,)), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2


def test_med_not_compared_across_neighbor_as() -> None:
    a = (HIGH, attrs(med=10, path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(med=20, path=(65002,)), "192.0.2.1")
    assert winner(a, b) == [LOW] * 2


def test_always_compare_med() -> None:
    a = (HIGH, attrs(med=10, path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(med=20, path=(65002,)), "192.0.2.1")
    assert winner(a, b, DecisionOptions(always_compare_med=True)) == [HIGH] * 2


def test_missing_med_is_zero_or_worst() -> None:
    a = (HIGH, attrs(path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(med=5, path=(65001,)), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2
    assert winner(a, b, DecisionOptions(med_missing_as_worst=True)) == [LOW] * 2


def test_med_elimination_is_per_group_not_pairwise() -> None:
    """P1 loses to P2 on MED (same AS) even though P1 has the best router id."""
    p1 = peer("127.0.0.2", "192.0.2.1")
    p2 = peer("127.0.0.3", "192.0.2.5")
    p3 = peer("127.0.0.4", "192.0.2.3")
    for order in ((0, 1, 2), (2, 1, 0), (1, 2, 0)):
        specs = [
            (p1, attrs(med=50, path=(65100,))),
            (p2, attrs(med=10, path=(65100,))),
            (p3, attrs(med=100, path=(65200,))),
        ]
        rib = Rib()
        for i in order:
            p, at = specs[i]
            rib.announce(p, VPNV4, at, ip_address("192.0.2.1"), [VPNv4Prefix.from_str(ROUTE, labels=(1,))])
        best = rib.loc_rib(VPNV4).best(KEY)
        assert best is not None and best.peer == p3  # P2 and P3 remain, P3 has the lower router id


def test_ebgp_over_ibgp() -> None:
    e = peer("127.0.0.9", "192.0.2.9", asn=65001, ibgp=False)
    a = (e, attrs(path=(65001,)), "192.0.2.1")
    b = (LOW, attrs(path=(65001,)), "192.0.2.1")
    assert winner(a, b) == [e] * 2


def test_local_origin_over_ibgp() -> None:
    local = PeerInfo.local_origin("192.0.2.99", 65000)
    a = (local, attrs(), "192.0.2.1")
    b = (LOW, attrs(), "192.0.2.1")
    assert winner(a, b) == [local] * 2


def test_lowest_igp_cost_wins() -> None:
    costs = {ip_address("192.0.2.10"): 5, ip_address("192.0.2.20"): 10}
    opts = DecisionOptions(igp_cost=costs.get)
    a = (HIGH, attrs(), "192.0.2.10")
    b = (LOW, attrs(), "192.0.2.20")
    assert winner(a, b, opts) == [HIGH] * 2


def test_unreachable_next_hop_is_not_eligible() -> None:
    costs = {ip_address("192.0.2.10"): 5}
    opts = DecisionOptions(igp_cost=costs.get)
    a = (HIGH, attrs(lp=50), "192.0.2.10")
    b = (LOW, attrs(lp=500), "192.0.2.20")  # unreachable
    assert winner(a, b, opts) == [HIGH] * 2


def test_lowest_router_id_wins() -> None:
    a = (peer("127.0.0.9", "192.0.2.1"), attrs(), "192.0.2.1")
    b = (peer("127.0.0.2", "192.0.2.2"), attrs(), "192.0.2.1")
    assert winner(a, b) == [a[0]] * 2


def test_originator_id_replaces_router_id() -> None:
    a = (peer("127.0.0.9", "192.0.2.200"), attrs(oid="192.0.2.1"), "192.0.2.1")
    b = (peer("127.0.0.2", "192.0.2.100"), attrs(), "192.0.2.1")
    assert winner(a, b) == [a[0]] * 2
    a = (peer("127.0.0.2", "192.0.2.1"), attrs(oid="192.0.2.250"), "192.0.2.1")
    b = (peer("127.0.0.9", "192.0.2.100"), attrs(), "192.0.2.1")
    assert winner(a, b) == [b[0]] * 2


def test_shortest_cluster_list_wins() -> None:
    a = (HIGH, attrs(oid="192.0.2.50", clusters=("192.0.2.77",)), "192.0.2.1")
    b = (LOW, attrs(oid="192.0.2.50", clusters=("192.0.2.77", "192.0.2.78")), "192.0.2.1")
    assert winner(a, b) == [HIGH] * 2


def test_lowest_peer_address_wins() -> None:
    a = (peer("127.0.0.2", "192.0.2.9"), attrs(oid="192.0.2.50"), "192.0.2.1")
    b = (peer("127.0.0.3", "192.0.2.1"), attrs(oid="192.0.2.50"), "192.0.2.1")
    assert winner(a, b) == [a[0]] * 2


def test_add_path_tie_breaks_on_path_id() -> None:
    rib = Rib()
    for pid in (7, 3, 5):
        rib.announce(LOW, VPNV4, attrs(), ip_address("192.0.2.1"), [VPNv4Prefix.from_str(ROUTE, (pid,), pid)])
    best = rib.loc_rib(VPNV4).best(KEY)
    assert best is not None and best.path_id == 3


# -- multipath -----------------------------------------------------------------


def _multi(max_paths: int, costs: dict | None = None) -> Rib:
    opts = DecisionOptions(max_paths=max_paths, igp_cost=(costs or {}).get if costs else lambda nh: 0)
    rib = Rib(opts)
    specs = [
        (peer("127.0.0.4", "192.0.2.4"), attrs(), "192.0.2.14"),
        (peer("127.0.0.2", "192.0.2.2"), attrs(), "192.0.2.12"),
        (peer("127.0.0.3", "192.0.2.3"), attrs(), "192.0.2.13"),
        (peer("127.0.0.5", "192.0.2.1"), attrs(med=5), "192.0.2.15"),  # loses on MED
        (peer("127.0.0.6", "192.0.2.6"), attrs(lp=90), "192.0.2.16"),  # loses on LOCAL_PREF
    ]
    for p, at, nh in specs:
        rib.announce(p, VPNV4, at, ip_address(nh), [VPNv4Prefix.from_str(ROUTE, labels=(100,))])
    return rib


def test_multipath_set_is_equal_up_to_router_id_and_ordered() -> None:
    rib = _multi(8)
    mp = rib.loc_rib(VPNV4).multipath(KEY)
    assert [str(p.peer.address) for p in mp] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert rib.loc_rib(VPNV4).best(KEY) == mp[0]


def test_multipath_limit() -> None:
    mp = _multi(2).loc_rib(VPNV4).multipath(KEY)
    assert [str(p.peer.address) for p in mp] == ["127.0.0.2", "127.0.0.3"]
    mp = _multi(1).loc_rib(VPNV4).multipath(KEY)
    assert [str(p.peer.address) for p in mp] == ["127.0.0.2"]


def test_multipath_excludes_higher_igp_cost() -> None:
    costs = {ip_address(f"192.0.2.{i}"): 10 for i in range(12, 17)}
    costs[ip_address("192.0.2.13")] = 20
    mp = _multi(8, costs).loc_rib(VPNV4).multipath(KEY)
    assert [str(p.peer.address) for p in mp] == ["127.0.0.2", "127.0.0.4"]


def test_multipath_change_is_an_event_even_when_best_stays() -> None:
    rib = Rib(DecisionOptions(max_paths=4))
    n = VPNv4Prefix.from_str(ROUTE, labels=(100,))
    assert rib.announce(LOW, VPNV4, attrs(), ip_address("192.0.2.1"), [n]) == [KEY]
    # an equal-cost second path: best unchanged, multipath grows
    assert rib.announce(HIGH, VPNV4, attrs(), ip_address("192.0.2.1"), [n]) == [KEY]
    assert len(rib.loc_rib(VPNV4).multipath(KEY)) == 2
    # a worse third path changes nothing
    third = peer("127.0.0.7", "192.0.2.7")
    assert rib.announce(third, VPNV4, attrs(lp=10), ip_address("192.0.2.1"), [n]) == []


def test_worse_path_without_multipath_is_no_event() -> None:
    rib = Rib()
    n = VPNv4Prefix.from_str(ROUTE, labels=(100,))
    rib.announce(LOW, VPNV4, attrs(), ip_address("192.0.2.1"), [n])
    assert rib.announce(HIGH, VPNV4, attrs(), ip_address("192.0.2.1"), [n]) == []


def test_max_paths_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_paths"):
        DecisionOptions(max_paths=0)
