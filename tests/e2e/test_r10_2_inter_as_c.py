"""R10.2 Inter-AS option C end to end: two ASes of three vpe hosts each
(src/vpe/lab/examples/inter-as-c.yaml).

In each AS a PE (h1 with VM red1, h4 with VM red4), a route reflector (rr1, rr2) and an ASBR
(asbr1, asbr2). The PE loopbacks travel as labeled unicast PE <-> ASBR <-> ASBR <-> PE (the
ASBRs: next hop self, a label of their own); the VPN routes travel PE -> RR (the PE is its
client) -> multihop eBGP between the route reflectors, next hop and label unchanged -> RR -> PE.
A packet from red1 to red4 leaves h1 with two labels (asbr1's labeled-unicast label for h4's
loopback outside, h4's VPN label inside); asbr1 and asbr2 swap the outer label and keep the
inner one; h4 pops its own loopback label and delivers. Ping and a TCP transfer work both
ways; the capture shows the two-label stack on every leg of both directions.
On the ebpf driver every one of those steps runs in the kernel programs (their counters), no
data packet is punted to the userspace path.
"""

from __future__ import annotations

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

pytestmark = [*E2E, pytest.mark.timeout(150)]


@pytest.fixture(scope="module", params=DRIVERS)
def inter_as_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    yield from example_lab("inter-as-c", "c", driver=request.param)


#: the label stack step of each host, done in the kernel on the ebpf driver (fast path counters)
KERNEL_STEPS = {"h1": "pushed", "asbr1": "swapped", "asbr2": "swapped", "h4": "popped"}


def kernel_work(lab: RunningLab) -> dict[str, tuple[int, int]]:
    """Per host: (its label stack step done by the kernel, data frames punted to the userspace
    path: ARP and ND, which the slow path always answers, do not count)."""
    out = {}
    for host, step in KERNEL_STEPS.items():
        c = lab.counters(host)["ebpf"]
        punted = sum(n for why, n in c["punts"].items() if why not in ("not-ip", "neighbor-discovery"))
        out[host] = (c["fast_path"].get(step, 0), punted)
    return out


def _lu_label(lab: RunningLab, asbr: str, pe: str, loopback: str) -> int:
    """The labeled-unicast label ``asbr`` advertises to ``pe`` for ``loopback``/32."""
    sent = lab.api(asbr, f"/v1/bgp/neighbors/{lab.underlay(pe)}/advertised-routes?family=ipv4-labeled-unicast")
    (route,) = [r for r in sent["routes"] if r.get("prefix") == f"{loopback}/32"]
    assert route["next_hop"] == lab.underlay(asbr), route
    (label,) = route["labels"]
    return int(label)


def _two_label_next_hop(lab: RunningLab, pe: str, deadline: float) -> None:
    """Wait until ``pe``'s FIB has a labeled-unicast (two-label) next hop: converged VPN routes
    are not enough, until the loopback is learned as labeled unicast the PE reaches the other
    PE directly over the shared underlay (one label)."""
    while '"outer"' not in str(lab.api(pe, "/v1/fib")).replace("'", '"'):
        assert time.monotonic() < deadline, f"{pe}'s FIB never got a labeled-unicast (two-label) next hop"
        time.sleep(0.2)


def test_r10_2_option_c_e2e_two_label_stack_ping_tcp(inter_as_lab: RunningLab) -> None:
    lab = inter_as_lab
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    h1, rr1, a1, a2, rr2, h4 = (lab.underlay(n) for n in ("h1", "rr1", "asbr1", "asbr2", "rr2", "h4"))
    # the VPN routes came through the route reflectors (rr1 has h1 as its client, and an
    # eBGP session with rr2), unchanged: the egress PE's own next hop and label
    assert lab.api("rr1", f"/v1/bgp/neighbors/{h1}")["route_reflector_client"] is True
    assert lab.api("rr1", f"/v1/bgp/neighbors/{rr2}")["state"] == "Established"
    from_rr1 = lab.api("h1", f"/v1/bgp/neighbors/{rr1}/received-routes?family=vpnv4")["routes"]
    assert any(r.get("prefix") == f"{r4}/32" for r in from_rr1), from_rr1
    (remote4,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r4}/32"]
    (own4,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert remote4["next_hop"] == h4 and remote4["labels"] == own4["labels"]
    (remote1,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r1}/32"]
    (own1,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r1}/32"]
    assert remote1["next_hop"] == h1 and remote1["labels"] == own1["labels"]
    deadline = time.monotonic() + 30
    for pe in ("h1", "h4"):
        _two_label_next_hop(lab, pe, deadline)
    # the outer label each PE pushes: its ASBR's labeled-unicast label for the other loopback
    lu_a1 = _lu_label(lab, "asbr1", "h1", h4)
    lu_a2 = _lu_label(lab, "asbr2", "h4", h1)

    ebpf = lab.driver == "ebpf"
    if ebpf:  # the VMs' neighbour entries first: ARP is the slow path's
        lab.ping("red1", r4, count=1)
        lab.ping("red4", r1, count=1)
    before = kernel_work(lab) if ebpf else {}
    caps = [lab.capture("underlay", f"p-{n}", timeout=10) for n in ("asbr1", "asbr2", "rr1", "rr2")]
    try:
        there = lab.ping("red1", r4, count=3)
        back = lab.ping("red4", r1, count=3)
    finally:
        frames = [f for c in caps for f in parse_frames(c.finish())]
    for r in (there, back):
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
        if not bottom & 0x100 or inner_addresses(t.inner[4:]) not in ((r1, r4), (r4, r1)):
            continue
        legs.setdefault((t.src, t.dst), set()).add((t.label, bottom >> 12))
    on_wire = {a for leg in legs for a in leg}
    assert rr1 not in on_wire and rr2 not in on_wire, legs  # the reflectors carry no packets
    there_legs, back_legs = [(h1, a1), (a1, a2), (a2, h4)], [(h4, a2), (a2, a1), (a1, h1)]
    assert set(legs) == set(there_legs + back_legs), legs
    stacks: dict[tuple[str, str], tuple[int, int]] = {}
    for leg in there_legs + back_legs:
        (stacks[leg],) = legs[leg]
    # the VPN label travels unchanged under the outer one, on every leg
    for leg in there_legs:
        assert stacks[leg][1] == own4["labels"][0], (leg, stacks[leg])
    for leg in back_legs:
        assert stacks[leg][1] == own1["labels"][0], (leg, stacks[leg])
    # the ingress PE pushes its ASBR's labeled-unicast label outside
    assert stacks[(h1, a1)][0] == lu_a1 and stacks[(h4, a2)][0] == lu_a2, stacks
    # the ASBRs swap the outer label: what arrives at the egress PE is the label the other
    # ASBR advertised for it, the egress PE's own loopback label as asbr2 / asbr1 learned it
    assert stacks[(a2, h4)][0] == _lu_label(lab, "h4", "asbr2", h4), stacks
    assert stacks[(a1, h1)][0] == _lu_label(lab, "h1", "asbr1", h1), stacks
    assert stacks[(a1, a2)][0] == _lu_label(lab, "asbr2", "asbr1", h4), stacks
    assert stacks[(a2, a1)][0] == _lu_label(lab, "asbr1", "asbr2", h1), stacks

    lab.tcp_transfer("red4", "red1", r1, 200_000)
    lab.tcp_transfer("red1", "red4", r4, 200_000, port=5002)
