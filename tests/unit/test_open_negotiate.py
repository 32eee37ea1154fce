"""negotiate(): what two OPENs agree, and the codec context of each direction."""

from __future__ import annotations

from ipaddress import IPv4Address

from vpe.bgp.wire import capabilities as c
from vpe.bgp.wire.constants import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN,
    VPNV4,
    VPNV6,
)
from vpe.bgp.wire.open import Open, negotiate

AP = c.AddPathMode


def make(asn: int, hold: int, caps: list[c.Capability], rid: str = "192.0.2.1") -> Open:
    return Open.create(asn, hold, rid, caps)


def test_hold_time_is_the_minimum_and_keepalive_a_third() -> None:
    n = negotiate(make(65001, 90, []), make(65002, 30, [], "192.0.2.2"))
    assert (n.hold_time, n.keepalive_time) == (30, 10)
    n = negotiate(make(65001, 90, []), make(65002, 240, [], "192.0.2.2"))
    assert (n.hold_time, n.keepalive_time) == (90, 30)
    n = negotiate(make(65001, 10, []), make(65002, 240, [], "192.0.2.2"))
    assert (n.hold_time, n.keepalive_time) == (10, 3)


def test_hold_time_zero_means_no_keepalives() -> None:
    n = negotiate(make(65001, 90, []), make(65002, 0, [], "192.0.2.2"))
    assert (n.hold_time, n.keepalive_time) == (0, 0)


def test_families_intersection() -> None:
    local = make(65001, 90, [c.Multiprotocol.of(VPNV4), c.Multiprotocol.of(VPNV6), c.Multiprotocol.of(IPV4_UNICAST)])
    remote = make(65001, 90, [c.Multiprotocol.of(VPNV4), c.Multiprotocol.of(IPV6_UNICAST)], "192.0.2.2")
    assert negotiate(local, remote).families == {VPNV4}


def test_no_multiprotocol_implies_ipv4_unicast() -> None:
    local = make(65001, 90, [c.Multiprotocol.of(VPNV4), c.Multiprotocol.of(IPV4_UNICAST)])
    remote = make(65002, 90, [], "192.0.2.2")
    assert negotiate(local, remote).families == {IPV4_UNICAST}
    local = make(65001, 90, [c.Multiprotocol.of(VPNV4)])
    assert negotiate(local, remote).families == frozenset()


def test_asn4_needs_both_sides() -> None:
    local = make(65001, 90, [])
    legacy = Open(4, 65002, 90, IPv4Address("192.0.2.2"), ())
    n = negotiate(local, legacy)
    assert not n.asn4 and not n.tx_context().asn4 and not n.rx_context().asn4
    assert n.peer_asn == 65002 and n.local_asn == 65001
    assert negotiate(local, make(65002, 90, [], "192.0.2.2")).asn4


def test_addpath_directions() -> None:
    fams = [c.Multiprotocol.of(VPNV4), c.Multiprotocol.of(VPNV6), c.Multiprotocol.of(IPV4_UNICAST)]
    local = make(
        65001, 90, [*fams, c.AddPath(((VPNV4, AP.BOTH), (VPNV6, AP.SEND), (IPV4_UNICAST, AP.RECEIVE)))]
    )
    remote = make(
        65001,
        90,
        [*fams, c.AddPath(((VPNV4, AP.RECEIVE), (VPNV6, AP.BOTH), (IPV4_UNICAST, AP.BOTH)))],
        "192.0.2.2",
    )
    n = negotiate(local, remote)
    # we send path ids where we can send and the peer can receive
    assert n.addpath_send == {VPNV4, VPNV6}
    # we receive path ids where we can receive and the peer can send
    assert n.addpath_receive == {IPV4_UNICAST}
    assert n.tx_context().addpath == {VPNV4, VPNV6}
    assert n.rx_context().addpath == {IPV4_UNICAST}
    # and the reverse view from the peer's side mirrors it
    r = negotiate(remote, local)
    assert r.addpath_send == n.addpath_receive and r.addpath_receive == n.addpath_send


def test_addpath_only_for_negotiated_families() -> None:
    local = make(65001, 90, [c.Multiprotocol.of(VPNV4), c.AddPath(((VPNV6, AP.BOTH),))])
    remote = make(65001, 90, [c.Multiprotocol.of(VPNV4), c.AddPath(((VPNV6, AP.BOTH),))], "192.0.2.2")
    n = negotiate(local, remote)
    assert n.addpath_send == n.addpath_receive == frozenset()


def test_extended_message_needs_both() -> None:
    one = negotiate(make(65001, 90, [c.ExtendedMessage()]), make(65002, 90, [], "192.0.2.2"))
    assert not one.extended_message
    assert one.tx_context().max_message_len == MAX_MESSAGE_LEN
    both = negotiate(
        make(65001, 90, [c.ExtendedMessage()]), make(65002, 90, [c.ExtendedMessage()], "192.0.2.2")
    )
    assert both.extended_message
    assert both.tx_context().max_message_len == both.rx_context().max_message_len == MAX_EXTENDED_MESSAGE_LEN


def test_route_refresh_flags() -> None:
    n = negotiate(
        make(65001, 90, [c.RouteRefresh(), c.EnhancedRouteRefresh()]),
        make(65002, 90, [c.RouteRefresh()], "192.0.2.2"),
    )
    assert n.route_refresh and not n.enhanced_route_refresh
    n = negotiate(
        make(65001, 90, [c.RouteRefresh(), c.EnhancedRouteRefresh()]),
        make(65002, 90, [c.RouteRefresh(), c.EnhancedRouteRefresh()], "192.0.2.2"),
    )
    assert n.route_refresh and n.enhanced_route_refresh
    n = negotiate(make(65001, 90, [c.RouteRefresh()]), make(65002, 90, [], "192.0.2.2"))
    assert not n.route_refresh  # the peer did not say it accepts ROUTE-REFRESH


def test_graceful_restart_of_peer() -> None:
    gr = c.GracefulRestart(True, True, 120, ((VPNV4, True),))
    n = negotiate(make(65001, 90, []), make(65002, 90, [gr], "192.0.2.2"))
    assert n.peer_graceful_restart == gr
    assert n.local_graceful_restart is None


def test_extended_nexthop_per_direction() -> None:
    fams = [c.Multiprotocol.of(IPV4_UNICAST), c.Multiprotocol.of(VPNV4)]
    local = make(65001, 90, [*fams, c.ExtendedNextHop(((1, 1, 2),))])
    remote = make(65002, 90, [*fams, c.ExtendedNextHop(((1, 128, 2), (1, 1, 2)))], "192.0.2.2")
    n = negotiate(local, remote)
    assert n.extended_nexthop_send == {IPV4_UNICAST, VPNV4}
    assert n.extended_nexthop_receive == {IPV4_UNICAST}
    assert n.tx_context().extended_nexthop == {IPV4_UNICAST, VPNV4}
    assert n.rx_context().extended_nexthop == {IPV4_UNICAST}


def test_ibgp_derived_or_overridden() -> None:
    n = negotiate(make(65001, 90, []), make(65001, 90, [], "192.0.2.2"))
    assert n.ibgp and n.rx_context().ibgp and n.tx_context().ibgp
    assert not n.rx_context(ibgp=False).ibgp
    e = negotiate(make(65001, 90, []), make(4200000001, 90, [], "192.0.2.2"))
    assert not e.ibgp and e.peer_asn == 4200000001


def test_to_json() -> None:
    n = negotiate(
        make(65001, 90, [c.Multiprotocol.of(VPNV4)]),
        make(65001, 60, [c.Multiprotocol.of(VPNV4)], "192.0.2.2"),
    )
    j = n.to_json()
    assert j["families"] == ["vpnv4"] and j["hold_time"] == 60 and j["peer_id"] == "192.0.2.2"
