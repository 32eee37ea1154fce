"""R10.2 Inter-AS option B: vpe as the ASBR of AS 65000 exchanging VPNv4 over eBGP with the
other AS's ASBR (FRR, then GoBGP), an iBGP route reflector (the other daemon) on its own side.

Why: option B means the ASBR re-advertises every VPN route with itself as next hop and a label
of its own, in both directions, and swaps labels in the forwarder. Each side's own JSON shows
what it got: the ASBR's next hop, a label that is not the originator's, and the AS path that
eBGP makes (the other AS's number in front over eBGP, unchanged over iBGP). The agent's FIB holds
one swap entry per (next hop, label) pair: local label -> the original next hop and label.
RFC 8212 holds throughout: the eBGP neighbor has an import and an export policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import FRR, GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    engine_config,
    established,
    frr_path,
    gobgp_attr,
    gobgp_paths,
    gobgp_view,
    loc_rib,
    running_engine,
)
from vpe_peer import call, until, until_daemon

from vpe.agent.engine import Engine
from vpe.bgp.wire.constants import VPNV4

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]

VPE_RID = "198.18.40.1"
VPE_NH = "198.18.40.1"  # vpe's underlay address: the next hop it sets
OTHER_AS = 65001
POLICIES = """
[[policies]]
name = "option-b"
  [[policies.terms]]
  name = "relabel-vpn"
  match = { family = ["vpnv4", "vpnv6"] }
  relabel = true

[[policies]]
name = "accept-all"
"""
FRR_ROUTE = (" address-family ipv4 vpn\n"
             "  network 203.0.113.0/24 rd 65001:7 label 300 route-map RT7\n"
             " exit-address-family")
RT7 = "route-map RT7 permit 10\n set extcommunity rt 65000:7"


def swaps(engine: Engine) -> dict[int, tuple[str, int]]:
    """The agent's swap entries (what goes to the FIB): local label -> (next hop, label sent with)."""
    return {e.local_label: (str(e.next_hop), e.out_label) for e in engine.router.swap_entries()}


def gobgp_as_path(path: dict[str, Any]) -> list[int]:
    a = gobgp_attr(path, 2)
    return [asn for seg in (a or {}).get("as_paths", []) for asn in seg.get("asns", [])]


def frr_as_path(p: dict[str, Any]) -> str:
    return str(p.get("aspath", {}).get("string", p.get("path", "")))


def asbr_neighbor(address: str, port: int, me: str) -> EngineNeighbor:
    return EngineNeighbor(address, port, me, remote_as=OTHER_AS, import_policy="accept-all",
                          export_policy="option-b")


async def test_r10_2_option_b_frr_as_other_asbr(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """GoBGP (AS 65000, iBGP) -> vpe (ASBR) -> FRR (AS 65001 ASBR, eBGP) and back."""
    me, ga, fa = loopback(), loopback(), loopback()
    gport, fport = port(), port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=65000, router_id="198.18.40.2",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    f: FRR = await call(spawn, FRR, address=fa, port=fport, local_as=OTHER_AS, router_id="198.18.40.3",
                        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
                        extra_global=RT7, extra_config=FRR_ROUTE)
    await call(g.add_vpnv4, "192.0.2.0/24", "65000:1", "65000:7", 100, "198.18.40.5")
    cfg = engine_config(VPE_RID, [EngineNeighbor(ga, gport, me, export_policy="option-b"),
                                  asbr_neighbor(fa, fport, me)], underlay=VPE_NH, extra=POLICIES)
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga, fa), 20, "vpe's sessions to GoBGP and FRR")
        await until(lambda: {"65000:1:192.0.2.0/24", "65001:7:203.0.113.0/24"} <= set(loc_rib(engine, VPNV4)),
                    15, "both ASes' routes in vpe")

        # AS 65000 -> AS 65001: FRR's JSON shows vpe's next hop, vpe's label, AS path 65000
        p = await until_daemon(lambda: frr_path(f, "65000:1", "192.0.2.0/24"), 15, "the route at FRR")
        out_label = p["remoteLabel"]
        assert p["nexthops"][0]["ip"] == VPE_NH
        assert out_label != 100
        assert frr_as_path(p) == "65000"

        # AS 65001 -> AS 65000: GoBGP's JSON shows vpe's next hop, vpe's label, AS path 65001
        paths = await until_daemon(lambda: gobgp_paths(g, "65001:7:203.0.113.0/24"), 15, "the route at GoBGP")
        view = gobgp_view(paths[0])
        assert view["nexthop"] == VPE_NH
        in_label = view["labels"][0]
        assert in_label != 300
        assert gobgp_as_path(paths[0]) == [OTHER_AS]

        # the forwarder swaps: each local label -> the original next hop and label
        await until(lambda: len(swaps(engine)) == 2, 5, "two swap entries")
        assert swaps(engine) == {out_label: ("198.18.40.5", 100), in_label: (fa, 300)}


async def test_r10_2_option_b_gobgp_as_other_asbr(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """FRR (AS 65000, iBGP) -> vpe (ASBR) -> GoBGP (AS 65001 ASBR, eBGP) and back."""
    me, ga, fa = loopback(), loopback(), loopback()
    gport, fport = port(), port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=OTHER_AS, router_id="198.18.41.2",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    f: FRR = await call(spawn, FRR, address=fa, port=fport, local_as=65000, router_id="198.18.41.3",
                        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
                        extra_global=RT7, extra_config=FRR_ROUTE.replace("65001:7", "65000:7"))
    await call(g.add_vpnv4, "192.0.2.0/24", "65001:1", "65000:7", 100, "198.18.41.5")
    cfg = engine_config(VPE_RID, [asbr_neighbor(ga, gport, me),
                                  EngineNeighbor(fa, fport, me, export_policy="option-b")],
                        underlay=VPE_NH, extra=POLICIES)
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga, fa), 20, "vpe's sessions to GoBGP and FRR")

        # AS 65000 (FRR) -> AS 65001 (GoBGP): vpe's next hop and label, AS path 65000
        paths = await until_daemon(lambda: gobgp_paths(g, "65000:7:203.0.113.0/24"), 15, "FRR's route at GoBGP")
        view = gobgp_view(paths[0])
        out_label = view["labels"][0]
        assert view["nexthop"] == VPE_NH and out_label != 300
        assert gobgp_as_path(paths[0]) == [65000]

        # AS 65001 (GoBGP) -> AS 65000 (FRR): vpe's next hop and label, AS path 65001
        p = await until_daemon(lambda: frr_path(f, "65001:1", "192.0.2.0/24"), 15, "GoBGP's route at FRR")
        in_label = p["remoteLabel"]
        assert p["nexthops"][0]["ip"] == VPE_NH and in_label != 100
        assert frr_as_path(p) == str(OTHER_AS)

        await until(lambda: len(swaps(engine)) == 2, 5, "two swap entries")
        assert swaps(engine) == {out_label: (fa, 300), in_label: ("198.18.41.5", 100)}

        # a withdrawal in the other AS is withdrawn here too, and its swap entry goes
        await call(g.cli, "global", "rib", "-a", "vpnv4", "del", "192.0.2.0/24", "label", "100",
                   "rd", "65001:1")
        await until_daemon(lambda: frr_path(f, "65001:1", "192.0.2.0/24") is None, 15, "the withdrawal at FRR")
        await until(lambda: set(swaps(engine)) == {out_label}, 5, "the swap entry removed")
