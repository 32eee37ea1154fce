"""OPEN: decoding real-looking messages, syntax errors, RFC 9072, encoding."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire import capabilities as c
from vpe.bgp.wire.constants import AS_TRANS, IPV4_UNICAST, VPNV4, VPNV6, Family
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import BGPError
from vpe.bgp.wire.header import MessageReader
from vpe.bgp.wire.message import decode_message, encode_message
from vpe.bgp.wire.open import Open

CTX = DEFAULT_CONTEXT


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# An OPEN as a route reflector might send: AS 65000, hold 180, id 198.51.100.1,
# each capability in its own parameter, including the pre-standard route refresh (128).
RR_OPEN = h(
    """
    04 fde8 00b4 c6336401 36
    02 06 01 04 0001 00 80
    02 06 01 04 0002 00 80
    02 02 80 00
    02 02 02 00
    02 02 46 00
    02 06 41 04 0000fde8
    02 06 45 04 0001 80 03
    02 08 40 06 4078 0001 80 80
    """
)


def test_decode_route_reflector_open() -> None:
    o = Open.decode(RR_OPEN, CTX)
    assert o.version == 4
    assert o.my_as == 65000 and o.asn == 65000
    assert o.hold_time == 180
    assert o.bgp_id == IPv4Address("198.51.100.1")
    assert o.capabilities == (
        c.Multiprotocol(1, 128),
        c.Multiprotocol(2, 128),
        c.UnknownCapability(128, b""),
        c.RouteRefresh(),
        c.EnhancedRouteRefresh(),
        c.FourOctetAS(65000),
        c.AddPath(((VPNV4, 3),)),
        c.GracefulRestart(False, True, 120, ((VPNV4, True),)),
    )
    assert o.families == {VPNV4, VPNV6}
    assert o.other_params == ()
    assert o.find(c.AddPath) == c.AddPath(((VPNV4, 3),))
    assert o.find(c.ExtendedMessage) is None
    assert o.has(128) and o.has(2) and not o.has(6)
    # our encoding is the same form: one capability per parameter
    assert o.encode(CTX) == RR_OPEN


def test_decode_all_capabilities_in_one_parameter() -> None:
    body = h("04 fde9 005a c0000201 10 02 0e 01 04 0001 00 01 02 00 41 04 0000fde9")
    o = Open.decode(body, CTX)
    assert o.capabilities == (c.Multiprotocol(1, 1), c.RouteRefresh(), c.FourOctetAS(65001))
    # re-encoded one per parameter, which decodes to the same value
    assert Open.decode(o.encode(CTX), CTX) == o


def test_decode_without_capabilities_is_ipv4_unicast_only() -> None:
    o = Open.decode(h("04 fde9 005a c0000201 00"), CTX)
    assert o.capabilities == ()
    assert o.families == {IPV4_UNICAST}
    assert o.asn == 65001


def test_four_octet_as_from_capability() -> None:
    o = Open.create(4200000001, 90, "192.0.2.1", [c.Multiprotocol(1, 128)])
    assert o.my_as == AS_TRANS
    assert o.asn == 4200000001
    assert o.capabilities[-1] == c.FourOctetAS(4200000001)
    assert Open.decode(o.encode(CTX), CTX) == o


def test_create_replaces_a_stale_four_octet_as() -> None:
    o = Open.create(65001, 90, "192.0.2.1", [c.FourOctetAS(1), c.RouteRefresh()])
    assert o.find_all(c.FourOctetAS) == [c.FourOctetAS(65001)]
    assert o.my_as == 65001
    with pytest.raises(ValueError):
        Open.create(0, 90, "192.0.2.1")


def test_other_optional_parameters_are_kept() -> None:
    body = h("04 fde9 005a c0000201 0b 01 03 aabbcc 02 04 41 02 0000")
    with pytest.raises(BGPError):  # the FourOctetAS has a bad length...
        Open.decode(body, CTX)
    body = h("04 fde9 005a c0000201 05 01 03 aabbcc")
    o = Open.decode(body, CTX)
    assert o.other_params == ((1, h("aabbcc")),)
    assert o.encode(CTX) == body
    assert o.to_json()["other_params"] == [{"type": 1, "value": "aabbcc"}]


def test_to_json() -> None:
    o = Open.decode(RR_OPEN, CTX)
    j = o.to_json()
    assert j["asn"] == 65000 and j["bgp_id"] == "198.51.100.1" and j["hold_time"] == 180
    assert j["capabilities"][0] == {"code": 1, "name": "multiprotocol", "family": "vpnv4"}
    assert j["capabilities"][2] == {"code": 128, "name": "capability-128", "value": ""}


# -- syntax errors (RFC 4271 section 6.2) ------------------------------------------------


def test_unsupported_version_carries_our_version() -> None:
    with pytest.raises(BGPError) as ei:
        Open.decode(h("03 fde9 005a c0000201 00"), CTX)
    e = ei.value
    assert (e.code, e.subcode, e.data) == (2, 1, b"\x00\x04")
    assert "BGP version 3" in e.reason


@pytest.mark.parametrize("hold", [1, 2])
def test_hold_time_one_or_two_is_unacceptable(hold: int) -> None:
    with pytest.raises(BGPError) as ei:
        Open.decode(struct.pack("!BHH4sB", 4, 65001, hold, b"\xc0\x00\x02\x01", 0), CTX)
    assert (ei.value.code, ei.value.subcode) == (2, 6)
    assert f"hold time {hold} s" in ei.value.reason


@pytest.mark.parametrize("hold", [0, 3, 65535])
def test_hold_time_zero_three_and_max_are_fine(hold: int) -> None:
    o = Open.decode(struct.pack("!BHH4sB", 4, 65001, hold, b"\xc0\x00\x02\x01", 0), CTX)
    assert o.hold_time == hold


def test_bgp_identifier_zero() -> None:
    with pytest.raises(BGPError) as ei:
        Open.decode(h("04 fde9 005a 00000000 00"), CTX)
    assert (ei.value.code, ei.value.subcode) == (2, 3)


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ("04 fde9 005a c00002", (1, 2), "OPEN body of 8 octets"),
        ("04 fde9 005a c0000201 04 02 02 02 00 00", (2, 0), "optional parameters length 4 does not match the 5"),
        ("04 fde9 005a c0000201 05 02 02 02", (2, 0), "length 5 does not match the 3"),
        ("04 fde9 005a c0000201 01 02", (2, 0), "optional parameter header truncated"),
        ("04 fde9 005a c0000201 03 02 05 02", (2, 0), "optional parameter 2 length 5 overruns"),
        ("04 fde9 005a c0000201 02 ff 01", (2, 0), "extended optional parameters length truncated"),
    ],
)
def test_parameter_framing_errors(body: str, code: tuple[int, int], needle: str) -> None:
    with pytest.raises(BGPError) as ei:
        Open.decode(h(body), CTX)
    assert (ei.value.code, ei.value.subcode) == code
    assert needle in ei.value.reason


def test_malformed_capability_inside_open() -> None:
    with pytest.raises(BGPError) as ei:
        Open.decode(h("04 fde9 005a c0000201 05 02 03 41 01 00"), CTX)
    assert (ei.value.code, ei.value.subcode) == (2, 0)
    assert "four-octet-as" in ei.value.reason


# -- RFC 9072 extended optional parameters ------------------------------------------------


def test_extended_parameters_decode() -> None:
    caps = h("01 04 0001 00 80") + h("02 00")
    params = struct.pack("!BH", 2, len(caps)) + caps
    body = h("04 fde9 005a c0000201") + struct.pack("!BBH", 255, 255, len(params)) + params
    o = Open.decode(body, CTX)
    assert o.capabilities == (c.Multiprotocol(1, 128), c.RouteRefresh())


def test_extended_parameters_length_mismatch() -> None:
    body = h("04 fde9 005a c0000201 ff ff 0010 02 0002 0200")
    with pytest.raises(BGPError) as ei:
        Open.decode(body, CTX)
    assert "optional parameters length 16 does not match the 5" in ei.value.reason


def test_encoding_switches_forms_by_size() -> None:
    few = Open.create(65001, 90, "192.0.2.1", [c.Multiprotocol(1, s) for s in range(1, 40)])
    body = few.encode(CTX)
    # 40 capabilities one per parameter do not fit 255: shared parameter instead
    assert body[9] == 2 + 39 * 6 + 6 and body[10] == 2 and body[11] == 39 * 6 + 6
    assert Open.decode(body, CTX) == few
    many = Open.create(65001, 90, "192.0.2.1", [c.Multiprotocol(1, s) for s in range(1, 80)])
    body = many.encode(CTX)
    assert body[9:11] == b"\xff\xff"
    (plen,) = struct.unpack_from("!H", body, 11)
    assert plen == len(body) - 13 == 80 * (3 + 6)
    assert Open.decode(body, CTX) == many


def test_whole_message_through_reader_and_dpkt() -> None:
    o = Open.create(
        65001,
        90,
        "192.0.2.1",
        [c.Multiprotocol(1, 128), c.RouteRefresh(), c.AddPath(((VPNV4, 3),))],
    )
    wire = encode_message(o, CTX)
    r = MessageReader()
    r.feed(wire)
    msg = r.next_message()
    assert msg is not None
    assert decode_message(msg[0], msg[1], CTX) == o
    # An independent decoder reads the same fields and capabilities.
    d = dpkt.bgp.BGP(wire)
    assert (d.open.asn, d.open.holdtime, d.open.identifier) == (65001, 90, 0xC0000201)
    got = [(p.type, p.capability.code, bytes(p.capability.data)) for p in d.open.parameters]
    assert got == [
        (2, 1, h("0001 00 80")),
        (2, 2, b""),
        (2, 69, h("0001 80 03")),
        (2, 65, h("0000fde9")),
    ]


# -- properties ------------------------------------------------------------------------

simple_caps = st.one_of(
    st.builds(c.Multiprotocol, st.integers(0, 0xFFFF), st.integers(0, 255)),
    st.just(c.RouteRefresh()),
    st.just(c.ExtendedMessage()),
    st.builds(c.FourOctetAS, st.integers(0, 0xFFFFFFFF)),
    st.builds(
        c.AddPath,
        st.lists(
            st.tuples(st.builds(Family, st.integers(0, 0xFFFF), st.integers(0, 255)), st.integers(1, 3)),
            max_size=5,
        ).map(tuple),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    my_as=st.integers(0, 0xFFFF),
    hold=st.integers(0, 0xFFFF).filter(lambda x: x not in (1, 2)),
    bgp_id=st.integers(1, 0xFFFFFFFF).map(IPv4Address),
    caps=st.lists(simple_caps, max_size=70),
    other=st.lists(st.tuples(st.sampled_from([1, 3, 4, 200]), st.binary(max_size=8)), max_size=2),
)
def test_round_trip(
    my_as: int, hold: int, bgp_id: IPv4Address, caps: list[c.Capability], other: list[tuple[int, bytes]]
) -> None:
    o = Open(4, my_as, hold, bgp_id, tuple(caps), tuple(other))
    assert Open.decode(o.encode(CTX), CTX) == o


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_garbage_raises_only_bgperror(raw: bytes) -> None:
    with contextlib.suppress(BGPError):
        Open.decode(raw, CTX)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_garbage_after_valid_fixed_part(rest: bytes) -> None:
    body = h("04 fde9 005a c0000201") + bytes([len(rest)]) + rest
    try:
        Open.decode(body, CTX)
    except BGPError as e:
        assert e.code == 2
