"""The BGP speaker: listeners and peers, whose events go to one handler.

The speaker owns one :class:`~vpe.bgp.transport.Listener` per listen address
and one :class:`~vpe.bgp.session.Peer` per neighbor, accepts connections for
configured neighbors only, and queues framed messages to a peer in call
order (:meth:`Speaker.send`). It keeps no routes: every session event goes
to the :class:`~vpe.bgp.session.SessionHandler` it was given (the agent's
engine, which feeds the RIB), and the handler decides what to send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address
from typing import Any

from . import transport
from .session import Peer, PeerSettings, SessionHandler
from .wire.capabilities import AddPathMode
from .wire.constants import FAMILY_BY_NAME

log = logging.getLogger("vpe.bgp.speaker")

_ADDPATH_MODES = {"receive": AddPathMode.RECEIVE, "send": AddPathMode.SEND, "both": AddPathMode.BOTH}


def ebgp_ttl(local_as: int, remote_as: int | None, gtsm_hops: int | None, multihop: int | None) -> int | None:
    """The TTL a session's packets are sent with: for eBGP 1 (directly connected) or the
    ``ebgp_multihop`` value; None (the system default) for iBGP, for a neighbor whose AS
    is learned from its OPEN, and under GTSM (which sends with 255 itself)."""
    if gtsm_hops is not None or remote_as is None or remote_as == local_as:
        return None
    return multihop if multihop is not None else 1


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
        ttl=ebgp_ttl(bgp.local_as, n.remote_as, n.gtsm_hops, getattr(n, "ebgp_multihop", None)),
        graceful_restart_time=120 if n.graceful_restart else None,
        route_reflector_client=n.route_reflector_client,
        max_prefixes=n.max_prefixes,
        max_prefixes_action=n.max_prefixes_action,
        max_prefixes_restart=n.max_prefixes_restart,
        max_prefixes_threshold=n.max_prefixes_threshold,
    )


class Speaker:
    """Sessions to every neighbor, their listeners, and an ordered send queue per peer."""

    def __init__(
        self, listen: Iterable[str] = (), port: int = 179, *, handler: SessionHandler,
        freebind: Iterable[str] = (),
    ) -> None:
        """``handler`` receives every session's events (up, down, UPDATE, ROUTE-REFRESH);
        the ``freebind`` listen addresses may appear on the host only later."""
        self.handler = handler
        self.listen = list(listen)
        self.freebind: set[str] = set()
        self.port = port
        self.peers: dict[str, Peer] = {}
        self._listeners: list[transport.Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        #: between :meth:`start` and :meth:`stop`: a peer added now starts at once
        self.running = False
        for addr in sorted(freebind):
            self.listen_also(addr)

    # -- configuration -------------------------------------------------------

    def add_peer(self, settings: PeerSettings) -> Peer:
        if settings.address in self.peers:
            raise ValueError(f"neighbor {settings.address} already exists")
        peer = Peer(settings, self.handler)
        self.peers[settings.address] = peer
        for lst in self._listeners:
            if _same_version(lst.local_address, settings.address):
                lst.add_peer(settings.address, settings.md5_password, gtsm=settings.gtsm_hops,
                             ttl=settings.ttl)
        if self.running:
            peer.start()
        return peer

    async def remove_peer(self, address: str) -> Peer:
        """Stop the session to ``address`` with Cease / Peer De-configured (RFC 4486; its
        handler sees the session go down first) and forget the neighbor (KeyError: none)."""
        peer = self.peers[address]
        await peer.stop(deconfigured=True)
        for lst in self._listeners:
            if address in lst.peers:
                lst.remove_peer(address)
        if self.peers.get(address) is peer:
            del self.peers[address]
        return peer

    async def start(self) -> None:
        self.running = True
        for addr in self.listen:
            await self._listen(addr)
        for p in self.peers.values():
            p.start()

    async def _listen(self, addr: str) -> None:
        lst = transport.Listener(addr, self.port, self._accept, freebind=addr in self.freebind)
        for p in self.peers.values():
            if _same_version(addr, p.address):
                lst.add_peer(p.address, p.settings.md5_password, gtsm=p.settings.gtsm_hops,
                             ttl=p.settings.ttl)
        await lst.start()
        self._listeners.append(lst)
        log.info("listening on %s port %d", addr, lst.port)

    def listen_also(self, addr: str) -> None:
        """Listen on ``addr`` too, bound before it is local (``IP_FREEBIND``): the agent's end
        of sessions through ports; nothing when a listener already covers it. While the
        speaker runs the listener starts in the background (a failure is logged)."""
        wild = "::" if ":" in addr else "0.0.0.0"
        if wild in self.listen:
            return
        self.freebind.add(addr)
        if addr in self.listen:  # given as a listen address too: bound with IP_FREEBIND
            return
        self.listen.append(addr)
        if self.running:
            self._spawn(self._listen_logged(addr))

    async def _listen_logged(self, addr: str) -> None:
        try:
            await self._listen(addr)
        except OSError as e:
            log.error("cannot listen on %s port %d: %s", addr, self.port, e.strerror or e)

    async def stop(self) -> None:
        self.running = False
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

    # -- sending -------------------------------------------------------------

    def send(self, peer: Peer, messages: list[bytes]) -> None:
        """Queue framed messages to ``peer``; sent in call order, with back-pressure."""
        if messages:
            self._spawn(peer.send_messages(messages))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)


def _same_version(a: str, b: str) -> bool:
    return ip_address(a).version == ip_address(b).version
