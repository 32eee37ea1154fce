"""Import of VPN routes into VRFs (R4.1, R4.5, R10.1): RT matching, RD stripping,
re-import on RT change, removal everywhere, own routes, multipath."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from vpe.bgp.wire.attributes import (
    AsPath,
    ExtendedCommunities,
    LocalPref,
    Origin,
    OriginType,
    PathAttributes,
)
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4, VPNV6
from vpe.bgp.wire.nlri.prefix import IPv4Prefix
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix, VPNv6Prefix
from vpe.vpn import RouteSource, VpnPath, VpnPathsChanged, VpnService, vpn_path_of


def attrs(*rts: str, local_pref: int = 100, extra: tuple[str, ...] = ("encap:mpls-in-udp",)) -> PathAttributes:
    return PathAttributes(
        (
            Origin(OriginType.IGP),
            AsPath(),
            LocalPref(local_pref),
            ExtendedCommunities.from_strs([*(f"target:{r}" for r in rts), *extra]),
        )
    )


def remote(route: str, nh: str, *rts: str, label: int = 3000, local_pref: int = 100) -> VpnPath:
    """``route`` like ``"65001:1:10.0.0.0/24"`` from PE ``nh``."""
    v6 = route.count(":") > 2 and "/" in route and ":" in route.split(":", 2)[2]
    cls = VPNv6Prefix if v6 else VPNv4Prefix
    nlri = cls.from_str(route, labels=[label])
    return VpnPath(VPNV6 if v6 else VPNV4, nlri, attrs(*rts, local_pref=local_pref), ip_address(nh), (label,))


def svc() -> VpnService:
    return VpnService("192.0.2.1")


def test_import_into_every_vrf_with_matching_rt_rd_stripped() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    s.add_vrf("blue", import_rts=["65000:2"])
    s.add_vrf("both", import_rts=["65000:1", "target:65000:2"])
    p = remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=1234)
    out = s.apply(VpnPathsChanged(adds=[p]))
    assert sorted(c.vrf for c in out.table_changes) == ["both", "red"]
    (entry,) = s.vrf("red").routes("10.0.0.0/24")
    assert entry.source is RouteSource.IMPORTED
    assert entry.next_hop == IPv4Address("198.51.100.1")
    assert entry.labels == (1234,)
    assert entry.encapsulation == (13,)
    assert str(entry.origin) == "65001:1:10.0.0.0/24"
    assert entry.prefix_text == "10.0.0.0/24"
    assert s.vrf("blue").routes("10.0.0.0/24") == ()
    assert s.vrf("both").active("10.0.0.0/24") == (entry,)
    assert out.announce == [] and out.withdraw == []


def test_overlapping_address_space_stays_isolated() -> None:
    s = svc()
    s.add_vrf("a", import_rts=["65000:1"])
    s.add_vrf("b", import_rts=["65000:2"])
    s.apply(
        VpnPathsChanged(
            adds=[
                remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=100),
                remote("65001:2:10.0.0.0/24", "198.51.100.2", "65000:2", label=200),
            ]
        )
    )
    assert [r.labels for r in s.vrf("a").routes("10.0.0.0/24")] == [(100,)]
    assert [r.labels for r in s.vrf("b").routes("10.0.0.0/24")] == [(200,)]


def test_same_prefix_two_rds_merge_in_vrf_with_multipath() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"], multipath=2)
    s.add_vrf("one", import_rts=["65000:1"], multipath=1)
    a = remote("198.51.100.1:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=10)
    b = remote("198.51.100.2:1:10.0.0.0/24", "198.51.100.2", "65000:1", label=20)
    worse = remote("198.51.100.3:1:10.0.0.0/24", "198.51.100.3", "65000:1", label=30, local_pref=50)
    s.apply(VpnPathsChanged(adds=[a, b, worse]))
    red = s.vrf("red")
    assert len(red.routes("10.0.0.0/24")) == 3
    assert [r.labels for r in red.active("10.0.0.0/24")] == [(10,), (20,)]
    assert [r.labels for r in s.vrf("one").active("10.0.0.0/24")] == [(10,)]
    out = s.set_multipath("one", 4)
    assert [len(c.routes) for c in out.table_changes] == [2]
    out = s.apply(VpnPathsChanged(removes=[a, b]))
    assert {c.vrf: [r.labels for r in c.routes] for c in out.table_changes} == {
        "red": [(30,)],
        "one": [(30,)],
    }


def test_remove_takes_route_out_of_every_vrf() -> None:
    s = svc()
    for n in ("a", "b", "c"):
        s.add_vrf(n, import_rts=["65000:1"])
    p = remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1")
    s.apply(VpnPathsChanged(adds=[p]))
    out = s.apply(VpnPathsChanged(removes=[p]))
    assert sorted((c.vrf, c.routes) for c in out.table_changes) == [("a", ()), ("b", ()), ("c", ())]
    assert all(len(v) == 0 for v in s.vrfs.values())
    assert len(s.importer) == 0


def test_add_of_known_path_replaces_it_and_follows_new_rts() -> None:
    s = svc()
    s.add_vrf("a", import_rts=["65000:1"])
    s.add_vrf("b", import_rts=["65000:2"])
    s.apply(VpnPathsChanged(adds=[remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=1)]))
    out = s.apply(VpnPathsChanged(adds=[remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:2", label=2)]))
    assert {c.vrf: len(c.routes) for c in out.table_changes} == {"a": 0, "b": 1}
    assert s.vrf("b").routes("10.0.0.0/24")[0].labels == (2,)


def test_changing_import_rts_reimports_without_restart() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    s.apply(
        VpnPathsChanged(
            adds=[
                remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1"),
                remote("65001:2:10.1.0.0/24", "198.51.100.1", "65000:2"),
                remote("65001:3:2001:db8:1::/48", "198.51.100.1", "65000:2"),
            ]
        )
    )
    assert list(s.vrf("red").prefixes(4)) == ["10.0.0.0/24"]
    out = s.set_import_rts("red", ["65000:2"])
    assert sorted(str(c) for c in out.table_changes) == [
        "red 10.0.0.0/24: 0 route(s)",
        "red 10.1.0.0/24: 1 route(s)",
        "red 2001:db8:1::/48: 1 route(s)",
    ]
    assert list(s.vrf("red").prefixes(6)) == ["2001:db8:1::/48"]
    (v6,) = s.vrf("red").routes("2001:db8:1::/48")
    assert v6.version == 6
    # a VRF created later imports what is already known
    s.add_vrf("late", import_rts=["65000:1"])
    assert list(s.vrf("late").prefixes(4)) == ["10.0.0.0/24"]


def test_own_routes_from_rib_are_not_imported_and_other_families_ignored() -> None:
    s = VpnService("192.0.2.1", local_next_hops=["192.0.2.2"])
    s.add_vrf("red", import_rts=["65000:1"])
    own = remote("192.0.2.1:1:10.0.0.0/24", "192.0.2.1", "65000:1")
    own2 = remote("192.0.2.1:1:10.0.1.0/24", "192.0.2.2", "65000:1")
    uni = VpnPath(IPV4_UNICAST, IPv4Prefix.from_str("10.9.0.0/16"), attrs("65000:1"), IPv4Address("198.51.100.9"), ())
    out = s.apply(VpnPathsChanged(adds=[own, own2, uni]))
    assert out.table_changes == []
    assert len(s.importer) == 0


def test_ipv6_vpn_route_and_ipv6_next_hop() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    p = remote("65001:1:2001:db8:5::/64", "2001:db8::1", "65000:1")
    s.apply(VpnPathsChanged(adds=[p]))
    (r,) = s.vrf("red").routes("2001:db8:5::/64")
    assert r.next_hop == IPv6Address("2001:db8::1")


def test_vpn_path_of_reads_rib_path_shape() -> None:
    class FakePath:
        nlri = VPNv4Prefix.from_str("65001:1:10.0.0.0/24", labels=[77])
        attrs = attrs("65000:1")
        next_hop = IPv4Address("198.51.100.1")

    p = vpn_path_of(VPNV4, FakePath())
    assert p.labels == (77,)
    assert p.ident == (FakePath.nlri.key, 0, IPv4Address("198.51.100.1").packed)


def test_multiple_paths_same_rd_prefix_different_next_hops() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"], multipath=4)
    a = remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=1)
    b = remote("65001:1:10.0.0.0/24", "198.51.100.2", "65000:1", label=2)
    s.apply(VpnPathsChanged(adds=[a, b]))
    assert len(s.vrf("red").active("10.0.0.0/24")) == 2
    assert len(s.importer) == 2
    s.apply(VpnPathsChanged(removes=[a]))
    assert [r.labels for r in s.vrf("red").routes("10.0.0.0/24")] == [(2,)]
    s.apply(VpnPathsChanged(removes=[b]))
    assert s.vrf("red").routes("10.0.0.0/24") == ()


@pytest.mark.parametrize("n", [1, 50])
def test_batch_with_repeats_reports_each_prefix_once(n: int) -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    paths = [remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=i + 16) for i in range(n)]
    out = s.apply(VpnPathsChanged(adds=paths))
    assert len(out.table_changes) == 1
    assert out.table_changes[0].routes[0].labels == (n + 15,)


# -- property: tables always equal "known paths whose RTs match", whatever the order --

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_RTS = ["65000:1", "65000:2", "65000:3"]
_op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 2), st.integers(0, 2), st.integers(16, 20)),
    st.tuples(st.just("remove"), st.integers(0, 5), st.integers(0, 2), st.just(0), st.just(0)),
    st.tuples(st.just("rts"), st.integers(0, 2), st.integers(0, 7), st.just(0), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=30))
def test_tables_match_known_paths(ops: list[tuple[str, int, int, int, int]]) -> None:
    s = svc()
    for i in range(3):
        s.add_vrf(f"v{i}", import_rts=[_RTS[i]], multipath=8)
    known: dict[tuple[int, int], VpnPath] = {}

    def path(prefix_i: int, pe: int, rt: int, label: int) -> VpnPath:
        return remote(f"65001:{pe}:10.0.{prefix_i % 3}.0/24", f"198.51.100.{pe + 1 if prefix_i < 3 else 9}", _RTS[rt], label=label)

    for op, a, b, c, d in ops:
        if op == "add":
            p = path(a, b, c, d)
            known[(a, b)] = p
            s.apply(VpnPathsChanged(adds=[p]))
        elif op == "remove":
            p = known.pop((a, b), None) or path(a, b, 0, 16)
            s.apply(VpnPathsChanged(removes=[p]))
        else:
            rts = [r for bit, r in enumerate(_RTS) if b >> bit & 1]
            s.set_import_rts(f"v{a}", rts)
    for vrf in s.vrfs.values():
        got = sorted((str(e.origin), str(e.next_hop), e.labels) for e in vrf.entries())
        want = sorted(
            (str(p.nlri), str(p.next_hop), p.labels)
            for p in known.values()
            if not vrf.import_rts.isdisjoint(
                p.attributes.get(16).route_targets()  # type: ignore[union-attr]
            )
        )
        assert got == want
