"""The RFC 4271 section 8 BGP finite state machine, pure and sans-IO.

One :class:`BgpFsm` drives one transport connection attempt at a time for
one configured peer. It never touches sockets, clocks or tasks: the caller
feeds events (:meth:`BgpFsm.handle`, with the current time) and carries out
the actions returned (send this message, start/stop that timer, open or
close the connection, the session came up or went down). This is the h11
model: the whole protocol logic can be tested by feeding events and
asserting actions.

Timers are named (:class:`Timer`). The caller may either run a real timer
per :class:`StartTimer` action and feed the matching ``*TimerExpires``
event, or call :meth:`BgpFsm.poll` with the current time; the FSM keeps
the deadlines itself. An expiry event for a timer that is not running (a
race between the caller's timer and a StopTimer) is ignored.

Deviations from RFC 4271, all among the options the RFC leaves open:

* DelayOpen, SendNOTIFICATIONwithoutOPEN and CollisionDetectEstablishedState
  are off; collision detection between two connections is done by the
  caller with :func:`resolve_collision` and the :class:`OpenCollisionDump`
  event.
* DampPeerOscillations is on when ``auto_restart`` is set: after falling to
  Idle on an error the FSM starts the IdleHoldTimer with an exponential
  backoff and restarts itself when it expires.
* The ConnectRetryTimer also backs off exponentially (capped) with the
  number of consecutive failed attempts, and is jittered (section 10).
  The failure count restarts at 0 when a session reaches Established.
* With ``passive`` configured the FSM never initiates a connection (no
  ConnectRetryTimer in Active).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from ipaddress import IPv4Address
from typing import Any, ClassVar, Literal

from .wire.capabilities import Capability, Multiprotocol
from .wire.capabilities import RouteRefresh as RouteRefreshCapability
from .wire.constants import (
    CeaseSubcode,
    ErrorCode,
    FsmSubcode,
    MessageType,
    OpenSubcode,
)
from .wire.errors import BGPError
from .wire.keepalive import KEEPALIVE, Keepalive
from .wire.notification import Notification
from .wire.open import Negotiated, Open, negotiate
from .wire.route_refresh import RouteRefresh

# -- states, timers ---------------------------------------------------------------


class State(Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPENSENT = "OpenSent"
    OPENCONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class Timer(StrEnum):
    CONNECT_RETRY = "connect_retry"
    HOLD = "hold"
    KEEPALIVE = "keepalive"
    IDLE_HOLD = "idle_hold"


LARGE_HOLD_TIME = 240.0  # RFC 4271 section 8: "a large value", 4 minutes suggested


# -- configuration --------------------------------------------------------------------

PeerAs = int | Literal["external", "internal"] | None


def _default_capabilities() -> tuple[Capability, ...]:
    return (Multiprotocol(1, 1), RouteRefreshCapability())


@dataclass(frozen=True, slots=True)
class FsmConfig:
    """Per-peer settings the FSM needs.

    ``peer_as``: an AS number, ``"external"`` (any AS but ours),
    ``"internal"`` (our AS) or None (any). ``capabilities``: what we send;
    a FourOctetAS capability is always added. ``required_capabilities``:
    capability codes the peer must send, else OPEN error Unsupported
    Capability (RFC 5492 section 5). ``required_families``: families that
    must be negotiated, same error. ``min_hold_time``: smallest non-zero
    hold time we accept from the peer.
    """

    local_as: int
    router_id: IPv4Address
    peer_as: PeerAs = None
    hold_time: int = 90
    passive: bool = False
    capabilities: tuple[Capability, ...] = field(default_factory=_default_capabilities)
    required_capabilities: frozenset[int] = frozenset()
    required_families: frozenset[tuple[int, int]] = frozenset()
    min_hold_time: int = 3
    accept_zero_hold_time: bool = True
    connect_retry_time: float = 30.0
    connect_retry_max: float = 300.0
    auto_restart: bool = True
    idle_hold_time: float = 5.0
    idle_hold_max: float = 120.0
    large_hold_time: float = LARGE_HOLD_TIME

    def __post_init__(self) -> None:
        if not 0 < self.local_as <= 0xFFFFFFFF:
            raise ValueError(f"local AS {self.local_as} is not a valid AS number")
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 0xFFFF:
            raise ValueError(f"hold time {self.hold_time}: must be 0 or 3..65535 seconds")
        if isinstance(self.peer_as, int) and not 0 < self.peer_as <= 0xFFFFFFFF:
            raise ValueError(f"peer AS {self.peer_as} is not a valid AS number")
        if isinstance(self.peer_as, str) and self.peer_as not in ("external", "internal"):
            raise ValueError(f"peer AS {self.peer_as!r}: a number, 'external' or 'internal'")
        if int(self.router_id) == 0:
            raise ValueError("router id 0.0.0.0 is not allowed")


# -- events ---------------------------------------------------------------------------


class Event:
    """Base of FSM input events; ``NUMBER`` is the RFC 4271 section 8.1 event number."""

    __slots__ = ()
    NUMBER: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class ManualStart(Event):
    NUMBER = 1


@dataclass(frozen=True, slots=True)
class ManualStop(Event):
    """Operator stop; ``communication`` goes in the Cease (RFC 9003); ``deconfigured``:
    the neighbor is being removed (Cease / Peer De-configured, RFC 4486) instead of shut down."""

    NUMBER = 2
    communication: str | None = None
    deconfigured: bool = False


@dataclass(frozen=True, slots=True)
class AutomaticStart(Event):
    NUMBER = 3


@dataclass(frozen=True, slots=True)
class ManualStartPassive(Event):
    """ManualStart_with_PassiveTcpEstablishment."""

    NUMBER = 4


@dataclass(frozen=True, slots=True)
class AutomaticStartPassive(Event):
    """AutomaticStart_with_PassiveTcpEstablishment."""

    NUMBER = 5


@dataclass(frozen=True, slots=True)
class AutomaticStop(Event):
    """Stop decided by the speaker (e.g. prefix limit); default Cease / Unspecific."""

    NUMBER = 8
    notification: Notification | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConnectRetryTimerExpires(Event):
    NUMBER = 9


@dataclass(frozen=True, slots=True)
class HoldTimerExpires(Event):
    NUMBER = 10


@dataclass(frozen=True, slots=True)
class KeepaliveTimerExpires(Event):
    NUMBER = 11


@dataclass(frozen=True, slots=True)
class IdleHoldTimerExpires(Event):
    NUMBER = 13


@dataclass(frozen=True, slots=True)
class TcpCrAcked(Event):
    """Our outgoing connection succeeded (Tcp_CR_Acked)."""

    NUMBER = 16


@dataclass(frozen=True, slots=True)
class TcpConnectionConfirmed(Event):
    """The peer's incoming connection was accepted."""

    NUMBER = 17


@dataclass(frozen=True, slots=True)
class TcpConnectionFails(Event):
    NUMBER = 18
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BGPOpen(Event):
    NUMBER = 19
    open: Open


@dataclass(frozen=True, slots=True)
class BGPHeaderErr(Event):
    NUMBER = 21
    error: BGPError


@dataclass(frozen=True, slots=True)
class BGPOpenMsgErr(Event):
    NUMBER = 22
    error: BGPError


@dataclass(frozen=True, slots=True)
class OpenCollisionDump(Event):
    """The caller's collision resolution decided to drop this connection."""

    NUMBER = 23


@dataclass(frozen=True, slots=True)
class NotifMsg(Event):
    """A NOTIFICATION arrived (covers NotifMsgVerErr, event 24, too)."""

    NUMBER = 25
    notification: Notification


@dataclass(frozen=True, slots=True)
class KeepAliveMsg(Event):
    NUMBER = 26


@dataclass(frozen=True, slots=True)
class UpdateMsg(Event):
    NUMBER = 27
    update: Any = None


@dataclass(frozen=True, slots=True)
class UpdateMsgErr(Event):
    NUMBER = 28
    error: BGPError


@dataclass(frozen=True, slots=True)
class RouteRefreshMsg(Event):
    """Not an RFC 4271 event: a ROUTE-REFRESH counts as traffic in Established."""

    NUMBER = 0
    message: RouteRefresh | None = None


def event_for_message(msg: Any) -> Event:
    """The event for a decoded message (Open, Update, Keepalive, ...)."""
    if isinstance(msg, Open):
        return BGPOpen(msg)
    if isinstance(msg, Keepalive):
        return KeepAliveMsg()
    if isinstance(msg, Notification):
        return NotifMsg(msg)
    if isinstance(msg, RouteRefresh):
        return RouteRefreshMsg(msg)
    if getattr(msg, "MSG_TYPE", None) == MessageType.UPDATE:
        return UpdateMsg(msg)
    raise TypeError(f"not a BGP message: {msg!r}")


def event_for_error(err: BGPError) -> Event:
    """The event for a decoding error, by its NOTIFICATION code."""
    if err.code == ErrorCode.MESSAGE_HEADER:
        return BGPHeaderErr(err)
    if err.code == ErrorCode.OPEN_MESSAGE:
        return BGPOpenMsgErr(err)
    return UpdateMsgErr(err)


# -- actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    message: Any


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start ``timer`` to expire ``seconds`` from now."""

    timer: Timer
    seconds: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Connect:
    """Initiate a TCP connection to the peer (and keep listening)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the current TCP connection (after sending what was queued)."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State


@dataclass(frozen=True, slots=True)
class SessionUp:
    negotiated: Negotiated


@dataclass(frozen=True, slots=True)
class SessionDown:
    """The connection was abandoned. ``established``: a SessionUp preceded it.

    ``sent``/``received``: the NOTIFICATION involved, if any (the caller
    needs ``received`` for RFC 8538 graceful restart decisions).
    """

    reason: str
    established: bool = False
    sent: Notification | None = None
    received: Notification | None = None


Action = SendMessage | StartTimer | StopTimer | Connect | Disconnect | StateChanged | SessionUp | SessionDown


# -- collision ------------------------------------------------------------------------


class Keep(Enum):
    """Which of two colliding connections survives (RFC 4271 section 6.8)."""

    OUTGOING = "outgoing"  # the one we initiated
    INCOMING = "incoming"  # the one the peer initiated


def resolve_collision(
    local_id: IPv4Address, remote_id: IPv4Address, local_as: int = 0, remote_as: int = 0
) -> Keep:
    """Which connection to keep when both sides connected.

    The speaker with the higher BGP identifier keeps the connection it
    initiated. With equal identifiers (legal between ASes, RFC 6286
    section 2.3) the speaker with the larger AS keeps the one it initiated.
    A connection already Established normally wins regardless; that is the
    caller's decision before asking here.
    """
    lid, rid = int(local_id), int(remote_id)
    if lid != rid:
        return Keep.OUTGOING if lid > rid else Keep.INCOMING
    return Keep.OUTGOING if local_as > remote_as else Keep.INCOMING


# -- the machine ----------------------------------------------------------------------


class BgpFsm:
    """RFC 4271 FSM for one peer. Feed events to :meth:`handle`; perform the actions."""

    def __init__(
        self,
        config: FsmConfig,
        random: Callable[[], float] | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config
        self._random = random if random is not None else _random.random
        self.state = State.IDLE
        self.state_since = now
        self.connect_retry_counter = 0
        self.local_open = Open.create(
            config.local_as, config.hold_time, config.router_id, config.capabilities
        )
        self.remote_open: Open | None = None
        self.negotiated: Negotiated | None = None
        self.outgoing: bool | None = None  # whether the current connection is ours
        self.last_reason = ""
        self.established_at: float | None = None
        self.deadlines: dict[Timer, float] = {}
        self._passive = config.passive
        self._now = now
        self._out: list[Action] = []

    # -- public ---------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event at time ``now``; return the actions to perform, in order."""
        self._now = now
        self._out = []
        timer = _TIMER_OF.get(type(event))
        if timer is not None and timer not in self.deadlines:
            return []  # stale expiry of a stopped timer
        if timer is not None:
            del self.deadlines[timer]
        handler = getattr(self, "_in_" + self.state.name.lower())
        handler(event)
        out, self._out = self._out, []
        return out

    def poll(self, now: float) -> list[Action]:
        """Fire, in deadline order, each timer whose deadline has passed; return the actions.

        Each timer fires at most once per call; one stopped or restarted by
        an earlier expiry in the same call does not fire.
        """
        out: list[Action] = []
        due = sorted((d, t) for t, d in self.deadlines.items() if d <= now)
        for deadline, timer in due:
            if self.deadlines.get(timer) == deadline:
                out.extend(self.handle(_EXPIRY[timer](), now))
        return out

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    # -- helpers --------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _jitter(self, seconds: float) -> float:
        """RFC 4271 section 10: scale by a random factor in (0.75, 1.0]."""
        return seconds * (1.0 - 0.25 * self._random())

    def _start(self, timer: Timer, seconds: float) -> None:
        self.deadlines[timer] = self._now + seconds
        self._emit(StartTimer(timer, seconds))

    def _stop(self, timer: Timer) -> None:
        if timer in self.deadlines:
            del self.deadlines[timer]
            self._emit(StopTimer(timer))

    def _stop_all(self) -> None:
        for t in list(self.deadlines):
            self._stop(t)

    def _backoff(self, base: float, cap: float, exponent: int) -> float:
        return self._jitter(min(base * (2 ** min(max(exponent, 0), 20)), cap))

    def _start_connect_retry(self) -> None:
        c = self.config
        self._start(
            Timer.CONNECT_RETRY,
            self._backoff(c.connect_retry_time, c.connect_retry_max, self.connect_retry_counter),
        )

    def _goto(self, new: State) -> None:
        if new is not self.state:
            self._emit(StateChanged(self.state, new))
            self.state = new
            self.state_since = self._now

    def _send(self, msg: Any) -> None:
        self._emit(SendMessage(msg))

    def _start_connecting(self, passive: bool) -> None:
        """Idle -> Connect or Active (events 1, 3, 4, 5, 13)."""
        self._stop(Timer.IDLE_HOLD)
        self._passive = passive or self.config.passive
        if self._passive:
            if not self.config.passive:
                self._start_connect_retry()
            self._goto(State.ACTIVE)
        else:
            self._start_connect_retry()
            self._emit(Connect())
            self._goto(State.CONNECT)

    def _connected(self, outgoing: bool) -> None:
        """Connect/Active -> OpenSent: send our OPEN, arm the large hold timer."""
        self._stop(Timer.CONNECT_RETRY)
        self.outgoing = outgoing
        self.remote_open = None
        self.negotiated = None
        self._send(self.local_open)
        self._start(Timer.HOLD, self.config.large_hold_time)
        self._goto(State.OPENSENT)

    def _fail(
        self,
        reason: str,
        *,
        send: Notification | None = None,
        received: Notification | None = None,
        counter: Literal["inc", "keep", "reset"] = "inc",
        restart: bool = True,
        to: State = State.IDLE,
    ) -> None:
        """Abandon the connection: NOTIFICATION if any, close, report, go to ``to``.

        ``counter`` says what happens to the ConnectRetryCounter (which also
        drives the backoff); ``restart`` whether to arm the IdleHoldTimer.
        """
        was_up = self.state is State.ESTABLISHED
        if send is not None:
            self._send(send)
        self._stop_all()
        if self.state is not State.IDLE:
            self._emit(Disconnect())
        if counter == "inc":
            self.connect_retry_counter += 1
        elif counter == "reset":
            self.connect_retry_counter = 0
        self.last_reason = reason
        self.established_at = None
        self.outgoing = None
        self._goto(to)
        self._emit(SessionDown(reason, was_up, send, received))
        if to is State.ACTIVE:
            if not self.config.passive:
                self._start_connect_retry()
        elif restart and self.config.auto_restart:
            c = self.config
            self._start(
                Timer.IDLE_HOLD,
                self._backoff(c.idle_hold_time, c.idle_hold_max, self.connect_retry_counter - 1),
            )

    def _fatal(self, notification: Notification, reason: str | None = None) -> None:
        self._fail(reason or notification.reason, send=notification)

    def _fsm_error(self, event: Event) -> None:
        sub = {
            State.OPENSENT: FsmSubcode.UNEXPECTED_IN_OPENSENT,
            State.OPENCONFIRM: FsmSubcode.UNEXPECTED_IN_OPENCONFIRM,
            State.ESTABLISHED: FsmSubcode.UNEXPECTED_IN_ESTABLISHED,
        }.get(self.state, FsmSubcode.UNSPECIFIED)
        what = type(event).__name__
        self._fatal(
            Notification(ErrorCode.FSM, sub, b"", f"unexpected {what} in state {self.state.value}")
        )

    def _manual_stop(self, event: ManualStop) -> None:
        """Event 2 in any state but Idle: Cease / Administrative Shutdown when a session exists."""
        note = None
        if self.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
            note = Notification.cease(
                CeaseSubcode.PEER_DECONFIGURED if event.deconfigured else CeaseSubcode.ADMIN_SHUTDOWN,
                event.communication, "neighbor de-configured" if event.deconfigured else "administratively stopped"
            )
        reason = "neighbor de-configured" if event.deconfigured else "administratively stopped"
        if event.communication:
            reason += f': "{event.communication}"'
        self._fail(reason, send=note, counter="reset", restart=False)

    def _automatic_stop(self, event: AutomaticStop) -> None:
        note = None
        if self.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
            note = event.notification or Notification(ErrorCode.CEASE, 0, b"", event.reason)
        reason = event.reason or (note.reason if note else "automatically stopped")
        self._fail(reason, send=note, restart=False)

    def _common(self, event: Event) -> bool:
        """Events handled alike in OpenSent, OpenConfirm and Established."""
        if isinstance(event, ManualStop):
            self._manual_stop(event)
        elif isinstance(event, AutomaticStop):
            self._automatic_stop(event)
        elif isinstance(event, HoldTimerExpires):
            self._fatal(
                Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0),
                f"hold timer expired (no message from the peer for "
                f"{self._hold_for_reason()} s)",
            )
        elif isinstance(event, (BGPHeaderErr, BGPOpenMsgErr, UpdateMsgErr)):
            self._fatal(Notification.from_error(event.error), event.error.describe())
        elif isinstance(event, OpenCollisionDump):
            self._fatal(
                Notification(
                    ErrorCode.CEASE,
                    CeaseSubcode.CONNECTION_COLLISION,
                    b"",
                    "connection collision resolution: this connection is dropped",
                )
            )
        elif isinstance(event, NotifMsg):
            n = event.notification
            version = n.code == ErrorCode.OPEN_MESSAGE and n.subcode == OpenSubcode.UNSUPPORTED_VERSION
            self._fail(
                f"peer sent NOTIFICATION {n.reason}",
                received=n,
                # NotifMsgVerErr (event 24) in OpenSent leaves the counter alone.
                counter="keep" if version and self.state is State.OPENSENT else "inc",
            )
        elif isinstance(event, TcpConnectionFails):
            why = event.reason or "TCP connection failed"
            if self.state is State.OPENSENT:
                self._fail(why, counter="keep", to=State.ACTIVE)
            else:
                self._fail(why)
        elif isinstance(event, (ManualStart, AutomaticStart, ManualStartPassive, AutomaticStartPassive)):
            pass  # ignored once started
        elif isinstance(event, (TcpCrAcked, TcpConnectionConfirmed)):
            # A second connection: the caller tracks it with its own FSM (6.8).
            pass
        else:
            return False
        return True

    def _hold_for_reason(self) -> float:
        if self.state is State.OPENSENT:
            return self.config.large_hold_time
        return self.negotiated.hold_time if self.negotiated else self.config.hold_time

    # -- OPEN checks -------------------------------------------------------------

    def check_open(self, remote: Open) -> Notification | None:
        """The NOTIFICATION an acceptable-in-syntax OPEN still deserves, or None.

        RFC 4271 section 6.2 semantic checks, RFC 6286 (identifier), RFC 7607
        (AS 0), RFC 5492 (required capabilities).
        """
        c = self.config
        if remote.other_params:
            t, v = remote.other_params[0]
            return Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER,
                b"",
                f"optional parameter type {t} ({len(v)} octets) is not supported",
            )
        asn = remote.asn
        expected: str | None = None
        if asn == 0 or remote.my_as == 0:
            expected = "a non-zero AS (RFC 7607)"
        elif isinstance(c.peer_as, int) and asn != c.peer_as:
            expected = f"AS {c.peer_as}"
        elif c.peer_as == "external" and asn == c.local_as:
            expected = f"an external AS (not {c.local_as})"
        elif c.peer_as == "internal" and asn != c.local_as:
            expected = f"our own AS {c.local_as}"
        if expected is not None:
            return Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.BAD_PEER_AS,
                b"",
                f"peer AS {asn} (my AS field {remote.my_as}), expected {expected}",
            )
        if asn == c.local_as and remote.bgp_id == c.router_id:
            return Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.BAD_BGP_IDENTIFIER,
                b"",
                f"internal peer uses our own BGP identifier {remote.bgp_id}",
            )
        hold = remote.hold_time
        if (hold == 0 and not c.accept_zero_hold_time) or 0 < hold < c.min_hold_time:
            limit = f"at least {c.min_hold_time} s" + ("" if c.accept_zero_hold_time else ", not 0")
            return Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.UNACCEPTABLE_HOLD_TIME,
                b"",
                f"peer hold time {hold} s, need {limit}",
            )
        missing = sorted(code for code in c.required_capabilities if not remote.has(code))
        if missing:
            ours = [cap for cap in self.local_open.capabilities if cap.code in missing]
            data = b"".join(cap.encode() for cap in ours) or bytes(
                b for code in missing for b in (code, 0)
            )
            return Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.UNSUPPORTED_CAPABILITY,
                data,
                "peer did not send required capability code(s) "
                + ", ".join(str(m) for m in missing),
            )
        if c.required_families:
            have = self.local_open.families & remote.families
            lacking = sorted(f for f in c.required_families if f not in have)
            if lacking:
                data = b"".join(Multiprotocol(a, s).encode() for a, s in lacking)
                names = ", ".join(
                    Multiprotocol(a, s).family.name for a, s in lacking
                )
                return Notification(
                    ErrorCode.OPEN_MESSAGE,
                    OpenSubcode.UNSUPPORTED_CAPABILITY,
                    data,
                    f"required address family not negotiated: {names}",
                )
        return None

    # -- states -------------------------------------------------------------------

    def _in_idle(self, event: Event) -> None:
        if isinstance(event, ManualStart):
            self.connect_retry_counter = 0
            self._start_connecting(passive=False)
        elif isinstance(event, ManualStartPassive):
            self.connect_retry_counter = 0
            self._start_connecting(passive=True)
        elif isinstance(event, AutomaticStart):
            self._start_connecting(passive=False)
        elif isinstance(event, AutomaticStartPassive):
            self._start_connecting(passive=True)
        elif isinstance(event, IdleHoldTimerExpires):
            if self.config.auto_restart:
                self._start_connecting(passive=self._passive)
        elif isinstance(event, ManualStop):
            # Also cancels a pending automatic restart.
            self._stop(Timer.IDLE_HOLD)
            self.connect_retry_counter = 0
        elif isinstance(event, (TcpCrAcked, TcpConnectionConfirmed)):
            self._emit(Disconnect())  # nobody wants this connection
        # Any other event is ignored in Idle (RFC 4271 section 8.2.2).

    def _in_connect(self, event: Event) -> None:
        if isinstance(event, (ManualStart, AutomaticStart, ManualStartPassive, AutomaticStartPassive)):
            return
        if isinstance(event, ManualStop):
            self._manual_stop(event)
        elif isinstance(event, AutomaticStop):
            self._automatic_stop(event)
        elif isinstance(event, ConnectRetryTimerExpires):
            # The attempt timed out: drop it and try again, backing off.
            self.connect_retry_counter += 1
            self._emit(Disconnect())
            self._start_connect_retry()
            self._emit(Connect())
        elif isinstance(event, TcpCrAcked):
            self._connected(outgoing=True)
        elif isinstance(event, TcpConnectionConfirmed):
            self._connected(outgoing=False)
        elif isinstance(event, TcpConnectionFails):
            self._fail(event.reason or "TCP connection attempt failed")
        else:
            self._fail(f"unexpected {type(event).__name__} in state Connect")

    def _in_active(self, event: Event) -> None:
        if isinstance(event, (ManualStart, AutomaticStart, ManualStartPassive, AutomaticStartPassive)):
            return
        if isinstance(event, ManualStop):
            self._manual_stop(event)
        elif isinstance(event, AutomaticStop):
            self._automatic_stop(event)
        elif isinstance(event, ConnectRetryTimerExpires):
            self._start_connect_retry()
            self._emit(Connect())
            self._goto(State.CONNECT)
        elif isinstance(event, TcpCrAcked):
            self._connected(outgoing=True)
        elif isinstance(event, TcpConnectionConfirmed):
            self._connected(outgoing=False)
        elif isinstance(event, TcpConnectionFails):
            self._fail(event.reason or "TCP connection failed")
        else:
            self._fail(f"unexpected {type(event).__name__} in state Active")

    def _in_opensent(self, event: Event) -> None:
        if self._common(event):
            return
        if isinstance(event, BGPOpen):
            remote = event.open
            bad = self.check_open(remote)
            if bad is not None:
                self._fatal(bad, f"rejected the peer's OPEN: {bad.reason}")
                return
            self.remote_open = remote
            neg = negotiate(self.local_open, remote)
            self.negotiated = neg
            self._send(KEEPALIVE)
            if neg.hold_time:
                self._start(Timer.KEEPALIVE, self._jitter(neg.keepalive_time))
                self._start(Timer.HOLD, neg.hold_time)
            else:
                self._stop(Timer.KEEPALIVE)
                self._stop(Timer.HOLD)
            self._goto(State.OPENCONFIRM)
        else:
            self._fsm_error(event)

    def _keepalive_tick(self) -> None:
        assert self.negotiated is not None
        self._send(KEEPALIVE)
        if self.negotiated.hold_time:
            self._start(Timer.KEEPALIVE, self._jitter(self.negotiated.keepalive_time))

    def _restart_hold(self) -> None:
        if self.negotiated is not None and self.negotiated.hold_time:
            self._start(Timer.HOLD, self.negotiated.hold_time)

    def _in_openconfirm(self, event: Event) -> None:
        if self._common(event):
            return
        if isinstance(event, KeepaliveTimerExpires):
            self._keepalive_tick()
        elif isinstance(event, KeepAliveMsg):
            assert self.negotiated is not None
            self._restart_hold()
            self.connect_retry_counter = 0
            self.established_at = self._now
            self.last_reason = ""
            self._goto(State.ESTABLISHED)
            self._emit(SessionUp(self.negotiated))
        else:
            self._fsm_error(event)

    def _in_established(self, event: Event) -> None:
        if self._common(event):
            return
        if isinstance(event, KeepaliveTimerExpires):
            self._keepalive_tick()
        elif isinstance(event, (KeepAliveMsg, UpdateMsg, RouteRefreshMsg)):
            self._restart_hold()
        else:
            self._fsm_error(event)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "since": self.state_since,
            "connect_retry_counter": self.connect_retry_counter,
            "last_reason": self.last_reason,
            "negotiated": self.negotiated.to_json() if self.negotiated else None,
        }


_TIMER_OF: dict[type[Event], Timer] = {
    ConnectRetryTimerExpires: Timer.CONNECT_RETRY,
    HoldTimerExpires: Timer.HOLD,
    KeepaliveTimerExpires: Timer.KEEPALIVE,
    IdleHoldTimerExpires: Timer.IDLE_HOLD,
}
_EXPIRY: dict[Timer, type[Event]] = {t: e for e, t in _TIMER_OF.items()}
