"""Adj-RIB-In: the routes one peer sent in one family, as received (after import policy).

Routes are indexed by :func:`route_key`: the NLRI key alone when the path id
is 0 (the common case, no tuple per route), ``(key, path_id)`` with add-path
(RFC 7911). The two forms never collide since bytes never equal a tuple.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import Nlri
from .path import STALE, Path, PeerInfo

RouteKey = bytes | tuple[bytes, int]


def route_key(key: bytes, path_id: int = 0) -> RouteKey:
    return (key, path_id) if path_id else key


def nlri_route_key(nlri: Nlri) -> RouteKey:
    pid = nlri.path_id
    return (nlri.key, pid) if pid else nlri.key


class AdjRibIn:
    """Paths from one peer in one family. Written only through :class:`vpe.rib.rib.Rib`."""

    __slots__ = ("peer", "family", "routes", "stale_deadline")

    def __init__(self, peer: PeerInfo, family: Family) -> None:
        self.peer = peer
        self.family = family
        #: route_key -> Path
        self.routes: dict[RouteKey, Path] = {}
        #: when stale paths are swept if no End-of-RIB came first (caller's clock); None: no stale
        self.stale_deadline: float | None = None

    def __len__(self) -> int:
        return len(self.routes)

    def __iter__(self) -> Iterator[Path]:
        return iter(self.routes.values())

    def get(self, key: bytes, path_id: int = 0) -> Path | None:
        return self.routes.get((key, path_id) if path_id else key)

    def mark_stale(self) -> int:
        """Flag every path STALE (RFC 4724 4.2); returns how many."""
        for p in self.routes.values():
            p.flags |= STALE
        return len(self.routes)

    def stale_paths(self) -> list[Path]:
        return [p for p in self.routes.values() if p.flags & STALE]

    def __repr__(self) -> str:
        return f"AdjRibIn({self.peer.address}, {self.family}, {len(self.routes)} routes)"
