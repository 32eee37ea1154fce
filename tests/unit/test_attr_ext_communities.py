"""Extended community values (RT, RO, encapsulation, color, MAC mobility, opaque)
and TUNNEL_ENCAPSULATION specifics."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import (
    Color,
    Encapsulation,
    ExtendedCommunities,
    MacMobility,
    OpaqueExtendedCommunity,
    RouteOrigin,
    RouteTarget,
    Tunnel,
    TunnelEncapsulation,
    TunnelType,
    parse_ext_community,
)
from vpe.bgp.wire.attributes.extended_communities import decode_ext_community
from vpe.bgp.wire.attributes.tunnel_encap import (
    GreKeyEncapsulation,
    OpaqueSubTlv,
    RemoteEndpoint,
    VxlanEncapsulation,
)
from vpe.bgp.wire.context import CodecContext

CTX = CodecContext()


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("65000:1", "0002fde800000001"),
        ("65000:4294967295", "0002fde8ffffffff"),
        ("192.0.2.1:5", "0102c00002010005"),
        ("4200000000:7", "0202fa56ea000007"),
        ("65000L:7", "02020000fde80007"),
    ],
)
def test_route_target_formats(text: str, wire: str) -> None:
    rt = RouteTarget.from_str(text)
    assert rt.encode().hex() == wire
    assert decode_ext_community(bytes.fromhex(wire)) == rt
    assert RouteTarget.from_str(str(rt)) == rt
    assert str(rt) == "target:" + text
    assert rt.transitive


def test_route_origin_and_target_differ() -> None:
    ro = RouteOrigin.from_str("192.0.2.1:5")
    assert str(ro) == "origin:192.0.2.1:5"
    assert ro.encode().hex() == "0103c00002010005"
    assert ro != RouteTarget.from_str("192.0.2.1:5")
    assert (
        len({ro, RouteTarget.from_str("192.0.2.1:5"), RouteTarget(IPv4Address("192.0.2.1"), 5)})
        == 2
    )
    # the 2- and 4-octet AS forms of the same numbers are different values on the wire
    assert RouteTarget(65000, 7, 0) != RouteTarget(65000, 7, 2)


@pytest.mark.parametrize(
    "bad", ["65000", "65536:65536", "192.0.2.300:1", "192.0.2.1:70000", "x:1", "4294967296:1"]
)
def test_route_target_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        RouteTarget.from_str(bad)


def test_other_values_text_and_wire() -> None:
    enc = Encapsulation(TunnelType.MPLS_IN_UDP)
    assert str(enc) == "encap:mpls-in-udp"
    assert enc.encode().hex() == "030c00000000000d"
    assert parse_ext_community("encap:vxlan") == Encapsulation(8)
    assert str(Encapsulation(11)) == "encap:mpls-in-gre"
    assert str(Encapsulation(999)) == "encap:tunnel-999"
    assert parse_ext_community("encap:tunnel-999") == Encapsulation(999)
    mm = MacMobility(5)
    assert str(mm) == "mac-mobility:5"
    assert mm.encode().hex() == "0600000000000005"
    assert str(MacMobility(6, sticky=True)) == "mac-mobility:6:sticky"
    assert MacMobility(6, True).encode().hex() == "0600010000000006"
    assert parse_ext_community("mac-mobility:6:sticky") == MacMobility(6, True)
    assert Color(100).encode().hex() == "030b000000000064"
    assert str(Color(100)) == "color:100"


def test_unknown_and_non_canonical_values_stay_opaque() -> None:
    for raw in ("8009000000000001", "030c00000001000d", "0600020000000005", "4002fde800000001"):
        ec = decode_ext_community(bytes.fromhex(raw))
        assert isinstance(ec, OpaqueExtendedCommunity), raw
        assert ec.encode().hex() == raw
        assert parse_ext_community(str(ec)) == ec
    assert not decode_ext_community(bytes.fromhex("4002fde800000001")).transitive
    # "raw:" text of a known type gives the typed value
    assert parse_ext_community("raw:0002fde800000001") == RouteTarget(65000, 1)


@settings(max_examples=200, deadline=None)
@given(value=st.binary(min_size=8, max_size=8))
def test_text_form_round_trips(value: bytes) -> None:
    ec = decode_ext_community(value)
    assert parse_ext_community(str(ec)) == ec
    assert hash(ec) == hash(parse_ext_community(str(ec)))


def test_color_with_flags_round_trips_through_its_text() -> None:
    ec = decode_ext_community(bytes.fromhex("030b000100000000"))  # color 0, flags 0x0001
    assert str(ec) == "color:0:flags-0x0001"
    assert parse_ext_community(str(ec)) == ec
    with pytest.raises(ValueError, match="flags"):
        parse_ext_community("color:5:flags-0x10000")


def test_attribute_helpers() -> None:
    ecs = ExtendedCommunities.from_strs(
        ["target:65000:1", "encap:mpls-in-udp", "target:192.0.2.1:5"]
    )
    assert ecs.route_targets() == (RouteTarget(65000, 1), RouteTarget(IPv4Address("192.0.2.1"), 5))
    assert ecs.of_type(Encapsulation) == (Encapsulation(13),)
    assert RouteTarget.from_str("65000:1") in ecs
    assert ecs.to_json() == ["target:65000:1", "encap:mpls-in-udp", "target:192.0.2.1:5"]
    with pytest.raises(ValueError):
        parse_ext_community("bogus:1")


# -- TUNNEL_ENCAPSULATION ---------------------------------------------------------


def test_vxlan_tunnel_wire() -> None:
    t = TunnelEncapsulation((Tunnel.vxlan("198.18.0.1", vni=5000, mac="02:00:00:00:00:01"),))
    wire = t.encode_value(CTX)
    assert wire.hex() == (
        "0008"
        "001a"  # VXLAN, 26 octets of sub-TLVs
        "010c"
        "c0001388"
        "020000000001"
        "0000"  # encapsulation: V|M, VNI 5000, MAC
        "060a"
        "00000000"
        "0001"
        "c6120001"  # remote endpoint 198.18.0.1
    )
    back = TunnelEncapsulation.decode(wire, CTX)
    assert back == t
    tun = back.tunnels[0]
    assert tun.endpoint == IPv4Address("198.18.0.1")
    assert tun.encapsulation == VxlanEncapsulation(5000, bytes.fromhex("020000000001"))


def test_mpls_tunnels() -> None:
    gre = Tunnel.mpls_in_gre("2001:db8::1", key=7)
    udp = Tunnel.mpls_in_udp("198.18.0.2", udp_port=6635, color=9)
    t = TunnelEncapsulation((gre, udp))
    back = TunnelEncapsulation.decode(t.encode_value(CTX), CTX)
    assert back == t
    assert back.tunnels[0].encapsulation == GreKeyEncapsulation(7)
    assert back.tunnels[0].endpoint == IPv6Address("2001:db8::1")
    assert back.tunnels[1].udp_port == 6635 and back.tunnels[1].color == 9
    assert back.to_json()[1]["type"] == "mpls-in-udp"


def test_sub_tlv_length_width_follows_type() -> None:
    long_sub = OpaqueSubTlv(200, b"\x01" * 300)
    short_sub = OpaqueSubTlv(100, b"\x02" * 3)
    t = TunnelEncapsulation((Tunnel(13, (long_sub, short_sub)),))
    wire = t.encode_value(CTX)
    assert wire[4:7] == bytes((200,)) + (300).to_bytes(2, "big")
    assert wire[7 + 300 : 7 + 300 + 2] == bytes((100, 3))
    assert TunnelEncapsulation.decode(wire, CTX) == t
    with pytest.raises(ValueError):
        OpaqueSubTlv(100, b"\x00" * 256).encode()


def test_non_canonical_known_sub_tlvs_round_trip_opaque() -> None:
    # VXLAN encapsulation with a reserved flag bit set, endpoint with non-zero reserved
    vx = "010c210013880000000000000000"
    ep = "060a000000010001c6120001"
    wire = bytes.fromhex("0008001a" + vx + ep)
    t = TunnelEncapsulation.decode(wire, CTX)
    assert isinstance(t.tunnels[0].sub_tlvs[0], OpaqueSubTlv)
    assert t.tunnels[0].sub_tlvs[1] == RemoteEndpoint(IPv4Address("198.18.0.1"), 1)
    assert t.encode_value(CTX) == wire
