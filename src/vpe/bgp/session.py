"""asyncio driver of one BGP peer: sockets and timers around the pure FSM.

A :class:`Peer` owns one :class:`~vpe.bgp.fsm.BgpFsm` and at most one TCP
connection. Everything that touches the FSM runs in one task (``_run``) fed
by a bounded queue: bytes read by the reader task arrive there as whole
messages and are decoded with the codec context in force *at that point*
(so UPDATEs after the OPEN exchange are decoded with the negotiated
ADD-PATH and 4-octet-AS settings). The queue is bounded, so a peer that
sends faster than we process is slowed down by TCP itself.

Routes leave through :meth:`Peer.send_messages`, which blocks on the
transport's high-water mark (back-pressure), while keepalives keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Protocol

from . import transport
from .fsm import (
    AutomaticStop,
    BgpFsm,
    Connect,
    Disconnect,
    Event,
    FsmConfig,
    Keep,
    ManualStart,
    ManualStartPassive,
    ManualStop,
    OpenCollisionDump,
    SendMessage,
    SessionDown,
    SessionUp,
    State,
    StateChanged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    TcpCrAcked,
    event_for_error,
    event_for_message,
    resolve_collision,
)
from .wire.capabilities import (
    AddPath,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    GracefulRestart,
    Multiprotocol,
    RouteRefresh,
)
from .wire.constants import (
    HEADER_LEN,
    MAX_EXTENDED_MESSAGE_LEN,
    CeaseSubcode,
    ErrorCode,
    Family,
    HeaderSubcode,
    MessageType,
)
from .wire.context import DEFAULT_CONTEXT, CodecContext
from .wire.errors import BGPError
from .wire.header import MessageReader
from .wire.message import decode_message, encode_message
from .wire.notification import Notification
from .wire.open import Negotiated
from .wire.route_refresh import RouteRefresh as RouteRefreshMessage
from .wire.update import Update

log = logging.getLogger("vpe.bgp.session")

_QUEUE_DEPTH = 256  # messages read ahead of processing, per peer
_READ_CHUNK = 256 * 1024


class SessionHandler(Protocol):
    """What the layer above (the RIB) implements to hear from a peer."""

    def session_up(self, peer: Peer) -> None: ...

    def session_down(self, peer: Peer, reason: str) -> None: ...

    def update_received(self, peer: Peer, update: Update) -> None: ...

    def refresh_requested(self, peer: Peer, family: Family, subtype: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """Everything one session needs, independent of the config file format."""

    address: str
    local_as: int
    router_id: IPv4Address
    remote_as: int | None = None
    port: int = 179
    local_address: str | None = None
    passive: bool = False
    hold_time: int = 90
    connect_retry: float = 5.0
    families: frozenset[Family] = frozenset()
    add_path: tuple[tuple[Family, int], ...] = ()
    #: with ADD-PATH send: how many paths per prefix (0: all)
    addpath_send_count: int = 0
    md5_password: str | None = None
    gtsm_hops: int | None = None
    #: IP TTL of the session's packets (None: the system's default); eBGP is sent with 1
    #: unless multihop (RFC 4271 and common practice), GTSM sets its own 255
    ttl: int | None = None
    graceful_restart_time: int | None = 120
    route_reflector_client: bool = False
    extended_message: bool = True
    connect_timeout: float = 5.0
    #: per-family limit of prefixes accepted from the peer (None: no limit)
    max_prefixes: int | None = None
    #: "teardown" (Cease / Maximum Number of Prefixes Reached, RFC 4486) or "warning"
    max_prefixes_action: str = "teardown"
    #: seconds a torn-down session stays down before it may come up again (0: until restarted)
    max_prefixes_restart: float = 60.0
    #: percent of the limit at which a warning is logged first
    max_prefixes_threshold: int = 75

    @property
    def ibgp(self) -> bool:
        return self.remote_as == self.local_as

    def capabilities(self) -> tuple[Capability, ...]:
        caps: list[Capability] = [Multiprotocol(f.afi, f.safi) for f in sorted(self.families)]
        caps += [RouteRefresh(), EnhancedRouteRefresh()]
        if self.extended_message:
            caps.append(ExtendedMessage())
        if self.add_path:
            caps.append(AddPath(tuple(self.add_path)))
        if self.graceful_restart_time is not None:
            caps.append(
                GracefulRestart(
                    time=self.graceful_restart_time,
                    families=tuple((f, False) for f in sorted(self.families)),
                )
            )
        return tuple(caps)


# Internal events of the driver (not FSM events).
@dataclass(slots=True)
class _Connected:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    outgoing: bool
    first: tuple[int, bytes] | None = None  # an OPEN already read (collision case)
    framer: MessageReader | None = None


@dataclass(slots=True)
class _Message:
    conn: int
    msg_type: int
    body: bytes


@dataclass(slots=True)
class _ConnLost:
    conn: int
    reason: str


@dataclass(slots=True)
class _Stop:
    communication: str | None
    deconfigured: bool = False


@dataclass(slots=True)
class _Admin:
    """Operator action that keeps the peer's task: ``shutdown``, ``enable`` or ``reset``."""

    action: str
    communication: str | None = None


class Peer:
    """One configured neighbor."""

    def __init__(
        self,
        settings: PeerSettings,
        handler: SessionHandler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.address = settings.address
        self.handler = handler
        self._clock = clock
        self.fsm = BgpFsm(
            FsmConfig(
                local_as=settings.local_as,
                router_id=settings.router_id,
                peer_as=settings.remote_as,
                hold_time=settings.hold_time,
                passive=settings.passive,
                capabilities=settings.capabilities(),
                connect_retry_time=settings.connect_retry,
                connect_retry_max=max(settings.connect_retry, 60.0),
                idle_hold_time=min(settings.connect_retry, 5.0),
            ),
            now=clock(),
        )
        self.negotiated: Negotiated | None = None
        self.rx_ctx: CodecContext = DEFAULT_CONTEXT
        self.tx_ctx: CodecContext = DEFAULT_CONTEXT
        self.last_error = ""
        self.established_at: float | None = None
        #: when the session last went down (or the peer was created): the down time's start
        self.down_since: float = clock()
        #: shut down by the operator (:meth:`shutdown`): stays Idle until :meth:`enable`
        self.admin_down = False
        self.counters: dict[str, int] = {
            "messages_in": 0,
            "messages_out": 0,
            "updates_in": 0,
            "updates_out": 0,
            "notifications_in": 0,
            "notifications_out": 0,
            "treat_as_withdraw": 0,
            "established_transitions": 0,
            "prefix_limit_exceeded": 0,
        }
        self._events: asyncio.Queue[Any] = asyncio.Queue(_QUEUE_DEPTH)
        self._task: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: transport.BoundedWriter | None = None
        self._conn_id = 0
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        #: a stop the handler asked for while a message was being handled (prefix limit)
        self._stop_now: AutomaticStop | None = None
        self._restart_handle: asyncio.TimerHandle | None = None
        #: the prefix limit: per family, the count when it was last exceeded (status)
        self.prefix_limit_hits: dict[str, int] = {}
        #: monotonic time a prefix-limit tear-down ends (None: not held down)
        self.held_down_until: float | None = None

    # -- public --------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.fsm.state

    @property
    def established(self) -> bool:
        return self.fsm.state is State.ESTABLISHED

    @property
    def local_ip(self) -> str | None:
        """This side's address of the session (the configured one without a connection)."""
        w = self._writer
        got = w.local_address() if w is not None else None
        return got or self.settings.local_address

    @property
    def ibgp(self) -> bool:
        if self.negotiated is not None:
            return self.negotiated.peer_asn == self.settings.local_as
        return self.settings.ibgp

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bgp-{self.address}")

    async def stop(self, communication: str | None = None, *, deconfigured: bool = False) -> None:
        """Send a Cease (Administrative Shutdown; Peer De-configured with ``deconfigured``)
        if up, close, and end the task."""
        if self._task is None:
            return
        if self._restart_handle is not None:
            self._restart_handle.cancel()
            self._restart_handle = None
        await self._events.put(_Stop(communication, deconfigured))
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def shutdown(self, communication: str | None = None) -> None:
        """Administrative shutdown: Cease (subcode 2, with ``communication``,
        RFC 9003) if a session exists, then stay Idle, refusing connections,
        until :meth:`enable`."""
        self.admin_down = True
        self._post_nowait(_Admin("shutdown", communication))

    def enable(self) -> None:
        """Undo :meth:`shutdown`: start connecting (or listening, if passive) again."""
        self.admin_down = False
        self._end_prefix_hold_down()
        self._post_nowait(_Admin("enable"))

    def reset(self, communication: str | None = None) -> None:
        """Hard reset: Cease / Administrative Reset (subcode 4), then start again at once
        (ending a prefix-limit hold-down: the operator's reset overrides it)."""
        self._end_prefix_hold_down()
        self._post_nowait(_Admin("reset", communication))

    def _end_prefix_hold_down(self) -> None:
        if self._restart_handle is not None:
            self._restart_handle.cancel()
            self._restart_handle = None
        self.held_down_until = None

    def incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection from this neighbor was accepted by a listener."""
        self._post_nowait(_Connected(reader, writer, outgoing=False))

    async def send_messages(self, messages: Iterable[bytes]) -> int:
        """Send framed messages (UPDATEs from the adj-RIB-out) with back-pressure.

        Returns how many were written; stops early if the session went down.
        """
        sent = 0
        async with self._send_lock:
            for m in messages:
                w = self._writer
                if w is None or not self.established:
                    break
                try:
                    w.send(m)
                    if w.must_wait:
                        await w.drain_if_needed()
                except (ConnectionError, OSError) as e:
                    self._post_nowait(_ConnLost(self._conn_id, f"write failed: {e}"))
                    break
                sent += 1
        self.counters["messages_out"] += sent
        self.counters["updates_out"] += sent
        return sent

    def prefix_limit_exceeded(self, family: Family, count: int) -> None:
        """The handler counted ``count`` prefixes of ``family`` from this peer, over
        ``max_prefixes``: tear the session down (Cease / Maximum Number of
        Prefixes Reached, RFC 4486, its data the AFI, SAFI and the limit, section
        4) and keep it down for ``max_prefixes_restart`` seconds; or, with the
        "warning" action, only report it. Takes effect before the next message
        of the peer is handled."""
        limit = self.settings.max_prefixes
        assert limit is not None
        self.counters["prefix_limit_exceeded"] += 1
        self.prefix_limit_hits[family.name] = count
        what = f"maximum number of prefixes reached: {count} {family.name} prefixes, limit {limit}"
        if self.settings.max_prefixes_action == "warning":
            log.warning("peer %s: %s (warning only)", self.address, what)
            self.last_error = what + " (warning only)"
            return
        if self._stop_now is not None or not self.established:
            return
        restart = self.settings.max_prefixes_restart
        log.error("peer %s: %s; closing the session%s", self.address, what,
                  f" for {restart:g} s" if restart else " until the agent restarts")
        note = Notification(ErrorCode.CEASE, CeaseSubcode.MAX_PREFIXES,
                            struct.pack("!HBI", family.afi, family.safi, limit), what)
        self._stop_now = AutomaticStop(note, what)
        if restart > 0:
            self.held_down_until = self._clock() + restart
            if self._restart_handle is not None:
                self._restart_handle.cancel()
            self._restart_handle = asyncio.get_running_loop().call_later(restart, self._end_hold_down)

    def _end_hold_down(self) -> None:
        self._restart_handle = None
        self.held_down_until = None
        if self._task is not None and self.fsm.state is State.IDLE and not self.admin_down:
            log.info("peer %s: prefix-limit hold-down over, starting again", self.address)
            self._post_nowait(ManualStartPassive() if self.settings.passive else ManualStart())

    def request_refresh(self, families: Iterable[Family] | None = None) -> list[Family]:
        """Ask the peer to send its routes again (ROUTE-REFRESH, RFC 2918): soft
        inbound reconfiguration without a session reset. Returns the families asked."""
        n = self.negotiated
        if n is None or not self.established:
            raise ValueError(f"neighbor {self.address}: session is {self.fsm.state.value}, not Established")
        if not n.route_refresh:
            raise ValueError(f"neighbor {self.address}: the peer did not advertise route refresh")
        asked = sorted(n.families if families is None else set(families) & n.families)
        for fam in asked:
            self._write_message(RouteRefreshMessage(fam.afi, fam.safi, 0))
        return asked

    def to_json(self) -> dict[str, Any]:
        n = self.negotiated
        return {
            "address": self.address,
            "port": self.settings.port,
            "remote_as": self.settings.remote_as,
            "state": self.fsm.state.value,
            "uptime": round(self._clock() - self.established_at, 1) if self.established_at else None,
            "downtime": None if self.established_at else round(self._clock() - self.down_since, 1),
            "admin_down": self.admin_down,
            "families": sorted(f.name for f in n.families) if n else [],
            "peer_router_id": str(n.peer_id) if n else None,
            "hold_time": n.hold_time if n else self.settings.hold_time,
            "addpath_receive": sorted(f.name for f in n.addpath_receive) if n else [],
            "addpath_send": sorted(f.name for f in n.addpath_send) if n else [],
            "last_error": self.last_error,
            "counters": dict(self.counters),
            "max_prefixes": self.settings.max_prefixes,
            "prefix_limit": None if self.settings.max_prefixes is None else {
                "limit": self.settings.max_prefixes,
                "action": self.settings.max_prefixes_action,
                "restart": self.settings.max_prefixes_restart,
                "exceeded": dict(self.prefix_limit_hits),
                "held_down_for": None if self.held_down_until is None
                else round(max(0.0, self.held_down_until - self._clock()), 1),
            },
        }

    # -- the driver task -----------------------------------------------------

    def _post_nowait(self, ev: Any) -> None:
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            t = asyncio.get_running_loop().create_task(self._events.put(ev))
            self._side_tasks.add(t)
            t.add_done_callback(self._side_tasks.discard)

    async def _run(self) -> None:
        start: Event = ManualStartPassive() if self.settings.passive else ManualStart()
        try:
            await self._perform(self.fsm.handle(start, self._clock()))
            while True:
                deadline = self.fsm.next_deadline()
                ev: Any
                try:
                    ev = self._events.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = None if deadline is None else max(0.0, deadline - self._clock())
                    try:
                        ev = await asyncio.wait_for(self._events.get(), timeout)
                    except TimeoutError:
                        await self._perform(self.fsm.poll(self._clock()))
                        continue
                if isinstance(ev, _Stop):
                    await self._perform(self.fsm.handle(ManualStop(ev.communication, ev.deconfigured), self._clock()))
                    return
                if isinstance(ev, _Admin):
                    await self._on_admin(ev)
                    continue
                await self._on_event(ev)
                if deadline is not None and deadline <= self._clock():
                    await self._perform(self.fsm.poll(self._clock()))
        finally:
            self._close_connection()
            for t in (self._connect_task, *self._side_tasks):
                if t is not None:
                    t.cancel()

    async def _on_admin(self, ev: _Admin) -> None:
        now = self._clock()
        start: Event = ManualStartPassive() if self.settings.passive else ManualStart()
        if ev.action == "shutdown":
            await self._perform(self.fsm.handle(ManualStop(ev.communication), now))
            return
        if ev.action == "reset":
            note = Notification.cease(CeaseSubcode.ADMIN_RESET, ev.communication, "administratively reset")
            reason = "administratively reset" + (f': "{ev.communication}"' if ev.communication else "")
            await self._perform(self.fsm.handle(AutomaticStop(note, reason), now))
        if not self.admin_down:  # enable, or a reset of a peer that is not shut down
            await self._perform(self.fsm.handle(start, self._clock()))

    async def _on_event(self, ev: Any) -> None:
        now = self._clock()
        if isinstance(ev, _Message):
            if ev.conn != self._conn_id:
                return  # from a connection already dropped
            await self._on_message(ev.msg_type, ev.body)
        elif isinstance(ev, _Connected):
            await self._on_connected(ev)
        elif isinstance(ev, _ConnLost):
            if ev.conn != self._conn_id or self._writer is None:
                return
            self._close_connection()
            await self._perform(self.fsm.handle(TcpConnectionFails(ev.reason), now))
        elif isinstance(ev, _ConnectFailed):
            if self._writer is None and self.fsm.state is State.CONNECT:
                await self._perform(self.fsm.handle(TcpConnectionFails(ev.reason), now))
        elif isinstance(ev, _HeaderError):
            if ev.conn == self._conn_id:
                self.last_error = ev.error.describe()
                await self._perform(self.fsm.handle(event_for_error(ev.error), now))
        elif isinstance(ev, Event):
            await self._perform(self.fsm.handle(ev, now))

    async def _on_message(self, msg_type: int, body: bytes) -> None:
        self.counters["messages_in"] += 1
        try:
            # The reader frames ahead of the session (up to RFC 8654's 65,535 octets); the
            # limit is the one negotiated by the OPEN before this message, checked here in
            # order: 4,096 unless both sides announced extended messages.
            limit = self.rx_ctx.max_message_len
            if HEADER_LEN + len(body) > limit and msg_type not in (MessageType.OPEN, MessageType.KEEPALIVE):
                raise BGPError(ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH,
                               (HEADER_LEN + len(body)).to_bytes(2, "big"),
                               reason=f"{_type_name(msg_type)} message length {HEADER_LEN + len(body)} "
                                      f"(allowed up to {limit}: extended messages not negotiated)")
            msg = decode_message(msg_type, body, self.rx_ctx)
        except BGPError as err:
            log.error(
                "peer %s: malformed %s message: %s; offending message: %s",
                self.address,
                _type_name(msg_type),
                err.describe(),
                body.hex(),
            )
            self.last_error = err.describe()
            await self._perform(self.fsm.handle(event_for_error(err), self._clock()))
            return
        if msg_type == MessageType.UPDATE:
            self.counters["updates_in"] += 1
            if msg.action:
                if msg.action >= 2:
                    self.counters["treat_as_withdraw"] += 1
                log.warning(
                    "peer %s: UPDATE handled per RFC 7606 (%s): %s; message: %s",
                    self.address,
                    msg.action.name.lower(),
                    "; ".join(msg.errors),
                    body.hex(),
                )
        elif msg_type == MessageType.NOTIFICATION:
            self.counters["notifications_in"] += 1
            log.warning("peer %s: NOTIFICATION received: %s", self.address, _describe_notification(msg))
            self.last_error = f"received {_describe_notification(msg)}"
        was_established = self.established
        await self._perform(self.fsm.handle(event_for_message(msg), self._clock()))
        if was_established and self.established:
            if msg_type == MessageType.UPDATE:
                self.handler.update_received(self, msg)
                if self._stop_now is not None:
                    stop, self._stop_now = self._stop_now, None
                    await self._perform(self.fsm.handle(stop, self._clock()))
            elif msg_type == MessageType.ROUTE_REFRESH:
                self.handler.refresh_requested(self, Family(msg.afi, msg.safi), msg.subtype)

    async def _on_connected(self, ev: _Connected) -> None:
        now = self._clock()
        state = self.fsm.state
        if self._writer is None and state in (State.CONNECT, State.ACTIVE):
            if self._connect_task is not None:
                self._connect_task.cancel()
                self._connect_task = None
            self._attach(ev)
            await self._perform(self.fsm.handle(TcpCrAcked() if ev.outgoing else TcpConnectionConfirmed(), now))
            if ev.first is not None:
                await self._on_message(*ev.first)
            return
        if ev.outgoing or state is State.IDLE or state is State.ESTABLISHED or self._writer is None:
            # Nobody needs this connection (Established keeps the old one:
            # CollisionDetectEstablishedState is off).
            if not ev.outgoing and state is State.ESTABLISHED:
                _refuse(ev.writer, "connection collision with an established session")
            else:
                ev.writer.close()
            return
        # Collision in OpenSent/OpenConfirm: read the newcomer's OPEN, then decide.
        if ev.first is None:
            t = asyncio.get_running_loop().create_task(self._read_collision_open(ev))
            self._side_tasks.add(t)
            t.add_done_callback(self._side_tasks.discard)
            return
        try:
            remote_open = decode_message(ev.first[0], ev.first[1], DEFAULT_CONTEXT)
        except BGPError:
            ev.writer.close()
            return
        keep = resolve_collision(
            self.settings.router_id, remote_open.bgp_id, self.settings.local_as, remote_open.asn
        )
        existing_is_ours = bool(self.fsm.outgoing)
        keep_existing = (keep is Keep.OUTGOING) == existing_is_ours
        log.info(
            "peer %s: connection collision, keeping the %s connection",
            self.address,
            "existing" if keep_existing else "new",
        )
        if keep_existing:
            _refuse(ev.writer, "connection collision resolved in favour of the other connection")
            return
        await self._perform(self.fsm.handle(OpenCollisionDump(), now))
        self._close_connection()
        await self._perform(self.fsm.handle(ManualStartPassive(), now))
        self._attach(ev)
        await self._perform(self.fsm.handle(TcpConnectionConfirmed(), now))
        await self._on_message(*ev.first)

    async def _read_collision_open(self, ev: _Connected) -> None:
        framer = MessageReader(MAX_EXTENDED_MESSAGE_LEN)  # the session checks the negotiated limit
        try:
            async with asyncio.timeout(10):
                while True:
                    m = framer.next_message()
                    if m is not None:
                        break
                    data = await ev.reader.read(4096)
                    if not data:
                        raise ConnectionError("closed")
                    framer.feed(data)
        except (TimeoutError, ConnectionError, OSError, BGPError):
            ev.writer.close()
            return
        if m[0] != MessageType.OPEN:
            ev.writer.close()
            return
        ev.first = m
        ev.framer = framer
        await self._events.put(ev)

    def _attach(self, ev: _Connected) -> None:
        self._conn_id += 1
        self._writer = transport.BoundedWriter(ev.writer)
        framer = ev.framer or MessageReader(MAX_EXTENDED_MESSAGE_LEN)
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_loop(self._conn_id, ev.reader, framer), name=f"bgp-read-{self.address}"
        )

    def _close_connection(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.writer.close()
            self._writer = None
        self._conn_id += 1

    async def _read_loop(self, conn: int, reader: asyncio.StreamReader, framer: MessageReader) -> None:
        put = self._events.put
        reason = "connection closed by peer"
        try:
            while True:
                while True:
                    try:
                        m = framer.next_message()
                    except BGPError as err:
                        log.error(
                            "peer %s: bad message header: %s; bytes: %s",
                            self.address,
                            err.describe(),
                            bytes(framer._buf[framer._pos : framer._pos + 19]).hex(),
                        )
                        await put(_HeaderError(conn, err))
                        return
                    if m is None:
                        break
                    await put(_Message(conn, m[0], m[1]))
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                framer.feed(data)
        except (ConnectionError, OSError) as e:
            reason = f"connection lost: {e}"
        await put(_ConnLost(conn, reason))

    # -- actions -------------------------------------------------------------

    async def _perform(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, SendMessage):
                self._write_message(a.message)
            elif isinstance(a, Connect):
                self._start_connect()
            elif isinstance(a, Disconnect):
                self._close_connection()
            elif isinstance(a, StateChanged):
                log.info("peer %s: %s -> %s", self.address, a.old.value, a.new.value)
            elif isinstance(a, SessionUp):
                self._session_up(a.negotiated)
            elif isinstance(a, SessionDown):
                self._session_down(a)

    def _write_message(self, msg: Any) -> None:
        w = self._writer
        if w is None:
            return
        if isinstance(msg, Notification):
            self.counters["notifications_out"] += 1
            log.warning("peer %s: sending NOTIFICATION: %s", self.address, _describe_notification(msg))
        try:
            w.send(encode_message(msg, self.tx_ctx))
            self.counters["messages_out"] += 1
        except (ConnectionError, OSError) as e:
            self._post_nowait(_ConnLost(self._conn_id, f"write failed: {e}"))

    def _start_connect(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            return
        s = self.settings
        conn_id = self._conn_id

        async def attempt() -> None:
            try:
                reader, writer = await transport.open_connection(
                    s.address,
                    s.port,
                    local_addr=s.local_address,
                    md5=s.md5_password,
                    gtsm=s.gtsm_hops,
                    ttl=s.ttl,
                    timeout=s.connect_timeout,
                )
            except (OSError, ValueError) as e:
                self.last_error = str(e)
                await self._events.put(_ConnectFailed(conn_id, str(e)))
                return
            await self._events.put(_Connected(reader, writer, outgoing=True))

        self._connect_task = asyncio.get_running_loop().create_task(attempt())

    def _session_up(self, negotiated: Negotiated) -> None:
        self.negotiated = negotiated
        ibgp = negotiated.peer_asn == self.settings.local_as
        self.rx_ctx = negotiated.rx_context(ibgp)
        self.tx_ctx = negotiated.tx_context(ibgp)
        self.established_at = self._clock()
        self.counters["established_transitions"] += 1
        self.last_error = ""
        log.info(
            "peer %s: session established (AS %d, id %s, families %s)",
            self.address,
            negotiated.peer_asn,
            negotiated.peer_id,
            ", ".join(sorted(f.name for f in negotiated.families)),
        )
        self.handler.session_up(self)

    def _session_down(self, a: SessionDown) -> None:
        self.last_error = a.reason
        log.warning("peer %s: session down: %s", self.address, a.reason)
        was = a.established
        self.negotiated = None
        self.rx_ctx = DEFAULT_CONTEXT
        self.tx_ctx = DEFAULT_CONTEXT
        if self.established_at is not None:
            self.down_since = self._clock()
        self.established_at = None
        if was:
            self.handler.session_down(self, a.reason)


@dataclass(slots=True)
class _ConnectFailed:
    conn: int
    reason: str


@dataclass(slots=True)
class _HeaderError:
    conn: int
    error: BGPError


def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
    """Send Cease / Connection Collision Resolution on a connection we drop."""
    note = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION, b"")
    with contextlib.suppress(Exception):
        writer.write(encode_message(note, DEFAULT_CONTEXT))
        writer.close()
    log.info("refused a connection: %s", why)


def _type_name(t: int) -> str:
    try:
        return MessageType(t).name
    except ValueError:
        return f"type-{t}"


def _describe_notification(n: Any) -> str:
    reason = getattr(n, "reason", None)
    return str(reason) if reason else f"code {n.code} subcode {n.subcode}"

