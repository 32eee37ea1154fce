"""R10.2 Inter-AS option C end to end: two ASes of vpe hosts (src/vpe/lab/examples/inter-as-c.yaml).

The PEs h1 (AS 65000) and h4 (AS 65001) exchange VPN routes over multihop eBGP with next hop
and label unchanged; their loopbacks travel as labeled unicast through the ASBRs asbr1 and
asbr2 (next hop self, a label of their own). A packet from red1 to red4 leaves h1 with two
labels (asbr1's labeled-unicast label outside, h4's VPN label inside), asbr1 and asbr2 swap
the outer label and keep the inner one, h4 pops its own loopback label and delivers. Ping and
a TCP transfer work both ways; the capture shows the two-label stack on every leg. On the
ebpf driver every one of those steps runs in the kernel programs (their counters), none is
punted to the userspace path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from e2e_lab import (
    DRIVERS,
    E2E,
    RunningLab,
    example_lab,
    inner_addresses,
    parse_frames,
    tunnel_packets,
)

pytestmark = [*E2E, pytest.mark.timeout(120)]


@pytest.fixture(scope="module", params=DRIVERS)
def inter_as_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    yield from example_lab("inter-as-c", "c", driver=request.param)


#: the label stack step of each host, done in the kernel on the ebpf driver (fast path counters)
KERNEL_STEPS = {"h1": "pushed", "asbr1": "swapped", "asbr2": "swapped", "h4": "popped"}


def kernel_work(lab: RunningLab) -> dict[str, tuple[int, int]]:
    """Per host: (its label stack step done by the kernel, frames punted to the userspace path)."""
    out = {}
    for host, step in KERNEL_STEPS.items():
        c = lab.counters(host)["ebpf"]
        out[host] = (c["fast_path"].get(step, 0), sum(c["punts"].values()))
    return out


def test_r10_2_option_c_e2e_two_label_stack_ping_tcp(inter_as_lab: RunningLab) -> None:
    lab = inter_as_lab
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    h1, a1, a2, h4 = (lab.underlay(n) for n in ("h1", "asbr1", "asbr2", "h4"))
    # the VPN route came unchanged: h4's own next hop and label
    (remote,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r4}/32"]
    (own,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert remote["next_hop"] == h4 and remote["labels"] == own["labels"]
    vpn_label = own["labels"][0]
    # converged VPN routes are not enough: until h1 has learned h4's loopback as labeled
    # unicast, it reaches h4 directly over the shared underlay (one label); wait for the
    # two-label next hop in h1's FIB before capturing
    deadline = time.monotonic() + 30
    while '"outer"' not in json.dumps(lab.api("h1", "/v1/fib")):
        assert time.monotonic() < deadline, "h1's FIB never got a labeled-unicast (two-label) next hop"
        time.sleep(0.2)

    ebpf = lab.driver == "ebpf"
    if ebpf:
        lab.ping("red1", r4, count=1)  # the VMs' neighbour entries first: ARP is the slow path's
    before = kernel_work(lab) if ebpf else {}
    caps = [lab.capture("underlay", f"p-{n}", timeout=10) for n in ("asbr1", "asbr2")]
    try:
        r = lab.ping("red1", r4, count=3)
    finally:
        frames = [f for c in caps for f in parse_frames(c.finish())]
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    if ebpf:
        after = kernel_work(lab)
        for host, step in KERNEL_STEPS.items():
            done, punted = (a - b for a, b in zip(after[host], before[host], strict=True))
            assert done >= 3 and punted == 0, (host, step, before[host], after[host])
    legs: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for t in tunnel_packets(frames):
        # two labels: the captured "inner" starts with the bottom label stack entry
        if len(t.inner) < 24:
            continue
        bottom = int.from_bytes(t.inner[:4], "big")
        if not bottom & 0x100 or inner_addresses(t.inner[4:]) != (r1, r4):
            continue
        legs.setdefault((t.src, t.dst), set()).add((t.label, bottom >> 12))
    assert set(legs) >= {(h1, a1), (a1, a2), (a2, h4)}, legs
    for leg in ((h1, a1), (a1, a2), (a2, h4)):
        ((outer, inner),) = legs[leg]
        assert inner == vpn_label, (leg, outer, inner)  # the VPN label travels unchanged

    lab.tcp_transfer("red4", "red1", r1, 200_000)
