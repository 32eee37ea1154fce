"""ROUTE-REFRESH with RFC 7313 subtypes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import BGPError
from vpe.bgp.wire.header import MessageReader
from vpe.bgp.wire.message import decode_message, encode_message
from vpe.bgp.wire.route_refresh import RefreshSubtype, RouteRefresh

CTX = DEFAULT_CONTEXT


@pytest.mark.parametrize(
    ("msg", "body"),
    [
        (RouteRefresh(1, 1), "00010001"),
        (RouteRefresh.for_family(VPNV4), "00010080"),
        (RouteRefresh.for_family(VPNV4, RefreshSubtype.BORR), "00010180"),
        (RouteRefresh(2, 128, RefreshSubtype.EORR), "00020280"),
    ],
)
def test_wire_form(msg: RouteRefresh, body: str) -> None:
    assert msg.encode(CTX).hex() == body
    assert RouteRefresh.decode(bytes.fromhex(body), CTX) == msg


def test_through_the_reader() -> None:
    wire = encode_message(RouteRefresh.for_family(VPNV4, RefreshSubtype.EORR))
    r = MessageReader()
    r.feed(wire)
    got = r.next_message()
    assert got is not None
    t, body = got
    m = decode_message(t, body)
    assert m.family == VPNV4 and m.subtype == RefreshSubtype.EORR
    assert m.to_json() == {"family": "vpnv4", "subtype": "eorr"}


@pytest.mark.parametrize("body", ["000100", "", "0001018000", "00010280ffff"])
def test_bad_length_carries_the_whole_message(body: str) -> None:
    raw = bytes.fromhex(body)
    with pytest.raises(BGPError) as ei:
        RouteRefresh.decode(raw, CTX)
    e = ei.value
    assert (e.code, e.subcode) == (7, 1)
    assert e.data == b"\xff" * 16 + (19 + len(raw)).to_bytes(2, "big") + b"\x05" + raw
    assert f"body of {len(raw)} octets" in e.reason


def test_unknown_subtype_is_decoded_but_flagged_for_ignoring() -> None:
    m = RouteRefresh.decode(bytes.fromhex("00010380"), CTX)
    assert m.subtype == 3 and not m.known
    assert m.to_json()["subtype"] == "3"
    assert RouteRefresh(1, 128, 1).known


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=20))
def test_round_trip(afi: int, safi: int, sub: int, orf: bytes) -> None:
    m = RouteRefresh(afi, safi, sub, b"" if sub in (1, 2) else orf)
    assert RouteRefresh.decode(m.encode(CTX), CTX) == m


def test_normal_request_with_orf_entries_is_kept() -> None:
    # RFC 5291: when-to-refresh, ORF type 64 (address prefix), length, entries
    orf = bytes.fromhex("01 40 0009 00 00000001 0a 18 c00002".replace(" ", ""))
    body = bytes.fromhex("00010001") + orf
    m = RouteRefresh.decode(body, CTX)
    assert (m.afi, m.safi, m.subtype, m.orf) == (1, 1, 0, orf)
    assert m.encode(CTX) == body
    assert m.to_json()["orf"] == orf.hex()


def test_borr_with_trailing_octets_names_the_subtype() -> None:
    with pytest.raises(BGPError) as ei:
        RouteRefresh.decode(bytes.fromhex("0001018000"), CTX)
    assert ei.value.reason == "ROUTE-REFRESH body of 5 octets, must be 4 for subtype 1"
