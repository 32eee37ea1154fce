"""The read-only view of one agent, for the API, the CLI and the metrics.

Everything a looking glass shows is read here, from the router (sessions,
RIB, Adj-RIB-Out), the VPN bridge (VRFs, attachments) and the FIB link,
and turned into JSON-shaped dicts. Nothing here changes state: the
operations live in :mod:`vpe.agent.durable` (VPNs, ports) and on the router
(refresh).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from ..bgp.session import Peer
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST, Family
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.nlri.rd import as_rd
from ..rib.decision import best_path_reason
from ..rib.path import Path
from ..rib.rib import Rib
from ..vpn.attachments import Attachment
from ..vpn.service import VpnService
from .bridge import VpnBridge
from .fib import FibProgrammer
from .fib_many import ManyFibs
from .pe_ce import VrfPeering
from .port_sessions import PortSessions
from .restart import GracefulRestartManager
from .router import Router


class AgentView:
    """Read-only access to one agent's state."""

    def __init__(self, router: Router, bridge: VpnBridge, driver: str,
                 descriptions: Mapping[str, Mapping[str, Any]],
                 neighbors: Mapping[str, Mapping[str, Any]] | None = None,
                 pe_ce: VrfPeering | None = None, port_sessions: PortSessions | None = None) -> None:
        self._router = router
        #: VRF neighbors reached through ports: their addresses in the VRF, as configured
        self._ports = port_sessions
        #: the VRFs' own neighbors' routes (PE-CE BGP): their prefix counts
        self._pe_ce = pe_ce
        #: per neighbor address: what the configuration says that the session does not
        #: (``description``)
        self._neighbors = neighbors or {}
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
    def fib(self) -> FibProgrammer | ManyFibs | None:
        return self._bridge.fib

    @property
    def gr(self) -> GracefulRestartManager:
        return self._router.gr

    # -- BGP -------------------------------------------------------------------------

    def has_neighbor(self, address: str) -> bool:
        return address in self._router.speaker.peers

    def summary(self, accepted: bool = False) -> list[dict[str, Any]]:
        """Every neighbor: session, configuration, counters and prefixes per family.

        ``accepted`` (how many received paths are our best) walks each
        Adj-RIB-In, so it is counted only when asked; otherwise it is None."""
        return [self._neighbor_json(addr, p, accepted) for addr, p in self._router.speaker.peers.items()]

    def identity(self) -> dict[str, Any]:
        """Local AS and router id (the summary's header, without walking anything)."""
        return {"local_as": self._router.local_as, "router_id": str(self._router.router_id)}

    def bgp_summary(self) -> dict[str, Any]:
        """The summary with its header: local AS and router id."""
        return {"local_as": self._router.local_as, "router_id": str(self._router.router_id),
                "neighbors": self.summary(accepted=True)}

    def _neighbor_json(self, addr: str, p: Peer, with_accepted: bool = True) -> dict[str, Any]:
        d = p.to_json()
        if addr in self._router.vrf_of:
            return self._vrf_neighbor_json(addr, p, d)
        a = ip_address(addr)
        rib, adj_out = self._router.rib, self._router.out
        conf = self._neighbors.get(addr, {})
        d["description"] = conf.get("description", "")
        d["configured_families"] = sorted(f.name for f in p.settings.families)
        d["passive"] = p.settings.passive
        d["route_reflector_client"] = p.settings.route_reflector_client
        received = {adj.family: adj for adj in rib.adj_ribs_in(a)}
        sent_fams = p.negotiated.families if p.negotiated else frozenset()
        prefixes: dict[str, dict[str, int | None]] = {}
        for fam in sorted(set(received) | set(sent_fams) | set(p.settings.families)):
            adj = received.get(fam)
            loc = rib.loc_rib(fam) if adj is not None else None
            accepted: int | None = 0 if with_accepted else None
            if with_accepted and adj is not None and loc is not None:
                accepted = sum(1 for path in adj if loc.best(path.key) == path)
            prefixes[fam.name] = {
                "received": len(adj) if adj is not None else 0,
                "accepted": accepted,
                "sent": adj_out.sent(a, fam) if fam in sent_fams else 0,
            }
        d["prefixes"] = prefixes
        d["received"] = {f.name: len(adj) for f, adj in received.items()}
        d["advertised"] = {f.name: prefixes[f.name]["sent"] for f in sorted(sent_fams)}
        return d

    def _vrf_neighbor_json(self, addr: str, p: Peer, d: dict[str, Any]) -> dict[str, Any]:
        """A VRF's neighbor: its routes go to the VRF, not the RIB; ``received``: the prefixes
        it announces (after its import policy), ``accepted``: those the VRF holds from it,
        ``sent``: the VRF's prefixes sent to it."""
        vrf = self._router.vrf_of[addr]
        conf = self._router.vrf_neighbors.get(addr)
        known = self._neighbors.get(addr, {})  # the configuration file's description
        d["vrf"] = vrf
        d["description"] = known.get("description", conf.description if conf is not None else "")
        pn = self._ports.neighbors.get(addr) if self._ports is not None else None
        d["via"] = "port" if pn is not None else "host"
        if pn is not None:  # the session's address is a mapped one; this is the CE's in the VRF
            d["vrf_address"] = pn.configured.address
        d["configured_families"] = sorted(f.name for f in p.settings.families)
        d["passive"] = p.settings.passive
        d["route_reflector_client"] = p.settings.route_reflector_client
        ce = self._pe_ce
        counts = ce.counts.get(addr, {}) if ce is not None else {}
        held: dict[int, int] = {}
        sent: dict[int, int] = {}
        if ce is not None:
            for (v, prefix), who in ce.learned.items():
                if v == vrf and who == addr:
                    ver = ip_network(prefix).version
                    held[ver] = held.get(ver, 0) + 1
            for prefix in ce.sent.get(addr, {}):
                ver = ip_network(prefix).version
                sent[ver] = sent.get(ver, 0) + 1
        prefixes = {fam.name: {"received": counts.get(ver, 0), "accepted": held.get(ver, 0),
                               "sent": sent.get(ver, 0)}
                    for ver, fam in ((4, IPV4_UNICAST), (6, IPV6_UNICAST))
                    if fam in p.settings.families}
        d["prefixes"] = prefixes
        d["received"] = {f: c["received"] for f, c in prefixes.items()}
        d["advertised"] = {f: c["sent"] for f, c in prefixes.items()}
        return d

    def vrf_neighbors(self, vrf: str) -> list[dict[str, Any]]:
        """The BGP neighbors of VRF ``vrf``: session status, prefix counts and configuration."""
        out = []
        for addr, v in self._router.vrf_of.items():
            p = self._router.speaker.peers.get(addr)
            if v == vrf and p is not None:
                out.append(self.vrf_neighbor(addr, p))
        out.sort(key=lambda d: (ip_address(d["address"]).version, int(ip_address(d["address"]))))
        return out

    def vrf_neighbor(self, address: str, peer: Peer | None = None) -> dict[str, Any]:
        """One VRF neighbor as :meth:`vrf_neighbors` shows it (KeyError: not a VRF neighbor)."""
        p = peer or self._router.speaker.peers[address]
        vrf = self._router.vrf_of[address]
        d = self._vrf_neighbor_json(address, p, p.to_json())
        conf = self._router.vrf_neighbors.get(address)
        pn = self._ports.neighbors.get(address) if self._ports is not None else None
        if pn is not None:
            conf = pn.configured  # as given, not as the speaker sees it
        if conf is not None:
            c = conf.model_dump(mode="json")
            if c.get("md5_password") is not None:
                c["md5_password"] = "(set)"  # never shown
            d["config"] = c
        d["vpn"] = vrf
        return d

    def neighbor(self, address: str) -> dict[str, Any] | None:
        p = self._router.speaker.peers.get(address)
        return None if p is None else self._neighbor_json(address, p)

    def routes(self, family: Family, peer: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        loc = self._router.rib.loc_rib(family)
        for key in loc.keys():  # noqa: SIM118 (LocRib is not a mapping)
            best = loc.best(key)
            for p in loc.paths(key):
                src = "local" if p.peer.local else str(p.peer.address)
                if peer is not None and src != peer:
                    continue
                rows.append(route_json(family, p.nlri, p.attrs, p.next_hop, src, p == best))
        return rows

    def received_routes(self, address: str, family: Family) -> list[dict[str, Any]]:
        """The neighbor's Adj-RIB-In in ``family`` (after import policy); KeyError: no such neighbor."""
        if address not in self._router.speaker.peers:
            raise KeyError(address)
        adj = self._router.rib.adj_rib_in(ip_address(address), family)
        if adj is None:
            return []
        loc = adj.loc
        return [route_json(family, p.nlri, p.attrs, p.next_hop, address, loc.best(p.key) == p) for p in adj]

    def advertised_routes(self, address: str, family: Family) -> list[dict[str, Any]]:
        """The neighbor's Adj-RIB-Out in ``family``: routes as sent (attributes,
        next hop); KeyError: no such neighbor."""
        if address not in self._router.speaker.peers:
            raise KeyError(address)
        rows = [route_json(family, n, attrs, nh, None, None)
                for n, attrs, nh in self._router.out.advertised(ip_address(address), family)]
        rows.sort(key=lambda r: r["route"])
        return rows

    def lookup(self, family: Family, prefix: str, rd: str | None = None) -> dict[str, Any]:
        """Every path of the destinations matching ``prefix`` (exact when it has a
        length, else the longest prefix holding the address), optionally only
        under route distinguisher ``rd``; the best path marked, with the
        decision step that chose it. ValueError: ``prefix`` is not a prefix."""
        try:
            want = ip_network(prefix, strict=False)
        except ValueError:
            raise ValueError(f"prefix: {prefix!r} is not an IP address or prefix") from None
        exact = "/" in prefix
        if rd is not None:
            try:
                rd = str(as_rd(rd))
            except ValueError as e:
                raise ValueError(f"rd: {e}") from None
        loc = self._router.rib.loc_rib(family)
        matches: list[tuple[int, bytes, Nlri]] = []
        for key in loc.keys():  # noqa: SIM118
            paths = loc.paths(key)
            if not paths:
                continue
            n = paths[0].nlri
            if rd is not None and str(getattr(n, "rd", "")) != rd:
                continue
            net = _network_of(n)
            if net is None or net.version != want.version:
                continue
            if (exact and net == want) or (not exact and want.subnet_of(net)):
                matches.append((net.prefixlen, key, n))
        if not exact and matches:
            longest = max(m[0] for m in matches)
            matches = [m for m in matches if m[0] == longest]
        dests = []
        for _, key, n in sorted(matches, key=lambda m: str(m[2])):
            best = loc.best(key)
            cands = list(loc.paths(key))
            reason = best_path_reason(best, cands, loc.rank) if best is not None else None
            dests.append({
                "route": str(n),
                "rd": str(n.rd) if hasattr(n, "rd") else None,
                "prefix": str(_network_of(n)),
                "best_reason": reason,
                "paths": [route_json(family, p.nlri, p.attrs, p.next_hop,
                                     "local" if p.peer.local else str(p.peer.address), p == best)
                          for p in _best_first(best, cands)],
            })
        return {"family": family.name, "query": prefix, "rd": rd, "destinations": dests}

    # -- VPNs and ports ------------------------------------------------------------------

    def vrf_names(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """VRF names in order; with ``offset``/``limit`` one page (costs the page only)."""
        return self._bridge.vpn.vrf_names(offset, limit)

    def has_vrf(self, name: str) -> bool:
        return name in self._bridge.vpn.vrfs

    def vrf_brief(self, name: str) -> dict[str, Any]:
        """A VRF without its table (RD, RTs, route counts, ports, description): cheap for lists."""
        d = self._bridge.vpn.vrf(name).to_json()
        d["ports"] = [a.name for a in self._bridge.attachments.by_vrf(name)]
        d["description"] = self._descriptions.get(name, {}).get("description", "")
        return d

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


def format_next_hop(nh: IPv4Address | IPv6Address | None) -> str | None:
    """A next hop as RFCs write it: an IPv4 address carried as IPv4-mapped IPv6
    (RFC 4659 4, RFC 8950) is shown as the IPv4 address."""
    if nh is None:
        return None
    if isinstance(nh, IPv6Address) and nh.ipv4_mapped is not None:
        return str(nh.ipv4_mapped)
    return str(nh)


def route_json(family: Family, nlri: Nlri, attrs: PathAttributes, next_hop: IPv4Address | IPv6Address | None,
               peer: str | None, best: bool | None) -> dict[str, Any]:
    """One route: ``route`` in its RFC notation (``RD:prefix``, RTC ``origin-as:rt``,
    MCAST-VPN ``[1][RD][originator]``), the NLRI's own fields, next hop and attributes."""
    d = nlri.to_json()
    d["route"] = str(nlri)
    d["family"] = family.name
    d["next_hop"] = format_next_hop(next_hop)
    d["attributes"] = attrs.to_json()
    if peer is not None:
        d["peer"] = peer
    if best is not None:
        d["best"] = best
    return d


def _network_of(n: Nlri) -> Any:
    """The IP prefix of a unicast, labeled or VPN NLRI (None for RTC, MCAST-VPN)."""
    text = n.to_json().get("prefix")
    if not isinstance(text, str):
        return None
    try:
        return ip_network(text, strict=False)
    except ValueError:
        return None


def _best_first(best: Path | None, paths: list[Path]) -> list[Path]:
    return ([best] if best is not None else []) + [p for p in paths if p != best]
