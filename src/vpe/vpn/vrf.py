"""A VRF: its configuration (RD, RTs, label mode, multipath) and its IPv4/IPv6 tables.

Tables are keyed by IP prefix only (RFC 4364 section 4.3.1: the RD is
stripped on import), as the canonical unicast key ``prefix-length octet +
minimal prefix octets`` - the VPN NLRI key without its 8 RD octets, so
import is two slices and no ``ipaddress`` object. Each prefix holds a list
of :class:`~vpe.vpn.entries.VrfRoute` entries from several sources (local
attachment, imports from remote or local VPN routes, leaks; their typed
origins are in :mod:`vpe.vpn.entries`), kept sorted best first.

The *forwarding set* of a prefix is the best entry plus the entries of equal
rank after it, up to the VRF's multipath limit; that is what a
:class:`~vpe.vpn.events.VrfTableChange` carries to the FIB. Rank: local
before imported before leaked, then the BGP attributes that make a VPN path
preferable once the RIB has chosen per RD (a higher mobility sequence number (:mod:`vpe.vpn.mobility`), higher LOCAL_PREF, shorter
AS_PATH, lower ORIGIN, lower MED); ties are ECMP candidates.

Changes are collected, not emitted one by one: :meth:`Vrf.add_route` and
:meth:`Vrf.remove_route` remember each touched prefix with its forwarding set
before the batch, and :meth:`Vrf.flush` reports only prefixes whose set
really changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import Encapsulation, ExtendedCommunities
from ..bgp.wire.constants import AttrCode
from ..bgp.wire.nlri.base import IPAddress
from ..bgp.wire.nlri.prefix import PLEN_BYTE, format_prefix
from ..bgp.wire.nlri.rd import RouteDistinguisher
from ..policy.policy import Policy
from .entries import IPNetwork, Leak, RouteKind, RouteSource, VrfRoute
from .errors import InvalidValue
from .events import VrfTableChange
from .mobility import RANK_NOT_HERE, sequence_of
from .names import check_name
from .paths import VpnPath
from .route_target import RouteTargets, format_route_targets

#: the hidden VRF that imports what a service VRF re-advertises (never a valid VRF name)
READV_SUFFIX = "~readv"

# the entry values live in .entries; named here too for callers that know them as vrf.*
__all__ = [
    "IPNetwork",
    "LabelMode",
    "Leak",
    "RouteKind",
    "RouteSource",
    "Vrf",
    "VrfRoute",
    "bgp_rank",
    "encapsulations_of",
    "key_text",
    "parse_label_mode",
    "parse_route_kind",
    "prefix_key",
]


class LabelMode(StrEnum):
    """How labels are allocated for the routes a VRF exports.

    ``per-vrf``: one aggregate label whose lookup is an IP lookup in the VRF
    (RFC 4364 section 4.3.2, R10.3). ``per-prefix``: one label per exported
    prefix (the label alone picks the egress). ``per-endpoint``: one label per
    attached endpoint (all host routes of one VM interface share it).
    """

    PER_VRF = "per-vrf"
    PER_PREFIX = "per-prefix"
    PER_ENDPOINT = "per-endpoint"


def parse_label_mode(value: str | LabelMode, field: str = "label-mode") -> LabelMode:
    try:
        return LabelMode(value)
    except ValueError:
        allowed = ", ".join(m.value for m in LabelMode)
        raise InvalidValue(f"{field}: {value!r} is not a label mode (expected one of {allowed})") from None


def parse_route_kind(value: str | RouteKind, field: str = "kind") -> RouteKind:
    try:
        kind = RouteKind(value)
    except ValueError:
        kind = RouteKind.VPN
        value = f"{value!r}"
    if kind is RouteKind.VPN:
        allowed = ", ".join(k.value for k in RouteKind if k is not RouteKind.VPN)
        raise InvalidValue(f"{field}: {value} is not a local route kind (expected one of {allowed})")
    return kind


# -- prefixes -------------------------------------------------------------------


def prefix_key(prefix: str | IPNetwork, field: str = "prefix") -> tuple[int, bytes]:
    """(IP version, table key) of ``"192.0.2.0/24"`` or a network.

    ``ValueError`` names ``field`` and the value (host bits set is an error:
    ``192.0.2.1/24`` would silently mean another prefix).
    """
    try:
        net = ip_network(prefix, strict=True) if isinstance(prefix, str) else prefix
    except ValueError as e:
        raise InvalidValue(f"{field}: {prefix!r} is not an IP prefix ({e})") from None
    if not isinstance(net, IPv4Network | IPv6Network):
        raise InvalidValue(f"{field}: {prefix!r} is not an IP prefix")
    plen = net.prefixlen
    return net.version, PLEN_BYTE[plen] + net.network_address.packed[: (plen + 7) >> 3]


def key_text(version: int, key: bytes) -> str:
    return format_prefix(key[1:], key[0], version)


# -- rank -------------------------------------------------------------------------


def bgp_rank(source: RouteSource, attributes: PathAttributes | None) -> tuple[int, ...]:
    """Sort key of an entry (lower is better); see the module docstring. The
    second element is minus the mobility sequence number (:mod:`vpe.vpn.mobility`)."""
    if attributes is None:
        return (int(source), 0, 0, 0, 0, 0)
    lp = attributes.get(AttrCode.LOCAL_PREF)
    asp = attributes.get(AttrCode.AS_PATH)
    org = attributes.get(AttrCode.ORIGIN)
    med = attributes.get(AttrCode.MULTI_EXIT_DISC)
    return (
        int(source),
        -sequence_of(attributes),
        -(lp.value if lp is not None else 100),
        asp.length() if asp is not None else 0,
        int(org.value) if org is not None else 0,
        med.value if med is not None else 0,
    )


def encapsulations_of(attributes: PathAttributes | None) -> tuple[int, ...]:
    """Tunnel types named by Encapsulation extended communities (RFC 9012 4.1)."""
    if attributes is None:
        return ()
    ec = attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    if ec is None:
        return ()
    assert isinstance(ec, ExtendedCommunities)
    return tuple(e.tunnel_type for e in ec.values if isinstance(e, Encapsulation))


def _nh_sort(nh: IPAddress | None) -> bytes:
    return b"" if nh is None else nh.packed


def _order(r: VrfRoute) -> tuple[Any, ...]:
    o = r.origin
    if isinstance(o, VpnPath):
        tie: bytes = o.nlri.key + o.nlri.path_id.to_bytes(4, "big")
    elif isinstance(o, Leak):
        tie = o.vrf.encode()
    else:
        tie = b""
    return (r.rank, _nh_sort(r.next_hop), tie)


# -- the VRF ------------------------------------------------------------------------


class Vrf:
    """One VRF of this vPE. Configuration is changed through
    :class:`~vpe.vpn.service.VpnService`, which keeps the RT index, RD and
    label allocators, exports and leaks consistent with it."""

    __slots__ = (
        "name",
        "rd",
        "rd_auto",
        "import_rts",
        "export_rts",
        "label_mode",
        "multipath",
        "tenant",
        "tables",
        "_dirty",
        "watch",
        "import_policy",
        "export_policy",
    )

    def __init__(
        self,
        name: str,
        rd: RouteDistinguisher,
        *,
        rd_auto: bool = False,
        import_rts: RouteTargets = frozenset(),
        export_rts: RouteTargets = frozenset(),
        label_mode: LabelMode = LabelMode.PER_VRF,
        multipath: int = 1,
        tenant: str | None = None,
    ) -> None:
        # the one rule for names (vpn/names.py); a service VRF's hidden readv VRF adds a suffix
        # no name can have, so it never clashes with a VRF of the API
        check_name(name.removesuffix(READV_SUFFIX), "name")
        if type(multipath) is not int or not 1 <= multipath <= 64:
            raise InvalidValue(f"multipath: {multipath!r} is not a path count in 1..64")
        self.name = name
        self.rd = rd
        self.rd_auto = rd_auto
        self.import_rts = import_rts
        self.export_rts = export_rts
        self.label_mode = label_mode
        self.multipath = multipath
        self.tenant = tenant
        #: routing policies on what this VRF imports / exports (docs/policy.md), None: none
        self.import_policy: Policy | None = None
        self.export_policy: Policy | None = None
        self.tables: dict[int, dict[bytes, VrfRoute | list[VrfRoute]]] = {4: {}, 6: {}}
        self._dirty: dict[int, dict[bytes, tuple[VrfRoute, ...]]] = {4: {}, 6: {}}
        #: VRF names with unflushed changes: this VRF adds its name on a change (the
        #: VPN service shares one such ordered set among its VRFs, so that it
        #: flushes the changed VRFs only)
        self.watch: dict[str, None] = {}

    def __repr__(self) -> str:
        return f"Vrf({self.name!r}, rd={self.rd}, routes={len(self)})"

    def __len__(self) -> int:
        """Number of prefixes in both tables."""
        return len(self.tables[4]) + len(self.tables[6])

    # -- reading ---------------------------------------------------------------

    def _key(self, prefix: str | IPNetwork | tuple[int, bytes]) -> tuple[int, bytes]:
        return prefix if isinstance(prefix, tuple) else prefix_key(prefix)

    def routes(self, prefix: str | IPNetwork | tuple[int, bytes]) -> tuple[VrfRoute, ...]:
        """Every entry of ``prefix``, best first."""
        v, k = self._key(prefix)
        return _entries(self.tables[v].get(k))

    def active(self, prefix: str | IPNetwork | tuple[int, bytes]) -> tuple[VrfRoute, ...]:
        """The forwarding set of ``prefix`` (best, plus equal-rank paths up to multipath)."""
        v, k = self._key(prefix)
        return self._select(self.tables[v].get(k))

    def prefixes(self, version: int = 4) -> Iterator[str]:
        for k in self.tables[version]:
            yield key_text(version, k)

    def keys(self, version: int) -> list[bytes]:
        return list(self.tables[version])

    def items(self, version: int) -> Iterator[tuple[bytes, tuple[VrfRoute, ...]]]:
        """(table key, entries best first) of every prefix of one IP version."""
        for k, val in self.tables[version].items():
            yield k, _entries(val)

    def entries(self) -> Iterator[VrfRoute]:
        for table in self.tables.values():
            for val in table.values():
                yield from _entries(val)

    def snapshot(self) -> dict[str, list[VrfRoute]]:
        """``{"192.0.2.0/24": [entries]}`` of both tables (for tests and the API)."""
        out: dict[str, list[VrfRoute]] = {}
        for v, table in self.tables.items():
            for k, val in table.items():
                out[key_text(v, k)] = list(_entries(val))
        return out

    def _select(self, val: VrfRoute | list[VrfRoute] | None) -> tuple[VrfRoute, ...]:
        if val is None:
            return ()
        if type(val) is not list:
            return (val,)  # type: ignore[return-value]
        best = val[0]
        out = [best]
        # a claim with a mobility sequence has one owner: never ECMP (vpe.vpn.mobility)
        limit = self.multipath if best.source is not RouteSource.LOCAL and not best.rank[1] else 1
        rank = best.rank
        for e in val[1:]:
            if len(out) >= limit or e.rank != rank:
                break
            out.append(e)
        if best.source is not RouteSource.LOCAL and val[-1].rank[0] == RANK_NOT_HERE:
            # a standby / released endpoint of this host: its entry rides along as a marker
            # (the FIB re-tunnels what arrives for it; vpe.vpn.mobility), never a next hop
            out.append(val[-1])
        return tuple(out)

    # -- writing ---------------------------------------------------------------
    #
    # A prefix with one entry maps to the VrfRoute itself, with several to a
    # list sorted best first: a million single-entry prefixes then cost no
    # list each (less memory, less for the garbage collector to walk).

    def add_route(self, route: VrfRoute) -> None:
        """Add ``route``, replacing an entry of the same identity."""
        p = route.prefix
        table = self.tables[route.version]
        dirty = self._dirty[route.version]
        self.watch[self.name] = None
        val = table.get(p)
        if val is None:
            table[p] = route
            if p not in dirty:
                dirty[p] = ()
            return
        if p not in dirty:
            dirty[p] = self._select(val)
        ident = route.ident
        entries: list[VrfRoute]
        if isinstance(val, list):
            entries = val
            for i, e in enumerate(entries):
                if e.ident == ident:
                    entries[i] = route
                    break
            else:
                entries.append(route)
        else:
            if val.ident == ident:
                table[p] = route
                return
            entries = [val, route]
            table[p] = entries
        entries.sort(key=_order)

    def remove_route(self, version: int, prefix: bytes, ident: tuple[Any, ...]) -> VrfRoute | None:
        """Remove the entry of identity ``ident``; return it (None if absent)."""
        return self.remove_where(version, prefix, lambda e: e.ident == ident)

    def remove_where(
        self, version: int, prefix: bytes, pred: Callable[[VrfRoute], bool]
    ) -> VrfRoute | None:
        """Remove the first entry of ``prefix`` matching ``pred``; return it."""
        table = self.tables[version]
        val = table.get(prefix)
        if val is None:
            return None
        entries = _entries(val)
        i = next((j for j, e in enumerate(entries) if pred(e)), -1)
        if i < 0:
            return None
        dirty = self._dirty[version]
        if prefix not in dirty:
            dirty[prefix] = self._select(val)
        self.watch[self.name] = None
        e = entries[i]
        if len(entries) == 1:
            del table[prefix]
        elif len(entries) == 2:
            table[prefix] = entries[1 - i]
        else:
            del val[i]  # type: ignore[union-attr]
        return e

    def touch_all(self) -> None:
        """Mark every prefix as possibly changed (e.g. the multipath limit changed)."""
        self.watch[self.name] = None
        for v, table in self.tables.items():
            dirty = self._dirty[v]
            for k, val in table.items():
                if k not in dirty:
                    dirty[k] = self._select(val)

    def clear(self) -> None:
        """Drop every entry (the VRF is being deleted)."""
        self.touch_all()
        for table in self.tables.values():
            table.clear()

    def has_changes(self) -> bool:
        d = self._dirty
        return bool(d[4] or d[6])

    def flush(self) -> list[VrfTableChange]:
        """Changes of forwarding sets since the last flush, in the order first touched."""
        out: list[VrfTableChange] = []
        app = out.append
        name = self.name
        new_change = tuple.__new__
        for v, dirty in self._dirty.items():
            if not dirty:
                continue
            table = self.tables[v]
            select = self._select
            for k, old in dirty.items():
                val = table.get(k)
                if val is None:
                    if old:
                        app(new_change(VrfTableChange, (name, v, k, ())))
                    continue
                if type(val) is not list:
                    if not old or old[0] is not val or len(old) != 1:
                        app(new_change(VrfTableChange, (name, v, k, (val,))))
                    continue
                new = select(val)
                if new != old:
                    app(new_change(VrfTableChange, (name, v, k, new)))
            dirty.clear()
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rd": str(self.rd),
            "rd_auto": self.rd_auto,
            "import_rts": format_route_targets(self.import_rts),
            "export_rts": format_route_targets(self.export_rts),
            "label_mode": self.label_mode.value,
            "multipath": self.multipath,
            "tenant": self.tenant,
            "routes": {"ipv4": len(self.tables[4]), "ipv6": len(self.tables[6])},
        }


def _entries(val: VrfRoute | list[VrfRoute] | None) -> tuple[VrfRoute, ...]:
    """The entries of a table value (see :meth:`Vrf.add_route`)."""
    if val is None:
        return ()
    if type(val) is list:
        return tuple(val)
    return (val,)  # type: ignore[return-value]
