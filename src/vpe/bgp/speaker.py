"""The BGP speaker: listeners, peers, and the hand-off of routes to and from them.

The speaker owns one :class:`~vpe.bgp.transport.Listener` per listen address
and one :class:`~vpe.bgp.session.Peer` per neighbor. It keeps each peer's
Adj-RIB-In (what the peer announced, after RFC 7606 handling) and a table
of locally originated routes which it sends to every established peer of a
matching family, followed by End-of-RIB. Layers above subscribe to route
events (:meth:`Speaker.subscribe`) instead of being called directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

from . import transport
from .session import Peer, PeerSettings, SessionHandler
from .wire.attributes.base import PathAttributes
from .wire.capabilities import AddPathMode
from .wire.constants import FAMILY_BY_NAME, Family
from .wire.nlri.base import IPAddress, Nlri
from .wire.update import Update, end_of_rib, pack_announcements, pack_withdrawals

log = logging.getLogger("vpe.bgp.speaker")

_ADDPATH_MODES = {"receive": AddPathMode.RECEIVE, "send": AddPathMode.SEND, "both": AddPathMode.BOTH}


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


def settings_from_config(bgp: Any, n: Any) -> PeerSettings:
    """PeerSettings from the agent's pydantic config (``BgpConfig``, ``NeighborConfig``)."""
    return PeerSettings(
        address=n.address,
        local_as=bgp.local_as,
        router_id=IPv4Address(bgp.router_id),
        remote_as=n.remote_as,
        port=n.port,
        local_address=n.local_address,
        passive=n.passive,
        hold_time=n.hold_time,
        connect_retry=n.connect_retry,
        families=n.family_set(),
        add_path=tuple((FAMILY_BY_NAME[a.family], _ADDPATH_MODES[a.mode]) for a in n.add_path),
        addpath_send_count=next((0 if a.send == "all" else 1 if a.send == "best" else int(a.send)
                                 for a in n.add_path if a.mode != "receive"), 0),
        md5_password=n.md5_password,
        gtsm_hops=n.gtsm_hops,
        graceful_restart_time=120 if n.graceful_restart else None,
        route_reflector_client=n.route_reflector_client,
    )


class Speaker:
    """Sessions to every neighbor plus a table of routes to announce."""

    def __init__(
        self, listen: Iterable[str] = (), port: int = 179, handler: SessionHandler | None = None
    ) -> None:
        """``handler`` receives the sessions' events; without one the speaker keeps
        its own simple Adj-RIB-In and table of originated routes (standalone mode)."""
        self.handler: SessionHandler = handler if handler is not None else self
        self.listen = list(listen)
        self.port = port
        self.peers: dict[str, Peer] = {}
        self.adj_rib_in: dict[str, dict[Family, dict[RouteKey, Route]]] = {}
        self.local: dict[Family, dict[RouteKey, Route]] = {}
        self._listeners: list[transport.Listener] = []
        self._subscribers: list[RouteListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.eor_received: dict[str, set[Family]] = {}

    # -- configuration -------------------------------------------------------

    def add_peer(self, settings: PeerSettings) -> Peer:
        if settings.address in self.peers:
            raise ValueError(f"neighbor {settings.address} already exists")
        peer = Peer(settings, self.handler)
        self.peers[settings.address] = peer
        self.adj_rib_in[settings.address] = {}
        for lst in self._listeners:
            if _same_version(lst.local_address, settings.address):
                lst.add_peer(settings.address, settings.md5_password, gtsm=settings.gtsm_hops)
        return peer

    def subscribe(self, fn: RouteListener) -> None:
        self._subscribers.append(fn)

    async def start(self) -> None:
        for addr in self.listen:
            lst = transport.Listener(addr, self.port, self._accept)
            for p in self.peers.values():
                if _same_version(addr, p.address):
                    lst.add_peer(p.address, p.settings.md5_password, gtsm=p.settings.gtsm_hops)
            await lst.start()
            self._listeners.append(lst)
            log.info("listening on %s port %d", addr, lst.port)
        for p in self.peers.values():
            p.start()

    async def stop(self) -> None:
        for lst in self._listeners:
            await lst.close()
        self._listeners.clear()
        await asyncio.gather(*(p.stop() for p in self.peers.values()), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, local: str) -> None:
        p = self.peers.get(peer)
        if p is None:
            writer.close()
            return
        p.incoming(reader, writer)

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
        for p in self.peers.values():
            if p.established and p.negotiated and family in p.negotiated.families:
                self._spawn(p.send_messages(self._encode(p, family, batch)))

    def withdraw(self, family: Family, routes: Iterable[Nlri]) -> None:
        table = self.local.setdefault(family, {})
        gone = [table.pop((n.key, n.path_id)).nlri for n in routes if (n.key, n.path_id) in table]
        for p in self.peers.values():
            if p.established and p.negotiated and family in p.negotiated.families:
                self._spawn(p.send_messages(pack_withdrawals(family, gone, p.tx_ctx)))

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

    def send(self, peer: Peer, messages: list[bytes]) -> None:
        """Queue framed messages to ``peer``; sent in call order, with back-pressure."""
        if messages:
            self._spawn(peer.send_messages(messages))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- SessionHandler ------------------------------------------------------

    def session_up(self, peer: Peer) -> None:
        assert peer.negotiated is not None
        self.eor_received[peer.address] = set()
        msgs: list[bytes] = []
        for fam in sorted(peer.negotiated.families):
            routes = list(self.local.get(fam, {}).values())
            msgs.extend(self._encode(peer, fam, routes))
            msgs.append(end_of_rib(fam))
        self._spawn(peer.send_messages(msgs))

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
        self._spawn(peer.send_messages([*self._encode(peer, family, routes), end_of_rib(family)]))

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


def _same_version(a: str, b: str) -> bool:
    return ip_address(a).version == ip_address(b).version
