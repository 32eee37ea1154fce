"""Round trips of every path attribute type: value -> wire -> value, and wire -> value -> wire."""

from __future__ import annotations

import json
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import (
    ATTRIBUTES,
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsSegment,
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
    OriginType,
    PathAttribute,
    PmsiTunnel,
    SegmentType,
    Tunnel,
    TunnelEncapsulation,
)
from vpe.bgp.wire.attributes.extended_communities import (
    Color,
    Encapsulation,
    MacMobility,
    RouteOrigin,
    RouteTarget,
    decode_ext_community,
)
from vpe.bgp.wire.attributes.tunnel_encap import (
    ColorSubTlv,
    GreKeyEncapsulation,
    OpaqueSubTlv,
    ProtocolType,
    RemoteEndpoint,
    UdpDestinationPort,
    VxlanEncapsulation,
    encode_sub_tlv,
)
from vpe.bgp.wire.constants import AttrCode, AttrFlag
from vpe.bgp.wire.context import CodecContext

CTX4 = CodecContext(asn4=True, ibgp=True)
CTX2 = CodecContext(asn4=False, ibgp=True)
FAST = settings(max_examples=200, deadline=None)

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
asn4 = st.integers(1, 2**32 - 1)
asn2 = st.integers(1, 2**16 - 1)
v4 = st.ip_addresses(v=4)
v6 = st.ip_addresses(v=6)


def segments(
    asn: st.SearchStrategy[int], types: list[SegmentType]
) -> st.SearchStrategy[tuple[AsSegment, ...]]:
    seg = st.builds(
        AsSegment, st.sampled_from(types), st.lists(asn, min_size=1, max_size=12).map(tuple)
    )
    return st.lists(seg, max_size=5).map(tuple)


ALL_SEG = list(SegmentType)
NO_CONFED = [SegmentType.AS_SET, SegmentType.AS_SEQUENCE]

ext_value = st.one_of(
    st.builds(RouteTarget, asn2, u32, st.just(0)),
    st.builds(RouteTarget, v4, u16, st.just(1)),
    st.builds(RouteTarget, asn4, u16, st.just(2)),
    st.builds(RouteOrigin, asn2, u32, st.just(0)),
    st.builds(RouteOrigin, v4, u16, st.just(1)),
    st.builds(RouteOrigin, asn4, u16, st.just(2)),
    st.builds(Encapsulation, u16),
    st.builds(Color, u32, u16),
    st.builds(MacMobility, u32, st.booleans()),
    st.binary(min_size=8, max_size=8).map(decode_ext_community),
)

_KNOWN_SUBS = {1, 2, 4, 6, 8}
opaque_sub = st.one_of(
    st.builds(
        OpaqueSubTlv,
        st.integers(0, 127).filter(lambda t: t not in _KNOWN_SUBS),
        st.binary(max_size=40),
    ),
    st.builds(OpaqueSubTlv, st.integers(128, 255), st.binary(max_size=300)),
)
common_sub = st.one_of(
    st.builds(RemoteEndpoint, st.one_of(st.none(), v4, v6), u32),
    st.builds(ColorSubTlv, u32),
    st.builds(UdpDestinationPort, u16),
    st.builds(ProtocolType, u16),
    opaque_sub,
)
tunnel = st.one_of(
    st.builds(
        lambda enc, rest: Tunnel(8, (*enc, *rest)),
        st.lists(
            st.builds(
                VxlanEncapsulation,
                st.one_of(st.none(), st.integers(0, 2**24 - 1)),
                st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
            ),
            max_size=1,
        ),
        st.lists(common_sub, max_size=4),
    ),
    st.builds(
        lambda enc, rest: Tunnel(11, (*enc, *rest)),
        st.lists(st.builds(GreKeyEncapsulation, st.one_of(st.none(), u32)), max_size=1),
        st.lists(common_sub, max_size=4),
    ),
    st.builds(lambda rest: Tunnel(13, tuple(rest)), st.lists(common_sub, max_size=4)),
    st.builds(lambda t, rest: Tunnel(t, tuple(rest)), u16, st.lists(opaque_sub, max_size=3)),
)

pmsi = st.one_of(
    st.builds(
        PmsiTunnel, st.just(6), st.integers(0, 2**24 - 1), st.one_of(v4, v6), st.integers(0, 255)
    ),
    st.builds(
        PmsiTunnel,
        st.integers(0, 255).filter(lambda t: t != 6),
        st.integers(0, 2**24 - 1),
        st.binary(max_size=40),
        st.integers(0, 255),
    ),
)

#: (attribute strategy, context to encode/decode it in)
CASES: dict[str, tuple[st.SearchStrategy[PathAttribute], CodecContext]] = {
    "origin": (st.builds(Origin, st.sampled_from(OriginType)), CTX4),
    "as-path-4": (st.builds(AsPath, segments(asn4, ALL_SEG)), CTX4),
    "as-path-2": (st.builds(AsPath, segments(asn2, ALL_SEG)), CTX2),
    "as4-path": (st.builds(As4Path, segments(asn4, NO_CONFED)), CTX2),
    "next-hop": (st.builds(NextHop, v4), CTX4),
    "med": (st.builds(Med, u32), CTX4),
    "local-pref": (st.builds(LocalPref, u32), CTX4),
    "atomic-aggregate": (st.just(AtomicAggregate()), CTX4),
    "aggregator-4": (st.builds(Aggregator, asn4, v4), CTX4),
    "aggregator-2": (st.builds(Aggregator, asn2, v4), CTX2),
    "as4-aggregator": (st.builds(As4Aggregator, asn4, v4), CTX2),
    "communities": (
        st.builds(Communities, st.lists(u32, min_size=1, max_size=20).map(tuple)),
        CTX4,
    ),
    "originator-id": (st.builds(OriginatorId, v4), CTX4),
    "cluster-list": (
        st.builds(ClusterList, st.lists(v4, min_size=1, max_size=10).map(tuple)),
        CTX4,
    ),
    "extended-communities": (
        st.builds(ExtendedCommunities, st.lists(ext_value, min_size=1, max_size=10).map(tuple)),
        CTX4,
    ),
    "large-communities": (
        st.builds(
            LargeCommunities, st.lists(st.tuples(u32, u32, u32), min_size=1, max_size=8).map(tuple)
        ),
        CTX4,
    ),
    "pmsi-tunnel": (pmsi, CTX4),
    "tunnel-encapsulation": (
        st.builds(TunnelEncapsulation, st.lists(tunnel, min_size=1, max_size=4).map(tuple)),
        CTX4,
    ),
}


def test_every_registered_attribute_has_a_round_trip_case() -> None:
    names = {cls.NAME for cls in ATTRIBUTES.values()}
    covered = {name.removesuffix("-4").removesuffix("-2") for name in CASES}
    assert names <= covered


@pytest.mark.parametrize("name", sorted(CASES))
@FAST
@given(data=st.data())
def test_value_round_trip(name: str, data: st.DataObject) -> None:
    strategy, ctx = CASES[name]
    attr = data.draw(strategy)
    wire = attr.encode_value(ctx)
    back = type(attr).decode(wire, ctx)
    assert back == attr
    assert hash(back) == hash(attr)
    assert back.encode_value(ctx) == wire
    json.dumps(attr.to_json())
    # full attribute header: flags, code, length (extended when needed)
    full = attr.encode(ctx)
    assert full[0] & (AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE) == attr.FLAGS
    assert full[1] == attr.CODE
    assert full.endswith(wire)


# -- wire -> value -> wire, from raw bytes --------------------------------------


def _multiple(n: int, min_items: int = 1, max_items: int = 20) -> st.SearchStrategy[bytes]:
    return st.integers(min_items, max_items).flatmap(
        lambda k: st.binary(min_size=k * n, max_size=k * n)
    )


def _sub_tlv_wire() -> st.SearchStrategy[bytes]:
    small = st.tuples(st.sampled_from([1, 2, 4, 8, 9, 50, 127]), st.binary(max_size=30))
    big = st.tuples(st.integers(128, 255), st.binary(max_size=300))
    return st.one_of(small, big).map(lambda tv: encode_sub_tlv(tv[0], tv[1]))


def _endpoint_wire() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=4, max_size=4).map(lambda r: encode_sub_tlv(6, r + b"\x00\x00")),
        st.tuples(st.binary(min_size=4, max_size=4), v4).map(
            lambda a: encode_sub_tlv(6, a[0] + b"\x00\x01" + a[1].packed)
        ),
        st.tuples(st.binary(min_size=4, max_size=4), v6).map(
            lambda a: encode_sub_tlv(6, a[0] + b"\x00\x02" + a[1].packed)
        ),
    )


def _tunnel_wire() -> st.SearchStrategy[bytes]:
    subs = st.lists(st.one_of(_sub_tlv_wire(), _endpoint_wire()), max_size=5).map(b"".join)
    return st.tuples(st.sampled_from([2, 8, 9, 11, 12, 13, 700]), subs).map(
        lambda ts: struct.pack("!HH", ts[0], len(ts[1])) + ts[1]
    )


def _as_path_wire(width: int, types: list[int]) -> st.SearchStrategy[bytes]:
    hi = 2**32 - 1 if width == 4 else 2**16 - 1
    fmt = "I" if width == 4 else "H"
    seg = st.tuples(
        st.sampled_from(types), st.lists(st.integers(1, hi), min_size=1, max_size=20)
    ).map(lambda s: bytes((s[0], len(s[1]))) + struct.pack(f"!{len(s[1])}{fmt}", *s[1]))
    return st.lists(seg, max_size=5).map(b"".join)


WIRE: dict[str, tuple[type[PathAttribute], st.SearchStrategy[bytes], CodecContext]] = {
    "origin": (Origin, st.sampled_from([b"\x00", b"\x01", b"\x02"]), CTX4),
    "as-path-4": (AsPath, _as_path_wire(4, [1, 2, 3, 4]), CTX4),
    "as-path-2": (AsPath, _as_path_wire(2, [1, 2, 3, 4]), CTX2),
    "as4-path": (As4Path, _as_path_wire(4, [1, 2]), CTX2),
    "next-hop": (NextHop, st.binary(min_size=4, max_size=4), CTX4),
    "med": (Med, st.binary(min_size=4, max_size=4), CTX4),
    "local-pref": (LocalPref, st.binary(min_size=4, max_size=4), CTX4),
    "aggregator-4": (
        Aggregator,
        st.tuples(asn4, v4).map(lambda a: struct.pack("!I", a[0]) + a[1].packed),
        CTX4,
    ),
    "aggregator-2": (
        Aggregator,
        st.tuples(asn2, v4).map(lambda a: struct.pack("!H", a[0]) + a[1].packed),
        CTX2,
    ),
    "communities": (Communities, _multiple(4), CTX4),
    "originator-id": (OriginatorId, st.binary(min_size=4, max_size=4), CTX4),
    "cluster-list": (ClusterList, _multiple(4), CTX4),
    "extended-communities": (ExtendedCommunities, _multiple(8), CTX4),
    "large-communities": (LargeCommunities, _multiple(12), CTX4),
    "pmsi-tunnel": (
        PmsiTunnel,
        st.one_of(
            st.tuples(
                st.binary(min_size=1, max_size=1),
                st.binary(min_size=3, max_size=3),
                st.one_of(v4, v6),
            ).map(lambda p: p[0] + b"\x06" + p[1] + p[2].packed),
            st.tuples(
                st.integers(0, 255).filter(lambda t: t != 6), st.binary(min_size=4, max_size=40)
            ).map(lambda p: b"\x00" + bytes((p[0],)) + p[1]),
        ),
        CTX4,
    ),
    "tunnel-encapsulation": (
        TunnelEncapsulation,
        st.lists(_tunnel_wire(), min_size=1, max_size=4).map(b"".join),
        CTX4,
    ),
}


@pytest.mark.parametrize("name", sorted(WIRE))
@FAST
@given(data=st.data())
def test_wire_round_trip(name: str, data: st.DataObject) -> None:
    cls, strategy, ctx = WIRE[name]
    wire = data.draw(strategy)
    attr = cls.decode(wire, ctx)
    assert attr.encode_value(ctx) == wire
    assert cls.decode(attr.encode_value(ctx), ctx) == attr


# -- examples that pin the wire format ----------------------------------------


def test_as_path_two_and_four_octet_encodings() -> None:
    p = AsPath.sequence(65000, 65001)
    assert p.encode_value(CTX4) == bytes.fromhex("02020000fde80000fde9")
    assert p.encode_value(CTX2) == bytes.fromhex("0202fde8fde9")
    # a 4-octet ASN sent in 2-octet form becomes AS_TRANS
    assert AsPath.sequence(4200000000).encode_value(CTX2) == bytes.fromhex("02015ba0")
    assert p.encode(CTX4) == bytes.fromhex("40020a") + p.encode_value(CTX4)


def test_as_path_long_sequence_is_split_into_255_asn_segments() -> None:
    p = AsPath.sequence(*range(1, 301))
    wire = p.encode_value(CTX4)
    assert wire[0:2] == b"\x02\xff"
    assert wire[2 + 255 * 4 : 2 + 255 * 4 + 2] == b"\x02\x2d"
    back = AsPath.decode(wire, CTX4)
    assert list(back.asns()) == list(range(1, 301))
    assert back.length() == 300
    # the attribute header switches to extended length
    assert p.encode(CTX4)[0] & AttrFlag.EXTENDED_LENGTH


def test_as_path_length_rules() -> None:
    p = AsPath.from_str("(64512 64513) 65000 65001 {65002 65003 65004} [64514]")
    assert p.length() == 3  # sequence 2 + set 1 + confed 0
    assert str(p) == "(64512 64513) 65000 65001 {65002 65003 65004} [64514]"
    assert p.first_asn() == 65000
    assert AsPath().length() == 0
    assert AsPath.sequence(1, 2).prepend(65000, 2) == AsPath.sequence(65000, 65000, 1, 2)
    assert AsPath.from_str("{1 2}").prepend(3) == AsPath.from_str("3 {1 2}")
    assert p.to_json()[1] == {"type": "as-sequence", "asns": [65000, 65001]}


def test_simple_attribute_wire_forms() -> None:
    assert Origin(OriginType.INCOMPLETE).encode(CTX4) == bytes.fromhex("40010102")
    assert NextHop("192.0.2.1").encode(CTX4) == bytes.fromhex("400304c0000201")
    assert Med(100).encode(CTX4) == bytes.fromhex("80040400000064")
    assert LocalPref(200).encode(CTX4) == bytes.fromhex("400504000000c8")
    assert AtomicAggregate().encode(CTX4) == bytes.fromhex("400600")
    assert Aggregator(65000, IPv4Address("192.0.2.1")).encode(CTX2) == bytes.fromhex(
        "c00706fde8c0000201"
    )
    assert Aggregator(4200000000, IPv4Address("192.0.2.1")).encode(CTX2) == bytes.fromhex(
        "c007065ba0c0000201"
    )
    assert OriginatorId("192.0.2.9").encode(CTX4) == bytes.fromhex("800904c0000209")
    assert ClusterList.from_strs(["192.0.2.1"]).prepend("192.0.2.2").to_json() == [
        "192.0.2.2",
        "192.0.2.1",
    ]
    assert Origin.from_str("?") == Origin(OriginType.INCOMPLETE)
    assert NextHop("192.0.2.1").address == IPv4Address("192.0.2.1")


def test_communities_text_and_well_known_names() -> None:
    c = Communities.from_strs(["65000:1", "no-export", "NO_ADVERTISE", "0:0", "65535:65281"])
    assert c.values == (65000 << 16 | 1, 0xFFFFFF01, 0xFFFFFF02, 0, 0xFFFFFF01)
    assert c.to_json() == ["65000:1", "NO_EXPORT", "NO_ADVERTISE", "0:0", "NO_EXPORT"]
    assert c.encode(CTX4)[:3] == bytes.fromhex("c00814")
    with pytest.raises(ValueError):
        Communities.from_strs(["65536:1"])
    with pytest.raises(ValueError):
        Communities.from_strs(["bogus"])


def test_large_communities_text() -> None:
    lc = LargeCommunities.from_strs(["4200000000:1:2", "65000:0:4294967295"])
    assert lc.to_json() == ["4200000000:1:2", "65000:0:4294967295"]
    assert lc.encode_value(CTX4) == struct.pack("!6I", 4200000000, 1, 2, 65000, 0, 4294967295)
    with pytest.raises(ValueError):
        LargeCommunities.from_strs(["1:2"])


def test_pmsi_ingress_replication() -> None:
    p = PmsiTunnel.ingress_replication("198.18.0.1", label=16)
    assert p.encode_value(CTX4) == bytes.fromhex("0006000100c6120001")
    assert p.label == 16 and p.endpoint == IPv4Address("198.18.0.1")
    v = PmsiTunnel.ingress_replication("2001:db8::1", vni=5000)
    assert PmsiTunnel.decode(v.encode_value(CTX4), CTX4).vni == 5000
    assert PmsiTunnel.decode(v.encode_value(CTX4), CTX4).endpoint == IPv6Address("2001:db8::1")
    assert p.to_json()["tunnel_type"] == "ingress-replication"


def test_unknown_attribute_codes_are_not_registered() -> None:
    assert AttrCode.MP_REACH_NLRI not in ATTRIBUTES
    assert AttrCode.MP_UNREACH_NLRI not in ATTRIBUTES
