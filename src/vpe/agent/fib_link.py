"""The FIB link: the asyncio task that keeps a forwarder in step with the agent.

It owns the (blocking) :class:`~vpe.dataplane.channel.FibClient`, used from
worker threads: it connects (authenticating both ends when it has a channel
key), sends a full sync of the desired state (read from a callable, the
:class:`~vpe.agent.fib_resolver.FibResolver`'s), then the submitted batches
in order. When the forwarder goes away it reconnects and syncs everything
again, so the forwarder converges to the agent's state; meanwhile the
forwarder keeps forwarding with what it has.

Liveness: with nothing to send for ``keepalive`` seconds the link pings; a
forwarder that does not answer within three intervals, or whose channel
closed, is taken for lost at once (``connected`` false, ``vpe_fib_connected``
0) and the link reconnects: the first retry after a loss is immediate, then
exponential back-off with jitter (:func:`backoff`) while connecting or
syncing keeps failing, so a refusing forwarder is not hammered.

Generation check: every ack and pong carries the forwarder's generation,
which the link's own changes move by exactly one each. Any other move means
someone else changed the forwarder's tables (another writer on the socket):
the link counts it (``foreign_writes``), says so in ``last_error`` and the
log, and resyncs the full state. A new forwarder ``instance`` after a
reconnect is a restart (counted in ``forwarder_restarts``).

Refusals arrive typed (:mod:`vpe.dataplane.errors`): a
:class:`~vpe.dataplane.errors.PortUnavailable` sets that port aside (named
in ``failed_ports``, reported to whoever waits on :meth:`FibLink.port_result`)
so one bad port never blocks the rest; any other refusal resynchronises; a
:class:`~vpe.dataplane.errors.ChannelClosed` reconnects. Ports set aside are
tried again at every reconnect (a restarted forwarder may have the
interface). The link does not know which driver is behind the channel
(``server_driver`` says, for show).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from ..dataplane.channel import FibClient
from ..dataplane.driver import Batch, State
from ..dataplane.errors import ChannelClosed, ChannelError, PortUnavailable

log = logging.getLogger("vpe.fib")

#: batch latencies kept for the metrics
LATENCIES_KEPT = 1000
#: seconds between keepalives when idle (the default of ``dataplane.fib_keepalive``)
KEEPALIVE = 0.2
#: reconnect back-off: first delay, factor, cap (seconds)
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 5.0
#: seconds a channel must have been up for its loss to restart the back-off
STABLE = 1.0
#: seconds a connect, a sync or a batch may take before the channel is given up
REQUEST_TIMEOUT = 10.0


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnect attempt ``attempt`` (0: the first after a loss, which
    is immediate): doubling from :data:`BACKOFF_FIRST` up to :data:`BACKOFF_CAP`,
    with "equal jitter" (half fixed, half random), so many agents that lost one
    forwarder do not come back in step."""
    if attempt <= 0:
        return 0.0
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(attempt - 1, 20))
    return ceiling / 2 + rng() * ceiling / 2


def fib_address(spec: str) -> str | tuple[str, int]:
    """``tcp:HOST:PORT`` (IPv6 as ``tcp:[addr]:port``) -> (host, port); anything else is a path."""
    if not spec.startswith("tcp:"):
        return spec
    host, _, port = spec[4:].rpartition(":")
    return host.strip("[]"), int(port)


class FibLink:
    """The channel task: full sync on (re)connect, then batches in order, port results,
    keepalives and the generation check."""

    def __init__(self, socket_path: str, desired: Callable[[], State], *,
                 key: bytes | None = None, keepalive: float = KEEPALIVE) -> None:
        self.socket_path = socket_path
        self._desired = desired
        self._key = key
        self.keepalive = keepalive
        self._queue: list[tuple[Batch, str | None]] = []
        #: callbacks waiting for the batches before them: (batches still ahead, callback)
        self._after: list[tuple[int, Callable[[], None]]] = []
        #: a batch is with the forwarder (popped from the queue, not acked yet)
        self._inflight = 0
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
        #: the forwarder process and its generation, as last seen
        self.server_instance = ""
        self.server_generation = 0
        self.authenticated = False
        #: channel sessions that reached a full sync, and how many were lost since
        self.syncs = 0
        self.losses = 0
        #: changes the forwarder made for someone else (generation moved unexpectedly)
        self.foreign_writes = 0
        self.forwarder_restarts = 0
        #: monotonic time the channel came up (None: down)
        self.up_since: float | None = None
        self._attempt = 0

    @property
    def address(self) -> str | tuple[str, int]:
        """Where the forwarder listens: a Unix socket path, or ``tcp:HOST:PORT``
        for a forwarder on another host (the control plane need not run where
        the forwarding happens, R2.4)."""
        return fib_address(self.socket_path)

    @property
    def dead_after(self) -> float:
        """Seconds without an answer after which the forwarder is taken for lost."""
        return 3 * self.keepalive

    # -- what the agent hands over ------------------------------------------------

    def submit(self, batch: Batch | None, port: str | None = None) -> None:
        """Send ``batch`` after the ones before it; ``port``: the batch adds that port
        (its result settles :meth:`port_result`). None: nothing to send."""
        if batch is None:
            return
        self._queue.append((batch, port))
        self._wake.set()

    def when_applied(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once every batch submitted so far is in the forwarder (acked), or
        at once when no forwarder is connected (the next one gets the whole state in
        its sync first). A lost session or a resync counts as applied: the sync
        carries the desired state."""
        ahead = len(self._queue) + self._inflight
        if not self.connected or not ahead:
            fn()
            return
        self._after.append((ahead, fn))

    def _advance(self, n: int) -> None:
        """``n`` queued batches are done (applied, or replaced by a sync): run the
        callbacks that waited for them."""
        ready = [fn for left, fn in self._after if left <= n]
        self._after = [(left - n, fn) for left, fn in self._after if left > n]
        for fn in ready:
            try:
                fn()
            except Exception:
                log.exception("a callback waiting for the forwarder failed")

    def _advance_all(self) -> None:
        self._advance(max((left for left, _ in self._after), default=0))

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
            "authenticated": self.authenticated,
            "uptime": None if self.up_since is None else round(time.monotonic() - self.up_since, 1),
            "last_error": self.last_error,
            "batches_sent": self.batches_sent,
            "failed_ports": dict(self.failed_ports),
            "keepalive": self.keepalive,
            "syncs": self.syncs,
            "losses": self.losses,
            "foreign_writes": self.foreign_writes,
            "forwarder_restarts": self.forwarder_restarts,
            "forwarder_instance": self.server_instance,
            "forwarder_generation": self.server_generation,
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
                self.server_generation = client.server_generation
                return
            except PortUnavailable as e:
                wanted = {p.name for p in self._desired().ports}
                if e.port not in wanted or e.port in self.failed_ports:
                    raise
                self.failed_ports[e.port] = str(e)
                self._settle(e.port, str(e))
                log.error("forwarder refused port %r (%s): left out of the forwarder until "
                          "re-attached or the channel reconnects", e.port, e)
        client.sync(self._usable_state())
        self.server_generation = client.server_generation

    def _connect(self) -> FibClient:
        return FibClient.connect(self.address, REQUEST_TIMEOUT, key=self._key,
                                 keepalive=self.keepalive, client="vpe-agent")

    def _check_generation(self, seen: int, own_changes: int, what: str) -> bool:
        """True when the forwarder's generation moved only by our own changes."""
        expected = self.server_generation + own_changes
        self.server_generation = seen
        if seen == expected:
            return True
        self.foreign_writes += 1
        self.last_error = (f"the forwarder's tables were changed by another writer (generation "
                           f"{seen} at {what}, {expected} expected); resynchronised")
        log.error("%s", self.last_error)
        return False

    def _ping(self, client: FibClient) -> bool:
        """Keepalive; False when another writer changed the forwarder since we last looked."""
        return self._check_generation(client.ping(self.dead_after), 0, "keepalive")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fib-channel")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_down()

    def _set_down(self) -> None:
        self._inflight = 0
        self._advance_all()  # no forwarder to wait for: the next one syncs first
        if self.connected:
            self.losses += 1
        self.connected = False
        self.up_since = None

    async def _run(self) -> None:
        while True:
            delay = backoff(self._attempt)
            if delay:
                await asyncio.sleep(delay)
            self._attempt += 1
            try:
                client = await asyncio.to_thread(self._connect)
            except (OSError, ChannelError) as e:
                if self.last_error != str(e):
                    log.warning("forwarder at %s not reachable: %s (retrying)", self.socket_path, e)
                self.last_error = str(e)
                continue
            try:
                await self._session(client)
            except (OSError, ChannelError) as e:
                if self.connected:
                    log.warning("forwarder channel lost: %s; reconnecting", e)
                    if self.up_since is not None and time.monotonic() - self.up_since >= STABLE:
                        self._attempt = 0  # it worked until now: retry at once
                else:
                    log.warning("forwarder at %s: channel failed before the sync completed: %s",
                                self.socket_path, e)
                self.last_error = str(e) or type(e).__name__
            finally:
                self._set_down()
                self.authenticated = False
                with contextlib.suppress(Exception):
                    client.close()

    async def _session(self, client: FibClient) -> None:
        """One connection: full sync, then batches and keepalives until it fails."""
        self.server_driver = client.server_driver
        self.authenticated = client.authenticated
        if self.server_instance and client.server_instance != self.server_instance:
            self.forwarder_restarts += 1
            log.warning("forwarder at %s restarted (instance %s, generation %d): resynchronising",
                        self.socket_path, client.server_instance, client.server_generation)
        self.server_instance = client.server_instance
        self._queue.clear()
        self.failed_ports.clear()  # a reconnected forwarder may have the interface now
        await asyncio.to_thread(self._sync, client)
        self._advance_all()
        self.connected = True
        self.up_since = time.monotonic()
        self.syncs += 1
        self.last_error = ""
        st = self._desired()
        log.info("forwarder at %s (%s driver%s) synchronised: %d ports, %d routes, "
                 "%d labels", self.socket_path, self.server_driver or "unnamed",
                 ", authenticated" if client.authenticated else "",
                 len(st.ports), len(st.routes), len(st.labels))
        while True:
            try:
                async with asyncio.timeout(self.keepalive):  # (wait_for may swallow a cancel)
                    await self._wake.wait()
            except TimeoutError:
                if not await asyncio.to_thread(self._ping, client):
                    await self._resync(client)
                continue
            self._wake.clear()
            while self._queue:
                await self._send_next(client)

    async def _resync(self, client: FibClient) -> None:
        for _b, p in self._queue:
            self._settle(p, None)
        self._queue.clear()
        await asyncio.to_thread(self._sync, client)
        self._advance_all()

    async def _send_next(self, client: FibClient) -> None:
        """Send the oldest queued batch; a refusal resynchronises (ChannelClosed: raised)."""
        batch, port = self._queue.pop(0)
        t = time.perf_counter()
        self._inflight = 1
        try:
            await asyncio.to_thread(client.apply, batch)
            self._settle(port, None)
            if not self._check_generation(client.server_generation, 1, "a batch"):
                await self._resync(client)
        except ChannelClosed:
            raise
        except ChannelError as e:
            log.error("forwarder refused a batch (%s); resynchronising", e)
            if isinstance(e, PortUnavailable) and e.port in {p.name for p in self._desired().ports}:
                self.failed_ports[e.port] = str(e)
                self._settle(e.port, str(e))
            self._settle(port, str(e))
            self.server_generation = client.server_generation
            await self._resync(client)
        self._inflight = 0
        self.batches_sent += 1
        self._advance(1)
        self.latencies.append(time.perf_counter() - t)
        del self.latencies[:-LATENCIES_KEPT]

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        """The forwarder's counters, on a connection of its own (blocking: call it
        in a worker thread); ``timeout`` bounds the connect and each read."""
        with FibClient.connect(self.address, timeout, key=self._key, client="vpe-agent-counters") as c:
            return c.counters()
