"""Every read (and the few writes) of path attributes the RIB does, in one place.

The decision process, reflection and VPN import need a handful of values out
of a :class:`PathAttributes`. Reaching into attribute classes from all over
the RIB would make a rename in ``bgp/wire/attributes`` a hunt; here each need
is one small function, keyed by the RFC type code and the attribute's
documented fields. Attribute sets are interned and shared by many routes, so
the values the decision process needs are computed once per set and cached.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import NamedTuple

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttribute, PathAttributes, UnknownAttribute
from ..bgp.wire.attributes.cluster_list import ClusterList
from ..bgp.wire.attributes.extended_communities import RouteTarget
from ..bgp.wire.attributes.next_hop import NextHop
from ..bgp.wire.attributes.simple import LocalPref, OriginatorId
from ..bgp.wire.constants import AttrCode

_ORIGIN = int(AttrCode.ORIGIN)
_AS_PATH = int(AttrCode.AS_PATH)
_MED = int(AttrCode.MULTI_EXIT_DISC)
_LOCAL_PREF = int(AttrCode.LOCAL_PREF)
_ORIGINATOR_ID = int(AttrCode.ORIGINATOR_ID)
_CLUSTER_LIST = int(AttrCode.CLUSTER_LIST)
_EXT_COMMUNITIES = int(AttrCode.EXTENDED_COMMUNITIES)

def local_pref(attrs: PathAttributes, default: int = 100) -> int:
    a = attrs.get(_LOCAL_PREF)
    return default if a is None else int(a.value)


def origin(attrs: PathAttributes) -> int:
    """0 IGP, 1 EGP, 2 INCOMPLETE; a route without ORIGIN counts as INCOMPLETE."""
    a = attrs.get(_ORIGIN)
    return 2 if a is None else int(a.value)


def med(attrs: PathAttributes) -> int | None:
    """MULTI_EXIT_DISC, or None when absent (the caller picks what None means)."""
    a = attrs.get(_MED)
    return None if a is None else int(a.value)


def as_path_len(attrs: PathAttributes) -> int:
    """AS_PATH length for the decision process (RFC 4271 9.1.2.2 a).

    An AS_SET counts as one, confederation segments count zero (RFC 5065).
    """
    a = attrs.get(_AS_PATH)
    return 0 if a is None else int(a.length())


def as_path_contains(attrs: PathAttributes, asn: int) -> bool:
    """True when ``asn`` appears anywhere in AS_PATH (the RFC 4271 loop check)."""
    a = attrs.get(_AS_PATH)
    return a is not None and asn in a.asns()


def as_path_count(attrs: PathAttributes, asn: int) -> int:
    """How many times ``asn`` appears in AS_PATH (``allowas_in`` tolerates a few)."""
    a = attrs.get(_AS_PATH)
    return 0 if a is None else sum(1 for x in a.asns() if x == asn)


def neighbor_as(attrs: PathAttributes) -> int | None:
    """The AS the route entered our AS from (RFC 4271 9.1.2.2 c), None for the local AS.

    That is the first AS of AS_PATH when it begins with an AS_SEQUENCE
    (confederation segments skipped, RFC 5065). An empty path, or one starting
    with an AS_SET, means the route was originated (or aggregated) inside our
    AS.
    """
    a = attrs.get(_AS_PATH)
    return None if a is None else a.first_asn()


def originator_id(attrs: PathAttributes) -> IPv4Address | None:
    a = attrs.get(_ORIGINATOR_ID)
    return None if a is None else a.address


def cluster_list(attrs: PathAttributes) -> tuple[IPv4Address, ...]:
    a = attrs.get(_CLUSTER_LIST)
    return () if a is None else tuple(a.ids)


def cluster_list_len(attrs: PathAttributes) -> int:
    a = attrs.get(_CLUSTER_LIST)
    return 0 if a is None else len(a.ids)


def route_targets(attrs: PathAttributes) -> tuple[RouteTarget, ...]:
    """The Route Target extended communities (RFC 4360 / 4364) of ``attrs``."""
    a = attrs.get(_EXT_COMMUNITIES)
    return () if a is None else a.route_targets()


# -- writes used by route reflection ------------------------------------------


def with_originator_id(attrs: PathAttributes, router_id: IPv4Address) -> PathAttributes:
    """``attrs`` with ORIGINATOR_ID set to ``router_id`` unless one is present (RFC 4456 8)."""
    if attrs.get(_ORIGINATOR_ID) is not None:
        return attrs
    return attrs.replace(OriginatorId(IPv4Address(router_id)))


def with_cluster_id(attrs: PathAttributes, cluster_id: IPv4Address) -> PathAttributes:
    """``attrs`` with ``cluster_id`` prepended to CLUSTER_LIST (created if absent)."""
    return attrs.replace(ClusterList((IPv4Address(cluster_id), *cluster_list(attrs))))


# -- the decision process's view of one attribute set --------------------------


class DecisionAttrs(NamedTuple):
    """What 9.1.2.2 reads from the attributes; ``med`` None when absent."""

    local_pref: int
    as_path_len: int
    origin: int
    neighbor_as: int | None
    med: int | None
    originator_id: int | None
    cluster_list_len: int


_DECISION_CACHE: dict[PathAttributes, DecisionAttrs] = {}
_DECISION_CACHE_MAX = 65536


def decision_attrs(attrs: PathAttributes) -> DecisionAttrs:
    """:class:`DecisionAttrs` of ``attrs``, cached per interned attribute set."""
    d = _DECISION_CACHE.get(attrs)
    if d is None:
        oid = originator_id(attrs)
        d = DecisionAttrs(
            local_pref(attrs),
            as_path_len(attrs),
            origin(attrs),
            neighbor_as(attrs),
            med(attrs),
            None if oid is None else int(oid),
            cluster_list_len(attrs),
        )
        if len(_DECISION_CACHE) >= _DECISION_CACHE_MAX:
            _DECISION_CACHE.clear()
        _DECISION_CACHE[attrs] = d
    return d


# -- outbound (Adj-RIB-Out) ------------------------------------------------------
#
# Adj-RIB-Out rewrites attribute sets on the way out. These are the only places
# it touches attribute classes; it caches the results per interned set.

_NEXT_HOP = int(AttrCode.NEXT_HOP)


def route_target_octets(attrs: PathAttributes) -> tuple[bytes, ...]:
    """The Route Targets of ``attrs`` as 8 wire octets each (what RTC matches on)."""
    return tuple(rt.encode() for rt in route_targets(attrs))


def is_originated_in_as(attrs: PathAttributes) -> bool:
    """True when the route entered no neighbouring AS: AS_PATH empty or absent
    (confederation segments aside). Such a route's MED is ours to send on."""
    return neighbor_as(attrs) is None and as_path_len(attrs) == 0


def for_external_peer(attrs: PathAttributes, local_asn: int, keep_med: bool) -> PathAttributes:
    """``attrs`` as sent over eBGP (RFC 4271 5.1.2, 5.1.4, 5.1.5; RFC 4456 8).

    The local AS is prepended to AS_PATH (created if absent); LOCAL_PREF,
    ORIGINATOR_ID and CLUSTER_LIST, which mean something only inside our AS,
    are dropped, and so is MED unless ``keep_med``.
    """
    drop = [_LOCAL_PREF, _ORIGINATOR_ID, _CLUSTER_LIST]
    if not keep_med:
        drop.append(_MED)
    path = attrs.get(_AS_PATH)
    new_path = AsPath.sequence(local_asn) if path is None else path.prepend(local_asn)
    return attrs.without(*drop).replace(new_path)


def with_default_local_pref(attrs: PathAttributes, value: int = 100) -> PathAttributes:
    """``attrs`` with LOCAL_PREF ``value`` unless one is present (RFC 4271 5.1.5)."""
    if attrs.get(_LOCAL_PREF) is not None:
        return attrs
    return attrs.replace(LocalPref(value))


def with_next_hop(attrs: PathAttributes, next_hop: IPv4Address | None) -> PathAttributes:
    """``attrs`` with the NEXT_HOP attribute ``next_hop``; None removes it (MP families
    carry the next hop in MP_REACH_NLRI and must not send the attribute)."""
    if next_hop is None:
        return attrs.without(_NEXT_HOP) if attrs.get(_NEXT_HOP) is not None else attrs
    cur = attrs.get(_NEXT_HOP)
    if cur is not None and cur.address == next_hop:
        return attrs
    return attrs.replace(NextHop(next_hop))


def with_partial_unknowns(attrs: PathAttributes) -> PathAttributes:
    """Unrecognised optional transitive attributes get the Partial bit when passed on
    (RFC 4271 5): a speaker on the path did not understand them."""
    changed = False
    out: list[PathAttribute] = []
    for a in attrs:
        if isinstance(a, UnknownAttribute):
            b = a.propagated()
            changed = changed or b is not a
            out.append(b)
        else:
            out.append(a)
    return PathAttributes(out) if changed else attrs
