"""Per-VRF routing policies: what a VRF imports and what it exports (docs/policy.md)."""

from __future__ import annotations

from test_vpn_import import remote, svc  # type: ignore[import-not-found]

from vpe.bgp.wire.constants import AttrCode
from vpe.policy import parse_policy
from vpe.vpn import VpnPathsChanged

IMPORT = parse_policy({"name": "in", "terms": [
    {"match": {"prefix": "10.0.9.0/24 le 32"}, "action": "reject"},
    {"match": {"prefix": "10.0.1.0/24"}, "set": {"local_pref": 300}},
]})
EXPORT = parse_policy({"name": "out", "terms": [
    {"match": {"prefix": "192.0.2.128/25 le 32"}, "action": "reject"},
    {"match": {"prefix": "192.0.2.0/25 le 32"}, "set": {"communities": {"add": ["65000:77"]}}},
]})


def _paths() -> list:  # type: ignore[type-arg]
    return [remote("65001:1:10.0.1.0/24", "198.51.100.1", "65000:1"),
            remote("65001:1:10.0.9.0/24", "198.51.100.1", "65000:1")]


def test_vrf_import_policy_filters_and_rewrites_per_vrf() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    s.add_vrf("blue", import_rts=["65000:1"])
    s.set_policies("red", IMPORT, None)
    s.apply(VpnPathsChanged(adds=_paths()))
    assert s.vrf("red").routes("10.0.9.0/24") == ()  # rejected for red only
    assert len(s.vrf("blue").routes("10.0.9.0/24")) == 1
    (entry,) = s.vrf("red").routes("10.0.1.0/24")
    assert entry.attributes.get(AttrCode.LOCAL_PREF).value == 300
    (plain,) = s.vrf("blue").routes("10.0.1.0/24")
    assert plain.attributes.get(AttrCode.LOCAL_PREF).value == 100
    # the path going away removes red's rewritten entry too
    s.apply(VpnPathsChanged(removes=_paths()))
    assert s.vrf("red").routes("10.0.1.0/24") == () and len(s.vrf("red")) == 0


def test_changing_a_vrf_import_policy_reimports_what_is_known() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    s.apply(VpnPathsChanged(adds=_paths()))
    assert len(s.vrf("red")) == 2
    s.set_policies("red", IMPORT, None)
    assert s.vrf("red").routes("10.0.9.0/24") == () and len(s.vrf("red")) == 1
    s.set_policies("red", None, None)
    assert len(s.vrf("red")) == 2
    assert s.describe("red")["import_policy"] is None


def test_vrf_export_policy_rejects_and_tags_exports() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    s.set_policies("red", None, EXPORT)
    out = s.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    (exp,) = out.announce
    assert "65000:77" in str(exp.attributes.to_json())
    out = s.add_local_route("red", "192.0.2.200/32", endpoint="vm2")
    assert out.announce == []  # not exported ...
    assert len(s.vrf("red").routes("192.0.2.200/32")) == 1  # ... but a route of the VRF
    # lifting the policy exports it
    out = s.set_policies("red", None, None)
    assert sorted(str(r.nlri).split(":")[-1] for r in out.announce) == ["192.0.2.10/32", "192.0.2.200/32"]
    assert s.describe("red")["export_policy"] is None
