"""Loc-RIB of one family: destination key -> candidate paths, best path, multipath set.

Most destinations have exactly one path (one route reflector, or a route
only one peer knows). Such an entry is stored as that path's
:class:`PathSource`: the path is then the NLRI under the same key in the
source's Adj-RIB-In, and it is by definition the best and only multipath
member. No per-route object, no sort. A second path (or an ineligible one,
or an add-path route) turns the entry into a :class:`Destination` of
:class:`Path` objects; dropping back to one eligible path turns it into a
bare source again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import Nlri
from .decision import DecisionOptions, Rank, compute_rank, select
from .path import STALE, Path, PathSource

if TYPE_CHECKING:
    from .adj_rib_in import AdjRibIn


class Destination:
    """Candidate paths of one destination that has several (or none eligible)."""

    __slots__ = ("paths", "best", "multipath")

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.best: Path | None = None
        self.multipath: tuple[Path, ...] = ()

    def __repr__(self) -> str:
        return f"Destination(best={self.best!r}, paths={len(self.paths)})"


Entry = PathSource | Destination


class LocRib:
    """Best paths of one family. Written only through :class:`vpe.rib.rib.Rib`.

    :meth:`change` returns whether the best path or the multipath set of the
    destination changed, which is what callers batch into change events.
    """

    __slots__ = ("family", "options", "dests", "_token")

    def __init__(self, family: Family, options: DecisionOptions | None = None) -> None:
        self.family = family
        self.options = options if options is not None else DecisionOptions()
        #: key -> source of the sole path (then the best), or a Destination
        self.dests: dict[bytes, Entry] = {}
        self._token = object()

    # -- ranks ---------------------------------------------------------------

    def rank(self, source: PathSource) -> Rank | None:
        """Decision rank of ``source`` in this table, computed once per source."""
        if source.rank_owner is self._token:
            return source.rank
        r = compute_rank(source, self.options)
        source.rank = r
        source.rank_owner = self._token
        return r

    # -- reads ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.dests)

    def __contains__(self, key: object) -> bool:
        return key in self.dests

    def keys(self) -> Iterator[bytes]:
        return iter(self.dests)

    @staticmethod
    def _sole(key: bytes, src: PathSource) -> Path:
        adj = src.adj
        assert adj is not None
        return Path(adj.routes[key], src, STALE if key in adj.stale else 0)

    def best(self, key: bytes) -> Path | None:
        d = self.dests.get(key)
        if d is None:
            return None
        if type(d) is PathSource:
            return self._sole(key, d)
        return d.best  # type: ignore[union-attr]

    def multipath(self, key: bytes) -> tuple[Path, ...]:
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is PathSource:
            return (self._sole(key, d),)
        return d.multipath  # type: ignore[union-attr]

    def paths(self, key: bytes) -> tuple[Path, ...]:
        """Every candidate path of ``key``, eligible or not."""
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is PathSource:
            return (self._sole(key, d),)
        return tuple(d.paths)  # type: ignore[union-attr]

    def best_paths(self) -> Iterator[tuple[bytes, Path]]:
        """(key, best path) of every destination that has one."""
        for k, d in list(self.dests.items()):
            if type(d) is PathSource:
                yield k, self._sole(k, d)
            elif d.best is not None:  # type: ignore[union-attr]
                yield k, d.best  # type: ignore[union-attr]

    def path_of(self, adj: AdjRibIn, nlri: Nlri) -> Path | None:
        """The path ``adj`` holds as ``nlri`` (for reading an Adj-RIB-In)."""
        key = nlri.key
        d = self.dests.get(key)
        if d is None:
            return None
        if type(d) is PathSource:
            if d.adj is adj and nlri.path_id == 0:
                return Path(nlri, d, STALE if key in adj.stale else 0)
            return None
        for p in d.paths:  # type: ignore[union-attr]
            if p.nlri is nlri and p.source.adj is adj:
                return p
        return None

    # -- writes --------------------------------------------------------------

    def change(self, key: bytes, adj: AdjRibIn, old: Nlri | None, new: Path | None) -> bool:
        """Among ``key``'s paths, replace the one ``adj`` held as ``old`` by ``new``.

        Either may be None (a new route, a withdrawal). ``adj.routes`` must
        already hold ``new``'s NLRI. True if best or multipath changed.
        """
        dests = self.dests
        cur = dests.get(key)
        d: Destination | None = None
        if cur is None:
            paths: list[Path] = []
            old_best: Path | None = None
            old_mp: tuple[Path, ...] = ()
        elif type(cur) is PathSource:
            if old is not None and cur.adj is adj and old.path_id == 0:
                p = Path(old, cur)
            else:
                p = self._sole(key, cur)
            paths = [p]
            old_best, old_mp = p, (p,)
        else:
            d = cur  # type: ignore[assignment]
            paths = d.paths  # type: ignore[union-attr]
            old_best, old_mp = d.best, d.multipath  # type: ignore[union-attr]
        if old is not None:
            for i, p in enumerate(paths):
                if p.nlri is old and p.source.adj is adj:
                    del paths[i]
                    break
        if new is not None:
            paths.append(new)
        if not paths:
            if cur is not None:
                del dests[key]
            return old_best is not None
        return self._decide(key, d, paths, old_best, old_mp)

    def _decide(
        self,
        key: bytes,
        d: Destination | None,
        paths: list[Path],
        old_best: Path | None,
        old_mp: tuple[Path, ...],
    ) -> bool:
        best, mp = select(paths, self.rank, self.options.max_paths)
        if best is not None and len(paths) == 1 and self._storable(key, best):
            self.dests[key] = best.source
        else:
            if d is None:
                d = Destination(paths)
                self.dests[key] = d
            d.best = best
            d.multipath = mp
        return best != old_best or mp != old_mp

    @staticmethod
    def _storable(key: bytes, p: Path) -> bool:
        """Can ``p`` be kept as its bare source (found again through its Adj-RIB-In)?"""
        adj = p.source.adj
        return adj is not None and p.nlri.path_id == 0 and adj.routes.get(key) is p.nlri

    def set_flags(self, key: bytes, adj: AdjRibIn, nlri: Nlri, flags: int) -> None:
        """Update the flags snapshot of a path held in a Destination (stale marking)."""
        d = self.dests.get(key)
        if d is not None and type(d) is Destination:
            for p in d.paths:
                if p.nlri is nlri and p.source.adj is adj:
                    p.flags = flags
                    return

    def reevaluate(self) -> list[bytes]:
        """Rerun the decision everywhere (IGP costs or options changed); changed keys."""
        self._token = object()
        changed: list[bytes] = []
        for key, cur in list(self.dests.items()):
            if type(cur) is PathSource:
                if self.rank(cur) is None:
                    p = self._sole(key, cur)
                    d = Destination([p])
                    self.dests[key] = d
                    changed.append(key)
            else:
                d = cur  # type: ignore[assignment]
                if self._decide(key, d, d.paths, d.best, d.multipath):
                    changed.append(key)
        return changed
