"""The router: BGP sessions -> RIB -> Adj-RIB-Out, and nothing else.

It is the speaker's session handler. A peer's UPDATE goes into the
:class:`~vpe.rib.rib.Rib` (Adj-RIB-In + Loc-RIB); the destinations whose best
path or multipath set changed are collected per family and, once per burst
of UPDATEs (the event loop's next turn), :meth:`Router.flush` hands them

1. to the :class:`~vpe.rib.adj_rib_out.AdjRibOut` (what each peer must hear),
   at once or, with ``bgp.mrai``, at the end of the interval;
2. to every subscriber (:meth:`Router.subscribe`; the VPN bridge), which may
   change the RIB again (exports become local paths): flushing repeats
   until nothing changed.

What it never does: VPN work, FIB work, API work. Label release is the one
thing a subscriber needs back from the wire: :meth:`Router.after_advertised`
runs a callback once every change made so far is on the wire (with MRAI,
after the interval), so a released label starts its hold-down only when its
withdrawal was really sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol

from ..bgp.session import Peer
from ..bgp.speaker import Speaker, settings_from_config
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import IPV4_UNICAST, RTC, CeaseSubcode, Family
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.notification import Notification
from ..bgp.wire.update import Update
from ..policy import PolicyBook, PolicyChange, Relabeler, SwapChanges, SwapEntry, import_updates
from ..policy.policy import Policy
from ..rib.adj_rib_out import AdjRibOut, OutPeer
from ..rib.decision import DecisionOptions
from ..rib.path import PeerInfo
from ..rib.rib import Rib, RibChange
from .config import AgentConfig, VrfNeighborConfig
from .restart import GracefulRestartManager, restart_settings

log = logging.getLogger("vpe.router")

IPAddress = IPv4Address | IPv6Address
#: a subscriber of flushed changes: (family, changed keys in UPDATE order)
ChangeListener = Callable[[Family, Sequence[bytes]], None]

class CeHandler(Protocol):
    """Where the sessions of VRF neighbors go (PE-CE BGP: vpe.agent.pe_ce.VrfPeering)."""

    def session_up(self, vrf: str, peer: Peer, info: PeerInfo) -> None: ...
    def session_down(self, vrf: str, peer: Peer) -> None: ...
    def update_received(self, vrf: str, peer: Peer, info: PeerInfo, update: Update) -> None: ...
    def resend(self, vrf: str, peer: Peer) -> None: ...


#: what an eBGP neighbor without a policy gets under RFC 8212: nothing in, nothing out
RFC8212_REJECT = Policy("rfc8212-no-policy", (), default_accept=False)

#: flush rounds before giving up on a subscriber that keeps changing the RIB
MAX_FLUSH_ROUNDS = 16


class Router:
    """Speaker + Rib + AdjRibOut of one agent, with batching and MRAI."""

    def __init__(self, cfg: AgentConfig, *, next_hop: IPAddress, restarting: bool,
                 on_selection_done: Callable[[], None] = lambda: None,
                 policies: PolicyBook | None = None, relabeler: Relabeler | None = None,
                 on_swaps: Callable[[SwapChanges], None] = lambda _: None,
                 freebind: Sequence[str] = ()) -> None:
        bgp = cfg.bgp
        self.router_id = IPv4Address(bgp.router_id)
        self.local_as = bgp.local_as
        self.next_hop = next_hop
        cluster = IPv4Address(bgp.cluster_id) if bgp.cluster_id else self.router_id
        # ``freebind``: addresses a forwarder puts on its local interface later (VRF
        # neighbors reached through ports, vpe.agent.port_sessions)
        self.speaker = Speaker(bgp.listen, bgp.port, handler=self, freebind=freebind)
        #: RFC 8212: eBGP neighbors without an import/export policy exchange no routes
        self.ebgp_requires_policy = bgp.ebgp_requires_policy
        self._allowas_in = {n.address: n.allowas_in for n in cfg.neighbors}
        #: VRF neighbors (PE-CE BGP, Inter-AS option A): address -> VRF; their sessions
        #: bypass the RIB and go to :attr:`ce` (vpe.agent.pe_ce)
        self.vrf_of: dict[str, str] = {}
        #: their configurations (shared with :attr:`ce`: ``VrfPeering.neighbors``)
        self.vrf_neighbors: dict[str, VrfNeighborConfig] = {}
        self.ce: CeHandler | None = None
        self._bgp = bgp
        for v in cfg.vrfs:
            for vn in v.neighbors:
                self.add_vrf_neighbor(v.name, vn)
        for n in cfg.neighbors:
            self.speaker.add_peer(restart_settings(settings_from_config(bgp, n), restarting=restarting))
        addpath_send = any(a.mode != "receive" for n in cfg.neighbors for a in n.add_path)
        self.rib = Rib(
            DecisionOptions(max_paths=64, report_all_paths=addpath_send),
            router_id=self.router_id,
            cluster_id=cluster,
            local_asn=self.local_as,
        )
        self.out = AdjRibOut(self.rib, local_asn=self.local_as, router_id=self.router_id, cluster_id=cluster,
                             relabeler=relabeler)
        #: the neighbors' import and export policies (docs/policy.md)
        self.policies = policies if policies is not None else PolicyBook()
        self.policies.subscribe(self._policies_changed)
        self._relabeler = relabeler
        self._on_swaps = on_swaps
        #: the PeerInfo of locally originated paths
        self.local = PeerInfo.local_origin(self.router_id, self.local_as)
        self.mrai = bgp.mrai
        self._on_selection_done = on_selection_done
        self.gr = GracefulRestartManager(
            self.rib,
            peers=lambda: self.speaker.peers,
            send=self.send,
            complete=self._selection_done,
            restarting=restarting,
        )
        self._peer_info: dict[str, PeerInfo] = {}
        #: prefix-limit level per peer and family (0 below the threshold, 1 past it, 2 over)
        self._over_limit: dict[str, dict[Family, int]] = {}
        self._listeners: list[ChangeListener] = []
        self._settled: list[Callable[[], None]] = []
        # changed keys per family, in arrival (UPDATE) order: dicts as ordered sets,
        # because the Adj-RIB-Out walks consecutive keys of one source fastest
        self._pending: dict[Family, dict[bytes, None]] = {}
        self._flush_scheduled = False
        self._pending_out: dict[Family, dict[bytes, None]] = {}
        self._advertise_handle: asyncio.TimerHandle | None = None
        #: callbacks waiting for the changes made so far to be on the wire
        self._waiting: list[Callable[[], None]] = []
        self._after_interval: list[Callable[[], None]] = []
        self.rib.subscribe(self._on_rib_change)

    # -- wiring (called by the composition root) ------------------------------------

    def subscribe(self, fn: ChangeListener) -> None:
        """``fn(family, keys)`` for every flushed change, after it went to the Adj-RIB-Out."""
        self._listeners.append(fn)

    def on_settled(self, fn: Callable[[], None]) -> None:
        """``fn()`` at the end of every flush, once the subscribers are done."""
        self._settled.append(fn)

    def after_advertised(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every change made so far has been sent to the peers."""
        self._waiting.append(fn)
        self._schedule_flush()

    # -- VRF neighbors (PE-CE BGP) --------------------------------------------------------

    def add_vrf_neighbor(self, vrf: str, vn: VrfNeighborConfig) -> None:
        """A BGP neighbor of VRF ``vrf``: its session starts now if the speaker runs
        (ValueError: the address is a neighbor already)."""
        self.speaker.add_peer(settings_from_config(self._bgp, vn))
        self.vrf_of[vn.address] = vrf
        self.vrf_neighbors[vn.address] = vn
        self._allowas_in[vn.address] = vn.allowas_in

    async def remove_vrf_neighbor(self, address: str) -> None:
        """Remove a VRF's neighbor: Cease / Peer De-configured, its routes leave the VRF
        as when the session drops (KeyError: no such VRF neighbor)."""
        if address not in self.vrf_of:
            raise KeyError(address)
        await self.speaker.remove_peer(address)
        del self.vrf_of[address]
        self.vrf_neighbors.pop(address, None)
        self._allowas_in.pop(address, None)
        self._peer_info.pop(address, None)

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.speaker.start()
        self.gr.started()

    async def stop(self) -> None:
        self.gr.stop()
        if self._advertise_handle is not None:
            self._advertise_handle.cancel()
            self._advertise_handle = None
        await self.speaker.stop()

    def _selection_done(self) -> None:
        """Graceful restart's route selection is over: settle, then tell the root."""
        self.flush()
        self._on_selection_done()

    # -- local paths (the VPN bridge's exports, RTC, I-PMSI) ---------------------------

    def announce_local(self, family: Family, attrs: PathAttributes, next_hop: IPAddress | None,
                       nlris: Iterable[Nlri]) -> None:
        self.rib.announce(self.local, family, attrs, next_hop, nlris)

    def withdraw_local(self, family: Family, nlris: Iterable[Nlri]) -> None:
        self.rib.withdraw(self.local, family, nlris)

    # -- actions (the API's) -----------------------------------------------------------

    @property
    def peers(self) -> Mapping[str, Peer]:
        return self.speaker.peers

    def send(self, peer: Peer, messages: list[bytes]) -> None:
        self.speaker.send(peer, messages)

    def request_refresh(self, address: str) -> list[Family]:
        """Soft inbound reset: ROUTE-REFRESH to ``address`` (KeyError: no such
        neighbor; ValueError: it cannot refresh now)."""
        peer = self.speaker.peers.get(address)
        if peer is None:
            raise KeyError(address)
        return list(peer.request_refresh())

    def _peer(self, address: str) -> Peer:
        peer = self.speaker.peers.get(address)
        if peer is None:
            raise KeyError(address)
        return peer

    def soft_reset_out(self, address: str) -> list[Family]:
        """Soft outbound reset: send ``address`` its whole Adj-RIB-Out again, each
        family followed by End-of-RIB, without a session reset (KeyError: no
        such neighbor; ValueError: the session is not Established)."""
        peer = self._peer(address)
        n = peer.negotiated
        if n is None or not peer.established:
            raise ValueError(f"neighbor {address}: session is {peer.state.value}, not Established")
        addr = ip_address(address)
        fams = sorted(n.families)
        msgs: list[bytes] = []
        for fam in fams:
            msgs += self.out.refresh(addr, fam)
        self._swaps()
        self.send(peer, msgs)
        return fams

    def shutdown(self, address: str, communication: str | None = None) -> None:
        """Administrative shutdown of a neighbor: Cease, then Idle until :meth:`enable`
        (KeyError: no such neighbor; ValueError: the communication is too long)."""
        peer = self._peer(address)
        _check_communication(communication)
        peer.shutdown(communication)

    def enable(self, address: str) -> None:
        """Bring a shut-down neighbor back (KeyError: no such neighbor)."""
        self._peer(address).enable()

    def hard_reset(self, address: str, communication: str | None = None) -> None:
        """Hard reset: Cease / Administrative Reset, routes flushed, session started
        again (KeyError: no such neighbor; ValueError: it is shut down)."""
        peer = self._peer(address)
        if peer.admin_down:
            raise ValueError(f"neighbor {address} is shut down: enable it instead of resetting it")
        _check_communication(communication)
        peer.reset(communication)

    # -- SessionHandler (called by the sessions) ---------------------------------------

    def _info(self, peer: Peer) -> PeerInfo:
        n = peer.negotiated
        assert n is not None
        info = PeerInfo(
            ip_address(peer.address),
            n.peer_id,
            n.peer_asn,
            ibgp=n.peer_asn == self.local_as,
            rr_client=peer.settings.route_reflector_client,
            allowas_in=self._allowas_in.get(peer.address, 0),
        )
        self._peer_info[peer.address] = info
        return info

    def session_up(self, peer: Peer) -> None:
        info = self._info(peer)
        vrf = self.vrf_of.get(peer.address)
        if vrf is not None:
            if self.ce is not None:
                self.ce.session_up(vrf, peer, info)
            return
        self.gr.peer_up(peer)
        n = peer.negotiated
        assert n is not None
        addpath = {f: ("all" if peer.settings.addpath_send_count == 0 else peer.settings.addpath_send_count)
                   for f in n.addpath_send}
        op = OutPeer(
            address=info.address,
            info=info,
            families=n.families,
            ctx=peer.tx_ctx,
            addpath_send=addpath,
            next_hop_self=None if info.ibgp else self.next_hop,
            rtc=RTC in n.families,
            export_policy=self.export_policy_of(peer.address, info),
        )
        msgs = self.out.peer_up(op)
        self._swaps()
        self.send(peer, self.gr.hold_eor(peer, msgs))

    def session_down(self, peer: Peer, reason: str) -> None:
        self._over_limit.pop(peer.address, None)
        vrf = self.vrf_of.get(peer.address)
        if vrf is not None:
            if self.ce is not None:
                self.ce.session_down(vrf, peer)
            return
        addr = ip_address(peer.address)
        self.out.peer_down(addr)
        self._swaps()
        if not self.gr.peer_down(peer, reason):  # graceful restart keeps them stale
            self.rib.peer_down(addr)
        self._schedule_flush()

    def update_received(self, peer: Peer, update: Update) -> None:
        info = self._peer_info.get(peer.address) or self._info(peer)
        vrf = self.vrf_of.get(peer.address)
        if vrf is not None:
            if self.ce is not None and update.end_of_rib() is None:
                self.ce.update_received(vrf, peer, info, update)
            return
        eor = update.end_of_rib()
        if eor is not None:
            self.rib.end_of_rib(info.address, eor)
            self.gr.eor_received(peer, eor)
            return
        policy = self.import_policy_of(peer.address, info)
        if policy is None:
            self.rib.apply_update(info, update)
        else:
            rejected: list[Nlri] = []
            for u in import_updates(policy, update, self_next_hop=self.next_hop, rejected=rejected):
                self.rib.apply_update(info, u)
            if rejected:
                _log_rejected(peer.address, rejected, policy)
        if peer.settings.max_prefixes is not None:
            self._check_prefix_limit(peer, info, update)
        if (update.mp_reach is not None and update.mp_reach.family == RTC) or (
            update.mp_unreach is not None and update.mp_unreach.family == RTC
        ):
            # The peer's RT membership changed (whether or not its RTC paths
            # are best): re-filter the VPN routes it gets (RFC 4684).
            self.flush()
            self.send(peer, self.out.rtc_changed(info.address))
            self._swaps()

    def _check_prefix_limit(self, peer: Peer, info: PeerInfo, update: Update) -> None:
        """Per-peer prefix limit (R13.4), counted per family in the peer's Adj-RIB-In:
        past the threshold a warning, past the limit the peer's action (tear-down
        with Cease 6/1 or a warning), each once per crossing."""
        limit = peer.settings.max_prefixes
        assert limit is not None
        families: list[Family] = []
        if update.nlri:
            families.append(IPV4_UNICAST)
        if update.mp_reach is not None and update.mp_reach.nlri:
            families.append(update.mp_reach.family)
        over = self._over_limit.setdefault(peer.address, {})
        for fam in families:
            adj = self.rib.adj_rib_in(info.address, fam)
            count = 0 if adj is None else len(adj)
            level = 2 if count > limit else 1 if count * 100 >= limit * peer.settings.max_prefixes_threshold else 0
            was = over.get(fam, 0)
            over[fam] = level
            if level == was or level < was:
                continue
            if level == 1:
                log.warning("peer %s: %d %s prefixes, %d%% of the limit of %d", peer.address, count,
                            fam.name, count * 100 // limit, limit)
            else:
                peer.prefix_limit_exceeded(fam, count)

    def refresh_requested(self, peer: Peer, family: Family, subtype: int) -> None:
        vrf = self.vrf_of.get(peer.address)
        if vrf is not None:
            if subtype == 0 and self.ce is not None:
                self.ce.resend(vrf, peer)
            return
        if subtype == 0:
            self.send(peer, self.out.refresh(ip_address(peer.address), family))
            self._swaps()

    # -- policies ------------------------------------------------------------------------

    def import_policy_of(self, address: str, info: PeerInfo) -> Policy | None:
        """The neighbor's import policy; RFC 8212's reject-all for an eBGP one without."""
        pol = self.policies.import_policy(address)
        if pol is None and info.ebgp and self.ebgp_requires_policy:
            return RFC8212_REJECT
        return pol

    def export_policy_of(self, address: str, info: PeerInfo | None) -> Policy | None:
        """The neighbor's export policy; RFC 8212's reject-all for an eBGP one without."""
        pol = self.policies.export_policy(address)
        if pol is None and info is not None and info.ebgp and self.ebgp_requires_policy:
            log.warning("neighbor %s: eBGP without an export policy: nothing is sent to it (RFC 8212; "
                        "set an export_policy, or bgp.ebgp_requires_policy = false)", address,
                        extra={"peer": address})
            return RFC8212_REJECT
        return pol

    def _policies_changed(self, changes: list[PolicyChange]) -> None:
        """A neighbor's policy changed: export - send it only the difference;
        import - ask it to send its routes again (the Adj-RIB-In holds them
        after the import policy, so a soft inbound reset re-applies it)."""
        for ch in changes:
            peer = self.speaker.peers.get(ch.neighbor)
            if peer is None or not peer.established:
                continue  # the policy applies when the session comes up
            vrf = self.vrf_of.get(ch.neighbor)
            if vrf is not None and ch.direction == "export":
                if self.ce is not None:
                    self.ce.resend(vrf, peer)
                continue
            if ch.direction == "export":
                pol = ch.policy if ch.policy is not None else self.export_policy_of(ch.neighbor,
                                                                                   self._peer_info.get(ch.neighbor))
                self.send(peer, self.out.set_export_policy(ip_address(ch.neighbor), pol))
                self._swaps()
            else:
                try:
                    peer.request_refresh()
                except ValueError as e:
                    log.warning("neighbor %s: import policy changed but no ROUTE-REFRESH possible (%s): "
                                "it applies to routes received from now on", ch.neighbor, e,
                                extra={"peer": ch.neighbor})

    def _swaps(self) -> None:
        """Label-swap entries the export policies' relabels added or removed go to the FIB."""
        if self._relabeler is not None:
            ch = self._relabeler.drain()
            if ch:
                self._on_swaps(ch)

    # -- RIB changes -> Adj-RIB-Out, subscribers ------------------------------------------

    def _on_rib_change(self, change: RibChange) -> None:
        self._pending.setdefault(change.family, {}).update(dict.fromkeys(change.keys))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (construction, tests): flush at once
            self.flush()

    def flush(self) -> None:
        """Hand every change collected since the last flush to the peers and subscribers."""
        self._flush_scheduled = False
        rounds = 0
        while self._pending and rounds < MAX_FLUSH_ROUNDS:
            rounds += 1
            pending, self._pending = self._pending, {}
            for fam, keys in pending.items():
                if self.mrai > 0:
                    self._pending_out.setdefault(fam, {}).update(keys)
                    self._schedule_advertise()
                else:
                    self._advertise(fam, keys)
                ordered = list(keys)
                for fn in self._listeners:
                    fn(fam, ordered)
        for settle in self._settled:
            settle()
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            if self._advertise_handle is None:  # nothing held back by MRAI: all is sent
                for done in waiting:
                    done()
            else:  # sent when the interval ends
                self._after_interval.extend(waiting)

    def _advertise(self, fam: Family, keys: Iterable[bytes]) -> None:
        """What peers must hear about ``keys`` (diffed against what they have)."""
        for addr, msgs in self.out.on_change(RibChange(fam, tuple(keys))).items():
            peer = self.speaker.peers.get(str(addr))
            if peer is not None:
                self.send(peer, msgs)
        self._swaps()

    def _schedule_advertise(self) -> None:
        """MinRouteAdvertisementInterval (RFC 4271 9.2.1.1): changes collected
        during the interval are advertised together, each destination once,
        in its state at the end of the interval (intermediate states are
        never sent). Applies to every peer; 0 (the default) sends at once."""
        if self._advertise_handle is None:
            self._advertise_handle = asyncio.get_running_loop().call_later(self.mrai, self._flush_advertise)

    def _flush_advertise(self) -> None:
        self._advertise_handle = None
        pending, self._pending_out = self._pending_out, {}
        for fam, keys in pending.items():
            self._advertise(fam, keys)
        sent, self._after_interval = self._after_interval, []
        for done in sent:
            done()

    # -- reading (for the view) ---------------------------------------------------------

    def peer_info(self, address: str) -> PeerInfo | None:
        return self._peer_info.get(address)

    def swap_entries(self) -> list[SwapEntry]:
        """The label-swap entries the export policies' relabels hold (Inter-AS option B)."""
        return [] if self._relabeler is None else self._relabeler.entries()


def _log_rejected(address: str, nlris: list[Nlri], policy: Policy, shown: int = 8) -> None:
    """One log line per UPDATE naming the peer, the routes its import policy rejected and why."""
    text = ", ".join(str(n) for n in nlris[:shown])
    if len(nlris) > shown:
        text += f" and {len(nlris) - shown} more"
    why = ("eBGP neighbor without an import policy (RFC 8212)" if policy is RFC8212_REJECT
           else f"rejected by import policy {policy.name!r}")
    log.info("peer %s: %s not accepted: %s", address, text, why, extra={"peer": address})


def _check_communication(text: str | None) -> None:
    """ValueError when ``text`` cannot be a shutdown communication (RFC 9003: 255 octets of UTF-8)."""
    if text is not None:
        Notification.cease(CeaseSubcode.ADMIN_SHUTDOWN, text)
