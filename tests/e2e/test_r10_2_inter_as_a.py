"""R10.2 Inter-AS option A end to end: back-to-back VRFs (src/vpe/lab/examples/inter-as-a.yaml).

Two ASes of three vpe hosts each: h1 (AS 65000) and h4 (AS 65001) are PEs with VMs red1 and
red4 in VPN red, rr1 and rr2 their ASes' route reflectors, asbr1 and asbr2 vpe ASBRs whose
VRFs red are joined by the link "ab" (a veth pair, a port of VRF red at each end). Each ASBR's VRF has the other as an eBGP neighbor reached through that port
(``via = "port"``): the session's TCP crosses both forwarders, which carry it to their
agents. Ping and a TCP transfer work both ways; on the link the packets are plain IP (no
label crosses the AS boundary) and the BGP session is seen between the two link addresses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2e_lab import DRIVERS, E2E, RunningLab, example_lab, parse_frames

pytestmark = [*E2E, pytest.mark.timeout(150)]

A1, A2 = "203.0.113.1", "203.0.113.2"


@pytest.fixture(scope="module", params=DRIVERS)
def option_a_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    yield from example_lab("inter-as-a", "a", converge_timeout=90.0, driver=request.param)


def _vrf_neighbor(lab: RunningLab, host: str) -> dict:  # type: ignore[type-arg]
    """The one VRF neighbor of ``host`` (the session through the link's port)."""
    rows = [n for n in lab.api(host, "/v1/bgp/neighbors") if "link ab" in n.get("description", "")]
    assert len(rows) == 1, rows
    return rows[0]  # type: ignore[no-any-return]


def test_r10_2_option_a_e2e_sessions_through_the_vrf_ports(option_a_lab: RunningLab) -> None:
    lab = option_a_lab
    for host in ("asbr1", "asbr2"):
        n = _vrf_neighbor(lab, host)
        assert n["state"] == "Established", n
        # the agent sees its CE at an address of the session prefix, on its forwarder's
        # local interface: the forwarder carried the session to and from the port
        assert n["address"].startswith("198.19.179."), n
        c = lab.counters(host)["local_sessions"]
        assert c["to_local"] > 0 and c["from_local"] > 0, c
    # each PE learns the other AS's VM from its own ASBR (option A: the ASBR's own next hop,
    # a label of its own; the other AS's AS path came through the CE session)
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    (via1,) = lab.api("h1", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert via1["next_hop"] == lab.underlay("asbr1"), via1
    (via4,) = lab.api("h4", "/v1/vpns/red")["table"][f"{r1}/32"]
    assert via4["next_hop"] == lab.underlay("asbr2"), via4
    # on the ASBR, the other AS's VM is routed to the CE at the link's far end
    (on_a1,) = lab.api("asbr1", "/v1/vpns/red")["table"][f"{r4}/32"]
    assert on_a1["next_hop"] == A2, on_a1
    # the PEs peer with their route reflector only; the reflectors carry the VPN routes
    assert [n["address"] for n in lab.api("h1", "/v1/bgp/neighbors")] == [lab.underlay("rr1")]
    assert [n["address"] for n in lab.api("h4", "/v1/bgp/neighbors")] == [lab.underlay("rr2")]


def test_r10_2_option_a_e2e_ping_and_tcp_across_the_boundary(option_a_lab: RunningLab) -> None:
    lab = option_a_lab
    r1, r4 = lab.ip4("red1"), lab.ip4("red4")
    cap = lab.capture("asbr1", "ln-ab", timeout=15)
    try:
        deadline = time.monotonic() + 20
        while not lab.reaches("red1", r4) and time.monotonic() < deadline:
            time.sleep(0.5)
        r = lab.ping("red1", r4, count=3)
        r_back = lab.ping("red4", r1, count=3)
    finally:
        frames = parse_frames(cap.finish())
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    assert r_back.returncode == 0 and " 0% packet loss" in r_back.stdout, r_back.stdout + r_back.stderr
    ip_frames = [f.data for f in frames if f.ethertype == 0x0800]
    pairs = {(".".join(map(str, d[26:30])), ".".join(map(str, d[30:34]))) for d in ip_frames}
    # plain IP between the VMs on the link: option A carries no label across the boundary
    assert (r1, r4) in pairs and (r4, r1) in pairs, pairs
    assert not [f for f in frames if f.ethertype in (0x8847, 0x8848)]
    # the ASBRs' BGP session runs over the same link, between the two link addresses
    bgp = [d for d in ip_frames if d[23] == 6 and 179 in (int.from_bytes(d[34:36], "big"),
                                                             int.from_bytes(d[36:38], "big"))]
    assert {(".".join(map(str, d[26:30])), ".".join(map(str, d[30:34]))) for d in bgp} <= {(A1, A2), (A2, A1)}
    lab.tcp_transfer("red4", "red1", r1, 200_000)
    lab.tcp_transfer("red1", "red4", r4, 200_000)
