"""vpe's BGP speaker against FRR 8.4 bgpd (no zebra): sessions, VPN routes both ways, TCP-MD5.

Why: FRR is the most widely deployed open-source PE/RR; its JSON shows the
RD, the label FRR decoded (``remoteLabel``), every extended community as
text (``RT:65000:2 ET:13`` -- ET:13 is the MPLS-in-UDP encapsulation) and
the next hop, so it checks what vpe encodes. FRR's own VPN routes come
from ``network ... rd ... label ... route-map`` lines and reach vpe with
FRR's update-source as next hop (next-hop-self); over an IPv4 session FRR
sends VPNv6 next hops as IPv4-mapped IPv6 (``::ffff:a.b.c.d``), which vpe
must decode as such. FRR treats next hops in 127/8 as martians, so vpe
announces 198.18/15 next hops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from daemons import FRR, Neighbor
from vpe_peer import (
    announce_both_ways_routes,
    attrs,
    by_nlri,
    call,
    ext_communities,
    family_names,
    md5_right_and_wrong,
    relearned_after_daemon_reset,
    running_speaker,
    settings,
    until,
    until_daemon,
    vpe_resets_session,
)

from vpe.bgp.wire.constants import VPNV4, VPNV6
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
PASSWORD = "vpe-frr-md5"
RT_MAP = "route-map RT1 permit 10\n set extcommunity rt 65000:1 65000:3"


# --------------------------------------------------------------------------- helpers


def _networks(*lines: tuple[str, str]) -> str:
    """``extra_config`` with FRR-originated VPN routes (``network`` lines per address family)."""
    out: list[str] = []
    for af, line in lines:
        out += [f" address-family {af}", f"  {line}", " exit-address-family"]
    return "\n".join(out)


async def _frr(
    spawn: Spawn, address: str, port: int, rid: str, *neighbors: Neighbor, **kw: Any
) -> FRR:
    f: FRR = await call(
        spawn,
        FRR,
        address=address,
        port=port,
        local_as=65000,
        router_id=rid,
        neighbors=list(neighbors),
        **kw,
    )
    return f


def _negotiated_at_frr(f: FRR, neighbor: str) -> set[str]:
    """Address families FRR reports as advertised and received for ``neighbor``."""
    caps = f.json(f"show bgp neighbors {neighbor} json")[neighbor]["neighborCapabilities"]
    return {
        af
        for af, v in caps.get("multiprotocolExtensions", {}).items()
        if v.get("advertisedAndReceived")
    }


def _frr_path(f: FRR, afi: str, rd: str, prefix: str) -> dict[str, Any] | None:
    """FRR's detailed view of one VPN route, or None when FRR does not have it."""
    data = f.json(f"show bgp {afi} vpn rd {rd} {prefix} json").get(rd, {})
    if data.get("prefix") != prefix:
        return None  # FRR answers with the longest covering prefix when the exact one is gone
    paths = data.get("paths") or []
    return paths[0] if paths else None


def _frr_view(path: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": path.get("remoteLabel"),
        "ext": path.get("extendedCommunity", {}).get("string"),
        "nexthop": path["nexthops"][0]["ip"],
        "peer": path["peer"]["peerId"],
    }


# --------------------------------------------------------------------------- tests


async def test_vpe_active_routes_both_ways_withdraw_and_daemon_reset(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """vpe connects to a passive FRR; VPNv4/VPNv6 both ways; withdraws; ``clear bgp``."""
    me, fa = loopback(), loopback()
    fport = port()
    f = await _frr(
        spawn,
        fa,
        fport,
        "198.18.2.1",
        Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "vpnv6")),
        extra_global=RT_MAP,
        extra_config=_networks(
            ("ipv4 vpn", "network 192.0.2.0/24 rd 65000:1 label 100 route-map RT1"),
            ("ipv4 vpn", "network 192.0.2.128/25 rd 198.18.2.1:7 label 101 route-map RT1"),
            ("ipv6 vpn", "network 2001:db8:1::/48 rd 65000:1 label 102 route-map RT1"),
        ),
    )
    async with running_speaker(me, 0, settings(fa, fport, me, "198.18.2.2"), listen=False) as sp:
        peer = sp.peers[fa]
        await until(lambda: peer.established, 15, "vpe -> FRR session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert await call(_negotiated_at_frr, f, me) == {"ipv4Vpn", "ipv6Vpn"}

        gone4 = announce_both_ways_routes(sp, "198.18.2.2")

        # FRR -> vpe, decoded
        await until(
            lambda: len(sp.received(fa, VPNV4)) == 2 and sp.received(fa, VPNV6),
            10,
            "FRR's routes in vpe",
        )
        v4 = by_nlri(sp.received(fa, VPNV4))
        r = v4["65000:1:192.0.2.0/24"]
        assert (str(r.nlri.rd), str(r.nlri.prefix), r.nlri.labels) == (
            "65000:1",
            "192.0.2.0/24",
            (100,),
        )
        assert str(r.next_hop) == fa  # FRR sets itself (update-source) as next hop
        assert ext_communities(r) == ["target:65000:1", "target:65000:3"]
        r = v4["198.18.2.1:7:192.0.2.128/25"]
        assert r.nlri.labels == (101,) and str(r.next_hop) == fa
        r6 = sp.received(fa, VPNV6)[0]
        assert (str(r6.nlri), r6.nlri.labels) == ("65000:1:2001:db8:1::/48", (102,))
        assert r6.next_hop is not None and r6.next_hop.version == 6
        assert r6.next_hop.ipv4_mapped == IPv4Address(fa)  # FRR's ::ffff:a.b.c.d over IPv4
        assert ext_communities(r6) == ["target:65000:1", "target:65000:3"]

        # vpe -> FRR, as FRR shows it
        p = await until_daemon(
            lambda: _frr_path(f, "ipv4", "65000:2", "198.51.100.0/24"),
            10,
            "vpe's VPNv4 route in FRR",
        )
        assert _frr_view(p) == {
            "label": 200,
            "ext": "RT:65000:2 RT:65000:4 ET:13",
            "nexthop": "198.18.2.2",
            "peer": me,
        }
        p6 = await until_daemon(
            lambda: _frr_path(f, "ipv6", "65000:2", "2001:db8:2::/48"),
            10,
            "vpe's VPNv6 route in FRR",
        )
        assert _frr_view(p6) == {
            "label": 202,
            "ext": "RT:65000:2 ET:13",
            "nexthop": "2001:db8:ffff::2",
            "peer": me,
        }
        assert await call(_frr_path, f, "ipv4", "65000:2", "198.51.100.128/25")

        # withdraws both ways
        sp.withdraw(VPNV4, [gone4])
        await call(
            f.configure,
            "router bgp 65000",
            "address-family ipv4 vpn",
            "no network 192.0.2.128/25 rd 198.18.2.1:7 label 101",  # FRR takes no route-map here
        )
        await until(lambda: len(sp.received(fa, VPNV4)) == 1, 10, "FRR's withdraw in vpe")
        assert [str(x.nlri) for x in sp.received(fa, VPNV4)] == ["65000:1:192.0.2.0/24"]
        await until_daemon(
            lambda: _frr_path(f, "ipv4", "65000:2", "198.51.100.128/25") is None,
            10,
            "vpe's withdraw in FRR",
        )
        assert await call(_frr_path, f, "ipv4", "65000:2", "198.51.100.0/24")

        # FRR resets the session (clear bgp = Cease/Administrative Reset); both sides relearn
        await call(f.vtysh, f"clear bgp {me}")
        await relearned_after_daemon_reset(
            sp,
            f,
            "FRR",
            "clear",
            lambda: (
                _frr_path(f, "ipv4", "65000:2", "198.51.100.0/24")
                and _frr_path(f, "ipv6", "65000:2", "2001:db8:2::/48")
            ),
        )


async def test_vpe_passive_and_vpe_reset(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """FRR connects to vpe's listener; vpe stops the peer (Cease) and starts it again."""
    me, fa = loopback(), loopback()
    myport, fport = port(), port()
    async with running_speaker(
        me, myport, settings(fa, fport, me, "198.18.2.12", passive=True)
    ) as sp:
        peer = sp.peers[fa]
        sp.announce(
            VPNV4,
            [VPNv4Prefix.from_str("65000:12:198.51.100.0/24", labels=(212,))],
            attrs("65000:12"),
            "198.18.2.12",
        )
        f = await _frr(
            spawn,
            fa,
            fport,
            "198.18.2.11",
            Neighbor(me, 65000, myport, families=("vpnv4", "vpnv6")),
            extra_global=RT_MAP,
            extra_config=_networks(
                ("ipv4 vpn", "network 192.0.2.0/24 rd 65000:11 label 111 route-map RT1")
            ),
        )
        await until(lambda: peer.established, 15, "FRR -> vpe session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert await call(_negotiated_at_frr, f, me) == {"ipv4Vpn", "ipv6Vpn"}
        await until(lambda: sp.received(fa, VPNV4), 10, "FRR's route in vpe")
        p = await until_daemon(
            lambda: _frr_path(f, "ipv4", "65000:12", "198.51.100.0/24"), 10, "vpe's route in FRR"
        )
        assert _frr_view(p)["label"] == 212

        await vpe_resets_session(
            sp,
            f,
            "FRR",
            me,
            lambda: _frr_path(f, "ipv4", "65000:12", "198.51.100.0/24"),
            "FRR to reconnect",
        )
        await until(lambda: sp.received(fa, VPNV4), 10, "FRR's route back in vpe")
        r = sp.received(fa, VPNV4)[0]
        assert (str(r.nlri), r.nlri.labels, str(r.next_hop)) == (
            "65000:11:192.0.2.0/24",
            (111,),
            fa,
        )
        p = await until_daemon(
            lambda: _frr_path(f, "ipv4", "65000:12", "198.51.100.0/24"),
            10,
            "vpe's route back in FRR",
        )
        assert _frr_view(p) == {
            "label": 212,
            "ext": "RT:65000:12 ET:13",
            "nexthop": "198.18.2.12",
            "peer": me,
        }


async def test_md5_right_and_wrong_password(
    spawn: Spawn,
    loopback: Callable[[], str],
    port: Callable[[], int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TCP-MD5: the right key gives a session; a wrong one gives none and a log line naming FRR."""
    caplog.set_level(logging.WARNING, logger="vpe.bgp")
    good, bad, fa = loopback(), loopback(), loopback()
    fport = port()
    f = await _frr(
        spawn,
        fa,
        fport,
        "198.18.2.31",
        Neighbor(good, 65000, 179, passive=True, md5_password=PASSWORD),
        Neighbor(bad, 65000, 179, passive=True, md5_password=PASSWORD),
    )
    await md5_right_and_wrong(f, good, bad, ("198.18.2.32", "198.18.2.33"), PASSWORD, caplog)
