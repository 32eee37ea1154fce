"""R3.3: VMs are grouped in IP subnets without an L2 service: the vPE answers
ARP and Neighbor Solicitations itself, and no MAC crosses between hosts."""

from __future__ import annotations

import pytest
from e2e_lab import E2E, GATEWAY_MAC, RunningLab, delta, mac_bytes, parse_frames, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(60)]


def test_r3_3_arp_and_nd_answered_by_the_vpe(main_lab: RunningLab) -> None:
    """R3.3: with an empty neighbour cache, red1 resolves red2 (another host, same
    subnet), red3 (another host) and red4 (same host) over IPv4 and IPv6: every
    entry holds the vPE's gateway MAC, never the other VM's MAC. An address
    that is not routed in the VRF is not answered (counted as arp-no-route).
    On the underlay no ARP/ND for tenant addresses and no VM MAC appears, and
    the tunnels carry bare IP packets (no Ethernet header inside)."""
    lab = main_lab
    lab.run("red1", "ip", "neigh", "flush", "dev", "eth0", check=True)
    before = lab.drops("h1")
    cap = lab.capture("underlay", "p-h1", timeout=15)
    try:
        for vm in ("red2", "red3", "red4"):
            assert lab.reaches("red1", lab.ip4(vm), count=1)
            assert lab.reaches("red1", lab.ip6(vm), count=1)
        assert not lab.reaches("red1", "192.0.2.99", count=1)
    finally:
        frames = parse_frames(cap.finish())
    neigh = lab.neighbours("red1")
    for vm in ("red2", "red3", "red4"):
        assert neigh.get(lab.ip4(vm)) == GATEWAY_MAC, (vm, neigh)
        assert neigh.get(lab.ip6(vm)) == GATEWAY_MAC, (vm, neigh)
        assert lab.mac(vm) not in neigh.values()
    assert neigh.get("192.0.2.99", "") in ("", None)  # unanswered: no link-layer address
    assert delta(before, lab.drops("h1"), "arp-no-route") >= 1

    vm_macs = [mac_bytes(lab.mac(v)) for v in ("red1", "red2", "red3", "red4")]
    for f in frames:
        assert not any(m in f.data for m in vm_macs), "a VM MAC crossed the underlay"
        if f.ethertype == 0x0806:
            assert f.data[28:30] == b"\xc6\x12" and f.data[38:40] == b"\xc6\x12", "ARP for a non-underlay address"
    tun = tunnel_packets(frames)
    assert tun and all(t.inner[0] >> 4 in (4, 6) for t in tun)
