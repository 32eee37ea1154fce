"""The FIB link: the asyncio task that keeps a forwarder in step with the agent.

It owns the (blocking) :class:`~vpe.dataplane.channel.FibClient`, used from
worker threads: it connects, sends a full sync of the desired state (read
from a callable, the :class:`~vpe.agent.fib_resolver.FibResolver`'s), then
the submitted batches in order. When the forwarder goes away it reconnects
with backoff and syncs everything again, so the forwarder converges to the
agent's state; meanwhile the forwarder keeps forwarding with what it has.

Refusals arrive typed (:mod:`vpe.dataplane.errors`): a
:class:`~vpe.dataplane.errors.PortUnavailable` sets that port aside (named
in ``failed_ports``, reported to whoever waits on :meth:`FibLink.port_result`)
so one bad port never blocks the rest; any other refusal resynchronises; a
:class:`~vpe.dataplane.errors.ChannelClosed` reconnects. The link does not
know which driver is behind the channel (``server_driver`` says, for show).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..dataplane.channel import FibClient
from ..dataplane.driver import Batch, State
from ..dataplane.errors import ChannelClosed, ChannelError, PortUnavailable

log = logging.getLogger("vpe.fib")

#: batch latencies kept for the metrics
LATENCIES_KEPT = 1000


def fib_address(spec: str) -> str | tuple[str, int]:
    """``tcp:HOST:PORT`` (IPv6 as ``tcp:[addr]:port``) -> (host, port); anything else is a path."""
    if not spec.startswith("tcp:"):
        return spec
    host, _, port = spec[4:].rpartition(":")
    return host.strip("[]"), int(port)


class FibLink:
    """The channel task: full sync on (re)connect, then batches in order, port results."""

    def __init__(self, socket_path: str, desired: Callable[[], State]) -> None:
        self.socket_path = socket_path
        self._desired = desired
        self._queue: list[tuple[Batch, str | None]] = []
        #: ports the forwarder refused (cannot use the interface): name -> why
        self.failed_ports: dict[str, str] = {}
        self._port_waiters: dict[str, asyncio.Future[str | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error = ""
        self.batches_sent = 0
        self.latencies: list[float] = []
        #: the driver behind the channel, as the forwarder's hello named it
        self.server_driver = ""

    @property
    def address(self) -> str | tuple[str, int]:
        """Where the forwarder listens: a Unix socket path, or ``tcp:HOST:PORT``
        for a forwarder on another host (the control plane need not run where
        the forwarding happens, R2.4)."""
        return fib_address(self.socket_path)

    # -- what the agent hands over ------------------------------------------------

    def submit(self, batch: Batch | None, port: str | None = None) -> None:
        """Send ``batch`` after the ones before it; ``port``: the batch adds that port
        (its result settles :meth:`port_result`). None: nothing to send."""
        if batch is None:
            return
        self._queue.append((batch, port))
        self._wake.set()

    def expect_port(self, name: str) -> None:
        """Port ``name`` is (re)added: forget an old refusal, wait for the new result."""
        self.failed_ports.pop(name, None)
        old = self._port_waiters.pop(name, None)
        if old is not None and not old.done():
            old.set_result(None)
        with contextlib.suppress(RuntimeError):  # no event loop (offline use): nobody waits
            self._port_waiters[name] = asyncio.get_running_loop().create_future()

    def forget_port(self, name: str) -> None:
        """Port ``name`` is gone: no refusal to report any more, nobody to wake but with None."""
        self.failed_ports.pop(name, None)
        self._settle(name, None)

    async def port_result(self, name: str, timeout: float = 5.0) -> str | None:
        """Wait until the forwarder took port ``name`` (None) or refused it (the reason).

        Returns None at once when no forwarder is connected: it gets the port
        with the full sync when it (re)connects.
        """
        fut = self._port_waiters.get(name)
        if fut is None or not self.connected:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "socket": self.socket_path,
            "connected": self.connected,
            "last_error": self.last_error,
            "batches_sent": self.batches_sent,
            "failed_ports": dict(self.failed_ports),
        }

    # -- the task -------------------------------------------------------------------

    def _settle(self, port: str | None, error: str | None) -> None:
        if port is None:
            return
        fut = self._port_waiters.pop(port, None)
        if fut is not None and not fut.done():
            fut.set_result(error)

    def _usable_state(self) -> State:
        st = self._desired()
        if not self.failed_ports:
            return st
        return State(ports=tuple(p for p in st.ports if p.name not in self.failed_ports),
                     routes=st.routes, labels=st.labels, replication=st.replication,
                     peers=st.peers)

    def _sync(self, client: FibClient) -> None:
        """Full sync; a port the forwarder cannot use is set aside (named in
        /v1/fib ``failed_ports``) so that one bad port never blocks the rest."""
        for _ in range(len(self._desired().ports) + 1):
            try:
                client.sync(self._usable_state())
                return
            except PortUnavailable as e:
                wanted = {p.name for p in self._desired().ports}
                if e.port not in wanted or e.port in self.failed_ports:
                    raise
                self.failed_ports[e.port] = str(e)
                log.error("forwarder refused port %s (%s): left out of the forwarder until "
                          "re-attached", e.port, e)
        client.sync(self._usable_state())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fib-channel")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                client = await asyncio.to_thread(FibClient.connect, self.address, 10.0)
            except (OSError, ChannelError) as e:
                if self.last_error != str(e):
                    log.warning("forwarder at %s not reachable: %s (retrying)", self.socket_path, e)
                self.last_error = str(e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self.server_driver = client.server_driver
            try:
                self._queue.clear()
                await asyncio.to_thread(self._sync, client)
                self.connected = True
                self.last_error = ""
                st = self._desired()
                log.info("forwarder at %s (%s driver) synchronised: %d ports, %d routes, "
                         "%d labels", self.socket_path, self.server_driver or "unnamed",
                         len(st.ports), len(st.routes), len(st.labels))
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    while self._queue:
                        await self._send_next(client)
            except (OSError, ChannelError) as e:
                log.warning("forwarder channel lost: %s; reconnecting", e)
                self.last_error = str(e)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    client.close()

    async def _send_next(self, client: FibClient) -> None:
        """Send the oldest queued batch; a refusal resynchronises (ChannelClosed: raised)."""
        batch, port = self._queue.pop(0)
        t = time.perf_counter()
        try:
            await asyncio.to_thread(client.apply, batch)
            self._settle(port, None)
        except ChannelClosed:
            raise
        except ChannelError as e:
            log.error("forwarder refused a batch (%s); resynchronising", e)
            if isinstance(e, PortUnavailable) and e.port in {p.name for p in self._desired().ports}:
                self.failed_ports[e.port] = str(e)
                self._settle(e.port, str(e))
            self._settle(port, str(e))
            for _b, p in self._queue:
                self._settle(p, None)
            self._queue.clear()
            await asyncio.to_thread(self._sync, client)
        self.batches_sent += 1
        self.latencies.append(time.perf_counter() - t)
        del self.latencies[:-LATENCIES_KEPT]

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        """The forwarder's counters, on a connection of its own (blocking: call it
        in a worker thread); ``timeout`` bounds the connect and each read."""
        with FibClient.connect(self.address, timeout) as c:
            return c.counters()
