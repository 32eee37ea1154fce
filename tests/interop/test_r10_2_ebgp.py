"""R10.2 (eBGP done right): vpe's eBGP sessions with GoBGP in another AS.

Why: every Inter-AS option rides on eBGP, and eBGP has rules iBGP has not: no route in or
out without a policy (RFC 8212), a route carrying our own AS is a loop (RFC 4271 9.1.2)
unless ``allowas_in`` tolerates it, our AS is prepended on the way out, and the session's
packets leave with TTL 1 unless ``ebgp_multihop`` says otherwise. Two GoBGP speakers in AS
65001: one neighbor without policies (nothing crosses, either way), one with policies.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from daemons import GoBGP, Neighbor
from engine_peer import (
    EngineNeighbor,
    EngineVrf,
    engine_config,
    established,
    gobgp_paths,
    gobgp_view,
    loc_rib,
    running_engine,
)
from test_r10_2_option_b import gobgp_as_path
from vpe_peer import call, until, until_daemon

from vpe.agent.engine import Engine
from vpe.bgp.wire.constants import VPNV4

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
POLICIES = """
[[policies]]
name = "accept-all"
"""


def session_ttl(engine: Engine, address: str) -> int:
    w = engine.speaker.peers[address]._writer
    assert w is not None
    sock: socket.socket = w._writer.get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL))


async def test_r10_2_ebgp_policy_required_loop_check_prepend_ttl(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    me, g1a, g2a = loopback(), loopback(), loopback()
    p1, p2 = port(), port()
    nb = [Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))]
    g1: GoBGP = await call(spawn, GoBGP, address=g1a, port=p1, local_as=65001, router_id="198.18.42.2", neighbors=nb)
    g2: GoBGP = await call(spawn, GoBGP, address=g2a, port=p2, local_as=65001, router_id="198.18.42.3", neighbors=nb)
    await call(g1.add_vpnv4, "198.51.100.0/24", "65001:1", "65000:9", 101, "198.18.42.12")
    await call(g2.add_vpnv4, "203.0.113.0/24", "65001:2", "65000:9", 102, "198.18.42.13")
    await call(g2.add_vpnv4, "192.0.2.128/25", "65001:3", "65000:9", 103, "198.18.42.13", "aspath", "65000")
    cfg = engine_config(
        "198.18.42.1",
        [EngineNeighbor(g1a, p1, me, remote_as=65001),
         EngineNeighbor(g2a, p2, me, remote_as=65001, import_policy="accept-all", export_policy="accept-all",
                        extra={"ebgp_multihop": 2})],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"], routes=[("192.0.2.0/25", "subnet")])],
        underlay="198.18.42.1", extra=POLICIES,
    )
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, g1a, g2a), 20, "vpe's eBGP sessions")
        assert session_ttl(engine, g1a) == 1  # directly connected eBGP
        assert session_ttl(engine, g2a) == 2  # ebgp_multihop = 2

        # with policies: the plain route comes in, ours goes out with our AS prepended
        await until(lambda: "65001:2:203.0.113.0/24" in loc_rib(engine, VPNV4), 15, "g2's route in vpe")
        paths = await until_daemon(lambda: gobgp_paths(g2, "65000:9:192.0.2.0/25"), 15, "vpe's route at g2")
        assert gobgp_as_path(paths[0]) == [65000]
        assert gobgp_view(paths[0])["nexthop"] == "198.18.42.1"

        # the route whose AS path holds 65000 (GoBGP made it "65001 65000") is a loop: not taken
        assert "65001:3:192.0.2.128/25" not in loc_rib(engine, VPNV4)
        assert any(g2a in r.getMessage() and "192.0.2.128/25" in r.getMessage()
                   and "our AS 65000 is in AS_PATH" in r.getMessage() for r in caplog.records)

        # RFC 8212: nothing from g1 (no import policy), nothing to g1 (no export policy)
        assert not [k for k in loc_rib(engine, VPNV4) if k.startswith("65001:1:")]
        assert any(g1a in r.getMessage() and "198.51.100.0/24" in r.getMessage() and "RFC 8212" in r.getMessage()
                   for r in caplog.records)
        assert await call(g1.rib, "vpnv4", "adj-in", me) == {}
