"""Route Target Constraint NLRI (RFC 4684 section 4): vectors, text forms, errors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from vpe.bgp.wire.constants import RTC
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import NLRI_CODECS, RouteTargetMembership

C = NLRI_CODECS[RTC]


def test_full_and_default_vectors() -> None:
    # 96 bits: origin AS 65000 (0000fde8) + RT target:65000:1 (0002 fde8 00000001); then default
    wire = bytes.fromhex("60" "0000fde8" "0002fde800000001" "00")
    full, default = C.decode(wire, False)
    assert str(full) == "65000:target:65000:1"
    assert full.origin_as == 65000
    assert full.route_target == bytes.fromhex("0002fde800000001")
    assert str(default) == "default" and default.is_default and default.origin_as is None
    assert full == RouteTargetMembership.from_str("65000:target:65000:1")
    assert default == RouteTargetMembership.default()
    assert C.encode([full, default], False) == wire
    assert full.to_json() == {
        "rtc": "65000:target:65000:1",
        "prefix_len": 96,
        "origin_as": 65000,
        "route_target": "target:65000:1",
        "route_target_len": 64,
        "path_id": 0,
    }


def test_partial_forms() -> None:
    only_as = RouteTargetMembership.from_str("65000:*")
    assert only_as.key == bytes.fromhex("20" "0000fde8") and only_as.route_target is None
    part = RouteTargetMembership.from_str("65000:0x0002fd/20")
    assert part.key == bytes.fromhex("34" "0000fde8" "0002f0")
    assert str(part) == "65000:0x0002f0/20"
    assert part.route_target == bytes.fromhex("0002f00000000000")
    assert C.decode(C.encode([only_as, part], True), True) == [only_as, part]
    assert str(RouteTargetMembership.from_str("4200000000:target:192.0.2.1:7")) == "4200000000:target:192.0.2.1:7"
    odd = RouteTargetMembership.from_parts(65000, bytes.fromhex("4302000000000001"))
    assert str(odd) == "65000:0x4302000000000001"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("10" "0000", "rtc: prefix length 16 at offset 0 (allowed 0 or 32..96)"),
        ("61" + "00" * 13, "rtc: prefix length 97 at offset 0 (allowed 0 or 32..96)"),
        ("00" "60" "0000fde8", "rtc: prefix length 96 at offset 1 needs 13 octets, 5 remain"),
    ],
)
def test_errors(wire: str, message: str) -> None:
    with pytest.raises(NlriError) as e:
        C.decode(bytes.fromhex(wire), False)
    assert str(e.value) == message


@pytest.mark.parametrize("text", ["", "x", "65000", "65000:", "65000:target:", "65000:0xzz/8", "65000:0x00/9", "-1:*"])
def test_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        RouteTargetMembership.from_str(text)


def test_nexthops() -> None:
    g, ll = IPv6Address("2001:db8::1"), IPv6Address("fe80::1")
    for nh, l_l in ((IPv4Address("192.0.2.1"), None), (g, None), (g, ll)):
        assert C.decode_nexthop(C.encode_nexthop(nh, l_l), DEFAULT_CONTEXT) == (nh, l_l)
    assert C.encode_nexthop(IPv4Address("192.0.2.1")) == bytes.fromhex("c0000201")
    with pytest.raises(NlriError, match="rtc: next hop length 8"):
        C.decode_nexthop(bytes(8), DEFAULT_CONTEXT)
