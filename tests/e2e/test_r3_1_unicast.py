"""R3.1: IPv4 and IPv6 unicast between VMs on different hosts, in the same and in
different subnets, over both encapsulations (MPLS-in-UDP and MPLS-in-GRE).

The shared lab (labs/main.yaml): h3's forwarder is configured with
``encapsulations = ["mpls-in-gre"]`` (per-host ``encapsulations`` in the lab
YAML), so it advertises only the GRE Encapsulation community and every
tunnel to or from h3 is MPLS-in-GRE, while h1 <-> h2 uses MPLS-in-UDP.
Each case pings across hosts while capturing on the source host's underlay
port, and checks the replies and the encapsulation actually on the wire.
"""

from __future__ import annotations

import pytest
from e2e_lab import E2E, RunningLab, parse_frames, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(120)]

# (source vm, destination vm, family, relation, encapsulation on the wire)
CASES = [
    ("red1", "red2", 4, "same subnet", "mpls-in-udp"),
    ("red1", "red2", 6, "same subnet", "mpls-in-udp"),
    ("red1", "redx", 4, "different subnets", "mpls-in-udp"),
    ("red1", "redx", 6, "different subnets", "mpls-in-udp"),
    ("red1", "red3", 4, "same subnet", "mpls-in-gre"),
    ("red1", "red3", 6, "same subnet", "mpls-in-gre"),
    ("red3", "redx", 4, "different subnets", "mpls-in-gre"),
    ("red3", "redx", 6, "different subnets", "mpls-in-gre"),
]


@pytest.mark.parametrize(
    ("src", "dst", "family", "relation", "encap"),
    CASES,
    ids=[f"{s}-{d}-v{f}-{e}" for s, d, f, _, e in CASES],
)
def test_r3_1_unicast_across_hosts(
    main_lab: RunningLab, src: str, dst: str, family: int, relation: str, encap: str
) -> None:
    """R3.1 (and R7.1): a VM pings a VM on another host of its VPN, IPv4 and IPv6,
    in the same subnet and across subnets; the replies come back, and the
    underlay carries the packets in the encapsulation the hosts negotiated in
    BGP (GRE whenever h3 is involved, UDP otherwise), nothing else."""
    lab = main_lab
    s_vm, d_vm = lab.vm(src), lab.vm(dst)
    same = (s_vm.ipv4.network == d_vm.ipv4.network) if family == 4 else (s_vm.ipv6.network == d_vm.ipv6.network)
    assert same == (relation == "same subnet")
    target = lab.ip4(dst) if family == 4 else lab.ip6(dst)
    a, b = lab.underlay(s_vm.host), lab.underlay(d_vm.host)
    fast_before = (lab.fast_path(s_vm.host), lab.fast_path(d_vm.host))
    cap = lab.capture("underlay", f"p-{s_vm.host}", timeout=10)
    try:
        r = lab.ping(src, target, count=3)
    finally:
        frames = parse_frames(cap.finish())
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    tun = [t for t in tunnel_packets(frames) if {t.src, t.dst} == {a, b}]
    out = [t for t in tun if t.src == a]
    back = [t for t in tun if t.src == b]
    assert len(out) >= 3 and len(back) >= 3, f"{len(out)} out, {len(back)} back"
    assert {t.encap for t in tun} == {encap}
    inner_version = {t.inner[0] >> 4 for t in tun}
    assert inner_version == {family}
    if lab.driver == "ebpf" and encap == "mpls-in-udp":
        # the kernel programs did the work, not the slow path: the source host
        # encapsulated each echo request, the destination host decapsulated it
        fast_after = (lab.fast_path(s_vm.host), lab.fast_path(d_vm.host))
        assert fast_after[0]["encapsulated"] - fast_before[0]["encapsulated"] >= 3
        assert fast_after[1]["decapsulated"] - fast_before[1]["decapsulated"] >= 3


def test_r3_1_tcp_file_transfer_sha256(main_lab: RunningLab) -> None:
    """R3.1: a TCP session carries a 1 MB file from red1 (h1) to red2 (h2) over
    MPLS-in-UDP and from red1 to red3 (h3) over MPLS-in-GRE; the receiver's
    SHA-256 equals the sender's (every segment delivered intact, in order)."""
    lab = main_lab
    size = 1 << 20
    sent, got = lab.tcp_transfer("red1", "red2", lab.ip4("red2"), size, port=5001)
    assert sent == got
    sent6, got6 = lab.tcp_transfer("red1", "red3", lab.ip6("red3"), size, port=5002)
    assert sent6 == got6
