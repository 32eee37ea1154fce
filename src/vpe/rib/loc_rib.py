"""Loc-RIB of one family: destination key -> candidate paths, best path, multipath set.

An entry takes the lightest of three forms that can hold it:

* a :class:`PathSource`: the destination has one path, eligible, path id 0
  (one route reflector, or a route only one peer knows). The path is the
  NLRI under the same key in the source's Adj-RIB-In; it is the best and
  the only multipath member. No per-route object, no sort.
* a tuple of sources, best first: several such paths in one MED group
  (two route reflectors). Still no Path objects; the order is the rank order.
* a :class:`Destination` of :class:`Path` objects: anything else (add-path,
  unreachable next hops, several neighbour ASes).

Every write recomputes the selection and moves the entry to the lightest
form that fits; reads make Path objects on demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import Nlri
from .decision import DecisionOptions, Rank, compute_rank, select
from .path import STALE, Path, PathSource, ReceivedRoutes


class Destination(list[Path]):
    """Candidate paths of one destination that has several (or none eligible).

    A list subclass (one object, not a list inside an object) because a
    table with two route reflectors has one of these per destination.
    """

    __slots__ = ("best", "multipath")

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        super().__init__(paths)
        self.best: Path | None = None
        self.multipath: tuple[Path, ...] = ()

    @property
    def paths(self) -> list[Path]:
        return self

    def __repr__(self) -> str:
        return f"Destination(best={self.best!r}, paths={len(self)})"


Entry = PathSource | tuple[PathSource, ...] | Destination


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

    def _ranked(self, key: bytes, srcs: tuple[PathSource, ...], count: int | None = None) -> list[Path]:
        """Paths of a tuple entry (the first ``count``), made on demand."""
        sole = self._sole
        return [sole(key, s) for s in (srcs if count is None else srcs[:count])]

    def _mp_count(self, srcs: Sequence[PathSource]) -> int:
        """How many sources of a ranked entry form its multipath set (a prefix).

        Reads the ranks cached on the sources: those the entry was sorted by.
        """
        max_paths = self.options.max_paths
        if max_paths == 1 or len(srcs) == 1:
            return 1
        mp = srcs[0].rank.mp
        k = 1
        for s in srcs[1:max_paths]:
            if s.rank.mp != mp:
                break
            k += 1
        return k

    def best(self, key: bytes) -> Path | None:
        d = self.dests.get(key)
        if d is None:
            return None
        if type(d) is PathSource:
            return self._sole(key, d)
        if type(d) is tuple:
            return self._sole(key, d[0])
        return d.best  # type: ignore[union-attr]

    def multipath(self, key: bytes) -> tuple[Path, ...]:
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is PathSource:
            return (self._sole(key, d),)
        if type(d) is tuple:
            return tuple(self._ranked(key, d, self._mp_count(d)))
        return d.multipath  # type: ignore[union-attr]

    def paths(self, key: bytes) -> tuple[Path, ...]:
        """Every candidate path of ``key``, eligible or not."""
        d = self.dests.get(key)
        if d is None:
            return ()
        if type(d) is PathSource:
            return (self._sole(key, d),)
        if type(d) is tuple:
            return tuple(self._ranked(key, d))
        return tuple(d)  # type: ignore[arg-type]

    def best_paths(self) -> Iterator[tuple[bytes, Path]]:
        """(key, best path) of every destination that has one."""
        for k, d in list(self.dests.items()):
            if type(d) is PathSource:
                yield k, self._sole(k, d)
            elif type(d) is tuple:
                yield k, self._sole(k, d[0])
            elif d.best is not None:  # type: ignore[union-attr]
                yield k, d.best  # type: ignore[union-attr]

    def path_of(self, adj: ReceivedRoutes, nlri: Nlri) -> Path | None:
        """The path ``adj`` holds as ``nlri`` (for reading an Adj-RIB-In)."""
        key = nlri.key
        d = self.dests.get(key)
        if d is None:
            return None
        if isinstance(d, Destination):
            for p in d:
                if p.nlri is nlri and p.source.adj is adj:
                    return p
            return None
        if nlri.path_id == 0:
            for s in (d,) if isinstance(d, PathSource) else d:
                if s.adj is adj:
                    return Path(nlri, s, STALE if key in adj.stale else 0)
        return None

    # -- writes --------------------------------------------------------------

    def change(
        self,
        key: bytes,
        adj: ReceivedRoutes,
        old: Nlri | None,
        new: Nlri | None = None,
        source: PathSource | None = None,
    ) -> bool:
        """Among ``key``'s paths, replace the one ``adj`` held as ``old`` by ``new`` from ``source``.

        ``old`` or ``new`` may be None (a new route, a withdrawal).
        ``adj.routes`` must already hold ``new``. True if best or multipath
        changed (or, with ``report_all_paths``, if any path changed).
        """
        changed = self._change(key, adj, old, new, source)
        if self.options.report_all_paths and (old is not None or (new is not None and source is not None)):
            return True
        return changed

    def _change(
        self,
        key: bytes,
        adj: ReceivedRoutes,
        old: Nlri | None,
        new: Nlri | None = None,
        source: PathSource | None = None,
    ) -> bool:
        dests = self.dests
        cur = dests.get(key)
        old_best: Path | None
        old_mp: tuple[Path, ...]
        if cur is None:
            if new is None or source is None:
                return False
            d = Destination((Path(new, source),))
            old_best, old_mp = None, ()
        elif type(cur) is Destination:
            d = cur
            old_best, old_mp = d.best, d.multipath
            if old is not None:
                for i, p in enumerate(d):
                    if p.nlri is old and p.source.adj is adj:
                        del d[i]
                        break
            if new is not None and source is not None:
                d.append(Path(new, source))
            if not d:
                del dests[key]
                return old_best is not None
        else:
            srcs: tuple[PathSource, ...] = (cur,) if type(cur) is PathSource else cur  # type: ignore[assignment]
            if (old is None or old.path_id == 0) and (new is None or new.path_id == 0):
                r = self._change_ranked(key, srcs, adj, old, source if new is not None else None)
                if r is not None:
                    return r
            # the result does not fit the light forms: go through Path objects
            paths = [
                Path(old, s) if (old is not None and s.adj is adj and old.path_id == 0) else self._sole(key, s)
                for s in srcs
            ]
            old_best, old_mp = paths[0], tuple(paths[: self._mp_count(srcs)])
            if old is not None:
                paths = [p for p in paths if p.nlri is not old or p.source.adj is not adj]
            if new is not None and source is not None:
                paths.append(Path(new, source))
            if not paths:
                del dests[key]
                return True
            d = Destination(paths)
        return self._decide(key, d, old_best, old_mp)

    def _change_ranked(
        self,
        key: bytes,
        srcs: tuple[PathSource, ...],
        adj: ReceivedRoutes,
        old: Nlri | None,
        new: PathSource | None,
    ) -> bool | None:
        """:meth:`change` staying within the light forms; None if the result does not fit."""
        k_before = self._mp_count(srcs)
        before = [(s, old if s.adj is adj and old is not None else s.adj.routes[key]) for s in srcs[:k_before]]  # type: ignore[union-attr]
        left = list(srcs)
        if old is not None:
            for i, s in enumerate(left):
                if s.adj is adj:
                    del left[i]
                    break
            else:
                return None
        if new is not None:
            left.append(new)
        if not left:
            del self.dests[key]
            return True
        rank = self.rank
        group: object = _NO_GROUP
        for s in left:
            r = rank(s)
            if r is None:
                return None
            if group is _NO_GROUP:
                group = r.med_group
            elif r.med_group != group:
                return None
        if len(left) == 1:
            self.dests[key] = left[0]
        else:
            left.sort(key=_rank_key)
            self.dests[key] = tuple(left)
        if self._mp_count(left) != k_before:
            return True
        for (s0, n0), s in zip(before, left, strict=False):
            if s0 is not s or n0 is not s.adj.routes[key]:  # type: ignore[union-attr]
                return True
        return False

    def _decide(
        self,
        key: bytes,
        d: Destination,
        old_best: Path | None,
        old_mp: tuple[Path, ...],
    ) -> bool:
        best, mp = select(d, self.rank, self.options.max_paths)
        dests = self.dests
        light = self._light_form(key, d) if best is not None else None
        if light is not None:
            dests[key] = light
        else:
            d.best = best
            d.multipath = mp
            if dests.get(key) is not d:
                dests[key] = d
        if best is not old_best and best != old_best:
            return True
        return mp is not old_mp and mp != old_mp

    def _light_form(self, key: bytes, d: Destination) -> PathSource | tuple[PathSource, ...] | None:
        """The source (one path) or ranked sources (several) standing for ``d``, if any."""
        group: object = _NO_GROUP
        for p in d:
            if not self._storable(key, p):
                return None
            r = self.rank(p.source)
            if r is None:
                return None
            if group is _NO_GROUP:
                group = r.med_group
            elif r.med_group != group:
                return None
        if len(d) == 1:
            return d[0].source
        return tuple(sorted((p.source for p in d), key=_rank_key))

    @staticmethod
    def _storable(key: bytes, p: Path) -> bool:
        """Can ``p`` be kept as its bare source (found again through its Adj-RIB-In)?"""
        adj = p.source.adj
        return adj is not None and p.nlri.path_id == 0 and adj.routes.get(key) is p.nlri

    def set_flags(self, key: bytes, adj: ReceivedRoutes, nlri: Nlri, flags: int) -> None:
        """Update the flags snapshot of a path held in a Destination (stale marking)."""
        d = self.dests.get(key)
        if d is not None and type(d) is Destination:
            for p in d.paths:
                if p.nlri is nlri and p.source.adj is adj:
                    p.flags = flags
                    return

    def reevaluate(self) -> list[bytes]:
        """Rerun the decision everywhere (IGP costs or options changed); changed keys."""
        # multipath sizes of the ranked entries under the old ranks, taken before
        # any source (shared by many entries) is re-ranked
        entries = list(self.dests.items())
        old_counts = {k: self._mp_count(c) for k, c in entries if type(c) is tuple}
        self._token = object()
        changed: list[bytes] = []
        for key, cur in entries:
            if isinstance(cur, PathSource):
                if self.rank(cur) is None:
                    self.dests[key] = Destination((self._sole(key, cur),))
                    changed.append(key)
            elif isinstance(cur, tuple):
                paths = self._ranked(key, cur)  # ordered by the old ranks
                old_mp = tuple(paths[: old_counts[key]])
                if self._decide(key, Destination(paths), paths[0], old_mp):
                    changed.append(key)
            elif self._decide(key, cur, cur.best, cur.multipath):
                changed.append(key)
        return changed


_NO_GROUP = object()


def _rank_key(s: PathSource) -> tuple[int, ...]:
    return s.rank.key
