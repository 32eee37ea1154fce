"""Smoke tests of the interop harness itself: every daemon starts, and two of them peer.

Why: when an interop test of vpe fails, we need to know the harness is
not the cause. These tests use no vpe code at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import BIRD, FRR, ExaBGP, GoBGP, Neighbor, parse_bird_routes, wait_until

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]


def _one_neighbor(peer: str, passive: bool = True) -> list[Neighbor]:
    # The peer never comes up; a passive neighbor keeps the daemon quiet.
    return [Neighbor(peer, 65000, 179, passive=passive, families=("vpnv4",))]


def test_gobgp_starts(spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]) -> None:
    addr = loopback()
    g = spawn(
        GoBGP,
        address=addr,
        port=port(),
        local_as=65000,
        router_id="198.18.0.101",
        neighbors=_one_neighbor(loopback()),
    )
    assert g.running()
    assert "198.18.0.101" in g.cli("global")
    assert g.rib("vpnv4") == {}


def test_frr_starts(spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]) -> None:
    f = spawn(
        FRR,
        address=loopback(),
        port=port(),
        local_as=65000,
        router_id="198.18.0.102",
        neighbors=_one_neighbor(loopback()),
    )
    summary = f.json("show bgp ipv4 vpn summary")
    assert summary["routerId"] == "198.18.0.102"


def test_bird_starts(spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]) -> None:
    b = spawn(
        BIRD,
        address=loopback(),
        port=port(),
        local_as=65000,
        router_id="198.18.0.103",
        neighbors=_one_neighbor(loopback()),
        extra_config="protocol static smoke_static { vpn4 { table vpntab4; }; "
        "route 65000:1 192.0.2.0/24 unreachable; }",
    )
    routes = wait_until(lambda: b.routes("vpntab4"), 10, "BIRD static route")
    assert routes[0]["net"] == "65000:1 192.0.2.0/24"
    assert routes[0]["kind"] == "unreachable"


def test_exabgp_starts(spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]) -> None:
    e = spawn(
        ExaBGP,
        address=loopback(),
        port=port(),
        local_as=65000,
        router_id="198.18.0.104",
        neighbors=_one_neighbor(loopback(), passive=True),
    )
    assert e.running()
    assert e.received() == []


def test_gobgp_frr_vpnv4_route_crosses(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    g_addr, f_addr = loopback(), loopback()
    g_port, f_port = port(), port()
    f = spawn(
        FRR,
        address=f_addr,
        port=f_port,
        local_as=65000,
        router_id="198.18.0.106",
        neighbors=[Neighbor(g_addr, 65000, g_port, passive=True, families=("vpnv4",))],
    )
    g = spawn(
        GoBGP,
        address=g_addr,
        port=g_port,
        local_as=65000,
        router_id="198.18.0.105",
        neighbors=[Neighbor(f_addr, 65000, f_port, families=("vpnv4",))],
    )
    g.wait_established(f_addr)
    f.wait_established(g_addr)
    g.add_vpnv4("192.0.2.0/24", "65000:1", "65000:1", 100, "198.18.0.105")

    def frr_has_route() -> dict[str, Any] | None:
        rds = f.json("show bgp ipv4 vpn").get("routes", {}).get("routeDistinguishers", {})
        paths = rds.get("65000:1", {}).get("192.0.2.0/24")
        return paths[0] if paths else None

    path = wait_until(frr_has_route, 20, "the VPNv4 route at FRR")
    assert path["nexthops"][0]["ip"] == "198.18.0.105"
    detail = f.json("show bgp ipv4 vpn rd 65000:1 192.0.2.0/24")["65000:1"]["paths"][0]
    assert detail["extendedCommunity"]["string"] == "RT:65000:1"
    assert detail["remoteLabel"] == 100


def test_parse_bird_routes_alternatives() -> None:
    text = """Table vpntab4:
65000:1 192.0.2.0/24 unicast [p1 12:00:00.000 from 127.0.0.2] * (100) [AS65001i]
\tvia 127.0.0.2 on lo mpls 100
\tType: BGP univ
\tBGP.ext_community: (rt, 65000, 1)
                     unreachable [p2 12:00:01.000 from 127.0.0.3] (100) [?]
\tType: BGP univ
"""
    routes = parse_bird_routes(text)
    assert [r["proto"] for r in routes] == ["p1", "p2"]
    assert routes[0]["best"] and not routes[1]["best"]
    assert routes[1]["net"] == "65000:1 192.0.2.0/24"
    assert routes[0]["mpls"] == [100]
    assert routes[0]["attrs"]["BGP.ext_community"] == "(rt, 65000, 1)"
