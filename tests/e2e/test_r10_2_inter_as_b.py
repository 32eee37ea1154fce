"""R10.2 Inter-AS option B end to end: two ASes of three vpe hosts each
(src/vpe/lab/examples/inter-as-b.yaml).

In each AS a PE (h1 with VM red1 in AS 65000, h4 with VM red4 in AS 65001), a route reflector
(rr1, rr2: vpe agents whose PE and ASBR are route reflector clients) and an ASBR (asbr1, asbr2:
vpe agents with forwarders and no VMs). The ASBRs peer over eBGP and re-advertise every VPN
route with next hop self and a local label (relabel); the route reflectors pass routes on
unchanged. Packets from red1 to red4 cross h1 -> asbr1 -> asbr2 -> h4 (never a reflector),
their label swapped at each ASBR; ping and a TCP transfer work both ways, and a capture of the
underlay shows the three legs of each direction with their three labels.
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

pytestmark = [*E2E, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def inter_as_lab() -> Iterator[RunningLab]:
    yield from example_lab("inter-as-b", "b")


def test_r10_2_option_b_e2e_ping_tcp_and_swapped_labels(inter_as_lab: RunningLab) -> None:
    lab = inter_as_lab
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    h1, rr1, a1, a2, rr2, h4 = (lab.underlay(n) for n in ("h1", "rr1", "asbr1", "asbr2", "rr2", "h4"))
    # the PE's one session is with its route reflector, which has it as a client
    (sess,) = lab.api("h1", "/v1/bgp/neighbors")
    assert sess["address"] == rr1 and sess["state"] == "Established", sess
    assert lab.api("rr1", f"/v1/bgp/neighbors/{h1}")["route_reflector_client"] is True
    # each PE sees the other AS's VM via its own ASBR (next hop self, the ASBR's label),
    # reflected unchanged by its route reflector
    (via_a1,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert via_a1["next_hop"] == a1
    (via_a2,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r1}/32"]
    assert via_a2["next_hop"] == a2
    (own4,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r4}/32"]
    (own1,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r1}/32"]
    swapped = {n: lab.counters(n).get("swapped", 0) for n in ("asbr1", "asbr2")}

    caps = [lab.capture("underlay", f"p-{n}", timeout=10) for n in ("asbr1", "asbr2", "rr1", "rr2")]
    try:
        there = lab.ping("red1", r4, count=3)
        back = lab.ping("red4", r1, count=3)
    finally:
        frames = [f for c in caps for f in parse_frames(c.finish())]
    for r in (there, back):
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    legs: dict[tuple[str, str], set[int]] = {}
    for t in tunnel_packets(frames):
        if inner_addresses(t.inner) in ((r1, r4), (r4, r1)):
            legs.setdefault((t.src, t.dst), set()).add(t.label)
    on_wire = {a for leg in legs for a in leg}
    assert rr1 not in on_wire and rr2 not in on_wire, legs  # the reflectors carry no packets
    assert set(legs) == {(h1, a1), (a1, a2), (a2, h4), (h4, a2), (a2, a1), (a1, h1)}, legs
    # red1 -> red4: h1 sends with asbr1's label; asbr1 swaps it for asbr2's; asbr2 for h4's
    # own label of red4 (each agent allocates from its own label space, so two legs may
    # carry equal numbers); red4 -> red1 the same in reverse
    assert legs[(h1, a1)] == set(via_a1["labels"])
    assert len(legs[(a1, a2)]) == 1
    assert legs[(a2, h4)] == set(own4["labels"])
    assert legs[(h4, a2)] == set(via_a2["labels"])
    assert len(legs[(a2, a1)]) == 1
    assert legs[(a1, h1)] == set(own1["labels"])
    for n in ("asbr1", "asbr2"):  # 3 requests + 3 replies of each ping, swapped at each ASBR
        assert lab.counters(n)["swapped"] - swapped[n] >= 12, n

    lab.tcp_transfer("red4", "red1", r1, 200_000)
    lab.tcp_transfer("red1", "red4", r4, 200_000, port=5002)
