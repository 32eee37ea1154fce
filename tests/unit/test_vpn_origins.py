"""Every VRF entry's origin is a typed value: the VPN path it was imported from,
the endpoint a local route leads to, "configured", or the leak it was copied by."""

from __future__ import annotations

from test_vpn_import import remote  # type: ignore[import-not-found]

from vpe.vpn import (
    CONFIGURED,
    Configured,
    Endpoint,
    Leak,
    LeakPolicy,
    RouteSource,
    VpnPath,
    VpnPathsChanged,
    VpnService,
)


def test_each_source_has_its_own_origin_type() -> None:
    s = VpnService("192.0.2.1")
    s.add_vrf("red", import_rts=["65000:1"], export_rts=["65000:9"])
    s.add_vrf("blue", import_rts=["65000:2"])
    p = remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1")
    s.apply(VpnPathsChanged(adds=[p]))
    s.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    s.add_local_route("red", "198.51.100.0/24", kind="static", next_hop="192.0.2.10")
    s.add_local_route("red", "192.0.2.0/24", kind="aggregate")
    s.add_leak_policy(LeakPolicy("l", "red", "blue"))

    (imported,) = s.vrf("red").routes("10.0.0.0/24")
    assert imported.origin is p  # the path itself: nothing copied per VRF
    assert isinstance(imported.origin, VpnPath) and imported.endpoint is None
    (host,) = s.vrf("red").routes("192.0.2.10/32")
    assert host.origin == Endpoint("vm1") and host.endpoint == "vm1"
    (static,) = s.vrf("red").routes("198.51.100.0/24")
    (agg,) = s.vrf("red").routes("192.0.2.0/24")
    assert static.origin == agg.origin == CONFIGURED == Configured()
    (leaked,) = s.vrf("blue").routes("192.0.2.10/32")
    assert leaked.source is RouteSource.LEAKED
    assert leaked.origin == Leak("red", host) and leaked.leaked_from == "red"


def test_json_view_is_unchanged() -> None:
    s = VpnService("192.0.2.1")
    s.add_vrf("red", import_rts=["65000:1"])
    s.apply(VpnPathsChanged(adds=[remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1")]))
    s.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    s.add_local_route("red", "198.51.100.0/24", kind="static", next_hop="192.0.2.10")
    table = s.describe("red")["table"]
    assert table["10.0.0.0/24"][0]["vpn_route"] == "65001:1:10.0.0.0/24"
    assert table["192.0.2.10/32"][0]["endpoint"] == "vm1"
    assert not {"endpoint", "vpn_route", "leaked_from"} & set(table["198.51.100.0/24"][0])
