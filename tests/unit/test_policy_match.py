"""Each match condition and each action, evaluated on real attribute sets and NLRI keys."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import (
    AsPath,
    AsSegment,
    Communities,
    Encapsulation,
    ExtendedCommunities,
    LargeCommunities,
    LocalPref,
    Med,
    NextHop,
    Origin,
    OriginType,
    PathAttribute,
    PathAttributes,
    RouteTarget,
    SegmentType,
)
from vpe.bgp.wire.constants import (
    IPV4_LABELED,
    IPV4_UNICAST,
    IPV6_UNICAST,
    RTC,
    VPNV4,
    VPNV6,
    Family,
)
from vpe.bgp.wire.nlri import IPv4Prefix, IPv6Prefix, VPNv4Prefix, VPNv6Prefix
from vpe.bgp.wire.nlri.labeled import IPv4LabeledPrefix
from vpe.policy import DEFAULT, Policy, parse_policy

NH = ip_address("198.18.0.5")
SELF_NH = ip_address("198.18.0.1")


def attrs(*extra: PathAttribute) -> PathAttributes:
    return PathAttributes([Origin(OriginType.IGP), AsPath.sequence(65001, 65002), *extra])


def pol(match: dict[str, object] | None = None, **term: object) -> Policy:
    t: dict[str, object] = {"name": "t", **term}
    if match is not None:
        t["match"] = match
    return parse_policy({"name": "p", "default": "reject", "terms": [t]})


def decided(p: Policy, fam: Family, a: PathAttributes, key: bytes | None = None, nh: object = NH) -> bool:
    return p.select(fam, a, nh, key) != DEFAULT  # type: ignore[arg-type]


# -- matches ---------------------------------------------------------------------------


def test_family() -> None:
    p = pol({"family": ["vpnv4", "ipv4-unicast"]})
    assert decided(p, VPNV4, attrs()) and decided(p, IPV4_UNICAST, attrs())
    assert not decided(p, VPNV6, attrs())


@pytest.mark.parametrize(
    ("spec", "route", "hit"),
    [
        ("192.0.2.0/24", "192.0.2.0/24", True),
        ("192.0.2.0/24", "192.0.2.128/25", False),
        ("192.0.2.0/24 le 32", "192.0.2.128/25", True),
        ("192.0.2.0/24 le 32", "192.0.2.7/32", True),
        ("192.0.2.0/24 le 32", "198.51.100.0/24", False),
        ("192.0.2.0/24 ge 26", "192.0.2.0/25", False),
        ("192.0.2.0/24 ge 26", "192.0.2.64/26", True),
        ("192.0.2.0/24 ge 26 le 27", "192.0.2.64/28", False),
        ("0.0.0.0/0 le 32", "203.0.113.0/24", True),
        ("192.0.0.0/16 le 24", "192.0.2.0/24", True),
    ],
)
def test_prefix_unicast_labeled_and_vpn(spec: str, route: str, hit: bool) -> None:
    p = pol({"prefix": spec})
    a = attrs()
    assert decided(p, IPV4_UNICAST, a, IPv4Prefix.from_str(route).key) is hit
    assert decided(p, IPV4_LABELED, a, IPv4LabeledPrefix.from_str(route, (5,)).key) is hit
    assert decided(p, VPNV4, a, VPNv4Prefix.from_str(f"65000:1:{route}", (5,)).key) is hit


def test_prefix_v6_does_not_match_v4() -> None:
    p = pol({"prefix": "2001:db8::/32 le 128"})
    assert decided(p, IPV6_UNICAST, attrs(), IPv6Prefix.from_str("2001:db8:1::/48").key)
    assert decided(p, VPNV6, attrs(), VPNv6Prefix.from_str("65000:1:2001:db8::/64", (5,)).key)
    assert not decided(p, IPV4_UNICAST, attrs(), IPv4Prefix.from_str("192.0.2.0/24").key)
    assert not decided(p, IPV6_UNICAST, attrs(), IPv6Prefix.from_str("2001:db9::/32").key)


def test_prefix_never_matches_without_a_prefix() -> None:
    p = pol({"prefix": "0.0.0.0/0 le 32"})
    assert not decided(p, RTC, attrs(), b"\x00")
    assert not decided(p, VPNV4, attrs(), None)  # no key given: a route-dependent term cannot match


def test_rd() -> None:
    p = pol({"rd": ["65000:1", "198.18.0.1:7"]})
    a = attrs()
    assert decided(p, VPNV4, a, VPNv4Prefix.from_str("65000:1:192.0.2.0/24", (5,)).key)
    assert decided(p, VPNV4, a, VPNv4Prefix.from_str("198.18.0.1:7:192.0.2.0/24", (5,)).key)
    assert not decided(p, VPNV4, a, VPNv4Prefix.from_str("65000:2:192.0.2.0/24", (5,)).key)
    assert not decided(p, IPV4_UNICAST, a, IPv4Prefix.from_str("192.0.2.0/24").key)


def test_route_targets_and_ext_communities() -> None:
    a = attrs(ExtendedCommunities.from_strs(["target:65000:1", "encap:mpls-in-udp"]))
    assert decided(pol({"route_targets": ["65000:2", "65000:1"]}), VPNV4, a)
    assert not decided(pol({"route_targets": ["65000:2"]}), VPNV4, a)
    assert decided(pol({"ext_communities": "encap:mpls-in-udp"}), VPNV4, a)
    assert not decided(pol({"route_targets": "65000:1"}), VPNV4, attrs())


def test_standard_and_large_communities() -> None:
    a = attrs(Communities.from_strs(["65000:7", "no-export"]), LargeCommunities.from_strs(["65000:1:2"]))
    assert decided(pol({"communities": "NO_EXPORT"}), VPNV4, a)
    assert not decided(pol({"communities": "65000:8"}), VPNV4, a)
    assert not decided(pol({"communities": "65000:7"}), VPNV4, attrs())
    assert decided(pol({"large_communities": ["65000:1:2"]}), VPNV4, a)
    assert not decided(pol({"large_communities": ["65000:1:3"]}), VPNV4, a)


def test_as_path_regex_contains_and_length() -> None:
    a = attrs()  # 65001 65002
    assert decided(pol({"as_path": "^65001 "}), VPNV4, a)
    assert decided(pol({"as_path": "65002$"}), VPNV4, a)
    assert not decided(pol({"as_path": "^65002"}), VPNV4, a)
    assert decided(pol({"as_path": "^$"}), VPNV4, PathAttributes([Origin(OriginType.IGP)]))
    assert decided(pol({"as_path_contains": [65009, 65002]}), VPNV4, a)
    assert not decided(pol({"as_path_contains": 65009}), VPNV4, a)
    assert decided(pol({"as_path_length": {"ge": 2, "le": 2}}), VPNV4, a)
    assert not decided(pol({"as_path_length": {"le": 1}}), VPNV4, a)
    with_set = PathAttributes(
        [AsPath((AsSegment(SegmentType.AS_SEQUENCE, (1,)), AsSegment(SegmentType.AS_SET, (2, 3))))]
    )
    assert decided(pol({"as_path_length": {"ge": 2, "le": 2}}), VPNV4, with_set)


def test_next_hop_address_and_prefix() -> None:
    assert decided(pol({"next_hop": "198.18.0.5"}), VPNV4, attrs())
    assert decided(pol({"next_hop": "198.18.0.0/24"}), VPNV4, attrs())
    assert not decided(pol({"next_hop": "198.18.1.0/24"}), VPNV4, attrs())
    assert not decided(pol({"next_hop": "2001:db8::/32"}), VPNV4, attrs())
    assert not decided(pol({"next_hop": "198.18.0.5"}), VPNV4, attrs(), nh=None)


def test_conditions_are_anded_first_term_decides() -> None:
    p = parse_policy(
        {
            "name": "p",
            "terms": [
                {"name": "a", "match": {"family": "vpnv4", "as_path_contains": 65009}, "action": "reject"},
                {"name": "b", "match": {"family": "vpnv4"}, "set": {"med": 5}},
                {"name": "c", "action": "reject"},
            ],
        }
    )
    v = p.evaluate(VPNV4, attrs(), NH)
    assert v.accept and v.term == "b" and v.attrs.get(4) == Med(5)
    v = p.evaluate(VPNV6, attrs(), NH)
    assert not v.accept and v.term == "c"


def test_default_verdicts() -> None:
    a = attrs()
    assert parse_policy({"name": "x"}).evaluate(VPNV4, a, NH).accept
    v = parse_policy({"name": "x", "default": "reject"}).evaluate(VPNV4, a, NH)
    assert not v.accept and v.term is None and v.attrs is a


def test_route_dependence_flags() -> None:
    assert not pol({"family": "vpnv4", "route_targets": "65000:1"}).route_dependent
    assert pol({"prefix": "192.0.2.0/24"}).route_dependent
    assert pol({"rd": "65000:1"}).route_dependent
    assert pol(relabel=True).relabels and not pol().relabels


def test_caches_share_results() -> None:
    p = pol(set={"local_pref": 250})
    a = attrs()
    v1 = p.evaluate(VPNV4, a, NH)
    v2 = p.evaluate(VPNV4, PathAttributes(list(a)), NH)  # equal set, another object
    assert v1.attrs is v2.attrs


# -- actions ---------------------------------------------------------------------------


def run(set_: dict[str, object], a: PathAttributes, nh: object = NH) -> tuple[PathAttributes, object]:
    v = pol(set=set_).evaluate(VPNV4, a, nh, None, SELF_NH)  # type: ignore[arg-type]
    assert v.accept
    return v.attrs, v.next_hop


def test_set_local_pref_and_med() -> None:
    out, _ = run({"local_pref": 250, "med": 7}, attrs(LocalPref(100)))
    assert out.get(5) == LocalPref(250) and out.get(4) == Med(7)


def test_set_next_hop_self_and_address() -> None:
    assert run({"next_hop": "self"}, attrs())[1] == SELF_NH
    assert run({"next_hop": "198.18.0.9"}, attrs())[1] == ip_address("198.18.0.9")
    # IPv4 unicast carries the next hop in NEXT_HOP: rewritten too
    out, nh = run({"next_hop": "198.18.0.9"}, attrs(NextHop(IPv4Address("198.18.0.5"))))
    assert nh == ip_address("198.18.0.9") and out.get(3) == NextHop(IPv4Address("198.18.0.9"))


def test_self_without_self_address_keeps_next_hop() -> None:
    v = pol(set={"next_hop": "self"}).evaluate(VPNV4, attrs(), NH)
    assert v.next_hop == NH


def test_communities_add_remove_replace() -> None:
    a = attrs(Communities.from_strs(["65000:1", "65000:2"]))
    out, _ = run({"communities": {"add": ["65000:3", "65000:1"], "remove": ["65000:2"]}}, a)
    assert out.get(8) == Communities.from_strs(["65000:1", "65000:3"])
    out, _ = run({"communities": {"replace": ["65000:9"]}}, a)
    assert out.get(8) == Communities.from_strs(["65000:9"])
    out, _ = run({"communities": {"remove": ["65000:1", "65000:2"]}}, a)
    assert 8 not in out  # an empty COMMUNITIES would be malformed: dropped
    out, _ = run({"communities": {"add": ["65000:4"]}}, attrs())
    assert out.get(8) == Communities.from_strs(["65000:4"])


def test_large_communities() -> None:
    out, _ = run({"large_communities": {"add": ["1:2:3"]}}, attrs())
    assert out.get(32) == LargeCommunities.from_strs(["1:2:3"])


def test_route_targets_edit_keeps_other_ext_communities() -> None:
    a = attrs(ExtendedCommunities.from_strs(["target:65000:1", "encap:mpls-in-udp"]))
    out, _ = run({"route_targets": {"replace": ["target:65000:7"]}}, a)
    ec = out.get(16)
    assert set(ec.values) == {RouteTarget(65000, 7), Encapsulation.from_str("mpls-in-udp")}
    out, _ = run({"route_targets": {"remove": ["target:65000:1"]}}, a)
    assert out.get(16).values == (Encapsulation.from_str("mpls-in-udp"),)
    out, _ = run({"ext_communities": {"replace": []}}, a)
    assert 16 not in out


def test_unchanged_keeps_the_same_object() -> None:
    a = attrs(LocalPref(250))
    out, _ = run({"local_pref": 250}, a)
    assert out is a


def test_reject_keeps_attributes() -> None:
    a = attrs()
    v = pol(action="reject").evaluate(VPNV4, a, NH)
    assert not v.accept and v.attrs is a


# -- property: prefix ranges agree with ipaddress -----------------------------------------




def _net(bits: int, addr: int) -> IPv4Network:
    return IPv4Network((addr >> (32 - bits) << (32 - bits) if bits else 0, bits))


@given(
    st.integers(0, 32), st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 32),
    st.integers(0, 32), st.integers(0, 2**32 - 1),
)
def test_prefix_match_agrees_with_ipaddress(
    pbits: int, paddr: int, a: int, b: int, rbits: int, raddr: int
) -> None:
    net = _net(pbits, paddr)
    ge, le = sorted((max(a, pbits), max(b, pbits)))
    route = _net(rbits, raddr)
    p = pol({"prefix": f"{net} ge {ge} le {le}"})
    expected = route.subnet_of(net) and ge <= rbits <= le
    assert decided(p, IPV4_UNICAST, attrs(), IPv4Prefix.from_network(route).key) is expected
    assert decided(p, VPNV4, attrs(), VPNv4Prefix.from_parts("65000:1", route, (3,)).key) is expected
