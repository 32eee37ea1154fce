"""R10.2 Inter-AS option B end to end: two ASes of vpe hosts (src/vpe/lab/examples/inter-as-b.yaml).

h1 (AS 65000) and h4 (AS 65001) are PEs with VMs red1 and red4 in VPN red; asbr1 and asbr2
are the ASBRs, vpe agents with forwarders and no VMs, peering over eBGP; each re-advertises
every VPN route with next hop self and a local label (relabel). Packets from red1 to red4
cross h1 -> asbr1 -> asbr2 -> h4, their label swapped at each ASBR; ping and a TCP transfer
work both ways, and a capture of the underlay shows the three legs with three labels.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_lab import (
    E2E,
    RunningLab,
    example_lab,
    inner_addresses,
    parse_frames,
    tunnel_packets,
)

pytestmark = [*E2E, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def inter_as_lab() -> Iterator[RunningLab]:
    yield from example_lab("inter-as-b", "b")


def test_r10_2_option_b_e2e_ping_tcp_and_swapped_labels(inter_as_lab: RunningLab) -> None:
    lab = inter_as_lab
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    h1, a1, a2, h4 = (lab.underlay(n) for n in ("h1", "asbr1", "asbr2", "h4"))
    # each PE sees the other AS's VM via its own ASBR (next hop self, the ASBR's label)
    (via_a1,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert via_a1["next_hop"] == a1
    assert [e["next_hop"] for e in lab.api("h4", "/v1/vpns/red")["table"][f"{r1}/32"]] == [a2]
    (own,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r4}/32"]

    caps = [lab.capture("underlay", f"p-{n}", timeout=10) for n in ("asbr1", "asbr2")]
    try:
        r = lab.ping("red1", r4, count=3)
    finally:
        frames = [f for c in caps for f in parse_frames(c.finish())]
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    legs: dict[tuple[str, str], set[int]] = {}
    for t in tunnel_packets(frames):
        if inner_addresses(t.inner) == (r1, r4):
            legs.setdefault((t.src, t.dst), set()).add(t.label)
    assert set(legs) >= {(h1, a1), (a1, a2), (a2, h4)}, legs
    # h1 sends with asbr1's label; asbr1 swaps it for asbr2's; asbr2 for h4's own label of red4
    # (each agent allocates from its own label space, so two legs may carry equal numbers)
    assert legs[(h1, a1)] == set(via_a1["labels"])
    assert len(legs[(a1, a2)]) == 1
    assert legs[(a2, h4)] == set(own["labels"])
    assert lab.counters("asbr1")["swapped"] >= 3 and lab.counters("asbr2")["swapped"] >= 3

    lab.tcp_transfer("red4", "red1", r1, 200_000)
