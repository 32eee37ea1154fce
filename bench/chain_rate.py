"""Benchmark: forwarding rate through a chain of three services vs. the direct path.

    sudo .venv/bin/python bench/chain_rate.py [--driver userspace|ebpf] [--runs 3] [--duration 3]

The service-chain lab of the e2e suite (``tests/e2e/labs/chain.yaml``, built
with ``vpe lab`` under its own prefix, removed at the end, also on failure):
red1 (h1) sends to

* **direct**: red3 (h3), same VPN: one tunnel h1 -> h3;
* **chain**: web1 (h3, VPN internet) through chain ``web``: fw (h2) -> ids (h3)
  -> lb (h1) -> web1, i.e. four tunnels and three namespace hops (Linux
  forwarding in each instance), steered by routes only.

Loads, each the median of ``--runs`` runs, bounded by ``iperf3 -t`` and a
process timeout: TCP throughput (receiver side) and 64-octet UDP packets per
second delivered (offered at ``--rate``). Prints one JSON line: the figures of
both paths and the chain/direct ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "e2e")]

from chain_lab import SERVER, start_chain_lab, three_service_chain, wait_for  # noqa: E402
from e2e_lab import RunningLab  # noqa: E402

PORT = 5399


def iperf(lab: RunningLab, client: str, server: str, dst: str, args: list[str], duration: int) -> dict[str, Any]:
    return lab.iperf(client, server, dst, args, duration, PORT)


def measure(lab: RunningLab, server: str, dst: str, runs: int, duration: int, rate: str) -> dict[str, float]:
    tcp, pps = [], []
    for _ in range(runs):
        end = iperf(lab, "red1", server, dst, [], duration)["end"]
        tcp.append(end["sum_received"]["bits_per_second"] / 1e6)
        end = iperf(lab, "red1", server, dst, ["-u", "-l", "64", "-b", rate], duration)["end"]
        rcvd = end["sum_received"]
        pps.append(max(0, rcvd["packets"] - rcvd["lost_packets"]) / max(rcvd["seconds"], 1e-9))
    return {"tcp_mbit_s": round(statistics.median(tcp), 1), "udp64_pps": round(statistics.median(pps)),
            "tcp_runs": [round(x, 1) for x in tcp], "udp64_runs": [round(x) for x in pps]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--driver", default="userspace", choices=["userspace", "ebpf"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--rate", default="200M", help="offered UDP rate (iperf3 -b)")
    a = ap.parse_args()
    lab = start_chain_lab(a.driver)
    try:
        three_service_chain(lab)
        wait_for(lambda: lab.reaches("red1", SERVER, count=1), "red1 reaches web1 through the chain")
        wait_for(lambda: lab.reaches("red1", lab.ip4("red3"), count=1), "red1 reaches red3")
        direct = measure(lab, "red3", lab.ip4("red3"), a.runs, a.duration, a.rate)
        chain = measure(lab, "web1", SERVER, a.runs, a.duration, a.rate)
    finally:
        lab.teardown()
    print(json.dumps({
        "bench": "chain_rate", "driver": a.driver, "runs": a.runs, "duration_s": a.duration,
        "direct": direct, "chain3": chain,
        "ratio_tcp": round(chain["tcp_mbit_s"] / max(direct["tcp_mbit_s"], 1e-9), 3),
        "ratio_udp64": round(chain["udp64_pps"] / max(direct["udp64_pps"], 1e-9), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
