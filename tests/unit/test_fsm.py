"""The pure RFC 4271 FSM, driven through whole sequences; actions asserted exactly."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from vpe.bgp import fsm as F
from vpe.bgp.fsm import (
    BgpFsm,
    Connect,
    Disconnect,
    FsmConfig,
    Keep,
    SendMessage,
    SessionDown,
    SessionUp,
    StartTimer,
    State,
    StateChanged,
    StopTimer,
    Timer,
    resolve_collision,
)
from vpe.bgp.wire import capabilities as c
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.errors import BGPError
from vpe.bgp.wire.keepalive import KEEPALIVE
from vpe.bgp.wire.notification import Notification
from vpe.bgp.wire.open import Open
from vpe.bgp.wire.route_refresh import RouteRefresh
from vpe.bgp.wire.update import Update

LOCAL_ID = IPv4Address("192.0.2.1")
PEER_ID = IPv4Address("192.0.2.2")
VPN_CAPS = (c.Multiprotocol.of(VPNV4), c.RouteRefresh())


def no_jitter() -> float:
    return 0.0  # jitter factor 1.0


def config(**kw: Any) -> FsmConfig:
    base: dict[str, Any] = {
        "local_as": 65001,
        "router_id": LOCAL_ID,
        "peer_as": 65002,
        "capabilities": VPN_CAPS,
    }
    base.update(kw)
    return FsmConfig(**base)


def peer_open(asn: int = 65002, hold: int = 90, rid: IPv4Address = PEER_ID, caps: Any = VPN_CAPS) -> Open:
    return Open.create(asn, hold, rid, caps)


def machine(rng: Callable[[], float] = no_jitter, **kw: Any) -> BgpFsm:
    return BgpFsm(config(**kw), random=rng)


def notifications(actions: list[Any]) -> list[Notification]:
    return [a.message for a in actions if isinstance(a, SendMessage) and isinstance(a.message, Notification)]


def establish(m: BgpFsm, peer: Open | None = None) -> None:
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpCrAcked(), 1)
    m.handle(F.BGPOpen(peer or peer_open()), 2)
    m.handle(F.KeepAliveMsg(), 3)
    assert m.state is State.ESTABLISHED


# -- happy paths ------------------------------------------------------------------------


def test_active_open_full_sequence() -> None:
    m = machine()
    assert m.state is State.IDLE
    assert m.handle(F.ManualStart(), 0.0) == [
        StartTimer(Timer.CONNECT_RETRY, 30.0),
        Connect(),
        StateChanged(State.IDLE, State.CONNECT),
    ]
    assert m.handle(F.TcpCrAcked(), 0.5) == [
        StopTimer(Timer.CONNECT_RETRY),
        SendMessage(m.local_open),
        StartTimer(Timer.HOLD, 240.0),
        StateChanged(State.CONNECT, State.OPENSENT),
    ]
    assert m.outgoing is True
    assert m.local_open.asn == 65001 and m.local_open.hold_time == 90
    assert m.local_open.find(c.FourOctetAS) == c.FourOctetAS(65001)
    acts = m.handle(F.BGPOpen(peer_open(hold=60)), 1.0)
    assert acts == [
        SendMessage(KEEPALIVE),
        StartTimer(Timer.KEEPALIVE, 20.0),
        StartTimer(Timer.HOLD, 60),
        StateChanged(State.OPENSENT, State.OPENCONFIRM),
    ]
    assert m.negotiated is not None and m.negotiated.families == {VPNV4}
    acts = m.handle(F.KeepAliveMsg(), 1.5)
    assert acts == [
        StartTimer(Timer.HOLD, 60),
        StateChanged(State.OPENCONFIRM, State.ESTABLISHED),
        SessionUp(m.negotiated),
    ]
    assert m.established and m.established_at == 1.5
    # keepalives go out, traffic restarts the hold timer
    assert m.handle(F.KeepaliveTimerExpires(), 21.5) == [
        SendMessage(KEEPALIVE),
        StartTimer(Timer.KEEPALIVE, 20.0),
    ]
    assert m.handle(F.UpdateMsg(Update()), 22) == [StartTimer(Timer.HOLD, 60)]
    assert m.handle(F.KeepAliveMsg(), 23) == [StartTimer(Timer.HOLD, 60)]
    assert m.handle(F.RouteRefreshMsg(RouteRefresh(1, 128)), 24) == [StartTimer(Timer.HOLD, 60)]
    assert m.deadlines == {Timer.HOLD: 84, Timer.KEEPALIVE: 41.5}


def test_passive_open_full_sequence() -> None:
    m = machine(passive=True)
    assert m.handle(F.ManualStart(), 0) == [StateChanged(State.IDLE, State.ACTIVE)]
    acts = m.handle(F.TcpConnectionConfirmed(), 5)
    assert acts == [
        SendMessage(m.local_open),
        StartTimer(Timer.HOLD, 240.0),
        StateChanged(State.ACTIVE, State.OPENSENT),
    ]
    assert m.outgoing is False
    m.handle(F.BGPOpen(peer_open()), 6)
    acts = m.handle(F.KeepAliveMsg(), 7)
    assert isinstance(acts[-1], SessionUp)


def test_manual_start_passive_without_passive_config_connects_after_retry() -> None:
    m = machine()
    assert m.handle(F.ManualStartPassive(), 0) == [
        StartTimer(Timer.CONNECT_RETRY, 30.0),
        StateChanged(State.IDLE, State.ACTIVE),
    ]
    assert m.handle(F.ConnectRetryTimerExpires(), 30) == [
        StartTimer(Timer.CONNECT_RETRY, 30.0),
        Connect(),
        StateChanged(State.ACTIVE, State.CONNECT),
    ]


def test_incoming_connection_while_connecting() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    acts = m.handle(F.TcpConnectionConfirmed(), 1)
    assert acts[0] == StopTimer(Timer.CONNECT_RETRY) and m.state is State.OPENSENT
    assert m.outgoing is False


def test_zero_hold_time_runs_no_timers() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpCrAcked(), 0)
    acts = m.handle(F.BGPOpen(peer_open(hold=0)), 1)
    assert acts == [
        SendMessage(KEEPALIVE),
        StopTimer(Timer.HOLD),
        StateChanged(State.OPENSENT, State.OPENCONFIRM),
    ]
    assert m.handle(F.KeepAliveMsg(), 2)[:1] == [StateChanged(State.OPENCONFIRM, State.ESTABLISHED)]
    assert m.deadlines == {}
    assert m.handle(F.UpdateMsg(), 3) == []


def test_zero_hold_time_can_be_refused() -> None:
    m = machine(accept_zero_hold_time=False)
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpCrAcked(), 0)
    (n,) = notifications(m.handle(F.BGPOpen(peer_open(hold=0)), 1))
    assert (n.code, n.subcode) == (2, 6)
    assert "peer hold time 0 s, need at least 3 s, not 0" in n.reason


# -- timers -----------------------------------------------------------------------------


def test_hold_timer_expiry_in_established() -> None:
    m = machine()
    establish(m)
    acts = m.handle(F.HoldTimerExpires(), 100)
    sent = Notification(4, 0)
    assert acts == [
        SendMessage(sent),
        StopTimer(Timer.KEEPALIVE),
        Disconnect(),
        StateChanged(State.ESTABLISHED, State.IDLE),
        SessionDown("hold timer expired (no message from the peer for 90 s)", True, sent, None),
        StartTimer(Timer.IDLE_HOLD, 5.0),
    ]
    assert m.connect_retry_counter == 1
    assert m.last_reason.startswith("hold timer expired")


def test_large_hold_timer_in_opensent() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpCrAcked(), 0)
    acts = m.poll(239.9)
    assert acts == []
    acts = m.poll(240.0)
    (n,) = notifications(acts)
    assert (n.code, n.subcode) == (4, 0)
    down = acts[-2]
    assert isinstance(down, SessionDown) and "240.0 s" in down.reason and not down.established


def test_poll_fires_timers_in_deadline_order() -> None:
    m = machine()
    establish(m)  # hold 90 from t=3, keepalive 30 from t=2
    assert m.next_deadline() == 32
    assert m.poll(10) == []
    assert m.poll(32) == [SendMessage(KEEPALIVE), StartTimer(Timer.KEEPALIVE, 30.0)]
    acts = m.poll(1000)  # keepalive (t=62), then hold (t=93): the session is gone
    assert [type(a) for a in acts] == [
        SendMessage, StartTimer, SendMessage, StopTimer, Disconnect, StateChanged, SessionDown, StartTimer
    ]
    assert notifications(acts) == [Notification(4, 0)]
    assert m.state is State.IDLE and m.deadlines.keys() == {Timer.IDLE_HOLD}


def test_stale_timer_event_is_ignored() -> None:
    m = machine()
    establish(m)
    m.handle(F.ManualStop(), 10)
    assert m.handle(F.HoldTimerExpires(), 11) == []
    assert m.handle(F.KeepaliveTimerExpires(), 11) == []
    m2 = machine()
    m2.handle(F.ManualStart(), 0)
    m2.handle(F.TcpCrAcked(), 1)
    assert m2.handle(F.ConnectRetryTimerExpires(), 30) == []
    assert m2.state is State.OPENSENT


def test_jitter_from_the_injected_random_source() -> None:
    m = machine(rng=lambda: 1.0)  # factor 0.75
    assert m.handle(F.ManualStart(), 0)[0] == StartTimer(Timer.CONNECT_RETRY, 22.5)
    m.handle(F.TcpCrAcked(), 0)
    acts = m.handle(F.BGPOpen(peer_open()), 0)
    assert StartTimer(Timer.KEEPALIVE, 22.5) in acts
    assert StartTimer(Timer.HOLD, 90) in acts  # the hold timer is never jittered


def test_connect_retry_backs_off_and_is_capped() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    seen = []
    for i in range(6):
        acts = m.handle(F.ConnectRetryTimerExpires(), 1000 * (i + 1))
        assert acts[0] == Disconnect() and acts[-1] == Connect()
        seen.append(acts[1].seconds)
    assert seen == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]
    assert m.state is State.CONNECT


def test_failed_connects_back_off_through_idle_and_restart() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    waits = []
    now = 0.0
    for _ in range(7):
        acts = m.handle(F.TcpConnectionFails("connection refused"), now)
        down = [a for a in acts if isinstance(a, SessionDown)]
        assert down == [SessionDown("connection refused")]
        assert notifications(acts) == []  # no OPEN was exchanged: no NOTIFICATION
        idle_hold = acts[-1]
        assert isinstance(idle_hold, StartTimer) and idle_hold.timer is Timer.IDLE_HOLD
        waits.append(idle_hold.seconds)
        now += idle_hold.seconds
        acts = m.handle(F.IdleHoldTimerExpires(), now)
        assert Connect() in acts and m.state is State.CONNECT
    assert waits == [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    # a session that comes up resets the backoff
    m.handle(F.TcpCrAcked(), now)
    m.handle(F.BGPOpen(peer_open()), now)
    m.handle(F.KeepAliveMsg(), now)
    assert m.connect_retry_counter == 0


def test_no_automatic_restart_when_disabled() -> None:
    m = machine(auto_restart=False)
    m.handle(F.ManualStart(), 0)
    acts = m.handle(F.TcpConnectionFails(), 1)
    assert acts == [
        StopTimer(Timer.CONNECT_RETRY),
        Disconnect(),
        StateChanged(State.CONNECT, State.IDLE),
        SessionDown("TCP connection attempt failed"),
    ]
    assert m.handle(F.AutomaticStart(), 2)[-1] == StateChanged(State.IDLE, State.CONNECT)


# -- bad OPENs --------------------------------------------------------------------------


def opensent(**kw: Any) -> BgpFsm:
    m = machine(**kw)
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpCrAcked(), 0)
    return m


def reject(m: BgpFsm, o: Open) -> tuple[Notification, SessionDown]:
    acts = m.handle(F.BGPOpen(o), 1)
    (n,) = notifications(acts)
    downs = [a for a in acts if isinstance(a, SessionDown)]
    assert len(downs) == 1 and downs[0].sent == n
    assert acts[0] == SendMessage(n)  # the NOTIFICATION goes out before the close
    assert Disconnect() in acts and m.state is State.IDLE
    return n, downs[0]


def test_peer_as_mismatch() -> None:
    n, down = reject(opensent(), peer_open(asn=65003))
    assert (n.code, n.subcode, n.data) == (2, 2, b"")
    assert down.reason == (
        "rejected the peer's OPEN: OPEN Message Error / Bad Peer AS: "
        "peer AS 65003 (my AS field 65003), expected AS 65002"
    )


def test_peer_as_four_octet_mismatch_reports_both_fields() -> None:
    n, down = reject(opensent(peer_as=4200000001), peer_open(asn=4200000002))
    assert (n.code, n.subcode) == (2, 2)
    assert "peer AS 4200000002 (my AS field 23456), expected AS 4200000001" in down.reason


def test_peer_as_four_octet_match() -> None:
    m = opensent(peer_as=4200000001)
    m.handle(F.BGPOpen(peer_open(asn=4200000001)), 1)
    assert m.state is State.OPENCONFIRM


@pytest.mark.parametrize(
    ("peer_as", "asn", "ok"),
    [
        (None, 65001, True),
        (None, 4200000000, True),
        ("external", 65009, True),
        ("external", 65001, False),
        ("internal", 65001, True),
        ("internal", 65009, False),
    ],
)
def test_peer_as_any_external_internal(peer_as: Any, asn: int, ok: bool) -> None:
    m = opensent(peer_as=peer_as)
    acts = m.handle(F.BGPOpen(peer_open(asn=asn)), 1)
    if ok:
        assert m.state is State.OPENCONFIRM
    else:
        (n,) = notifications(acts)
        assert (n.code, n.subcode) == (2, 2)


def test_as_zero_is_bad_peer_as() -> None:
    o = Open(4, 0, 90, PEER_ID, VPN_CAPS)
    n, down = reject(opensent(peer_as=None), o)
    assert (n.code, n.subcode) == (2, 2) and "RFC 7607" in down.reason


def test_same_bgp_id_on_ibgp_is_bad_identifier() -> None:
    n, down = reject(opensent(peer_as=65001), peer_open(asn=65001, rid=LOCAL_ID))
    assert (n.code, n.subcode) == (2, 3)
    assert "internal peer uses our own BGP identifier 192.0.2.1" in down.reason


def test_same_bgp_id_on_ebgp_is_allowed() -> None:
    m = opensent()
    m.handle(F.BGPOpen(peer_open(rid=LOCAL_ID)), 1)
    assert m.state is State.OPENCONFIRM


def test_hold_time_below_configured_minimum() -> None:
    n, down = reject(opensent(min_hold_time=9), peer_open(hold=6))
    assert (n.code, n.subcode) == (2, 6)
    assert "peer hold time 6 s, need at least 9 s" in down.reason


def test_unsupported_optional_parameter() -> None:
    o = Open(4, 65002, 90, PEER_ID, VPN_CAPS, ((1, b"\x00"),))
    n, down = reject(opensent(), o)
    assert (n.code, n.subcode) == (2, 4)
    assert "optional parameter type 1" in down.reason


def test_missing_required_capability() -> None:
    m = opensent(
        capabilities=(*VPN_CAPS, c.AddPath(((VPNV4, 3),))),
        required_capabilities=frozenset({c.CapabilityCode.ADD_PATH, c.CapabilityCode.EXTENDED_MESSAGE}),
    )
    n, down = reject(m, peer_open())
    assert (n.code, n.subcode) == (2, 7)
    # data: what we require: our own add-path capability, the bare code of the other
    assert n.data == c.AddPath(((VPNV4, 3),)).encode()
    assert "required capability code(s) 6, 69" in down.reason


def test_required_family_not_negotiated() -> None:
    m = opensent(required_families=frozenset({VPNV4}))
    n, down = reject(m, peer_open(caps=(c.Multiprotocol(1, 1),)))
    assert (n.code, n.subcode) == (2, 7)
    assert n.data == c.Multiprotocol.of(VPNV4).encode()
    assert "required address family not negotiated: vpnv4" in down.reason


def test_open_decode_error_is_sent_back() -> None:
    m = opensent()
    err = BGPError(2, 1, b"\x00\x04", "BGP version 3; only version 4 is supported")
    acts = m.handle(F.event_for_error(err), 1)
    assert acts[0] == SendMessage(Notification(2, 1, b"\x00\x04"))
    down = acts[-2]
    assert isinstance(down, SessionDown)
    assert down.reason == "open message (subcode 1): BGP version 3; only version 4 is supported [data 0004]"


def test_header_error_in_established() -> None:
    m = machine()
    establish(m)
    err = BGPError(1, 2, b"\x10\x01", "UPDATE message length 4097 (allowed 23..4096)")
    acts = m.handle(F.event_for_error(err), 10)
    assert notifications(acts) == [Notification(1, 2, b"\x10\x01")]
    assert isinstance(acts[-2], SessionDown) and acts[-2].established


def test_update_error_in_established() -> None:
    m = machine()
    establish(m)
    err = BGPError(3, 1, b"", "withdrawn routes length 9 overruns the 4-octet UPDATE")
    assert isinstance(F.event_for_error(err), F.UpdateMsgErr)
    acts = m.handle(F.UpdateMsgErr(err), 10)
    assert notifications(acts) == [Notification(3, 1)]
    assert "withdrawn routes length 9" in acts[-2].reason


# -- unexpected messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "event", "subcode"),
    [
        (2, F.KeepAliveMsg(), 1),
        (2, F.UpdateMsg(), 1),
        (3, F.UpdateMsg(), 2),
        (3, F.BGPOpen(Open.create(65002, 90, PEER_ID)), 2),
        (3, F.RouteRefreshMsg(), 2),
        (4, F.BGPOpen(Open.create(65002, 90, PEER_ID)), 3),
    ],
)
def test_fsm_errors(steps: int, event: F.Event, subcode: int) -> None:
    m = machine()
    seq: list[F.Event] = [F.ManualStart(), F.TcpCrAcked(), F.BGPOpen(peer_open()), F.KeepAliveMsg()]
    for ev in seq[:steps]:
        m.handle(ev, 0)
    acts = m.handle(event, 1)
    (n,) = notifications(acts)
    assert (n.code, n.subcode) == (5, subcode)
    assert m.state is State.IDLE
    assert "unexpected" in acts[-2].reason


def test_event_for_message() -> None:
    assert F.event_for_message(KEEPALIVE) == F.KeepAliveMsg()
    assert isinstance(F.event_for_message(Update()), F.UpdateMsg)
    assert isinstance(F.event_for_message(Notification(6, 2)), F.NotifMsg)
    assert isinstance(F.event_for_message(RouteRefresh(1, 1)), F.RouteRefreshMsg)
    assert isinstance(F.event_for_message(peer_open()), F.BGPOpen)
    with pytest.raises(TypeError):
        F.event_for_message(object())


# -- notifications received, connection loss ------------------------------------------------


def test_notification_received_in_established() -> None:
    m = machine()
    establish(m)
    got = Notification.cease(2, "maintenance")
    acts = m.handle(F.NotifMsg(got), 50)
    assert notifications(acts) == []  # never answer a NOTIFICATION with one
    assert acts == [
        StopTimer(Timer.HOLD),
        StopTimer(Timer.KEEPALIVE),
        Disconnect(),
        StateChanged(State.ESTABLISHED, State.IDLE),
        SessionDown(
            'peer sent NOTIFICATION Cease / Administrative Shutdown: "maintenance"', True, None, got
        ),
        StartTimer(Timer.IDLE_HOLD, 5.0),
    ]


def test_version_notification_in_opensent_does_not_count() -> None:
    m = opensent()
    m.handle(F.NotifMsg(Notification(2, 1, b"\x00\x04")), 1)
    assert m.connect_retry_counter == 0 and m.state is State.IDLE


def test_tcp_loss_in_opensent_goes_to_active() -> None:
    m = opensent()
    acts = m.handle(F.TcpConnectionFails("connection reset by peer"), 1)
    assert acts == [
        StopTimer(Timer.HOLD),
        Disconnect(),
        StateChanged(State.OPENSENT, State.ACTIVE),
        SessionDown("connection reset by peer"),
        StartTimer(Timer.CONNECT_RETRY, 30.0),
    ]
    assert m.handle(F.TcpConnectionConfirmed(), 2)[-1] == StateChanged(State.ACTIVE, State.OPENSENT)


def test_tcp_loss_in_established() -> None:
    m = machine()
    establish(m)
    acts = m.handle(F.TcpConnectionFails(), 5)
    assert SessionDown("TCP connection failed", True) in acts and m.state is State.IDLE


# -- stops ---------------------------------------------------------------------------------


def test_manual_stop_in_established_with_communication() -> None:
    m = machine()
    establish(m)
    acts = m.handle(F.ManualStop("maintenance, back at 14:00"), 50)
    sent = Notification.cease(2, "maintenance, back at 14:00")
    assert acts == [
        SendMessage(sent),
        StopTimer(Timer.HOLD),
        StopTimer(Timer.KEEPALIVE),
        Disconnect(),
        StateChanged(State.ESTABLISHED, State.IDLE),
        SessionDown('administratively stopped: "maintenance, back at 14:00"', True, sent, None),
    ]
    assert m.connect_retry_counter == 0 and m.deadlines == {}
    assert sent.communication == "maintenance, back at 14:00"


def test_manual_stop_while_connecting_sends_nothing() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    assert m.handle(F.ManualStop(), 1) == [
        StopTimer(Timer.CONNECT_RETRY),
        Disconnect(),
        StateChanged(State.CONNECT, State.IDLE),
        SessionDown("administratively stopped"),
    ]


def test_manual_stop_in_idle_cancels_the_restart() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    m.handle(F.TcpConnectionFails(), 1)
    assert m.handle(F.ManualStop(), 2) == [StopTimer(Timer.IDLE_HOLD)]
    assert m.handle(F.IdleHoldTimerExpires(), 10) == []
    assert m.state is State.IDLE


def test_automatic_stop_with_its_own_notification() -> None:
    m = machine()
    establish(m)
    maxpfx = Notification(6, 1, b"\x00\x01\x80\x00\x00\x03\xe8", "more than 1000 vpnv4 routes")
    acts = m.handle(F.AutomaticStop(maxpfx), 5)
    assert notifications(acts) == [maxpfx]
    assert acts[-1] == SessionDown(maxpfx.reason, True, maxpfx, None)  # no auto restart
    assert m.connect_retry_counter == 1


def test_idle_ignores_messages_and_refuses_connections() -> None:
    m = machine()
    for ev in (F.KeepAliveMsg(), F.UpdateMsg(), F.NotifMsg(Notification(6, 2)), F.TcpConnectionFails()):
        assert m.handle(ev, 0) == []
    assert m.handle(F.TcpConnectionConfirmed(), 0) == [Disconnect()]
    assert m.state is State.IDLE


def test_start_events_are_ignored_once_started() -> None:
    m = machine()
    establish(m)
    for ev in (F.ManualStart(), F.AutomaticStart(), F.ManualStartPassive()):
        assert m.handle(ev, 5) == []
    # a second incoming connection is the caller's business (tracked by its own FSM)
    assert m.handle(F.TcpConnectionConfirmed(), 5) == []
    assert m.state is State.ESTABLISHED


def test_unexpected_message_while_connecting() -> None:
    m = machine()
    m.handle(F.ManualStart(), 0)
    acts = m.handle(F.KeepAliveMsg(), 1)
    assert notifications(acts) == [] and m.state is State.IDLE
    assert acts[-2] == SessionDown("unexpected KeepAliveMsg in state Connect")


# -- collisions ------------------------------------------------------------------------------


def test_resolve_collision_by_identifier() -> None:
    hi, lo = IPv4Address("198.51.100.9"), IPv4Address("198.51.100.10")
    # compared as unsigned 32-bit numbers: .10 > .9
    assert resolve_collision(lo, hi) is Keep.OUTGOING
    assert resolve_collision(hi, lo) is Keep.INCOMING
    assert resolve_collision(IPv4Address("10.0.0.1"), IPv4Address("9.255.255.255")) is Keep.OUTGOING


def test_resolve_collision_equal_ids_uses_as() -> None:
    same = IPv4Address("203.0.113.1")
    assert resolve_collision(same, same, local_as=65002, remote_as=65001) is Keep.OUTGOING
    assert resolve_collision(same, same, local_as=65001, remote_as=65002) is Keep.INCOMING


def test_collision_between_two_machines() -> None:
    """The caller runs one FSM per connection and dumps the loser."""
    out = machine()
    out.handle(F.ManualStart(), 0)
    out.handle(F.TcpCrAcked(), 1)
    inc = BgpFsm(config(), random=no_jitter)
    inc.handle(F.ManualStartPassive(), 1)
    inc.handle(F.TcpConnectionConfirmed(), 1)
    for m in (out, inc):
        m.handle(F.BGPOpen(peer_open()), 2)
        assert m.state is State.OPENCONFIRM
    assert inc.remote_open is not None
    keep = resolve_collision(LOCAL_ID, inc.remote_open.bgp_id)
    assert keep is Keep.INCOMING  # 192.0.2.1 < 192.0.2.2: the peer's connection wins
    loser = out if keep is Keep.INCOMING else inc
    acts = loser.handle(F.OpenCollisionDump(), 3)
    assert acts[0] == SendMessage(Notification(6, 7))
    assert loser.state is State.IDLE
    assert "Connection Collision Resolution" in acts[-2].reason
    assert inc.negotiated is not None
    assert inc.handle(F.KeepAliveMsg(), 3)[-1] == SessionUp(inc.negotiated)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"hold_time": 2},
        {"hold_time": 70000},
        {"local_as": 0},
        {"peer_as": 0},
        {"peer_as": "both"},
        {"router_id": IPv4Address(0)},
    ],
)
def test_bad_config(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config(**kw)


def test_to_json() -> None:
    m = machine()
    establish(m)
    j = m.to_json()
    assert j["state"] == "Established" and j["negotiated"]["peer_asn"] == 65002
