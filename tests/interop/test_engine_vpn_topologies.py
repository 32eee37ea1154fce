"""R4.3 / R4.5 / R10.1 / R10.3: VPN topologies built only with route targets, across vpe and a real peer.

Why: extranet (shared services) and hub-and-spoke are not features of their
own in BGP/MPLS IP VPNs (RFC 4364 section 4.3.5): they are what import and
export RTs make of the routes. The proof is therefore the contents of each
vpe VRF table, with routes coming both from a real peer (GoBGP originating
the remote sites with the right RTs) and from vpe's own VRFs (local routes,
leaked between local VRFs by the same RT rules), plus the peer's view of
what vpe exports. The aggregate test checks what a VRF's own route looks
like to two independent implementations: vpe's next hop, the VRF's single
per-VRF label, its RD and export RTs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import FRR, GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    EngineVrf,
    engine_config,
    established,
    frr_path,
    gobgp_paths,
    gobgp_view,
    loc_rib,
    running_engine,
    vrf_prefixes,
    vrf_table,
)
from vpe_peer import call, until, until_daemon

from vpe.bgp.wire.constants import VPNV4

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
GOBGP_NH = "198.18.32.2"


async def _gobgp(spawn: Spawn, address: str, gport: int, rid: str, me: str) -> GoBGP:
    g: GoBGP = await call(
        spawn,
        GoBGP,
        address=address,
        port=gport,
        local_as=65000,
        router_id=rid,
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
    )
    return g


async def test_r4_3_r10_1_extranet_shared_services_vrf(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R4.3 / R10.1: the shared-services VRF sees both tenants; each tenant sees shared, not the other.

    RTs: tenant A exports 65000:101, tenant B 65000:102, shared services
    65000:100. Tenants import their own RT and 65000:100; shared imports all
    three. GoBGP originates one remote site of each; vpe has one VRF of each
    with a local subnet. Tenants A and B use the same address space at the
    remote sites (overlapping 192.0.2.0/25), told apart by RD.
    """
    me, ga = loopback(), loopback()
    gport = port()
    g = await _gobgp(spawn, ga, gport, "198.18.32.1", me)
    remote = {  # RD, prefix, RT, label
        "a": ("65001:101", "192.0.2.0/25", "65000:101", 1101),
        "b": ("65001:102", "192.0.2.0/25", "65000:102", 1102),  # same prefix as tenant A
        "shared": ("65001:100", "203.0.113.0/25", "65000:100", 1100),
    }
    for rd, prefix, rt, label in remote.values():
        await call(g.add_vpnv4, prefix, rd, rt, label, GOBGP_NH)
    vrfs = [
        EngineVrf(
            "tenant-a",
            "65000:101",
            ["65000:101", "65000:100"],
            ["65000:101"],
            [("198.51.100.0/26", "subnet")],
        ),
        EngineVrf(
            "tenant-b",
            "65000:102",
            ["65000:102", "65000:100"],
            ["65000:102"],
            [("198.51.100.64/26", "subnet")],
        ),
        EngineVrf(
            "shared",
            "65000:100",
            ["65000:100", "65000:101", "65000:102"],
            ["65000:100"],
            [("203.0.113.128/25", "subnet")],
        ),
    ]
    cfg = engine_config("198.18.32.10", [EngineNeighbor(ga, gport, me)], vrfs)
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga), 15, "Engine -> GoBGP session")
        await until(lambda: len(loc_rib(engine, VPNV4, ga)) == 3, 10, "GoBGP's three sites in vpe")
        await until(
            lambda: (
                vrf_prefixes(engine, "shared")
                == {
                    "192.0.2.0/25",
                    "198.51.100.0/26",
                    "198.51.100.64/26",
                    "203.0.113.0/25",
                    "203.0.113.128/25",
                }
            ),
            10,
            "the shared VRF to hold both tenants",
        )
        # shared services: both tenants' remote sites (same prefix, two routes) and local subnets
        shared = vrf_table(engine, "shared")
        assert sorted(r["labels"][0] for r in shared["192.0.2.0/25"]) == [1101, 1102]
        assert {r["next_hop"] for r in shared["192.0.2.0/25"]} == {GOBGP_NH}
        # tenants: own routes + shared services, never the other tenant
        assert vrf_prefixes(engine, "tenant-a") == {
            "192.0.2.0/25",
            "198.51.100.0/26",
            "203.0.113.0/25",
            "203.0.113.128/25",
        }
        assert vrf_prefixes(engine, "tenant-b") == {
            "192.0.2.0/25",
            "198.51.100.64/26",
            "203.0.113.0/25",
            "203.0.113.128/25",
        }
        assert [r["labels"] for r in vrf_table(engine, "tenant-a")["192.0.2.0/25"]] == [[1101]]
        assert [r["labels"] for r in vrf_table(engine, "tenant-b")["192.0.2.0/25"]] == [[1102]]

        # what vpe exports, as GoBGP sees it: each VRF's subnet with that VRF's RD and export RT
        exports = {
            "65000:101:198.51.100.0/26": ("65000:101", ["65000:101"]),
            "65000:102:198.51.100.64/26": ("65000:102", ["65000:102"]),
            "65000:100:203.0.113.128/25": ("65000:100", ["65000:100"]),
        }
        await until_daemon(
            lambda: all(gobgp_paths(g, k) for k in exports), 10, "vpe's three exports at GoBGP"
        )
        for key, (rd, rts) in exports.items():
            v = gobgp_view((await call(gobgp_paths, g, key))[0])
            assert (v["rd"], v["rts"], v["nexthop"]) == (rd, rts, "198.18.32.10")


async def test_r4_5_hub_and_spoke(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R4.5 / R10.1: spokes see only the hub's routes; the hub sees every spoke.

    RTs: spokes export 65000:201 and import 65000:200; the hub imports
    65000:201 and exports 65000:200. GoBGP originates two remote spokes and a
    remote hub site; vpe has the hub VRF and a third spoke, each with a local
    subnet.
    """
    me, ga = loopback(), loopback()
    gport = port()
    g = await _gobgp(spawn, ga, gport, "198.18.33.1", me)
    for rd, prefix, rt, label in (
        ("65001:1", "198.51.100.0/26", "65000:201", 2001),  # spoke 1
        ("65001:2", "198.51.100.64/26", "65000:201", 2002),  # spoke 2
        ("65001:200", "203.0.113.0/25", "65000:200", 2000),  # remote hub site
    ):
        await call(g.add_vpnv4, prefix, rd, rt, label, "198.18.33.2")
    vrfs = [
        EngineVrf(
            "hub", "65000:200", ["65000:201"], ["65000:200"], [("203.0.113.128/25", "subnet")]
        ),
        EngineVrf(
            "spoke3", "65000:3", ["65000:200"], ["65000:201"], [("198.51.100.128/26", "subnet")]
        ),
    ]
    cfg = engine_config("198.18.33.10", [EngineNeighbor(ga, gport, me)], vrfs)
    spokes = {"198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26"}
    hub = {"203.0.113.0/25", "203.0.113.128/25"}
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga), 15, "Engine -> GoBGP session")
        await until(lambda: len(loc_rib(engine, VPNV4, ga)) == 3, 10, "GoBGP's three sites in vpe")
        # the hub: every spoke (two remote, one local) plus its own subnet
        await until(
            lambda: vrf_prefixes(engine, "hub") == spokes | {"203.0.113.128/25"}, 10, "hub table"
        )
        # the spoke: the hub's routes (remote site and vpe's hub VRF) and itself, no other spoke
        assert vrf_prefixes(engine, "spoke3") == hub | {"198.51.100.128/26"}
        table = vrf_table(engine, "spoke3")
        assert [r["labels"] for r in table["203.0.113.0/25"]] == [[2000]]
        # vpe's own hub VRF reaches the local spoke by the same RT rules, as an imported VPN route
        assert [(r["source"], r["vpn_route"]) for r in table["203.0.113.128/25"]] == [
            ("imported", "65000:200:203.0.113.128/25")
        ]
        assert [r["vpn_route"] for r in vrf_table(engine, "hub")["198.51.100.128/26"]] == [
            "65000:3:198.51.100.128/26"
        ]

        # GoBGP sees the hub exported with the hub RT and the spoke with the spoke RT
        p = await until_daemon(lambda: gobgp_paths(g, "65000:200:203.0.113.128/25"), 10, "hub")
        assert gobgp_view(p[0])["rts"] == ["65000:200"]
        p = await until_daemon(lambda: gobgp_paths(g, "65000:3:198.51.100.128/26"), 10, "spoke3")
        assert gobgp_view(p[0])["rts"] == ["65000:201"]


async def test_r10_3_aggregate_route_own_next_hop_and_vrf_label(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """R10.3: a VRF's aggregate is advertised with vpe's next hop and the VRF's one label.

    The VRF also has a plain subnet: with per-VRF labels both carry the same
    label. GoBGP and FRR each show the aggregate with that next hop, label,
    RD and the VRF's export RTs.
    """
    me, ga, fa = loopback(), loopback(), loopback()
    gport, fport = port(), port()
    g = await _gobgp(spawn, ga, gport, "198.18.34.1", me)
    f: FRR = await call(
        spawn,
        FRR,
        address=fa,
        port=fport,
        local_as=65000,
        router_id="198.18.34.3",
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
    )
    nh = "198.18.34.10"  # vpe's underlay address (FRR treats 127/8 next hops as martians)
    vrf = EngineVrf(
        "agg",
        "65000:34",
        ["65000:34"],
        ["65000:34", "65000:35"],
        [("198.51.100.0/24", "aggregate"), ("192.0.2.0/25", "subnet")],
    )
    cfg = engine_config(
        "198.18.34.2",
        [EngineNeighbor(ga, gport, me), EngineNeighbor(fa, fport, me)],
        [vrf],
        underlay=nh,
    )
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga, fa), 15, "Engine sessions")
        table = vrf_table(engine, "agg")
        agg = table["198.51.100.0/24"][0]
        assert (agg["kind"], agg["source"]) == ("aggregate", "local")
        label = agg["labels"][0]
        assert table["192.0.2.0/25"][0]["labels"] == [label]  # one label per VRF
        own = loc_rib(engine, VPNV4)["65000:34:198.51.100.0/24"][0]
        assert (own["peer"], own["next_hop"], own["labels"]) == ("local", nh, [label])

        p = await until_daemon(
            lambda: gobgp_paths(g, "65000:34:198.51.100.0/24"), 10, "the aggregate at GoBGP"
        )
        v = gobgp_view(p[0])
        assert (v["rd"], v["labels"], v["rts"], v["nexthop"]) == (
            "65000:34",
            [label],
            ["65000:34", "65000:35"],
            nh,
        )
        sub = await until_daemon(lambda: gobgp_paths(g, "65000:34:192.0.2.0/25"), 10, "subnet")
        assert gobgp_view(sub[0])["labels"] == [label]

        fp = await until_daemon(
            lambda: frr_path(f, "65000:34", "198.51.100.0/24"), 10, "the aggregate at FRR"
        )
        assert fp["remoteLabel"] == label
        assert fp["nexthops"][0]["ip"] == nh
        # ET:13 / ET:11: the MPLS-in-UDP and MPLS-in-GRE encapsulations of the (default) dataplane
        assert fp["extendedCommunity"]["string"] == "RT:65000:34 RT:65000:35 ET:11 ET:13"
        assert fp["peer"]["routerId"] == "198.18.34.2"
