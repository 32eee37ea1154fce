"""RFC 7606 actions named by each attribute decoder, checked one by one."""

from __future__ import annotations

import pytest

from vpe.bgp.wire.attributes import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AtomicAggregate,
    ClusterList,
    Communities,
    ExtendedCommunities,
    LargeCommunities,
    LocalPref,
    Med,
    NextHop,
    Origin,
    OriginatorId,
    PathAttribute,
    PmsiTunnel,
    TunnelEncapsulation,
)
from vpe.bgp.wire.constants import UpdateSubcode
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.errors import MalformedAttribute, UpdateAction

IBGP4 = CodecContext(asn4=True, ibgp=True)
EBGP4 = CodecContext(asn4=True, ibgp=False)
IBGP2 = CodecContext(asn4=False, ibgp=True)

TAW = UpdateAction.TREAT_AS_WITHDRAW
DISCARD = UpdateAction.ATTRIBUTE_DISCARD

CASES: list[tuple[str, type[PathAttribute], bytes, CodecContext, UpdateAction, int | None]] = [
    ("origin value", Origin, b"\x03", IBGP4, TAW, UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE),
    ("origin length", Origin, b"\x00\x00", IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    ("origin empty", Origin, b"", IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    (
        "as-path overrun",
        AsPath,
        bytes.fromhex("02030000fde8"),
        IBGP4,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    (
        "as-path zero count",
        AsPath,
        bytes.fromhex("0200"),
        IBGP4,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    (
        "as-path bad type",
        AsPath,
        bytes.fromhex("05010000fde8"),
        IBGP4,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    (
        "as-path trailing octet",
        AsPath,
        bytes.fromhex("02010000fde802"),
        IBGP4,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    (
        "as-path AS 0",
        AsPath,
        bytes.fromhex("020100000000"),
        IBGP4,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    (
        "as-path 2-octet odd",
        AsPath,
        bytes.fromhex("0202fde8"),
        IBGP2,
        TAW,
        UpdateSubcode.MALFORMED_AS_PATH,
    ),
    ("as4-path confed", As4Path, bytes.fromhex("03010000fde8"), IBGP2, DISCARD, None),
    ("as4-path overrun", As4Path, bytes.fromhex("02020000fde8"), IBGP2, DISCARD, None),
    ("as4-path from new speaker", As4Path, bytes.fromhex("02010000fde8"), IBGP4, DISCARD, None),
    ("next-hop length", NextHop, b"\xc0\x00\x02", IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    ("med length", Med, b"\x00" * 5, IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    ("local-pref length", LocalPref, b"\x00" * 3, IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    ("local-pref from ebgp", LocalPref, b"\x00\x00\x00\x64", EBGP4, DISCARD, None),
    ("atomic-aggregate length", AtomicAggregate, b"\x00", IBGP4, DISCARD, None),
    ("aggregator 4-octet length", Aggregator, b"\x00" * 6, IBGP4, DISCARD, None),
    ("aggregator 2-octet length", Aggregator, b"\x00" * 8, IBGP2, DISCARD, None),
    ("aggregator AS 0", Aggregator, b"\x00\x00\x00\x00\xc0\x00\x02\x01", IBGP4, DISCARD, None),
    ("as4-aggregator length", As4Aggregator, b"\x00" * 6, IBGP2, DISCARD, None),
    (
        "communities length",
        Communities,
        b"\x00" * 6,
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    ("communities empty", Communities, b"", IBGP4, TAW, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR),
    (
        "originator-id length",
        OriginatorId,
        b"\x00" * 3,
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    ("originator-id from ebgp", OriginatorId, b"\x00" * 4, EBGP4, DISCARD, None),
    (
        "cluster-list length",
        ClusterList,
        b"\x00" * 5,
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    ("cluster-list from ebgp", ClusterList, b"\x00" * 4, EBGP4, DISCARD, None),
    (
        "ext-communities length",
        ExtendedCommunities,
        b"\x00" * 12,
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    (
        "large-communities length",
        LargeCommunities,
        b"\x00" * 8,
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    (
        "pmsi short",
        PmsiTunnel,
        b"\x00\x06\x00\x00",
        IBGP4,
        TAW,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
    ),
    ("pmsi IR id length", PmsiTunnel, b"\x00\x06\x00\x00\x00\x01\x02\x03", IBGP4, TAW, None),
    ("tunnel TLV overrun", TunnelEncapsulation, bytes.fromhex("000d00050802"), IBGP4, TAW, None),
    ("tunnel TLV header cut", TunnelEncapsulation, bytes.fromhex("000d00"), IBGP4, TAW, None),
    (
        "tunnel sub-TLV overrun",
        TunnelEncapsulation,
        bytes.fromhex("000d0003080318"),
        IBGP4,
        TAW,
        None,
    ),
    (
        "tunnel long sub-TLV header cut",
        TunnelEncapsulation,
        bytes.fromhex("000d00028000"),
        IBGP4,
        TAW,
        None,
    ),
    ("tunnel empty", TunnelEncapsulation, b"", IBGP4, DISCARD, None),
]


@pytest.mark.parametrize(
    ("cls", "value", "ctx", "action", "subcode"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_attribute_action(
    cls: type[PathAttribute],
    value: bytes,
    ctx: CodecContext,
    action: UpdateAction,
    subcode: int | None,
) -> None:
    with pytest.raises(MalformedAttribute) as info:
        cls.decode(value, ctx)
    assert info.value.action == action
    if subcode is not None:
        assert info.value.subcode == subcode
    assert info.value.reason


def test_on_error_matches_rfc7606() -> None:
    assert Origin.ON_ERROR == TAW
    assert AsPath.ON_ERROR == TAW
    assert NextHop.ON_ERROR == TAW
    assert Aggregator.ON_ERROR == DISCARD
    assert As4Aggregator.ON_ERROR == DISCARD
    assert As4Path.ON_ERROR == DISCARD
    assert AtomicAggregate.ON_ERROR == DISCARD
    assert Communities.ON_ERROR == TAW


def test_local_pref_and_reflection_attributes_kept_from_ibgp() -> None:
    assert LocalPref.decode(b"\x00\x00\x00\x64", IBGP4) == LocalPref(100)
    assert OriginatorId.decode(b"\xc0\x00\x02\x01", IBGP4).address.packed == b"\xc0\x00\x02\x01"


def test_tunnel_with_malformed_endpoint_is_removed() -> None:
    good = bytes.fromhex("000d000408020000")  # MPLS-in-UDP, UDP port 0
    bad = bytes.fromhex("000b00090607000000000001c0")  # endpoint AFI 1 with 1 address octet
    t = TunnelEncapsulation.decode(bad + good, IBGP4)
    assert [x.tunnel_type for x in t.tunnels] == [13]
    with pytest.raises(MalformedAttribute) as info:
        TunnelEncapsulation.decode(bad, IBGP4)
    assert info.value.action == DISCARD
