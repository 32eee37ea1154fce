"""The VPN bridge: RIB changes -> VPN service -> (RIB, FIB); VRF and port operations.

Data flows one way through it:

* the router's flushed changes of VPN families (:meth:`VpnBridge.rib_changed`)
  become multipath sets fed to :meth:`VpnService.apply` - only paths that
  carry a route target some local VRF imports (decided once per interned
  attribute set), so a route reflector does no per-route VPN work;
* the VPN service's output (:meth:`VpnBridge.apply`): exports become locally
  originated paths in the RIB (advertised and reflected like any path),
  table changes go to the FIB, released labels are confirmed once the
  router says the withdrawals are on the wire;
* VRF and attachment operations (the API's, through
  :class:`~vpe.agent.durable.DurableOps`) run the VPN service and the
  attachment state machine, then the same :meth:`apply`;
* the RTC and I-PMSI originators follow the VRFs' route targets, and the
  MCAST-VPN routes imported give each VRF its replication list.

A change to one VRF costs the same whatever the number of VRFs: the
originators redo that VRF's routes only, import RTs are counted per VRF
(the Loc-RIB is searched only for attribute sets carrying an RT no VRF
imported before), and replication lists are recomputed for the VRFs whose
import RTs the changed I-PMSI routes carry.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import IPV4_MCAST_VPN, VPNV4, VPNV6, Family
from ..rib.attrs import route_target_octets
from ..rib.path import Path
from ..vpn.attachments import (
    Attachment,
    AttachmentOutcome,
    AttachmentState,
    AttachmentTable,
    PortDown,
    PortUp,
)
from ..vpn.events import VpnOutput, VpnPath, VpnPathsChanged, VrfTableChange, vpn_path_of
from ..vpn.mobility import sequence_of
from ..vpn.service import READV_SUFFIX, VpnService
from .fib import FibProgrammer
from .fib_many import ManyFibs
from .mvpn import replication_member
from .originators import PmsiOriginator, RtcOriginator
from .router import Router

IPAddress = IPv4Address | IPv6Address
VPN_FAMILIES = frozenset({VPNV4, VPNV6})


class VpnBridge:
    """Joins the router's RIB, the VPN service, the attachments and the FIB."""

    def __init__(self, router: Router, vpn: VpnService, fib: FibProgrammer | ManyFibs | None,
                 next_hop: IPAddress) -> None:
        self.router = router
        self.vpn = vpn
        self.fib = fib
        self.next_hop = next_hop
        self.attachments = AttachmentTable(vpn)
        self.rtc = RtcOriginator(router, vpn, next_hop)
        self.pmsi = PmsiOriginator(router, vpn, next_hop, self.release_labels)
        self._fed: dict[tuple[Family, bytes], list[VpnPath]] = {}
        #: import RT -> the VRFs importing it; VRF -> the RTs it is counted in
        self._import_rts: dict[bytes, set[str]] = {}
        self._vrf_rts: dict[str, frozenset[bytes]] = {}
        self._relevance: dict[PathAttributes, bool] = {}
        #: does an attribute set carry a mobility sequence number; the destinations
        #: with such paths (their vPEs are trusted tunnel sources: :meth:`_claims`)
        self._has_sequence: dict[PathAttributes, bool] = {}
        self._claimed: set[tuple[Family, bytes]] = set()
        #: remote paths skipped as irrelevant: attribute set -> destinations carrying it,
        #: and each skipped destination's attribute sets (to forget them)
        self._skipped: dict[PathAttributes, set[tuple[Family, bytes]]] = {}
        self._skipped_of: dict[tuple[Family, bytes], tuple[PathAttributes, ...]] = {}
        self._walked = False  # the Loc-RIB was searched once (the first import RT)
        #: I-PMSI A-D routes of other vPEs (best per key), indexed by route target
        self._pmsi: dict[bytes, tuple[frozenset[bytes], Path]] = {}
        self._pmsi_by_rt: dict[bytes, set[bytes]] = {}
        self._mvpn_dirty: set[bytes] = set()  # RTs whose I-PMSI routes changed
        #: who else follows VRF table changes (the VRFs' own BGP neighbors, vpe.agent.pe_ce)
        self._table_listeners: list[Callable[[Sequence[VrfTableChange]], None]] = []
        router.subscribe(self.rib_changed)
        router.on_settled(self._settled)

    def start(self) -> None:
        """Originate what the configured VRFs need (after the config's VRFs were added)."""
        for name in list(self.vpn.vrfs):
            self._vrfs_changed(name)

    # -- RIB -> VPN service ------------------------------------------------------------

    def rib_changed(self, fam: Family, keys: Sequence[bytes]) -> None:
        if fam in VPN_FAMILIES:
            self._feed_vpn(fam, keys)
        elif fam == IPV4_MCAST_VPN and self.fib is not None:
            self._index_pmsi(keys)

    def _settled(self) -> None:
        if self._mvpn_dirty:
            self._sync_replication()

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

    def _skip(self, fk: tuple[Family, bytes], attrs: tuple[PathAttributes, ...]) -> None:
        """Remember the irrelevant attribute sets of destination ``fk`` (replacing the old)."""
        old = self._skipped_of.pop(fk, ())
        for a in old:
            s = self._skipped.get(a)
            if s is not None:
                s.discard(fk)
                if not s:
                    del self._skipped[a]
        if attrs:
            self._skipped_of[fk] = attrs
            for a in attrs:
                self._skipped.setdefault(a, set()).add(fk)

    def _feed_vpn(self, fam: Family, keys: Sequence[bytes]) -> None:
        if not self._import_rts and not self._fed:
            return  # no VRF imports anything (a pure route reflector)
        loc = self.router.rib.loc_rib(fam)
        ch = VpnPathsChanged()
        fed = self._fed
        relevant = self._relevant
        skipped_of = self._skipped_of
        for key in keys:
            fk = (fam, key)
            old = fed.pop(fk, None)
            if old:
                ch.removes.extend(old)
            new = []
            skip: tuple[PathAttributes, ...] = ()
            for p in loc.multipath(key):
                if p.peer.local:
                    continue
                if relevant(p.attrs):
                    new.append(vpn_path_of(fam, p))
                elif p.attrs not in skip:
                    skip = (*skip, p.attrs)
            if skip or fk in skipped_of:
                self._skip(fk, skip)
            if new:
                fed[fk] = new
                ch.adds.extend(new)
            if (self.fib is not None and new) or fk in self._claimed:
                self._claims(fk, new)
        if ch.adds or ch.removes:
            self.apply(self.vpn.apply(ch))

    def _claims(self, fk: tuple[Family, bytes], paths: list[VpnPath]) -> None:
        """The vPEs whose path for ``fk`` carries a mobility sequence number: a vPE
        preparing a move re-tunnels what arrives early to the VM's current host
        (docs/mobility.md), which must accept it (a trusted tunnel source, R13.2)."""
        cache = self._has_sequence
        eps = []
        for p in paths:
            seq = cache.get(p.attributes)
            if seq is None:
                seq = cache[p.attributes] = sequence_of(p.attributes) > 0
            if seq and p.next_hop is not None:
                eps.append(p.next_hop)
        if eps:
            self._claimed.add(fk)
        elif fk in self._claimed:
            self._claimed.discard(fk)
        else:
            return
        assert self.fib is not None
        self.fib.set_claims(fk, eps)

    def _import_rts_changed(self, name: str) -> None:
        """VRF ``name``'s import RTs may have changed: count them; for an RT no VRF
        imported before, feed the VPN service the destinations whose paths were
        skipped for lacking it (the whole Loc-RIB only for the very first RT)."""
        v = self.vpn.vrfs.get(name)
        new = frozenset(rt.encode() for rt in v.import_rts) if v is not None else frozenset()
        old = self._vrf_rts.get(name, frozenset())
        if new == old:
            return
        if new:
            self._vrf_rts[name] = new
        else:
            self._vrf_rts.pop(name, None)
        importers = self._import_rts
        for rt in old - new:
            s = importers[rt]
            s.discard(name)
            if not s:  # paths carrying only such RTs are no longer relevant (fed ones stay fed)
                del importers[rt]
                self._relevance = {a: r for a, r in self._relevance.items() if not r}
        fresh = set()
        for rt in new - old:
            s = importers.setdefault(rt, set())
            if not s:
                fresh.add(rt)
            s.add(name)
        if not fresh:
            return
        if not self._walked:
            self._walked = True
            self._relevance.clear()
            for fam in VPN_FAMILIES:
                loc = self.router.rib.loc_rib(fam)
                self._feed_vpn(fam, [k for k in loc.keys() if (fam, k) not in self._fed])  # noqa: SIM118
            return
        now_relevant = [a for a in self._skipped if any(rt in fresh for rt in route_target_octets(a))]
        for a in now_relevant:
            self._relevance[a] = True
        todo: dict[Family, dict[bytes, None]] = {}
        for a in now_relevant:
            for fam, key in self._skipped.get(a, ()):
                todo.setdefault(fam, {})[key] = None
        for fam, keys in todo.items():
            self._feed_vpn(fam, list(keys))

    # -- VPN service output -> RIB, FIB ---------------------------------------------------

    def apply(self, out: VpnOutput) -> None:
        """Exports become local RIB paths; table changes go to the FIB; released
        labels start their hold-down once the withdrawals are on the wire."""
        for fam, nlris in out.withdraw_groups():
            self.router.withdraw_local(fam, nlris)
        for fam, attrs, nh, nlris in out.announce_groups():
            self.router.announce_local(fam, attrs, nh, nlris)
        if self.fib is not None and out.table_changes:
            self.fib.vrf_changes(out.table_changes, self.vpn)
        if out.table_changes:
            for fn in self._table_listeners:
                fn(out.table_changes)
        self.release_labels(tuple(out.released_labels))

    def on_table_changes(self, fn: Callable[[Sequence[VrfTableChange]], None]) -> None:
        """``fn(changes)`` with every batch of VRF table changes the bridge applies."""
        self._table_listeners.append(fn)

    def release_labels(self, labels: tuple[int, ...]) -> None:
        """Labels let go of: each starts its hold-down once the withdrawals are on the wire."""
        if labels:
            self.router.after_advertised(lambda: self.vpn.labels_withdrawn(labels, time.monotonic()))

    def _index_pmsi(self, keys: Sequence[bytes]) -> None:
        """Follow the best I-PMSI A-D routes of other vPEs, by route target."""
        loc = self.router.rib.loc_rib(IPV4_MCAST_VPN)
        own = (self.next_hop, self.router.router_id)
        for key in keys:
            old = self._pmsi.pop(key, None)
            if old is not None:
                self._mvpn_dirty |= old[0]
                for rt in old[0]:
                    s = self._pmsi_by_rt[rt]
                    s.discard(key)
                    if not s:
                        del self._pmsi_by_rt[rt]
            p = loc.best(key)
            if p is None or p.peer.local:
                continue
            member = replication_member(p, self.fib.encap_for) if self.fib is not None else None
            if member is None or member.endpoint in own:
                continue
            rts = frozenset(route_target_octets(p.attrs))
            self._pmsi[key] = (rts, p)
            self._mvpn_dirty |= rts
            for rt in rts:
                self._pmsi_by_rt.setdefault(rt, set()).add(key)

    def _sync_replication(self) -> None:
        """The replication lists of the VRFs importing an RT whose I-PMSI routes changed."""
        rts, self._mvpn_dirty = self._mvpn_dirty, set()
        if self.fib is None:
            return
        names: set[str] = set()
        for rt in rts:
            names |= self._import_rts.get(rt, set())
        for name in sorted(names):
            self._replication_of(name)

    def _replication_of(self, name: str) -> None:
        """VRF ``name``'s replication list from the I-PMSI A-D routes it imports."""
        if self.fib is None:
            return
        v = self.vpn.vrfs.get(name)
        keys: set[bytes] = set()
        for rt in self._vrf_rts.get(name, ()) if v is not None else ():
            keys |= self._pmsi_by_rt.get(rt, set())
        members = []
        for key in sorted(keys):
            member = replication_member(self._pmsi[key][1], self.fib.encap_for)
            if member is not None:
                members.append(member)
        # several forwarders (R2.4): their copies to each other follow the VRF's label too
        if members or name in self.fib.replication or isinstance(self.fib, ManyFibs):
            self.fib.set_replication(name, members)

    def _vrfs_changed(self, name: str) -> None:
        """VRF ``name`` came, went or changed its RTs/RD: its originated routes follow."""
        self.rtc.vrf_changed(name)
        self.pmsi.vrf_changed(name)
        if self.fib is not None:
            self.fib.vrf_changes([], self.vpn)  # the held labels enter the FIB's MPLS table
        self._import_rts_changed(name)
        self._replication_of(name)

    # -- VPN instances -----------------------------------------------------------------

    def add_vrf(self, name: str, **kw: Any) -> None:
        aggregates = kw.pop("aggregates", None) or ()
        self.apply(self.vpn.add_vrf(name, **kw))
        if aggregates:
            try:
                self.set_aggregates(name, [(a["prefix"], a["summary_only"]) for a in aggregates])
            except ValueError:
                self.apply(self.vpn.remove_vrf(name, time.monotonic()))
                raise
        self._vrfs_changed(name)

    def update_vrf(self, name: str, *, import_rts: list[str] | None = None,
                   export_rts: list[str] | None = None, rd: str | None = None,
                   label_mode: str | None = None, multipath: int | None = None,
                   ecmp: str | None = None) -> None:
        now = time.monotonic()
        if import_rts is not None:
            self.apply(self.vpn.set_import_rts(name, import_rts))
        if export_rts is not None:
            self.apply(self.vpn.set_export_rts(name, export_rts, now))
        if rd is not None:
            self.apply(self.vpn.set_rd(name, rd, now))
        if label_mode is not None:
            self.apply(self.vpn.set_label_mode(name, label_mode, now))
        if multipath is not None:
            self.apply(self.vpn.set_multipath(name, multipath))
        if ecmp is not None:
            self.apply(self.vpn.set_ecmp(name, ecmp))
        self._vrfs_changed(name)

    def set_aggregates(self, name: str, aggregates: list[tuple[str, bool]]) -> None:
        """The aggregates VRF ``name`` advertises (R10.3), replacing the previous list."""
        self.apply(self.vpn.set_aggregates(name, aggregates, time.monotonic()))

    def remove_vrf(self, name: str) -> None:
        service = name in self.vpn.services
        self.apply(self.vpn.remove_vrf(name, time.monotonic()))
        self._vrfs_changed(name)
        if service:
            self._vrfs_changed(name + READV_SUFFIX)

    def set_service(self, name: str, via: str, **kw: Any) -> None:
        """Make ``name`` a service VRF (attraction, re-advertisement: docs/service-chains.md)."""
        self.apply(self.vpn.set_service(name, via, now=time.monotonic(), **kw))
        self._vrfs_changed(name)
        self._vrfs_changed(name + READV_SUFFIX)

    # -- attachments ---------------------------------------------------------------------

    def attach(self, a: Attachment) -> Attachment:
        """Attach an endpoint: its routes are originated in its VRF; the forwarder gets
        the port. A port the FIB refuses at once undoes the whole attach. The
        attachment's mobility sequence number is chosen here (see
        :meth:`AttachmentTable.sequence_for`); the one returned carries it."""
        restoring = a.state is AttachmentState.REDIRECTING
        if not restoring:
            a = self.attachments.sequence_for(a)
        place = getattr(self.fib, "place", None)  # several forwarders (R2.4): which one, first
        if place is not None and a.name not in self.attachments:
            place(a)
        outcome = self.attachments.attach(a, time.monotonic(), restoring)
        try:
            if outcome.attachment.state is AttachmentState.STANDBY and self.fib is not None:
                self._prepare(outcome)
            else:
                self._apply_outcome(outcome)
        except Exception:
            self._apply_outcome(self.attachments.detach(a.name, time.monotonic()))
            raise
        return outcome.attachment

    def _prepare(self, outcome: AttachmentOutcome) -> None:
        """A move's prepare (docs/mobility.md): remotes send here as soon as they hear
        the higher sequence number, so the forwarder must re-tunnel to the VM's
        current host first. The VRF's changes go to the FIB now; the advertisement
        once the forwarder has them (make before break, R9.3, R11.1), unless the
        attachment changed meanwhile (detached, released or re-prepared)."""
        out, a = outcome.vpn, outcome.attachment
        self.apply(VpnOutput(table_changes=out.table_changes))
        self._apply_outcome(dataclasses.replace(outcome, vpn=VpnOutput()))
        wire = VpnOutput(announce=out.announce, withdraw=out.withdraw, released_labels=out.released_labels)

        def advertise() -> None:
            cur = self.attachments.get(a.name)
            if cur is not None and cur.sequence == a.sequence and cur.state in (
                    AttachmentState.STANDBY, AttachmentState.ACTIVE):
                self.apply(wire)

        assert self.fib is not None
        self.fib.link.when_applied(advertise)

    def detach(self, name: str) -> Attachment:
        outcome = self.attachments.detach(name, time.monotonic())
        self._apply_outcome(outcome)
        return outcome.attachment

    def activate(self, name: str) -> Attachment:
        outcome = self.attachments.activate(name, time.monotonic())
        # make before break (R9.3): the forwarder holds the port before the VRF's
        # route leads to it, so nothing that arrives in between finds no port
        self._apply_outcome(outcome, ports_first=True)
        return outcome.attachment

    def release(self, name: str) -> Attachment:
        """The endpoint left for another host: routes withdrawn, labels kept for
        local repair, port removed (docs/mobility.md)."""
        outcome = self.attachments.release(name, time.monotonic())
        self._apply_outcome(outcome)
        return outcome.attachment

    def _apply_outcome(self, outcome: AttachmentOutcome, ports_first: bool = False) -> None:
        if ports_first and self.fib is not None:
            for intent in outcome.fib:
                if isinstance(intent, PortUp):
                    self.fib.add_port(intent.attachment)
            outcome = dataclasses.replace(outcome, fib=[i for i in outcome.fib if not isinstance(i, PortUp)])
        self.apply(outcome.vpn)
        if self.fib is None:
            return
        for intent in outcome.fib:
            if isinstance(intent, PortUp):
                self.fib.add_port(intent.attachment)
            elif isinstance(intent, PortDown):
                self.fib.remove_port(intent.name)
