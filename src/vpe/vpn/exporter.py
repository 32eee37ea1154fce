"""Export: a VRF's local routes become VPN routes (RFC 4364 sections 4.3.2, 4.3.4).

A local route (host route of an attached endpoint, static route, attached
subnet, aggregate) of a VRF with export RTs is advertised as a VPN-IPv4 /
VPN-IPv6 route carrying the VRF's RD, its export RTs, an MPLS label and the
Encapsulation extended communities (RFC 9012 section 4.1) of the local
forwarder, with this vPE's underlay address as next hop.

Labels follow the VRF's :class:`~vpe.vpn.vrf.LabelMode`. Aggregates, and
subnets in per-endpoint mode (no endpoint to name), always use the VRF's
aggregate label, whose meaning is "IP lookup in this VRF" (R10.3). Labels
shared by several routes are reference counted here; when the last user
goes, the label is released to the allocator and reported in
``released_labels`` so the caller confirms its withdrawal was sent.

The exporter computes; it does not touch VRF tables or the importer. The
service puts :attr:`Export.local_entry` into the VRF and feeds
:attr:`Export.new` back to the importer for other local VRFs (extranet on
one host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    ExtendedCommunity,
    MacMobility,
)
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.attributes.simple import LocalPref
from ..bgp.wire.constants import VPNV4, VPNV6
from ..bgp.wire.nlri.base import IPAddress
from ..bgp.wire.nlri.vpn import VPNv4Prefix, VPNv6Prefix
from .entries import CONFIGURED, Endpoint, RouteKind, RouteSource, VrfRoute
from .events import ExportedRoute, VpnPath
from .label_allocator import LabelAllocator
from .label_owners import EndpointLabel, LabelOwner, PrefixLabel, VrfLabel
from .mobility import RANK_NOT_HERE
from .route_target import RouteTargets
from .vrf import LabelMode, Vrf, bgp_rank, key_text

_LOCAL_RANK = bgp_rank(RouteSource.LOCAL, None)


class LocalRoute(NamedTuple):
    """A route a VRF originates. ``next_hop`` is the in-VRF next hop of a static
    route; ``endpoint`` names the attachment a host route leads to;
    ``local_pref`` overrides the exporter's LOCAL_PREF for this route only
    (an orchestrator preferring one vPE's copy of an anycast address);
    ``sequence`` and ``mode`` are the mobility of an endpoint's host route
    (:mod:`vpe.vpn.mobility`)."""

    version: int
    prefix: bytes
    kind: RouteKind
    endpoint: str | None = None
    next_hop: IPAddress | None = None
    local_pref: int | None = None
    #: mobility sequence number the export carries (0: none; vpe.vpn.mobility)
    sequence: int = 0
    #: "active"; "standby": exported, but this host forwards to where the VM runs;
    #: "redirect": not exported, its label kept (local repair toward the VM's new host)
    mode: str = "active"
    #: the AS_PATH the route came with (a VRF neighbor's route, PE-CE BGP); None: empty
    as_path: AsPath | None = None


class Export(NamedTuple):
    """What (re)exporting one local route changed."""

    local_entry: VrfRoute
    old: ExportedRoute | None
    new: ExportedRoute | None
    released_labels: tuple[int, ...]


def vpn_path(route: ExportedRoute) -> VpnPath:
    """The importer's view of an exported route."""
    return VpnPath(route.family, route.nlri, route.attributes, route.next_hop, route.nlri.labels)  # type: ignore[attr-defined]


class Exporter:
    """Exported routes per VRF, their labels, and the shared attribute sets."""

    __slots__ = ("labels", "next_hop", "encapsulations", "local_pref", "endpoint_next_hop", "_exported", "_owner",
                 "_users", "_attrs")

    def __init__(
        self,
        labels: LabelAllocator,
        next_hop: IPAddress,
        encapsulations: Iterable[int] = (),
        local_pref: int = 100,
    ) -> None:
        self.labels = labels
        self.next_hop = next_hop
        self.encapsulations = tuple(encapsulations)
        self.local_pref = local_pref
        #: one agent, several forwarders (R2.4): the underlay address an endpoint's routes
        #: are exported with (that of its forwarder; None or unset: ``next_hop``)
        self.endpoint_next_hop: Callable[[str], IPAddress | None] | None = None
        #: vrf -> (version, prefix) -> exported route
        self._exported: dict[str, dict[tuple[int, bytes], ExportedRoute]] = {}
        #: (vrf, version, prefix) -> label owner of its route
        self._owner: dict[tuple[str, int, bytes], LabelOwner] = {}
        #: label owner -> number of routes using it
        self._users: dict[LabelOwner, int] = {}
        self._attrs: dict[tuple[RouteTargets, tuple[int, ...], int, int], PathAttributes] = {}

    def exported(self, vrf: str) -> list[ExportedRoute]:
        return list(self._exported.get(vrf, {}).values())

    def all_exported(self) -> list[ExportedRoute]:
        return [r for t in self._exported.values() for r in t.values()]

    def label_bindings(self) -> dict[int, LabelOwner]:
        """label -> what it means (:class:`~vpe.vpn.label_owners.VrfLabel`: IP
        lookup in that VRF; :class:`PrefixLabel`; :class:`EndpointLabel`)."""
        out: dict[int, LabelOwner] = {}
        for owner in self._users:
            lab = self.labels.label_of(owner)
            if lab is not None:
                out[lab] = owner
        return out

    # -- pieces ---------------------------------------------------------------

    def attributes_for(self, rts: RouteTargets, local_pref: int | None = None,
                       sequence: int = 0) -> PathAttributes:
        """The shared attribute set of every route a VRF with these export RTs sends
        (with ``local_pref`` instead of the exporter's default when given, and
        the MAC Mobility community when ``sequence`` is not 0)."""
        lp = self.local_pref if local_pref is None else local_pref
        key = (rts, self.encapsulations, lp, sequence)
        attrs = self._attrs.get(key)
        if attrs is None:
            values: list[ExtendedCommunity] = sorted(rts, key=lambda rt: rt.encode())
            values.extend(Encapsulation(t) for t in self.encapsulations)
            if sequence:
                values.append(MacMobility(sequence))
            attrs = PathAttributes(
                (
                    Origin(OriginType.IGP),
                    AsPath(),
                    LocalPref(lp),
                    ExtendedCommunities(tuple(values)),
                )
            )
            self._attrs[key] = attrs
        return attrs

    @staticmethod
    def owner_for(vrf: Vrf, route: LocalRoute) -> LabelOwner:
        mode = vrf.label_mode
        if mode is LabelMode.PER_VRF or route.kind is RouteKind.AGGREGATE:
            return VrfLabel(vrf.name)
        if mode is LabelMode.PER_PREFIX:
            return PrefixLabel(vrf.name, _text(route))
        item = route.endpoint or (str(route.next_hop) if route.next_hop is not None else None)
        return EndpointLabel(vrf.name, item) if item is not None else VrfLabel(vrf.name)

    def _acquire(self, owner: LabelOwner, now: float) -> int:
        lab = self.labels.allocate(owner, now)
        self._users[owner] = self._users.get(owner, 0) + 1
        return lab

    def _release(self, owner: LabelOwner) -> tuple[int, ...]:
        n = self._users.get(owner, 0) - 1
        if n > 0:
            self._users[owner] = n
            return ()
        self._users.pop(owner, None)
        lab = self.labels.release(owner)
        return (lab,) if lab is not None else ()

    def hold(self, owner: LabelOwner, now: float) -> int:
        """Take a reference on ``owner``'s label for a user outside the VRF tables
        (the VRF label an I-PMSI route carries in its PMSI tunnel attribute)."""
        return self._acquire(owner, now)

    def unhold(self, owner: LabelOwner) -> tuple[int, ...]:
        """Drop a reference taken with :meth:`hold`; the labels released by it."""
        return self._release(owner)

    # -- operations -------------------------------------------------------------

    def export(self, vrf: Vrf, route: LocalRoute, now: float) -> Export:
        """(Re)compute the export of ``route`` under ``vrf``'s current configuration."""
        slot = (vrf.name, route.version, route.prefix)
        old_owner = self._owner.get(slot)
        table = self._exported.setdefault(vrf.name, {})
        old = table.get((route.version, route.prefix))
        new: ExportedRoute | None = None
        labels: tuple[int, ...] = ()
        attrs, nh = self._exported_attributes(vrf, route)
        redirect = route.mode == "redirect"
        if redirect and old_owner is not None:
            # released: withdrawn, but the label stays bound (local repair, docs/mobility.md)
            table.pop((route.version, route.prefix), None)
            labels = (self.labels.label_of(old_owner) or 0,)
        elif attrs is not None and not redirect:
            owner = self.owner_for(vrf, route)
            if owner == old_owner:
                lab = self.labels.label_of(owner)
                assert lab is not None
            else:
                lab = self._acquire(owner, now)
                self._owner[slot] = owner
            labels = (lab,)
            cls = VPNv4Prefix if route.version == 4 else VPNv6Prefix
            key = route.prefix
            nlri = cls(key[:1] + vrf.rd.raw + key[1:], 0, labels)
            new = ExportedRoute(VPNV4 if route.version == 4 else VPNV6, nlri, attrs, nh)
            table[(route.version, route.prefix)] = new
        else:
            table.pop((route.version, route.prefix), None)
            self._owner.pop(slot, None)
        released: tuple[int, ...] = ()
        rank = _LOCAL_RANK if route.mode == "active" and not route.sequence else (
            RANK_NOT_HERE if route.mode != "active" else 0, -route.sequence, *_LOCAL_RANK[2:])
        if old_owner is not None and self._owner.get(slot) != old_owner:
            released = self._release(old_owner)
        entry = VrfRoute(
            route.version,
            route.prefix,
            route.next_hop,
            labels,
            self.encapsulations if labels else (),
            RouteSource.LOCAL,
            Endpoint(route.endpoint) if route.endpoint is not None else CONFIGURED,
            None,
            rank,
            route.kind,
        )
        return Export(entry, old, new, released)

    def _exported_attributes(self, vrf: Vrf, route: LocalRoute) -> tuple[PathAttributes | None, IPAddress]:
        """The attributes and next hop ``route`` is exported with, None when it is not
        exported (no export RTs, or the VRF's export policy rejects it)."""
        me = self.next_hop
        if route.endpoint is not None and self.endpoint_next_hop is not None:
            me = self.endpoint_next_hop(route.endpoint) or me
        if not vrf.export_rts:
            return None, me
        if route.kind is not RouteKind.AGGREGATE and vrf.aggregates and vrf.summarised(route.version, route.prefix):
            return None, me  # only the summary_only aggregate covering it is sent (R10.3)
        attrs = self.attributes_for(vrf.export_rts, route.local_pref, route.sequence)
        if route.as_path is not None and route.as_path.segments:
            attrs = attrs.replace(route.as_path)
        policy = vrf.export_policy
        if policy is None:
            return attrs, me
        key = route.prefix[:1] + vrf.rd.raw + route.prefix[1:]
        v = policy.evaluate(VPNV4 if route.version == 4 else VPNV6, attrs, me, key,
                            self_next_hop=me)
        if not v.accept:
            return None, me
        return v.attrs, v.next_hop if v.next_hop is not None else me

    def unexport(self, vrf: str, version: int, prefix: bytes) -> tuple[ExportedRoute | None, tuple[int, ...]]:
        """The local route is gone: its exported route (to withdraw) and released labels."""
        old = self._exported.get(vrf, {}).pop((version, prefix), None)
        owner = self._owner.pop((vrf, version, prefix), None)
        released = self._release(owner) if owner is not None else ()
        return old, released

    def drop_vrf(self, vrf: str) -> None:
        self._exported.pop(vrf, None)


def _text(route: LocalRoute) -> str:
    return key_text(route.version, route.prefix)
