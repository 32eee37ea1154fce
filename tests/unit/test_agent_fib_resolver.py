"""The FIB resolver, pure: VPN service output in, driver values and batches out."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from test_vpn_import import remote

from vpe.agent.fib_resolver import FibResolver, port_of
from vpe.dataplane.driver import Batch, LabelEntry, NextHop, Port, RouteKey
from vpe.vpn import VpnPathsChanged, VpnService
from vpe.vpn.attachments import Attachment

UNDERLAY = "198.18.0.1"


def _vm(name: str = "vm1", ip: str = "192.0.2.10/24", vrf: str = "red") -> Attachment:
    return Attachment(name, f"tap-{name}", vrf, "02:00:00:00:00:0a", (ip,), ("192.0.2.1",),
                      ("203.0.113.0/28",))


def _setup() -> tuple[VpnService, FibResolver]:
    vpn = VpnService(UNDERLAY, next_hop=UNDERLAY)
    vpn.add_vrf("red", import_rts=["65000:1"], export_rts=["65000:1"])
    return vpn, FibResolver(ip_address(UNDERLAY), encap_order=("mpls-in-gre", "mpls-in-udp"))


def test_port_of_an_attachment() -> None:
    p = port_of(_vm())
    assert p == Port("vm1", "tap-vm1", "red", "02:00:00:00:00:0a", ("192.0.2.10/24",),
                     ("192.0.2.1",), ("203.0.113.0/28",))  # type: ignore[arg-type]


def test_remote_routes_get_tunnel_next_hops_in_encap_preference() -> None:
    vpn, res = _setup()
    udp_only = remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1", label=1234)
    out = vpn.apply(VpnPathsChanged(adds=[udp_only]))
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None
    (route,) = batch.add_routes
    assert route.key == RouteKey("red", "10.0.0.0/24")  # type: ignore[arg-type]
    # the route offers only MPLS-in-UDP: taken although GRE is preferred
    assert route.next_hops == (NextHop.remote("198.51.100.1", 1234, "mpls-in-udp"),)
    assert res.encap_for((11, 13)) == "mpls-in-gre" and res.encap_for(()) == "mpls-in-gre"
    # nothing changed: no batch
    assert res.vrf_changes(out.table_changes, vpn) is None
    out = vpn.apply(VpnPathsChanged(removes=[udp_only]))
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None and batch.remove_routes == (route.key,) and not res.routes


def test_local_endpoint_routes_and_labels() -> None:
    vpn, res = _setup()
    batch = res.add_port(_vm())
    assert [p.name for p in batch.add_ports] == ["vm1"] and len(batch) == 1  # no VPN yet
    out = vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None
    (route,) = batch.add_routes
    assert route.next_hops == (NextHop.local("vm1"),)
    vrf_labels = [e for e in batch.add_labels if e.kind == "vrf"]
    assert vrf_labels and all(e.target == "red" for e in vrf_labels)
    assert set(res.state().labels) == set(res.labels.values())
    assert res.remove_port("nope") is None
    batch = res.remove_port("vm1")
    assert batch is not None and batch.remove_ports == ("vm1",) and not res.ports


def test_static_route_via_a_vm_resolves_when_the_port_comes() -> None:
    vpn, res = _setup()
    out = vpn.add_local_route("red", "203.0.113.208/28", kind="static", next_hop="192.0.2.10")
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None and not batch.add_routes  # no port with that address yet
    batch = res.add_port(_vm())
    (route,) = batch.add_routes
    assert str(route.prefix) == "203.0.113.208/28" and route.next_hops == (NextHop.local("vm1"),)
    batch2 = res.remove_port("vm1")
    assert batch2 is not None and batch2.remove_routes == (route.key,)


def test_replication_lists_are_sorted_and_idempotent() -> None:
    _vpn, res = _setup()
    a = NextHop.remote("198.18.0.3", 30, "mpls-in-gre")
    b = NextHop.remote("198.18.0.2", 20)
    batch = res.set_replication("red", [a, b, a])
    assert batch is not None and batch.set_replication[0].members == (b, a)
    assert res.set_replication("red", [b, a]) is None
    assert res.set_replication("red", []) == Batch(remove_replication=("red",))
    assert res.set_replication("red", []) is None


def test_swap_entries_survive_vpn_label_changes() -> None:
    vpn, res = _setup()
    nh = NextHop.remote("198.18.0.7", 7000, "mpls-in-udp")
    assert res.set_swap(5000, nh) == Batch(add_labels=(LabelEntry.swap(5000, nh),))
    assert res.set_swap(5000, nh) is None
    out = vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None and 5000 not in batch.remove_labels
    assert res.labels[5000] == LabelEntry.swap(5000, nh)
    assert res.remove_swap(5000) == Batch(remove_labels=(5000,))
    assert res.remove_swap(5000) is None and 5000 not in res.labels


def test_own_route_imported_into_another_vrf_is_delivered_locally() -> None:
    vpn, res = _setup()
    vpn.add_vrf("blue", import_rts=["65000:1"], export_rts=["65000:9"])
    res.add_port(_vm())
    out = vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    res.vrf_changes(out.table_changes, vpn)
    # our own export comes back through BGP and is imported into blue
    (exp,) = out.announce
    own = remote(f"{exp.nlri}", UNDERLAY, "65000:1", label=exp.nlri.labels[0])
    out = vpn.apply(VpnPathsChanged(adds=[own]))
    res.vrf_changes(out.table_changes, vpn)
    blue = res.routes.get(RouteKey("blue", "192.0.2.10/32"))  # type: ignore[arg-type]
    assert blue is not None and blue.next_hops == (NextHop.local("vm1"),)
    assert res.underlay == IPv4Address(UNDERLAY)


def test_r12_4_service_attraction_imported_on_the_same_host_resolves_when_the_port_comes() -> None:
    """A service instance's pool route (a static route via its port, docs/service-chains.md)
    imported into another VRF of this host reaches that port, also when the route came
    before the port: the destination VPN's return path through a NAT instance."""
    vpn, res = _setup()
    vpn.add_vrf("nat-out", import_rts=["65000:9"], export_rts=["65000:1"])
    out = vpn.set_service("nat-out", "192.0.2.10", attract=["203.0.113.160/27"])
    res.vrf_changes(out.table_changes, vpn)
    assert RouteKey("red", "203.0.113.160/27") not in res.routes  # no port with that address yet
    batch = res.add_port(_vm(vrf="nat-out"))
    got = {(r.vrf, str(r.prefix)): r.next_hops for r in batch.add_routes}
    assert got[("red", "203.0.113.160/27")] == (NextHop.local("vm1"),)
    assert got[("nat-out", "203.0.113.160/27")] == (NextHop.local("vm1"),)
