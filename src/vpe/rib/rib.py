"""The RIB: Adj-RIBs-In of every peer and the Loc-RIB of every family, kept consistent.

This is the one writer of both tables: a route goes into its peer's
Adj-RIB-In and its family's Loc-RIB in the same step, and each batch (one
UPDATE, one peer going down, one stale sweep) yields the keys of the
destinations whose best path or multipath set changed, as a
:class:`RibChange` per family. Those are returned and also handed to
subscribers, so Adj-RIB-Out and VRF import can react in batches; nothing here
calls up into them. The RIB is pure: no I/O, no clock (graceful-restart
deadlines are times the caller passes in and compares).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from ..bgp.wire.errors import UpdateAction
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.update import Update
from .adj_rib_in import AdjRibIn, RouteKey
from .decision import DecisionOptions
from .loc_rib import Destination, LocRib
from .path import STALE, IPAddress, PathSource, PeerInfo, same_nlri
from .reflection import inbound_loop

log = logging.getLogger("vpe.rib")


def _all_keys(adj: AdjRibIn) -> list[tuple[bytes, int]]:
    return [(n.key, n.path_id) for n in adj.routes.values()]


@dataclass(frozen=True, slots=True)
class RibChange:
    """Destinations of ``family`` whose best path or multipath set changed, in order."""

    family: Family
    keys: tuple[bytes, ...]


Subscriber = Callable[[RibChange], None]


class Rib:
    """Adj-RIBs-In and Loc-RIBs of one routing instance (the global table, or a VRF).

    ``options`` is the decision process of every family unless ``family_options``
    names one. ``router_id``/``cluster_id``/``local_asn`` enable the inbound
    loop checks of :meth:`apply_update` (RFC 4456 8, RFC 4271 9.1.2): a route
    that fails them is treated as withdrawn.
    """

    def __init__(
        self,
        options: DecisionOptions | None = None,
        family_options: dict[Family, DecisionOptions] | None = None,
        *,
        router_id: IPv4Address | None = None,
        cluster_id: IPv4Address | None = None,
        local_asn: int | None = None,
    ) -> None:
        self.options = options if options is not None else DecisionOptions()
        self.family_options = dict(family_options or {})
        self.router_id = router_id
        self.cluster_id = cluster_id if cluster_id is not None else router_id
        self.local_asn = local_asn
        self._loc: dict[Family, LocRib] = {}
        self._adj: dict[IPAddress, dict[Family, AdjRibIn]] = {}
        self._subscribers: list[Subscriber] = []

    # -- tables --------------------------------------------------------------

    def loc_rib(self, family: Family) -> LocRib:
        loc = self._loc.get(family)
        if loc is None:
            loc = self._loc[family] = LocRib(family, self.family_options.get(family, self.options))
        return loc

    def families(self) -> list[Family]:
        return list(self._loc)

    def adj_rib_in(self, peer: IPAddress, family: Family) -> AdjRibIn | None:
        return self._adj.get(peer, {}).get(family)

    def adj_ribs_in(self, peer: IPAddress) -> list[AdjRibIn]:
        return list(self._adj.get(peer, {}).values())

    def _adj_for(self, peer: PeerInfo, family: Family) -> AdjRibIn:
        by_fam = self._adj.get(peer.address)
        if by_fam is None:
            by_fam = self._adj[peer.address] = {}
        adj = by_fam.get(family)
        if adj is None:
            adj = by_fam[family] = AdjRibIn(peer, family, self.loc_rib(family))
        elif adj.peer is not peer:
            adj.peer = peer
        return adj

    # -- events --------------------------------------------------------------

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` with every non-empty :class:`RibChange`; returns the unsubscriber."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def _emit(self, family: Family, keys: list[bytes]) -> RibChange | None:
        if not keys:
            return None
        change = RibChange(family, tuple(keys))
        for fn in tuple(self._subscribers):
            fn(change)
        return change

    # -- routes in -----------------------------------------------------------

    def announce(
        self,
        peer: PeerInfo,
        family: Family,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        nlris: Iterable[Nlri],
    ) -> list[bytes]:
        """Add or replace ``peer``'s routes ``nlris`` sharing ``attrs`` and ``next_hop``.

        Returns the changed destination keys (and emits them).
        """
        keys = self._announce(peer, family, attrs, next_hop, nlris)
        self._emit(family, keys)
        return keys

    def withdraw(self, peer: PeerInfo | IPAddress, family: Family, nlris: Iterable[Nlri]) -> list[bytes]:
        """Remove ``peer``'s routes ``nlris``; unknown ones are ignored. Changed keys."""
        keys = self._withdraw(peer, family, nlris)
        self._emit(family, keys)
        return keys

    def apply_update(self, peer: PeerInfo, update: Update) -> list[RibChange]:
        """Apply one decoded UPDATE from ``peer``: withdrawals first, then announcements.

        Routes failing the inbound loop checks are withdrawn instead (RFC 4456
        8 says to ignore them, and ignoring a replacement must not keep the
        route it replaces).
        """
        per_family: dict[Family, list[bytes]] = {}
        withdrawn: dict[Family, list[Nlri]] = {}
        for fam, n in update.withdrawn_routes():
            withdrawn.setdefault(fam, []).append(n)
        announced: dict[tuple[Family, IPAddress | None], list[Nlri]] = {}
        mp = update.mp_reach
        if mp is not None and not update.nlri and update.action < UpdateAction.TREAT_AS_WITHDRAW:
            if mp.nlri:  # the bulk case: one family, the decoder's list as is
                announced[(mp.family, mp.next_hop)] = mp.nlri
        else:
            for fam, n, nh in update.announced():
                announced.setdefault((fam, nh), []).append(n)
        attrs = update.attributes
        why = self._loops(peer, attrs) if announced else None
        if why is not None:
            log.info("peer %s: %s treated as withdrawn: %s", peer.address,
                     _prefixes_text([n for ns in announced.values() for n in ns]), why,
                     extra={"peer": str(peer.address)})
            for (fam, _), ns in announced.items():
                withdrawn.setdefault(fam, []).extend(ns)  # new lists: the UPDATE is untouched
            announced = {}
        for fam, ns in withdrawn.items():
            per_family.setdefault(fam, []).extend(self._withdraw(peer, fam, ns))
        for (fam, nh), ns in announced.items():
            per_family.setdefault(fam, []).extend(self._announce(peer, fam, attrs, nh, ns))
        # a key may change twice (withdrawn, then announced with a new next hop)
        dedupe = bool(withdrawn) or len(announced) > 1
        out: list[RibChange] = []
        for fam, keys in per_family.items():
            change = self._emit(fam, list(dict.fromkeys(keys)) if dedupe else keys)
            if change is not None:
                out.append(change)
        return out

    def _loops(self, peer: PeerInfo, attrs: PathAttributes) -> str | None:
        """Why ``peer``'s routes with ``attrs`` are a loop (None: they are not)."""
        if peer.local:
            return None
        return inbound_loop(attrs, self.router_id, self.cluster_id,
                            self.local_asn if not peer.ibgp else None, peer.allowas_in)

    def _announce(
        self,
        peer: PeerInfo,
        family: Family,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        nlris: Iterable[Nlri],
    ) -> list[bytes]:
        # The hot loop of a full-table load: flat, locals only, and in the
        # common case (path id 0, eligible next hop, no other path yet) two
        # dict insertions and no allocation per route.
        adj = self._adj_for(peer, family)
        loc = adj.loc
        src = PathSource(peer, attrs, next_hop, adj)
        eligible = loc.rank(src) is not None
        routes = adj.routes
        stale = adj.stale
        dests = loc.dests
        change = loc.change
        changed: list[bytes] = []
        append = changed.append
        last_src: PathSource | None = None
        last_same = False
        maybe_dup = False  # a key may be reported twice (add-path, repeated NLRI)
        for n in nlris:
            k = n.key
            pid = n.path_id
            if pid:
                maybe_dup = True
                rk: RouteKey = (k, pid)
                old = routes.get(rk)
                routes[rk] = n
            else:
                rk = k
                size = len(routes)
                old = routes.setdefault(k, n)
                if len(routes) != size:  # (not "old is n": n may be re-sent as is)
                    old = None
                    if eligible and dests.setdefault(k, src) is src:
                        append(k)
                        continue
                else:
                    routes[k] = n
            if old is None:
                if change(k, adj, None, n, src):
                    append(k)
                continue
            # A replacement. An unchanged re-announcement keeps the old route:
            # no event, and after a graceful restart it just stops being stale.
            cur = dests.get(k)
            osrc = cur if type(cur) is PathSource and cur.adj is adj and not pid else None
            if osrc is None:
                old_path = loc.path_of(adj, old)
                osrc = old_path.source if old_path is not None else None
            if osrc is src:
                maybe_dup = True
            if osrc is not None:
                if osrc is not last_src:
                    last_src = osrc
                    last_same = osrc.same(src)
                if last_same and same_nlri(old, n):
                    routes[rk] = old
                    if stale and rk in stale:
                        stale.discard(rk)
                        loc.set_flags(k, adj, old, 0)
                    continue
            if stale:
                stale.discard(rk)
            if eligible and osrc is cur and cur is not None:
                # sole path replaced by an eligible one: still sole, new best
                dests[k] = src
                append(k)
            elif change(k, adj, old, n, src):
                append(k)
        return list(dict.fromkeys(changed)) if maybe_dup else changed

    def _withdraw(self, peer: PeerInfo | IPAddress, family: Family, nlris: Iterable[Nlri]) -> list[bytes]:
        addr = peer.address if isinstance(peer, PeerInfo) else peer
        adj = self._adj.get(addr, {}).get(family)
        if adj is None:
            return []
        return self._remove(adj, ((n.key, n.path_id) for n in nlris))

    def _remove(self, adj: AdjRibIn, keys: Iterable[tuple[bytes, int]]) -> list[bytes]:
        """Remove ``adj``'s routes (key, path id); unknown ones are skipped. Changed keys."""
        routes = adj.routes
        stale = adj.stale
        loc = adj.loc
        dests = loc.dests
        change = loc.change
        changed: list[bytes] = []
        maybe_dup = False
        for k, pid in keys:
            if pid:
                maybe_dup = True
            rk: RouteKey = (k, pid) if pid else k
            old = routes.pop(rk, None)
            if old is None:
                continue
            if stale:
                stale.discard(rk)
            if not pid:
                cur = dests.get(k)
                if type(cur) is PathSource and cur.adj is adj:
                    del dests[k]
                    changed.append(k)
                    continue
            if change(k, adj, old, None):
                changed.append(k)
        return list(dict.fromkeys(changed)) if maybe_dup else changed

    # -- peers, graceful restart ------------------------------------------------

    def peer_down(self, peer: IPAddress, families: Iterable[Family] | None = None) -> list[RibChange]:
        """Drop every route of ``peer`` (session lost without graceful restart)."""
        by_fam = self._adj.get(peer)
        if not by_fam:
            return []
        out: list[RibChange] = []
        for fam in list(by_fam) if families is None else list(families):
            adj = by_fam.pop(fam, None)
            if adj is None:
                continue
            adj.stale_deadline = None
            change = self._emit(fam, self._remove(adj, _all_keys(adj)))
            if change is not None:
                out.append(change)
        if not by_fam:
            del self._adj[peer]
        return out

    def mark_stale(
        self, peer: IPAddress, deadline: float, families: Iterable[Family] | None = None
    ) -> int:
        """The session to ``peer`` dropped with graceful restart (RFC 4724 4.2).

        Its routes stay in use but are flagged STALE; those not re-announced
        are swept at End-of-RIB (:meth:`end_of_rib`) or when :meth:`sweep_expired`
        is called at or after ``deadline`` (the restart, later the stale,
        timer; the caller's clock). Families the peer did not preserve should
        be passed to :meth:`peer_down` instead. Best paths do not change, so
        there is no event. Returns the number of routes marked.
        """
        by_fam = self._adj.get(peer, {})
        n = 0
        for fam in list(by_fam) if families is None else list(families):
            adj = by_fam.get(fam)
            if adj is None:
                continue
            adj.stale = set(adj.routes)
            adj.stale_deadline = deadline
            n += len(adj.stale)
            dests = adj.loc.dests
            for nlri in adj.routes.values():
                if type(dests.get(nlri.key)) is Destination:
                    adj.loc.set_flags(nlri.key, adj, nlri, STALE)
        return n

    def set_stale_deadline(self, peer: IPAddress, family: Family, deadline: float) -> None:
        """Move the sweep deadline (e.g. from restart time to stale-path time on reconnect)."""
        adj = self.adj_rib_in(peer, family)
        if adj is not None and adj.stale_deadline is not None:
            adj.stale_deadline = deadline

    def end_of_rib(self, peer: IPAddress, family: Family) -> list[bytes]:
        """End-of-RIB from ``peer``: routes still STALE are withdrawn. Changed keys."""
        adj = self.adj_rib_in(peer, family)
        if adj is None:
            return []
        keys = self._sweep(adj)
        self._emit(family, keys)
        return keys

    sweep_stale = end_of_rib

    def _sweep(self, adj: AdjRibIn) -> list[bytes]:
        adj.stale_deadline = None
        stale = adj.stale
        gone = [(n.key, n.path_id) for rk, n in adj.routes.items() if rk in stale]  # in table order
        adj.stale = set()
        return self._remove(adj, gone)

    def next_stale_deadline(self) -> float | None:
        """The earliest pending sweep deadline, for the caller's timer."""
        ds = [
            a.stale_deadline
            for fams in self._adj.values()
            for a in fams.values()
            if a.stale_deadline is not None
        ]
        return min(ds) if ds else None

    def sweep_expired(self, now: float) -> list[RibChange]:
        """Sweep the stale routes of every (peer, family) whose deadline is <= ``now``."""
        per_family: dict[Family, list[bytes]] = {}
        for fams in list(self._adj.values()):
            for fam, adj in list(fams.items()):
                if adj.stale_deadline is not None and adj.stale_deadline <= now:
                    per_family.setdefault(fam, []).extend(self._sweep(adj))
        out: list[RibChange] = []
        for fam, keys in per_family.items():
            change = self._emit(fam, list(dict.fromkeys(keys)))
            if change is not None:
                out.append(change)
        return out

    # -- next hops -----------------------------------------------------------

    def reevaluate(self, families: Iterable[Family] | None = None) -> list[RibChange]:
        """Rerun the decision process (IGP costs or next-hop reachability changed)."""
        out: list[RibChange] = []
        for fam in list(self._loc) if families is None else list(families):
            loc = self._loc.get(fam)
            if loc is None:
                continue
            change = self._emit(fam, loc.reevaluate())
            if change is not None:
                out.append(change)
        return out


def _prefixes_text(nlris: list[Nlri], shown: int = 8) -> str:
    """The first ``shown`` routes of ``nlris`` for a log line, and how many more there are."""
    text = ", ".join(str(n) for n in nlris[:shown])
    return text if len(nlris) <= shown else f"{text} and {len(nlris) - shown} more"
