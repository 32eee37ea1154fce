"""R3.2: VPN broadcast and multicast reach every VM of the VPN, and no other, by
ingress replication (no IP multicast in the underlay).

Each vPE originates, per VRF, an MCAST-VPN Intra-AS I-PMSI A-D route with a
PMSI Tunnel attribute (ingress replication, its underlay address, the VRF
label) and the VRF's export RTs; importing those routes builds each VRF's
replication list in the forwarder. A broadcast/multicast packet from a VM
is copied to the other local ports of its VRF and tunnelled once to every
member of the list; the receiving vPE floods it to its ports of the VRF.

Who is "in the VPN" follows RFC 4364 route targets: red1's VRF imports red
(65000:101) and the shared services (65000:900), so its VPN is the red VMs
(red1..red4, redx, and multi, which sits in red and web) plus the extranet
service ``svc``. The green VMs use the very same addresses (192.0.2.0/24,
2001:db8:1::/64) and must receive nothing; neither must the acme VMs.
"""

from __future__ import annotations

import json
import uuid

import pytest
from e2e_lab import E2E, Background, RunningLab, parse_frames, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(120)]

#: every VM except the sender, red1
OTHERS4 = ["red4", "red2", "redx", "red3", "multi", "svc", "green1", "green2", "green5",
           "web1", "db1", "dev1", "spoke1", "spoke2", "hub"]
RED_VPN = {"red4", "red2", "redx", "red3", "multi", "svc"}
#: 233.252.0.0/24 is MCAST-TEST-NET (RFC 5771)
GROUP4 = "233.252.0.1"
#: unicast-prefix-based group (RFC 3306) of red's 2001:db8:1::/64
GROUP6 = "ff3e:40:2001:db8:1::1234"


def _receive(lab: RunningLab, vms: list[str], family: int, port: int, send: tuple[str, str, int],
             group: str = "") -> tuple[dict[str, list[list[str]]], str]:
    """Listen on ``vms``, send 3 datagrams from ``send`` = (vm, destination, port),
    return what each VM received and the payload sent; also capture h1's underlay port."""
    token = uuid.uuid4().hex[:10]
    listeners: dict[str, Background] = {}
    cap = None
    try:
        for vm in vms:
            listeners[vm] = lab.listen(vm, port, family=family, count=20, timeout=15, group=group)
        cap = lab.capture("underlay", "p-h1", timeout=15)
        src, dst, dport = send
        lab.send_udp(src, dst, dport, token, count=3)
        got = {vm: json.loads(b.finish(settle=0.0 if i else 0.6) or "[]") for i, (vm, b) in
               enumerate(listeners.items())}
        frames = cap.finish(settle=0)
    finally:
        for b in listeners.values():
            b.kill()
        if cap is not None:
            cap.kill()
    _check_underlay_unicast(lab, frames)
    return got, token


def _check_underlay_unicast(lab: RunningLab, capture: str) -> None:
    """Copies leave h1 as unicast tunnel packets to vPEs; no IP multicast in the underlay."""
    frames = parse_frames(capture)
    for f in frames:
        if f.ethertype == 0x0800:
            assert not (0xE0 <= f.data[30] <= 0xEF), "IPv4 multicast on the underlay"
        elif f.ethertype == 0x86DD:
            dst0 = f.data[38]
            # only the kernel's own ND/MLD of the underlay addresses may be multicast
            assert dst0 != 0xFF or f.data[20] in (58, 0), "IPv6 multicast data on the underlay"
    tun = tunnel_packets(frames)
    hosts = {lab.underlay(h) for h in ("h2", "h3")}
    assert tun, "no tunnelled copy left h1"
    assert {t.dst for t in tun if t.src == lab.underlay("h1")} <= hosts


def _receivers(got: dict[str, list[list[str]]], token: str) -> dict[str, int]:
    return {vm: sum(1 for payload, _ in pkts if payload == token) for vm, pkts in got.items()
            if any(payload == token for payload, _ in pkts)}


def test_r3_2_replication_lists_from_i_pmsi_routes(main_lab: RunningLab) -> None:
    """R3.2 (control plane): h1 learns the I-PMSI A-D routes of h2 and h3 (ingress
    replication, their VRF labels), and its red VRF's replication list holds
    exactly the remote VRFs red imports, each with the encapsulation the
    remote advertised (GRE toward h3, which only speaks GRE)."""
    lab = main_lab
    routes = lab.api("h1", "/v1/bgp/routes?family=ipv4-mcast-vpn")["routes"]
    remote = [r for r in routes if r["peer"] != "local"]
    assert {r["originating_router"] for r in remote} == {lab.underlay("h2"), lab.underlay("h3")}
    for r in remote:
        assert r["type_name"] == "intra-as-i-pmsi-a-d"
        pmsi = r["attributes"]["pmsi_tunnel"]
        assert pmsi["tunnel_type"] == "ingress-replication"
        assert pmsi["tunnel_id"] == r["originating_router"]
    fib = lab.api("h1", "/v1/fib")
    red = next(rl for rl in fib["replication"] if rl["vrf"] == "red")
    members = {(m["endpoint"], m["encap"]) for m in red["members"]}
    assert {e for e, _ in members} == {lab.underlay("h2"), lab.underlay("h3")}
    assert all(enc == ("mpls-in-gre" if e == lab.underlay("h3") else "mpls-in-udp") for e, enc in members)
    # labels are the remote VRFs' labels, as their I-PMSI routes carry them
    red_imports = {"target:65000:101", "target:65000:900"}
    want = {(r["originating_router"], r["attributes"]["pmsi_tunnel"]["label"]) for r in remote
            if red_imports & set(r["attributes"]["extended_communities"])}
    assert {(m["endpoint"], m["label"]) for m in red["members"]} == want


def test_r3_2_limited_broadcast_reaches_the_vpn_only(main_lab: RunningLab) -> None:
    """R3.2: red1 sends 3 datagrams to 255.255.255.255: every VM of its VPN, on
    every host, gets each exactly once (one copy per VM: no duplicates from
    replication); no green VM (same addresses!) and no other tenant's VM
    gets any."""
    got, token = _receive(main_lab, OTHERS4, 4, 4001, ("red1", "255.255.255.255", 4001))
    assert _receivers(got, token) == dict.fromkeys(RED_VPN, 3)


def test_r3_2_subnet_directed_broadcast(main_lab: RunningLab) -> None:
    """R3.2: red1 sends to 192.0.2.255, the broadcast address of its subnet: the
    red VMs of 192.0.2.0/24 on all three hosts (red4, red2, red3, multi) get it,
    those of other subnets do not, and neither do the green VMs of the same
    192.0.2.0/24."""
    got, token = _receive(main_lab, OTHERS4, 4, 4002, ("red1", "192.0.2.255", 4002))
    assert _receivers(got, token) == dict.fromkeys({"red4", "red2", "red3", "multi"}, 3)


def test_r3_2_ipv4_multicast(main_lab: RunningLab) -> None:
    """R3.2: IPv4 multicast to 233.252.0.1 from red1 reaches every VM of red's VPN
    that listens (all VMs join the group; the joins themselves are IGMP,
    dropped by the vPE: flooding does not depend on them), and no VM of
    another VPN, although all of them joined too."""
    got, token = _receive(main_lab, OTHERS4, 4, 4003, ("red1", GROUP4, 4003), group=GROUP4)
    assert _receivers(got, token) == dict.fromkeys(RED_VPN, 3)


def test_r3_2_ipv6_multicast(main_lab: RunningLab) -> None:
    """R3.2: IPv6 multicast to ff3e:40:2001:db8:1::1234 from red1 reaches every
    IPv6 VM of red's VPN on all hosts, and none of the green VMs that have the
    same IPv6 addresses and joined the same group."""
    vms6 = ["red4", "red2", "redx", "red3", "svc", "green1", "green2", "green5"]
    got, token = _receive(main_lab, vms6, 6, 4004, ("red1", GROUP6, 4004), group=GROUP6)
    assert _receivers(got, token) == dict.fromkeys({"red4", "red2", "redx", "red3", "svc"}, 3)
