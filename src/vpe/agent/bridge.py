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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import IPV4_MCAST_VPN, VPNV4, VPNV6, Family
from ..rib.attrs import route_target_octets
from ..vpn.attachments import Attachment, AttachmentOutcome, AttachmentTable, PortDown, PortUp
from ..vpn.events import VpnOutput, VpnPath, VpnPathsChanged, vpn_path_of
from ..vpn.service import VpnService
from .fib import FibProgrammer
from .mvpn import replication_lists
from .originators import PmsiOriginator, RtcOriginator
from .router import Router

IPAddress = IPv4Address | IPv6Address
VPN_FAMILIES = frozenset({VPNV4, VPNV6})


class VpnBridge:
    """Joins the router's RIB, the VPN service, the attachments and the FIB."""

    def __init__(self, router: Router, vpn: VpnService, fib: FibProgrammer | None,
                 next_hop: IPAddress) -> None:
        self.router = router
        self.vpn = vpn
        self.fib = fib
        self.next_hop = next_hop
        self.attachments = AttachmentTable(vpn)
        self.rtc = RtcOriginator(router, vpn, next_hop)
        self.pmsi = PmsiOriginator(router, vpn, next_hop, self.release_labels)
        self._fed: dict[tuple[Family, bytes], list[VpnPath]] = {}
        self._import_rts: frozenset[bytes] = frozenset()
        self._relevance: dict[PathAttributes, bool] = {}
        self._mvpn_dirty = False  # MCAST-VPN routes changed: replication lists to recompute
        router.subscribe(self.rib_changed)
        router.on_settled(self._settled)

    def start(self) -> None:
        """Originate what the configured VRFs need (after the config's VRFs were added)."""
        self._vrfs_changed()

    # -- RIB -> VPN service ------------------------------------------------------------

    def rib_changed(self, fam: Family, keys: Sequence[bytes]) -> None:
        if fam in VPN_FAMILIES:
            self._feed_vpn(fam, keys)
        elif fam == IPV4_MCAST_VPN:
            self._mvpn_dirty = True

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

    def _feed_vpn(self, fam: Family, keys: Sequence[bytes]) -> None:
        if not self._import_rts and not self._fed:
            return  # no VRF imports anything (a pure route reflector)
        loc = self.router.rib.loc_rib(fam)
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
            self.apply(self.vpn.apply(ch))

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
            loc = self.router.rib.loc_rib(fam)
            self._feed_vpn(fam, [k for k in loc.keys() if (fam, k) not in self._fed])  # noqa: SIM118

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
        self.release_labels(tuple(out.released_labels))

    def release_labels(self, labels: tuple[int, ...]) -> None:
        """Labels let go of: each starts its hold-down once the withdrawals are on the wire."""
        if labels:
            self.router.after_advertised(lambda: self.vpn.labels_withdrawn(labels, time.monotonic()))

    def _sync_replication(self) -> None:
        """Each VRF's replication list from the I-PMSI A-D routes it imports."""
        self._mvpn_dirty = False
        if self.fib is None:
            return
        loc = self.router.rib.loc_rib(IPV4_MCAST_VPN)
        paths = [p for _, p in loc.best_paths()]
        imports = {name: v.import_rts for name, v in self.vpn.vrfs.items()}
        lists = replication_lists(paths, imports, (self.next_hop, self.router.router_id), self.fib.encap_for)
        for name in set(self.fib.replication) | set(lists):
            self.fib.set_replication(name, lists.get(name, ()))

    def _vrfs_changed(self) -> None:
        """A VRF came, went or changed its RTs/RD: originated routes follow."""
        self.rtc.sync()
        self.pmsi.sync()
        if self.fib is not None:
            self.fib.vrf_changes([], self.vpn)  # the held labels enter the FIB's MPLS table
        self._sync_replication()
        self._import_rts_changed()

    # -- VPN instances -----------------------------------------------------------------

    def add_vrf(self, name: str, **kw: Any) -> None:
        self.apply(self.vpn.add_vrf(name, **kw))
        self._vrfs_changed()

    def update_vrf(self, name: str, *, import_rts: list[str] | None = None,
                   export_rts: list[str] | None = None, rd: str | None = None,
                   label_mode: str | None = None, multipath: int | None = None) -> None:
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
        self._vrfs_changed()

    def remove_vrf(self, name: str) -> None:
        self.apply(self.vpn.remove_vrf(name, time.monotonic()))
        self._vrfs_changed()

    # -- attachments ---------------------------------------------------------------------

    def attach(self, a: Attachment) -> Attachment:
        """Attach an endpoint: its routes are originated in its VRF; the forwarder gets
        the port. A port the FIB refuses at once undoes the whole attach."""
        outcome = self.attachments.attach(a, time.monotonic())
        try:
            self._apply_outcome(outcome)
        except Exception:
            self._apply_outcome(self.attachments.detach(a.name, time.monotonic()))
            raise
        return outcome.attachment

    def detach(self, name: str) -> Attachment:
        outcome = self.attachments.detach(name, time.monotonic())
        self._apply_outcome(outcome)
        return outcome.attachment

    def activate(self, name: str) -> Attachment:
        outcome = self.attachments.activate(name)
        self._apply_outcome(outcome)
        return outcome.attachment

    def _apply_outcome(self, outcome: AttachmentOutcome) -> None:
        self.apply(outcome.vpn)
        if self.fib is None:
            return
        for intent in outcome.fib:
            if isinstance(intent, PortUp):
                self.fib.add_port(intent.attachment)
            elif isinstance(intent, PortDown):
                self.fib.remove_port(intent.name)
