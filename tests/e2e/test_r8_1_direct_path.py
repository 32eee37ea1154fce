"""R8.1: packets cross the transport once, end-system to end-system, with no
midpoint (the route reflector is control plane only)."""

from __future__ import annotations

import json

import pytest
from e2e_lab import E2E, RunningLab, delta, inner_addresses, parse_frames, tunnel_packets

pytestmark = [*E2E, pytest.mark.timeout(60)]


def test_r8_1_one_underlay_hop_host_to_host(main_lab: RunningLab) -> None:
    """R8.1: while red1 (h1) pings red2 (h2), captures on all four underlay ports
    show every tunnelled packet go straight from h1's underlay interface to
    h2's (outer source/destination IP = the two hosts, Ethernet source and
    destination = their ul0 MACs, outer TTL untouched at 64: no router
    between), as many at h2 as left h1 (each crosses once), and none at h3 or
    at the route reflector. h2 needed no further lookup toward another vPE
    (no 'no-local-route' drop)."""
    lab = main_lab
    h1, h2 = lab.underlay("h1"), lab.underlay("h2")
    mac = {h: json.loads(lab.run(h, "ip", "-j", "link", "show", "ul0", check=True).stdout)[0]["address"]
           for h in ("h1", "h2")}
    before = lab.drops("h2")
    caps = {n: lab.capture("underlay", f"p-{n}", timeout=10) for n in ("h1", "h2", "h3", "rr")}
    try:
        assert lab.reaches("red1", lab.ip4("red2"), count=4)
        got = {n: tunnel_packets(parse_frames(c.finish(settle=0.3 if n == "h1" else 0))) for n, c in caps.items()}
    finally:
        for c in caps.values():
            c.kill()

    def flow(ts: list, a: str, b: str) -> list:
        return [t for t in ts if (t.src, t.dst) == (a, b)
                and set(inner_addresses(t.inner)) == {"192.0.2.11", "192.0.2.12"}]

    for a, b, ma, mb in ((h1, h2, mac["h1"], mac["h2"]), (h2, h1, mac["h2"], mac["h1"])):
        at_src = flow(got["h1" if a == h1 else "h2"], a, b)
        at_dst = flow(got["h2" if b == h2 else "h1"], a, b)
        assert len(at_src) == 4 and len(at_dst) == 4, (a, b, len(at_src), len(at_dst))
        for t in at_src + at_dst:
            assert t.outer_ttl == 64
            assert t.frame.src_mac == ma and t.frame.dst_mac == mb
    assert got["h3"] == [] and got["rr"] == []
    assert delta(before, lab.drops("h2"), "no-local-route") == 0
