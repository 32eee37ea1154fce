"""IPv4/IPv6 unicast NLRI: hand-built vectors (RFC 4271 4.3, RFC 4760, RFC 7911)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from vpe.bgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import NLRI_CODECS, IPv4Prefix, IPv6Prefix

V4 = NLRI_CODECS[IPV4_UNICAST]
V6 = NLRI_CODECS[IPV6_UNICAST]


def test_ipv4_vectors() -> None:
    # length octet (bits) + minimal prefix octets
    wire = bytes.fromhex("18c00002" "20c6336401" "00" "17cb0070")
    got = V4.decode(wire, False)
    assert [str(n) for n in got] == ["192.0.2.0/24", "198.51.100.1/32", "0.0.0.0/0", "203.0.112.0/23"]
    assert got[0] == IPv4Prefix.from_str("192.0.2.0/24")
    assert got[0].key == b"\x18\xc0\x00\x02"
    assert got[0].prefix_len == 24
    assert str(got[3].prefix) == "203.0.112.0/23"
    assert V4.encode(got, False) == wire


def test_ipv4_addpath_vector() -> None:
    # RFC 7911: 4-octet path identifier before each NLRI
    wire = bytes.fromhex("00000001" "18c00002" "00000002" "18c00002")
    a, b = V4.decode(wire, True)
    assert (a.path_id, b.path_id) == (1, 2)
    assert a.key == b.key and a != b
    assert V4.encode([a, b], True) == wire
    assert repr(b) == "IPv4Prefix('192.0.2.0/24', path_id=2)"
    assert a.to_json() == {"prefix": "192.0.2.0/24", "path_id": 1}


def test_ipv6_vector() -> None:
    wire = bytes.fromhex("2020010db8" "4020010db800010002" "00")
    got = V6.decode(wire, False)
    assert [str(n) for n in got] == ["2001:db8::/32", "2001:db8:1:2::/64", "::/0"]
    assert got[1].prefix == IPv6Network("2001:db8:1:2::/64")
    assert got[1] == IPv6Prefix.from_str("2001:db8:1:2::/64")
    assert V6.encode(got, False) == wire


def test_host_bits_are_cleared() -> None:
    # /23 with the 24th bit set names the same route as without it
    (n,) = V4.decode(bytes.fromhex("17c00003"), False)
    assert n.key == bytes.fromhex("17c00002")
    assert str(n) == "192.0.2.0/23"


@pytest.mark.parametrize(
    ("codec", "wire", "message"),
    [
        (V4, "21c0000201", "ipv4-unicast: prefix length 33 exceeds 32 at offset 0"),
        (V4, "18c00002" "18c000", "ipv4-unicast: prefix length 24 at offset 4 needs 4 octets, 3 remain"),
        (V6, "81" + "00" * 17, "ipv6-unicast: prefix length 129 exceeds 128 at offset 0"),
    ],
)
def test_errors(codec: object, wire: str, message: str) -> None:
    with pytest.raises(NlriError) as e:
        codec.decode(bytes.fromhex(wire), False)  # type: ignore[attr-defined]
    assert str(e.value) == message


def test_addpath_truncated() -> None:
    with pytest.raises(NlriError, match=r"ipv4-unicast: NLRI with path identifier at offset 8 truncated \(3 octets remain\)"):
        V4.decode(bytes.fromhex("00000001" "18c00002" "000000"), True)
    with pytest.raises(NlriError, match="path identifier at offset 0 truncated"):
        V4.decode(bytes.fromhex("00000001"), True)


def test_from_str_rejects() -> None:
    for bad in ("192.0.2.1/24", "2001:db8::/32", "192.0.2.0/33", "nonsense"):
        with pytest.raises(ValueError):
            IPv4Prefix.from_str(bad)
    with pytest.raises(ValueError, match="not an IPv6 prefix"):
        IPv6Prefix.from_str("192.0.2.0/24")
    with pytest.raises(ValueError, match="path identifier"):
        IPv4Prefix.from_str("192.0.2.0/24", path_id=1 << 32)


def test_equality_and_hash() -> None:
    a = IPv4Prefix.from_str("192.0.2.0/24")
    assert a == IPv4Prefix.from_str("192.0.2.0/24")
    assert hash(a) == hash(IPv4Prefix.from_str("192.0.2.0/24"))
    assert a != IPv4Prefix.from_str("192.0.2.0/25")
    assert {a: 1}[IPv4Prefix(bytes.fromhex("18c00002"))] == 1


# -- next hops ----------------------------------------------------------------

G6 = IPv6Address("2001:db8::1")
LL = IPv6Address("fe80::1")


@pytest.mark.parametrize(
    ("codec", "nh", "ll", "wire"),
    [
        (V4, IPv4Address("192.0.2.1"), None, "c0000201"),
        # RFC 8950: IPv4 NLRI over an IPv6 next hop, global and global + link-local
        (V4, G6, None, "20010db8000000000000000000000001"),
        (V4, G6, LL, "20010db8000000000000000000000001fe800000000000000000000000000001"),
        (V6, G6, None, "20010db8000000000000000000000001"),
        (V6, G6, LL, "20010db8000000000000000000000001fe800000000000000000000000000001"),
    ],
)
def test_nexthop(codec: object, nh: object, ll: object, wire: str) -> None:
    raw = bytes.fromhex(wire)
    assert codec.encode_nexthop(nh, ll) == raw  # type: ignore[attr-defined]
    assert codec.decode_nexthop(raw, DEFAULT_CONTEXT) == (nh, ll)  # type: ignore[attr-defined]


def test_nexthop_ipv6_family_ipv4_address_is_mapped() -> None:
    raw = V6.encode_nexthop(IPv4Address("192.0.2.1"))
    assert raw == bytes.fromhex("00000000000000000000ffffc0000201")
    assert V6.decode_nexthop(raw, DEFAULT_CONTEXT) == (IPv6Address("::ffff:192.0.2.1"), None)


@pytest.mark.parametrize("length", [0, 3, 5, 12, 17, 24, 33])
def test_nexthop_bad_length(length: int) -> None:
    with pytest.raises(NlriError, match=f"ipv4-unicast: next hop length {length} \\(allowed 4, 16 or 32\\)"):
        V4.decode_nexthop(bytes(length), DEFAULT_CONTEXT)
    with pytest.raises(NlriError, match="ipv6-unicast: next hop length"):
        V6.decode_nexthop(bytes(4), DEFAULT_CONTEXT)


def test_nexthop_encode_errors() -> None:
    with pytest.raises(ValueError, match="next hop is required"):
        V4.encode_nexthop(None)
    with pytest.raises(ValueError, match="link-local"):
        V4.encode_nexthop(IPv4Address("192.0.2.1"), LL)
