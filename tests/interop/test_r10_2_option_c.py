"""R10.2 Inter-AS option C with GoBGP: labeled unicast (RFC 8277) between ASBRs and multihop
eBGP VPNv4 between route reflectors, VPN routes unchanged end to end.

vpe is a PE and the route reflector of AS 65000. Three GoBGP speakers:

* ``asbr`` (AS 65001): an eBGP labeled-unicast session with vpe. vpe advertises its loopback
  (its VPN next hop, 198.18.50.1/32) with a label of its own; ``asbr`` advertises the remote
  PE's loopback 198.18.51.9/32 with label 7001;
* ``rr`` (AS 65001): a multihop eBGP VPNv4 session with vpe (``ebgp_multihop``); VPN routes
  cross it with next hop and label unchanged (vpe's export policy ``next_hop = "unchanged"``;
  GoBGP sends the next hop its route was given);
* ``pe`` (AS 65000): an iBGP client of vpe whose VPN route vpe reflects to ``rr`` unchanged.

Then vpe's VRF imports the remote PE's route (next hop 198.18.51.9, VPN label 600) and its
FIB sends toward the ASBR with two labels: 7001 outside, 600 inside.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
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
    running_engine,
    vrf_table,
)
from test_r10_2_option_b import gobgp_as_path
from vpe_peer import call, until, until_daemon

from vpe.agent.engine import Engine
from vpe.dataplane.driver import NextHop, RouteKey

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
LOOPBACK = "198.18.50.1"
REMOTE_PE = "198.18.51.9"
POLICIES = """
[[policies]]
name = "accept-all"

[[policies]]
name = "vpn-unchanged"
  [[policies.terms]]
  match = { family = "vpnv4" }
  set = { next_hop = "unchanged" }
"""


def lu_routes(g: GoBGP) -> dict[str, Any]:
    return g.rib("ipv4-labeled") or {}


def fib_route(engine: Engine, prefix: str) -> Any:
    assert engine.fib is not None
    return engine.fib.resolver.routes.get(RouteKey("red", prefix))  # type: ignore[arg-type]


async def test_r10_2_option_c_labeled_unicast_and_multihop_vpn_gobgp(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int], tmp_path: Path
) -> None:
    me, aa, ra, pa = loopback(), loopback(), loopback(), loopback()
    ap, rp, pp = port(), port(), port()
    asbr: GoBGP = await call(spawn, GoBGP, address=aa, port=ap, local_as=65001, router_id="198.18.51.40",
                             neighbors=[Neighbor(me, 65000, 179, passive=True, families=("ipv4-labeled",))])
    rr: GoBGP = await call(spawn, GoBGP, address=ra, port=rp, local_as=65001, router_id="198.18.51.50",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    pe: GoBGP = await call(spawn, GoBGP, address=pa, port=pp, local_as=65000, router_id="198.18.50.7",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    await call(asbr.add_route, "ipv4-labeled", f"{REMOTE_PE}/32", "7001", "nexthop", "198.18.51.40")
    await call(rr.add_vpnv4, "203.0.113.0/24", "65001:9", "65000:9", 600, REMOTE_PE)
    await call(pe.add_vpnv4, "198.51.100.0/24", "65000:7", "65000:7", 700, "198.18.50.7")
    cfg = engine_config(
        LOOPBACK,
        [EngineNeighbor(aa, ap, me, families=("ipv4-labeled-unicast",), remote_as=65001,
                        import_policy="accept-all", export_policy="accept-all"),
         EngineNeighbor(ra, rp, me, remote_as=65001, import_policy="accept-all", export_policy="vpn-unchanged",
                        extra={"ebgp_multihop": 5}),
         EngineNeighbor(pa, pp, me, rr_client=True)],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"], routes=[("192.0.2.0/25", "subnet")])],
        underlay=LOOPBACK, extra=POLICIES,
    ).replace('driver = "none"', f'driver = "userspace"\nfib_socket = "{tmp_path / "fib.sock"}"')
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, aa, ra, pa), 20, "vpe's sessions")
        assert engine.transport is not None and engine.transport.label is not None

        # our loopback, labeled, at the ASBR (its own JSON): our label, our next hop, AS 65000
        routes = await until_daemon(lambda: lu_routes(asbr).get(f"{LOOPBACK}/32"), 15, "our loopback at the ASBR")
        view = gobgp_view_lu(routes[0])
        assert view == {"labels": [engine.transport.label], "nexthop": LOOPBACK}
        assert gobgp_as_path(routes[0]) == [65000]

        # the remote PE's loopback, labeled, at vpe: the transport entry
        pe_addr = ip_address(REMOTE_PE)
        await until(lambda: pe_addr in engine.transport.transport, 15, "the remote loopback in vpe")  # type: ignore[union-attr]
        via, lu_label = engine.transport.transport[pe_addr]
        assert lu_label == 7001

        # VPN routes unchanged between the route reflectors, both ways
        rows = await until(lambda: vrf_table(engine, "red").get("203.0.113.0/24"), 15, "the remote route in red")
        assert rows[0]["next_hop"] == REMOTE_PE and rows[0]["labels"] == [600]
        paths = await until_daemon(lambda: gobgp_paths(rr, "65000:7:198.51.100.0/24"), 15, "pe's route at rr")
        v = gobgp_view(paths[0])
        assert (v["nexthop"], v["labels"]) == ("198.18.50.7", [700])  # reflected unchanged
        assert gobgp_as_path(paths[0]) == [65000]
        paths = await until_daemon(lambda: gobgp_paths(rr, "65000:9:192.0.2.0/25"), 15, "our route at rr")
        v = gobgp_view(paths[0])
        assert v["nexthop"] == LOOPBACK and v["labels"][0] >= 16

        # the FIB: toward the ASBR, labeled-unicast label outside, VPN label inside
        route = await until(lambda: fib_route(engine, "203.0.113.0/24"), 5, "the FIB route")
        assert route.next_hops == (NextHop.remote(via, 600, route.next_hops[0].encap, outer=(7001,)),)
        assert engine.fib is not None and engine.fib.resolver.labels[engine.transport.label].kind == "pop"

        # the labeled-unicast route withdrawn: the VPN route goes straight to the PE again
        await call(asbr.cli, "global", "rib", "-a", "ipv4-mpls", "del", f"{REMOTE_PE}/32", "7001",
                   "nexthop", "198.18.51.40")
        await until(lambda: fib_route(engine, "203.0.113.0/24").next_hops[0].outer == (), 10, "one label again")


def gobgp_view_lu(path: dict[str, Any]) -> dict[str, Any]:
    """Labels and next hop of a GoBGP labeled-unicast path (JSON)."""
    nlri = path["nlri"]
    mp = next((a for a in path["attrs"] if a["type"] == 14), None)
    nh = mp["nexthop"] if mp else next(a for a in path["attrs"] if a["type"] == 3)["nexthop"]
    return {"labels": nlri.get("labels") or nlri.get("label"), "nexthop": nh}


LOOPBACK6 = "2001:db8:ffff:50::1"
REMOTE_PE6 = "2001:db8:ffff:51::9"


async def test_r10_2_option_c_ipv6_labeled_unicast_loopbacks_gobgp(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int], tmp_path: Path
) -> None:
    """PEs with IPv6 underlay addresses: the loopbacks travel as IPv6 labeled unicast (RFC 8277,
    AFI 2 SAFI 4). vpe's /128 leaves with its label; the remote PE's /128 from the ASBR turns
    VPN routes to that PE into two-label next hops toward the ASBR's IPv6 address."""
    me, aa, ra = loopback(), loopback(), loopback()
    ap, rp = port(), port()
    asbr: GoBGP = await call(spawn, GoBGP, address=aa, port=ap, local_as=65001, router_id="198.18.51.40",
                             neighbors=[Neighbor(me, 65000, 179, passive=True, families=("ipv6-labeled",))])
    rr: GoBGP = await call(spawn, GoBGP, address=ra, port=rp, local_as=65001, router_id="198.18.51.50",
                           neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    await call(asbr.add_route, "ipv6-labeled", f"{REMOTE_PE6}/128", "7002", "nexthop", "2001:db8:ffff:51::40")
    await call(rr.add_vpnv4, "203.0.113.0/24", "65001:9", "65000:9", 601, REMOTE_PE6)
    cfg = engine_config(
        LOOPBACK,
        [EngineNeighbor(aa, ap, me, families=("ipv6-labeled-unicast",), remote_as=65001,
                        import_policy="accept-all", export_policy="accept-all"),
         EngineNeighbor(ra, rp, me, remote_as=65001, import_policy="accept-all", export_policy="vpn-unchanged",
                        extra={"ebgp_multihop": 5})],
        [EngineVrf("red", "65000:9", ["65000:9"], ["65000:9"], routes=[("192.0.2.0/25", "subnet")])],
        underlay=LOOPBACK6, extra=POLICIES,
    ).replace('driver = "none"', f'driver = "userspace"\nfib_socket = "{tmp_path / "fib.sock"}"')
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, aa, ra), 20, "vpe's sessions")
        assert engine.transport is not None and engine.transport.label is not None
        routes = await until_daemon(lambda: (asbr.rib("ipv6-labeled") or {}).get(f"{LOOPBACK6}/128"), 15,
                                    "our IPv6 loopback at the ASBR")
        assert gobgp_view_lu(routes[0]) == {"labels": [engine.transport.label], "nexthop": LOOPBACK6}
        assert gobgp_as_path(routes[0]) == [65000]
        pe_addr = ip_address(REMOTE_PE6)
        await until(lambda: pe_addr in engine.transport.transport, 15, "the remote IPv6 loopback in vpe")  # type: ignore[union-attr]
        via, lu_label = engine.transport.transport[pe_addr]
        assert (str(via), lu_label) == ("2001:db8:ffff:51::40", 7002)
        route = await until(lambda: fib_route(engine, "203.0.113.0/24"), 15, "the FIB route")
        assert route.next_hops == (NextHop.remote(via, 601, route.next_hops[0].encap, outer=(7002,)),)
