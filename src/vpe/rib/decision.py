"""The BGP decision process (RFC 4271 9.1.2.2, RFC 4456 9) as one sort key per source.

Each :class:`PathSource` gets one :class:`Rank`, computed once for all
routes of an UPDATE: the steps of 9.1.2.2 as a tuple, in order:

1. highest LOCAL_PREF, shortest AS_PATH (optional), lowest ORIGIN;
2. lowest MULTI_EXIT_DISC, compared only among routes from the same
   neighbour AS (or among all with ``always_compare_med``);
3. eBGP (and locally originated) over iBGP, lowest IGP cost to the next hop;
4. lowest router id (ORIGINATOR_ID when present), shortest CLUSTER_LIST,
   lowest peer address; then lowest path id, so add-path routes from one
   peer order deterministically.

Step 2 is not a total order: when the candidates come from several
neighbour ASes, selection falls back to the RFC's elimination, step by step.
Otherwise (the usual case: one neighbour AS, or always-compare-med) the best
path is simply the smallest key.

The multipath set is what survives steps 1-3, best first, cut to
``max_paths``. A next hop the IGP cannot reach (``igp_cost`` returns None)
makes the path ineligible (9.1.2.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from .attrs import decision_attrs
from .path import Path, PathSource

IPAddress = IPv4Address | IPv6Address

#: Value used for a missing MED when ``med_missing_as_worst`` is set.
MED_WORST = 0xFFFFFFFF + 1


def _zero_cost(next_hop: IPAddress | None) -> int | None:
    return 0


@dataclass(frozen=True, slots=True)
class DecisionOptions:
    """Per-table knobs of the decision process.

    ``igp_cost(next_hop)`` is the hook to the IGP (or to whatever resolves
    next hops: a tunnel table for VPN routes): a cost, or None when the next
    hop is unreachable. When it changes, call :meth:`LocRib.reevaluate`.
    """

    ignore_as_path_length: bool = False
    always_compare_med: bool = False
    med_missing_as_worst: bool = False
    max_paths: int = 1
    #: report a destination on any change of its paths, not only of its best /
    #: multipath set (what ADD-PATH "all" and best-N senders need)
    report_all_paths: bool = False
    igp_cost: Callable[[IPAddress | None], int | None] = _zero_cost

    def __post_init__(self) -> None:
        if self.max_paths < 1:
            raise ValueError(f"max_paths {self.max_paths}: must be at least 1")


class Rank(NamedTuple):
    """A source's sort key; smaller wins.

    ``key`` = (-LOCAL_PREF, AS_PATH length, ORIGIN, MED, iBGP?, IGP cost,
    router id, CLUSTER_LIST length, address family, peer address): when all
    candidates share one MED group, 9.1.2.2 is exactly the lexicographic
    order of ``key``. ``mp`` is ``key`` up to the router id (multipath
    equality). ``med_group`` is the neighbour AS (0 with always-compare-med).
    """

    key: tuple[int, ...]
    mp: tuple[int, ...]
    med_group: int | None


def compute_rank(source: PathSource, options: DecisionOptions) -> Rank | None:
    """The rank of ``source``, or None when its next hop is unreachable."""
    cost = options.igp_cost(source.next_hop)
    if cost is None:
        return None
    peer = source.peer
    d = decision_attrs(source.attrs)
    med = d.med
    if med is None:
        med = MED_WORST if options.med_missing_as_worst else 0
    rid = d.originator_id if d.originator_id is not None else int(peer.router_id)
    addr = peer.address
    mp = (
        -d.local_pref,
        0 if options.ignore_as_path_length else d.as_path_len,
        d.origin,
        med,
        1 if peer.ibgp and not peer.local else 0,
        cost,
    )
    key = (*mp, rid, d.cluster_list_len, addr.version, int(addr))
    return Rank(key, mp, 0 if options.always_compare_med else d.neighbor_as)


def select(
    paths: Sequence[Path], rank_of: Callable[[PathSource], Rank | None], max_paths: int = 1
) -> tuple[Path | None, tuple[Path, ...]]:
    """(best, multipath set) among ``paths``; (None, ()) when none is eligible."""
    if len(paths) == 2:  # two route reflectors: the common case, without the lists
        a, b = paths
        ra = rank_of(a.source)
        rb = rank_of(b.source)
        if ra is not None and rb is not None and ra.med_group == rb.med_group:
            ka, kb = ra.key, rb.key
            if ka < kb or (ka == kb and a.nlri.path_id <= b.nlri.path_id):
                return a, ((a, b) if max_paths > 1 and ra.mp == rb.mp else (a,))
            return b, ((b, a) if max_paths > 1 and ra.mp == rb.mp else (b,))
    # (sort key, path id, position, rank, path): the position keeps tuples
    # from ever comparing ranks or paths.
    cands: list[tuple[tuple[int, ...], int, int, Rank, Path]] = []
    group: object = _NO_GROUP
    mixed = False
    for i, p in enumerate(paths):
        r = rank_of(p.source)
        if r is None:
            continue
        if group is _NO_GROUP:
            group = r.med_group
        elif r.med_group != group:
            mixed = True
        cands.append((r.key, p.nlri.path_id, i, r, p))
    n = len(cands)
    if n <= 1:
        if not n:
            return None, ()
        p = cands[0][4]
        return p, (p,)
    if mixed:
        return _select_by_elimination(cands, max_paths)
    if max_paths == 1:
        p = min(cands)[4]
        return p, (p,)
    cands.sort()
    mp = cands[0][3].mp
    return cands[0][4], tuple(c[4] for c in cands[:max_paths] if c[3].mp == mp)


_NO_GROUP = object()


def _select_by_elimination(
    cands: list[tuple[tuple[int, ...], int, int, Rank, Path]], max_paths: int
) -> tuple[Path | None, tuple[Path, ...]]:
    """9.1.2.2 step by step, for candidates from several neighbour ASes (MED groups)."""
    # a) to c) LOCAL_PREF, AS_PATH length, ORIGIN
    m = min(c[0][:3] for c in cands)
    cands = [c for c in cands if c[0][:3] == m]
    # c) MED: remove a route when another from the same neighbour AS has a lower MED
    lowest: dict[int | None, int] = {}
    for c in cands:
        g = c[3].med_group
        med = c[0][3]
        cur = lowest.get(g)
        if cur is None or med < cur:
            lowest[g] = med
    cands = [c for c in cands if c[0][3] == lowest[c[3].med_group]]
    # d) onwards: eBGP over iBGP, IGP cost, then the tie-breakers
    cands.sort(key=lambda c: (c[0][4:], c[1], c[2]))
    best = cands[0]
    post = best[0][4:6]
    mp = tuple(c[4] for c in cands if c[0][4:6] == post)
    return best[4], mp[:max_paths]


#: the decision steps of :attr:`Rank.key`, by index: (code, what it means)
STEPS: tuple[tuple[str, str], ...] = (
    ("local_pref", "highest LOCAL_PREF (RFC 4271 9.1.2.2 a)"),
    ("as_path_length", "shortest AS_PATH (RFC 4271 9.1.2.2 a)"),
    ("origin", "lowest ORIGIN (RFC 4271 9.1.2.2 b)"),
    ("med", "lowest MULTI_EXIT_DISC from the same neighbour AS (RFC 4271 9.1.2.2 c)"),
    ("ebgp_over_ibgp", "eBGP or local over iBGP (RFC 4271 9.1.2.2 d)"),
    ("igp_cost", "lowest IGP cost to the next hop (RFC 4271 9.1.2.2 e)"),
    ("router_id", "lowest router id or ORIGINATOR_ID (RFC 4271 9.1.2.2 f, RFC 4456 9)"),
    ("cluster_list_length", "shortest CLUSTER_LIST (RFC 4456 9)"),
    ("peer_address", "lowest peer address (RFC 4271 9.1.2.2 g)"),
    ("peer_address", "lowest peer address (RFC 4271 9.1.2.2 g)"),
)
#: the reasons that are not a step
ONLY_PATH = ("only_path", "the only eligible path")
PATH_ID = ("path_id", "lowest ADD-PATH path identifier (same sender, RFC 7911)")


def best_path_reason(
    best: Path, paths: Sequence[Path], rank_of: Callable[[PathSource], Rank | None]
) -> dict[str, str]:
    """Why ``best`` won among ``paths``: the decision step that set it apart from
    the runner-up (the latest step needed against any eligible competitor).

    Returns ``{"step": code, "text": explanation}``; code is one of
    :data:`STEPS`' codes, ``only_path`` or ``path_id``.
    """
    rb = rank_of(best.source)
    latest = -1
    for p in paths:
        if p == best:
            continue
        rp = rank_of(p.source)
        if rb is None or rp is None:
            continue  # ineligible (next hop unreachable): never a competitor
        step = len(rb.key)
        for i, (a, b) in enumerate(zip(rb.key, rp.key, strict=True)):
            if i == 3 and rb.med_group != rp.med_group:
                continue  # MED is compared only within one neighbour AS
            if a != b:
                step = i
                break
        latest = max(latest, step)
    if latest < 0:
        code, text = ONLY_PATH
    elif latest >= len(STEPS):
        code, text = PATH_ID
    else:
        code, text = STEPS[latest]
    return {"step": code, "text": text}
