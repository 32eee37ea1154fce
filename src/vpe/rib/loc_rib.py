"""Loc-RIB of one family: destination key -> candidate paths, best path, multipath set.

Most destinations have exactly one path (one route reflector, or a route
only one peer knows). Those are stored as the bare :class:`Path`, which is
then by definition the best and only multipath member: no object, no sort.
A second path turns the entry into a :class:`Destination`; dropping back to
one reachable path turns it into a bare path again.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bgp.wire.constants import Family
from .decision import DecisionOptions, Rank, compute_rank, select
from .path import Path, PathSource


class Destination:
    """Candidate paths of one destination with more than one path (or none usable)."""

    __slots__ = ("paths", "best", "multipath")

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.best: Path | None = None
        self.multipath: tuple[Path, ...] = ()

    def __repr__(self) -> str:
        return f"Destination(best={self.best!r}, paths={len(self.paths)})"


class LocRib:
    """Best paths of one family. Written only through :class:`vpe.rib.rib.Rib`.

    The mutators return whether the best path or the multipath set of the
    destination changed, which is what callers batch into change events.
    """

    __slots__ = ("family", "options", "dests", "_token")

    def __init__(self, family: Family, options: DecisionOptions | None = None) -> None:
        self.family = family
        self.options = options if options is not None else DecisionOptions()
        #: key -> the sole path (then the best), or a Destination
        self.dests: dict[bytes, Path | Destination] = {}
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

    def best(self, key: bytes) -> Path | None:
        d = self.dests.get(key)
        if d is None or type(d) is Path:
            return d
        return d.best  # type: ignore[union-attr]

    def multipath(self, key: bytes) -> tuple[Path, ...]:
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is Path:
            return (d,)
        return d.multipath  # type: ignore[union-attr]

    def paths(self, key: bytes) -> tuple[Path, ...]:
        """Every candidate path of ``key``, usable or not."""
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is Path:
            return (d,)
        return tuple(d.paths)  # type: ignore[union-attr]

    def best_paths(self) -> Iterator[tuple[bytes, Path]]:
        """(key, best path) of every destination that has one."""
        for k, d in self.dests.items():
            if type(d) is Path:
                yield k, d
            elif d.best is not None:  # type: ignore[union-attr]
                yield k, d.best  # type: ignore[union-attr]

    # -- writes --------------------------------------------------------------

    def update(self, key: bytes, new: Path | None, old: Path | None) -> bool:
        """Replace ``old`` by ``new`` among ``key``'s paths (either may be None).

        ``old`` is the path the same (peer, path id) had before; the caller
        (the Adj-RIB-In) knows it. Returns True if best or multipath changed.
        """
        dests = self.dests
        cur = dests.get(key)
        if cur is None:
            if new is None:
                return False
            if self.rank(new.source) is not None:
                dests[key] = new
                return True
            dests[key] = Destination([new])
            return False
        if type(cur) is Path:
            if cur is old:
                if new is None:
                    del dests[key]
                    return True
                if self.rank(new.source) is not None:
                    dests[key] = new
                else:
                    dests[key] = Destination([new])
                return True
            if new is None:
                return False
            d = Destination([cur, new])
            d.best = cur
            d.multipath = (cur,)
            dests[key] = d
            return self._decide(key, d)
        d = cur  # type: ignore[assignment]
        paths = d.paths
        if old is not None:
            for i, p in enumerate(paths):
                if p is old:
                    if new is None:
                        del paths[i]
                    else:
                        paths[i] = new
                        new = None
                    break
        if new is not None:
            paths.append(new)
        if not paths:
            del dests[key]
            return d.best is not None
        return self._decide(key, d)

    def _decide(self, key: bytes, d: Destination) -> bool:
        old_best, old_mp = d.best, d.multipath
        best, mp = select(d.paths, self.rank, self.options.max_paths)
        d.best = best
        d.multipath = mp
        if best is not None and len(d.paths) == 1:
            self.dests[key] = best
        return best is not old_best or mp != old_mp

    def reevaluate(self) -> list[bytes]:
        """Rerun the decision everywhere (IGP costs or options changed); changed keys."""
        self._token = object()
        changed: list[bytes] = []
        for key, cur in list(self.dests.items()):
            if type(cur) is Path:
                if self.rank(cur.source) is None:
                    d = Destination([cur])
                    self.dests[key] = d
                    changed.append(key)
            elif self._decide(key, cur):  # type: ignore[arg-type]
                changed.append(key)
        return changed
