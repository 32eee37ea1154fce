"""R2.2: external PE mode. A host without a forwarder ("h1") has its VMs served
by a vpe on a device near it ("tor"); h1 tells the PE, through the PE's API
(``POST /v1/endpoints`` over TCP with a bearer token, from h1's own
namespace), which addresses sit behind which attachment circuit (here a
VXLAN segment between h1 and the PE: this kernel has no 802.1Q devices). The switch between them ("sw") and h1 itself hold no
VPN state: no route to any tenant address, no vpe process, no label; only
the PE does. World: tests/e2e/external_pe_lab.py; design: docs/external-pe.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_lab import DRIVERS
from external_pe_lab import MGMT, VMS, VNIS, World, external_pe_world, sh, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture(scope="module", params=DRIVERS)
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    with external_pe_world(Path(tmp_path_factory.mktemp("r2_2")), request.param) as w:
        yield w


def _signal(w: World, vm: str) -> tuple[int, object]:
    ip, mac = VMS[vm]
    return w.signal({"name": vm, "vpn": "red", "interface": "ac0", "vni": VNIS[vm], "remote": MGMT["h1"], "mac": mac,
                     "ips": [f"{ip}/24"], "gateways": ["192.0.2.1"]})


def test_r2_2_host_signals_endpoints_and_the_external_pe_serves_them(world: World) -> None:
    w = world
    for vm in ("vm1", "vm3"):
        status, body = _signal(w, vm)
        assert status == 201, (body, w.logs())
        assert body["circuit"] == {"kind": "vxlan", "vni": VNIS[vm], "ifname": f"vx{VNIS[vm]}"}  # type: ignore[index]
    # bad signals are refused by name, nothing changes
    bad = {"name": "vm9", "vpn": "red", "interface": "ac0", "vni": 103, "remote": MGMT["h1"],
           "mac": "02:00:00:00:26:09", "ips": ["192.0.2.29/24"]}
    for change, detail in (({"interface": "nope0"}, "interface: 'nope0' does not exist on this PE"),
                           ({"vni": None}, "vlan: give exactly one of vlan (an 802.1Q circuit) and vni "
                                           "(a VXLAN circuit)"),
                           ({"remote": None}, "remote: a VXLAN circuit needs the host's address")):
        status, body = w.signal({**bad, **change})
        assert status == 422 and body["detail"] == detail, body  # type: ignore[index]
    status, body = w.signal({**bad, "vni": 1 << 24})
    assert status == 422 and "vni" in str(body), body
    assert sorted(e["name"] for e in w.get("tor", "/v1/endpoints")) == ["vm1", "vm3"]

    # the two VMs behind the external PE reach each other, routed by the PE (TTL 63)
    r = w.ping("vm1", VMS["vm3"][0])
    assert r.returncode == 0 and "ttl=63" in r.stdout, (r.stdout, w.logs())
    # ... and their gateway is the PE's (proxy ARP: the gateway MAC, not a VM's)
    neigh = w.x("vm1", "ip", "neigh", "show", VMS["vm3"][0]).stdout.lower()
    assert "02:00:5e:00:00:01" in neigh, neigh

    # no VPN state between the host and the PE: no tenant route, no label, no vpe there
    for node in ("h1", "sw"):
        routes = w.x(node, "ip", "-4", "route", "show", "table", "all").stdout
        assert "192.0.2." not in routes and "mpls" not in routes, (node, routes)
        assert w.x(node, "ip", "-d", "link", "show", check=False).stdout.count("vrf") == 0
    assert "192.0.2." not in w.x("sw", "ip", "-4", "addr").stdout

    pids = sh("ip", "netns", "pids", w.ns["h1"], check=False).stdout.split()
    assert not pids, f"processes in h1: {pids}"
    assert w.x("tor", "ip", "-4", "route", "show").stdout.count("192.0.2.") == 0  # the PE's VRF is in vpe, not the kernel
    tor_table = w.get("tor", "/v1/vpns/red")["table"]
    assert {f"{VMS[v][0]}/32" for v in ("vm1", "vm3")} <= set(tor_table)

    # the host withdraws an endpoint: the port and the circuit's sub-interface go
    assert w.withdraw("vm3") == 204
    assert w.x("tor", "ip", "link", "show", "dev", "vx102", check=False).returncode != 0
    assert [e["name"] for e in w.get("tor", "/v1/endpoints")] == ["vm1"]
    assert w.ping("vm1", VMS["vm3"][0], count=1).returncode != 0
    status, _ = _signal(w, "vm3")  # signalled again: served again
    assert status == 201

    def again() -> bool:
        return w.ping("vm1", VMS["vm3"][0], count=1).returncode == 0

    try:
        until(again, 10.0, "vm1 -> vm3 after vm3 was signalled again")
    except AssertionError:
        drops = w.get("tor", "/v1/counters").get("drops")
        raise AssertionError((drops, w.x("vm1", "ip", "neigh").stdout, w.x("vm3", "ip", "neigh").stdout,
                              w.get("tor", "/v1/fib")["ports"], w.logs())) from None


def test_r2_2_vxlan_circuits_come_back_after_a_pe_restart(world: World) -> None:
    """The external PE's agent restarts: its VXLAN circuits come back from the stored state
    - vx101, deleted while the agent was down, is made again; vx102, still there, is
    taken as it is - traffic across them flows again, the endpoints' routes are advertised
    again, and a withdrawal after the restart still removes the circuit's device."""
    w = world
    for vm in ("vm1", "vm3"):
        status, body = _signal(w, vm)
        assert status in (201, 409), body
    w.restart_agent("tor", lambda: w.x("tor", "ip", "link", "del", "dev", "vx101"))
    for vni in (101, 102):
        link = w.x("tor", "ip", "-d", "link", "show", "dev", f"vx{vni}", check=False)
        assert link.returncode == 0 and f"vxlan id {vni} remote {MGMT['h1']}" in link.stdout, (link, w.logs())
    assert sorted(e["name"] for e in w.get("tor", "/v1/endpoints")) == ["vm1", "vm3"]

    def reachable(vm: str, dst: str) -> bool:
        return w.ping(vm, dst, count=1).returncode == 0

    try:
        # across both circuits (the PE routes between them) and to the internal vPE's VM
        until(lambda: reachable("vm1", VMS["vm3"][0]), 20.0, "vm1 -> vm3 across the restored circuits")
        until(lambda: reachable("vm2", VMS["vm1"][0]), 30.0, "vm2 (on h2) -> vm1 behind the PE")
    except AssertionError as e:
        raise AssertionError((str(e), w.get("tor", "/v1/counters").get("drops"), w.logs())) from None
    # the restarted PE advertised the endpoints' routes again, and h2 holds them via the PE
    until(lambda: w.get("tor", "/v1/bgp/neighbors")[0]["advertised"].get("vpnv4", 0) >= 2, 20.0,
          "the PE's routes advertised again")
    h2_table = w.get("h2", "/v1/vpns/red")["table"]
    assert {f"{VMS[v][0]}/32" for v in ("vm1", "vm3")} <= set(h2_table), h2_table

    # withdrawn after the restart: the port, and the circuit's device, go
    assert w.withdraw("vm1") == 204
    assert w.x("tor", "ip", "link", "show", "dev", "vx101", check=False).returncode != 0
    assert [e["name"] for e in w.get("tor", "/v1/endpoints")] == ["vm3"]
