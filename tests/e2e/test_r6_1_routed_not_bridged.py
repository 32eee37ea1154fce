"""R6.1: routed, not bridged: only IP addresses matter; no VLAN, no L2
broadcast dependency, no MAC learning."""

from __future__ import annotations

import pytest
from e2e_lab import E2E, GATEWAY_MAC, RunningLab, delta, ether, ipv4_udp, parse_frames

pytestmark = [*E2E, pytest.mark.timeout(60)]


def test_r6_1_frames_are_routed_by_ip_only(main_lab: RunningLab) -> None:
    """R6.1: red1 sends, from its own MAC and address:
    * a UDP packet to red4 (same host) addressed to red4's *real* MAC, and one
      to red2 (other host) likewise: each arrives routed, not bridged (source
      MAC = the gateway MAC, TTL 64 -> 63 resp. 62);
    * non-IP frames (ethertype 0x88b5) to the broadcast MAC and to red4's MAC:
      nothing arrives at red4 or red2 (no L2 flooding or forwarding), and h1
      counts them as 'ethertype' drops.
    The VM MAC of the sender never reaches a receiver."""
    lab = main_lab
    src_mac = lab.mac("red1")
    before = lab.drops("h1")
    caps = {vm: lab.capture(vm, "eth0", timeout=10) for vm in ("red4", "red2")}
    try:
        frames_out = [
            ether(lab.mac("red4"), src_mac, 0x0800, ipv4_udp("192.0.2.11", "192.0.2.14", 4301, 4301, b"r6-local")),
            ether(lab.mac("red2"), src_mac, 0x0800, ipv4_udp("192.0.2.11", "192.0.2.12", 4301, 4301, b"r6-remote")),
            ether("ff:ff:ff:ff:ff:ff", src_mac, 0x88B5, b"r6-l2-broadcast".ljust(46, b"\0")),
            ether(lab.mac("red4"), src_mac, 0x88B5, b"r6-l2-unicast".ljust(46, b"\0")),
        ]
        lab.send_frames("red1", "eth0", frames_out)
        got = {vm: parse_frames(c.finish(settle=0.5)) for vm, c in caps.items()}
    finally:
        for c in caps.values():
            c.kill()
    for vm, marker, ttl in (("red4", b"r6-local", 63), ("red2", b"r6-remote", 62)):
        hits = [f for f in got[vm] if f.pkttype == 0 and marker in f.data]
        assert len(hits) == 1, (vm, len(hits))
        f = hits[0]
        assert f.src_mac == GATEWAY_MAC and f.dst_mac == lab.mac(vm)
        assert f.ethertype == 0x0800 and f.data[22] == ttl
    for vm, frames in got.items():
        assert not [f for f in frames if f.ethertype == 0x88B5], vm
        assert not [f for f in frames if f.pkttype == 0 and f.src_mac == src_mac], vm
        assert not [f for f in frames if f.ethertype == 0x8100], vm  # no VLAN tags either
    assert delta(before, lab.drops("h1"), "ethertype") == 2
