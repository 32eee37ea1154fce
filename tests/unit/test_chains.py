"""Service chains (R12.1, R12.4 control plane): the chain compiler, the VPN service's
attraction and re-advertisement, the agent's service-role attach, the classifier
redirect in the userspace pipeline. The end-to-end proofs are tests/e2e/test_r12_*."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from test_dp_helpers import VM1_MAC, eth, forwarder, udp4
from test_vpn_import import remote

from vpe.agent.chains import ServiceRole
from vpe.agent.config import ConfigError, parse_config
from vpe.agent.engine import Engine
from vpe.bgp.wire.attributes import ExtendedCommunities
from vpe.bgp.wire.constants import AttrCode
from vpe.dataplane.driver import Batch, DriverError, NextHop, Redirect, Route
from vpe.dataplane.userspace.pipeline import ToUnderlay
from vpe.vpn import RouteSource, VpnPathsChanged, VpnService
from vpe.vpn.chains import (
    ChainDef,
    ChainError,
    Classifier,
    ServiceDef,
    UnknownChainPart,
    compile_chain,
)
from vpe.vpn.errors import InvalidValue

VPNS = {"red": (["65000:1"], ["65000:1"]), "internet": (["65000:2"], ["65000:2"]),
        "leaky": (["65000:1"], ["65000:3"])}
SERVICES = {"fw": ServiceDef("fw"), "lb": ServiceDef("lb"), "nat": ServiceDef("nat", "203.0.113.0/28")}


def chain(**kw: object) -> ChainDef:
    d: dict[str, object] = {"name": "web", "vpn": "red", "destination": "internet",
                            "services": ["fw", "lb", "nat"], "prefixes": ["0.0.0.0/0"],
                            "route_target_base": "65000:9000"}
    d.update(kw)
    return ChainDef.parse({k: v for k, v in d.items() if v is not None})


# -- the compiler -------------------------------------------------------------------------


def test_r12_1_three_service_chain_compiles_into_linked_vrfs() -> None:
    plan = compile_chain(chain(), SERVICES, VPNS)
    fw, lb, nat = plan.hops
    assert plan.inner_rts == ("65000:9000", "65000:9001", "65000:9002", "65000:9003")
    # fw's inside attracts 0/0 into red and imports red's routes (the way back)
    assert fw.inside.export_rts == ("65000:1",) and fw.inside.import_rts == ("65000:1",)
    assert fw.inside.attract == ("0.0.0.0/0",)
    # fw's outside follows lb's attraction and re-advertises red's routes toward lb
    assert fw.outside.import_rts == ("65000:9000",) and fw.outside.export_rts == ("65000:9001",)
    assert fw.outside.readv_from_rts == ("65000:1",) and fw.outside.readv_exclude == ("0.0.0.0/0",)
    assert lb.inside.export_rts == ("65000:9000",) and lb.inside.import_rts == ("65000:9001",)
    assert lb.outside.readv_from_rts == ("65000:9001",) and lb.outside.export_rts == ("65000:9003",)
    assert nat.inside.export_rts == ("65000:9002",) and nat.inside.import_rts == ("65000:9003",)
    # the last outside joins the destination; a NAT hop advertises its pool, re-advertises nothing
    assert nat.outside.import_rts == ("65000:2",) and nat.outside.export_rts == ("65000:2",)
    assert nat.outside.nat_pool == "203.0.113.0/28" and nat.outside.readv_from_rts == ()


def test_r12_1_one_service_needs_no_route_targets_of_its_own() -> None:
    plan = compile_chain(chain(services=["fw"], route_target_base=None), SERVICES, VPNS)
    (fw,) = plan.hops
    assert fw.outside.import_rts == ("65000:2",) and fw.outside.export_rts == ("65000:2",)
    assert fw.outside.readv_from_rts == ("65000:1",)


def test_r12_1_classifier_chain_attracts_under_its_own_rt_for_a_redirect_vrf() -> None:
    plan = compile_chain(chain(services=["fw"], prefixes=None,
                               classifier={"destination": "198.51.100.0/24", "protocol": "tcp",
                                           "ports": "80-443"}), SERVICES, VPNS)
    assert plan.redirect is not None
    assert plan.redirect.vrf == "web.redirect" and plan.redirect.import_rts == ("65000:9000",)
    assert plan.redirect.classifier == Classifier(None, "198.51.100.0/24", 6, (80, 443))
    assert plan.hops[0].inside.export_rts == ("65000:9000",)
    assert plan.hops[0].inside.attract == ("198.51.100.0/24",)


@pytest.mark.parametrize(("kw", "exc", "words"), [
    ({"vpn": "blue"}, UnknownChainPart, "vpn: chain 'web': no VPN 'blue'"),
    ({"destination": "dmz"}, UnknownChainPart, "destination: chain 'web': no VPN 'dmz'"),
    ({"services": ["fw", "ids"]}, UnknownChainPart, "services[1]: chain 'web': no service 'ids'"),
    ({"services": ["fw", "nat", "fw"]}, ChainError, "goes through 'fw' twice: a loop"),
    ({"destination": "red"}, ChainError, "back into it: a loop"),
    ({"destination": "leaky"}, ChainError, "exchange routes directly (route target 65000:1)"),
    ({"route_target_base": None}, ChainError, "route_target_base: chain 'web' needs 4 route target"),
    ({"route_target_base": "65000:1"}, ChainError, "route target(s) 65000:1, 65000:2 are also the VPNs' own"),
    ({"route_target_base": "4200000000:65534"}, ChainError, "leaves no room for 4 route targets"),
])
def test_r12_1_bad_chains_refused_precisely(kw: dict[str, object], exc: type[Exception], words: str) -> None:
    with pytest.raises(exc) as e:
        compile_chain(chain(**kw), SERVICES, VPNS)
    assert words in str(e.value)


@pytest.mark.parametrize(("d", "words"), [
    ({"services": []}, "services: chain 'web' has no service"),
    ({"prefixes": None}, "chain 'web' steers nothing"),
    ({"prefixes": ["10.0.0.1/8"]}, "prefixes[0]: '10.0.0.1/8' is not a prefix"),
    ({"classifier": {"protocol": "udp"}}, "give prefixes or a classifier, not both"),
    ({"prefixes": None, "classifier": {"ports": "80"}}, "classifier.ports: a port range needs protocol"),
    ({"prefixes": None, "classifier": {"protocol": "tcp", "ports": "90-80"}}, "low first"),
    ({"prefixes": None, "classifier": {"protocol": "gre?"}}, "classifier.protocol: 'gre?'"),
    ({"prefixes": None, "classifier": {"source": "192.0.2.0/24", "destination": "2001:db8::/32"}},
     "different IP versions"),
    ({"hops": 3}, "unknown key(s) hops"),
    ({"vpn": "bad name"}, "vpn: 'bad name'"),
])
def test_r12_1_bad_chain_definitions_refused_precisely(d: dict[str, object], words: str) -> None:
    with pytest.raises(ChainError if "vpn" not in d else InvalidValue) as e:
        chain(**d)
    assert words in str(e.value)


# -- attraction and re-advertisement in the VPN service ----------------------------------


def test_r12_1_attract_and_readv_advertise_with_the_instances_next_hop() -> None:
    svc = VpnService("198.18.0.1")
    svc.add_vrf("red-copy", route_targets=["65000:1"])  # another local VRF of red: must not matter
    svc.add_vrf("web.fw-out", rd="65000:50", import_rts=["65000:9000"], export_rts=["65000:9001"])
    out = svc.set_service("web.fw-out", "192.0.2.66", readv_from_rts=["65000:1"],
                          readv_exclude=["0.0.0.0/0"])
    assert not out.announce
    # red's host route from another vPE, and fw's own attraction (excluded) arrive
    host = remote("65000:7:192.0.2.10/32", "198.18.0.7", "65000:1", label=77)
    deflt = remote("65000:8:0.0.0.0/0", "198.18.0.8", "65000:1", label=88)
    out = svc.apply(VpnPathsChanged(adds=[host, deflt]))
    (ann,) = out.announce
    assert str(ann.nlri) == "65000:50:192.0.2.10/32" and ann.next_hop == ip_address("198.18.0.1")
    ec = ann.attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    assert isinstance(ec, ExtendedCommunities)
    assert {str(rt) for rt in ec.route_targets()} == {"target:65000:9001"}
    (entry,) = svc.vrf("web.fw-out").routes("192.0.2.10/32")
    assert entry.source is RouteSource.LOCAL and entry.next_hop == ip_address("192.0.2.66")
    # the readv VRF is no VPN instance of the listing, and its table goes nowhere
    assert "web.fw-out~readv" not in svc.vrf_names()
    assert all(c.vrf != "web.fw-out~readv" for c in out.table_changes)
    # red withdraws the host: the re-advertisement goes
    out = svc.apply(VpnPathsChanged(removes=[host]))
    assert [str(w.nlri) for w in out.withdraw] == ["65000:50:192.0.2.10/32"]
    assert not svc.vrf("web.fw-out").routes("192.0.2.10/32")
    # back to a plain VRF: nothing re-advertised any more
    svc.apply(VpnPathsChanged(adds=[host]))
    out = svc.clear_service("web.fw-out")
    assert [str(w.nlri) for w in out.withdraw] == ["65000:50:192.0.2.10/32"]
    assert "web.fw-out~readv" not in svc.vrfs


def test_r12_1_attract_is_a_static_route_via_the_instance() -> None:
    svc = VpnService("198.18.0.1")
    svc.add_vrf("web.fw-in", rd="65000:51", route_targets=["65000:1"])
    out = svc.set_service("web.fw-in", "192.0.2.65", attract=["0.0.0.0/0"])
    (ann,) = out.announce
    assert str(ann.nlri) == "65000:51:0.0.0.0/0"
    with pytest.raises(InvalidValue, match="readv-from-rts: VRF 'web.fw-in' exports 65000:1 itself"):
        svc.set_service("web.fw-in", "192.0.2.65", readv_from_rts=["65000:1"])
    with pytest.raises(InvalidValue, match="attract: ::/0 is not an IPv4 prefix"):
        svc.set_service("web.fw-in", "192.0.2.65", attract=["::/0"])
    out = svc.remove_vrf("web.fw-in")
    assert [str(w.nlri) for w in out.withdraw] == ["65000:51:0.0.0.0/0"]


# -- the agent: configuration, service-role attach ----------------------------------------

CONFIG = """
[bgp]
local_as = 65000
router_id = "198.18.0.41"

[[vrfs]]
name = "red"
route_targets = ["65000:1"]

[[vrfs]]
name = "internet"
route_targets = ["65000:2"]

[[services]]
name = "fw"

[[services]]
name = "nat"
nat_pool = "203.0.113.0/28"

[[chains]]
name = "web"
vpn = "red"
destination = "internet"
services = ["fw", "nat"]
prefixes = ["0.0.0.0/0"]
route_target_base = "65000:9000"
"""


def test_r12_1_service_role_attach_makes_the_instance_vrf() -> None:
    eng = Engine(parse_config(CONFIG))
    fw_in = eng.ops.attach_service(
        _port("fw1-in", "192.0.2.65/32"), ServiceRole("web", "fw", "inside"))
    assert fw_in.vrf == "web.fw1-in" and "0.0.0.0/0" in fw_in.allowed_pairs
    d = eng.vpn.describe("web.fw1-in")
    assert d["service"]["attract"] == ["0.0.0.0/0"] and d["service"]["address"] == "192.0.2.65"
    # red imports fw's attraction: same host, so it is our own route in red's table
    (e,) = eng.vpn.vrf("red").routes("0.0.0.0/0")
    assert e.source is RouteSource.IMPORTED
    nat_out = eng.ops.attach_service(_port("nat1-out", "198.51.100.9/32"),
                                     ServiceRole("web", "nat", "outside", "203.0.113.0/29"))
    (p,) = eng.vpn.vrf("internet").routes("203.0.113.0/29")
    assert p.source is RouteSource.IMPORTED  # the pool slice comes back into the destination
    with pytest.raises(ChainError, match="not within service 'nat'"):
        eng.ops.attach_service(_port("nat2-out", "198.51.100.10/32"),
                               ServiceRole("web", "nat", "outside", "198.51.100.0/29"))
    with pytest.raises(ChainError, match="needs the slice of the pool"):
        eng.ops.attach_service(_port("nat2-out", "198.51.100.10/32"), ServiceRole("web", "nat", "outside"))
    with pytest.raises(UnknownChainPart, match="does not go through 'lb'"):
        eng.ops.attach_service(_port("lb1-in", "192.0.2.70/32"), ServiceRole("web", "lb", "inside"))
    with pytest.raises(UnknownChainPart, match="no chain 'mail'"):
        eng.ops.attach_service(_port("x-in", "192.0.2.71/32"), ServiceRole("mail", "fw", "inside"))
    # the chain cannot go while it has instances; detaching removes the instance VRF
    with pytest.raises(ValueError, match="has service instance ports attached: fw1-in, nat1-out"):
        eng.chains.delete_chain("web")
    eng.ops.detach(nat_out.name)
    assert "web.nat1-out" not in eng.vpn.vrfs and not eng.vpn.vrf("internet").routes("203.0.113.0/29")


def _port(name: str, ip: str):  # type: ignore[no-untyped-def]
    from vpe.vpn.attachments import Attachment

    return Attachment(name=name, ifname=name[:15], vrf="", mac="02:00:00:00:00:41", ips=(ip,))


def test_r12_1_config_chain_errors_name_the_key() -> None:
    bad = CONFIG.replace('services = ["fw", "nat"]', 'services = ["fw", "ids"]')
    with pytest.raises(ConfigError, match=r"chains\.0\.services\[1\]: chain 'web': no service 'ids'"):
        parse_config(bad, "vpe.toml")
    bad = CONFIG.replace('destination = "internet"', 'destination = "red"')
    with pytest.raises(ConfigError, match=r"chains\.0\.destination: .*a loop"):
        parse_config(bad, "vpe.toml")


# -- the classifier redirect in the userspace pipeline ------------------------------------


def test_r12_1_classifier_redirects_matching_traffic_to_another_vrf() -> None:
    fwd = forwarder()
    svc_nh = NextHop.remote("198.18.0.9", 4000, "mpls-in-udp")
    fwd.apply(Batch(add_routes=(Route("web.redirect", "0.0.0.0/0", (svc_nh,)),),
                    add_redirects=(Redirect("web", "red", "web.redirect", None, None, 17, (5000, 6000)),)))
    # matching (UDP to port 5678): looked up in the redirect VRF, so toward the service
    out = fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.20", dport=5678)))
    (where, frame) = out[0]
    assert isinstance(where, ToUnderlay) and where.endpoint == "198.18.0.9"
    # not matching: red's own route (to 198.18.0.2)
    out = fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.20", dport=7000)))
    assert out[0][0].endpoint == "198.18.0.2"  # type: ignore[union-attr]
    assert fwd.counters()["vrfs"]["red"]["classified"] == 1
    assert fwd.state().redirects[0].name == "web"
    fwd.apply(Batch(remove_redirects=("web",)))
    out = fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.20", dport=5678)))
    assert out[0][0].endpoint == "198.18.0.2"  # type: ignore[union-attr]


def test_r12_1_redirect_values_checked_and_carried() -> None:
    r = Redirect("web", "red", "web.redirect", "192.0.2.0/24", "198.51.100.0/24", 6, (80, 80))
    assert Redirect.from_json(r.to_json()) == r
    assert Batch.from_json(Batch(add_redirects=(r,)).to_json()).add_redirects == (r,)
    with pytest.raises(DriverError, match="redirected onto itself"):
        Redirect("x", "red", "red")
    with pytest.raises(DriverError, match="ports: .* is not a range"):
        Redirect("x", "red", "b", ports=(9, 1))


def test_r12_1_a_vrf_service_block_in_toml_attracts_and_readvertises() -> None:
    """bagpipe-bgp's attract-to-rt / readv-from-rt as plain VRF data, without a chain."""
    cfg = parse_config(CONFIG + '''
[[vrfs]]
name = "svc"
import_rts = ["65000:2"]
export_rts = ["65000:5"]
service = { address = "203.0.113.9", attract = ["198.51.100.0/24"], readv_from_rts = ["65000:1"] }
''')
    eng = Engine(cfg)
    d = eng.vpn.describe("svc")
    assert d["service"] == {"address": "203.0.113.9", "attract": ["198.51.100.0/24"],
                            "readv_from_rts": ["target:65000:1"], "readv_exclude": []}
    assert [(r.source, r.next_hop) for r in eng.vpn.vrf("svc").routes("198.51.100.0/24")] == [
        (RouteSource.LOCAL, ip_address("203.0.113.9"))]
    with pytest.raises(ConfigError, match=r"vrfs\.2\.service\.address: .*'nope' is not an IP address"):
        parse_config(CONFIG + '[[vrfs]]\nname = "svc"\nroute_targets = ["65000:5"]\nservice = { address = "nope" }\n')


def test_r12_1_classifier_without_prefixes_applies_to_both_families() -> None:
    fwd = forwarder()
    svc_nh = NextHop.remote("198.18.0.9", 4000, "mpls-in-udp")
    fwd.apply(Batch(add_routes=(Route("chain.redirect", "0.0.0.0/0", (svc_nh,)),),
                    add_redirects=(Redirect("udp", "red", "chain.redirect", protocol=17),)))
    out = fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.20", dport=9)))
    assert out[0][0].endpoint == "198.18.0.9"  # type: ignore[union-attr]
    assert len(fwd._vrfs["red"].redirects) == 2
