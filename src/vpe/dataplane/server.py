"""The FIB channel served from a forwarder process, for any driver.

:class:`ChannelServer` puts the channel's listeners (a Unix socket, and/or
TCP for a control plane on another host, R2.4) and its connections on the
forwarder's own selector, next to whatever the driver registered there
(the userspace driver's packet sockets). One thread, one loop: a batch is
applied between two packets, never during one.

It also counts ``generation`` (successful sync/batch operations since the
process started) for every driver alike and names the process with a random
``instance``, so a control plane can tell a restarted forwarder from one that
still holds its programming, and notice changes made by another writer.

With a channel ``key`` every connection must authenticate (mutual HMAC, see
:mod:`vpe.dataplane.channel`); a TCP listener requires one. The loop that
owns the selector calls :meth:`ChannelServer.tick` at least every half
second: it drops connections that did not authenticate in time or whose
control plane went silent (three keepalive intervals).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from .channel import ServerConnection
from .driver import Batch, Driver, State

log = logging.getLogger("vpe.dataplane")

#: how long a reply may take to leave before the connection is given up
SEND_TIMEOUT = 10.0
#: connections served at once (more are closed at accept)
MAX_CONNECTIONS = 32


class _Counting:
    """The driver as the channel sees it: successful changes counted, the count in counters."""

    def __init__(self, driver: Driver, server: ChannelServer) -> None:
        self._driver = driver
        self._server = server

    def sync(self, state: State) -> None:
        self._driver.sync(state)
        self._server.generation += 1

    def apply(self, batch: Batch) -> None:
        self._driver.apply(batch)
        self._server.generation += 1

    def counters(self) -> dict[str, Any]:
        c = dict(self._driver.counters())
        c["generation"] = self._server.generation
        return c

    def state(self) -> State:
        return self._driver.state()


class ChannelServer:
    """Listeners and connections of the FIB channel on ``selector``, driving ``driver``.

    Selector callbacks are ``data(fileobj)``: the loop that owns the selector
    calls ``key.data(key.fileobj)`` for each ready key.
    """

    def __init__(
        self,
        driver: Driver,
        selector: selectors.BaseSelector,
        *,
        socket_path: str | None = None,
        listen_tcp: tuple[str, int] | None = None,
        driver_name: str = "userspace",
        key: bytes | None = None,
    ) -> None:
        if listen_tcp and key is None:
            raise ValueError(
                "the FIB channel over TCP must be authenticated: give the forwarder a channel key"
            )
        self.driver = driver
        self.driver_name = driver_name
        self.sel = selector
        self.generation = 0
        #: names this forwarder process: a restart gets another one
        self.instance = secrets.token_hex(8)
        self.socket_path = socket_path
        self.listeners: list[socket.socket] = []
        self._key = key
        self._handler = _Counting(driver, self)
        self._conns: dict[socket.socket, ServerConnection] = {}
        try:
            if socket_path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(socket_path)
                lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.listeners.append(lsn)
                old = os.umask(0o177)  # never a moment with the socket open to others
                try:
                    lsn.bind(socket_path)
                finally:
                    os.umask(old)
                os.chmod(socket_path, 0o600)
                self._listen(lsn)
            if listen_tcp:
                family = socket.AF_INET6 if ":" in listen_tcp[0] else socket.AF_INET
                lsn = socket.socket(family, socket.SOCK_STREAM)
                self.listeners.append(lsn)
                lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lsn.bind(listen_tcp)
                self._listen(lsn)
        except OSError:
            self.close()
            raise

    def _listen(self, lsn: socket.socket) -> None:
        lsn.listen(8)
        lsn.setblocking(False)
        self.sel.register(lsn, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, lsn: socket.socket) -> None:
        try:
            conn, peer = lsn.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        if len(self._conns) >= MAX_CONNECTIONS:
            log.warning("FIB channel: %d connections already, refusing one from %s",
                        len(self._conns), peer or "the Unix socket")
            conn.close()
            return
        conn.setblocking(False)
        sc = ServerConnection(self._handler, lambda: self.generation, driver=self.driver_name,
                              key=self._key, instance=self.instance)
        self._conns[conn] = sc
        self.sel.register(conn, selectors.EVENT_READ, self._channel_reader(sc))
        log.info("FIB channel: connection from %s", peer or "the Unix socket")

    def _channel_reader(self, sc: ServerConnection) -> Callable[[socket.socket], None]:
        def read(conn: socket.socket) -> None:
            try:
                data = conn.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            was_ready = sc.ready
            reply = sc.receive(data) if data else b""
            if reply:
                try:
                    conn.setblocking(True)
                    conn.settimeout(SEND_TIMEOUT)
                    conn.sendall(reply)
                    conn.setblocking(False)
                except OSError:
                    sc.closed = True
            if sc.ready and not was_ready:
                log.info("control plane %r connected%s", sc.client,
                         " (authenticated)" if sc.authenticated else "")
            if not data or sc.closed:
                self._drop(conn)
                if was_ready:
                    log.info("control plane disconnected; keeping the FIB")
                elif sc.closed:
                    log.warning("FIB channel: connection refused during hello/authentication")

        return read

    def tick(self, now: float | None = None) -> None:
        """Drop connections that did not authenticate in time or went silent."""
        now = time.monotonic() if now is None else now
        for conn, sc in list(self._conns.items()):
            why = sc.expired(now)
            if why is not None:
                log.warning("FIB channel: dropping a connection: %s; keeping the FIB", why)
                self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        self._conns.pop(conn, None)
        conn.close()

    def close(self) -> None:
        """Close the listeners and connections (the driver's own sockets are its business)."""
        for conn in list(self._conns):
            self._drop(conn)
        for lsn in self.listeners:
            self._drop(lsn)
        self.listeners = []
        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
