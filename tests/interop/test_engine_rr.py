"""R10.1: vpe's Engine as a VPNv4 route reflector between a GoBGP client and an FRR client.

Why: reflection (RFC 4456) is what lets vpe stand in the middle of a VPN
without a full iBGP mesh. Two independent implementations on either side
check that what vpe reflects is a correct reflected route: each shows the
other's route with ORIGINATOR_ID = the originating router's id and vpe's
cluster id in CLUSTER_LIST, keeping the originator's RD, label, RTs and next
hop; a withdraw at the source is reflected too, and nothing is reflected back
to the router it came from. With ADD-PATH send configured towards a peer,
the Engine sends it every path of a prefix, each under its own path id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from daemons import FRR, GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    engine_config,
    established,
    frr_path,
    gobgp_paths,
    gobgp_view,
    loc_rib,
    running_engine,
)
from vpe_peer import attrs, call, running_speaker, settings, until, until_daemon

from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]

VPE_RID = "198.18.30.1"
CLUSTER_ID = "198.18.30.100"  # not the router id: the test tells the two apart
GOBGP_RID = "198.18.30.2"
FRR_RID = "198.18.30.3"
RT_MAP = "route-map RT3 permit 10\n set extcommunity rt 65000:3"


async def test_r10_1_engine_reflects_vpnv4_between_gobgp_and_frr(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R10.1: GoBGP's route reaches FRR and FRR's reaches GoBGP through vpe, as reflected routes.

    Both daemons are plain iBGP peers of vpe; vpe has them as
    route-reflector clients and cluster id 198.18.30.100.
    """
    me, ga, fa = loopback(), loopback(), loopback()
    gport, fport = port(), port()
    g: GoBGP = await call(
        spawn,
        GoBGP,
        address=ga,
        port=gport,
        local_as=65000,
        router_id=GOBGP_RID,
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
    )
    f: FRR = await call(
        spawn,
        FRR,
        address=fa,
        port=fport,
        local_as=65000,
        router_id=FRR_RID,
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
        extra_global=RT_MAP,
        extra_config=" address-family ipv4 vpn\n"
        "  network 198.51.100.0/24 rd 65000:3 label 300 route-map RT3\n"
        " exit-address-family",
    )
    cfg = engine_config(
        VPE_RID,
        [
            EngineNeighbor(ga, gport, me, rr_client=True),
            EngineNeighbor(fa, fport, me, rr_client=True),
        ],
        cluster_id=CLUSTER_ID,
    )
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga, fa), 15, "Engine sessions to GoBGP and FRR")
        await call(g.add_vpnv4, "192.0.2.0/24", "65000:2", "65000:2", 200, "198.18.30.20")

        # vpe's own Loc-RIB holds both, each from its source
        await until(
            lambda: (
                {"65000:2:192.0.2.0/24", "65000:3:198.51.100.0/24"} <= set(loc_rib(engine, VPNV4))
            ),
            10,
            "both clients' routes in the Engine",
        )
        rows = loc_rib(engine, VPNV4)
        assert [r["peer"] for r in rows["65000:2:192.0.2.0/24"]] == [ga]
        assert [r["peer"] for r in rows["65000:3:198.51.100.0/24"]] == [fa]

        # GoBGP -> vpe -> FRR: FRR's own JSON
        p = await until_daemon(
            lambda: frr_path(f, "65000:2", "192.0.2.0/24"), 10, "GoBGP's route reflected to FRR"
        )
        assert p["peer"]["peerId"] == me
        assert p["originatorId"] == GOBGP_RID
        assert CLUSTER_ID in p["clusterList"]["list"]
        assert p["remoteLabel"] == 200
        assert p["extendedCommunity"]["string"] == "RT:65000:2"
        assert p["nexthops"][0]["ip"] == "198.18.30.20"

        # FRR -> vpe -> GoBGP: GoBGP's own JSON
        paths = await until_daemon(
            lambda: gobgp_paths(g, "65000:3:198.51.100.0/24"), 10, "FRR's route reflected to GoBGP"
        )
        assert len(paths) == 1 and paths[0]["neighbor-ip"] == me
        view = gobgp_view(paths[0])
        assert view["originator_id"] == FRR_RID
        assert CLUSTER_ID in view["cluster_list"]
        assert (view["rd"], view["labels"], view["rts"]) == ("65000:3", [300], ["65000:3"])
        assert view["nexthop"] == fa  # FRR's own routes carry its update-source

        # split horizon: nothing is reflected back to the router it came from
        adj_in = await call(g.rib, "vpnv4", "adj-in", me)
        assert set(adj_in) == {"65000:3:198.51.100.0/24"}

        # withdraw at each source: gone at the other client
        await call(
            g.cli,
            "global",
            "rib",
            "-a",
            "vpnv4",
            "del",
            "192.0.2.0/24",
            "label",
            "200",
            "rd",
            "65000:2",
        )
        await until_daemon(
            lambda: frr_path(f, "65000:2", "192.0.2.0/24") is None, 10, "GoBGP's withdraw at FRR"
        )
        await call(
            f.configure,
            "router bgp 65000",
            "address-family ipv4 vpn",
            "no network 198.51.100.0/24 rd 65000:3 label 300",
        )
        await until_daemon(
            lambda: not gobgp_paths(g, "65000:3:198.51.100.0/24"), 10, "FRR's withdraw at GoBGP"
        )
        assert loc_rib(engine, VPNV4) == {}


async def test_r11_2_engine_addpath_sends_both_paths_to_gobgp(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R11.2: two paths for one VPNv4 prefix, from a GoBGP and a vpe speaker, both reach a GoBGP
    that receives ADD-PATH; the Engine neighbor has ``add_path = [{family = "vpnv4", mode =
    "both", send = "all"}]``. Withdrawing one path at its source leaves the other."""
    me, g1a, s2, rxa = loopback(), loopback(), loopback(), loopback()
    g1port, s2port, rxport = port(), port(), port()
    key = "65000:40:198.51.100.0/24"
    g1: GoBGP = await call(
        spawn,
        GoBGP,
        address=g1a,
        port=g1port,
        local_as=65000,
        router_id="198.18.35.1",
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
    )
    rx: GoBGP = await call(
        spawn,
        GoBGP,
        address=rxa,
        port=rxport,
        local_as=65000,
        router_id="198.18.35.3",
        neighbors=[
            Neighbor(me, 65000, 179, passive=True, families=("vpnv4",), addpath_receive=True)
        ],
    )
    await call(g1.add_vpnv4, "198.51.100.0/24", "65000:40", "65000:40", 401, "198.18.35.11")
    cfg = engine_config(
        VPE_RID,
        [
            EngineNeighbor(g1a, g1port, me, rr_client=True),
            EngineNeighbor(s2, s2port, me, rr_client=True),
            EngineNeighbor(
                rxa, rxport, me, add_path=[{"family": "vpnv4", "mode": "both", "send": "all"}]
            ),
        ],
    )
    two = VPNv4Prefix.from_str(key, labels=(402,))
    src = settings(me, 0, s2, "198.18.35.2", passive=True, families=[VPNV4])
    async with running_speaker(s2, s2port, src) as sp, running_engine(cfg) as engine:
        sp.announce(VPNV4, [two], attrs("65000:40"), "198.18.35.12")
        await until(lambda: established(engine, g1a, s2, rxa), 15, "the Engine's three sessions")
        rx_peer = engine.speaker.peers[rxa]
        assert rx_peer.negotiated is not None and VPNV4 in rx_peer.negotiated.addpath_send
        await until(lambda: len(loc_rib(engine, VPNV4).get(key, [])) == 2, 10, "two paths in vpe")

        def adj_in(n: int) -> list[Any] | None:
            paths = gobgp_paths(rx, key, "adj-in", me)
            return paths if len(paths) == n else None

        paths = await until_daemon(lambda: adj_in(2), 10, "two paths in GoBGP's adj-in")
        views = sorted(
            (v["labels"][0], v["nexthop"], v["originator_id"], tuple(v["cluster_list"]))
            for v in map(gobgp_view, paths)
        )
        assert views == [
            (401, "198.18.35.11", "198.18.35.1", (VPE_RID,)),
            (402, "198.18.35.12", "198.18.35.2", (VPE_RID,)),
        ]
        # GoBGP's JSON has no path id: the ids are the ID column of its text output
        text = await call(rx.cli, "neighbor", me, "adj-in", "-a", "vpnv4")
        ids = re.findall(r"^\s*(\d+)\s+65000:40:198\.51\.100\.0/24", text, re.M)
        assert sorted(int(i) for i in ids) == [1, 2], text

        sp.withdraw(VPNV4, [two])
        paths = await until_daemon(lambda: adj_in(1), 10, "one path left in GoBGP's adj-in")
        assert paths[0]["nlri"]["labels"] == [401]
