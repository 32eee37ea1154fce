"""The VPN service: VRFs, import, export, labels and leaks kept consistent.

:class:`VpnService` is the one writer of the VPN layer's state and its only
entry point. Every operation returns a :class:`~vpe.vpn.events.VpnOutput`:
the VRF table changes for the FIB channel, the VPN routes to announce and
withdraw through the speaker, and the labels whose withdrawal the caller
must confirm with :meth:`VpnService.labels_withdrawn` once it was sent.
Nothing here does I/O or reads a clock: times are passed in (``now``,
seconds on any monotonic scale).

Flow of one local route (R4.x): ``add_local_route`` -> the VRF gets a local
entry -> the exporter makes the VPN route (RD, export RTs, label, encap) ->
``announce`` -> the same route is handed to the importer, which puts it into
every *other* local VRF importing one of its RTs. Flow of a remote route:
``apply(VpnPathsChanged)`` from the RIB -> importer -> VRF tables -> leaks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.tunnel_types import parse_tunnel_type
from ..bgp.wire.nlri.base import IPAddress
from ..policy.policy import Policy
from .entries import RouteSource
from .errors import AlreadyExists, InvalidValue, UnknownLocalRoute, UnknownVrf
from .events import VpnOutput, VpnPathsChanged, VrfTableChange
from .exporter import Export, Exporter, LocalRoute, vpn_path
from .importer import Importer
from .label_allocator import MAX_LABEL, MIN_LABEL, LabelAllocator
from .label_owners import LabelOwner, SwapLabel, VrfLabel, owner_from_json
from .leaking import Leaker, LeakPolicy
from .mobility import MAX_SEQUENCE, check_contest, entry_sequence
from .rd_allocator import RdAllocator, parse_rd
from .route_target import EMPTY_RTS, RouteTargetIndex, parse_route_targets
from .vrf import (
    READV_SUFFIX,
    IPNetwork,
    LabelMode,
    Vrf,
    check_ecmp,
    check_multipath,
    key_text,
    parse_label_mode,
    parse_route_kind,
    prefix_key,
)
from .vrf import RouteKind as RouteKind

_MAX_LEAK_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """A VRF of a service instance's port (docs/service-chains.md; bagpipe-bgp's
    ``attract-to-rt`` and ``readv-from-rt``/``readv-to-rt``).

    ``via`` is the instance's address in the VRF (its port's). ``attract``
    prefixes become static routes ``prefix via via``, exported with the VRF's
    export RTs: remotes send traffic for them to the instance. Every VPN route
    carrying one of ``readv_from`` (imported by a hidden VRF, never into this
    VRF's own table) is re-advertised the same way, with this vPE's next hop
    and label, except the prefixes of ``readv_exclude``.
    """

    via: IPAddress
    attract: tuple[tuple[int, bytes], ...] = ()
    readv_from: frozenset[Any] = frozenset()
    readv_exclude: frozenset[tuple[int, bytes]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "address": str(self.via),
            "attract": [key_text(v, k) for v, k in self.attract],
            "readv_from_rts": sorted(str(rt) for rt in self.readv_from),
            "readv_exclude": sorted(key_text(v, k) for v, k in self.readv_exclude),
        }


def _ip(value: Any, field: str) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return ip_address(value)
    except ValueError:
        raise InvalidValue(f"{field}: {value!r} is not an IP address") from None


class VpnService:
    """VRFs of one vPE and everything derived from them.

    ``router_id`` makes automatic RDs (``router-id:n``); ``next_hop`` is the
    underlay address exported routes carry (default: the router id);
    ``encapsulations`` are the tunnel types of the local forwarder, advertised
    as Encapsulation extended communities; ``local_next_hops`` are further
    addresses of this vPE (paths from the RIB with these next hops are our
    own, and are not imported again).
    """

    def __init__(
        self,
        router_id: IPv4Address | str,
        *,
        next_hop: IPAddress | str | None = None,
        encapsulations: Iterable[str | int] = ("mpls-in-udp",),
        local_next_hops: Iterable[IPAddress | str] = (),
        label_hold_down: float = 60.0,
        label_range: tuple[int, int] = (MIN_LABEL, MAX_LABEL),
        local_pref: int = 100,
        state: dict[str, Any] | None = None,
        now: float = 0.0,
    ) -> None:
        self.rds = RdAllocator(router_id)
        nh = _ip(next_hop if next_hop is not None else str(self.rds.router_id), "next-hop")
        encaps: list[int] = []
        for e in encapsulations:
            try:
                encaps.append(e if isinstance(e, int) else parse_tunnel_type(e))
            except ValueError as err:
                raise InvalidValue(f"encapsulations: {e!r} ({err})") from None
        if state is not None and "label_space" in state:  # rows (take_state_changes)
            self.labels = LabelAllocator.from_rows(state["label_space"], state.get("label_rows", []), now,
                                                   owner_from_json)
            self.rds.restore(state.get("rds", {}))
        elif state is not None:  # a whole-state dump (dump_state)
            self.labels = LabelAllocator.restore(state.get("labels", {}), now, owner_from_json)
            self.rds.restore(state.get("rds", {}))
        else:
            self.labels = LabelAllocator(label_hold_down, *label_range)
        self.vrfs: dict[str, Vrf] = {}
        self.index: RouteTargetIndex[Vrf] = RouteTargetIndex()
        own = {nh, *(_ip(a, "local-next-hops") for a in local_next_hops)}
        self.importer = Importer(self.index, own)
        self.exporter = Exporter(self.labels, nh, encaps, local_pref)
        self.leaker = Leaker()
        self._locals: dict[str, dict[tuple[int, bytes], LocalRoute]] = {}
        #: names of the VRFs with unflushed table changes (each VRF's ``watch``)
        self._changed: dict[str, None] = {}
        self._sorted: list[str] = []  # VRF names, sorted (pages of the API's listing)
        #: service VRFs (:class:`ServiceSettings`); hidden readv VRF -> the service VRF;
        #: service VRF -> the prefixes it re-advertises now (local static routes)
        self.services: dict[str, ServiceSettings] = {}
        self._readv: dict[str, str] = {}
        self._readv_keys: dict[str, set[tuple[int, bytes]]] = {}
        #: the latest ``now`` a caller passed: re-advertisements follow RIB changes, which
        #: carry no time, and take their labels at this time
        self._now = now

    # -- reading ------------------------------------------------------------------

    def vrf(self, name: str) -> Vrf:
        v = self.vrfs.get(name)
        if v is None:
            raise UnknownVrf(f"vrf: {name!r} does not exist")
        return v

    def vrf_names(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """VRF names in order, ``limit`` of them from ``offset`` (costs the page only)."""
        return self._sorted[offset:] if limit is None else self._sorted[offset : offset + limit]

    def label_bindings(self) -> dict[int, LabelOwner]:
        """label -> what it means, for the FIB's MPLS table (see the exporter)."""
        return self.exporter.label_bindings()

    def hold_vrf_label(self, name: str, now: float = 0.0) -> int:
        """The VRF's aggregate label ("IP lookup in this VRF"), kept allocated until
        :meth:`release_vrf_label`, whatever its routes do (ingress replication
        advertises it for broadcast/multicast, R3.2). Call once per holder."""
        self.vrf(name)
        return self.exporter.hold(VrfLabel(name), now)

    def vrf_label(self, name: str) -> int | None:
        """The VRF's aggregate label if it is allocated now (held or used by a route)."""
        return self.labels.label_of(VrfLabel(name))

    def release_vrf_label(self, name: str) -> tuple[int, ...]:
        """Undo one :meth:`hold_vrf_label`; labels to confirm with :meth:`labels_withdrawn`."""
        return self.exporter.unhold(VrfLabel(name))

    def hold_swap_label(self, next_hop: str, label: int, now: float = 0.0) -> int:
        """A local label meaning "swap to ``label`` toward ``next_hop``" (an export
        policy's relabel): from the same label space as the VPN labels."""
        return self.labels.allocate(SwapLabel(next_hop, label), now)

    def release_swap_label(self, next_hop: str, label: int) -> tuple[int, ...]:
        """Undo :meth:`hold_swap_label`; labels to confirm with :meth:`labels_withdrawn`."""
        lab = self.labels.release(SwapLabel(next_hop, label))
        return () if lab is None else (lab,)

    def dump_state(self, now: float) -> dict[str, Any]:
        """What must survive a restart to keep the same RDs and labels (all of it)."""
        return {"labels": self.labels.dump(now), "rds": self.rds.dump()}

    def take_state_changes(self, now: float) -> dict[str, Any]:
        """The part of :meth:`dump_state` that changed since the last call, as rows:
        ``label_space`` (or None), ``label_rows`` (see
        :meth:`LabelAllocator.take_changes`) and ``rds`` (VRF -> RD text, None:
        gone). Its cost follows the change, not the number of VRFs or labels.
        ``state=`` of a new service reads the rows back (``label_space``,
        ``label_rows``, ``rds``)."""
        space, rows = self.labels.take_changes(now)
        return {"label_space": space, "label_rows": rows, "rds": self.rds.take_changes()}

    def state_changes_lost(self, changes: dict[str, Any]) -> None:
        """The changes :meth:`take_state_changes` returned were not stored."""
        self.labels.changes_lost(changes["label_space"], changes["label_rows"])
        self.rds.changes_lost(changes["rds"])

    # -- VRFs -----------------------------------------------------------------------

    def add_vrf(
        self,
        name: str,
        *,
        rd: str | None = "auto",
        import_rts: Iterable[str] = (),
        export_rts: Iterable[str] = (),
        route_targets: Iterable[str] = (),
        label_mode: str | LabelMode = LabelMode.PER_VRF,
        multipath: int = 1,
        tenant: str | None = None,
        ecmp: str = "per-flow",
    ) -> VpnOutput:
        """Create a VRF; it imports the VPN routes already known at once.

        ``route_targets`` are both imported and exported. ``rd="auto"`` (or
        None) allocates ``router-id:n``.
        """
        if name in self.vrfs:
            raise AlreadyExists(f"name: VRF {name!r} already exists")
        both = parse_route_targets(route_targets, "route-targets")
        imp = parse_route_targets(import_rts, "import-rts") | both
        exp = parse_route_targets(export_rts, "export-rts") | both
        mode = parse_label_mode(label_mode)
        auto = rd is None or rd == "auto"
        rd_value = None if auto else parse_rd(rd, "rd")  # type: ignore[arg-type]
        vrf = Vrf(
            name,
            rd_value or parse_rd("0:0"),
            rd_auto=auto,
            import_rts=imp,
            export_rts=exp,
            label_mode=mode,
            multipath=multipath,
            tenant=tenant,
            ecmp=ecmp,
        )
        vrf.rd = self.rds.allocate(name) if rd_value is None else self.rds.claim(name, rd_value)
        vrf.watch = self._changed
        self.vrfs[name] = vrf
        if not name.endswith(READV_SUFFIX):  # hidden readv VRFs are no VPN instances to list
            bisect.insort(self._sorted, name)
        self._locals[name] = {}
        self.index.set(vrf, imp)
        self.importer.reimport(vrf, frozenset(), imp)
        return self._finish(VpnOutput())

    def remove_vrf(self, name: str, now: float = 0.0) -> VpnOutput:
        """Delete a VRF: withdraw its exports, drop its leaks, empty its tables."""
        vrf = self.vrf(name)
        out = VpnOutput()
        if name in self.services:
            out = self.clear_service(name, now)
        pairs = set()
        for policy in self.leaker.involving(name):
            self.leaker.remove(policy.name)
            pairs.add((policy.source, policy.destination))
        for src, dst in sorted(pairs):
            if src == name:  # no policy left for the pair: its leaked entries go
                self.leaker.resync_pair(src, dst, self.vrfs)
        for v, prefix in list(self._locals[name]):
            self._remove_local(vrf, v, prefix, out)
        self.index.remove(vrf)
        vrf.clear()
        changes = vrf.flush()
        self.rds.release(name)
        del self.vrfs[name]
        if not name.endswith(READV_SUFFIX):
            del self._sorted[bisect.bisect_left(self._sorted, name)]
        del self._locals[name]
        self.exporter.drop_vrf(name)
        out.table_changes.extend(changes)
        return self._finish(out)

    def set_import_rts(self, name: str, rts: Iterable[str]) -> VpnOutput:
        """Change what a VRF imports; known VPN routes are re-evaluated at once."""
        vrf = self.vrf(name)
        new = parse_route_targets(rts, "import-rts")
        old = self.index.set(vrf, new)
        vrf.import_rts = new
        self.importer.reimport(vrf, old, new)
        return self._finish(VpnOutput())

    def set_export_rts(self, name: str, rts: Iterable[str], now: float = 0.0) -> VpnOutput:
        vrf = self.vrf(name)
        vrf.export_rts = parse_route_targets(rts, "export-rts")
        return self._reexport(vrf, now)

    def set_policies(self, name: str, import_policy: Policy | None, export_policy: Policy | None,
                     now: float = 0.0) -> VpnOutput:
        """The VRF's import and export policies (docs/policy.md): what it imports is
        imported again under the new import policy, its routes exported again."""
        vrf = self.vrf(name)
        if import_policy != vrf.import_policy:
            self.importer.reimport(vrf, vrf.import_rts, EMPTY_RTS)
            vrf.import_policy = import_policy
            self.importer.reimport(vrf, EMPTY_RTS, vrf.import_rts)
        if export_policy == vrf.export_policy:
            return self._finish(VpnOutput())
        vrf.export_policy = export_policy
        return self._reexport(vrf, now)

    def set_rd(self, name: str, rd: str | None, now: float = 0.0) -> VpnOutput:
        """New RD: the old VPN routes are withdrawn and the new ones announced."""
        vrf = self.vrf(name)
        if rd is None or rd == "auto":
            self.rds.release(name)
            vrf.rd, vrf.rd_auto = self.rds.allocate(name), True
        else:
            vrf.rd, vrf.rd_auto = self.rds.claim(name, parse_rd(rd, "rd")), False
        return self._reexport(vrf, now)

    def set_label_mode(self, name: str, mode: str | LabelMode, now: float = 0.0) -> VpnOutput:
        vrf = self.vrf(name)
        vrf.label_mode = parse_label_mode(mode)
        return self._reexport(vrf, now)

    def set_multipath(self, name: str, multipath: int) -> VpnOutput:
        vrf = self.vrf(name)
        check_multipath(multipath)
        vrf.touch_all()
        vrf.multipath = multipath
        return self._finish(VpnOutput())

    def set_ecmp(self, name: str, ecmp: str) -> VpnOutput:
        """Change how the forwarders spread over ``name``'s multipath sets: every
        forwarding set is handed out again (the same sets, the new mode)."""
        vrf = self.vrf(name)
        check_ecmp(ecmp)
        if vrf.ecmp == ecmp:
            return VpnOutput()
        vrf.ecmp = ecmp
        out = self._finish(VpnOutput())
        for v in (4, 6):
            for k in vrf.keys(v):
                out.table_changes.append(
                    VrfTableChange(name, v, k, vrf.active((v, k)), vrf.backup((v, k)))
                )
        return out

    # -- service VRFs (chains) --------------------------------------------------------

    def set_service(self, name: str, via: IPAddress | str, *, attract: Iterable[str | IPNetwork] = (),
                    readv_from_rts: Iterable[str] = (), readv_exclude: Iterable[str | IPNetwork] = (),
                    now: float = 0.0) -> VpnOutput:
        """Make ``name`` a service VRF (:class:`ServiceSettings`); replaces earlier settings."""
        vrf = self.vrf(name)
        self._now = max(self._now, now)
        nh = _ip(via, "service address")
        keys = []
        for p in attract:
            version, key = prefix_key(p)
            if version != nh.version:
                raise InvalidValue(f"attract: {p!s} is not an IPv{nh.version} prefix like the "
                                   f"service address {nh}")
            keys.append((version, key))
        exclude = frozenset(prefix_key(p) for p in readv_exclude)
        rts = parse_route_targets(readv_from_rts, "readv-from-rts")
        if rts & vrf.export_rts:
            raise InvalidValue(f"readv-from-rts: VRF {name!r} exports "
                               f"{', '.join(sorted(str(rt).removeprefix('target:') for rt in rts & vrf.export_rts))} itself; "
                               "re-advertising routes under the RTs they came with would loop")
        out = self.clear_service(name, now) if name in self.services else VpnOutput()
        settings = ServiceSettings(nh, tuple(dict.fromkeys(keys)), rts, exclude)
        self.services[name] = settings
        for version, key in settings.attract:
            route = LocalRoute(version, key, RouteKind.STATIC, None, nh, None, 0, "active")
            self._locals[name][(version, key)] = route
            self._apply_export(vrf, self.exporter.export(vrf, route, now), out)
        if rts:
            shadow = name + READV_SUFFIX
            self._readv[shadow] = name
            self._readv_keys[name] = set()
            self._merge(out, self.add_vrf(shadow, rd=None, import_rts=[str(rt) for rt in rts]))
        return self._finish(out)

    def clear_service(self, name: str, now: float = 0.0) -> VpnOutput:
        """``name`` is a plain VRF again: its attracted and re-advertised routes go."""
        vrf = self.vrf(name)
        settings = self.services.pop(name, None)
        out = VpnOutput()
        if settings is None:
            return out
        shadow = name + READV_SUFFIX
        if shadow in self.vrfs:
            self._merge(out, self.remove_vrf(shadow, now))
            del self._readv[shadow]
        keys = set(settings.attract) | self._readv_keys.pop(name, set())
        for version, key in keys:
            if (version, key) in self._locals[name]:
                self._remove_local(vrf, version, key, out)
        return self._finish(out)

    @staticmethod
    def _merge(out: VpnOutput, more: VpnOutput) -> None:
        out.table_changes.extend(more.table_changes)
        out.announce.extend(more.announce)
        out.withdraw.extend(more.withdraw)
        out.released_labels.extend(more.released_labels)

    def _run_readv(self, out: VpnOutput) -> None:
        """Re-advertise what the hidden readv VRFs import now (their own table changes
        stay here: they are no forwarding state)."""
        for _ in range(_MAX_LEAK_ROUNDS):
            if not any(n in self._readv for n in self._changed):
                return
            changes = self._flush_changed()
            plain = [c for c in changes if c.vrf not in self._readv]
            out.table_changes.extend(plain)
            if plain and self.leaker.policies:
                self.leaker.on_changes(plain, self.vrfs)
            for c in changes:
                target = self._readv.get(c.vrf)
                if target is None:
                    continue
                settings = self.services[target]
                k = (c.version, c.prefix)
                if k in settings.readv_exclude or k in settings.attract:
                    continue
                owned = self._readv_keys[target]
                vrf = self.vrfs[target]
                if c.routes and k not in owned:
                    if k in self._locals[target]:
                        continue  # the VRF's own route of that prefix wins
                    owned.add(k)
                    route = LocalRoute(c.version, c.prefix, RouteKind.STATIC, None, settings.via,
                                       None, 0, "active")
                    self._locals[target][k] = route
                    self._apply_export(vrf, self.exporter.export(vrf, route, self._now), out)
                elif not c.routes and k in owned:
                    owned.discard(k)
                    self._remove_local(vrf, c.version, c.prefix, out)

    # -- local routes --------------------------------------------------------------

    def add_local_route(
        self,
        vrf: str,
        prefix: str | IPNetwork,
        *,
        kind: str | RouteKind = RouteKind.HOST,
        endpoint: str | None = None,
        next_hop: IPAddress | str | None = None,
        now: float = 0.0,
        local_pref: int | None = None,
        sequence: int = 0,
        mode: str = "active",
        as_path: AsPath | None = None,
    ) -> VpnOutput:
        """Originate ``prefix`` in ``vrf`` (replacing its previous local route);
        ``local_pref`` is the LOCAL_PREF of its export (default: the service's);
        ``sequence`` and ``mode`` its mobility (:class:`~vpe.vpn.exporter.LocalRoute`);
        ``as_path`` the AS_PATH it is exported with (a VRF neighbor's route)."""
        v = self.vrf(vrf)
        self._now = max(self._now, now)
        version, key = prefix_key(prefix)
        k = parse_route_kind(kind)
        nh = _ip(next_hop, "next-hop") if next_hop is not None else None
        if k is RouteKind.HOST and key[0] != (32 if version == 4 else 128):
            raise InvalidValue(f"prefix: host route {prefix!r} must be a /32 or /128")
        if k is RouteKind.STATIC and nh is None:
            raise InvalidValue(f"next-hop: static route {prefix!r} needs a next hop")
        if nh is not None and nh.version != version:
            raise InvalidValue(f"next-hop: {nh} is not an IPv{version} address like {prefix!r}")
        if local_pref is not None and (type(local_pref) is not int or not 0 <= local_pref <= 0xFFFFFFFF):
            raise InvalidValue(f"local_pref: {local_pref!r} is not a LOCAL_PREF value (0..4294967295)")
        if type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE:
            raise InvalidValue(f"sequence: {sequence!r} is not a mobility sequence number (0..{MAX_SEQUENCE})")
        if mode not in ("active", "standby", "redirect"):
            raise InvalidValue(f"mode: {mode!r} is not active, standby or redirect")
        if as_path is not None and not isinstance(as_path, AsPath):
            raise InvalidValue(f"as_path: {as_path!r} is not an AS_PATH")
        route = LocalRoute(version, key, k, endpoint, nh, local_pref, sequence, mode, as_path)
        self._locals[vrf][(version, key)] = route
        out = VpnOutput()
        self._apply_export(v, self.exporter.export(v, route, now), out)
        return self._finish(out)

    def remove_local_route(self, vrf: str, prefix: str | IPNetwork, now: float = 0.0) -> VpnOutput:
        v = self.vrf(vrf)
        version, key = prefix_key(prefix)
        if (version, key) not in self._locals[vrf]:
            raise UnknownLocalRoute(f"prefix: {prefix!r} is not a local route of VRF {vrf!r}")
        out = VpnOutput()
        self._remove_local(v, version, key, out)
        return self._finish(out)

    def set_aggregates(self, vrf: str, aggregates: Iterable[tuple[str | IPNetwork, bool]],
                       now: float = 0.0) -> VpnOutput:
        """The aggregates ``vrf`` originates (R10.3): ``(prefix, summary_only)`` pairs, replacing
        the previous list. Each is exported with this vPE's next hop and the VRF's aggregate
        label (an IP lookup in the VRF); ``summary_only`` withholds the more-specific local
        routes it covers from the export (they stay in the VRF and the FIB)."""
        v = self.vrf(vrf)
        want: dict[tuple[int, bytes], bool] = {}
        for prefix, summary_only in aggregates:
            k = prefix_key(prefix, "aggregates prefix")
            if k in want:
                raise InvalidValue(f"aggregates: {key_text(*k)} is given twice")
            if type(summary_only) is not bool:
                raise InvalidValue(f"aggregates summary_only: {summary_only!r} is not true or false")
            old = self._locals[vrf].get(k)
            if old is not None and old.kind is not RouteKind.AGGREGATE:
                raise InvalidValue(f"aggregates: {key_text(*k)} is already a {old.kind.value} route of "
                                   f"VRF {vrf!r}")
            want[k] = summary_only
        out = VpnOutput()
        for k in list(v.aggregates):
            if k not in want and k in self._locals[vrf]:
                self._remove_local(v, k[0], k[1], out)
        suppression_changed = {k for k, so in v.aggregates.items() if so} != {k for k, so in want.items() if so}
        v.aggregates = want
        for k in want:
            if k not in self._locals[vrf]:
                route = LocalRoute(k[0], k[1], RouteKind.AGGREGATE)
                self._locals[vrf][k] = route
                self._apply_export(v, self.exporter.export(v, route, now), out)
        if suppression_changed:  # the covered routes are (no longer) exported
            for route in list(self._locals[vrf].values()):
                if route.kind is not RouteKind.AGGREGATE:
                    self._apply_export(v, self.exporter.export(v, route, now), out)
        return self._finish(out)

    def highest_sequence(self, vrf: str, prefix: str | IPNetwork) -> tuple[int, IPAddress | None]:
        """The highest mobility sequence number claimed for ``prefix`` in ``vrf`` by
        another vPE (imported entries), and that vPE's address (None: no claim)."""
        v = self.vrf(vrf)
        best: tuple[int, IPAddress | None] = (0, None)
        for e in v.routes(prefix_key(prefix)):
            if e.source is RouteSource.IMPORTED:
                seq = entry_sequence(e)
                if seq > best[0] or best[1] is None:
                    best = (seq, e.next_hop)
        return best

    def local_sequence(self, vrf: str, prefix: str | IPNetwork) -> int:
        """The mobility sequence number of this vPE's own route for ``prefix`` (0: none)."""
        r = self._locals.get(vrf, {}).get(prefix_key(prefix))
        return r.sequence if r is not None else 0

    def local_routes(self, vrf: str) -> list[LocalRoute]:
        self.vrf(vrf)
        return list(self._locals[vrf].values())

    def _remove_local(self, vrf: Vrf, version: int, key: bytes, out: VpnOutput) -> None:
        del self._locals[vrf.name][(version, key)]
        old, released = self.exporter.unexport(vrf.name, version, key)
        vrf.remove_route(version, key, (0,))
        if old is not None:
            out.withdraw.append(old)
            self.importer.apply_local(vrf.name, (), (vpn_path(old),))
        out.released_labels.extend(released)

    def _apply_export(self, vrf: Vrf, exp: Export, out: VpnOutput) -> None:
        vrf.add_route(exp.local_entry)
        old, new = exp.old, exp.new
        if old is not None and (new is None or old.nlri.key != new.nlri.key):
            out.withdraw.append(old)
        if new is not None and new != old:
            out.announce.append(new)
        if old != new:
            self.importer.apply_local(
                vrf.name,
                (vpn_path(new),) if new is not None else (),
                (vpn_path(old),) if old is not None else (),
            )
        out.released_labels.extend(exp.released_labels)

    def _reexport(self, vrf: Vrf, now: float) -> VpnOutput:
        out = VpnOutput()
        for route in list(self._locals[vrf.name].values()):
            self._apply_export(vrf, self.exporter.export(vrf, route, now), out)
        return self._finish(out)

    # -- remote routes ---------------------------------------------------------------

    def apply(self, change: VpnPathsChanged) -> VpnOutput:
        """Best-path changes of VPN destinations from the RIB."""
        self.importer.apply(change)
        return self._finish(VpnOutput())

    # -- labels ------------------------------------------------------------------------

    def labels_withdrawn(self, labels: Iterable[int], now: float) -> None:
        """The UPDATEs that stopped using ``labels`` were sent at ``now``."""
        self.labels.confirm_withdrawn(labels, now)

    def release_unclaimed_labels(self) -> list[int]:
        """After a restart and config replay: free restored labels nobody re-took."""
        bound = set(self.exporter.label_bindings())
        out = []
        for lab, owner in self.labels.in_use().items():
            if lab not in bound:
                self.labels.release(owner)
                out.append(lab)
        return out

    # -- leaking ---------------------------------------------------------------------

    def add_leak_policy(self, policy: LeakPolicy) -> VpnOutput:
        src, dst = self.vrf(policy.source), self.vrf(policy.destination)
        if src.tenant is not None and dst.tenant is not None and src.tenant != dst.tenant:
            raise InvalidValue(
                f"leak policy {policy.name!r}: VRF {src.name!r} (tenant {src.tenant!r}) and "
                f"VRF {dst.name!r} (tenant {dst.tenant!r}) belong to different tenants"
            )
        self.leaker.add(policy)
        self.leaker.resync_pair(policy.source, policy.destination, self.vrfs)
        return self._finish(VpnOutput())

    def remove_leak_policy(self, name: str) -> VpnOutput:
        policy = self.leaker.remove(name)
        self.leaker.resync_pair(policy.source, policy.destination, self.vrfs)
        return self._finish(VpnOutput())

    # -- change collection ---------------------------------------------------------------

    def _flush_changed(self) -> list[VrfTableChange]:
        """The table changes of the VRFs that have some (not a walk of every VRF)."""
        changes: list[VrfTableChange] = []
        names = list(self._changed)
        self._changed.clear()
        for name in names:
            vrf = self.vrfs.get(name)
            if vrf is not None and vrf.has_changes():
                changes.extend(vrf.flush())
        return changes

    def _finish(self, out: VpnOutput) -> VpnOutput:
        """Flush the changed VRFs, let leaks follow them, merge per prefix."""
        if self._readv:
            self._run_readv(out)
        if not self.leaker.policies:
            out.table_changes.extend(self._flush_changed())
            self._contests(out.table_changes)
            return out
        merged: dict[tuple[str, int, bytes], VrfTableChange] = {
            (c.vrf, c.version, c.prefix): c for c in out.table_changes
        }
        for _ in range(_MAX_LEAK_ROUNDS):
            changes = self._flush_changed()
            if not changes:
                break
            for c in changes:
                merged[(c.vrf, c.version, c.prefix)] = c
            self.leaker.on_changes(changes, self.vrfs)
        out.table_changes = list(merged.values())
        self._contests(out.table_changes)
        return out

    def _contests(self, changes: list[VrfTableChange]) -> None:
        """Log contested host addresses (mobility): only host prefixes with several
        entries are looked at, so a table of plain routes costs one test each."""
        own = self.importer.local_next_hops
        todo = {(c.vrf, c.version, c.prefix): None for c in changes if c.prefix[0] in (32, 128)}
        for v, version, prefix in self.importer.contested:
            todo[(v.name, version, prefix)] = None
        self.importer.contested.clear()
        for name, version, prefix in todo:
            vrf = self.vrfs.get(name)
            val = vrf.tables[version].get(prefix) if vrf is not None else None
            if type(val) is list and any(e.rank[1] for e in val):
                check_contest(name, key_text(version, prefix), val, own)

    def describe(self, name: str) -> dict[str, Any]:
        """A VRF's configuration and table, as JSON values (API / CLI)."""
        vrf = self.vrf(name)
        d = vrf.to_json()
        d["table"] = {p: [r.to_json() for r in rs] for p, rs in vrf.snapshot().items()}
        d["local_routes"] = [key_text(r.version, r.prefix) for r in self.local_routes(name)]
        d["import_policy"] = vrf.import_policy.name if vrf.import_policy is not None else None
        d["export_policy"] = vrf.export_policy.name if vrf.export_policy is not None else None
        svc = self.services.get(name)
        d["service"] = svc.to_json() if svc is not None else None
        return d

