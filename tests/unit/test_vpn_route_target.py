"""Route target text (three formats), RT sets and the RT -> VRF index."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vpe.bgp.wire.attributes import ExtendedCommunities, PathAttributes, RouteTarget
from vpe.bgp.wire.attributes.extended_communities import KIND_AS2, KIND_AS4, KIND_IPV4
from vpe.vpn import RouteTargetIndex, parse_route_target, parse_route_targets, route_targets_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("65000:1", RouteTarget(65000, 1, KIND_AS2)),
        ("target:65000:1", RouteTarget(65000, 1, KIND_AS2)),
        ("65000:4294967295", RouteTarget(65000, 0xFFFFFFFF, KIND_AS2)),
        ("192.0.2.1:5", RouteTarget(IPv4Address("192.0.2.1"), 5, KIND_IPV4)),
        ("target:192.0.2.1:5", RouteTarget(IPv4Address("192.0.2.1"), 5, KIND_IPV4)),
        ("4200000000:7", RouteTarget(4200000000, 7, KIND_AS4)),
        ("target:65000L:7", RouteTarget(65000, 7, KIND_AS4)),
        (" target:65000:1 ", RouteTarget(65000, 1, KIND_AS2)),
    ],
)
def test_parse_three_formats(text: str, expected: RouteTarget) -> None:
    rt = parse_route_target(text)
    assert rt == expected
    assert rt.encode() == expected.encode()
    # the printed form parses back to the same value
    assert parse_route_target(str(rt)) == rt


@pytest.mark.parametrize(
    "text",
    ["", "65000", "target:", "x:1", "65000:-1", "4200000000:70000", "192.0.2.1:70000", "300.1.1.1:1",
     "65000:4294967296", "origin:65000:1"],
)
def test_bad_route_target_names_field_and_value(text: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_route_target(text, "import-rts")
    assert "import-rts" in str(e.value)
    assert repr(text) in str(e.value)


def test_parse_set_dedups_and_single_string() -> None:
    assert parse_route_targets(["65000:1", "target:65000:1"]) == {RouteTarget(65000, 1)}
    assert parse_route_targets("65000:2") == {RouteTarget(65000, 2)}
    assert parse_route_targets(None) == frozenset()


def _attrs(*rts: str) -> PathAttributes:
    return PathAttributes((ExtendedCommunities.from_strs([f"target:{r}" for r in rts]),))


def test_route_targets_of() -> None:
    assert route_targets_of(_attrs("65000:1", "65000:2")) == parse_route_targets(["65000:1", "65000:2"])
    assert route_targets_of(PathAttributes()) == frozenset()
    assert route_targets_of(None) == frozenset()


def test_index_members_and_cache_invalidation() -> None:
    idx: RouteTargetIndex[str] = RouteTargetIndex()
    idx.set("a", parse_route_targets(["65000:1"]))
    idx.set("b", parse_route_targets(["65000:1", "65000:2"]))
    attrs = _attrs("65000:1")
    assert idx.members_for(attrs) == ("a", "b")
    assert idx.members_for(_attrs("65000:2")) == ("b",)
    assert idx.members_for(_attrs("65000:3")) == ()
    old = idx.set("a", parse_route_targets(["65000:3"]))
    assert old == parse_route_targets(["65000:1"])
    assert idx.members_for(attrs) == ("b",)  # cache cleared
    idx.remove("b")
    assert idx.members_for(attrs) == ()
    assert idx.members_for(_attrs("65000:3", "65000:1")) == ("a",)
