"""Labeled unicast NLRI (RFC 8277): label stacks, withdrawals, hand-built vectors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from vpe.bgp.wire.constants import IPV4_LABELED, IPV6_LABELED
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import NLRI_CODECS, IPv4LabeledPrefix, IPv6LabeledPrefix

L4 = NLRI_CODECS[IPV4_LABELED]
L6 = NLRI_CODECS[IPV6_LABELED]


def test_one_label_vector() -> None:
    # length 24 (label) + 24 (prefix) = 48; label 16 -> 0x000100 | BoS -> 000101
    wire = bytes.fromhex("30" "000101" "c00002")
    (n,) = L4.decode(wire, False)
    assert n == IPv4LabeledPrefix.from_str("192.0.2.0/24", labels=[16])
    assert n.labels == (16,)
    assert n.key == bytes.fromhex("18c00002")  # labels are not part of the key
    assert str(n) == "192.0.2.0/24"
    assert repr(n) == "IPv4LabeledPrefix('192.0.2.0/24', labels=[16])"
    assert n.to_json() == {"prefix": "192.0.2.0/24", "labels": [16], "path_id": 0}
    assert L4.encode([n], False) == wire


def test_multiple_labels_vector() -> None:
    # RFC 8277 section 2.3: entries until bottom-of-stack; 16 (no BoS), 17 (BoS)
    wire = bytes.fromhex("48" "000100" "000111" "c00002")
    (n,) = L4.decode(wire, False)
    assert n.labels == (16, 17)
    assert L4.encode([n], False) == wire


def test_max_label_and_tc_bits_dropped() -> None:
    # label 0xfffff with TC bits 0b101 set: the value is kept, TC is not
    (n,) = L4.decode(bytes.fromhex("30" "fffffb" "c00002"), False)
    assert n.labels == (0xFFFFF,)
    assert L4.encode([n], False) == bytes.fromhex("30" "fffff1" "c00002")


def test_ipv6_vector_with_addpath() -> None:
    wire = bytes.fromhex("00000007" "38" "003e81" "20010db8")  # label 1000, /32
    (n,) = L6.decode(wire, True)
    assert n == IPv6LabeledPrefix.from_str("2001:db8::/32", labels=[1000], path_id=7)
    assert L6.encode([n], True) == wire


@pytest.mark.parametrize("compat", ["800000", "000000"])
def test_withdrawal_compatibility_field(compat: str) -> None:
    # RFC 8277 section 2.4: one 3-octet field, value ignored on receipt
    wire = bytes.fromhex("30" + compat + "c00002" "38" + compat + "c6336401")
    got = L4.decode_withdrawn(wire, False)
    assert [str(n) for n in got] == ["192.0.2.0/24", "198.51.100.1/32"]
    assert all(n.labels == () for n in got)


def test_withdraw_encodes_0x800000_whatever_the_labels() -> None:
    n = IPv4LabeledPrefix.from_str("192.0.2.0/24", labels=[16, 17])
    assert L4.encode_withdrawn([n], False) == bytes.fromhex("30" "800000" "c00002")
    assert L4.encode_withdrawn([n], True) == bytes.fromhex("00000000" "30" "800000" "c00002")
    # a route without labels is a withdrawal form in encode_one as well
    empty = IPv4LabeledPrefix.from_str("192.0.2.0/24")
    assert L4.encode_one(empty, False) == bytes.fromhex("30800000c00002")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("39" "000101" "c000020100", "ipv4-labeled-unicast: prefix length 57 exceeds 24+32 at offset 0"),
        ("10" "000101", "ipv4-labeled-unicast: prefix length 16 is shorter than the 24+0 bits of labels and RD at offset 0"),
        ("30" "000100" "c00002", "ipv4-labeled-unicast: label stack of the NLRI at offset 0 (length 48) has no bottom-of-stack entry within the NLRI"),
        ("30" "000101" "c000", "ipv4-labeled-unicast: prefix length 48 at offset 0 needs 7 octets, 6 remain"),
        ("30" "0001", "ipv4-labeled-unicast: label stack of the NLRI at offset 0 (length 48) has no bottom-of-stack entry within the NLRI"),
    ],
)
def test_errors(wire: str, message: str) -> None:
    with pytest.raises(NlriError) as e:
        L4.decode(bytes.fromhex(wire), False)
    assert str(e.value) == message


def test_withdrawn_truncated() -> None:
    with pytest.raises(NlriError, match="withdrawn NLRI at offset 0 truncated in its label field"):
        L4.decode_withdrawn(bytes.fromhex("308000"), False)


def test_from_str_checks_labels() -> None:
    with pytest.raises(ValueError, match="label 1048576 is not a 20-bit value"):
        IPv4LabeledPrefix.from_str("192.0.2.0/24", labels=[1 << 20])
    with pytest.raises(ValueError):
        IPv4LabeledPrefix.from_str("192.0.2.0/24", labels=[-1])


def test_too_many_labels_for_the_length_octet() -> None:
    n = IPv6LabeledPrefix.from_str("2001:db8::/128", labels=[1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="more than an NLRI length octet holds"):
        L6.encode([n], False)


def test_nexthops() -> None:
    g, ll = IPv6Address("2001:db8::1"), IPv6Address("fe80::1")
    assert L4.decode_nexthop(bytes.fromhex("c0000201"), DEFAULT_CONTEXT) == (IPv4Address("192.0.2.1"), None)
    assert L4.decode_nexthop(g.packed, DEFAULT_CONTEXT) == (g, None)
    assert L6.decode_nexthop(g.packed + ll.packed, DEFAULT_CONTEXT) == (g, ll)
    assert L6.encode_nexthop(g, ll) == g.packed + ll.packed
    # 6PE (RFC 4798): IPv4 next hop as IPv4-mapped IPv6
    assert L6.encode_nexthop(IPv4Address("192.0.2.1")) == IPv6Address("::ffff:192.0.2.1").packed
    with pytest.raises(NlriError, match="ipv6-labeled-unicast: next hop length 4"):
        L6.decode_nexthop(bytes(4), DEFAULT_CONTEXT)
