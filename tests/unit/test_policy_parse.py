"""Policies from plain data: accepted shapes, errors naming the field path, round trip."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import RouteTarget
from vpe.bgp.wire.constants import VPNV4, VPNV6
from vpe.policy import SELF, PolicyError, PrefixRange, parse_policy, policy_to_json

FULL = {
    "name": "to-core",
    "default": "reject",
    "terms": [
        {"name": "drop", "match": {"family": "vpnv4", "prefix": "192.0.2.0/24 le 32"}, "action": "reject"},
        {
            "name": "prefer",
            "match": {
                "family": ["vpnv4", "vpnv6"],
                "prefix": ["198.51.100.0/24", "2001:db8::/32 ge 48 le 64"],
                "rd": "65000:1",
                "route_targets": ["target:65000:1", "65000:2"],
                "communities": ["65000:7", "no-export"],
                "ext_communities": ["origin:65000:3"],
                "large_communities": ["65000:1:2"],
                "as_path": "^65001( |$)",
                "as_path_contains": [65002],
                "as_path_length": {"ge": 1, "le": 3},
                "next_hop": ["198.18.0.5", "198.18.1.0/24"],
            },
            "set": {
                "next_hop": "self",
                "local_pref": 250,
                "med": 10,
                "communities": {"add": ["65000:9"], "remove": ["65000:7"]},
                "ext_communities": {"replace": ["origin:65000:4"]},
                "large_communities": {"add": ["65000:3:4"]},
                "route_targets": {"add": ["target:65000:5"], "remove": ["target:65000:1"]},
            },
            "relabel": True,
        },
    ],
}


def test_full_policy_parses() -> None:
    p = parse_policy(FULL)
    assert p.name == "to-core" and not p.default_accept
    drop, prefer = p.terms
    assert not drop.actions.accept and drop.match.families == frozenset({VPNV4})
    assert drop.match.prefixes == (PrefixRange(ip_network("192.0.2.0/24"), 24, 32),)
    m = prefer.match
    assert m.families == frozenset({VPNV4, VPNV6})
    assert m.prefixes[1] == PrefixRange(ip_network("2001:db8::/32"), 48, 64)
    assert m.route_targets == (RouteTarget(65000, 1), RouteTarget(65000, 2))
    assert m.as_path_length == (1, 3)
    assert m.next_hops == (ip_network("198.18.0.5/32"), ip_network("198.18.1.0/24"))
    a = prefer.actions
    assert a.set_next_hop == SELF and a.local_pref == 250 and a.med == 10 and a.relabel
    assert a.route_targets is not None and a.route_targets.remove == (RouteTarget(65000, 1),)
    assert p.route_dependent and p.relabels


def test_round_trip_is_equal() -> None:
    p = parse_policy(FULL)
    assert parse_policy(policy_to_json(p)) == p
    assert hash(parse_policy(policy_to_json(p))) == hash(p)


def test_defaults() -> None:
    p = parse_policy({"name": "all"})
    assert p.terms == () and p.default_accept and not p.route_dependent
    t = parse_policy({"name": "x", "terms": [{}]}).terms[0]
    assert t.name == "term-0" and t.actions.accept and not t.actions.rewrites


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"terms": [{}, {"match": {"prefix": "10.0.0.0/33"}}]},
            "policies[0].terms[1].match.prefix: '10.0.0.0/33' is not a prefix",
        ),
        ({"terms": [{"match": {"prefix": ["192.0.2.0/24", "x"]}}]}, "policies[0].terms[0].match.prefix[1]: 'x'"),
        ({"terms": [{"match": {"prefix": "192.0.2.0/24 le 16"}}]}, "needs 24 <= ge <= le <= 32"),
        ({"terms": [{"match": {"prefix": "192.0.2.1/24"}}]}, "is not a prefix"),
        ({"terms": [{"match": {"family": "ipv5"}}]}, "policies[0].terms[0].match.family: 'ipv5' is not a family"),
        ({"terms": [{"match": {"rd": "nope"}}]}, "match.rd: 'nope' is not a route distinguisher"),
        ({"terms": [{"match": {"route_targets": ["target:x"]}}]}, "match.route_targets[0]: 'target:x'"),
        ({"terms": [{"match": {"communities": ["65536:1"]}}]}, "match.communities[0]: '65536:1'"),
        ({"terms": [{"match": {"as_path": "(("}}]}, "match.as_path: '((' is not a regular expression"),
        ({"terms": [{"match": {"as_path_length": {"ge": 4, "le": 2}}}]}, "needs ge <= le"),
        ({"terms": [{"match": {"next_hop": "198.18.0.300"}}]}, "match.next_hop: '198.18.0.300'"),
        ({"terms": [{"match": {"colour": 1}}]}, "match.colour: 1 is not a known key"),
        ({"terms": [{"action": "drop"}]}, "terms[0].action: 'drop' is not 'accept' or 'reject'"),
        ({"terms": [{"set": {"local_pref": -1}}]}, "set.local_pref: -1 is not an integer"),
        ({"terms": [{"set": {"med": True}}]}, "set.med: True is not an integer"),
        ({"terms": [{"set": {"next_hop": "me"}}]}, "set.next_hop: 'me' is not 'self', 'unchanged' or an IP address"),
        ({"terms": [{"set": {"communities": {"add": "65000:1"}}}]}, "set.communities.add: '65000:1' is not a list"),
        ({"terms": [{"action": "reject", "set": {"med": 1}}]}, "cannot be combined"),
        ({"terms": [{"name": "a"}, {"name": "a"}]}, "terms[1].name: 'a' names two terms"),
        ({"terms": "x"}, "policies[0].terms: 'x' is not a list"),
        ({"default": "maybe"}, "policies[0].default: 'maybe'"),
        ({"name": "bad name"}, "policies[0].name: 'bad name' is not a policy name"),
    ],
)
def test_errors_name_path_and_value(data: dict[str, object], message: str) -> None:
    d = {"name": "p", **data}
    with pytest.raises(PolicyError) as e:
        parse_policy(d, "policies[0]")
    assert message in str(e.value)


def test_missing_name() -> None:
    with pytest.raises(PolicyError, match=r"policy\.name: None is missing"):
        parse_policy({})
    assert parse_policy({}, name="given").name == "given"


@given(
    st.integers(0, 32).flatmap(
        lambda p: st.tuples(
            st.integers(0, 2**32 - 1).map(lambda a, p=p: ip_network((a >> (32 - p) << (32 - p) if p else 0, p))),
            st.integers(p, 32),
            st.integers(p, 32),
        )
    )
)
def test_prefix_range_text_round_trip(t: tuple[object, int, int]) -> None:
    net, a, b = t
    ge, le = min(a, b), max(a, b)
    r = PrefixRange(net, ge, le)  # type: ignore[arg-type]
    assert PrefixRange.parse(str(r)) == r


def test_set_next_hop_address() -> None:
    p = parse_policy({"name": "x", "terms": [{"set": {"next_hop": "198.18.0.9"}}]})
    assert p.terms[0].actions.set_next_hop == ip_address("198.18.0.9")


def test_policy_names_follow_the_one_name_rule() -> None:
    """The rule of VPN and port names (docs/api.md): a letter or digit first."""
    import pytest

    from vpe.policy import PolicyError, parse_policy

    assert parse_policy({"name": "to-core.v2"}).name == "to-core.v2"
    for bad in ("-x", ".hidden", "_x", "", "a" * 65, "a b", "x/y"):
        with pytest.raises(PolicyError, match="is not a policy name"):
            parse_policy({"name": bad})
