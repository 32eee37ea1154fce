"""Import: VPN paths into every VRF whose import RTs they carry (RFC 4364 section 4.3.1).

The importer keeps every VPN path it has been given, by identity
``(NLRI key, path id, next hop)``. That is what lets a VRF's import RTs
change at run time: :meth:`Importer.reimport` looks at the attribute sets
carrying an RT that was added or removed (paths are indexed by attribute
set, attribute sets by route target), decides once per set whether the VRF
now imports its paths or no longer does, and adds or removes just those
entries: the cost follows the paths of the changed RTs, not every path
known (a new VRF with RTs nobody uses costs nothing). Removing a path removes it from every VRF that has it,
because the set of importing VRFs is a function of the attributes and the
RT index, both of which the importer keeps consistent.

Two feeds, one logic:

* :meth:`Importer.apply` - paths from the RIB. Paths whose next hop is one
  of this vPE's own addresses are ours coming back (via a route reflector);
  they are ignored here because the exporter feeds them directly.
* :meth:`Importer.apply_local` - the VPN routes this vPE exports, with the
  VRF they come from. They are imported into every *other* VRF whose import
  RTs match (extranet on one host), never into the VRF they came from: the
  route is already there as a local entry.

The hot loop does per route: one dictionary store keyed by the NLRI's own
key bytes (their hash is cached), a slice and a concatenation for the table key, and one :class:`~vpe.vpn.entries.VrfRoute` tuple per
importing VRF, whose origin is the :class:`~vpe.vpn.paths.VpnPath` itself; anything per attribute set (importing VRFs, rank,
encapsulations) is looked up once per run of routes sharing that set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import AFI, VPNV4, VPNV6
from ..bgp.wire.nlri.prefix import PLEN_BYTE
from ..policy.policy import Policy
from .entries import RouteKind, RouteSource, VrfRoute
from .paths import PathIdent, VpnPath, VpnPathsChanged
from .route_target import RouteTargetIndex, RouteTargets, matches, route_targets_of
from .vrf import Vrf, bgp_rank, encapsulations_of

_IMPORTED = RouteSource.IMPORTED
_VPN = RouteKind.VPN
_VPN_FAMILIES = (VPNV4, VPNV6)
_CACHE_MAX = 65536
_NOTHING = object()
_tuple_new = tuple.__new__  # VrfRoute without its Python-level __new__: hot loop


def _imported_under(policy: Policy, p: VpnPath, version: int, prefix: bytes,
                    encaps: tuple[int, ...]) -> VrfRoute | None:
    """The VRF entry of ``p`` under a VRF import policy (None: rejected). The
    policy may rewrite attributes (and so the rank); the next hop stays the
    path's own, which is what identifies the entry."""
    v = policy.evaluate(p.family, p.attributes, p.next_hop, p.nlri.key)
    if not v.accept:
        return None
    return VrfRoute(version, prefix, p.next_hop, p.labels, encaps, _IMPORTED, p, v.attrs,
                    bgp_rank(_IMPORTED, v.attrs), _VPN)


def _packed(nh: IPv4Address | IPv6Address | None) -> bytes:
    return nh.packed if nh is not None else b""


class Importer:
    """Every known VPN path, and the VRF entries imported from them."""

    __slots__ = ("index", "_own", "_own_packed", "_paths", "_origin", "_info", "_by_attrs", "_attrs_by_rt",
                 "contested")

    def __init__(
        self,
        index: RouteTargetIndex[Vrf],
        local_next_hops: Iterable[IPv4Address | IPv6Address] = (),
    ) -> None:
        self.index = index
        self._own: frozenset[IPv4Address | IPv6Address] = frozenset()
        self._own_packed: frozenset[bytes] = frozenset()
        self.local_next_hops = frozenset(local_next_hops)
        #: VPN NLRI key -> its path, or {(path id, packed next hop): path} if several
        self._paths: dict[bytes, VpnPath | dict[tuple[int, bytes], VpnPath]] = {}
        self._origin: dict[PathIdent, str] = {}  # paths fed by the exporter: their VRF
        self._info: dict[PathAttributes, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        #: every known path by attribute set, and attribute sets by route target (for reimport)
        self._by_attrs: dict[PathAttributes, dict[PathIdent, VpnPath]] = {}
        self._attrs_by_rt: dict[Any, set[PathAttributes]] = {}
        #: (VRF, version, prefix) given a claim with a mobility sequence while holding
        #: entries: the service looks at them once (logs contested addresses)
        self.contested: list[tuple[Vrf, int, bytes]] = []

    @property
    def local_next_hops(self) -> frozenset[IPv4Address | IPv6Address]:
        """This vPE's own addresses: RIB paths with these next hops are not imported."""
        return self._own

    @local_next_hops.setter
    def local_next_hops(self, addrs: Iterable[IPv4Address | IPv6Address]) -> None:
        self._own = frozenset(addrs)
        self._own_packed = frozenset(a.packed for a in self._own)

    def __len__(self) -> int:
        return sum(len(v) if isinstance(v, dict) else 1 for v in self._paths.values())

    def paths(self) -> list[VpnPath]:
        return [p for _, p in self._iter_paths()]

    def origin_of(self, path: VpnPath) -> str | None:
        """The local VRF a path was exported from (None: a remote path)."""
        return self._origin.get(path.ident)

    # -- feeds --------------------------------------------------------------

    def apply(self, change: VpnPathsChanged) -> None:
        """Paths from the RIB: removes first, then adds (an add replaces its identity).

        Paths of other families, and paths whose next hop is this vPE's own
        (our exports reflected back), are ignored."""
        if change.removes:
            self._remove_many(change.removes, True)
        if change.adds:
            self._add_many(change.adds, None, True)

    def apply_local(self, origin: str, adds: Iterable[VpnPath], removes: Iterable[VpnPath]) -> None:
        """Routes the exporter originates for VRF ``origin``."""
        self._remove_many(list(removes), False)
        self._add_many(list(adds), origin, False)

    # -- add / remove ---------------------------------------------------------

    def _attr_info(self, attrs: PathAttributes) -> tuple[tuple[int, ...], tuple[int, ...]]:
        info = self._info.get(attrs)
        if info is None:
            if len(self._info) >= _CACHE_MAX:
                self._info.clear()
            info = self._info[attrs] = (bgp_rank(_IMPORTED, attrs), encapsulations_of(attrs))
        return info

    def _add_many(self, adds: list[VpnPath], origin: str | None, filtered: bool) -> None:
        """The hot loop. Everything derived from the attribute set, the family or
        the next hop is recomputed only when that object changes from one
        route to the next (routes of one UPDATE share all three)."""
        paths = self._paths
        members_for = self.index.members_for
        own = self._own_packed
        new = _tuple_new
        plen_byte = PLEN_BYTE
        fams = _VPN_FAMILIES
        last_attrs: PathAttributes | None = None
        last_family = None
        last_nh: object = _NOTHING
        nhk = b""
        fam_ok = nh_ok = True
        version = 4
        targets: list[tuple[Vrf, dict[bytes, Any], dict[bytes, Any], Policy | None]] = []
        rank: tuple[int, ...] = ()
        encaps: tuple[int, ...] = ()
        bucket: dict[PathIdent, VpnPath] = {}
        last_bucket_attrs: PathAttributes | None = None
        for p in adds:
            family = p.family
            if family is not last_family:
                last_family = family
                fam_ok = family in fams
                version = 4 if family.afi == AFI.IPV4 else 6
                last_attrs = None
            nh = p.next_hop
            if nh is not last_nh:
                last_nh = nh
                nhk = nh.packed if nh is not None else b""
                nh_ok = not (filtered and nhk in own)
            if not (fam_ok and nh_ok):
                continue
            nlri = p.nlri
            key = nlri.key
            prev = paths.setdefault(key, p)
            if prev is not p:  # another path of this RD+prefix, or a new version of one
                self._store_more(key, prev, p, nhk)
                last_bucket_attrs = None  # the old version's bucket may have gone
            ident = (key, nlri.path_id, nhk)
            if origin is not None:
                self._origin[ident] = origin
            attrs = p.attributes
            if attrs is not last_bucket_attrs:
                last_bucket_attrs = attrs
                bucket = self._bucket(attrs)
            bucket[ident] = p
            if attrs is not last_attrs:
                last_attrs = attrs
                rank, encaps = self._attr_info(attrs)
                targets = [
                    (vrf, vrf.tables[version], vrf._dirty[version], vrf.import_policy)
                    for vrf in members_for(attrs)
                    if vrf.name != origin
                ]
                for vrf, *_ in targets:
                    vrf.watch[vrf.name] = None
            if not targets:
                continue
            prefix = plen_byte[key[0]] + key[9:]
            labels = p.labels
            for vrf, table, dirty, policy in targets:
                if policy is None:
                    r = new(VrfRoute, (version, prefix, nh, labels, encaps, _IMPORTED, p, attrs, rank, _VPN))
                else:
                    under = _imported_under(policy, p, version, prefix, encaps)
                    if under is None:
                        continue
                    r = under
                if prefix in table:
                    vrf.add_route(r)
                    if r.rank[1]:  # a mobility claim on a prefix held already (vpe.vpn.mobility)
                        self.contested.append((vrf, version, prefix))
                else:
                    table[prefix] = r
                    dirty.setdefault(prefix, ())

    def _bucket(self, attrs: PathAttributes) -> dict[PathIdent, VpnPath]:
        """The known paths with ``attrs`` (a new set is indexed by its route targets)."""
        b = self._by_attrs.get(attrs)
        if b is None:
            b = self._by_attrs[attrs] = {}
            for rt in route_targets_of(attrs):
                self._attrs_by_rt.setdefault(rt, set()).add(attrs)
        return b

    def _forget(self, p: VpnPath, ident: PathIdent) -> None:
        attrs = p.attributes
        b = self._by_attrs.get(attrs)
        if b is None or b.pop(ident, None) is None or b:
            return
        del self._by_attrs[attrs]
        for rt in route_targets_of(attrs):
            s = self._attrs_by_rt.get(rt)
            if s is not None:
                s.discard(attrs)
                if not s:
                    del self._attrs_by_rt[rt]

    def _store_more(self, key: bytes, prev: VpnPath | dict[tuple[int, bytes], VpnPath], p: VpnPath, nhk: bytes) -> None:
        """Slow path of :meth:`_add_many`: ``key`` already has path(s). One path of a
        key is stored bare; several as ``{(path id, packed next hop): path}``."""
        sub = (p.nlri.path_id, nhk)
        if isinstance(prev, dict):
            old = prev.get(sub)
            if old is not None:
                self._unimport(old, (key, *sub))
            prev[sub] = p
            return
        prev_sub = (prev.nlri.path_id, _packed(prev.next_hop))
        if prev_sub == sub:
            self._unimport(prev, (key, *sub))
            self._paths[key] = p
        else:
            self._paths[key] = {prev_sub: prev, sub: p}

    def _remove_many(self, removes: Iterable[VpnPath], filtered: bool) -> None:
        paths = self._paths
        own = self._own_packed
        for p in removes:
            nhk = _packed(p.next_hop)
            if filtered and nhk in own:
                continue
            key = p.nlri.key
            val = paths.get(key)
            if val is None:
                continue
            sub = (p.nlri.path_id, nhk)
            if isinstance(val, dict):
                old = val.pop(sub, None)
                if old is None:
                    continue
                if len(val) == 1:
                    paths[key] = next(iter(val.values()))
            else:
                if (val.nlri.path_id, _packed(val.next_hop)) != sub:
                    continue
                old = val
                del paths[key]
            self._unimport(old, (key, *sub))

    def _unimport(self, p: VpnPath, ident: PathIdent) -> None:
        """Take a path that is no longer known out of every VRF that imported it."""
        self._forget(p, ident)
        origin = self._origin.pop(ident, None)
        key = ident[0]
        prefix = PLEN_BYTE[key[0]] + key[9:]
        version = 4 if p.family.afi == AFI.IPV4 else 6
        rid = (1, key, ident[1], p.next_hop)
        for vrf in self.index.members_for(p.attributes):
            if vrf.name != origin:
                vrf.remove_route(version, prefix, rid)

    def _iter_paths(self) -> Iterator[tuple[PathIdent, VpnPath]]:
        for key, val in self._paths.items():
            if isinstance(val, dict):
                for (pid, nhk), p in val.items():
                    yield (key, pid, nhk), p
            else:
                yield (key, val.nlri.path_id, _packed(val.next_hop)), val

    # -- configuration changes -------------------------------------------------

    def reimport(self, vrf: Vrf, old_rts: RouteTargets, new_rts: RouteTargets) -> None:
        """``vrf``'s import RTs changed from ``old_rts`` to ``new_rts`` (the index
        already says ``new_rts``): add what it now imports, drop what it no longer does."""
        origins = self._origin
        touched: set[PathAttributes] = set()
        for rt in old_rts ^ new_rts:
            touched |= self._attrs_by_rt.get(rt, set())
        for attrs in touched:
            rts = route_targets_of(attrs)
            now = matches(new_rts, rts)
            if matches(old_rts, rts) != now:
                self._reimport_set(vrf, attrs, now, origins)

    def _reimport_set(self, vrf: Vrf, attrs: PathAttributes, now: bool, origins: dict[PathIdent, str]) -> None:
        """Add (``now``) or remove the paths with ``attrs`` in ``vrf``."""
        name = vrf.name
        rank, encaps = self._attr_info(attrs)
        for ident, p in self._by_attrs[attrs].items():
            if origins.get(ident) == name:
                continue
            key = ident[0]
            prefix = PLEN_BYTE[key[0]] + key[9:]
            version = 4 if p.family.afi == AFI.IPV4 else 6
            if now:
                r = (VrfRoute(version, prefix, p.next_hop, p.labels, encaps, _IMPORTED, p, attrs, rank, _VPN)
                     if vrf.import_policy is None
                     else _imported_under(vrf.import_policy, p, version, prefix, encaps))
                if r is not None:
                    vrf.add_route(r)
            else:
                vrf.remove_route(version, prefix, (1, key, ident[1], p.next_hop))
