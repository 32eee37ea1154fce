"""Ingress replication signalling (vpe.agent.mvpn), the FIB programmer's replication
lists and static routes via a VM, and the lab's per-host/per-VPN settings.
The end-to-end proof of the same is tests/e2e/test_r3_2_* and test_r4_5_*."""

from __future__ import annotations

import tomllib
from ipaddress import ip_address
from pathlib import Path

from vpe.agent.config import parse_config
from vpe.agent.fib import FibProgrammer
from vpe.agent.mvpn import i_pmsi_route, replication_lists
from vpe.bgp.wire.attributes.pmsi_tunnel import PmsiTunnel
from vpe.bgp.wire.constants import AttrCode
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.nlri.rd import RouteDistinguisher
from vpe.dataplane.driver import NextHop
from vpe.lab import build
from vpe.lab.topology import load_topology
from vpe.rib.path import Path as RibPath
from vpe.rib.path import PeerInfo
from vpe.vpn import VpnService
from vpe.vpn.route_target import parse_route_targets

MAIN_LAB = Path(__file__).resolve().parents[1] / "e2e" / "labs" / "main.yaml"


def _remote(addr: str) -> PeerInfo:
    return PeerInfo(ip_address(addr), ip_address(addr), 65000, ibgp=True)  # type: ignore[arg-type]


def test_i_pmsi_route_carries_ingress_replication_label_and_rts() -> None:
    rts = parse_route_targets(["65000:1", "65000:2"], "rts")
    nlri, attrs = i_pmsi_route(RouteDistinguisher.from_str("65000:7"), ip_address("198.18.0.11"), 42, rts, (13, 11))
    assert str(nlri) == "[1][65000:7][198.18.0.11]"
    pmsi = attrs.get(AttrCode.PMSI_TUNNEL)
    assert isinstance(pmsi, PmsiTunnel)
    assert pmsi.label == 42 and str(pmsi.endpoint) == "198.18.0.11"
    back = PmsiTunnel.decode(pmsi.encode_value(CodecContext()), CodecContext())
    assert back == pmsi
    ec = attrs.get(AttrCode.EXTENDED_COMMUNITIES)
    assert {str(c) for c in ec.values} >= {"target:65000:1", "target:65000:2"}


def test_replication_lists_follow_import_rts_and_skip_own_routes() -> None:
    rt_a, rt_b = parse_route_targets(["65000:1"], "a"), parse_route_targets(["65000:2"], "b")
    paths = []
    for addr, rts, label, encaps in (("198.18.0.12", rt_a, 20, (13, 11)), ("198.18.0.13", rt_b, 30, (11,)),
                                     ("198.18.0.11", rt_a, 40, (13,))):
        nlri, attrs = i_pmsi_route(RouteDistinguisher.from_str(f"{addr}:1"), ip_address(addr), label, rts, encaps)
        paths.append(RibPath.make(_remote(addr), nlri, attrs, ip_address(addr)))
    fib = FibProgrammer("/nonexistent", ip_address("198.18.0.11"))
    lists = replication_lists(paths, {"a": rt_a, "b": rt_b, "ab": rt_a | rt_b}, [ip_address("198.18.0.11")],
                              fib.encap_for)
    assert lists["a"] == [NextHop.remote("198.18.0.12", 20, "mpls-in-udp")]
    assert lists["b"] == [NextHop.remote("198.18.0.13", 30, "mpls-in-gre")]
    assert len(lists["ab"]) == 2


def test_fib_replication_and_static_route_via_a_vm() -> None:
    """A static route whose next hop is a VM's address goes to that VM's port (even
    when the port is attached after the route), and its per-endpoint label too."""
    from vpe.vpn.attachments import Attachment

    vpn = VpnService("198.18.0.13", next_hop="198.18.0.13")
    fib = FibProgrammer("/nonexistent", ip_address("198.18.0.13"))
    out = vpn.add_vrf("hub", import_rts=["65000:1"], export_rts=["65000:2"], label_mode="per-endpoint")
    out = vpn.add_local_route("hub", "203.0.113.208/28", kind="static", next_hop="203.0.113.197")
    fib.vrf_changes(out.table_changes, vpn)
    assert not fib.routes  # the VM is not attached yet
    a = Attachment("hubvm", "vm-hub", "hub", "02:00:00:00:00:01", ("203.0.113.197/29",))
    fib.add_port(a)
    (route,) = fib.routes.values()
    assert route.next_hops == (NextHop.local("hubvm"),)
    assert {e.target for e in fib.labels.values() if e.kind == "port"} == {"hubvm"}
    fib.set_replication("hub", [NextHop.remote("198.18.0.11", 16, "mpls-in-gre")])
    assert fib.state().replication[0].vrf == "hub"
    fib.set_replication("hub", [])
    assert not fib.state().replication


def test_lab_generates_encapsulations_label_mode_and_static_routes() -> None:
    t = load_topology(MAIN_LAB)
    lab = build.make_lab(t, "unit")
    h3 = t.host("h3")
    text = build.agent_toml(lab, h3)
    cfg = parse_config(text)
    assert cfg.dataplane.encapsulations == ["mpls-in-gre"]
    hub = next(v for v in cfg.vrfs if v.name == "hub")
    assert hub.label_mode == "per-endpoint"
    assert [(r.prefix, r.next_hop, r.kind) for r in hub.routes] == [("203.0.113.208/28", "203.0.113.197", "static")]
    h1 = tomllib.loads(build.agent_toml(lab, t.host("h1")))
    assert "encapsulations" not in h1["dataplane"]
    assert all(not v.get("routes") for v in h1["vrfs"])
    assert h1["neighbors"][0]["families"] == ["vpnv4", "vpnv6", "ipv4-mcast-vpn"]
    rec = build.vm_record(lab, next(vm for vm in t.vms if vm.name == "hub"))
    assert rec["allowed"] == ["203.0.113.208/28"]
