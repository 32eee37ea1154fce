"""The lab's YAML topology: validation with precise keys, and what is generated from it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from vpe.agent.config import parse_config
from vpe.lab import build, runner
from vpe.lab.topology import TopologyError, load_topology, parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "vpe" / "lab" / "examples"

BASE = """
hosts:
  - {name: h1, address: 198.18.0.11}
  - {name: h2, address: 198.18.0.12, address6: "2001:db8:ffff::12"}
tenants:
  - name: t
    vpns:
      - {name: red, import: [65000:1], export: [65000:1]}
      - {name: blue, rd: 65000:2, import: [65000:2], export: [65000:2]}
vms:
  - {name: a, host: h1, vpn: red, ipv4: 192.0.2.10/24}
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "lab.yaml")
    assert str(info.value).startswith("lab.yaml: invalid topology")
    return info.value.problems


def only(text: str) -> tuple[str, str]:
    p = problems(text)
    assert len(p) == 1, p
    return p[0]


# -- the examples -----------------------------------------------------------


@pytest.mark.parametrize("name", ["two-hosts.yaml", "demo.yaml"])
def test_examples_are_valid(name: str) -> None:
    topo = load_topology(EXAMPLES / name)
    assert topo.hosts and topo.vms


def test_demo_has_overlapping_tenants_and_shared_services() -> None:
    topo = load_topology(EXAMPLES / "demo.yaml")
    assert topo.route_reflector is not None and len(topo.hosts) == 3
    by_name = {vm.name: vm for vm in topo.vms}
    # the same 192.0.2.0/24 in two VPNs; the VMs that use the shared service have
    # distinct addresses (the service's VRF routes its answers back by address)
    assert by_name["red1"].ipv4.network == by_name["green1"].ipv4.network
    assert by_name["red1"].vpns != by_name["green1"].vpns
    assert "shared" in [v.name for _, v in topo.vpns()]
    assert any(vm.ipv6 is not None for vm in topo.vms)


def test_minimal_topology_and_defaults() -> None:
    topo = parse_topology(BASE)
    vm = topo.vms[0]
    assert str(vm.gateway_v4()) == "192.0.2.1"  # the subnet's first address by default
    assert vm.vpns == ["red"]  # `vpn: x` is short for `vpns: [x]`
    # an unquoted 65000:1 stays a route target (YAML 1.1 would read base 60: 3900001)
    assert topo.vpn("red").import_ == ["65000:1"]
    assert topo.vpn("blue").rd == "65000:2" and topo.vpn("red").rd is None


# -- address ranges -----------------------------------------------------------


def test_underlay_address_outside_range() -> None:
    key, msg = only(BASE.replace("198.18.0.11", "10.0.0.1"))
    assert key == "hosts[0].address"
    assert "10.0.0.1 is outside the underlay range 198.18.0.0/15" in msg


def test_underlay_ipv6_outside_range() -> None:
    key, msg = only(BASE.replace("2001:db8:ffff::12", "2001:db8:1::12"))
    assert key == "hosts[1].address6"
    assert "outside the underlay range 2001:db8:ffff::/48" in msg


def test_host_address_outside_the_underlay_segment() -> None:
    key, msg = only(BASE.replace("198.18.0.11", "198.18.7.11"))
    assert key == "hosts[0].address"
    assert "not a usable address of underlay.ipv4 198.18.0.0/24" in msg


def test_tenant_address_outside_range() -> None:
    key, msg = only(BASE.replace("192.0.2.10/24", "10.1.1.1/24"))
    assert key == "vms[0].ipv4"
    assert "10.1.1.1 is outside the tenant ranges" in msg


def test_tenant_ipv6_must_not_use_the_underlay_block() -> None:
    key, msg = only(BASE + '  - {name: b, host: h2, vpn: red, ipv6: "2001:db8:ffff::5/64"}\n')
    assert key == "vms[1].ipv6"
    assert "outside the tenant range" in msg


def test_vm_address_needs_prefix_length() -> None:
    key, msg = only(BASE.replace("192.0.2.10/24", "192.0.2.10"))
    assert key == "vms[0].ipv4"
    assert "needs a prefix length" in msg


def test_gateway_outside_subnet() -> None:
    key, msg = only(BASE.replace("ipv4: 192.0.2.10/24}", "ipv4: 192.0.2.10/24, gateway: 198.51.100.1}"))
    assert key == "vms[0].gateway"
    assert "198.51.100.1 is not inside the vm's subnet 192.0.2.0/24" in msg


def test_underlay_subnet_outside_range() -> None:
    key, msg = only(BASE + "underlay: {ipv4: 10.0.0.0/24}\n")
    assert key == "underlay.ipv4"
    assert "outside the underlay range" in msg


# -- references and duplicates -----------------------------------------------------


def test_unknown_host() -> None:
    key, msg = only(BASE.replace("host: h1", "host: h9"))
    assert key == "vms[0].host"
    assert msg == "unknown host 'h9' for vm 'a' (hosts: h1, h2)"


def test_unknown_vpn() -> None:
    key, msg = only(BASE.replace("vpn: red", "vpns: [red, green]"))
    assert key == "vms[0].vpns[1]"
    assert "unknown VPN 'green'" in msg and "(VPNs: red, blue)" in msg


def test_duplicate_vm() -> None:
    key, msg = only(BASE + "  - {name: a, host: h2, vpn: red, ipv4: 192.0.2.11/24}\n")
    assert key == "vms[1].name"
    assert msg == "duplicate name 'a' (already vms[0])"


def test_vm_name_clashes_with_host() -> None:
    key, msg = only(BASE + "  - {name: h2, host: h2, vpn: red, ipv4: 192.0.2.11/24}\n")
    assert key == "vms[1].name"
    assert "already hosts[1]" in msg


def test_duplicate_host_address() -> None:
    key, msg = only(BASE.replace("198.18.0.12", "198.18.0.11"))
    assert key == "hosts[1].address"
    assert msg == "198.18.0.11 is already used by hosts[0]"


def test_duplicate_vm_address_in_one_vpn() -> None:
    key, msg = only(BASE + "  - {name: b, host: h2, vpn: red, ipv4: 192.0.2.10/24}\n")
    assert key == "vms[1].ipv4"
    assert msg == "192.0.2.10 is already used by vm 'a' in VPN 'red'"


def test_same_address_in_two_vpns_is_fine() -> None:
    topo = parse_topology(BASE + "  - {name: b, host: h2, vpn: blue, ipv4: 192.0.2.10/24}\n")
    assert len(topo.vms) == 2


def test_duplicate_vpn_name() -> None:
    text = BASE.replace("{name: blue, rd", "{name: red, rd")
    key, msg = only(text)
    assert key == "tenants[0].vpns[1].name"
    assert "duplicate VPN name 'red'" in msg


def test_rr_address_clashes_with_host() -> None:
    key, msg = only(BASE + "route_reflector: {kind: gobgp, address: 198.18.0.12}\n")
    assert key == "route_reflector.address"
    assert "already used by hosts[1]" in msg


# -- shape errors -------------------------------------------------------------------


def test_unknown_and_missing_keys() -> None:
    p = problems(BASE.replace("address: 198.18.0.11", "adress: 198.18.0.11"))
    assert ("hosts[0].address", "required key is missing") in p
    assert ("hosts[0].adress", "unknown key") in p


def test_bad_route_target() -> None:
    key, msg = only(BASE.replace("import: [65000:1]", "import: [nonsense]"))
    assert key == "tenants[0].vpns[0].import[0]"
    assert msg == "route target: 'nonsense' has no ':' between administrator and number"


def test_vpn_without_route_targets() -> None:
    key, msg = only(BASE.replace("{name: red, import: [65000:1], export: [65000:1]}", "{name: red}"))
    assert key == "tenants[0].vpns[0]"
    assert "at least one import or export route target" in msg


def test_vm_without_address() -> None:
    key, msg = only(BASE + "  - {name: b, host: h2, vpn: red}\n")
    assert key == "vms[1]"
    assert "needs an ipv4 or ipv6 address" in msg


def test_names_fit_interface_names() -> None:
    key, msg = only(BASE + "  - {name: averyverylongvm, host: h2, vpn: red, ipv4: 192.0.2.9/24}\n")
    assert key == "vms[1].name"
    assert "1-12 characters" in msg


def test_reserved_name() -> None:
    key, msg = only(BASE.replace("name: h1,", "name: underlay,").replace("host: h1", "host: underlay"))
    assert key == "hosts[0].name"
    assert "reserved" in msg


def test_bad_prefix_and_family() -> None:
    p = problems(BASE + "prefix: a-b\nfamilies: [vpnv4, vpnv9]\n")
    keys = dict(p)
    assert "no '-'" in keys["prefix"]
    assert "unknown family 'vpnv9'" in keys["families"]


def test_not_yaml_and_not_a_mapping() -> None:
    assert only("hosts: [")[0] == "(file)"
    assert only("- a\n- b\n") == ("(top level)", "expected a mapping with 'hosts', 'tenants', 'vms'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "none.yaml")


# -- what the lab generates ---------------------------------------------------------


def test_lab_names_and_generated_configs(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "demo.yaml")
    lab = build.make_lab(topo, "x1", tmp_path)
    assert lab.namespaces()[:2] == ["x1-underlay", "x1-rr"]
    assert "x1-h1" in lab.namespaces() and "x1-red1" in lab.namespaces()
    for h in topo.hosts:
        cfg = parse_config(build.agent_toml(lab, h))  # the agent accepts what the lab writes
        assert cfg.bgp.router_id == str(h.address)
        assert [n.address for n in cfg.neighbors] == ["198.18.0.2"]
        assert cfg.api.socket == str(tmp_path / h.name / "vpe.sock")
        assert cfg.dataplane.fib_socket == str(tmp_path / h.name / "forwarder.sock")
        assert cfg.dataplane.underlay_address == str(h.address)
    h1 = parse_config(build.agent_toml(lab, topo.host("h1")))
    vrfs = {v.name: v for v in h1.vrfs}
    assert sorted(vrfs) == ["green", "red"]  # the VPNs of h1's VMs, nothing else
    assert vrfs["red"].rd == "65000:101"
    assert vrfs["red"].import_rts == ["65000:101", "65000:900"]
    assert vrfs["red"].export_rts == ["65000:101", "65000:191"]
    rr = parse_config(build.rr_agent_toml(lab))
    assert sorted(n.address for n in rr.neighbors) == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert all(n.passive and n.route_reflector_client for n in rr.neighbors)
    gobgp = tomllib.loads(build.gobgp_toml(lab))
    assert len(gobgp["neighbors"]) == 3


def test_full_mesh_without_route_reflector(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "two-hosts.yaml")
    lab = build.make_lab(topo, None, tmp_path)
    assert lab.prefix == "twohosts"  # from the file when --prefix is not given
    cfg = parse_config(build.agent_toml(lab, topo.hosts[0]))
    assert [n.address for n in cfg.neighbors] == [str(topo.hosts[1].address)]


def test_vm_mac_is_stable_and_locally_administered(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "demo.yaml")
    lab = build.make_lab(topo, "x1", tmp_path)
    macs = {vm.name: lab.vm_mac(vm) for vm in topo.vms}
    assert len(set(macs.values())) == len(macs)
    for mac in macs.values():
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01
    assert build.make_lab(topo, "x1", tmp_path).vm_mac(topo.vms[0]) == macs[topo.vms[0].name]


def test_attachment_record(tmp_path: Path) -> None:
    """What attach_vm records after the agent accepted the port (the API call
    itself is proven end to end in tests/e2e)."""
    from vpe.lab import attach

    topo = load_topology(EXAMPLES / "demo.yaml")
    lab = build.make_lab(topo, "x1", tmp_path)
    vm = next(v for v in topo.vms if v.name == "dns")
    rec = attach.vm_record(lab, vm)
    path = attach._record(lab, vm, rec)
    text = path.read_text()
    assert '"port": "vm-dns"' in text and '"rd": "65000:900"' in text
    mtime = path.stat().st_mtime_ns
    attach._record(lab, vm, rec)
    assert path.stat().st_mtime_ns == mtime  # idempotent: unchanged file is not rewritten


def test_attach_without_agent_names_the_socket(tmp_path: Path) -> None:
    from vpe.lab import attach

    topo = load_topology(EXAMPLES / "demo.yaml")
    lab = build.make_lab(topo, "x2", tmp_path)
    vm = next(v for v in topo.vms if v.name == "dns")
    with pytest.raises(build.LabError, match="vpe.sock"):
        attach._api_attach(attach.vm_record(lab, vm), timeout=0.5)


def test_forwarder_toggle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPE_LAB_FORWARDER", "off")
    assert build.forwarder_available() is False
    monkeypatch.setenv("VPE_LAB_FORWARDER", "maybe")
    with pytest.raises(build.LabError, match="expected auto, on or off"):
        build.forwarder_available()


def test_pid_liveness_uses_start_time() -> None:
    me = os.getpid()
    st = runner._start_time(me)
    assert st is not None
    assert runner.pid_alive(me, st)
    assert not runner.pid_alive(me, st + 1)  # a recycled pid is not "ours"


def test_vm_in_two_vpns_gets_one_vrf_with_the_union(tmp_path: Path) -> None:
    topo = parse_topology(BASE.replace("vpn: red", "vpns: [red, blue]"))
    lab = build.make_lab(topo, "x1", tmp_path)
    (vrf,) = parse_config(build.agent_toml(lab, topo.host("h1"))).vrfs
    assert vrf.name == "red_blue" and vrf.rd == "auto"
    assert vrf.import_rts == ["65000:1", "65000:2"]
    assert build.vm_record(lab, topo.vms[0])["vrf"] == "red_blue"


def test_dataplane_driver_per_lab_and_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's `driver` (and a host's own) reaches the forwarder's --driver and the agent."""
    monkeypatch.setenv("VPE_LAB_FORWARDER", "on")
    topo = parse_topology(BASE.replace("hosts:", "driver: ebpf\nhosts:").replace(
        "address: 198.18.0.11}", "address: 198.18.0.11, driver: userspace}"))
    assert topo.driver_of(topo.host("h1")) == "userspace" and topo.driver_of(topo.host("h2")) == "ebpf"
    lab = build.make_lab(topo, "x2", tmp_path)
    argv = build.forwarder_argv(lab, topo.host("h2"))
    assert argv[argv.index("--driver") + 1] == "ebpf"
    assert parse_config(build.agent_toml(lab, topo.host("h2"))).dataplane.driver == "ebpf"
    assert parse_config(build.agent_toml(lab, topo.host("h1"))).dataplane.driver == "userspace"
    every = topo.with_driver("userspace")
    assert {every.driver_of(h) for h in every.hosts} == {"userspace"}
    key, msg = only(BASE.replace("hosts:", "driver: kernel\nhosts:"))
    assert key == "driver" and "unknown dataplane driver 'kernel'" in msg
    key, msg = only(BASE.replace("hosts:", "driver: none\nhosts:"))
    assert "runs no forwarder" in msg


# -- Inter-AS labs: hosts as route reflectors of their AS ---------------------

PEERED = """
hosts:
  - {name: h1, address: 198.18.0.11, peers: [rr1]}
  - name: rr1
    address: 198.18.0.31
    peers: [{host: h1, route_reflector_client: true}, asbr1]
  - {name: asbr1, address: 198.18.0.21, peers: [rr1]}
  - {name: h4, address: 198.18.0.14, asn: 65001}
"""


@pytest.mark.parametrize("option", ["b", "c"])
def test_inter_as_examples_have_a_pe_rr_and_asbr_per_as(option: str, tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / f"inter-as-{option}.yaml")
    lab = build.make_lab(topo, "x1", tmp_path)
    by_as: dict[int, list[str]] = {}
    for h in topo.hosts:
        by_as.setdefault(topo.asn_of(h), []).append(h.name)
    assert by_as == {65000: ["h1", "rr1", "asbr1"], 65001: ["asbr2", "rr2", "h4"]}
    cfg = {h.name: parse_config(build.agent_toml(lab, h)) for h in topo.hosts}
    clients = {name: sorted(n.address for n in c.neighbors if n.route_reflector_client) for name, c in cfg.items()}
    # only the reflectors have clients: the PE (and for option B the ASBR) of their own AS
    if option == "b":
        assert clients == {"h1": [], "rr1": ["198.18.0.11", "198.18.0.21"], "asbr1": [], "asbr2": [],
                           "rr2": ["198.18.0.14", "198.18.0.22"], "h4": []}
    else:
        assert clients == {"h1": [], "rr1": ["198.18.0.11"], "asbr1": [], "asbr2": [], "rr2": ["198.18.0.14"],
                           "h4": []}
        # the VPN routes cross between the reflectors over multihop eBGP, next hop unchanged
        (to_rr2,) = [n for n in cfg["rr1"].neighbors if n.address == "198.18.0.32"]
        assert to_rr2.remote_as == 65001 and to_rr2.ebgp_multihop and to_rr2.export_policy == "vpn-unchanged"
        assert to_rr2.families == ["vpnv4"]


def test_route_reflector_client_is_written_on_the_reflectors_side(tmp_path: Path) -> None:
    topo = parse_topology(PEERED)
    lab = build.make_lab(topo, "x1", tmp_path)
    rr = parse_config(build.agent_toml(lab, topo.host("rr1")))
    assert {n.address: n.route_reflector_client for n in rr.neighbors} == {"198.18.0.11": True, "198.18.0.21": False}
    h1 = parse_config(build.agent_toml(lab, topo.host("h1")))
    assert [n.route_reflector_client for n in h1.neighbors] == [False]


def test_route_reflector_client_must_be_ibgp() -> None:
    text = PEERED.replace("{name: h1, address: 198.18.0.11,", "{name: h1, address: 198.18.0.11, asn: 65001,")
    assert only(text) == (
        "hosts[1].peers[0].route_reflector_client",
        "'h1' is in AS 65001 and 'rr1' in AS 65000: a route reflector's clients are iBGP peers of its own AS",
    )


def test_route_reflector_clients_of_each_other() -> None:
    text = PEERED.replace("peers: [rr1]}\n  - name: rr1", "peers: [{host: rr1, route_reflector_client: true}]}\n"
                          "  - name: rr1")
    assert problems(text) == [
        ("hosts[0].peers[0].route_reflector_client",
         "'rr1' also has 'h1' as its route reflector client: only the reflector's side of a session says so"),
        ("hosts[1].peers[0].route_reflector_client",
         "'h1' also has 'rr1' as its route reflector client: only the reflector's side of a session says so"),
    ]


def test_a_peer_must_list_this_host_back() -> None:
    text = PEERED.replace("{name: asbr1, address: 198.18.0.21, peers: [rr1]}",
                          "{name: asbr1, address: 198.18.0.21, peers: [h4]}")
    assert problems(text) == [
        ("hosts[1].peers[1]",
         "host 'asbr1' does not list 'rr1' in its peers (a BGP session needs a neighbor at both ends)"),
    ]  # h4 has no `peers`: it peers with every host (no route reflector here), asbr1 included


def test_multihop_is_for_ebgp_peers_only() -> None:
    text = PEERED.replace("peers: [rr1]}\n  - name: rr1", "peers: [{host: rr1, ebgp_multihop: 3}]}\n  - name: rr1")
    assert only(text) == ("hosts[0].peers[0].ebgp_multihop",
                          "'rr1' is in AS 65000 like 'h1': ebgp_multihop applies to eBGP only")


def test_policies_named_by_a_host_or_peer_exist() -> None:
    text = PEERED.replace("peers: [rr1]}\n  - name: rr1",
                          "peers: [{host: rr1, import_policy: nope}], export_policy: gone,\n"
                          "     policies: [{name: accept-all}]}\n  - name: rr1")
    assert problems(text) == [
        ("hosts[0].export_policy", "no policy named 'gone' in hosts[0].policies (accept-all)"),
        ("hosts[0].peers[0].import_policy", "no policy named 'nope' in hosts[0].policies (accept-all)"),
    ]
