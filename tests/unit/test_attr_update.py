"""RFC 7606 handling of path attributes as seen through the UPDATE decoder."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vpe.bgp.wire.attributes import (
    Aggregator,
    AsPath,
    Communities,
    ExtendedCommunities,
    LocalPref,
    Med,
    NextHop,
    Origin,
    PathAttributes,
    RouteTarget,
    UnknownAttribute,
)
from vpe.bgp.wire.attributes.base import encode_attribute
from vpe.bgp.wire.constants import AttrCode, AttrFlag, ErrorCode, UpdateSubcode
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.errors import BGPError, UpdateAction
from vpe.bgp.wire.update import decode_update, encode_path_attributes

try:  # the IPv4-unicast NLRI codec lives in nlri/prefix.py
    import vpe.bgp.wire.nlri.prefix  # noqa: F401

    HAVE_V4 = True
except ImportError:  # pragma: no cover - only while the codec is being written
    HAVE_V4 = False

EBGP = CodecContext(asn4=True, ibgp=False)
IBGP = CodecContext(asn4=True, ibgp=True)
NLRI = bytes([24, 198, 51, 100])  # 198.51.100.0/24

WT = AttrFlag.TRANSITIVE
OPT = AttrFlag.OPTIONAL
OT = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE


def a(flags: int, code: int, value: bytes) -> bytes:
    return encode_attribute(flags, code, value)


ORIGIN = a(WT, 1, b"\x00")
AS_PATH = a(WT, 2, bytes.fromhex("02010000fde9"))
NEXT_HOP = a(WT, 3, IPv4Address("192.0.2.1").packed)
BASE = ORIGIN + AS_PATH + NEXT_HOP


def body(attrs: bytes, nlri: bytes = b"") -> bytes:
    if nlri and not HAVE_V4:
        pytest.skip("IPv4-unicast NLRI codec not available yet")
    return b"\x00\x00" + len(attrs).to_bytes(2, "big") + attrs + nlri


def test_clean_update_decodes_every_attribute() -> None:
    extra = (
        a(OPT, 4, b"\x00\x00\x00\x05")
        + a(OT, 8, bytes.fromhex("fde80001"))
        + a(OT, 16, RouteTarget.from_str("65000:1").encode())
    )
    u = decode_update(body(BASE + extra, NLRI), EBGP)
    assert u.action == UpdateAction.NONE and u.errors == ()
    at = u.attributes
    assert at[AttrCode.ORIGIN] == Origin()
    assert at[AttrCode.AS_PATH] == AsPath.sequence(65001)
    assert at[AttrCode.NEXT_HOP] == NextHop("192.0.2.1")
    assert at[AttrCode.MULTI_EXIT_DISC] == Med(5)
    assert at[AttrCode.COMMUNITIES] == Communities.from_strs(["65000:1"])
    assert at[AttrCode.EXTENDED_COMMUNITIES] == ExtendedCommunities.from_strs(["target:65000:1"])
    assert at.to_json()["extended_communities"] == ["target:65000:1"]
    if HAVE_V4:
        routes = list(u.announced())
        assert len(routes) == 1 and routes[0][2] == IPv4Address("192.0.2.1")


def test_malformed_origin_is_treat_as_withdraw() -> None:
    bad = a(WT, 1, b"\x07") + AS_PATH + NEXT_HOP
    u = decode_update(body(bad, NLRI), EBGP)
    assert u.action == UpdateAction.TREAT_AS_WITHDRAW
    assert any("origin" in e.lower() for e in u.errors)
    assert list(u.announced()) == []
    assert len(list(u.withdrawn_routes())) == 1


def test_origin_of_wrong_length_is_treat_as_withdraw() -> None:
    u = decode_update(body(a(WT, 1, b"\x00\x00") + AS_PATH + NEXT_HOP), EBGP)
    assert u.action == UpdateAction.TREAT_AS_WITHDRAW


def test_malformed_aggregator_is_attribute_discard() -> None:
    agg = a(OT, 7, b"\x00\x00\xfd\xe9\xc0")  # 5 octets
    u = decode_update(body(BASE + agg, NLRI), EBGP)
    assert u.action == UpdateAction.ATTRIBUTE_DISCARD
    assert AttrCode.AGGREGATOR not in u.attributes
    assert AttrCode.ORIGIN in u.attributes
    if HAVE_V4:
        assert len(list(u.announced())) == 1


def test_valid_aggregator_kept() -> None:
    agg = a(OT, 7, bytes.fromhex("0000fde9c0000201"))
    u = decode_update(body(BASE + agg), EBGP)
    assert u.attributes[AttrCode.AGGREGATOR] == Aggregator(65001, IPv4Address("192.0.2.1"))


def test_local_pref_from_ebgp_is_discarded() -> None:
    lp = a(WT, 5, b"\x00\x00\x00\x64")
    u = decode_update(body(BASE + lp, NLRI), EBGP)
    assert u.action == UpdateAction.ATTRIBUTE_DISCARD
    assert AttrCode.LOCAL_PREF not in u.attributes
    u2 = decode_update(body(BASE + lp), IBGP)
    assert u2.action == UpdateAction.NONE
    assert u2.attributes[AttrCode.LOCAL_PREF] == LocalPref(100)


def test_attribute_flag_conflict() -> None:
    # ORIGIN marked optional transitive instead of well-known
    u = decode_update(body(a(OT, 1, b"\x00") + AS_PATH + NEXT_HOP, NLRI), EBGP)
    assert u.action == UpdateAction.TREAT_AS_WITHDRAW
    assert any("flags" in e for e in u.errors)
    assert AttrCode.ORIGIN not in u.attributes
    # COMMUNITIES marked well-known
    u2 = decode_update(body(BASE + a(WT, 8, bytes(4))), EBGP)
    assert u2.action == UpdateAction.TREAT_AS_WITHDRAW


def test_repeated_attribute_keeps_the_first() -> None:
    meds = a(OPT, 4, b"\x00\x00\x00\x01") + a(OPT, 4, b"\x00\x00\x00\x02")
    u = decode_update(body(BASE + meds, NLRI), EBGP)
    assert u.action == UpdateAction.ATTRIBUTE_DISCARD
    assert u.attributes[AttrCode.MULTI_EXIT_DISC] == Med(1)
    assert any("repeated" in e for e in u.errors)


def test_unknown_optional_transitive_is_passed_on_with_partial() -> None:
    unknown = a(OT, 200, b"\xde\xad\xbe\xef")
    u = decode_update(body(BASE + unknown), EBGP)
    assert u.action == UpdateAction.NONE
    attr = u.attributes[200]
    assert isinstance(attr, UnknownAttribute)
    assert attr.value == b"\xde\xad\xbe\xef"
    out = attr.propagated()
    assert out.flags & AttrFlag.PARTIAL
    assert out.encode(EBGP) == bytes.fromhex("e0c804deadbeef")
    # re-encoding the whole set carries it too
    again = PathAttributes([*u.attributes, out])
    assert bytes.fromhex("e0c804deadbeef") in encode_path_attributes(again, EBGP)


def test_unknown_optional_non_transitive_is_dropped() -> None:
    u = decode_update(body(BASE + a(OPT, 201, b"\x01")), EBGP)
    assert 201 not in u.attributes
    assert u.action == UpdateAction.NONE


def test_unknown_well_known_resets_the_session() -> None:
    with pytest.raises(BGPError) as info:
        decode_update(body(BASE + a(WT, 99, b"\x01")), EBGP)
    assert info.value.code == ErrorCode.UPDATE_MESSAGE
    assert info.value.subcode == UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE


def test_as4_attributes_reconciled_from_two_octet_peer() -> None:
    ctx2 = CodecContext(asn4=False, ibgp=False)
    path = a(WT, 2, bytes.fromhex("0202fde95ba0"))  # 65001 AS_TRANS
    as4 = a(OT, 17, bytes.fromhex("0201fa56ea01"))  # 4200000001
    u = decode_update(body(ORIGIN + path + NEXT_HOP + as4), ctx2)
    assert u.action == UpdateAction.NONE
    assert u.attributes[AttrCode.AS_PATH] == AsPath.sequence(65001, 4200000001)
    assert AttrCode.AS4_PATH not in u.attributes


def test_as4_path_from_four_octet_peer_is_discarded() -> None:
    as4 = a(OT, 17, bytes.fromhex("0201fa56ea01"))
    u = decode_update(body(BASE + as4), EBGP)
    assert u.action == UpdateAction.ATTRIBUTE_DISCARD
    assert AttrCode.AS4_PATH not in u.attributes
    assert u.attributes[AttrCode.AS_PATH] == AsPath.sequence(65001)
