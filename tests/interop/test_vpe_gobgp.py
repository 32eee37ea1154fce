"""vpe's BGP speaker against GoBGP 3.10: sessions, VPN routes, ADD-PATH, TCP-MD5, RT constraint.

Why: vpe's codec and session code are only proven when an independent
implementation accepts what vpe sends and vpe decodes what it sends back.
GoBGP is the one packaged daemon here that does RT constraint (SAFI 132)
and shows the encapsulation extended community in its JSON, so it carries
the most checks. The vpe speaker runs in the test's event loop; GoBGP runs
through the harness, and every blocking ``gobgp`` call goes to a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from daemons import GoBGP, Neighbor
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

from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.capabilities import AddPathMode
from vpe.bgp.wire.constants import RTC, VPNV4, VPNV6
from vpe.bgp.wire.nlri.rtc import RouteTargetMembership
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
PASSWORD = "vpe-gobgp-md5"


# --------------------------------------------------------------------------- helpers


async def _gobgp(spawn: Spawn, address: str, port: int, rid: str, *neighbors: Neighbor) -> GoBGP:
    g: GoBGP = await call(
        spawn,
        GoBGP,
        address=address,
        port=port,
        local_as=65000,
        router_id=rid,
        neighbors=list(neighbors),
    )
    return g


def _negotiated_at_gobgp(g: GoBGP, neighbor: str) -> set[str]:
    """Families GoBGP itself reports as "advertised and received" for ``neighbor``."""
    text = g.cli("neighbor", neighbor)
    return set(re.findall(r"^\s+([\w-]+):\s+advertised and received", text, re.M))


def _path(g: GoBGP, family: str, key: str) -> dict[str, Any] | None:
    """The (single) path GoBGP holds for ``RD:prefix`` in its global RIB, or None."""
    paths = g.rib(family).get(key) or []
    return paths[0] if paths else None


def _attr(path: dict[str, Any], code: int) -> dict[str, Any]:
    return next(a for a in path["attrs"] if a["type"] == code)


def _gobgp_view(path: dict[str, Any]) -> dict[str, Any]:
    """RD, labels, RTs, encapsulation tunnel types and next hop of one GoBGP JSON path."""
    ext = _attr(path, 16)["value"]
    rd = path["nlri"]["rd"]
    return {
        "rd": f"{rd['admin']}:{rd['assigned']}",
        "labels": path["nlri"]["labels"],
        "rts": sorted(e["value"] for e in ext if e.get("subtype") == 2),
        "encap": sorted(e["tunnel_type"] for e in ext if e.get("subtype") == 12),
        "nexthop": _attr(path, 14)["nexthop"],
    }


# --------------------------------------------------------------------------- tests


async def test_vpe_active_routes_both_ways_withdraw_and_resets(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """vpe connects to a passive GoBGP; VPNv4/VPNv6 both ways; withdraws; resets from each side."""
    me, ga = loopback(), loopback()
    gport = port()
    g = await _gobgp(
        spawn,
        ga,
        gport,
        "198.18.1.1",
        Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "vpnv6")),
    )
    async with running_speaker(me, 0, settings(ga, gport, me, "198.18.1.2"), listen=False) as sp:
        peer = sp.peers[ga]
        await until(lambda: peer.established, 15, "vpe -> GoBGP session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert {"l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast"} <= await call(
            _negotiated_at_gobgp, g, me
        )

        # GoBGP -> vpe (one route of each family stays, one VPNv4 route is withdrawn later)
        await call(
            g.add_vpnv4,
            "192.0.2.0/24",
            "65000:1",
            "65000:1",
            100,
            "198.18.1.1",
            "encap",
            "mpls-in-udp",
        )
        await call(
            g.add_vpnv4, "192.0.2.128/25", "198.18.1.1:7", ["65000:1", "65000:3"], 101, "198.18.1.3"
        )
        await call(g.add_vpnv6, "2001:db8:1::/48", "65000:1", "65000:1", 102, "2001:db8:ffff::1")
        # vpe -> GoBGP
        gone4 = announce_both_ways_routes(sp, "198.18.1.2")

        await until(
            lambda: len(sp.received(ga, VPNV4)) == 2 and sp.received(ga, VPNV6),
            10,
            "GoBGP's routes in vpe",
        )
        v4 = by_nlri(sp.received(ga, VPNV4))
        r = v4["65000:1:192.0.2.0/24"]
        assert (str(r.nlri.rd), str(r.nlri.prefix), r.nlri.labels) == (
            "65000:1",
            "192.0.2.0/24",
            (100,),
        )
        assert str(r.next_hop) == "198.18.1.1"
        assert ext_communities(r) == ["target:65000:1", "encap:mpls-in-udp"]
        r = v4["198.18.1.1:7:192.0.2.128/25"]
        assert r.nlri.labels == (101,) and str(r.next_hop) == "198.18.1.3"
        assert sorted(ext_communities(r)) == ["target:65000:1", "target:65000:3"]
        r6 = sp.received(ga, VPNV6)[0]
        assert (str(r6.nlri), r6.nlri.labels, str(r6.next_hop)) == (
            "65000:1:2001:db8:1::/48",
            (102,),
            "2001:db8:ffff::1",
        )
        assert ext_communities(r6) == ["target:65000:1"]

        p = await until_daemon(
            lambda: _path(g, "vpnv4", "65000:2:198.51.100.0/24"), 10, "vpe's VPNv4 route in GoBGP"
        )
        assert _gobgp_view(p) == {
            "rd": "65000:2",
            "labels": [200],
            "rts": ["65000:2", "65000:4"],
            "encap": [13],
            "nexthop": "198.18.1.2",
        }
        assert p["neighbor-ip"] == me
        p6 = await until_daemon(
            lambda: _path(g, "vpnv6", "65000:2:2001:db8:2::/48"), 10, "vpe's VPNv6 route in GoBGP"
        )
        assert _gobgp_view(p6) == {
            "rd": "65000:2",
            "labels": [202],
            "rts": ["65000:2"],
            "encap": [13],
            "nexthop": "2001:db8:ffff::2",
        }

        # withdraws both ways
        sp.withdraw(VPNV4, [gone4])
        await call(
            g.cli,
            "global",
            "rib",
            "-a",
            "vpnv4",
            "del",
            "192.0.2.128/25",
            "label",
            "101",
            "rd",
            "198.18.1.1:7",
        )
        await until(lambda: len(sp.received(ga, VPNV4)) == 1, 10, "GoBGP's withdraw in vpe")
        assert [str(x.nlri) for x in sp.received(ga, VPNV4)] == ["65000:1:192.0.2.0/24"]
        await until_daemon(
            lambda: "65000:2:198.51.100.128/25" not in g.rib("vpnv4"), 10, "vpe's withdraw in GoBGP"
        )
        assert "65000:2:198.51.100.0/24" in await call(g.rib, "vpnv4")

        # GoBGP resets the session (Cease); vpe reconnects and both sides relearn
        await call(g.cli, "neighbor", me, "disable")
        await until(lambda: not peer.established, 10, "session down after disable")
        await call(g.cli, "neighbor", me, "enable")
        await relearned_after_daemon_reset(
            sp,
            g,
            "GoBGP",
            "reset",
            lambda: (
                _path(g, "vpnv4", "65000:2:198.51.100.0/24")
                and _path(g, "vpnv6", "65000:2:2001:db8:2::/48")
            ),
        )

        # vpe resets the session (Cease / Administrative Shutdown) and starts it again
        await vpe_resets_session(
            sp,
            g,
            "GoBGP",
            me,
            lambda: _path(g, "vpnv4", "65000:2:198.51.100.0/24"),
            "session back after vpe's reset",
        )
        await until(lambda: len(sp.received(ga, VPNV4)) == 1, 10, "GoBGP's route back in vpe")
        p = await until_daemon(
            lambda: _path(g, "vpnv4", "65000:2:198.51.100.0/24"), 10, "vpe's route back in GoBGP"
        )
        assert _gobgp_view(p)["labels"] == [200]


async def test_vpe_passive(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """GoBGP connects to vpe's listener; routes cross both ways.

    The resets are in the vpe-active test: GoBGP's active side retries no
    faster than every 5 s (its hard minimum) plus jitter, so a reset with
    GoBGP as the connecting side costs 10-15 s that this suite cannot spend.
    """
    me, ga = loopback(), loopback()
    myport, gport = port(), port()
    async with running_speaker(
        me, myport, settings(ga, gport, me, "198.18.1.12", passive=True)
    ) as sp:
        peer = sp.peers[ga]
        sp.announce(
            VPNV4,
            [VPNv4Prefix.from_str("65000:12:198.51.100.0/24", labels=(212,))],
            attrs("65000:12"),
            "198.18.1.12",
        )
        g = await _gobgp(
            spawn,
            ga,
            gport,
            "198.18.1.11",
            Neighbor(me, 65000, myport, families=("vpnv4", "vpnv6")),
        )
        await until(lambda: peer.established, 15, "GoBGP -> vpe session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert {"l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast"} <= await call(
            _negotiated_at_gobgp, g, me
        )
        await call(g.add_vpnv4, "192.0.2.0/24", "65000:11", "65000:11", 111, "198.18.1.11")
        await until(lambda: sp.received(ga, VPNV4), 10, "GoBGP's route in vpe")
        assert await until_daemon(
            lambda: _path(g, "vpnv4", "65000:12:198.51.100.0/24"), 10, "vpe's route in GoBGP"
        )

        r = sp.received(ga, VPNV4)[0]
        assert (str(r.nlri), r.nlri.labels, str(r.next_hop)) == (
            "65000:11:192.0.2.0/24",
            (111,),
            "198.18.1.11",
        )
        p = await call(_path, g, "vpnv4", "65000:12:198.51.100.0/24")
        assert p is not None and _gobgp_view(p)["labels"] == [212]


async def test_addpath_two_paths_both_ways(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """vpe A sends two paths for one prefix (ADD-PATH send) to GoBGP (receive), which as a route
    reflector with send-max 2 reflects both to vpe B (ADD-PATH receive)."""
    a, b, ga = loopback(), loopback(), loopback()
    gport = port()
    g = await _gobgp(
        spawn,
        ga,
        gport,
        "198.18.1.21",
        Neighbor(
            a, 65000, 179, passive=True, families=("vpnv4",), addpath_receive=True, rr_client=True
        ),
        Neighbor(b, 65000, 179, passive=True, families=("vpnv4",), addpath_send=2, rr_client=True),
    )
    send = settings(
        ga, gport, a, "198.18.1.22", families=[VPNV4], add_path=((VPNV4, AddPathMode.SEND),)
    )
    recv = settings(
        ga, gport, b, "198.18.1.23", families=[VPNV4], add_path=((VPNV4, AddPathMode.RECEIVE),)
    )
    async with (
        running_speaker(a, 0, send, listen=False) as sa,
        running_speaker(b, 0, recv, listen=False) as sb,
    ):
        pa, pb = sa.peers[ga], sb.peers[ga]
        await until(lambda: pa.established and pb.established, 15, "both vpe sessions")
        assert pa.negotiated is not None and VPNV4 in pa.negotiated.addpath_send
        assert pb.negotiated is not None and VPNV4 in pb.negotiated.addpath_receive
        one = VPNv4Prefix.from_str("65000:21:198.51.100.0/24", labels=(221,), path_id=1)
        two = VPNv4Prefix.from_str("65000:21:198.51.100.0/24", labels=(222,), path_id=2)
        sa.announce(VPNV4, [one], attrs("65000:21"), "198.18.1.22")
        sa.announce(VPNV4, [two], attrs("65000:21"), "198.18.1.24")

        # GoBGP's Adj-RIB-In from A holds both paths. Its JSON has no path-id field,
        # so the ids are read from the ID column of the text output.
        def adj_in_paths() -> list[Any] | None:
            paths = g.rib("vpnv4", "adj-in", a).get("65000:21:198.51.100.0/24") or []
            return paths if len(paths) == 2 else None

        paths = await until_daemon(adj_in_paths, 10, "two paths in GoBGP's adj-in")
        assert sorted((p["nlri"]["labels"][0], _attr(p, 14)["nexthop"]) for p in paths) == [
            (221, "198.18.1.22"),
            (222, "198.18.1.24"),
        ]
        text = await call(g.cli, "neighbor", a, "adj-in", "-a", "vpnv4")
        ids = sorted(
            int(m) for m in re.findall(r"^\s*(\d+)\s+65000:21:198\.51\.100\.0/24", text, re.M)
        )
        assert ids == [1, 2]

        await until(lambda: len(sb.received(ga, VPNV4)) == 2, 10, "both paths reflected into vpe B")
        got = sorted((r.nlri.labels[0], str(r.next_hop)) for r in sb.received(ga, VPNV4))
        assert got == [(221, "198.18.1.22"), (222, "198.18.1.24")]
        assert len({r.nlri.path_id for r in sb.received(ga, VPNV4)}) == 2
        assert {str(r.nlri) for r in sb.received(ga, VPNV4)} == {"65000:21:198.51.100.0/24"}

        # withdrawing one path id leaves the other, on both hops
        sa.withdraw(VPNV4, [two])
        await until(lambda: len(sb.received(ga, VPNV4)) == 1, 10, "one path withdrawn in vpe B")
        assert sb.received(ga, VPNV4)[0].nlri.labels == (221,)


async def test_md5_right_and_wrong_password(
    spawn: Spawn,
    loopback: Callable[[], str],
    port: Callable[[], int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TCP-MD5: the right key gives a session; a wrong one gives none and a log line naming GoBGP."""
    caplog.set_level(logging.WARNING, logger="vpe.bgp")
    good, bad, ga = loopback(), loopback(), loopback()
    gport = port()
    g = await _gobgp(
        spawn,
        ga,
        gport,
        "198.18.1.31",
        Neighbor(good, 65000, 179, passive=True, md5_password=PASSWORD),
        Neighbor(bad, 65000, 179, passive=True, md5_password=PASSWORD),
    )
    await md5_right_and_wrong(g, good, bad, ("198.18.1.32", "198.18.1.33"), PASSWORD, caplog)


async def test_rtc_filters_what_the_reflector_sends(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """RT constraint: GoBGP (RR) sends a vpe client only the VPN routes whose RT it asked for.

    Observed GoBGP behaviour (RFC 4684 as written): with RTC negotiated and no
    membership route from the client, GoBGP sends it no VPN routes at all; each
    membership route pulls in the routes of that RT (reflected and GoBGP's own),
    and withdrawing it withdraws them again.
    """
    c, s, ga = loopback(), loopback(), loopback()
    gport = port()
    g = await _gobgp(
        spawn,
        ga,
        gport,
        "198.18.1.41",
        Neighbor(c, 65000, 179, passive=True, families=("vpnv4", "vpnv6", "rtc"), rr_client=True),
        Neighbor(s, 65000, 179, passive=True, families=("vpnv4",), rr_client=True),
    )
    client = settings(ga, gport, c, "198.18.1.42", families=[VPNV4, VPNV6, RTC])
    source = settings(ga, gport, s, "198.18.1.43", families=[VPNV4])
    async with (
        running_speaker(c, 0, client, listen=False) as sc,
        running_speaker(s, 0, source, listen=False) as ss,
    ):
        pc = sc.peers[ga]
        await until(lambda: pc.established and ss.peers[ga].established, 15, "both vpe sessions")
        assert family_names(pc) == {"vpnv4", "vpnv6", "rtc"}
        assert {"l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast", "rtc"} <= await call(
            _negotiated_at_gobgp, g, c
        )

        # the reflector holds routes of RT 65000:1 and 65000:2, its own and reflected ones
        await call(g.add_vpnv4, "192.0.2.0/24", "65000:1", "65000:1", 101, "198.18.1.41")
        await call(g.add_vpnv4, "192.0.2.0/24", "65000:2", "65000:2", 102, "198.18.1.41")
        await call(g.add_vpnv6, "2001:db8:1::/48", "65000:1", "65000:1", 103, "2001:db8:ffff::41")
        ss.announce(
            VPNV4,
            [VPNv4Prefix.from_str("65000:11:198.51.100.0/24", labels=(111,))],
            attrs("65000:1"),
            "198.18.1.43",
        )
        ss.announce(
            VPNV4,
            [VPNv4Prefix.from_str("65000:12:203.0.113.0/24", labels=(112,))],
            attrs("65000:2"),
            "198.18.1.43",
        )
        await until_daemon(
            lambda: len(g.rib("vpnv4")) == 4, 10, "four VPNv4 routes at the reflector"
        )

        def held() -> set[str]:
            return {str(r.nlri) for f in (VPNV4, VPNV6) for r in sc.received(ga, f)}

        # no membership yet: nothing (checked over a second, GoBGP sends at once when it does)
        await asyncio.sleep(1.0)
        assert held() == set()

        rtc_attrs = PathAttributes([Origin(0), AsPath.sequence(), LocalPref(100)])
        want1 = RouteTargetMembership.from_str("65000:target:65000:1")
        sc.announce(RTC, [want1], rtc_attrs, "198.18.1.42")
        only1 = {"65000:1:192.0.2.0/24", "65000:11:198.51.100.0/24", "65000:1:2001:db8:1::/48"}
        await until(lambda: held() == only1, 10, "only the RT 65000:1 routes")
        rtc_rib = await call(g.cli, "global", "rib", "-a", "rtc")
        assert "65000:65000:1" in rtc_rib and "198.18.1.42" in rtc_rib
        for fam in (VPNV4, VPNV6):
            for r in sc.received(ga, fam):
                assert "target:65000:1" in ext_communities(r)
                assert "target:65000:2" not in ext_communities(r)
        # the reflected one kept the source's label and next hop
        refl = by_nlri(sc.received(ga, VPNV4))["65000:11:198.51.100.0/24"]
        assert refl.nlri.labels == (111,) and str(refl.next_hop) == "198.18.1.43"

        # swapping the membership swaps the routes
        sc.announce(
            RTC, [RouteTargetMembership.from_str("65000:target:65000:2")], rtc_attrs, "198.18.1.42"
        )
        sc.withdraw(RTC, [want1])
        await until(
            lambda: held() == {"65000:2:192.0.2.0/24", "65000:12:203.0.113.0/24"},
            10,
            "only RT 65000:2",
        )
