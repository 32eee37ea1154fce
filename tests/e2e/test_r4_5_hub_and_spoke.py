"""R4.5: hub-and-spoke. The spokes (spoke1 on h1, spoke2 on h2) export RT 301 and
import only the hub's RT 302; the hub VRF (h3) imports 301 and exports 302:
the hub VM's own address and a static route for the spokes' range
203.0.113.208/28 via the hub VM, with per-endpoint labels (a packet for it
is handed to the hub VM, no lookup in the hub VRF). The hub VM forwards
(ip_forward=1) and may source the spokes' addresses (allowed pairs). So
spoke-to-spoke traffic goes spoke -> h3 -> hub VM -> h3 -> other spoke.
Isolated and overlapping VPNs (the other half of R4.5) are R4.1's test.
"""

from __future__ import annotations

import re

import pytest
from e2e_lab import E2E, RunningLab, parse_frames

pytestmark = [*E2E, pytest.mark.timeout(60)]


def test_r4_5_hub_and_spoke_via_hub_vm(main_lab: RunningLab) -> None:
    """R4.5: spoke1 <-> spoke2 works only through the hub VM:
    * the spokes' VRFs hold no route to each other, only the hub's range route
      whose next hop is h3;
    * a TTL-3 probe from spoke1 to spoke2 expires at the hub VM (203.0.113.197
      answers Time Exceeded), a TTL-1 probe at spoke1's own vPE;
    * replies come back with TTL 59: five routed hops (h1, h3, hub, h3, h2);
    * a capture on the hub VM's interface sees each echo request and reply
      twice (in from one spoke, out toward the other)."""
    lab = main_lab
    s1, s2, hub = lab.ip4("spoke1"), lab.ip4("spoke2"), lab.ip4("hub")
    for host, own, other in (("h1", s1, s2), ("h2", s2, s1)):
        table = lab.api(host, "/v1/vpns/spokes")["table"]
        assert f"{own}/32" in table and f"{other}/32" not in table
        agg = table["203.0.113.208/28"]
        assert [e["next_hop"] for e in agg] == [lab.underlay("h3")]

    r = lab.ping("spoke1", s2, ttl=1)
    assert "From 203.0.113.209" in r.stdout and "Time to live exceeded" in r.stdout, r.stdout
    r = lab.ping("spoke1", s2, ttl=3)
    assert f"From {hub}" in r.stdout and "Time to live exceeded" in r.stdout, r.stdout

    cap = lab.capture("hub", "eth0", timeout=10)
    try:
        r1 = lab.ping("spoke1", s2, count=3)
        r2 = lab.ping("spoke2", s1, count=3)
    finally:
        frames = parse_frames(cap.finish())
    for r in (r1, r2):
        assert r.returncode == 0, r.stdout
        assert set(re.findall(r"ttl=(\d+)", r.stdout)) == {"59"}, r.stdout
    # ICMP echo requests/replies between the spokes as seen at the hub VM
    seen: dict[tuple[str, str, int, int], int] = {}
    for f in frames:
        if f.ethertype == 0x0800 and f.data[23] == 1:
            src, dst = ".".join(map(str, f.data[26:30])), ".".join(map(str, f.data[30:34]))
            key = (src, dst, f.data[34], f.pkttype)
            seen[key] = seen.get(key, 0) + 1
    for a, b in ((s1, s2), (s2, s1)):
        for icmp_type in (8, 0):
            assert seen.get((a, b, icmp_type, 0), 0) >= 3, (a, b, icmp_type, seen)  # in from the vPE
            assert seen.get((a, b, icmp_type, 4), 0) >= 3, (a, b, icmp_type, seen)  # out, forwarded
