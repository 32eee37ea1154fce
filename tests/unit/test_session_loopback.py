"""Two vpe speakers on loopback: sessions, route exchange, ADD-PATH, MD5, collisions.

Real TCP sockets on 127.0.0.x and the real asyncio session code; the only
peer that can exercise MCAST-VPN routes is vpe itself (no packaged daemon
implements SAFI 5 type 1/3), so those are proven here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from standalone_speaker import StandaloneSpeaker  # type: ignore[import-not-found]
from vpe.bgp.session import PeerSettings
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    RouteTarget,
)
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.pmsi_tunnel import PmsiTunnel
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.capabilities import AddPathMode
from vpe.bgp.wire.constants import IPV4_MCAST_VPN, RTC, VPNV4, VPNV6, Family
from vpe.bgp.wire.nlri.mcast_vpn import IPv4McastVpnRoute
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix, VPNv6Prefix

FAMS = frozenset({VPNV4, VPNV6, RTC, IPV4_MCAST_VPN})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _attrs(rt: str = "65000:1", *extra: object) -> PathAttributes:
    return PathAttributes(
        [
            Origin(0),
            AsPath.sequence(),
            LocalPref(100),
            ExtendedCommunities((RouteTarget.from_str(rt), Encapsulation.from_str("encap:mpls-in-udp"))),
            *extra,  # type: ignore[list-item]
        ]
    )


async def _until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _pair(
    port: int,
    *,
    a_passive: bool = True,
    b_passive: bool = False,
    md5_a: str | None = None,
    md5_b: str | None = None,
    addpath: tuple[tuple[Family, int], ...] = (),
    hold: int = 90,
) -> tuple[StandaloneSpeaker, StandaloneSpeaker]:
    a = StandaloneSpeaker(["127.0.0.11"], port)
    b = StandaloneSpeaker(["127.0.0.12"], port)
    a.add_peer(
        PeerSettings(
            address="127.0.0.12", local_as=65000, remote_as=65000, router_id=IPv4Address("198.18.0.11"),
            port=port, local_address="127.0.0.11", passive=a_passive, families=FAMS,
            md5_password=md5_a, add_path=addpath, hold_time=hold, connect_retry=1.0, connect_timeout=1.0,
        )
    )
    b.add_peer(
        PeerSettings(
            address="127.0.0.11", local_as=65000, remote_as=65000, router_id=IPv4Address("198.18.0.12"),
            port=port, local_address="127.0.0.12", passive=b_passive, families=FAMS,
            md5_password=md5_b, add_path=addpath, hold_time=hold, connect_retry=1.0, connect_timeout=1.0,
        )
    )
    return a, b


async def test_vpn_and_mcast_vpn_routes_cross_and_withdraw() -> None:
    a, b = _pair(_port())
    v4 = [VPNv4Prefix.from_str(f"65000:1:192.0.2.{i}/32", labels=(100 + i,)) for i in range(50)]
    v6 = [VPNv6Prefix.from_str("65000:1:2001:db8:1::/64", labels=(300,))]
    imet = IPv4McastVpnRoute.intra_as_i_pmsi_ad("65000:1", "198.18.0.11")
    pmsi = PmsiTunnel.ingress_replication("198.18.0.11", label=400)
    a.announce(VPNV4, v4, _attrs(), "198.18.0.11")
    a.announce(VPNV6, v6, _attrs(), "2001:db8:ffff::11")
    a.announce(IPV4_MCAST_VPN, [imet], _attrs("65000:1", pmsi), "198.18.0.11")
    await a.start()
    await b.start()
    try:
        await _until(lambda: len(b.received("127.0.0.11", VPNV4)) == 50 and b.received("127.0.0.11", IPV4_MCAST_VPN))
        got = {str(r.nlri): r for r in b.received("127.0.0.11", VPNV4)}
        r = got["65000:1:192.0.2.7/32"]
        assert r.nlri.labels == (107,)
        assert str(r.next_hop) == "198.18.0.11"
        exts = [str(x) for x in r.attributes.get(16).values]
        assert "target:65000:1" in exts and "encap:mpls-in-udp" in exts
        await _until(lambda: len(b.received("127.0.0.11", VPNV6)) == 1)
        assert str(b.received("127.0.0.11", VPNV6)[0].next_hop) == "2001:db8:ffff::11"
        m = b.received("127.0.0.11", IPV4_MCAST_VPN)[0]
        assert m.nlri == imet
        assert m.attributes.get(22) == pmsi
        assert b.eor_received["127.0.0.11"] >= {VPNV4, VPNV6, RTC, IPV4_MCAST_VPN}
        # withdraw half
        a.withdraw(VPNV4, v4[:25])
        await _until(lambda: len(b.received("127.0.0.11", VPNV4)) == 25)
        assert "65000:1:192.0.2.7/32" not in {str(r.nlri) for r in b.received("127.0.0.11", VPNV4)}
    finally:
        await a.stop()
        await b.stop()


async def test_add_path_two_paths_survive() -> None:
    both = ((VPNV4, AddPathMode.BOTH),)
    a, b = _pair(_port(), addpath=both)
    p1 = VPNv4Prefix.from_str("65000:1:198.51.100.0/24", labels=(16,), path_id=1)
    p2 = VPNv4Prefix.from_str("65000:1:198.51.100.0/24", labels=(17,), path_id=2)
    a.announce(VPNV4, [p1], _attrs(), "198.18.0.11")
    a.announce(VPNV4, [p2], _attrs(), "198.18.0.21")
    await a.start()
    await b.start()
    try:
        await _until(lambda: len(b.received("127.0.0.11", VPNV4)) == 2)
        peer = b.peers["127.0.0.11"]
        assert peer.negotiated is not None and VPNV4 in peer.negotiated.addpath_receive
        hops = sorted(str(r.next_hop) for r in b.received("127.0.0.11", VPNV4))
        assert hops == ["198.18.0.11", "198.18.0.21"]
        assert sorted(r.nlri.path_id for r in b.received("127.0.0.11", VPNV4)) == [1, 2]
    finally:
        await a.stop()
        await b.stop()


async def test_session_reset_and_reestablish() -> None:
    a, b = _pair(_port())
    a.announce(VPNV4, [VPNv4Prefix.from_str("65000:1:203.0.113.0/24", labels=(99,))], _attrs(), "198.18.0.11")
    await a.start()
    await b.start()
    try:
        await _until(lambda: len(b.received("127.0.0.11", VPNV4)) == 1)
        # a NOTIFICATION-driven reset: the passive side stops and starts again
        await a.peers["127.0.0.12"].stop("maintenance")
        await _until(lambda: not b.peers["127.0.0.11"].established)
        assert b.received("127.0.0.11", VPNV4) == []
        a.peers["127.0.0.12"].start()
        await _until(lambda: len(b.received("127.0.0.11", VPNV4)) == 1, timeout=20)
        assert b.peers["127.0.0.11"].counters["established_transitions"] == 2
    finally:
        await a.stop()
        await b.stop()


async def test_collision_both_active_ends_in_one_session() -> None:
    a, b = _pair(_port(), a_passive=False, b_passive=False)
    await a.start()
    await b.start()
    try:
        await _until(lambda: a.peers["127.0.0.12"].established and b.peers["127.0.0.11"].established)
        await asyncio.sleep(1.0)
        assert a.peers["127.0.0.12"].established and b.peers["127.0.0.11"].established
    finally:
        await a.stop()
        await b.stop()


async def test_md5_match_and_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    a, b = _pair(_port(), md5_a="s3cret", md5_b="s3cret")
    await a.start()
    await b.start()
    try:
        await _until(lambda: b.peers["127.0.0.11"].established)
    finally:
        await a.stop()
        await b.stop()
    caplog.set_level(logging.WARNING)
    a, b = _pair(_port(), md5_a="s3cret", md5_b="wrong")
    await a.start()
    await b.start()
    try:
        await asyncio.sleep(3.0)
        assert not b.peers["127.0.0.11"].established
        assert "timed out" in b.peers["127.0.0.11"].last_error
        assert any("127.0.0.11" in r.getMessage() and "timed out" in r.getMessage() for r in caplog.records)
    finally:
        await a.stop()
        await b.stop()


async def test_extended_messages_a_big_first_update_right_after_the_open() -> None:
    """RFC 8654 between two vpe speakers: the initial table goes out at once in UPDATEs of up
    to 65,535 octets. The receiver reads ahead of its session (the OPEN, the KEEPALIVE and
    that UPDATE may arrive in one read): the negotiated limit must apply to the UPDATE, not
    the 4,096 of before the OPEN. (It used to reset the session with Bad Message Length.)"""
    a, b = _pair(_port())
    v6 = [VPNv6Prefix.from_str(f"65000:1:2001:db8:99:{i:x}::/64", labels=(1000 + i,)) for i in range(600)]
    a.announce(VPNV6, v6, _attrs(), "2001:db8:ffff::11")  # 600 x 20 octets: one 12 kB UPDATE
    await a.start()
    await b.start()
    try:
        await _until(lambda: len(b.received("127.0.0.11", VPNV6)) == 600)
        peer = b.speaker.peers["127.0.0.11"]
        assert peer.negotiated is not None and peer.negotiated.extended_message
        assert peer.established and peer.counters["notifications_in"] == 0 and not peer.last_error
    finally:
        await a.stop()
        await b.stop()
