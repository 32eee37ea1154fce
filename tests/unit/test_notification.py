"""NOTIFICATION: names, shutdown communication, hard reset, from_error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.constants import CeaseSubcode, ErrorCode
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import BGPError
from vpe.bgp.wire.message import encode_message
from vpe.bgp.wire.notification import Notification, error_name

CTX = DEFAULT_CONTEXT


@pytest.mark.parametrize(
    ("code", "sub", "name"),
    [
        (1, 1, "Message Header Error / Connection Not Synchronized"),
        (1, 2, "Message Header Error / Bad Message Length"),
        (2, 2, "OPEN Message Error / Bad Peer AS"),
        (2, 6, "OPEN Message Error / Unacceptable Hold Time"),
        (2, 0, "OPEN Message Error / Unspecific"),
        (3, 11, "UPDATE Message Error / Malformed AS_PATH"),
        (4, 0, "Hold Timer Expired"),
        (5, 1, "Finite State Machine Error / Receive Unexpected Message in OpenSent State"),
        (6, 2, "Cease / Administrative Shutdown"),
        (6, 7, "Cease / Connection Collision Resolution"),
        (6, 99, "Cease / subcode 99"),
        (7, 1, "ROUTE-REFRESH Message Error / Invalid Message Length"),
        (42, 1, "Unknown error code 42 / subcode 1"),
    ],
)
def test_names(code: int, sub: int, name: str) -> None:
    assert error_name(code, sub) == name
    assert Notification(code, sub).reason == name


def test_wire_form_and_decode() -> None:
    n = Notification(2, 1, b"\x00\x04")
    assert n.encode(CTX) == b"\x02\x01\x00\x04"
    assert Notification.decode(b"\x02\x01\x00\x04", CTX) == n
    assert encode_message(n) == b"\xff" * 16 + b"\x00\x17\x03\x02\x01\x00\x04"


def test_short_body_is_a_length_error() -> None:
    with pytest.raises(BGPError) as ei:
        Notification.decode(b"\x06", CTX)
    assert (ei.value.code, ei.value.subcode) == (1, 2)


def test_shutdown_communication() -> None:
    n = Notification.cease(CeaseSubcode.ADMIN_SHUTDOWN, "maintenance until 14:00, ticket #42")
    text = b"maintenance until 14:00, ticket #42"
    assert n.data == bytes([len(text)]) + text
    back = Notification.decode(n.encode(CTX), CTX)
    assert back.communication == "maintenance until 14:00, ticket #42"
    assert back.reason == 'Cease / Administrative Shutdown: "maintenance until 14:00, ticket #42"'
    assert back.to_json()["communication"] == "maintenance until 14:00, ticket #42"


def test_shutdown_communication_utf8_and_reset() -> None:
    n = Notification.cease(CeaseSubcode.ADMIN_RESET, "Wartung \u2013 bis Mittag")
    assert Notification.decode(n.encode(CTX), CTX).communication == "Wartung \u2013 bis Mittag"


def test_long_communication_is_cut_on_a_character_boundary() -> None:
    n = Notification.cease(CeaseSubcode.ADMIN_SHUTDOWN, "\u00e9" * 200)  # 400 octets
    assert n.data[0] == 254  # 127 two-octet characters, not a split one
    assert n.communication == "\u00e9" * 127


def test_communication_only_on_subcodes_2_and_4() -> None:
    with pytest.raises(ValueError):
        Notification.cease(CeaseSubcode.PEER_DECONFIGURED, "bye")
    assert Notification(6, 3, b"\x03bye").communication is None


@pytest.mark.parametrize("data", [b"", b"\x05abc", b"\x02\xff\xfe"])
def test_malformed_communication_is_not_an_error(data: bytes) -> None:
    n = Notification.decode(b"\x06\x02" + data, CTX)
    assert n.communication is None
    assert n.reason == "Cease / Administrative Shutdown"


def test_empty_communication() -> None:
    n = Notification.decode(b"\x06\x02\x00", CTX)
    assert n.communication == ""
    assert n.reason == "Cease / Administrative Shutdown"


def test_hard_reset_wraps_the_cause() -> None:
    inner = Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)
    hr = Notification.hard_reset(inner)
    assert hr.encode(CTX) == b"\x06\x09\x04\x00"
    back = Notification.decode(hr.encode(CTX), CTX)
    assert back.is_hard_reset
    assert back.inner == inner
    assert back.reason == "Cease / Hard Reset (Hold Timer Expired)"
    assert back.to_json()["inner"]["code"] == 4


def test_hard_reset_around_shutdown_keeps_the_communication() -> None:
    hr = Notification.hard_reset(Notification.cease(CeaseSubcode.ADMIN_SHUTDOWN, "decommission"))
    back = Notification.decode(hr.encode(CTX), CTX)
    assert back.inner == Notification(6, 2, b"\x0cdecommission")
    assert back.communication == "decommission"
    assert back.reason == 'Cease / Hard Reset (Cease / Administrative Shutdown): "decommission"'


def test_hard_reset_without_inner_is_tolerated() -> None:
    n = Notification.decode(b"\x06\x09", CTX)
    assert n.is_hard_reset and n.inner is None


def test_from_error_keeps_the_detail() -> None:
    err = BGPError(2, 2, b"", "peer AS 65003, expected AS 65002")
    n = Notification.from_error(err)
    assert (n.code, n.subcode, n.data) == (2, 2, b"")
    assert n.reason == "OPEN Message Error / Bad Peer AS: peer AS 65003, expected AS 65002"
    # the detail is not part of the wire value
    assert n == Notification(2, 2)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))
def test_round_trip_and_reason_never_fails(code: int, sub: int, data: bytes) -> None:
    n = Notification(code, sub, data)
    back = Notification.decode(n.encode(CTX), CTX)
    assert back == n
    assert isinstance(back.reason, str) and back.to_json()["code"] == code
