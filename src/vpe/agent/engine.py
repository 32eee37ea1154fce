"""The routing engine of one vPE: sessions -> RIB -> (Adj-RIB-Out, VRFs -> FIB).

This is the only place the layers meet, and data flows one way through it:

* a peer's UPDATE goes into the :class:`~vpe.rib.rib.Rib` (Adj-RIB-In +
  Loc-RIB); the changed destinations are collected and, once per burst of
  UPDATEs (the event loop's next turn), handed to the
  :class:`~vpe.rib.adj_rib_out.AdjRibOut` (what each peer must hear) and, for
  VPN families, to the :class:`~vpe.vpn.service.VpnService` (what each VRF
  imports);
* the VPN service's exports become locally originated paths in the RIB (so
  they are advertised, and reflected, like any other path), its VRF table
  changes become FIB batches for the forwarder.

Nothing here parses bytes or decides best paths; it wires and batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address, ip_interface
from typing import Any

from ..bgp.session import Peer
from ..bgp.speaker import Speaker, settings_from_config
from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.attributes.simple import LocalPref
from ..bgp.wire.constants import (
    IPV4_MCAST_VPN,
    RTC,
    VPNV4,
    VPNV6,
    Family,
)
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.nlri.rtc import RouteTargetMembership
from ..bgp.wire.update import Update
from ..rib.adj_rib_out import AdjRibOut, OutPeer
from ..rib.attrs import route_target_octets
from ..rib.decision import DecisionOptions
from ..rib.path import PeerInfo
from ..rib.rib import Rib, RibChange
from ..rib.rtc import local_rtc_routes
from ..vpn.events import VpnOutput, VpnPath, VpnPathsChanged, vpn_path_of
from ..vpn.leaking import LeakPolicy
from ..vpn.service import VpnService
from .config import AgentConfig
from .durable import DurableOps
from .fib import FibProgrammer
from .mvpn import i_pmsi_route, replication_lists
from .restart import GracefulRestartManager, restart_settings
from .store import Store

log = logging.getLogger("vpe.engine")

VPN_FAMILIES = frozenset({VPNV4, VPNV6})
#: the attributes of the RTC routes this vPE originates (one shared, interned set)
_RTC_ATTRS = PathAttributes([Origin(OriginType.IGP), AsPath(), LocalPref(100)])
#: how long a stale path survives a peer's graceful restart without EoR
STALE_TIME = 360.0


@dataclass(slots=True)
class Attachment:
    """An endpoint (VM interface) attached to a VRF of this vPE."""

    name: str
    ifname: str
    vrf: str
    mac: str
    ips: tuple[str, ...]
    gateways: tuple[str, ...] = ()
    allowed_pairs: tuple[str, ...] = ()
    advertise: str = "host"  # "host": /32 and /128 of each IP; "subnet": the IP's subnet too
    extra: dict[str, Any] = field(default_factory=dict)
    #: "both" / "to-port": the addresses are routes of the VRF (reachable, advertised);
    #: "from-port": the port only sends: no route leads to it (docs/api.md)
    direction: str = "both"
    local_pref: int | None = None  # LOCAL_PREF of the exported routes (None: the default, 100)
    description: str = ""

    @property
    def originates(self) -> bool:
        """Do the port's addresses become routes of its VRF (and VPN routes)?"""
        return self.direction != "from-port"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ifname": self.ifname,
            "vrf": self.vrf,
            "mac": self.mac,
            "ips": list(self.ips),
            "gateways": list(self.gateways),
            "allowed_pairs": list(self.allowed_pairs),
            "advertise": self.advertise,
            "direction": self.direction,
            "local_pref": self.local_pref,
            "description": self.description,
        }


class Engine:
    """Speaker + RIB + Adj-RIB-Out + VPN service + FIB of one agent."""

    def __init__(self, cfg: AgentConfig, store: Store | None = None) -> None:
        self.cfg = cfg
        # durable state (vpe.agent.store): its presence means this is a restart
        self.store = store
        saved = store.service_state() if store is not None else None
        bgp = cfg.bgp
        self.router_id = IPv4Address(bgp.router_id)
        self.local_as = bgp.local_as
        cluster = IPv4Address(bgp.cluster_id) if bgp.cluster_id else self.router_id
        self.speaker = Speaker(bgp.listen, bgp.port, handler=self)
        for n in cfg.neighbors:
            self.speaker.add_peer(restart_settings(settings_from_config(bgp, n), restarting=saved is not None))
        addpath_send = any(a.mode != "receive" for n in cfg.neighbors for a in n.add_path)
        self.rib = Rib(
            DecisionOptions(max_paths=64, report_all_paths=addpath_send),
            router_id=self.router_id,
            cluster_id=cluster,
            local_asn=self.local_as,
        )
        self.out = AdjRibOut(self.rib, local_asn=self.local_as, router_id=self.router_id, cluster_id=cluster)
        dp = cfg.dataplane
        underlay = ip_address(dp.underlay_address) if dp.underlay_address else self.router_id
        self.underlay = underlay
        self.vpn = VpnService(self.router_id, next_hop=underlay, encapsulations=dp.encapsulations,
                              state=saved, now=time.monotonic())
        self.local = PeerInfo.local_origin(self.router_id, self.local_as)
        self.fib = (
            FibProgrammer(dp.fib_socket, underlay, encap_order=dp.encapsulations)
            if dp.driver == "userspace"
            else None
        )
        self.attachments: dict[str, Attachment] = {}
        # changed keys per family, in arrival (UPDATE) order: dicts as ordered sets,
        # because the Adj-RIB-Out walks consecutive keys of one source fastest
        self._pending: dict[Family, dict[bytes, None]] = {}
        self._flush_scheduled = False
        self._fed: dict[tuple[Family, bytes], list[VpnPath]] = {}
        self._rtc_sent: dict[bytes, RouteTargetMembership] = {}
        self._peer_info: dict[str, PeerInfo] = {}
        self._released: list[int] = []
        self.mrai = cfg.bgp.mrai
        self._pending_out: dict[Family, dict[bytes, None]] = {}
        self._advertise_handle: asyncio.TimerHandle | None = None
        self._import_rts: frozenset[bytes] = frozenset()
        self._relevance: dict[PathAttributes, bool] = {}
        self._pmsi_sent: dict[str, tuple[Nlri, Any]] = {}  # VRF -> I-PMSI A-D route sent
        self._mvpn_dirty = False  # MCAST-VPN routes changed: replication lists to recompute
        self.rib.subscribe(self._on_rib_change)
        for v in cfg.vrfs:
            self._apply(
                self.vpn.add_vrf(
                    v.name,
                    rd=v.rd,
                    import_rts=v.import_rts,
                    export_rts=v.export_rts,
                    route_targets=v.route_targets,
                    label_mode=v.label_mode,
                    multipath=v.multipath,
                )
            )
            for r in v.routes:
                self._apply(self.vpn.add_local_route(v.name, r.prefix, kind=r.kind, next_hop=r.next_hop))
        for lk in cfg.leaks:
            self._apply(
                self.vpn.add_leak_policy(
                    LeakPolicy(
                        lk.name,
                        lk.source,
                        lk.destination,
                        None if lk.prefixes is None else tuple(lk.prefixes),  # type: ignore[arg-type]
                        None if lk.route_targets is None else tuple(lk.route_targets),  # type: ignore[arg-type]
                    )
                )
            )
        self._sync_rtc()
        self._sync_pmsi()
        self._import_rts_changed()
        self.gr = GracefulRestartManager(self, restarting=saved is not None)
        self.ops = DurableOps(self, store)  # the API's VPN/port operations, persisted
        self.ops.restore()

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        if self.fib is not None and not self.gr.deferring:  # else started when selection is done
            self.fib.start()
        await self.speaker.start()
        self.gr.started()

    async def stop(self) -> None:
        self.gr.stop()
        await self.speaker.stop()
        if self.fib is not None:
            await self.fib.stop()

    # -- SessionHandler (called by the sessions) ---------------------------------

    def _info(self, peer: Peer) -> PeerInfo:
        n = peer.negotiated
        assert n is not None
        info = PeerInfo(
            ip_address(peer.address),
            n.peer_id,
            n.peer_asn,
            ibgp=n.peer_asn == self.local_as,
            rr_client=peer.settings.route_reflector_client,
        )
        self._peer_info[peer.address] = info
        return info

    def session_up(self, peer: Peer) -> None:
        info = self._info(peer)
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
            next_hop_self=None if info.ibgp else self.underlay,
            rtc=RTC in n.families,
            export_policy=self.cfg.policy_book().export_policy(peer.address),
        )
        msgs = self.out.peer_up(op)
        self.speaker.send(peer, self.gr.hold_eor(peer, msgs))

    def session_down(self, peer: Peer, reason: str) -> None:
        addr = ip_address(peer.address)
        self.out.peer_down(addr)
        if not self.gr.peer_down(peer, reason):  # graceful restart keeps them stale
            self.rib.peer_down(addr)
        self._schedule_flush()

    def update_received(self, peer: Peer, update: Update) -> None:
        info = self._peer_info.get(peer.address) or self._info(peer)
        eor = update.end_of_rib()
        if eor is not None:
            self.rib.end_of_rib(info.address, eor)
            self.gr.eor_received(peer, eor)
            return
        self.rib.apply_update(info, update)
        if (update.mp_reach is not None and update.mp_reach.family == RTC) or (
            update.mp_unreach is not None and update.mp_unreach.family == RTC
        ):
            # The peer's RT membership changed (whether or not its RTC paths
            # are best): re-filter the VPN routes it gets (RFC 4684).
            self.flush()
            self.speaker.send(peer, self.out.rtc_changed(info.address))

    def refresh_requested(self, peer: Peer, family: Family, subtype: int) -> None:
        if subtype == 0:
            self.speaker.send(peer, self.out.refresh(ip_address(peer.address), family))

    # -- RIB changes -> Adj-RIB-Out, VRFs ---------------------------------------

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
        """Hand every change collected since the last flush to the layers above."""
        self._flush_scheduled = False
        rounds = 0
        while self._pending and rounds < 16:
            rounds += 1
            pending, self._pending = self._pending, {}
            for fam, keys in pending.items():
                if self.mrai > 0:
                    self._pending_out.setdefault(fam, {}).update(keys)
                    self._schedule_advertise()
                else:
                    self._advertise(fam, keys)
                if fam in VPN_FAMILIES:
                    self._feed_vpn(fam, keys)
                elif fam == IPV4_MCAST_VPN:
                    self._mvpn_dirty = True
        if self._mvpn_dirty:
            self._sync_replication()
        if self._released:
            self.vpn.labels_withdrawn(self._released, time.monotonic())
            self._released = []

    def _advertise(self, fam: Family, keys: Iterable[bytes]) -> None:
        """What peers must hear about ``keys`` (diffed against what they have)."""
        for addr, msgs in self.out.on_change(RibChange(fam, tuple(keys))).items():
            peer = self.speaker.peers.get(str(addr))
            if peer is not None:
                self.speaker.send(peer, msgs)

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

    def _relevant(self, attrs: PathAttributes) -> bool:
        """Does a path with ``attrs`` carry a route target some local VRF imports?

        Asked once per interned attribute set, not per route: a route
        reflector with no VRFs, or a vPE holding a large table of other
        tenants' routes, does no per-route VPN work for them.
        """
        r = self._relevance.get(attrs)
        if r is None:
            rts = self._import_rts
            r = bool(rts) and any(rt in rts for rt in route_target_octets(attrs))
            self._relevance[attrs] = r
        return r

    def _feed_vpn(self, fam: Family, keys: Iterable[bytes]) -> None:
        if not self._import_rts and not self._fed:
            return  # no VRF imports anything (a pure route reflector)
        loc = self.rib.loc_rib(fam)
        ch = VpnPathsChanged()
        fed = self._fed
        relevant = self._relevant
        for key in keys:
            old = fed.pop((fam, key), None)
            if old:
                ch.removes.extend(old)
            new = [
                vpn_path_of(fam, p)
                for p in loc.multipath(key)
                if not p.peer.local and relevant(p.attrs)
            ]
            if new:
                fed[(fam, key)] = new
                ch.adds.extend(new)
        if ch.adds or ch.removes:
            self._apply(self.vpn.apply(ch))

    def _import_rts_changed(self) -> None:
        """The union of the VRFs' import RTs changed: feed the VPN service the
        Loc-RIB destinations it has not seen and now may import."""
        rts: set[bytes] = set()
        for v in self.vpn.vrfs.values():
            rts.update(rt.encode() for rt in v.import_rts)
        if rts == self._import_rts:
            return
        self._import_rts = frozenset(rts)
        self._relevance.clear()
        for fam in VPN_FAMILIES:
            loc = self.rib.loc_rib(fam)
            self._feed_vpn(fam, [k for k in loc.keys() if (fam, k) not in self._fed])  # noqa: SIM118

    def _apply(self, out: VpnOutput) -> None:
        """Exports become local RIB paths; table changes go to the FIB."""
        for fam, nlris in out.withdraw_groups():
            self.rib.withdraw(self.local, fam, nlris)
        for fam, attrs, nh, nlris in out.announce_groups():
            self.rib.announce(self.local, fam, attrs, nh, nlris)
        self._released.extend(out.released_labels)
        if self.fib is not None and out.table_changes:
            self.fib.vrf_changes(out.table_changes, self.vpn)
        self._schedule_flush()

    def _sync_rtc(self) -> None:
        """Originate an RTC route for every import RT of every VRF (RFC 4684)."""
        rts: set[Any] = set()
        for v in self.vpn.vrfs.values():
            rts.update(v.import_rts)
        want = {r.key: r for r in local_rtc_routes(self.local_as, rts)}
        gone = [n for k, n in self._rtc_sent.items() if k not in want]
        new = [n for k, n in want.items() if k not in self._rtc_sent]
        if gone:
            self.rib.withdraw(self.local, RTC, gone)
        if new:
            self.rib.announce(self.local, RTC, _RTC_ATTRS, self.underlay, new)
        self._rtc_sent = want

    # -- ingress replication (MCAST-VPN I-PMSI A-D routes, R3.2) -------------------

    def _sync_pmsi(self) -> None:
        """Originate one I-PMSI A-D route per exporting VRF; withdraw the stale ones."""
        now = time.monotonic()
        want: dict[str, tuple[Nlri, Any]] = {}
        held_before = set(self._pmsi_sent)
        for name, vrf in self.vpn.vrfs.items():
            if not vrf.export_rts:
                continue
            label = (self.vpn.hold_vrf_label(name, now) if name not in held_before
                     else self.vpn.exporter.labels.label_of(("vrf", name)))
            assert label is not None
            want[name] = i_pmsi_route(vrf.rd, self.underlay, label, vrf.export_rts,
                                      self.vpn.exporter.encapsulations)
        for name, (nlri, _attrs) in self._pmsi_sent.items():
            new = want.get(name)
            if new is None or new[0] != nlri:
                self.rib.withdraw(self.local, IPV4_MCAST_VPN, [nlri])
            if new is None and name in self.vpn.vrfs:
                self._released.extend(self.vpn.release_vrf_label(name))
        for name, (nlri, attrs) in want.items():
            if self._pmsi_sent.get(name) != (nlri, attrs):
                self.rib.announce(self.local, IPV4_MCAST_VPN, attrs, self.underlay, [nlri])
        self._pmsi_sent = want
        if self.fib is not None:
            self.fib.vrf_changes([], self.vpn)  # the held labels enter the FIB's MPLS table
        self._sync_replication()

    def _sync_replication(self) -> None:
        """Each VRF's replication list from the I-PMSI A-D routes it imports."""
        self._mvpn_dirty = False
        if self.fib is None:
            return
        loc = self.rib.loc_rib(IPV4_MCAST_VPN)
        paths = [p for _, p in loc.best_paths()]
        imports = {name: v.import_rts for name, v in self.vpn.vrfs.items()}
        lists = replication_lists(paths, imports, (self.underlay, self.router_id), self.fib.encap_for)
        for name in set(self.fib.replication) | set(lists):
            self.fib.set_replication(name, lists.get(name, ()))

    # -- VPNs and attachments (the API's operations) -----------------------------

    def add_vrf(self, name: str, **kw: Any) -> None:
        self._apply(self.vpn.add_vrf(name, **kw))
        self._sync_rtc()
        self._sync_pmsi()
        self._import_rts_changed()

    def update_vrf(self, name: str, *, import_rts: list[str] | None = None,
                   export_rts: list[str] | None = None, rd: str | None = None,
                   label_mode: str | None = None, multipath: int | None = None) -> None:
        now = time.monotonic()
        if import_rts is not None:
            self._apply(self.vpn.set_import_rts(name, import_rts))
        if export_rts is not None:
            self._apply(self.vpn.set_export_rts(name, export_rts, now))
        if rd is not None:
            self._apply(self.vpn.set_rd(name, rd, now))
        if label_mode is not None:
            self._apply(self.vpn.set_label_mode(name, label_mode, now))
        if multipath is not None:
            self._apply(self.vpn.set_multipath(name, multipath))
        self._sync_rtc()
        self._import_rts_changed()

    def remove_vrf(self, name: str) -> None:
        self._apply(self.vpn.remove_vrf(name, time.monotonic()))
        self._sync_rtc()
        self._import_rts_changed()

    @staticmethod
    def _originated(a: Attachment) -> list[tuple[str, str]]:
        """(prefix, kind) of every route attachment ``a`` originates in its VRF:
        a host route per address, and with ``advertise: subnet`` the subnet too."""
        out: list[tuple[str, str]] = []
        for ip in a.ips if a.originates else ():
            iface = ip_interface(ip)
            out.append((f"{iface.ip}/{iface.max_prefixlen}", "host"))
            if a.advertise == "subnet" and iface.network.prefixlen < iface.max_prefixlen:
                out.append((str(iface.network), "subnet"))
        return out

    def attach(self, a: Attachment) -> None:
        """Attach an endpoint: its host routes are originated in its VRF; the forwarder gets the port."""
        if a.name in self.attachments:
            raise ValueError(f"name: port {a.name!r} is already attached")
        self.vpn.vrf(a.vrf)  # raises if unknown
        done: list[str] = []
        try:
            for prefix, kind in self._originated(a):
                endpoint = a.name if kind == "host" else None
                self._apply(self.vpn.add_local_route(a.vrf, prefix, kind=kind, endpoint=endpoint,
                                                     local_pref=a.local_pref))
                done.append(prefix)
            if self.fib is not None:
                self.fib.add_port(a)
        except Exception:
            for p in done:
                self._apply(self.vpn.remove_local_route(a.vrf, p, time.monotonic()))
            raise
        self.attachments[a.name] = a

    def detach(self, name: str) -> Attachment:
        a = self.attachments.pop(name, None)
        if a is None:
            raise KeyError(name)
        now = time.monotonic()
        # a subnet route stays while another port of the VRF still advertises it
        kept = {p for o in self.attachments.values() if o.vrf == a.vrf for p, k in self._originated(o) if k == "subnet"}
        for prefix, kind in self._originated(a):
            if kind == "host" or prefix not in kept:
                self._apply(self.vpn.remove_local_route(a.vrf, prefix, now))
        if self.fib is not None:
            self.fib.remove_port(a.name)
        return a

    # -- looking glass -----------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for addr, p in self.speaker.peers.items():
            d = p.to_json()
            a = ip_address(addr)
            d["received"] = {
                adj.family.name: len(adj) for adj in self.rib.adj_ribs_in(a)
            }
            d["advertised"] = {
                f.name: self.out.sent(a, f) for f in (p.negotiated.families if p.negotiated else ())
            }
            out.append(d)
        return out

    def routes(self, family: Family, peer: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        loc = self.rib.loc_rib(family)
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

    def vrf_json(self, name: str) -> dict[str, Any]:
        d = self.vpn.describe(name)
        d["ports"] = [a.name for a in self.attachments.values() if a.vrf == name]
        return d
