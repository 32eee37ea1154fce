"""The standard outbound rewrites (RFC 4271 5.1, RFC 4456 8), as pure, cached functions.

What every BGP speaker must do to a path before sending it, whatever the
user's policy says; Adj-RIB-Out applies these first and the peer's export
policy (:mod:`vpe.policy`) after them:

* to eBGP: local AS prepended; LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST
  dropped; MED kept only for routes originated in our AS;
* reflected (iBGP to iBGP): ORIGINATOR_ID (the source's router id if
  absent) and our cluster id prepended to CLUSTER_LIST;
* local or eBGP-learned to iBGP: LOCAL_PREF 100 unless present;
* unrecognised transitive attributes of learned routes get Partial;
* NEXT_HOP is the outbound next hop for IPv4 unicast, absent otherwise.

Attribute sets are interned and shared by many routes, so results are
cached per (attribute set, kind of rewrite); a full table costs one
rewrite per distinct attribute set, not per route.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from . import attrs as A
from .path import PeerInfo
from .reflection import is_reflection, outbound_reflection_attributes

IPAddress = IPv4Address | IPv6Address

_CACHE_MAX = 65536


def outbound_next_hop(
    source_next_hop: IPAddress | None, ebgp: bool, next_hop_self: IPAddress | None
) -> IPAddress | None:
    """The next hop sent: ours (``next_hop_self``) to eBGP peers, the path's own over iBGP
    (ours when it has none). None: the path cannot be sent."""
    if ebgp:
        return next_hop_self if next_hop_self is not None else source_next_hop
    return source_next_hop if source_next_hop is not None else next_hop_self


class OutboundRewrites:
    """The standard rewrites of one speaker (its AS and cluster id), with their cache."""

    __slots__ = ("local_asn", "cluster_id", "_cache")

    def __init__(self, local_asn: int, cluster_id: IPv4Address) -> None:
        self.local_asn = local_asn
        self.cluster_id = cluster_id
        #: (attrs, kind) -> outbound attrs
        self._cache: dict[tuple[PathAttributes, tuple[Any, ...]], PathAttributes] = {}

    def attributes(
        self, attrs: PathAttributes, source: PeerInfo, to: PeerInfo, v4_next_hop: IPAddress | None
    ) -> PathAttributes:
        """Outbound attributes of ``attrs`` learned from ``source`` and sent to ``to``
        (a peer, or an update group's representative); see the module docstring."""
        ebgp = not to.ibgp
        if ebgp:
            kind: tuple[Any, ...] = ("ebgp", source.local, v4_next_hop)
        elif is_reflection(source, to):
            kind = ("reflect", source.router_id, v4_next_hop)
        else:
            kind = ("ibgp", source.local, v4_next_hop)
        key = (attrs, kind)
        out = self._cache.get(key)
        if out is not None:
            return out
        if ebgp:
            out = A.for_external_peer(attrs, self.local_asn, keep_med=A.is_originated_in_as(attrs))
        elif kind[0] == "reflect":
            out = outbound_reflection_attributes(attrs, source, to, self.cluster_id)
        else:
            out = A.with_default_local_pref(attrs)
        if not source.local:
            out = A.with_partial_unknowns(out)
        out = A.with_next_hop(out, v4_next_hop)  # type: ignore[arg-type]
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = out
        return out
