"""Route distinguisher text and octets (RFC 4364 section 4.2), route target text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.nlri.rd import RouteDistinguisher, format_route_target, parse_route_target


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("65000:1", "0000fde800000001"),
        ("0:4294967295", "00000000ffffffff"),
        ("192.0.2.1:7", "0001c00002010007"),
        ("4200000000:7", "0002fa56ea000007"),
        ("65000L:7", "00020000fde80007"),
        ("0x0003aabbccddeeff", "0003aabbccddeeff"),
    ],
)
def test_text_and_octets(text: str, raw: str) -> None:
    rd = RouteDistinguisher.from_str(text)
    assert rd.raw == bytes.fromhex(raw)
    assert str(rd) == text
    assert rd.to_json() == text
    assert RouteDistinguisher(bytes.fromhex(raw)) == rd


def test_parts() -> None:
    rd = RouteDistinguisher.from_str("65000:1")
    assert (rd.type, rd.administrator, rd.assigned) == (0, 65000, 1)
    rd = RouteDistinguisher.from_str("192.0.2.1:7")
    assert (rd.type, rd.administrator, rd.assigned) == (1, "192.0.2.1", 7)
    rd = RouteDistinguisher.from_str("4200000000:7")
    assert (rd.type, rd.administrator, rd.assigned) == (2, 4200000000, 7)
    assert RouteDistinguisher.type0(65000, 1) == RouteDistinguisher.from_str("65000:1")
    assert RouteDistinguisher.type1("192.0.2.1", 7) == RouteDistinguisher.from_str("192.0.2.1:7")
    assert RouteDistinguisher.type2(65000, 7) == RouteDistinguisher.from_str("65000L:7")
    assert repr(rd) == "RouteDistinguisher('4200000000:7')"


@pytest.mark.parametrize(
    "text",
    ["", "65000", "65000:", ":1", "65000:4294967296", "4200000000:65536", "192.0.2.1:65536",
     "192.0.2.300:1", "4294967296:1", "0x1234", "0xzz03aabbccddeeff", "a:b", "+1:2", "1:-2",
     "65000L:65536"],
)
def test_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="route distinguisher"):
        RouteDistinguisher.from_str(text)


def test_bad_raw() -> None:
    with pytest.raises(ValueError):
        RouteDistinguisher(b"\x00" * 7)
    with pytest.raises(ValueError):
        RouteDistinguisher.type0(65536, 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_any_octets_round_trip_through_text(raw: bytes) -> None:
    rd = RouteDistinguisher(raw)
    assert RouteDistinguisher.from_str(str(rd)) == rd


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("target:65000:1", "0002fde800000001"),
        ("target:192.0.2.1:7", "0102c00002010007"),
        ("target:4200000000:7", "0202fa56ea000007"),
        ("0x0003fde800000001", "0003fde800000001"),
    ],
)
def test_route_target_text(text: str, raw: str) -> None:
    assert parse_route_target(text) == bytes.fromhex(raw)
    assert format_route_target(bytes.fromhex(raw)) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_route_target_text_round_trip(raw: bytes) -> None:
    assert parse_route_target(format_route_target(raw)) == raw
