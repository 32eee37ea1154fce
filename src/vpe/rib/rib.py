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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.update import Update
from .adj_rib_in import AdjRibIn
from .decision import DecisionOptions
from .loc_rib import LocRib
from .path import STALE, IPAddress, Path, PathSource, PeerInfo
from .reflection import inbound_loop

_NOT_STALE = ~STALE


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
            adj = by_fam[family] = AdjRibIn(peer, family)
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
        for fam, n, nh in update.announced():
            announced.setdefault((fam, nh), []).append(n)
        attrs = update.attributes
        if announced and self._loops(peer, attrs):
            for (fam, _), ns in announced.items():
                withdrawn.setdefault(fam, []).extend(ns)
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

    def _loops(self, peer: PeerInfo, attrs: PathAttributes) -> bool:
        if peer.local:
            return False
        return (
            inbound_loop(attrs, self.router_id, self.cluster_id, self.local_asn if not peer.ibgp else None)
            is not None
        )

    def _announce(
        self,
        peer: PeerInfo,
        family: Family,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        nlris: Iterable[Nlri],
    ) -> list[bytes]:
        # The hot loop of a full-table load: keep it flat, locals only.
        adj = self._adj_for(peer, family)
        loc = self.loc_rib(family)
        src = PathSource(peer, attrs, next_hop)
        fast = loc.rank(src) is not None
        routes = adj.routes
        dests = loc.dests
        update = loc.update
        changed: list[bytes] = []
        append = changed.append
        last_src: PathSource | None = None
        last_same = False
        for n in nlris:
            k = n.key
            pid = n.path_id
            rk = (k, pid) if pid else k
            p = Path(n, src)
            old = routes.setdefault(rk, p)
            if old is p:
                if (fast and dests.setdefault(k, p) is p) or update(k, p, None):
                    append(k)
                continue
            # a replacement: an unchanged re-announcement keeps the old path
            # (a graceful restart's refresh then only clears STALE)
            osrc = old.source
            if osrc is not last_src:
                last_src = osrc
                last_same = osrc.same(src)
            if last_same and (old.nlri is n or old.nlri == n):
                old.flags &= _NOT_STALE
                continue
            routes[rk] = p
            if update(k, p, old):
                append(k)
        return changed

    def _withdraw(self, peer: PeerInfo | IPAddress, family: Family, nlris: Iterable[Nlri]) -> list[bytes]:
        addr = peer.address if isinstance(peer, PeerInfo) else peer
        adj = self._adj.get(addr, {}).get(family)
        if adj is None:
            return []
        loc = self.loc_rib(family)
        routes = adj.routes
        dests = loc.dests
        changed: list[bytes] = []
        for n in nlris:
            k = n.key
            pid = n.path_id
            old = routes.pop((k, pid) if pid else k, None)
            if old is None:
                continue
            if dests.get(k) is old:
                del dests[k]
                changed.append(k)
            elif loc.update(k, None, old):
                changed.append(k)
        return changed

    def _remove_paths(self, adj: AdjRibIn, paths: Iterable[Path]) -> list[bytes]:
        loc = self.loc_rib(adj.family)
        routes = adj.routes
        dests = loc.dests
        changed: list[bytes] = []
        for p in paths:
            n = p.nlri
            k = n.key
            pid = n.path_id
            rk = (k, pid) if pid else k
            if routes.get(rk) is not p:
                continue
            del routes[rk]
            if dests.get(k) is p:
                del dests[k]
                changed.append(k)
            elif loc.update(k, None, p):
                changed.append(k)
        return changed

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
            change = self._emit(fam, self._remove_paths(adj, list(adj.routes.values())))
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
        be passed to :meth:`peer_down` instead. Returns the number of paths.
        """
        by_fam = self._adj.get(peer, {})
        n = 0
        for fam in list(by_fam) if families is None else list(families):
            adj = by_fam.get(fam)
            if adj is not None:
                n += adj.mark_stale()
                adj.stale_deadline = deadline
        return n

    def set_stale_deadline(self, peer: IPAddress, family: Family, deadline: float) -> None:
        """Move the sweep deadline (e.g. from restart time to stale-path time on reconnect)."""
        adj = self.adj_rib_in(peer, family)
        if adj is not None and adj.stale_deadline is not None:
            adj.stale_deadline = deadline

    def end_of_rib(self, peer: IPAddress, family: Family) -> list[bytes]:
        """End-of-RIB from ``peer``: paths still STALE are withdrawn. Changed keys."""
        adj = self.adj_rib_in(peer, family)
        if adj is None:
            return []
        adj.stale_deadline = None
        keys = self._remove_paths(adj, adj.stale_paths())
        self._emit(family, keys)
        return keys

    sweep_stale = end_of_rib

    def next_stale_deadline(self) -> float | None:
        """The earliest pending sweep deadline, for the caller's timer."""
        ds = [a.stale_deadline for fams in self._adj.values() for a in fams.values() if a.stale_deadline is not None]
        return min(ds) if ds else None

    def sweep_expired(self, now: float) -> list[RibChange]:
        """Sweep the stale paths of every (peer, family) whose deadline is <= ``now``."""
        out: list[RibChange] = []
        for fams in list(self._adj.values()):
            for fam, adj in list(fams.items()):
                if adj.stale_deadline is not None and adj.stale_deadline <= now:
                    adj.stale_deadline = None
                    change = self._emit(fam, self._remove_paths(adj, adj.stale_paths()))
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
