"""R2.1: the end-system is CE and PE at once; VMs are non-routing hosts attached
to a VRF of the vPE running on their own host."""

from __future__ import annotations

import json

import pytest
from e2e_lab import E2E, GATEWAY_MAC, RunningLab

pytestmark = [*E2E, pytest.mark.timeout(60)]


def test_r2_1_vm_is_a_host_on_a_local_vrf(main_lab: RunningLab) -> None:
    """R2.1: red1 is a plain host (no forwarding, one interface, only a connected
    subnet and a default route to its gateway) and its first hop is the vPE of
    its own end-system: h1's agent lists the port in VRF red and originates
    red1's host routes there; h2 learned them by BGP with h1's underlay
    address as next hop (the end-system is the PE); the host's port carries
    no address (the host kernel does not route tenant packets, the vPE
    does); and the VM reaches a VM on another host through it."""
    lab = main_lab
    assert lab.run("red1", "sysctl", "-n", "net.ipv4.ip_forward", check=True).stdout.strip() == "0"
    links = json.loads(lab.run("red1", "ip", "-j", "link", "show", check=True).stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
    routes = json.loads(lab.run("red1", "ip", "-j", "-4", "route", "show", check=True).stdout)
    assert {r["dst"] for r in routes} == {"default", "192.0.2.0/24"}
    assert next(r for r in routes if r["dst"] == "default")["gateway"] == "192.0.2.1"

    ports = {p["name"]: p for p in lab.api("h1", "/v1/ports")}
    assert ports["red1"]["vrf"] == "red" and ports["red1"]["ifname"] == "vm-red1"
    vrf = lab.api("h1", "/v1/vpns/red")
    assert "red1" in vrf["ports"]
    assert {"192.0.2.11/32", "2001:db8:1::11/128"} <= set(vrf["local_routes"])
    learned = [r for r in lab.api("h2", "/v1/bgp/routes?family=vpnv4")["routes"]
               if r.get("prefix") == "192.0.2.11/32" and r["next_hop"] == lab.underlay("h1")]
    assert learned, "h2 did not learn red1's route from h1"

    port_addrs = json.loads(lab.run("h1", "ip", "-j", "addr", "show", "dev", "vm-red1", check=True).stdout)
    assert port_addrs[0].get("addr_info", []) == []

    assert lab.reaches("red1", lab.ip4("red2"))
    assert lab.reaches("red1", "192.0.2.1")  # the gateway answers echo itself
    assert lab.reaches("red1", lab.ip4("redx"))  # another subnet: through the gateway
    neigh = lab.neighbours("red1")
    assert neigh.get("192.0.2.1") == GATEWAY_MAC
