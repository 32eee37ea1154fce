"""R7.1 (encapsulation with underlay headers, signalled in BGP) and R7.2 (the vPE
is the VM's first-hop router, one IP hop away, and looks up every packet)."""

from __future__ import annotations

import re

import pytest
from e2e_lab import E2E, RunningLab, inner_addresses, parse_frames, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(60)]


def _route(lab: RunningLab, host: str, prefix: str, next_hop: str) -> dict:
    """The red VPN route (green has the same prefix) of ``prefix`` via ``next_hop``."""
    rows = [r for r in lab.api(host, "/v1/bgp/routes?family=vpnv4")["routes"]
            if r.get("prefix") == prefix and r["next_hop"] == next_hop
            and "target:65000:101" in r["attributes"]["extended_communities"]]
    assert len(rows) == 1, rows
    return rows[0]


def test_r7_1_encapsulation_signalled_and_used(main_lab: RunningLab) -> None:
    """R7.1: h2 advertises encap:mpls-in-udp and encap:mpls-in-gre with its routes,
    h3 (GRE only) advertises encap:mpls-in-gre alone. On the wire, red1 -> red2
    is MPLS-in-UDP (destination port 6635, source port in the RFC 7510 entropy
    range 49152-65535) and red1 -> red3 is MPLS-in-GRE (4-octet GRE header,
    protocol 0x8847); each carries one bottom-of-stack label equal to the
    label the destination advertised for the VM's route, and outer headers
    of underlay addresses only."""
    lab = main_lab
    h1, h2, h3 = (lab.underlay(h) for h in ("h1", "h2", "h3"))
    r2 = _route(lab, "h1", "192.0.2.12/32", h2)
    r3 = _route(lab, "h1", "192.0.2.13/32", h3)
    enc2 = {c for c in r2["attributes"]["extended_communities"] if c.startswith("encap:")}
    enc3 = {c for c in r3["attributes"]["extended_communities"] if c.startswith("encap:")}
    assert enc2 == {"encap:mpls-in-udp", "encap:mpls-in-gre"}
    assert enc3 == {"encap:mpls-in-gre"}
    cap = lab.capture("underlay", "p-h1", timeout=10)
    try:
        assert lab.reaches("red1", lab.ip4("red2"), count=2)
        assert lab.reaches("red1", lab.ip4("red3"), count=2)
    finally:
        frames = parse_frames(cap.finish())
    tun = [t for t in tunnel_packets(frames) if t.src == h1]
    to2 = [t for t in tun if t.dst == h2 and inner_addresses(t.inner) == ("192.0.2.11", "192.0.2.12")]
    to3 = [t for t in tun if t.dst == h3 and inner_addresses(t.inner) == ("192.0.2.11", "192.0.2.13")]
    assert len(to2) >= 2 and len(to3) >= 2
    for t in to2:
        assert t.encap == "mpls-in-udp" and t.label == r2["labels"][0]
        d = t.frame.data
        assert 49152 <= int.from_bytes(d[34:36], "big") <= 65535
        assert d[44] & 0x01  # bottom of stack
    for t in to3:
        assert t.encap == "mpls-in-gre" and t.label == r3["labels"][0]
        d = t.frame.data
        assert d[34:38] == b"\x00\x00\x88\x47"
        assert d[40] & 0x01


def test_r7_2_first_hop_router_decrements_ttl(main_lab: RunningLab) -> None:
    """R7.2: the vPE routes every packet from a VM:
    * a reply from a VM on the same host arrives with TTL 63 (one router: the
      vPE), from another host with TTL 62 (ingress and egress vPE), IPv4 and
      IPv6 hop limit alike;
    * a probe with TTL 1 expires at the first hop: the ICMP Time Exceeded comes
      from the VM's gateway address (192.0.2.1 / 2001:db8:1::1), one IP hop
      away, whether the destination is local or remote;
    * a destination the VRF has no route for gets Destination Unreachable from
      the gateway (the lookup happened in the vPE)."""
    lab = main_lab
    for dst, ttl in (("red4", "63"), ("red2", "62"), ("red3", "62")):
        for ip in (lab.ip4(dst), lab.ip6(dst)):
            r = lab.ping("red1", ip, count=2)
            assert r.returncode == 0 and set(re.findall(r"ttl=(\d+)", r.stdout)) == {ttl}, r.stdout
    for ip, gw in ((lab.ip4("red2"), "192.0.2.1"), (lab.ip4("red4"), "192.0.2.1"),
                   (lab.ip6("red2"), "2001:db8:1::1"), (lab.ip6("red4"), "2001:db8:1::1")):
        r = lab.ping("red1", ip, ttl=1)
        assert f"From {gw}" in r.stdout and "exceeded" in r.stdout.lower(), r.stdout
    r = lab.ping("red1", "198.51.100.99")
    assert "From 192.0.2.1" in r.stdout and "Unreachable" in r.stdout, r.stdout
    r = lab.ping("red1", "2001:db8:77::1")
    assert "From 2001:db8:1::1" in r.stdout and "unreachable" in r.stdout.lower(), r.stdout
