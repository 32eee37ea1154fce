"""The FIB channel served from a forwarder process, for any driver.

:class:`ChannelServer` puts the channel's listeners (a Unix socket, and/or
TCP for a control plane on another host, R2.4) and its connections on the
forwarder's own selector, next to whatever the driver registered there
(the userspace driver's packet sockets). One thread, one loop: a batch is
applied between two packets, never during one.

It also counts ``generation`` (successful sync/batch operations since the
process started) for every driver alike, so a control plane can tell a
restarted forwarder (0) from one that still holds its programming.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
from collections.abc import Callable
from typing import Any

from .channel import ServerConnection
from .driver import Batch, Driver, State

log = logging.getLogger("vpe.dataplane")

#: how long a reply may take to leave before the connection is given up
SEND_TIMEOUT = 10.0


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
    ) -> None:
        self.driver = driver
        self.driver_name = driver_name
        self.sel = selector
        self.generation = 0
        self.socket_path = socket_path
        self.listeners: list[socket.socket] = []
        self._handler = _Counting(driver, self)
        self._conns: list[socket.socket] = []
        try:
            if socket_path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(socket_path)
                lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.listeners.append(lsn)
                lsn.bind(socket_path)
                os.chmod(socket_path, 0o600)
                self._listen(lsn)
            if listen_tcp:
                lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
            conn, _ = lsn.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        sc = ServerConnection(self._handler, lambda: self.generation, driver=self.driver_name)
        self._conns.append(conn)
        self.sel.register(conn, selectors.EVENT_READ, self._channel_reader(sc))
        log.info("control plane connected")

    def _channel_reader(self, sc: ServerConnection) -> Callable[[socket.socket], None]:
        def read(conn: socket.socket) -> None:
            try:
                data = conn.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            reply = sc.receive(data) if data else b""
            if reply:
                try:
                    conn.setblocking(True)
                    conn.settimeout(SEND_TIMEOUT)
                    conn.sendall(reply)
                    conn.setblocking(False)
                except OSError:
                    sc.closed = True
            if not data or sc.closed:
                self._drop(conn)
                log.info("control plane disconnected; keeping the FIB")

        return read

    def _drop(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        with contextlib.suppress(ValueError):
            self._conns.remove(conn)
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
