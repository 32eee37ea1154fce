"""The BGP decision process (RFC 4271 9.1.2.2, RFC 4456 9) as ranks and eliminations.

9.1.2.2 is written as a sequence of eliminations, and all but one step is a
plain "keep the minimum of some value". So each :class:`PathSource` gets one
:data:`Rank` tuple, computed once for all routes of an UPDATE, and selection
is a few ``min`` passes over the candidates' ranks:

1. ``pre``: highest LOCAL_PREF, shortest AS_PATH (optional), lowest ORIGIN;
2. MED: lowest MULTI_EXIT_DISC among routes from the same neighbour AS (or
   among all with ``always_compare_med``). This step is not a total order,
   which is why the rank keeps it apart instead of folding it into a key;
3. ``post``: eBGP (and locally originated) over iBGP, lowest IGP cost to the
   next hop;
4. ``tie``: lowest router id (ORIGINATOR_ID when present), shortest
   CLUSTER_LIST, lowest peer address; then lowest path id, so add-path
   routes from one peer order deterministically.

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
    igp_cost: Callable[[IPAddress | None], int | None] = _zero_cost

    def __post_init__(self) -> None:
        if self.max_paths < 1:
            raise ValueError(f"max_paths {self.max_paths}: must be at least 1")


class Rank(NamedTuple):
    """A source's position in each elimination step; smaller wins everywhere."""

    pre: tuple[int, int, int]
    med_group: int | None
    med: int
    post: tuple[int, int]
    tie: tuple[int, int, int, int]


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
    return Rank(
        (-d.local_pref, 0 if options.ignore_as_path_length else d.as_path_len, d.origin),
        0 if options.always_compare_med else d.neighbor_as,
        med,
        (1 if peer.ibgp and not peer.local else 0, cost),
        (rid, d.cluster_list_len, addr.version, int(addr)),
    )


def select(
    paths: Sequence[Path], rank_of: Callable[[PathSource], Rank | None], max_paths: int = 1
) -> tuple[Path | None, tuple[Path, ...]]:
    """(best, multipath set) among ``paths``; (None, ()) when none is eligible."""
    cands: list[tuple[Rank, Path]] = []
    for p in paths:
        r = rank_of(p.source)
        if r is not None:
            cands.append((r, p))
    if len(cands) <= 1:
        if not cands:
            return None, ()
        p = cands[0][1]
        return p, (p,)
    # 1. LOCAL_PREF, AS_PATH length, ORIGIN
    m = min(c[0].pre for c in cands)
    cands = [c for c in cands if c[0].pre == m]
    # 2. MED, per neighbour AS (RFC 4271 9.1.2.2 c: remove a route if another
    #    route from the same neighbour AS has a lower MED).
    if len(cands) > 1:
        lowest: dict[int | None, int] = {}
        for r, _ in cands:
            g = r.med_group
            cur = lowest.get(g)
            if cur is None or r.med < cur:
                lowest[g] = r.med
        cands = [c for c in cands if c[0].med == lowest[c[0].med_group]]
    # 3. eBGP over iBGP, IGP cost
    if len(cands) > 1:
        m2 = min(c[0].post for c in cands)
        cands = [c for c in cands if c[0].post == m2]
    # 4. router id, CLUSTER_LIST length, peer address, path id
    if len(cands) > 1:
        cands.sort(key=lambda c: (c[0].tie, c[1].nlri.path_id))
    best = cands[0][1]
    if max_paths == 1:
        return best, (best,)
    return best, tuple(c[1] for c in cands[:max_paths])
