"""One agent, several forwarders (R2.4), without sockets: an Engine built from
``[[dataplane.forwarders]]`` (links never started), ports placed on forwarders.

Each forwarder is its own vPE in the dataplane: the routes of a port are
exported with its forwarder's underlay address as next hop; that forwarder
delivers to the port, every other one tunnels to that address with the
exported label; a port naming no known forwarder is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpe.agent.config import ConfigError, parse_config
from vpe.agent.engine import Engine
from vpe.agent.fib_many import ManyFibs
from vpe.dataplane.driver import NextHop
from vpe.vpn.attachments import Attachment

BASE = """
[bgp]
local_as = 65000
router_id = "198.18.24.1"
[[vrfs]]
name = "red"
route_targets = ["65000:24"]
[dataplane]
driver = "userspace"
"""
FWS = """
[[dataplane.forwarders]]
name = "h1"
fib_socket = "{d}/h1.sock"
underlay_address = "198.18.24.11"
[[dataplane.forwarders]]
name = "h2"
fib_socket = "{d}/h2.sock"
underlay_address = "198.18.24.12"
"""


def _vm(name: str, ip: str, fw: str) -> Attachment:
    return Attachment(name, f"vm-{name}", "red", "02:00:00:00:24:0a", (f"{ip}/24",), ("192.0.2.1",), forwarder=fw)


def test_r2_4_each_forwarder_a_vpe_of_its_own(tmp_path: Path) -> None:
    eng = Engine(parse_config(BASE + FWS.format(d=tmp_path)))
    fibs = eng.fib
    assert isinstance(fibs, ManyFibs) and list(fibs.fibs) == ["h1", "h2"]
    assert str(eng.underlay) == "198.18.24.11"  # the first forwarder's, for routes of no port
    eng.ops.attach(_vm("a", "192.0.2.10", "h1"))
    eng.ops.attach(_vm("b", "192.0.2.20", "h2"))
    eng.ops.attach(_vm("c", "192.0.2.30", ""))  # no forwarder named: the first
    exported = {str(r.nlri).split(":", 2)[2]: r for r in eng.vpn.exporter.exported("red")}
    assert {p: str(r.next_hop) for p, r in exported.items()} == {
        "192.0.2.10/32": "198.18.24.11", "192.0.2.20/32": "198.18.24.12", "192.0.2.30/32": "198.18.24.11"}
    label = exported["192.0.2.20/32"].nlri.labels[0]  # type: ignore[attr-defined]
    h1, h2 = fibs.fibs["h1"], fibs.fibs["h2"]
    assert set(h1.ports) == {"a", "c"} and set(h2.ports) == {"b"}

    def hops(fib: object, prefix: str) -> tuple[NextHop, ...]:
        return next(r.next_hops for k, r in fib.routes.items() if str(k.prefix) == prefix)  # type: ignore[attr-defined]

    assert hops(h1, "192.0.2.10/32") == (NextHop.local("a"),)
    assert hops(h1, "192.0.2.20/32") == (NextHop.remote("198.18.24.12", label, "mpls-in-udp"),)
    assert hops(h2, "192.0.2.20/32") == (NextHop.local("b"),)
    assert hops(h2, "192.0.2.10/32")[0].endpoint is not None and str(hops(h2, "192.0.2.10/32")[0].endpoint) == "198.18.24.11"
    # every forwarder knows the VRF label (IP lookup), so the others' tunnels land
    assert any(e.kind == "vrf" and e.target == "red" for e in h2.labels.values())
    # the view: one agent, both forwarders
    j = eng.view.fib_json()
    assert set(j["forwarders"]) == {"h1", "h2"} and j["forwarders"]["h2"]["underlay"] == "198.18.24.12"
    assert {p["name"] for p in j["ports"]} == {"a", "b", "c"}
    # our own routes coming back from a reflector are not imported again
    assert {str(a) for a in eng.vpn.importer.local_next_hops} >= {"198.18.24.11", "198.18.24.12"}
    # a port on no known forwarder: refused by name, nothing left behind
    with pytest.raises(ValueError, match=r"forwarder: 'h9' is not a forwarder of this agent \(known: h1, h2\)"):
        eng.ops.attach(_vm("d", "192.0.2.40", "h9"))
    assert "d" not in eng.bridge.attachments
    eng.ops.detach("b")
    assert "192.0.2.20/32" not in {str(k.prefix) for k in h1.routes} and not h2.ports


def test_r2_4_forwarders_config_errors(tmp_path: Path) -> None:
    dup = FWS.format(d=tmp_path).replace('"198.18.24.12"', '"198.18.24.11"')
    with pytest.raises(ConfigError, match="underlay_address 198.18.24.11 given twice"):
        parse_config(BASE + dup)
    with pytest.raises(ConfigError, match="name h1 given twice"):
        parse_config(BASE + FWS.format(d=tmp_path).replace('name = "h2"', 'name = "h1"'))
    tcp = FWS.format(d=tmp_path).replace(f'"{tmp_path}/h2.sock"', '"tcp:198.18.24.12:7710"')
    with pytest.raises(ConfigError, match="forwarder 'h2': fib_socket is a TCP address but fib_key_file is missing"):
        parse_config(BASE + tcp)
    with pytest.raises(ConfigError, match="driver is 'none'"):
        parse_config(BASE.replace('driver = "userspace"', 'driver = "none"') + FWS.format(d=tmp_path))


def _members(fib: object, vrf: str) -> set[tuple[str, int | None]]:
    rl = fib.replication.get(vrf)  # type: ignore[attr-defined]
    return {(str(h.endpoint), h.label) for h in rl.members} if rl is not None else set()


def test_r3_2_bum_between_forwarders_of_one_agent(tmp_path: Path) -> None:
    """Each forwarder's replication list of a VRF holds the agent's other forwarders that
    have ports in it (their underlay address, the VRF label they flood on) - replication
    list members are the forwarder's trusted tunnel sources too (R13.2) - and follows the
    ports as they come and go; a forwarder with ports of another VRF only is in that
    VRF's lists only."""
    h3_toml = f'[[dataplane.forwarders]]\nname = "h3"\nfib_socket = "{tmp_path}/h3.sock"\n' \
        'underlay_address = "198.18.24.13"\n'
    cfg = BASE + '[[vrfs]]\nname = "blue"\nroute_targets = ["65000:25"]\n' + FWS.format(d=tmp_path) + h3_toml
    eng = Engine(parse_config(cfg))
    fibs = eng.fib
    assert isinstance(fibs, ManyFibs)
    h1, h2, h3 = fibs.fibs["h1"], fibs.fibs["h2"], fibs.fibs["h3"]
    red = eng.vpn.vrf_label("red")
    assert red is not None
    eng.ops.attach(_vm("a", "192.0.2.10", "h1"))
    assert _members(h1, "red") == set()  # no other forwarder has a port of red
    assert _members(h2, "red") == {("198.18.24.11", red)}
    eng.ops.attach(_vm("b", "192.0.2.20", "h2"))
    assert _members(h1, "red") == {("198.18.24.12", red)}
    assert _members(h2, "red") == {("198.18.24.11", red)}
    eng.ops.attach(_vm("c", "192.0.2.30", "h2"))  # a second port on h2: h2 still once
    eng.ops.attach(Attachment("d", "vm-d", "blue", "02:00:00:00:24:0b", ("192.0.2.40/24",), (), forwarder="h3"))
    assert _members(h1, "red") == {("198.18.24.12", red)}
    assert _members(h3, "red") == {("198.18.24.11", red), ("198.18.24.12", red)}
    # blue's port on h3 makes h3 a member of blue's lists only, with blue's label
    blue = eng.vpn.vrf_label("blue")
    assert blue is not None and blue != red
    assert _members(h1, "blue") == _members(h2, "blue") == {("198.18.24.13", blue)}
    assert _members(h3, "blue") == set()
    # a remote vPE's I-PMSI route (what the bridge gives): every forwarder, with the siblings
    fibs.set_replication("red", [NextHop.remote("198.18.24.99", 5000)])
    assert _members(h1, "red") == {("198.18.24.12", red), ("198.18.24.99", 5000)}
    fibs.set_replication("red", [])
    eng.ops.detach("b")
    assert _members(h1, "red") == {("198.18.24.12", red)}
    eng.ops.detach("c")
    assert _members(h1, "red") == set() and _members(h2, "red") == {("198.18.24.11", red)}


def test_r3_2_an_i_pmsi_route_per_forwarder(tmp_path: Path) -> None:
    """Remote vPEs send each forwarder of the agent its copy: one I-PMSI A-D route per
    forwarder (its underlay address the originator and tunnel endpoint), the VRF's label."""
    from vpe.agent.mvpn import replication_member
    from vpe.bgp.wire.constants import IPV4_MCAST_VPN

    eng = Engine(parse_config(BASE + FWS.format(d=tmp_path)))
    assert isinstance(eng.fib, ManyFibs)
    red = eng.vpn.vrf_label("red")
    loc = eng.router.rib.loc_rib(IPV4_MCAST_VPN)
    members = {replication_member(p, eng.fib.encap_for) for _k, p in loc.best_paths()}
    assert {(str(m.endpoint), m.label) for m in members if m is not None} == {
        ("198.18.24.11", red), ("198.18.24.12", red)}
    eng.bridge.update_vrf("red", export_rts=[])  # exports nothing: both withdrawn
    assert len(loc) == 0
