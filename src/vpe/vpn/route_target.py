"""Route target text, RT sets, and the index that says which VRFs import a route.

A route target (RFC 4360 section 4) is the :class:`RouteTarget` extended
community value of the codec; sets of them are plain ``frozenset``s, so
matching an import policy is one ``isdisjoint`` call. Text is accepted in the
three RFC 4360 / RFC 5668 administrator formats, with or without the
``target:`` tag that ``show`` commands print:

* ``"65000:1"`` / ``"target:65000:1"`` - 2-octet AS : 4-octet number
* ``"192.0.2.1:5"`` - IPv4 address : 2-octet number
* ``"4200000000:7"`` or ``"65000L:7"`` - 4-octet AS : 2-octet number

Import is decided per attribute set, not per route: every route of one
UPDATE shares one interned :class:`PathAttributes`, so
:class:`RouteTargetIndex` caches "attribute set -> importing VRFs" and a
million routes cost a million dictionary hits, not a million set
intersections.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import ExtendedCommunities, RouteTarget
from ..bgp.wire.constants import AttrCode
from .errors import InvalidValue

RouteTargets = frozenset[RouteTarget]
EMPTY_RTS: RouteTargets = frozenset()

_CACHE_MAX = 65536


def parse_route_target(text: str | RouteTarget, field: str = "route-target") -> RouteTarget:
    """One RT from text (see the module docstring) or an RT value.

    ``ValueError`` names ``field`` and the value, e.g.
    ``import-rts: 'target:65000' is not a route target (expected ...)``.
    """
    if isinstance(text, RouteTarget):
        return text
    if not isinstance(text, str):
        raise InvalidValue(f"{field}: {text!r} is not a route target string")
    t = text.strip()
    body = t[7:] if t[:7].lower() == "target:" else t
    try:
        return RouteTarget.from_str(body)
    except ValueError:
        raise InvalidValue(
            f"{field}: {text!r} is not a route target (expected ASN:N with N < 2^32 for "
            "ASN < 65536, IPv4:N or ASN4:N / ASNL:N with N < 65536, optionally after 'target:')"
        ) from None


def parse_route_targets(
    texts: Iterable[str | RouteTarget] | str | None, field: str = "route-targets"
) -> RouteTargets:
    """A set of RTs from a list of texts (a single string is one RT, not characters)."""
    if texts is None:
        return EMPTY_RTS
    if isinstance(texts, str | RouteTarget):
        texts = [texts]
    return frozenset(parse_route_target(t, field) for t in texts)


def format_route_targets(rts: Iterable[RouteTarget]) -> list[str]:
    """Sorted texts (``target:...``): stable output for the API and the docs."""
    return sorted(str(rt) for rt in rts)


def route_targets_of(attributes: PathAttributes | None) -> RouteTargets:
    """The RTs an attribute set carries (empty set when it has none)."""
    if attributes is None:
        return EMPTY_RTS
    ec = attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    if ec is None:
        return EMPTY_RTS
    assert isinstance(ec, ExtendedCommunities)
    return frozenset(ec.route_targets())


def matches(import_rts: RouteTargets, route_rts: RouteTargets) -> bool:
    """RFC 4364 section 4.3.1: a route is imported when it carries any import RT."""
    return not import_rts.isdisjoint(route_rts)


V = TypeVar("V")


class RouteTargetIndex(Generic[V]):
    """RT -> members (VRFs) importing it, with an "attribute set -> members" cache.

    Members are any hashable values (the VPN layer uses :class:`~vpe.vpn.vrf.Vrf`
    objects). :meth:`members_for` returns them in the order they were added,
    so results are deterministic. Any change to the index clears the cache.
    """

    __slots__ = ("_by_rt", "_order", "_rts_of", "_cache")

    def __init__(self) -> None:
        self._by_rt: dict[RouteTarget, set[V]] = {}
        self._order: dict[V, int] = {}
        self._rts_of: dict[V, RouteTargets] = {}
        self._cache: dict[PathAttributes, tuple[V, ...]] = {}

    def set(self, member: V, rts: RouteTargets) -> RouteTargets:
        """Make ``member`` import exactly ``rts``; return the set it had before."""
        old = self._rts_of.get(member, EMPTY_RTS)
        for rt in old - rts:
            bucket = self._by_rt[rt]
            bucket.discard(member)
            if not bucket:
                del self._by_rt[rt]
        for rt in rts - old:
            self._by_rt.setdefault(rt, set()).add(member)
        if member not in self._order:
            self._order[member] = len(self._order)
        self._rts_of[member] = rts
        self._cache.clear()
        return old

    def remove(self, member: V) -> None:
        self.set(member, EMPTY_RTS)
        self._order.pop(member, None)
        self._rts_of.pop(member, None)

    def rts_of(self, member: V) -> RouteTargets:
        return self._rts_of.get(member, EMPTY_RTS)

    def members_for_rts(self, rts: Iterable[RouteTarget]) -> tuple[V, ...]:
        """Members importing any of ``rts``, in insertion order."""
        found: set[V] = set()
        for rt in rts:
            bucket = self._by_rt.get(rt)
            if bucket:
                found |= bucket
        order = self._order
        return tuple(sorted(found, key=order.__getitem__))

    def members_for(self, attributes: PathAttributes) -> tuple[V, ...]:
        """Members importing a route with these attributes (cached per attribute set)."""
        hit = self._cache.get(attributes)
        if hit is not None:
            return hit
        out = self.members_for_rts(route_targets_of(attributes))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[attributes] = out
        return out
