"""PE-CE BGP: a VRF's own BGP neighbors (Inter-AS option A, a VM or an appliance that
announces its routes into its VPN).

A VRF neighbor (``[[vrfs.neighbors]]``) is a session of the agent's one BGP
speaker, but its routes never enter the global RIB: the router hands its
sessions to :class:`VrfPeering`, which

* turns each IPv4/IPv6 unicast route the neighbor announces into a route of
  the VRF: a static route via the next hop the neighbor gave (in the FIB,
  the port of the VRF that holds that address), exported with the VRF's RD
  and route targets like any local route, so it leaves as a VPN route;
  withdrawals (and the session going down) remove it again;
* sends the neighbor the VRF's table: every prefix's best entry (local
  routes, VPN routes the VRF imported, routes of the VRF's other
  neighbors), with our AS prepended towards eBGP, the AS path the route came
  with when it has one (a neighbor's route keeps its AS_PATH in the VRF and in
  the VPN route it is exported as, so a CE of the same AS elsewhere sees the
  loop and remote option-A neighbors get the real path), and a next hop of
  ours (``next_hop`` / ``next_hop6`` of the neighbor, else this side's
  address of the session); never a route
  back to the neighbor it came from. Table changes follow as they happen.

A neighbor's ``max_prefixes`` counts the prefixes it announces into the VRF
(each family on its own, after its import policy); past the limit the session
is torn down with Cease / Maximum Number of Prefixes Reached (or, with
``max_prefixes_action = "warning"``, only logged), logged with the peer and the
VRF, and its routes leave the VRF as when the session drops.

The rules of eBGP hold as for every other neighbor: the import and export
policies of the neighbor apply (RFC 8212: none given, nothing crosses unless
``bgp.ebgp_requires_policy = false``), a route with our own AS in its path
is a loop (``allowas_in`` tolerates some), and every rejection is logged with
the peer and the prefix.

Every neighbor of a VRF that announces a prefix keeps its own candidate;
the VRF takes one of them by the BGP decision (the shorter AS_PATH, then the
lower neighbor address) and falls back to the next one when the chosen
neighbor withdraws its route or its session drops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from ..bgp.session import Peer
from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.next_hop import NextHop as NextHopAttr
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST, AttrCode, Family
from ..bgp.wire.nlri.prefix import IPv4Prefix, IPv6Prefix, make_network
from ..bgp.wire.update import Update, end_of_rib, pack_announcements, pack_withdrawals
from ..policy import import_updates
from ..rib.path import PeerInfo
from ..rib.reflection import inbound_loop
from ..vpn.entries import RouteSource
from ..vpn.errors import VpnError
from ..vpn.events import VrfTableChange
from ..vpn.service import VpnService
from .bridge import VpnBridge
from .config import AgentConfig
from .router import Router

log = logging.getLogger("vpe.pe_ce")

IPAddress = IPv4Address | IPv6Address
_FAMILY = {4: IPV4_UNICAST, 6: IPV6_UNICAST}
_ORIGIN_IGP = Origin(OriginType.IGP)
_AS_PATH = int(AttrCode.AS_PATH)


class VrfPeering:
    """The sessions of every VRF's own neighbors (see the module docstring)."""

    def __init__(self, cfg: AgentConfig, router: Router, bridge: VpnBridge, vpn: VpnService) -> None:
        self.router = router
        self.bridge = bridge
        self.vpn = vpn
        self.local_as = router.local_as
        #: neighbor address -> its configuration (the router's, which follows the API)
        self.neighbors = router.vrf_neighbors
        #: (vrf, prefix) -> the neighbor whose route the VRF holds
        self.learned: dict[tuple[str, str], str] = {}
        #: (vrf, prefix) -> neighbor -> its candidate (next hop, AS_PATH)
        self.candidates: dict[tuple[str, str], dict[str, tuple[IPAddress, AsPath]]] = {}
        #: neighbor -> prefix -> (attributes, next hop) sent
        self.sent: dict[str, dict[str, tuple[PathAttributes, IPAddress]]] = {}
        self._up: dict[str, tuple[str, Peer, PeerInfo]] = {}
        #: neighbor -> IP version -> prefixes it announces (its candidates; the prefix limit)
        self.counts: dict[str, dict[int, int]] = {}
        #: neighbor -> IP version -> 0 under the warning threshold, 1 past it, 2 past the limit
        self._over: dict[str, dict[int, int]] = {}
        router.ce = self
        bridge.on_table_changes(self.tables_changed)

    # -- sessions ------------------------------------------------------------------

    def session_up(self, vrf: str, peer: Peer, info: PeerInfo) -> None:
        self._up[peer.address] = (vrf, peer, info)
        self.sent[peer.address] = {}
        self.resend(vrf, peer)
        n = peer.negotiated
        fams = sorted(n.families) if n is not None else []
        self.router.send(peer, [end_of_rib(f) for f in fams if f in (IPV4_UNICAST, IPV6_UNICAST)])

    def session_down(self, vrf: str, peer: Peer) -> None:
        self._up.pop(peer.address, None)
        self.sent.pop(peer.address, None)
        self._over.pop(peer.address, None)
        mine = [p for (v, p), cands in self.candidates.items() if v == vrf and peer.address in cands]
        for prefix in mine:
            self._forget(vrf, prefix, peer.address)

    # -- routes in -------------------------------------------------------------------

    def update_received(self, vrf: str, peer: Peer, info: PeerInfo, update: Update) -> None:
        policy = self.router.import_policy_of(peer.address, info)
        rejected: list[Any] = []
        updates = [update] if policy is None else import_updates(policy, update, rejected=rejected)
        if rejected:
            log.info("peer %s (vrf %s): %s not accepted: %s", peer.address, vrf,
                     ", ".join(str(n) for n in rejected[:8]),
                     f"rejected by import policy {policy.name!r}" if policy and policy.name != "rfc8212-no-policy"
                     else "eBGP neighbor without an import policy (RFC 8212)", extra={"peer": peer.address})
        for u in updates:
            for _fam, nlri in u.withdrawn_routes():
                self._forget(vrf, str(nlri.prefix), peer.address)  # type: ignore[attr-defined]
            announced = list(u.announced())
            if not announced:
                continue
            attr = u.attributes.get(_AS_PATH)
            path = attr if isinstance(attr, AsPath) else AsPath()
            why = inbound_loop(u.attributes, None, None, None if info.ibgp else self.local_as, info.allowas_in)
            for fam, nlri, nh in announced:
                prefix = str(nlri.prefix)  # type: ignore[attr-defined]
                if fam not in (IPV4_UNICAST, IPV6_UNICAST):
                    continue
                if why is not None:
                    log.info("peer %s (vrf %s): %s treated as withdrawn: %s", peer.address, vrf, prefix, why,
                             extra={"peer": peer.address})
                    self._forget(vrf, prefix, peer.address)
                    continue
                if nh is None:
                    continue
                self._learn(vrf, prefix, nh, peer.address, path)
        if peer.settings.max_prefixes is not None:
            self._check_prefix_limit(vrf, peer)

    def _check_prefix_limit(self, vrf: str, peer: Peer) -> None:
        """The neighbor's ``max_prefixes``, per family, counted in the routes it announces
        (after its import policy): past the threshold a warning, past the limit the
        neighbor's action (tear-down with Cease / Maximum Number of Prefixes Reached,
        or a warning), each once per crossing, logged with the peer and the VRF."""
        limit = peer.settings.max_prefixes
        assert limit is not None
        over = self._over.setdefault(peer.address, {})
        for ver, count in self.counts.get(peer.address, {}).items():
            level = 2 if count > limit else 1 if count * 100 >= limit * peer.settings.max_prefixes_threshold else 0
            was = over.get(ver, 0)
            over[ver] = level
            if level <= was:
                continue
            fam = _FAMILY[ver]
            if level == 1:
                log.warning("peer %s (vrf %s): %d %s prefixes, %d%% of the limit of %d", peer.address, vrf,
                            count, fam.name, count * 100 // limit, limit, extra={"peer": peer.address})
            else:
                log.error("peer %s (vrf %s): %d %s prefixes, over the limit of %d (%s)", peer.address, vrf,
                          count, fam.name, limit, "warning only" if peer.settings.max_prefixes_action == "warning"
                          else "session torn down", extra={"peer": peer.address})
                peer.prefix_limit_exceeded(fam, count)

    def _learn(self, vrf: str, prefix: str, next_hop: IPAddress, who: str, path: AsPath) -> None:
        cands = self.candidates.setdefault((vrf, prefix), {})
        if who not in cands:
            self._tally(who, prefix, 1)
        cands[who] = (next_hop, path)
        self._select(vrf, prefix)

    def _forget(self, vrf: str, prefix: str, who: str) -> None:
        cands = self.candidates.get((vrf, prefix))
        if cands is None or cands.pop(who, None) is None:
            return
        self._tally(who, prefix, -1)
        if not cands:
            del self.candidates[(vrf, prefix)]
        self._select(vrf, prefix)

    def _tally(self, who: str, prefix: str, step: int) -> None:
        per = self.counts.setdefault(who, {})
        ver = ip_network(prefix).version
        per[ver] = per.get(ver, 0) + step

    def _select(self, vrf: str, prefix: str) -> None:
        """Put the best neighbor's candidate for ``prefix`` into the VRF (or take the
        neighbors' route out when none is left); a candidate the VRF refuses is dropped."""
        key = (vrf, prefix)
        while True:
            cands = self.candidates.get(key, {})
            if not cands:
                if self.learned.pop(key, None) is not None:
                    try:
                        self.bridge.apply(self.vpn.remove_local_route(vrf, prefix))
                    except VpnError as e:
                        log.warning("vrf %s: route %s of the neighbors not removed: %s", vrf, prefix, e)
                return
            who = min(cands, key=lambda a: _rank(a, cands[a][1]))
            nh, path = cands[who]
            try:
                out = self.vpn.add_local_route(vrf, prefix, kind="static", next_hop=nh, as_path=path)
            except VpnError as e:
                log.warning("peer %s (vrf %s): route %s via %s not taken: %s", who, vrf, prefix, nh, e,
                            extra={"peer": who})
                del cands[who]
                self._tally(who, prefix, -1)
                if not cands:
                    del self.candidates[key]
                continue
            before = self.learned.get(key)
            self.learned[key] = who
            self.bridge.apply(out)
            if before != who:
                # the previous neighbor (if up) gets the new route; the new one loses its own
                self._refresh_prefix(vrf, prefix)
            return

    # -- routes out ------------------------------------------------------------------

    def tables_changed(self, changes: Sequence[VrfTableChange]) -> None:
        if not self._up:
            return
        by_vrf: dict[str, list[VrfTableChange]] = {}
        for ch in changes:
            by_vrf.setdefault(ch.vrf, []).append(ch)
        for vrf, peer, info in list(self._up.values()):
            chs = by_vrf.get(vrf)
            if chs:
                self._send(vrf, peer, info, [(ch.version, str(ch.network), ch.routes) for ch in chs])

    def _refresh_prefix(self, vrf: str, prefix: str) -> None:
        """Send ``prefix`` again to the VRF's neighbors (which of them holds it changed)."""
        v = self.vpn.vrfs.get(vrf)
        if v is None:
            return
        routes = v.routes(prefix)
        for pvrf, peer, info in list(self._up.values()):
            if pvrf == vrf:
                self._send(vrf, peer, info, [(ip_network(prefix).version, prefix, routes)])

    def resend(self, vrf: str, peer: Peer) -> None:
        """Everything the VRF holds, against what the neighbor has (a refresh, a policy change)."""
        up = self._up.get(peer.address)
        if up is None:
            return
        v = self.vpn.vrfs.get(vrf)
        if v is None:
            return
        items = [(ver, str(make_network(key[1:], key[0], ver)), routes)
                 for ver in (4, 6) for key, routes in v.items(ver)]
        have = {p for _, p, _ in items}
        items += [(ip_network(p).version, p, ()) for p in self.sent.get(peer.address, {}) if p not in have]
        self._send(vrf, peer, up[2], items)

    def _send(self, vrf: str, peer: Peer, info: PeerInfo, items: list[tuple[int, str, tuple[Any, ...]]]) -> None:
        sent = self.sent.setdefault(peer.address, {})
        n = peer.negotiated
        families = n.families if n is not None else frozenset()
        policy = self.router.export_policy_of(peer.address, info)
        announce: dict[tuple[Family, PathAttributes, IPAddress], list[Any]] = {}
        withdraw: dict[Family, list[Any]] = {}
        for ver, prefix, routes in items:
            fam = _FAMILY[ver]
            if fam not in families:
                continue
            out = self._route_for(vrf, peer, info, fam, prefix, routes, policy)
            old = sent.get(prefix)
            if out is None:
                if old is not None:
                    del sent[prefix]
                    withdraw.setdefault(fam, []).append(_nlri(ver, prefix))
                continue
            if old == out:
                continue
            sent[prefix] = out
            announce.setdefault((fam, out[0], out[1]), []).append(_nlri(ver, prefix))
        msgs: list[bytes] = []
        for fam, nlris in withdraw.items():
            msgs += pack_withdrawals(fam, nlris, peer.tx_ctx)
        for (fam, attrs, nh), nlris in announce.items():
            msgs += pack_announcements(fam, attrs, None if fam == IPV4_UNICAST else nh, nlris, peer.tx_ctx)
        if msgs:
            self.router.send(peer, msgs)

    def _route_for(self, vrf: str, peer: Peer, info: PeerInfo, fam: Family, prefix: str,
                   routes: tuple[Any, ...], policy: Any) -> tuple[PathAttributes, IPAddress] | None:
        """(attributes, next hop) of the VRF's best entry for ``prefix`` as sent to ``peer``,
        or None (nothing to send: no entry, the neighbor's own route, no next hop, rejected)."""
        if not routes:
            return None
        best = routes[0]
        if self.learned.get((vrf, prefix)) == peer.address and best.source is RouteSource.LOCAL:
            return None  # its own route: never back to it
        nh = self._next_hop(peer, fam)
        if nh is None:
            return None
        path = best.attributes.get(_AS_PATH) if best.attributes is not None else None
        who = self.learned.get((vrf, prefix))
        if who is not None and best.source is RouteSource.LOCAL:
            path = self.candidates.get((vrf, prefix), {}).get(who, (None, None))[1]  # the neighbor's path
        base = path if isinstance(path, AsPath) else AsPath()
        if not info.ibgp:
            base = base.prepend(self.local_as)
        parts = [_ORIGIN_IGP, base]
        if isinstance(nh, IPv4Address) and fam == IPV4_UNICAST:
            parts.append(NextHopAttr(nh))
        attrs = PathAttributes(parts)
        if policy is not None:
            net = ip_network(prefix)
            v = policy.evaluate(fam, attrs, nh, _nlri(net.version, prefix).key, nh)
            if not v.accept or v.next_hop is None:
                return None
            attrs, nh = v.attrs, v.next_hop
        return attrs, nh

    def _next_hop(self, peer: Peer, fam: Family) -> IPAddress | None:
        cfg = self.neighbors.get(peer.address)
        want = None
        if cfg is not None:
            want = cfg.next_hop if fam == IPV4_UNICAST else cfg.next_hop6
        if want is not None:
            return ip_address(want)
        local = peer.local_ip
        if local is None:
            return None
        addr = ip_address(local)
        return addr if addr.version == (4 if fam == IPV4_UNICAST else 6) else None


def _rank(who: str, path: AsPath) -> tuple[int, int, int]:
    """The BGP decision between neighbors' candidates: the shorter AS_PATH, then the lower address."""
    addr = ip_address(who)
    return path.length(), addr.version, int(addr)


def _nlri(version: int, prefix: str) -> Any:
    return IPv4Prefix.from_str(prefix) if version == 4 else IPv6Prefix.from_str(prefix)
