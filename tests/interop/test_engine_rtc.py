"""R11.3: RT constraint from vpe's Engine: a VRF's import RTs decide what the reflector sends.

Why: with thousands of VPNs behind one route reflector, a vPE must receive
only the VPN routes of the VRFs it has (RFC 4684), and creating a VRF must
pull its routes in without resetting the session. The Engine originates one
RTC membership route per import RT of its VRFs; GoBGP (a reflector doing
RTC) holds routes of 100 RTs and must send vpe exactly those of the RTs vpe
asked for -- checked in vpe's Adj-RIB-In and in GoBGP's own Adj-RIB-Out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    EngineVrf,
    adj_in_count,
    engine_config,
    established,
    loc_rib,
    running_engine,
    summary_of,
    vrf_prefixes,
)
from vpe_peer import attrs, call, running_speaker, settings, until, until_daemon

from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
RTS = 100


def _source_route(n: int) -> VPNv4Prefix:
    """The source client's route of RT 65000:n: 203.0.113.0/24 under RD 65000:n, label 1000+n."""
    return VPNv4Prefix.from_str(f"65000:{n}:203.0.113.0/24", labels=(1000 + n,))


async def test_r11_3_engine_rtc_receives_only_its_rts_and_add_vrf_pulls_more(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R11.3: one VRF importing 65000:1 gets only RT 65000:1 of 100 RTs; add_vrf(65000:2) adds those.

    GoBGP is the RR (RTC on the vpe session); a vpe speaker, another RR
    client, originates one route for each RT 65000:1..100, and GoBGP itself
    originates routes for RTs 65000:1, 65000:2 and 65000:50.
    """
    me, src, ga = loopback(), loopback(), loopback()
    gport = port()
    g: GoBGP = await call(
        spawn,
        GoBGP,
        address=ga,
        port=gport,
        local_as=65000,
        router_id="198.18.31.1",
        neighbors=[
            Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "rtc"), rr_client=True),
            Neighbor(src, 65000, 179, passive=True, families=("vpnv4",), rr_client=True),
        ],
    )
    for n in (1, 2, 50):
        await call(g.add_vpnv4, "192.0.2.0/24", f"65001:{n}", f"65000:{n}", 500 + n, "198.18.31.1")
    source = settings(ga, gport, src, "198.18.31.3", families=[VPNV4])
    async with running_speaker(src, 0, source, listen=False) as sp:
        await until(lambda: sp.peers[ga].established, 15, "source speaker -> GoBGP")
        for n in range(1, RTS + 1):
            sp.announce(VPNV4, [_source_route(n)], attrs(f"65000:{n}"), "198.18.31.3")
        await until_daemon(
            lambda: len(g.rib("vpnv4")) == RTS + 3, 15, f"{RTS + 3} VPNv4 routes at GoBGP"
        )

        cfg = engine_config(
            "198.18.31.2",
            [EngineNeighbor(ga, gport, me, families=("vpnv4", "rtc"))],
            [EngineVrf("red", "65000:901", import_rts=["65000:1"], export_rts=["65000:901"])],
        )
        async with running_engine(cfg) as engine:
            peer = engine.speaker.peers[ga]
            await until(lambda: established(engine, ga), 15, "Engine -> GoBGP session")
            assert {"vpnv4", "rtc"} <= set(summary_of(engine, ga)["families"])

            # GoBGP learned the Engine's membership route for 65000:1 ...
            await until_daemon(
                lambda: "65000:65000:1" in g.cli("neighbor", me, "adj-in", "-a", "rtc"),
                10,
                "the Engine's RTC route at GoBGP",
            )
            # ... and sends only the two RT 65000:1 routes (its own and the reflected one)
            want1 = {"65001:1:192.0.2.0/24", "65000:1:203.0.113.0/24"}
            await until(lambda: set(loc_rib(engine, VPNV4, ga)) == want1, 10, "RT 65000:1 routes")
            assert adj_in_count(engine, ga, VPNV4) == 2
            assert summary_of(engine, ga)["received"]["vpnv4"] == 2
            adj_out = await call(g.rib, "vpnv4", "adj-out", me)
            assert set(adj_out) == want1
            for rows in loc_rib(engine, VPNV4).values():
                assert "target:65000:1" in rows[0]["attributes"]["extended_communities"]
            assert vrf_prefixes(engine, "red") == {"192.0.2.0/24", "203.0.113.0/24"}

            # a new VRF importing 65000:2 pulls its routes in, on the same session
            engine.bridge.add_vrf("blue", rd="65000:902", import_rts=["65000:2"], export_rts=["65000:902"])
            want2 = want1 | {"65001:2:192.0.2.0/24", "65000:2:203.0.113.0/24"}
            await until(lambda: set(loc_rib(engine, VPNV4, ga)) == want2, 10, "RT 65000:2 routes")
            assert adj_in_count(engine, ga, VPNV4) == 4
            assert set(await call(g.rib, "vpnv4", "adj-out", me)) == want2
            assert vrf_prefixes(engine, "blue") == {"192.0.2.0/24", "203.0.113.0/24"}
            blue = engine.view.vrf_json("blue")["table"]["203.0.113.0/24"][0]
            assert blue["labels"] == [1002] and blue["next_hop"] == "198.18.31.3"
            assert peer.counters["established_transitions"] == 1
            assert peer.counters["notifications_in"] == 0
            assert peer.established

            # removing the VRF withdraws its membership: its routes leave again
            engine.bridge.remove_vrf("blue")
            await until(lambda: set(loc_rib(engine, VPNV4, ga)) == want1, 10, "RT 65000:2 gone")
            assert peer.counters["established_transitions"] == 1
