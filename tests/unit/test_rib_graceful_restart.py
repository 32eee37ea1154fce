"""Graceful restart (RFC 4724) in the RIB: stale marking, refresh, sweep at EoR or deadline."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from vpe.bgp.wire.attributes import AsPath, LocalPref, Origin, OriginType, PathAttributes
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4
from vpe.bgp.wire.nlri import IPv4Prefix, VPNv4Prefix
from vpe.rib import PeerInfo, Rib, RibChange

A = PeerInfo(ip_address("127.0.0.2"), IPv4Address("192.0.2.2"), 65000, ibgp=True)
A2 = PeerInfo(ip_address("127.0.0.2"), IPv4Address("192.0.2.2"), 65000, ibgp=True)  # after reconnect
B = PeerInfo(ip_address("127.0.0.3"), IPv4Address("192.0.2.3"), 65000, ibgp=True)
NH = ip_address("192.0.2.1")


def attrs(lp: int = 100) -> PathAttributes:
    return PathAttributes([Origin(OriginType.IGP), AsPath.sequence(), LocalPref(lp)])


def vpn(i: int, label: int = 100) -> VPNv4Prefix:
    return VPNv4Prefix.from_str(f"65000:1:198.51.100.{i}/32", labels=(label,))


def loaded() -> Rib:
    rib = Rib()
    rib.announce(A, VPNV4, attrs(200), NH, [vpn(i) for i in range(4)])
    rib.announce(B, VPNV4, attrs(100), NH, [vpn(i) for i in range(2)])  # 0,1 have two paths
    rib.announce(A, IPV4_UNICAST, attrs(), NH, [IPv4Prefix.from_str("203.0.113.0/24")])
    return rib


def stale_flags(rib: Rib, peer: PeerInfo = A) -> dict[int, bool]:
    adj = rib.adj_rib_in(peer.address, VPNV4)
    assert adj is not None
    return {p.nlri.key[-1]: p.stale for p in adj}


def test_mark_stale_keeps_best_and_emits_nothing() -> None:
    rib = loaded()
    seen: list[RibChange] = []
    rib.subscribe(seen.append)
    assert rib.mark_stale(A.address, deadline=120.0) == 5
    assert seen == []
    loc = rib.loc_rib(VPNV4)
    for i in range(4):
        best = loc.best(vpn(i).key)
        assert best is not None and best.peer == A and best.stale
    assert all(stale_flags(rib).values())
    assert not any(stale_flags(rib, B).values())
    assert rib.next_stale_deadline() == 120.0


def test_reannounce_clears_stale_and_eor_sweeps_the_rest() -> None:
    rib = loaded()
    rib.mark_stale(A.address, deadline=120.0)
    # after reconnecting, A re-sends routes 0 and 2 unchanged, and 3 with a new label
    assert rib.announce(A2, VPNV4, attrs(200), NH, [vpn(0), vpn(2)]) == []
    assert rib.announce(A2, VPNV4, attrs(200), NH, [vpn(3, label=300)]) == [vpn(3).key]
    flags = stale_flags(rib)
    assert flags[0] is False and flags[2] is False and flags[3] is False and flags[1] is True
    assert rib.loc_rib(VPNV4).best(vpn(1).key).stale  # type: ignore[union-attr]
    # End-of-RIB: route 1 is gone, B's path takes over
    assert rib.end_of_rib(A.address, VPNV4) == [vpn(1).key]
    loc = rib.loc_rib(VPNV4)
    assert loc.best(vpn(1).key).peer == B  # type: ignore[union-attr]
    assert loc.best(vpn(3).key).labels == (300,)  # type: ignore[union-attr]
    adj = rib.adj_rib_in(A.address, VPNV4)
    assert adj is not None and len(adj) == 3
    # other family still stale until its own EoR or the deadline
    assert rib.next_stale_deadline() == 120.0
    assert rib.sweep_expired(119.0) == []
    assert rib.sweep_expired(120.0) == [RibChange(IPV4_UNICAST, (IPv4Prefix.from_str("203.0.113.0/24").key,))]
    assert rib.next_stale_deadline() is None


def test_deadline_sweeps_everything_not_refreshed() -> None:
    rib = loaded()
    rib.mark_stale(A.address, deadline=10.0, families=[VPNV4])
    rib.set_stale_deadline(A.address, VPNV4, 20.0)
    assert rib.sweep_expired(15.0) == []
    changes = rib.sweep_expired(20.0)
    assert len(changes) == 1 and set(changes[0].keys) == {vpn(i).key for i in range(4)}
    loc = rib.loc_rib(VPNV4)
    assert [loc.best(vpn(i).key).peer for i in range(2)] == [B, B]  # type: ignore[union-attr]
    assert loc.best(vpn(2).key) is None
    # the IPv4 family was not marked: untouched
    assert len(rib.loc_rib(IPV4_UNICAST)) == 1


def test_withdraw_of_a_stale_route_then_eor() -> None:
    rib = loaded()
    rib.mark_stale(A.address, deadline=10.0)
    assert rib.withdraw(A2, VPNV4, [vpn(2)]) == [vpn(2).key]
    # 0 and 1 fall back to B; 3 disappears
    assert set(rib.end_of_rib(A.address, VPNV4)) == {vpn(0).key, vpn(1).key, vpn(3).key}
    assert set(rib.loc_rib(VPNV4).keys()) == {vpn(0).key, vpn(1).key}


def test_peer_down_after_stale_clears_deadline() -> None:
    rib = loaded()
    rib.mark_stale(A.address, deadline=10.0)
    rib.peer_down(A.address)
    assert rib.next_stale_deadline() is None
    assert rib.sweep_expired(99.0) == []
    assert {rib.loc_rib(VPNV4).best(vpn(i).key).peer for i in range(2)} == {B}  # type: ignore[union-attr]


def test_changed_reannounce_of_stale_multi_path_route() -> None:
    rib = loaded()
    rib.mark_stale(A.address, deadline=10.0)
    assert rib.announce(A2, VPNV4, attrs(50), NH, [vpn(0)]) == [vpn(0).key]  # now worse than B
    assert rib.loc_rib(VPNV4).best(vpn(0).key).peer == B  # type: ignore[union-attr]
    # 1 falls back to B (a change), 2 and 3 disappear; 0 was refreshed
    assert set(rib.end_of_rib(A.address, VPNV4)) == {vpn(1).key, vpn(2).key, vpn(3).key}
    paths = rib.loc_rib(VPNV4).paths(vpn(0).key)
    assert len(paths) == 2 and not any(p.stale for p in paths)
