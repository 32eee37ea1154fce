"""The read-only view of one agent, for the API, the CLI and the metrics.

Everything a looking glass shows is read here, from the router (sessions,
RIB, Adj-RIB-Out), the VPN bridge (VRFs, attachments) and the FIB link,
and turned into JSON-shaped dicts. Nothing here changes state: the
operations live in :mod:`vpe.agent.durable` (VPNs, ports) and on the router
(refresh).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any

from ..bgp.session import Peer
from ..bgp.wire.constants import Family
from ..rib.rib import Rib
from ..vpn.attachments import Attachment
from ..vpn.service import VpnService
from .bridge import VpnBridge
from .fib import FibProgrammer
from .restart import GracefulRestartManager
from .router import Router


class AgentView:
    """Read-only access to one agent's state."""

    def __init__(self, router: Router, bridge: VpnBridge, driver: str,
                 descriptions: Mapping[str, Mapping[str, Any]]) -> None:
        self._router = router
        self._bridge = bridge
        #: the dataplane driver's name ("none": no forwarder)
        self.driver = driver
        self._descriptions = descriptions

    # -- the parts, for readers that walk them (metrics) --------------------------------

    @property
    def peers(self) -> Mapping[str, Peer]:
        return self._router.speaker.peers

    @property
    def rib(self) -> Rib:
        return self._router.rib

    @property
    def vpn(self) -> VpnService:
        return self._bridge.vpn

    @property
    def fib(self) -> FibProgrammer | None:
        return self._bridge.fib

    @property
    def gr(self) -> GracefulRestartManager:
        return self._router.gr

    # -- BGP -------------------------------------------------------------------------

    def has_neighbor(self, address: str) -> bool:
        return address in self._router.speaker.peers

    def summary(self) -> list[dict[str, Any]]:
        out = []
        rib, adj_out = self._router.rib, self._router.out
        for addr, p in self._router.speaker.peers.items():
            d = p.to_json()
            a = ip_address(addr)
            d["received"] = {adj.family.name: len(adj) for adj in rib.adj_ribs_in(a)}
            d["advertised"] = {
                f.name: adj_out.sent(a, f) for f in (p.negotiated.families if p.negotiated else ())
            }
            out.append(d)
        return out

    def neighbor(self, address: str) -> dict[str, Any] | None:
        for n in self.summary():
            if n["address"] == address:
                return n
        return None

    def routes(self, family: Family, peer: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        loc = self._router.rib.loc_rib(family)
        for key in loc.keys():  # noqa: SIM118 (LocRib is not a mapping)
            best = loc.best(key)
            for p in loc.paths(key):
                src = "local" if p.peer.local else str(p.peer.address)
                if peer is not None and src != peer:
                    continue
                d = p.nlri.to_json()
                d["family"] = family.name
                d["next_hop"] = str(p.next_hop) if p.next_hop is not None else None
                d["attributes"] = p.attrs.to_json()
                d["peer"] = src
                d["best"] = p == best
                rows.append(d)
        return rows

    # -- VPNs and ports ------------------------------------------------------------------

    def vrf_names(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """VRF names in order; with ``offset``/``limit`` one page (costs the page only)."""
        return self._bridge.vpn.vrf_names(offset, limit)

    def has_vrf(self, name: str) -> bool:
        return name in self._bridge.vpn.vrfs

    def vrf_json(self, name: str) -> dict[str, Any]:
        d = self._bridge.vpn.describe(name)
        d["ports"] = [a.name for a in self._bridge.attachments.by_vrf(name)]
        d["description"] = self._descriptions.get(name, {}).get("description", "")
        return d

    @property
    def attachments(self) -> Mapping[str, Attachment]:
        return {a.name: a for a in self._bridge.attachments}

    def port(self, name: str) -> Attachment | None:
        return self._bridge.attachments.get(name)

    def ports(self, offset: int = 0, limit: int | None = None) -> list[Attachment]:
        """Attachments by name; with ``offset``/``limit`` one page (costs the page only)."""
        table = self._bridge.attachments
        return table.page(offset, len(table) if limit is None else limit)

    # -- forwarder, restart -----------------------------------------------------------------

    def fib_json(self) -> dict[str, Any]:
        fib = self._bridge.fib
        if fib is None:
            return {"driver": "none"}
        d = fib.to_json()
        d["driver"] = self.driver
        return d

    def restart_json(self) -> dict[str, Any]:
        return self._router.gr.to_json()
