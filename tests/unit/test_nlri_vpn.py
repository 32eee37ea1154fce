"""VPNv4/VPNv6 NLRI (RFC 4364 4.3.4, RFC 4659): hand-built vectors and next hops."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest

from vpe.bgp.wire.constants import VPNV4, VPNV6
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import NLRI_CODECS, RouteDistinguisher, VPNv4Prefix, VPNv6Prefix

C4 = NLRI_CODECS[VPNV4]
C6 = NLRI_CODECS[VPNV6]

# 65000:1:192.0.2.0/24 label 100:
#   length 24 (label) + 64 (RD) + 24 (prefix) = 112 = 0x70
#   label 100 << 4 | BoS = 0x000641
#   RD type 0: 0000 | AS 65000 = fde8 | 00000001
#   prefix c0 00 02
VPNV4_VECTOR = bytes.fromhex("70" "000641" "0000fde800000001" "c00002")


def test_vpnv4_vector() -> None:
    (n,) = C4.decode(VPNV4_VECTOR, False)
    assert str(n) == "65000:1:192.0.2.0/24"
    assert n.labels == (100,)
    assert n.rd == RouteDistinguisher.from_str("65000:1")
    assert n.prefix == IPv4Network("192.0.2.0/24")
    assert n.prefix_len == 24
    assert n.key == bytes.fromhex("18" "0000fde800000001" "c00002")
    assert n == VPNv4Prefix.from_str("65000:1:192.0.2.0/24", labels=[100])
    assert n == VPNv4Prefix.from_parts("65000:1", "192.0.2.0/24", [100])
    assert n.to_json() == {"rd": "65000:1", "prefix": "192.0.2.0/24", "labels": [100], "path_id": 0}
    assert C4.encode([n], False) == VPNV4_VECTOR


def test_vpnv4_addpath_and_withdraw() -> None:
    n = VPNv4Prefix.from_str("65000:1:192.0.2.0/24", labels=[100], path_id=9)
    assert C4.encode([n], True) == bytes.fromhex("00000009") + VPNV4_VECTOR
    wd = C4.encode_withdrawn([n], True)
    assert wd == bytes.fromhex("00000009" "70" "800000" "0000fde800000001" "c00002")
    (w,) = C4.decode_withdrawn(wd, True)
    assert (w.key, w.path_id, w.labels) == (n.key, 9, ())
    # some speakers send 0x000000 as the compatibility field
    (w0,) = C4.decode_withdrawn(bytes.fromhex("70" "000000" "0000fde800000001" "c00002"), False)
    assert w0.key == n.key


def test_vpnv6_vector() -> None:
    # 1.2.3.4:7:2001:db8::/32 label 16: 24 + 64 + 32 = 120 = 0x78; RD type 1
    wire = bytes.fromhex("78" "000101" "0001010203040007" "20010db8")
    (n,) = C6.decode(wire, False)
    assert str(n) == "1.2.3.4:7:2001:db8::/32"
    assert n == VPNv6Prefix.from_str("1.2.3.4:7:2001:db8::/32", labels=[16])
    assert C6.encode([n], False) == wire


def test_type2_and_unknown_rd_text() -> None:
    n = VPNv4Prefix.from_str("4200000000:7:198.51.100.0/24", labels=[5])
    assert n.rd.type == 2 and str(n) == "4200000000:7:198.51.100.0/24"
    u = VPNv4Prefix.from_parts(bytes.fromhex("0003aabbccddeeff"), "192.0.2.0/24", [5])
    assert str(u) == "0x0003aabbccddeeff:192.0.2.0/24"
    assert VPNv4Prefix.from_str(str(u), labels=[5]) == u


def test_many_routes_and_host_bits() -> None:
    routes = [VPNv4Prefix.from_str(f"65000:{i}:198.18.{i}.0/{24 + i % 9}", [i]) for i in range(17)]
    wire = C4.encode(routes, False)
    assert C4.decode(wire, False) == routes
    # a /23 with the last bit set decodes to the canonical key
    (n,) = C4.decode(bytes.fromhex("6f" "000641" "0000fde800000001" "c00003"), False)
    assert str(n) == "65000:1:192.0.2.0/23"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        # the example of the brief: 130 > 24 + 64 + 32
        (VPNV4_VECTOR.hex() + "82" "000641" "0000fde800000001" "c0000201",
         "vpnv4: prefix length 130 exceeds 88+32 at offset 15"),
        ("50" "000641" "0000fde800000001",
         "vpnv4: prefix length 80 is shorter than the 24+64 bits of labels and RD at offset 0"),
        ("70" "000641" "0000fde800000001" "c000",
         "vpnv4: prefix length 112 at offset 0 needs 15 octets, 14 remain"),
        ("70" "000641" "0000fde8",
         "vpnv4: prefix length 112 at offset 0 needs 15 octets, 8 remain"),
        ("70", "vpnv4: label stack of the NLRI at offset 0 (length 112) has no bottom-of-stack entry within the NLRI"),
    ],
)
def test_errors(wire: str, message: str) -> None:
    with pytest.raises(NlriError) as e:
        C4.decode(bytes.fromhex(wire), False)
    assert str(e.value) == message


def test_from_str_errors() -> None:
    with pytest.raises(ValueError, match="expected '<rd>:<prefix>'"):
        VPNv4Prefix.from_str("192.0.2.0/24")
    with pytest.raises(ValueError, match="route distinguisher"):
        VPNv4Prefix.from_str("x:1:192.0.2.0/24")
    with pytest.raises(ValueError, match="not an IPv4 prefix"):
        VPNv4Prefix.from_str("65000:1:2001:db8::/32")


G = IPv6Address("2001:db8::1")
LL = IPv6Address("fe80::1")
RD0 = "0000000000000000"


@pytest.mark.parametrize(
    ("codec", "nh", "ll", "wire"),
    [
        (C4, IPv4Address("192.0.2.1"), None, RD0 + "c0000201"),
        # RFC 8950: VPNv4 over IPv6 next hop, 24 and 48 octets
        (C4, G, None, RD0 + G.packed.hex()),
        (C4, G, LL, RD0 + G.packed.hex() + RD0 + LL.packed.hex()),
        (C6, G, None, RD0 + G.packed.hex()),
        (C6, G, LL, RD0 + G.packed.hex() + RD0 + LL.packed.hex()),
        # RFC 4659 section 3.2.1.1: IPv4 transport as IPv4-mapped IPv6
        (C6, IPv6Address("::ffff:192.0.2.1"), None, RD0 + "00000000000000000000ffffc0000201"),
    ],
)
def test_nexthops(codec: object, nh: object, ll: object, wire: str) -> None:
    raw = bytes.fromhex(wire)
    assert codec.encode_nexthop(nh, ll) == raw  # type: ignore[attr-defined]
    assert codec.decode_nexthop(raw, DEFAULT_CONTEXT) == (nh, ll)  # type: ignore[attr-defined]


def test_nexthop_v4_on_vpnv6_is_mapped_and_bad_lengths() -> None:
    assert C6.encode_nexthop(IPv4Address("192.0.2.1")) == bytes.fromhex(RD0 + "00000000000000000000ffffc0000201")
    for n in (4, 12, 16, 32, 40):
        with pytest.raises(NlriError, match=f"vpnv6: next hop length {n} \\(allowed 24 or 48\\)"):
            C6.decode_nexthop(bytes(n), DEFAULT_CONTEXT)
    with pytest.raises(NlriError, match="vpnv4: next hop length 4 \\(allowed 12, 24 or 48\\)"):
        C4.decode_nexthop(bytes(4), DEFAULT_CONTEXT)
