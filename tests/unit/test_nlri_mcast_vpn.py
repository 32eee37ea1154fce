"""MCAST-VPN NLRI (RFC 6514 section 4): types 1 and 3 decoded, others opaque.

Multicast groups use 233.252.0.0/24, the documentation block of RFC 5771.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from vpe.bgp.wire.constants import IPV4_MCAST_VPN, IPV6_MCAST_VPN
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import NLRI_CODECS, IPv4McastVpnRoute, IPv6McastVpnRoute, RouteDistinguisher

C4 = NLRI_CODECS[IPV4_MCAST_VPN]
C6 = NLRI_CODECS[IPV6_MCAST_VPN]
RD = "0000fde800000001"  # 65000:1


def test_intra_as_i_pmsi_ad_vector() -> None:
    # type 1, length 12: RD + originating router 192.0.2.1
    wire = bytes.fromhex("01" "0c" + RD + "c0000201")
    (r,) = C4.decode(wire, False)
    assert r.route_type == 1
    assert r.rd == RouteDistinguisher.from_str("65000:1")
    assert r.originating_router == IPv4Address("192.0.2.1")
    assert r.key == bytes.fromhex("01" + RD + "c0000201")
    assert str(r) == "[1][65000:1][192.0.2.1]"
    assert r == IPv4McastVpnRoute.intra_as_i_pmsi_ad("65000:1", "192.0.2.1")
    assert r == IPv4McastVpnRoute.from_str(str(r))
    assert r.to_json() == {
        "route_type": 1,
        "type_name": "intra-as-i-pmsi-a-d",
        "path_id": 0,
        "rd": "65000:1",
        "originating_router": "192.0.2.1",
    }
    assert C4.encode([r], False) == wire


def test_s_pmsi_ad_vector() -> None:
    # type 3: RD, source len 32 + 192.0.2.5, group len 32 + 233.252.0.1, originator 192.0.2.1
    value = RD + "20" "c0000205" "20" "e9fc0001" "c0000201"
    wire = bytes.fromhex("03" + f"{len(value) // 2:02x}" + value)
    (r,) = C4.decode(wire, False)
    assert (r.source, r.group, r.originating_router) == (
        IPv4Address("192.0.2.5"),
        IPv4Address("233.252.0.1"),
        IPv4Address("192.0.2.1"),
    )
    assert str(r) == "[3][65000:1][192.0.2.5][233.252.0.1][192.0.2.1]"
    assert r == IPv4McastVpnRoute.s_pmsi_ad("65000:1", "192.0.2.5", "233.252.0.1", "192.0.2.1")
    assert C4.encode([r], True)[4:] == wire


def test_s_pmsi_ad_wildcards_and_ipv6() -> None:
    r = IPv6McastVpnRoute.s_pmsi_ad("65000:1", None, "*", "2001:db8::1")
    assert str(r) == "[3][65000:1][*][*][2001:db8::1]"
    assert r.source is None and r.group is None
    assert C6.decode(C6.encode([r], False), False) == [r]
    assert IPv6McastVpnRoute.from_str(str(r)) == r


def test_opaque_types_round_trip() -> None:
    wire = bytes.fromhex("05" "03" "aabbcc" "07" "00")
    a, b = C4.decode(wire, False)
    assert (a.route_type, a.value, a.rd, a.originating_router) == (5, b"\xaa\xbb\xcc", None, None)
    assert str(a) == "[5][aabbcc]" and str(b) == "[7][]"
    assert C4.encode([a, b], False) == wire
    assert IPv4McastVpnRoute.from_str("[5][aabbcc]") == a


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("01", "ipv4-mcast-vpn: route header at offset 0 truncated"),
        ("05" "04" "aabbcc", "ipv4-mcast-vpn: route type 5 length 4 at offset 0 overruns the 5-octet NLRI field"),
        ("01" "0b" + RD + "c00002",
         "ipv4-mcast-vpn: Intra-AS I-PMSI A-D route at offset 0 has length 11 (allowed 12 or 24: RD + IPv4/IPv6 originating router)"),
        ("03" "0f" + RD + "21" "c0000205" "00" "00",
         "ipv4-mcast-vpn: S-PMSI A-D route at offset 0: multicast source length 33 (allowed 0, 32, 128)"),
        ("03" "0d" + RD + "20" "c0000205",
         "ipv4-mcast-vpn: S-PMSI A-D route at offset 0 of length 13 truncated before the multicast group length"),
        ("03" "0e" + RD + "20" "c0000205" "10",
         "ipv4-mcast-vpn: S-PMSI A-D route at offset 0: multicast group length 16 (allowed 0, 32, 128)"),
        ("03" "0c" + RD + "00" "00" "c000",
         "ipv4-mcast-vpn: S-PMSI A-D route at offset 0: 2 octets left for the originating router's IP (allowed 4 or 16)"),
    ],
)
def test_errors(wire: str, message: str) -> None:
    with pytest.raises(NlriError) as e:
        C4.decode(bytes.fromhex(wire), False)
    assert str(e.value) == message


@pytest.mark.parametrize("text", ["", "[1]", "[x][00]", "[1][65000:1]", "[3][65000:1][*][*]", "[5][zz]", "[1][65000:1][192.0.2.1]x"])
def test_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        IPv4McastVpnRoute.from_str(text)


def test_opaque_constructor_checks_known_types() -> None:
    with pytest.raises(ValueError, match="Intra-AS I-PMSI A-D"):
        IPv4McastVpnRoute.opaque(1, b"\x00" * 5)


def test_nexthops() -> None:
    g, ll = IPv6Address("2001:db8::1"), IPv6Address("fe80::1")
    for codec in (C4, C6):
        for nh, l_l in ((IPv4Address("192.0.2.1"), None), (g, None), (g, ll)):
            assert codec.decode_nexthop(codec.encode_nexthop(nh, l_l), DEFAULT_CONTEXT) == (nh, l_l)
    with pytest.raises(NlriError, match="ipv6-mcast-vpn: next hop length 5"):
        C6.decode_nexthop(bytes(5), DEFAULT_CONTEXT)
