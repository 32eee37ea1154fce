"""Route leaking between one tenant's VRFs under policy (R4.2)."""

from __future__ import annotations

import pytest
from test_vpn_import import remote  # type: ignore[import-not-found]

from vpe.vpn import Endpoint, LeakPolicy, PrefixListEntry, RouteSource, VpnPathsChanged, VpnService


def setup() -> VpnService:
    s = VpnService("192.0.2.1", next_hop="198.18.0.1")
    s.add_vrf("web", route_targets=["65000:1"], tenant="acme")
    s.add_vrf("db", route_targets=["65000:2"], tenant="acme")
    s.add_local_route("web", "10.1.0.5/32", endpoint="web1")
    s.add_local_route("web", "10.1.0.0/24", kind="subnet")
    s.apply(
        VpnPathsChanged(
            adds=[
                remote("65001:1:10.1.9.0/24", "198.51.100.1", "65000:1", "65000:77"),
                remote("65001:1:10.2.0.0/16", "198.51.100.1", "65000:1"),
            ]
        )
    )
    return s


def test_prefix_list_entry_semantics() -> None:
    def m(entry: str, prefix: str) -> bool:
        from vpe.vpn import prefix_key

        v, k = prefix_key(prefix)
        return PrefixListEntry.parse(entry).matches(v, k)

    assert m("10.1.0.0/16", "10.1.0.0/16") and not m("10.1.0.0/16", "10.1.0.0/24")
    assert m("10.1.0.0/16 le 24", "10.1.9.0/24") and not m("10.1.0.0/16 le 24", "10.1.0.5/32")
    assert m("10.1.0.0/16 ge 32", "10.1.0.5/32") and not m("10.1.0.0/16 ge 32", "10.1.0.0/24")
    assert m("10.1.0.0/16 ge 20 le 24", "10.1.9.0/24") and not m("10.1.0.0/16 ge 20 le 24", "10.2.9.0/24")
    assert not m("10.1.0.0/16 le 32", "2001:db8::/32")
    assert m("2001:db8::/32 ge 48 le 64", "2001:db8:5::/48")


@pytest.mark.parametrize("text", ["10.0.0.0/8 ge", "10.0.0.0/8 le 4", "10.0.0.0/8 ge 24 le 16", "10.0.0.1/8", "x", "10.0.0.0/8 eq 9"])
def test_prefix_list_errors(text: str) -> None:
    with pytest.raises(ValueError, match="prefix-list"):
        PrefixListEntry.parse(text)


def test_leak_with_prefix_list_marks_source() -> None:
    s = setup()
    out = s.add_leak_policy(LeakPolicy("web-to-db", "web", "db", prefixes=("10.1.0.0/16 le 32",)))
    assert sorted(str(c) for c in out.table_changes) == [
        "db 10.1.0.0/24: 1 route(s)",
        "db 10.1.0.5/32: 1 route(s)",
        "db 10.1.9.0/24: 1 route(s)",
    ]
    db = s.vrf("db")
    (host,) = db.routes("10.1.0.5/32")
    assert host.source is RouteSource.LEAKED and host.leaked_from == "web"
    assert host.origin.route.origin == Endpoint("web1")  # type: ignore[union-attr]
    (remote_leak,) = db.routes("10.1.9.0/24")
    assert remote_leak.next_hop is not None and str(remote_leak.next_hop) == "198.51.100.1"
    assert db.routes("10.2.0.0/16") == ()
    # follows the source: a new local route is leaked, a removed one goes
    s.add_local_route("web", "10.1.0.6/32")
    assert db.routes("10.1.0.6/32")[0].leaked_from == "web"
    s.remove_local_route("web", "10.1.0.5/32")
    assert db.routes("10.1.0.5/32") == ()
    # not leaked back into web (db has no policy), and never re-leaked
    assert all(e.source is not RouteSource.LEAKED for e in s.vrf("web").entries())
    out = s.remove_leak_policy("web-to-db")
    assert all(e.source is not RouteSource.LEAKED for e in db.entries())


def test_leak_with_rt_match() -> None:
    s = setup()
    s.add_leak_policy(LeakPolicy("rt", "web", "db", route_targets=frozenset({"65000:77"})))  # type: ignore[arg-type]
    assert sorted(s.vrf("db").prefixes(4)) == ["10.1.9.0/24"]


def test_leak_rt_match_local_routes_use_export_rts() -> None:
    s = setup()
    s.add_leak_policy(LeakPolicy("rt", "web", "db", route_targets=frozenset({"65000:1"})))  # type: ignore[arg-type]
    assert sorted(s.vrf("db").prefixes(4)) == ["10.1.0.0/24", "10.1.0.5/32", "10.1.9.0/24", "10.2.0.0/16"]


def test_own_routes_win_over_leaked() -> None:
    s = setup()
    s.add_local_route("db", "10.1.0.0/24", kind="subnet")
    s.add_leak_policy(LeakPolicy("all", "web", "db"))
    entries = s.vrf("db").routes("10.1.0.0/24")
    assert [e.source for e in entries] == [RouteSource.LOCAL, RouteSource.LEAKED]
    assert [e.source for e in s.vrf("db").active("10.1.0.0/24")] == [RouteSource.LOCAL]


def test_leak_errors() -> None:
    s = setup()
    s.add_vrf("other", route_targets=["65000:9"], tenant="globex")
    with pytest.raises(ValueError, match="different tenants"):
        s.add_leak_policy(LeakPolicy("x", "web", "other"))
    with pytest.raises(ValueError, match="vrf: 'nope' does not exist"):
        s.add_leak_policy(LeakPolicy("x", "web", "nope"))
    with pytest.raises(ValueError, match="source and destination"):
        LeakPolicy("x", "web", "web")
    s.add_leak_policy(LeakPolicy("x", "web", "db"))
    with pytest.raises(ValueError, match="already exists"):
        s.add_leak_policy(LeakPolicy("x", "web", "db"))
    with pytest.raises(ValueError, match="does not exist"):
        s.remove_leak_policy("y")


def test_removing_source_vrf_removes_leaks() -> None:
    s = setup()
    s.add_leak_policy(LeakPolicy("all", "web", "db"))
    assert len(s.vrf("db")) == 4
    s.remove_vrf("web")
    assert len(s.vrf("db")) == 0
    assert s.leaker.policies == {}
