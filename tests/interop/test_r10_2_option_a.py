"""R10.2 Inter-AS option A with GoBGP: the other AS's ASBR is a BGP neighbor of vpe's VRF.

Back-to-back VRFs: GoBGP ``ce`` (AS 65001) peers over eBGP with VRF ``red`` of vpe
(``[[vrfs.neighbors]]``, IPv4 and IPv6 unicast); GoBGP ``rr`` (AS 65000) is vpe's VPN route
reflector. Routes flow both ways: what ``ce`` announces becomes routes of ``red`` and leaves
as VPN routes (``rr``'s JSON shows them with vpe's next hop, a label and the CE's AS_PATH); the VRF's routes
(local subnets, VPN routes it imports) reach ``ce`` as plain unicast with AS path 65000 and
vpe's next hop (``next_hop`` / ``next_hop6``: its gateway addresses on the CE's port), never ``ce``'s own routes back.
The session reaches vpe over loopback addresses here: docs/inter-as.md says how a CE in a
port's namespace reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    EngineVrf,
    engine_config,
    established,
    gobgp_attr,
    gobgp_paths,
    gobgp_view,
    running_engine,
    vrf_table,
)
from test_r10_2_option_b import gobgp_as_path
from vpe_peer import call, until, until_daemon

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
VPE_NH = "198.18.60.1"
#: vpe's addresses as the CE sees them: its gateway on red's port (GoBGP refuses 127/8 next hops)
NH4 = "192.0.2.1"
NH6 = "2001:db8:9::1"


def vrf_neighbor(address: str, port: int, me: str) -> str:
    return f"""
[[vrfs.neighbors]]
address = "{address}"
port = {port}
local_address = "{me}"
remote_as = 65001
connect_retry = 1.0
import_policy = "accept-all"
export_policy = "accept-all"
next_hop = "{NH4}"
next_hop6 = "{NH6}"

[[policies]]
name = "accept-all"
"""


def unicast(g: GoBGP, family: str, prefix: str) -> dict[str, Any] | None:
    paths = (g.rib(family) or {}).get(prefix) or []
    if not paths:
        return None
    p = paths[0]
    mp = gobgp_attr(p, 14)
    nh = mp["nexthop"] if mp else (gobgp_attr(p, 3) or {}).get("nexthop")
    return {"nexthop": nh, "as_path": gobgp_as_path(p)}


async def test_r10_2_option_a_vrf_neighbor_gobgp_both_ways(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    me, ca, ra = loopback(), loopback(), loopback()
    cp, rp = port(), port()
    ce: GoBGP = await call(spawn, GoBGP, address=ca, port=cp, local_as=65001, router_id="198.18.61.2",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("ipv4", "ipv6"))])
    rr: GoBGP = await call(spawn, GoBGP, address=ra, port=rp, local_as=65000, router_id="198.18.60.2",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "vpnv6"))])
    await call(ce.add_route, "ipv4", "203.0.113.0/24", "nexthop", "192.0.2.50")
    await call(ce.add_route, "ipv6", "2001:db8:50::/48", "nexthop", "2001:db8:9::50")
    await call(rr.add_vpnv4, "198.51.100.0/24", "65000:2", "65000:9", 500, "198.18.60.5")
    cfg = engine_config(
        VPE_NH, [EngineNeighbor(ra, rp, me, families=("vpnv4", "vpnv6"))],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"],
                   routes=[("192.0.2.0/25", "subnet"), ("2001:db8:9::/64", "subnet")])],
        underlay=VPE_NH, extra=vrf_neighbor(ca, cp, me),
    )
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ra, ca), 20, "vpe's sessions to rr and to red's neighbor")

        # CE -> VRF: both families become routes of red, via the CE's next hops
        table = await until(lambda: (lambda t: t if {"203.0.113.0/24", "2001:db8:50::/48"} <= set(t) else None)(
            vrf_table(engine, "red")), 15, "the CE's routes in red")
        assert table["203.0.113.0/24"][0]["next_hop"] == "192.0.2.50"
        assert table["2001:db8:50::/48"][0]["next_hop"] == "2001:db8:9::50"

        # ... and out as VPN routes: rr's JSON
        paths = await until_daemon(lambda: gobgp_paths(rr, "65000:9:203.0.113.0/24"), 15, "the CE route at rr")
        v = gobgp_view(paths[0])
        assert v["nexthop"] == VPE_NH and v["labels"][0] >= 16 and v["rts"] == ["65000:9"]
        assert gobgp_as_path(paths[0]) == [65001]  # the CE's AS_PATH carried into the VPN route
        v6 = await until_daemon(lambda: (rr.rib("vpnv6") or {}).get("65000:9:2001:db8:50::/48"), 15,
                                "the CE's IPv6 route at rr")
        assert v6

        # VRF -> CE: the imported VPN route and the local subnets, AS path 65000, our next hops
        got = await until_daemon(lambda: unicast(ce, "ipv4", "198.51.100.0/24"), 15, "the VPN route at the CE")
        assert got == {"nexthop": NH4, "as_path": [65000]}
        got = await until_daemon(lambda: unicast(ce, "ipv4", "192.0.2.0/25"), 15, "red's subnet at the CE")
        assert got == {"nexthop": NH4, "as_path": [65000]}
        got = await until_daemon(lambda: unicast(ce, "ipv6", "2001:db8:9::/64"), 15, "red's IPv6 subnet at the CE")
        assert got == {"nexthop": NH6, "as_path": [65000]}
        # never the CE's own routes back
        adj_in = await call(ce.rib, "ipv4", "adj-in", me)
        assert "203.0.113.0/24" not in adj_in

        # a withdrawal at the CE: gone from red and from the VPN
        await call(ce.cli, "global", "rib", "-a", "ipv4", "del", "203.0.113.0/24")
        await until_daemon(lambda: not gobgp_paths(rr, "65000:9:203.0.113.0/24"), 15, "the withdrawal at rr")
        assert "203.0.113.0/24" not in vrf_table(engine, "red")


def two_ce_neighbors(ces: list[tuple[str, int, int]], me: str) -> str:
    out = ""
    for address, port, asn in ces:
        out += f"""
[[vrfs.neighbors]]
address = "{address}"
port = {port}
local_address = "{me}"
remote_as = {asn}
connect_retry = 1.0
families = ["ipv4-unicast"]
import_policy = "accept-all"
export_policy = "accept-all"
next_hop = "{NH4}"
"""
    return out + '\n[[policies]]\nname = "accept-all"\n'


async def test_r10_2_option_a_two_ces_same_prefix_best_path_and_fallback(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """Two CEs (AS 65001, 65002) announce one prefix with equally long paths: the lower
    neighbor address wins, its AS_PATH is the VPN route's, the other CE gets the winner's
    route; the winner withdraws and the VRF falls back to the other CE."""
    me, ra = loopback(), loopback()
    ces: list[tuple[str, int, int, str]] = [(loopback(), port(), 65001, "192.0.2.50"),
                                            (loopback(), port(), 65002, "192.0.2.60")]
    rp = port()
    daemons: dict[str, GoBGP] = {}
    for i, (addr, p, asn, nh) in enumerate(ces):
        daemons[addr] = await call(spawn, GoBGP, address=addr, port=p, local_as=asn, router_id=f"198.18.61.{i + 2}",
                                   neighbors=[Neighbor(me, 65000, 179, passive=True, families=("ipv4",))])
        await call(daemons[addr].add_route, "ipv4", "203.0.113.0/24", "nexthop", nh)
    rr: GoBGP = await call(spawn, GoBGP, address=ra, port=rp, local_as=65000, router_id="198.18.60.2",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    cfg = engine_config(
        VPE_NH, [EngineNeighbor(ra, rp, me, families=("vpnv4",))],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"], routes=[("192.0.2.0/25", "subnet")])],
        underlay=VPE_NH, extra=two_ce_neighbors([(a, p, asn) for a, p, asn, _ in ces], me),
    )
    win, lose = sorted(ces, key=lambda c: tuple(int(x) for x in c[0].split(".")))
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ra, ces[0][0], ces[1][0]), 20, "vpe's sessions")

        def red_nh() -> str | None:
            rows = vrf_table(engine, "red").get("203.0.113.0/24")
            return rows[0]["next_hop"] if rows else None

        def rr_path() -> list[int] | None:
            paths = gobgp_paths(rr, "65000:9:203.0.113.0/24")
            return gobgp_as_path(paths[0]) if paths else None

        # both announced: the lower neighbor address wins, its path is the VPN route's
        await until(lambda: red_nh() == win[3] and len(vrf_table(engine, "red")["203.0.113.0/24"]) == 1, 15,
                    "the winner's route in red")
        await until_daemon(lambda: rr_path() == [win[2]], 15, "the winner's AS_PATH at rr")

        def heard_by_loser() -> list[int] | None:
            paths = (daemons[lose[0]].rib("ipv4", "adj-in", me) or {}).get("203.0.113.0/24") or []
            return gobgp_as_path(paths[0]) if paths else None

        await until_daemon(lambda: heard_by_loser() == [65000, win[2]], 15, "the winner's route at the other CE")

        # the winner withdraws: the VRF falls back to the other CE's route
        await call(daemons[win[0]].cli, "global", "rib", "-a", "ipv4", "del", "203.0.113.0/24")
        await until(lambda: red_nh() == lose[3], 15, "the fallback to the other CE")
        await until_daemon(lambda: rr_path() == [lose[2]], 15, "the other CE's AS_PATH at rr")
