"""R10.3: aggregation, with real packets (lab ``labs/aggregate.yaml``, both drivers).

h1's VRF "agg" imports every specific and advertises 192.0.2.0/24 with
``summary_only`` and 198.51.100.0/24: h2 ("src", b1) and h3 ("far", c1)
import only h1's routes, so they hold these aggregates and no specific
of them. b1 on h2 sends to

* 192.0.2.10 (a1, on h1 itself, whose /32 is withheld): h1 gets the packet
  with its aggregate label, looks it up in the VRF and delivers it;
* 192.0.2.30 (c1, on h3, a specific only h1 imports): h1 looks it up and
  re-tunnels it once to h3 (counted ``redirected`` at h1), which delivers it.

Both arrive (UDP listeners), and a capture on h1's underlay shows the
packet for c1 arriving with h1's aggregate label and leaving toward h3 with
h3's label, inner TTL one lower, never back toward h2. Ping works both
ways (c1's replies take h1's other aggregate, 198.51.100.0/24, the same way).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_lab import DRIVERS, E2E, RunningLab, netns, parse_frames, start_lab, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=DRIVERS)
def agg_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    why = netns.ip_available()
    if why is not None:
        pytest.skip(f"e2e tests need root and `ip netns`: {why}")
    lab = start_lab("aggregate", driver=request.param)
    try:
        yield lab
    finally:
        lab.teardown()


def _received(lab: RunningLab, vm: str, dst: str, payload: str) -> list[list[str]]:
    import json

    listener = lab.listen(vm, 7333, count=3, timeout=8.0)
    lab.send_udp("b1", dst, 7333, payload, count=3)
    got: list[list[str]] = json.loads(listener.finish().strip().splitlines()[-1])
    return got


def test_r10_3_remote_reaches_hosts_covered_only_by_the_aggregate(agg_lab: RunningLab) -> None:
    lab = agg_lab
    h1 = lab.underlay("h1")
    # h2 holds the aggregate (next hop h1, h1's VRF label) and none of its specifics
    table = lab.api("h2", "/v1/vpns/src")["table"]
    (agg,) = table["192.0.2.0/24"]
    assert agg["next_hop"] == h1
    assert "192.0.2.10/32" not in table and "192.0.2.30/32" not in table, sorted(table)
    h1_labels = {e["label"]: e for e in lab.api("h1", "/v1/fib")["labels"]}
    assert h1_labels[agg["labels"][0]]["kind"] == "vrf" and h1_labels[agg["labels"][0]]["target"] == "agg"

    # a1 sits on h1 itself: the aggregate label's lookup delivers it
    got = _received(lab, "a1", "192.0.2.10", "to-a1")
    assert [g[0] for g in got] == ["to-a1"] * 3 and {g[1] for g in got} == {"198.51.100.20"}

    # c1 sits on h3: h1 re-tunnels once toward it
    before = lab.counters("h1")["vrfs"]["agg"]["redirected"]
    kernel_before = lab.fast_path("h1").get("retunnelled", 0)
    cap = lab.capture("h1", "ul0", timeout=10)
    try:
        got = _received(lab, "c1", "192.0.2.30", "to-c1")
    finally:
        frames = parse_frames(cap.finish())
    assert [g[0] for g in got] == ["to-c1"] * 3 and {g[1] for g in got} == {"198.51.100.20"}
    assert lab.counters("h1")["vrfs"]["agg"]["redirected"] - before >= 3
    if lab.driver == "ebpf":  # the kernel program re-tunnelled them, not the userspace path
        assert lab.fast_path("h1").get("retunnelled", 0) - kernel_before >= 3
    pkts = [p for p in tunnel_packets(frames) if p.inner[16:20] == bytes([192, 0, 2, 30])]
    came = [p for p in pkts if p.dst == h1]
    left = [p for p in pkts if p.src == h1]
    assert len(came) >= 3 and {p.label for p in came} == {agg["labels"][0]} and {p.src for p in came} == {lab.underlay("h2")}
    h3_label = lab.api("h1", "/v1/vpns/agg")["table"]["192.0.2.30/32"][0]["labels"][0]
    assert len(left) >= 3 and {p.dst for p in left} == {lab.underlay("h3")} and {p.label for p in left} == {h3_label}
    # ... and the re-tunnelled copy went on with the inner TTL one lower (no loop back to h2)
    assert all(p.inner[8] == came[0].inner[8] - 1 for p in left)
    assert not [p for p in pkts if p.dst == lab.underlay("h2")]

    # two-way traffic through the aggregate
    for dst in ("192.0.2.10", "192.0.2.30"):
        r = lab.ping("b1", dst, count=2)
        assert r.returncode == 0, r.stdout
