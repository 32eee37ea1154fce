"""Benchmark: a VM's BGP session through its port (PE-CE BGP, ``via = "port"``) at scale.

    sudo .venv/bin/python bench/pe_ce_port.py [--prefixes 10000] [--runs 3] \\
        [--driver userspace|ebpf]

The lab is tests/e2e/labs/pe_ce.yaml: the VM ce1 on h1 runs BIRD and peers over eBGP
(IPv6 unicast) with its gateway, a session the forwarder carries between the VM's port
and the agent (docs/inter-as.md); red2 on h2 is another host of the VPN. BIRD announces
``--prefixes`` IPv6 /64s (2001:db8:99:N::/64). Each run enables BIRD's session and
measures:

* ``established_s``: until BIRD's session is up (through the forwarder);
* ``in_vrf_s``: until h1's VRF holds every prefix (the session's UPDATEs carried by the
  forwarder's local interface, decoded, imported into the VRF);
* ``remote_s``: until h2's VRF holds them all (exported as VPN routes, reflected, imported);
* ``withdrawn_s``: after BIRD's session is disabled, until h2's VRF holds none;
* ``segments``: TCP segments the forwarder carried each way (its ``local_sessions`` counters).

One JSON line per run, then the medians. Run it under the e2e lock (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "e2e")]

from e2e_lab import Bird, RunningLab, start_lab  # noqa: E402

CONF = """
router id 192.0.2.10;
protocol device {{ }}
protocol static s6 {{
  ipv6;
{routes}
}}
protocol bgp v6 {{
  disabled;
  local 2001:db8:10::10 as 65010; neighbor 2001:db8:10::1 as 65000;
  ipv6 {{ import none; export where source = RTS_STATIC; }};
}}
"""


def config(n: int) -> str:
    routes = "\n".join(f"  route 2001:db8:99:{i:x}::/64 unreachable;" for i in range(n))
    return CONF.format(routes=routes)


def v6_routes(lab: RunningLab, host: str) -> int:
    for v in lab.api(host, "/v1/vpns"):
        if v["name"] == "red":
            return int(v["routes"]["ipv6"])
    return 0


def until(cond: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"not in {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def one_run(lab: RunningLab, bird: Bird, n: int, base: dict[str, int]) -> dict[str, Any]:
    before = dict(lab.counters("h1")["local_sessions"])
    t0 = time.monotonic()
    bird.birdc("enable v6")
    established = until(lambda: bird.established("v6"), 60, "BIRD's session")
    in_vrf = until(lambda: v6_routes(lab, "h1") >= base["h1"] + n, 300, "the prefixes in h1's VRF")
    until(lambda: v6_routes(lab, "h2") >= base["h2"] + n, 300,
          f"the prefixes in h2's VRF (h1 {v6_routes(lab, 'h1')}, h2 {v6_routes(lab, 'h2')}, base {base})")
    total = time.monotonic() - t0
    after = lab.counters("h1")["local_sessions"]
    bird.birdc("disable v6")
    withdrawn = until(lambda: v6_routes(lab, "h2") <= base["h2"], 300, "the withdrawal at h2")
    return {"prefixes": n, "driver": lab.driver, "established_s": round(established, 3),
            "in_vrf_s": round(established + in_vrf, 3), "remote_s": round(total, 3),
            "withdrawn_s": round(withdrawn, 3),
            "segments": {k: after[k] - before.get(k, 0) for k in after}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefixes", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--driver", default="userspace")
    a = ap.parse_args()
    if not 1 <= a.prefixes <= 65536:
        ap.error("--prefixes: 1..65536")
    lab = start_lab("pe_ce", driver=a.driver)
    bird = None
    rows = []
    try:
        base = {h: v6_routes(lab, h) for h in ("h1", "h2")}
        bird = Bird(lab, "ce1", config(a.prefixes))
        time.sleep(1.0)  # BIRD reads its configuration
        for _ in range(a.runs):
            row = one_run(lab, bird, a.prefixes, base)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if bird is not None:
            bird.stop()
        lab.teardown()
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("established_s", "in_vrf_s", "remote_s", "withdrawn_s")}
    print(json.dumps({"medians": med, "prefixes": a.prefixes, "driver": a.driver, "runs": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
