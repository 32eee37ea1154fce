"""R10.3 against real peers: a VRF's aggregate list, with ``summary_only``.

Why: what a BGP/MPLS VPN PE makes of vpe's aggregate is only proven by an
independent implementation. GoBGP and FRR each receive the aggregate with
vpe's next hop, the VRF's one aggregate label (an IP lookup in the VRF, the
label entry vpe programs into its FIB), its RD and export RTs; the local
subnet the aggregate covers is withheld (``summary_only``) while a subnet
outside it is still sent; turning ``summary_only`` off through the VPN
service sends the covered subnet after all.
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
    running_engine,
    vrf_table,
)
from vpe_peer import call, until, until_daemon

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]


async def test_r10_3_aggregate_list_summary_only_at_gobgp_and_frr(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    me, ga, fa = loopback(), loopback(), loopback()
    gport, fport = port(), port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=65000, router_id="198.18.35.1",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    f: FRR = await call(spawn, FRR, address=fa, port=fport, local_as=65000, router_id="198.18.35.3",
                        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    nh = "198.18.35.10"  # vpe's underlay address (FRR treats 127/8 next hops as martians)
    vrf = EngineVrf("agg", "65000:350", ["65000:350"], ["65000:350"],
                    [("192.0.2.0/25", "subnet"), ("203.0.113.0/25", "subnet")],
                    aggregates=[("192.0.2.0/24", True)])
    cfg = engine_config("198.18.35.2", [EngineNeighbor(ga, gport, me), EngineNeighbor(fa, fport, me)],
                        [vrf], underlay=nh)
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga, fa), 15, "Engine sessions")
        label = engine.vpn.vrf_label("agg")
        assert label is not None and vrf_table(engine, "agg")["192.0.2.0/24"][0]["labels"] == [label]
        key = "65000:350:192.0.2.0/24"
        p = await until_daemon(lambda: gobgp_paths(g, key), 10, "the aggregate at GoBGP")
        v = gobgp_view(p[0])
        assert (v["rd"], v["labels"], v["rts"], v["nexthop"]) == ("65000:350", [label], ["65000:350"], nh)
        await until_daemon(lambda: gobgp_paths(g, "65000:350:203.0.113.0/25"), 10, "the uncovered subnet")
        assert not await call(gobgp_paths, g, "65000:350:192.0.2.0/25")  # withheld: summary_only
        fp = await until_daemon(lambda: frr_path(f, "65000:350", "192.0.2.0/24"), 10, "the aggregate at FRR")
        assert fp["remoteLabel"] == label and fp["nexthops"][0]["ip"] == nh
        assert await call(frr_path, f, "65000:350", "192.0.2.0/25") is None

        # summary_only off: the covered subnet is sent after all
        engine.bridge.set_aggregates("agg", [("192.0.2.0/24", False)])
        engine.flush()
        sub = await until_daemon(lambda: gobgp_paths(g, "65000:350:192.0.2.0/25"), 10, "the covered subnet")
        assert gobgp_view(sub[0])["nexthop"] == nh
        await until_daemon(lambda: frr_path(f, "65000:350", "192.0.2.0/25"), 10, "the covered subnet at FRR")
