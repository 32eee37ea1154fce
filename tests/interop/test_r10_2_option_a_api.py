"""R10.2 Inter-AS option A, the neighbor managed by API: a real GoBGP CE (AS 65001) becomes a
BGP neighbor of vpe's VRF ``red`` by ``PUT /v1/vpns/red/neighbors/{address}``.

Routes flow both ways (the CE's routes into ``red`` and out to the route reflector ``rr``,
another GoBGP, as VPN routes; ``red``'s routes to the CE as plain unicast), the neighbor is
stored in the agent's SQLite file and comes back after a restart of the agent, and
``DELETE`` ends the session with Cease / Peer De-configured: the CE's routes leave the VRF
and the route reflector.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import GoBGP, Neighbor
from engine_peer import EngineNeighbor, EngineVrf, engine_config, gobgp_paths, vrf_table
from test_r10_2_option_a import NH4, NH6, VPE_NH, unicast
from test_r10_2_option_b import gobgp_as_path
from vpe_peer import call, until, until_daemon

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import create_app

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
CE_PREFIX, CE_PREFIX6 = "203.0.113.0/24", "2001:db8:50::/48"


@contextlib.asynccontextmanager
async def agent(cfg: str, state: Path) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """An Engine on the SQLite state in ``state`` and a client of its REST API."""
    engine = Engine(parse_config(cfg, "<interop>"), Store.in_dir(state))
    await engine.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                                     base_url="http://vpe") as client:
            yield engine, client
    finally:
        await engine.stop()
        assert engine.store is not None
        engine.store.close()


async def flowing(engine: Engine, ce: GoBGP, rr: GoBGP, me: str) -> None:
    """Both ways: the CE's routes in red and at rr (AS path 65001), red's routes at the CE."""
    await until(lambda: {CE_PREFIX, CE_PREFIX6} <= set(vrf_table(engine, "red")), 20, "the CE's routes in red")
    assert vrf_table(engine, "red")[CE_PREFIX][0]["next_hop"] == "192.0.2.50"
    paths = await until_daemon(lambda: gobgp_paths(rr, f"65000:9:{CE_PREFIX}"), 15, "the CE route at rr")
    assert gobgp_as_path(paths[0]) == [65001]
    got = await until_daemon(lambda: unicast(ce, "ipv4", "198.51.100.0/24"), 15, "the VPN route at the CE")
    assert got == {"nexthop": NH4, "as_path": [65000]}
    got = await until_daemon(lambda: unicast(ce, "ipv6", "2001:db8:9::/64"), 15, "red's IPv6 subnet at the CE")
    assert got == {"nexthop": NH6, "as_path": [65000]}
    assert CE_PREFIX not in await call(ce.rib, "ipv4", "adj-in", me)  # never its own route back


async def test_r10_2_option_a_neighbor_by_api_put_restart_delete_gobgp(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int], tmp_path: Path
) -> None:
    me, ca, ra = loopback(), loopback(), loopback()
    cp, rp = port(), port()
    ce: GoBGP = await call(spawn, GoBGP, address=ca, port=cp, local_as=65001, router_id="198.18.61.2",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("ipv4", "ipv6"))])
    rr: GoBGP = await call(spawn, GoBGP, address=ra, port=rp, local_as=65000, router_id="198.18.60.2",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4", "vpnv6"))])
    await call(ce.add_route, "ipv4", CE_PREFIX, "nexthop", "192.0.2.50")
    await call(ce.add_route, "ipv6", CE_PREFIX6, "nexthop", "2001:db8:9::50")
    await call(rr.add_vpnv4, "198.51.100.0/24", "65000:2", "65000:9", 500, "198.18.60.5")
    cfg = engine_config(
        VPE_NH, [EngineNeighbor(ra, rp, me, families=("vpnv4", "vpnv6"))],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"],
                   routes=[("192.0.2.0/25", "subnet"), ("2001:db8:9::/64", "subnet")])],
        underlay=VPE_NH, extra='[[policies]]\nname = "accept-all"\n',
    )
    body = {"remote_as": 65001, "port": cp, "local_address": me, "connect_retry": 1.0,
            "import_policy": "accept-all", "export_policy": "accept-all", "next_hop": NH4, "next_hop6": NH6,
            "description": "the other AS's ASBR"}
    state = tmp_path / "state"

    async with agent(cfg, state) as (engine, api):
        assert (await api.get("/v1/vpns/red/neighbors")).json() == []
        r = await api.put(f"/v1/vpns/red/neighbors/{ca}", json=body)
        assert r.status_code == 201, r.text
        await until(lambda: engine.speaker.peers[ca].established and engine.speaker.peers[ra].established,
                    20, "vpe's sessions to the CE (added by PUT) and to rr")
        await flowing(engine, ce, rr, me)
        d = (await api.get(f"/v1/vpns/red/neighbors/{ca}")).json()
        assert d["state"] == "Established" and d["uptime"] is not None and d["source"] == "api"
        assert d["prefixes"]["ipv4-unicast"]["received"] == 1 and d["prefixes"]["ipv6-unicast"]["received"] == 1
        assert d["prefixes"]["ipv4-unicast"]["sent"] >= 2  # red's subnet and the imported VPN route

    # the agent restarts: the neighbor comes back from the state database, routes flow again
    async with agent(cfg, state) as (engine, api):
        assert engine.router.vrf_of.get(ca) == "red"
        await until(lambda: engine.speaker.peers[ca].established, 20, "the restored session to the CE")
        await flowing(engine, ce, rr, me)

        r = await api.delete(f"/v1/vpns/red/neighbors/{ca}")
        assert r.status_code == 204, r.text
        assert ca not in engine.speaker.peers
        table = vrf_table(engine, "red")
        assert CE_PREFIX not in table and CE_PREFIX6 not in table  # gone when the DELETE returns
        await until_daemon(lambda: not gobgp_paths(rr, f"65000:9:{CE_PREFIX}"), 15, "the withdrawal at rr")
        await until_daemon(lambda: not ce.established(me), 15, "the CE's session down")
        await until_daemon(lambda: "code 6(cease) subcode 3(peer deconfigured)" in ce.log_path.read_text(),
                           10, "the CE to log Cease / Peer De-configured")
        assert (await api.get(f"/v1/vpns/red/neighbors/{ca}")).status_code == 404
        assert engine.store is not None and engine.store.vrf_neighbors() == {}
