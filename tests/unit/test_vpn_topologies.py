"""Extranet and hub-and-spoke as pure RT configuration (R4.3, R4.5, R10.1).

Each test builds the topology out of VRFs on this vPE plus VPN routes from
remote PEs, then checks every VRF table's contents.
"""

from __future__ import annotations

from test_vpn_import import remote  # type: ignore[import-not-found]

from vpe.vpn import RouteSource, VpnPathsChanged, VpnService, VrfLabel


def table(s: VpnService, vrf: str) -> dict[str, list[str]]:
    """prefix -> sources of its entries ("local", or the VPN route imported)."""
    out: dict[str, list[str]] = {}
    for prefix, entries in s.vrf(vrf).snapshot().items():
        out[prefix] = sorted(
            "local" if e.source is RouteSource.LOCAL else str(e.origin) for e in entries
        )
    return out


def test_extranet_shared_services() -> None:
    """Shared-services VRF exports RT S and imports A and B; tenants A and B export
    their own RT and import S. Tenants see the services, not each other."""
    s = VpnService("192.0.2.1", next_hop="198.18.0.1")
    s.add_vrf("services", rd="65000:100", export_rts=["65000:100"], import_rts=["65000:1", "65000:2"])
    s.add_vrf("tenant-a", rd="65000:1", export_rts=["65000:1"], import_rts=["65000:100"])
    s.add_vrf("tenant-b", rd="65000:2", export_rts=["65000:2"], import_rts=["65000:100"])
    s.add_local_route("services", "203.0.113.53/32", endpoint="dns")
    s.add_local_route("tenant-a", "10.0.0.5/32", endpoint="a-vm")
    s.add_local_route("tenant-b", "10.0.0.5/32", endpoint="b-vm")  # overlaps with tenant A
    # the same pattern across PEs: remote tenant A site and a remote service
    s.apply(
        VpnPathsChanged(
            adds=[
                remote("65001:1:10.1.0.0/24", "198.51.100.1", "65000:1"),
                remote("65001:100:203.0.113.80/32", "198.51.100.2", "65000:100"),
            ]
        )
    )
    # services import A and B only: another site's services (RT S) are not imported
    assert table(s, "services") == {
        "203.0.113.53/32": ["local"],
        "10.0.0.5/32": ["65000:1:10.0.0.5/32", "65000:2:10.0.0.5/32"],
        "10.1.0.0/24": ["65001:1:10.1.0.0/24"],
    }
    assert table(s, "tenant-a") == {
        "10.0.0.5/32": ["local"],
        "203.0.113.53/32": ["65000:100:203.0.113.53/32"],
        "203.0.113.80/32": ["65001:100:203.0.113.80/32"],
    }
    assert table(s, "tenant-b") == {
        "10.0.0.5/32": ["local"],
        "203.0.113.53/32": ["65000:100:203.0.113.53/32"],
        "203.0.113.80/32": ["65001:100:203.0.113.80/32"],
    }
    # tenant A's remote site does not leak into tenant B
    assert "10.1.0.0/24" not in table(s, "tenant-b")


def test_hub_and_spoke() -> None:
    """Spokes export RT "spoke" and import "hub" only; the hub imports "spoke" and
    exports "hub" (here the hub re-advertises a default route toward the spokes)."""
    s = VpnService("192.0.2.1", next_hop="198.18.0.1")
    SPOKE, HUB = "65000:10", "65000:20"
    s.add_vrf("hub", rd="65000:20", import_rts=[SPOKE], export_rts=[HUB])
    s.add_vrf("spoke1", rd="65000:11", import_rts=[HUB], export_rts=[SPOKE])
    s.add_vrf("spoke2", rd="65000:12", import_rts=[HUB], export_rts=[SPOKE])
    s.add_local_route("hub", "0.0.0.0/0", kind="aggregate")
    s.add_local_route("spoke1", "10.0.1.5/32", endpoint="s1")
    s.add_local_route("spoke2", "10.0.2.5/32", endpoint="s2")
    s.apply(VpnPathsChanged(adds=[remote("65001:13:10.0.3.0/24", "198.51.100.3", SPOKE)]))
    assert table(s, "hub") == {
        "0.0.0.0/0": ["local"],
        "10.0.1.5/32": ["65000:11:10.0.1.5/32"],
        "10.0.2.5/32": ["65000:12:10.0.2.5/32"],
        "10.0.3.0/24": ["65001:13:10.0.3.0/24"],
    }
    # spokes see only the hub's routes: spoke-to-spoke traffic goes through the hub
    for spoke, own in (("spoke1", "10.0.1.5/32"), ("spoke2", "10.0.2.5/32")):
        assert table(s, spoke) == {own: ["local"], "0.0.0.0/0": ["65000:20:0.0.0.0/0"]}
    # the hub's default route carries its VRF (IP lookup) label
    (dflt,) = s.vrf("spoke1").routes("0.0.0.0/0")
    assert s.label_bindings()[dflt.labels[0]] == VrfLabel("hub")


def test_any_to_any_and_isolated_vpns() -> None:
    s = VpnService("192.0.2.1")
    s.add_vrf("a1", route_targets=["65000:1"])
    s.add_vrf("a2", route_targets=["65000:1"])
    s.add_vrf("b", route_targets=["65000:2"])
    s.add_local_route("a1", "10.0.0.1/32")
    s.add_local_route("a2", "10.0.0.2/32")
    s.add_local_route("b", "10.0.0.3/32")
    assert sorted(table(s, "a1")) == ["10.0.0.1/32", "10.0.0.2/32"]
    assert sorted(table(s, "a2")) == ["10.0.0.1/32", "10.0.0.2/32"]
    assert sorted(table(s, "b")) == ["10.0.0.3/32"]
