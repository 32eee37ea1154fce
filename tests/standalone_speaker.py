"""A vpe speaker that keeps its own small tables: the test peer of unit and interop tests.

The product :class:`~vpe.bgp.speaker.Speaker` runs listeners and peers and
hands every session event to a handler (the agent's engine, in the product).
Tests often need the other end of a session without an engine: something
that announces a few routes and remembers what the peer sent.
:class:`StandaloneSpeaker` is that handler - per peer an Adj-RIB-In (what
the peer announced, after RFC 7606 handling), a table of locally originated
routes sent to every established peer of a matching family followed by
End-of-RIB, and route events for subscribers - around a real ``Speaker``.

Importable from any test as ``standalone_speaker`` (``tests/`` is on the
path through its ``conftest.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from vpe.bgp.session import Peer, PeerSettings
from vpe.bgp.speaker import Speaker
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.constants import Family
from vpe.bgp.wire.nlri.base import IPAddress, Nlri
from vpe.bgp.wire.update import Update, end_of_rib, pack_announcements, pack_withdrawals

log = logging.getLogger("tests.standalone_speaker")


@dataclass(slots=True)
class Route:
    """One path: the NLRI value, its shared attribute set, and its next hop."""

    family: Family
    nlri: Nlri
    attributes: PathAttributes
    next_hop: IPAddress | None
    peer: str | None = None  # None: originated here

    def to_json(self) -> dict[str, Any]:
        d = self.nlri.to_json()
        d["family"] = self.family.name
        d["next_hop"] = str(self.next_hop) if self.next_hop is not None else None
        d["attributes"] = self.attributes.to_json()
        if self.peer is not None:
            d["peer"] = self.peer
        return d


RouteKey = tuple[bytes, int]
#: (event, peer address, family, routes) with event "announce" or "withdraw"
RouteListener = Callable[[str, str, Family, list[Route]], None]


class StandaloneSpeaker:
    """A :class:`Speaker` and the session handler that keeps its routes."""

    def __init__(self, listen: Iterable[str] = (), port: int = 179) -> None:
        self.speaker = Speaker(listen, port, handler=self)
        self.adj_rib_in: dict[str, dict[Family, dict[RouteKey, Route]]] = {}
        self.local: dict[Family, dict[RouteKey, Route]] = {}
        self.eor_received: dict[str, set[Family]] = {}
        self._subscribers: list[RouteListener] = []

    # -- the speaker ---------------------------------------------------------

    @property
    def peers(self) -> dict[str, Peer]:
        return self.speaker.peers

    def add_peer(self, settings: PeerSettings) -> Peer:
        peer = self.speaker.add_peer(settings)
        self.adj_rib_in[settings.address] = {}
        return peer

    async def start(self) -> None:
        await self.speaker.start()

    async def stop(self) -> None:
        await self.speaker.stop()

    def subscribe(self, fn: RouteListener) -> None:
        self._subscribers.append(fn)

    # -- routes we originate -------------------------------------------------

    def announce(
        self,
        family: Family,
        routes: Iterable[Nlri],
        attributes: PathAttributes,
        next_hop: IPAddress | str | None,
    ) -> None:
        nh = ip_address(next_hop) if isinstance(next_hop, str) else next_hop
        table = self.local.setdefault(family, {})
        batch = []
        for n in routes:
            r = Route(family, n, attributes, nh)
            table[(n.key, n.path_id)] = r
            batch.append(r)
        for p in self._up(family):
            self.speaker.send(p, self._encode(p, family, batch))

    def withdraw(self, family: Family, routes: Iterable[Nlri]) -> None:
        table = self.local.setdefault(family, {})
        gone = [table.pop((n.key, n.path_id)).nlri for n in routes if (n.key, n.path_id) in table]
        for p in self._up(family):
            self.speaker.send(p, pack_withdrawals(family, gone, p.tx_ctx))

    def _up(self, family: Family) -> list[Peer]:
        return [
            p for p in self.peers.values()
            if p.established and p.negotiated and family in p.negotiated.families
        ]

    @staticmethod
    def _encode(peer: Peer, family: Family, routes: list[Route]) -> list[bytes]:
        """Group routes by (attributes, next hop) and pack each group densely."""
        groups: dict[tuple[PathAttributes, Any], list[Nlri]] = {}
        for r in routes:
            groups.setdefault((r.attributes, r.next_hop), []).append(r.nlri)
        out: list[bytes] = []
        for (attrs, nh), nlris in groups.items():
            out.extend(pack_announcements(family, attrs, nh, nlris, peer.tx_ctx))
        return out

    # -- SessionHandler ------------------------------------------------------

    def session_up(self, peer: Peer) -> None:
        assert peer.negotiated is not None
        self.eor_received[peer.address] = set()
        msgs: list[bytes] = []
        for fam in sorted(peer.negotiated.families):
            routes = list(self.local.get(fam, {}).values())
            msgs.extend(self._encode(peer, fam, routes))
            msgs.append(end_of_rib(fam))
        self.speaker.send(peer, msgs)

    def session_down(self, peer: Peer, reason: str) -> None:
        tables = self.adj_rib_in.get(peer.address, {})
        for fam, table in tables.items():
            if table:
                self._emit("withdraw", peer.address, fam, list(table.values()))
        self.adj_rib_in[peer.address] = {}

    def update_received(self, peer: Peer, update: Update) -> None:
        eor = update.end_of_rib()
        if eor is not None:
            self.eor_received.setdefault(peer.address, set()).add(eor)
            log.info("peer %s: End-of-RIB for %s", peer.address, eor.name)
            return
        tables = self.adj_rib_in.setdefault(peer.address, {})
        withdrawn: dict[Family, list[Route]] = {}
        for fam, n in update.withdrawn_routes():
            r = tables.get(fam, {}).pop((n.key, n.path_id), None)
            if r is not None:
                withdrawn.setdefault(fam, []).append(r)
        announced: dict[Family, list[Route]] = {}
        attrs = update.attributes
        for fam, n, nh in update.announced():
            r = Route(fam, n, attrs, nh, peer.address)
            tables.setdefault(fam, {})[(n.key, n.path_id)] = r
            announced.setdefault(fam, []).append(r)
        for fam, rs in withdrawn.items():
            self._emit("withdraw", peer.address, fam, rs)
        for fam, rs in announced.items():
            self._emit("announce", peer.address, fam, rs)

    def refresh_requested(self, peer: Peer, family: Family, subtype: int) -> None:
        if subtype != 0 or peer.negotiated is None or family not in peer.negotiated.families:
            return
        routes = list(self.local.get(family, {}).values())
        self.speaker.send(peer, [*self._encode(peer, family, routes), end_of_rib(family)])

    def _emit(self, event: str, peer: str, family: Family, routes: list[Route]) -> None:
        for fn in self._subscribers:
            fn(event, peer, family, routes)

    # -- looking glass -------------------------------------------------------

    def received(self, peer: str, family: Family) -> list[Route]:
        return list(self.adj_rib_in.get(peer, {}).get(family, {}).values())

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for addr, p in self.peers.items():
            d = p.to_json()
            d["received"] = {f.name: len(t) for f, t in self.adj_rib_in.get(addr, {}).items()}
            out.append(d)
        return out
