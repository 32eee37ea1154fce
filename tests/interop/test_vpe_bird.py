"""vpe's BGP speaker against BIRD 2.0.12: sessions both ways, VPN routes both ways, resets.

Why: BIRD is an independent code base with strict attribute and next-hop
checks. It has no JSON, so assertions read ``birdc show route ... all``
(parsed by the harness) and ``show protocols all``. What BIRD does that
matters here (see docs/interop.md):

* it originates its static VPN routes with label 3 (implicit null) and its
  own session address as next hop; over an IPv4 session its VPNv6 next hop
  is the ``next hop address`` the harness sets (2001:db8:ffff::N);
* it shows extended communities as ``(rt, 65000, 2)``, and the
  encapsulation community as ``(generic, 0x30c0000, 0xd)`` (type 0x03,
  sub-type 0x0c, tunnel type 13 = MPLS-in-UDP); the label stack it decoded
  is ``BGP.mpls_label_stack``;
* received iBGP next hops must resolve in its IGP table, so the tests give
  it static routes for 198.18.0.0/15 and 2001:db8:ffff::/48 on ``lo``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from daemons import BIRD, Neighbor
from vpe_peer import (
    announce_both_ways_routes,
    attrs,
    by_nlri,
    call,
    ext_communities,
    family_names,
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
ENCAP_MPLS_IN_UDP = "(generic, 0x30c0000, 0xd)"

# vpn4_keep / vpn6_keep stay; vpn4_gone is disabled to make BIRD withdraw its route.
STATIC = """
protocol static vpn4_keep {
  vpn4 { table vpntab4; };
  route 65000:1 192.0.2.0/24 unreachable { bgp_ext_community.add((rt, 65000, 1)); bgp_ext_community.add((rt, 65000, 3)); };
}
protocol static vpn4_gone {
  vpn4 { table vpntab4; };
  route 198.18.3.1:7 192.0.2.128/25 unreachable { bgp_ext_community.add((rt, 65000, 1)); };
}
protocol static vpn6_keep {
  vpn6 { table vpntab6; };
  route 65000:1 2001:db8:1::/48 unreachable { bgp_ext_community.add((rt, 65000, 1)); };
}
protocol static nh4 { ipv4; route 198.18.0.0/15 via "lo"; }
protocol static nh6 { ipv6; route 2001:db8:ffff::/48 via "lo"; }
"""


# --------------------------------------------------------------------------- helpers


async def _bird(spawn: Spawn, address: str, port: int, rid: str, neighbor: Neighbor) -> BIRD:
    b: BIRD = await call(
        spawn,
        BIRD,
        address=address,
        port=port,
        local_as=65000,
        router_id=rid,
        neighbors=[neighbor],
        extra_config=STATIC,
    )
    return b


def _negotiated_at_bird(b: BIRD, neighbor: str) -> set[str]:
    """Families announced by both sides whose channel BIRD reports UP."""
    text = b.birdc(f"show protocols all {b.protocol_name(neighbor)}")
    announced = [set(m.split()) for m in re.findall(r"AF announced:\s+(.*)$", text, re.M)]
    up = set(re.findall(r"Channel (\S+)\s+State:\s+UP", text))
    if len(announced) != 2:
        return set()
    return announced[0] & announced[1] & up


def _bird_route(b: BIRD, table: str, net: str, proto: str) -> dict[str, Any] | None:
    """The route for ``net`` ("RD prefix", as BIRD prints it) learned from ``proto``, or None."""
    for r in b.routes(table):
        if r["net"] == net and r["proto"] == proto:
            return r
    return None


def _bird_view(r: dict[str, Any]) -> dict[str, Any]:
    a = r["attrs"]
    return {
        "kind": r["kind"],
        "labels": a.get("BGP.mpls_label_stack"),
        "ext": a.get("BGP.ext_community"),
        "nexthop": a.get("BGP.next_hop"),
    }


# --------------------------------------------------------------------------- tests


async def test_vpe_active_routes_both_ways_withdraw_and_daemon_reset(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """vpe connects to a passive BIRD; VPNv4/VPNv6 both ways; withdraws; ``birdc restart``."""
    me, ba = loopback(), loopback()
    bport = port()
    b = await _bird(
        spawn,
        ba,
        bport,
        "198.18.3.1",
        Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "vpnv6")),
    )
    proto = b.protocol_name(me)
    async with running_speaker(me, 0, settings(ba, bport, me, "198.18.3.2"), listen=False) as sp:
        peer = sp.peers[ba]
        await until(lambda: peer.established, 15, "vpe -> BIRD session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert await call(_negotiated_at_bird, b, me) == {"vpn4-mpls", "vpn6-mpls"}

        gone4 = announce_both_ways_routes(sp, "198.18.3.2")

        # BIRD -> vpe, decoded (label 3 = implicit null: BIRD's label for its own routes)
        await until(
            lambda: len(sp.received(ba, VPNV4)) == 2 and sp.received(ba, VPNV6),
            10,
            "BIRD's routes in vpe",
        )
        v4 = by_nlri(sp.received(ba, VPNV4))
        r = v4["65000:1:192.0.2.0/24"]
        assert (str(r.nlri.rd), str(r.nlri.prefix), r.nlri.labels) == (
            "65000:1",
            "192.0.2.0/24",
            (3,),
        )
        assert str(r.next_hop) == ba
        assert ext_communities(r) == ["target:65000:1", "target:65000:3"]
        r = v4["198.18.3.1:7:192.0.2.128/25"]
        assert (
            r.nlri.labels == (3,)
            and str(r.next_hop) == ba
            and ext_communities(r) == ["target:65000:1"]
        )
        r6 = sp.received(ba, VPNV6)[0]
        assert (str(r6.nlri), r6.nlri.labels, str(r6.next_hop)) == (
            "65000:1:2001:db8:1::/48",
            (3,),
            "2001:db8:ffff::" + ba.rsplit(".", 1)[1],
        )
        assert ext_communities(r6) == ["target:65000:1"]

        # vpe -> BIRD, as `show route all` prints it
        p = await until_daemon(
            lambda: _bird_route(b, "vpntab4", "65000:2 198.51.100.0/24", proto),
            10,
            "vpe's VPNv4 route in BIRD",
        )
        assert _bird_view(p) == {
            "kind": "unicast",
            "labels": "200",
            "ext": f"(rt, 65000, 2) (rt, 65000, 4) {ENCAP_MPLS_IN_UDP}",
            "nexthop": "198.18.3.2",
        }
        p6 = await until_daemon(
            lambda: _bird_route(b, "vpntab6", "65000:2 2001:db8:2::/48", proto),
            10,
            "vpe's VPNv6 route in BIRD",
        )
        assert _bird_view(p6) == {
            "kind": "unicast",
            "labels": "202",
            "ext": f"(rt, 65000, 2) {ENCAP_MPLS_IN_UDP}",
            "nexthop": "2001:db8:ffff::2",
        }
        assert await call(_bird_route, b, "vpntab4", "65000:2 198.51.100.128/25", proto)

        # withdraws both ways
        sp.withdraw(VPNV4, [gone4])
        await call(b.birdc, "disable vpn4_gone")
        await until(lambda: len(sp.received(ba, VPNV4)) == 1, 10, "BIRD's withdraw in vpe")
        assert [str(x.nlri) for x in sp.received(ba, VPNV4)] == ["65000:1:192.0.2.0/24"]
        await until_daemon(
            lambda: _bird_route(b, "vpntab4", "65000:2 198.51.100.128/25", proto) is None,
            10,
            "vpe's withdraw in BIRD",
        )
        assert await call(_bird_route, b, "vpntab4", "65000:2 198.51.100.0/24", proto)

        # BIRD restarts the protocol (Cease/Administrative Reset); both sides relearn
        await call(b.birdc, f"restart {proto}")
        await relearned_after_daemon_reset(
            sp,
            b,
            "BIRD",
            "restart",
            lambda: (
                _bird_route(b, "vpntab4", "65000:2 198.51.100.0/24", proto)
                and _bird_route(b, "vpntab6", "65000:2 2001:db8:2::/48", proto)
            ),
        )


async def test_vpe_passive_and_vpe_reset(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """BIRD connects to vpe's listener; vpe stops the peer (Cease) and starts it again."""
    me, ba = loopback(), loopback()
    myport, bport = port(), port()
    async with running_speaker(
        me, myport, settings(ba, bport, me, "198.18.3.12", passive=True)
    ) as sp:
        peer = sp.peers[ba]
        sp.announce(
            VPNV4,
            [VPNv4Prefix.from_str("65000:12:198.51.100.0/24", labels=(212,))],
            attrs("65000:12"),
            "198.18.3.12",
        )
        b = await _bird(
            spawn,
            ba,
            bport,
            "198.18.3.11",
            Neighbor(me, 65000, myport, families=("vpnv4", "vpnv6")),
        )
        proto = b.protocol_name(me)
        await until(lambda: peer.established, 15, "BIRD -> vpe session")
        assert family_names(peer) == {"vpnv4", "vpnv6"}
        assert await call(_negotiated_at_bird, b, me) == {"vpn4-mpls", "vpn6-mpls"}
        await until(lambda: len(sp.received(ba, VPNV4)) == 2, 10, "BIRD's routes in vpe")
        assert await until_daemon(
            lambda: _bird_route(b, "vpntab4", "65000:12 198.51.100.0/24", proto),
            10,
            "vpe's route in BIRD",
        )

        await vpe_resets_session(
            sp,
            b,
            "BIRD",
            me,
            lambda: _bird_route(b, "vpntab4", "65000:12 198.51.100.0/24", proto),
            "BIRD to reconnect",
        )
        await until(lambda: len(sp.received(ba, VPNV4)) == 2, 10, "BIRD's routes back in vpe")
        r = by_nlri(sp.received(ba, VPNV4))["65000:1:192.0.2.0/24"]
        assert (r.nlri.labels, str(r.next_hop)) == ((3,), ba)
        p = await until_daemon(
            lambda: _bird_route(b, "vpntab4", "65000:12 198.51.100.0/24", proto),
            10,
            "vpe's route back in BIRD",
        )
        assert _bird_view(p) == {
            "kind": "unicast",
            "labels": "212",
            "ext": f"(rt, 65000, 12) {ENCAP_MPLS_IN_UDP}",
            "nexthop": "198.18.3.12",
        }
