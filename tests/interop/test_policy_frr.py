"""Export policy towards a real FRR: one VPNv4 prefix rejected, another sent with LOCAL_PREF 250.

Why FRR: the check must be what an independent implementation received and
installed, read from its own JSON (``show bgp ipv4 vpn json``), not vpe's
idea of what it sent. The Engine is built from an agent config whose
``[[policies]]`` table and ``export_policy`` neighbor key are what a user
writes; the VRF exports three subnets, the policy hides one and raises the
LOCAL_PREF of another, the third goes as usual (LOCAL_PREF 100).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import FRR, Neighbor
from engine_peer import (
    EngineNeighbor,
    EngineVrf,
    engine_config,
    established,
    loc_rib,
    running_engine,
)
from vpe_peer import call, until, until_daemon

from vpe.bgp.wire.constants import VPNV4

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
RD = "65000:41"

POLICY = """
[[policies]]
name = "to-frr"
default = "accept"
  [[policies.terms]]
  name = "hide"
  match = { family = "vpnv4", prefix = "192.0.2.0/24" }
  action = "reject"
  [[policies.terms]]
  name = "prefer"
  match = { family = "vpnv4", prefix = "198.51.100.0/24 le 32" }
  set = { local_pref = 250 }
"""


def _frr_vpn_routes(f: FRR) -> dict[str, list[dict[str, Any]]]:
    """FRR's VPNv4 table for our RD: prefix -> paths."""
    data = f.json("show bgp ipv4 vpn json")
    rds = (data.get("routes") or {}).get("routeDistinguishers") or {}
    table: dict[str, list[dict[str, Any]]] = rds.get(RD) or {}
    return table


async def test_export_policy_reject_and_local_pref_at_frr(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    me, fa = loopback(), loopback()
    fport = port()
    f: FRR = await call(
        spawn,
        FRR,
        address=fa,
        port=fport,
        local_as=65000,
        router_id="198.18.41.3",
        neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))],
    )
    vrf = EngineVrf(
        "pol",
        RD,
        ["65000:41"],
        ["65000:41"],
        [("192.0.2.0/24", "subnet"), ("198.51.100.0/24", "subnet"), ("203.0.113.0/24", "subnet")],
    )
    cfg = engine_config("198.18.41.2", [EngineNeighbor(fa, fport, me)], [vrf], underlay="198.18.41.10")
    anchor = f"address = {fa!r}".replace("'", '"')
    assert anchor in cfg
    cfg = cfg.replace(anchor, anchor + '\nexport_policy = "to-frr"') + POLICY
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, fa), 15, "the Engine's session to FRR")

        def both() -> dict[str, list[dict[str, Any]]] | None:
            t = _frr_vpn_routes(f)
            return t if {"198.51.100.0/24", "203.0.113.0/24"} <= set(t) else None

        table = await until_daemon(both, 15, "the two accepted routes at FRR")
        assert table["198.51.100.0/24"][0]["locPrf"] == 250
        assert table["203.0.113.0/24"][0]["locPrf"] == 100
        assert "192.0.2.0/24" not in table
        # vpe still has the rejected route itself: only the advertisement was filtered
        assert f"{RD}:192.0.2.0/24" in loc_rib(engine, VPNV4)
