"""Capabilities: exact wire forms, malformed input, unknown codes, round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire import capabilities as c
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4, VPNV6, Family
from vpe.bgp.wire.errors import BGPError


def tlv(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr.replace(" ", ""))


@pytest.mark.parametrize(
    ("cap", "wire"),
    [
        (c.Multiprotocol(1, 128), "01 04 0001 00 80"),
        (c.Multiprotocol(2, 1), "01 04 0002 00 01"),
        (c.RouteRefresh(), "02 00"),
        (c.ExtendedNextHop(((1, 1, 2), (1, 128, 2))), "05 0c 0001 0001 0002 0001 0080 0002"),
        (c.ExtendedMessage(), "06 00"),
        (
            c.GracefulRestart(True, True, 120, ((VPNV4, True), (IPV4_UNICAST, False))),
            "40 0a c078 0001 80 80 0001 01 00",
        ),
        (c.GracefulRestart(False, False, 4095, ()), "40 02 0fff"),
        (c.FourOctetAS(4200000001), "41 04 fa56ea01"),
        (c.FourOctetAS(65001), "41 04 0000fde9"),
        (c.AddPath(((VPNV4, 3), (IPV4_UNICAST, 1))), "45 08 0001 80 03 0001 01 01"),
        (c.EnhancedRouteRefresh(), "46 00"),
        (c.LongLivedGracefulRestart(((VPNV6, True, 86400),)), "47 07 0002 80 80 015180"),
        (c.Fqdn("pe1", "example.net"), "49 10 03 706531 0b 6578616d706c652e6e6574"),
        (c.Fqdn("pe1"), "49 05 03 706531 00"),
        (c.UnknownCapability(200, b"\x01\x02"), "c8 02 0102"),
    ],
)
def test_exact_wire_form(cap: c.Capability, wire: str) -> None:
    raw = tlv(wire)
    assert cap.encode() == raw
    assert c.decode_capabilities(raw) == [cap]


def test_several_capabilities_in_one_parameter_keep_order() -> None:
    raw = tlv("01 04 0001 00 01  02 00  41 04 0000fde9  80 00")
    assert c.decode_capabilities(raw) == [
        c.Multiprotocol(1, 1),
        c.RouteRefresh(),
        c.FourOctetAS(65001),
        c.UnknownCapability(128, b""),
    ]


def test_unknown_capability_is_kept_and_shown() -> None:
    (cap,) = c.decode_capabilities(tlv("fe 03 aabbcc"))
    assert isinstance(cap, c.UnknownCapability)
    assert cap.code == 254
    assert cap.to_json() == {"code": 254, "name": "capability-254", "value": "aabbcc"}


def test_to_json_names_fields() -> None:
    assert c.Multiprotocol(1, 128).to_json() == {"code": 1, "name": "multiprotocol", "family": "vpnv4"}
    j = c.AddPath(((VPNV4, 2),)).to_json()
    assert j["families"] == [{"family": "vpnv4", "mode": "send"}]
    gr = c.GracefulRestart(True, False, 90, ((VPNV4, True),)).to_json()
    assert gr["restart_state"] is True and gr["time"] == 90
    assert gr["families"] == [{"family": "vpnv4", "forwarding": True}]


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        ("01 03 000100", "capability 1 (multiprotocol): length 3, must be 4"),
        ("01 05 0001000100", "length 5, must be 4"),
        ("02 01 00", "capability 2 (route-refresh): length 1, must be 0"),
        ("05 05 0001000102", "length 5 is not a multiple of 6"),
        ("06 02 0000", "capability 6 (extended-message): length 2"),
        ("40 01 00", "length 1, must be 2 plus a multiple of 4"),
        ("40 05 0078000101", "length 5, must be 2 plus a multiple of 4"),
        ("41 02 fde9", "capability 65 (four-octet-as): length 2, must be 4"),
        ("45 03 000101", "length 3 is not a multiple of 4"),
        ("46 01 00", "enhanced-route-refresh"),
        ("47 06 000101800000", "length 6 is not a multiple of 7"),
        ("49 00", "host name length overruns"),
        ("49 03 05 6162", "host name length overruns"),
        ("49 04 01 61 05 62", "domain name length 5 does not match"),
    ],
)
def test_malformed_known_capability_is_open_error(wire: str, needle: str) -> None:
    raw = tlv(wire)
    with pytest.raises(BGPError) as ei:
        c.decode_capabilities(raw)
    assert (ei.value.code, ei.value.subcode) == (2, 0)
    assert needle in ei.value.reason
    assert ei.value.data == raw  # the offending capability, for the peer's operator


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        ("01", "capability header truncated at offset 0"),
        ("02 00 41", "capability header truncated at offset 2"),
        ("41 04 0000", "capability 65 length 4 overruns the 4-octet parameter"),
    ],
)
def test_truncated_parameter(wire: str, needle: str) -> None:
    with pytest.raises(BGPError) as ei:
        c.decode_capabilities(tlv(wire))
    assert (ei.value.code, ei.value.subcode) == (2, 0)
    assert needle in ei.value.reason


def test_addpath_invalid_mode_is_treated_as_not_understood() -> None:
    raw = tlv("45 04 0001 01 07")
    (cap,) = c.decode_capabilities(raw)
    assert cap == c.UnknownCapability(69, tlv("0001 01 07"))


def test_addpath_mode_zero_is_kept_as_none() -> None:
    # FRR 8.4 sends mode 0 for families where it neither sends nor receives.
    (cap,) = c.decode_capabilities(tlv("45 08 0001 80 00 0002 80 00"))
    assert cap == c.AddPath(((VPNV4, 0), (VPNV6, 0)))
    assert cap.to_json()["families"][0] == {"family": "vpnv4", "mode": "none"}


def test_addpath_mode_lookup() -> None:
    ap = c.AddPath(((VPNV4, 3),))
    assert ap.mode(VPNV4) == 3
    assert ap.mode(IPV4_UNICAST) == 0


def test_extended_nexthop_families() -> None:
    enh = c.ExtendedNextHop(((1, 1, 2), (1, 128, 2), (2, 1, 1), (2, 128, 2)))
    assert enh.families() == {IPV4_UNICAST, VPNV4}


def test_fqdn_bad_utf8_is_replaced_not_rejected() -> None:
    (cap,) = c.decode_capabilities(tlv("49 04 02 ff61 00"))
    assert isinstance(cap, c.Fqdn)
    assert cap.hostname == "\ufffda"


def test_encode_rejects_oversized_values() -> None:
    with pytest.raises(ValueError, match="exceeds 255"):
        c.AddPath(tuple((Family(1, s), 3) for s in range(70))).encode()
    with pytest.raises(ValueError, match="12 bits"):
        c.GracefulRestart(time=5000).encode()


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(RuntimeError, match="registered twice"):
        c.register(c.Multiprotocol)


# -- property tests -------------------------------------------------------------------

families = st.builds(Family, st.integers(0, 0xFFFF), st.integers(0, 255))

capability_values = st.one_of(
    st.builds(c.Multiprotocol, st.integers(0, 0xFFFF), st.integers(0, 255)),
    st.just(c.RouteRefresh()),
    st.just(c.ExtendedMessage()),
    st.just(c.EnhancedRouteRefresh()),
    st.builds(
        c.ExtendedNextHop,
        st.lists(
            st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
            max_size=10,
        ).map(tuple),
    ),
    st.builds(
        c.GracefulRestart,
        st.booleans(),
        st.booleans(),
        st.integers(0, 4095),
        st.lists(st.tuples(families, st.booleans()), max_size=8).map(tuple),
    ),
    st.builds(c.FourOctetAS, st.integers(0, 0xFFFFFFFF)),
    st.builds(
        c.AddPath, st.lists(st.tuples(families, st.integers(0, 3)), max_size=8).map(tuple)
    ),
    st.builds(
        c.LongLivedGracefulRestart,
        st.lists(
            st.tuples(families, st.booleans(), st.integers(0, 0xFFFFFF)), max_size=8
        ).map(tuple),
    ),
    st.builds(c.Fqdn, st.text(max_size=20), st.text(max_size=20)),
    st.builds(
        c.UnknownCapability,
        st.integers(0, 255).filter(lambda x: x not in c.CAPABILITIES),
        st.binary(max_size=30),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(capability_values, max_size=6))
def test_round_trip(caps: list[c.Capability]) -> None:
    raw = c.encode_capabilities(caps)
    assert c.decode_capabilities(raw) == caps


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_raises_only_bgperror(raw: bytes) -> None:
    try:
        c.decode_capabilities(raw)
    except BGPError as e:
        assert e.code == 2
