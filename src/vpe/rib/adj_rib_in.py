"""Adj-RIB-In: the routes one peer sent in one family, as received (after import policy).

Routes are indexed by :func:`route_key`: the NLRI key alone when the path id
is 0 (the common case: no tuple per route), ``(key, path_id)`` with add-path
(RFC 7911). The two forms never collide since bytes never equal a tuple.
The table maps each route key to its NLRI; the route's source (attributes,
next hop) is found through the family's Loc-RIB, which holds every route
exactly once (see :mod:`vpe.rib.loc_rib`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import Nlri
from .path import Path, PeerInfo, RouteKey, nlri_route_key, route_key

if TYPE_CHECKING:
    from .loc_rib import LocRib

__all__ = ["AdjRibIn", "RouteKey", "nlri_route_key", "route_key"]


class AdjRibIn:
    """Routes from one peer in one family. Written only through :class:`vpe.rib.rib.Rib`."""

    __slots__ = ("peer", "family", "loc", "routes", "stale", "stale_deadline")

    def __init__(self, peer: PeerInfo, family: Family, loc: LocRib) -> None:
        self.peer = peer
        self.family = family
        self.loc = loc
        #: route_key -> NLRI as last received
        self.routes: dict[RouteKey, Nlri] = {}
        #: route keys still STALE since the last graceful restart (RFC 4724)
        self.stale: set[RouteKey] = set()
        #: when stale routes are swept if no End-of-RIB came first (caller's clock)
        self.stale_deadline: float | None = None

    def __len__(self) -> int:
        return len(self.routes)

    def __contains__(self, rk: object) -> bool:
        return rk in self.routes

    def get(self, key: bytes, path_id: int = 0) -> Path | None:
        n = self.routes.get((key, path_id) if path_id else key)
        return None if n is None else self.loc.path_of(self, n)

    def __iter__(self) -> Iterator[Path]:
        path_of = self.loc.path_of
        for n in list(self.routes.values()):
            p = path_of(self, n)
            if p is not None:
                yield p

    def nlris(self) -> Iterator[Nlri]:
        return iter(self.routes.values())

    def __repr__(self) -> str:
        return f"AdjRibIn({self.peer.address}, {self.family}, {len(self.routes)} routes)"
