"""Benchmark: Inter-AS option C forwarding (two-label stacks) per dataplane driver.

    sudo .venv/bin/python bench/inter_as_c.py [--driver ebpf ...] [--before-src DIR]
        [--runs 3] [--duration 3] [--rate 1G]

The option C lab of the e2e suite (``src/vpe/lab/examples/inter-as-c.yaml``,
built with ``vpe lab`` under its own prefix, removed at the end, also on
failure): red1 (h1) sends to red4 (h4); h1 pushes two labels (the ASBR's
labeled-unicast label above h4's VPN label), asbr1 and asbr2 swap the outer
label and keep the VPN label, h4 pops its loopback label and delivers. The
benchmark waits until h1's FIB holds the two-label next hop.

One lab per configuration, measured in turn in one run (this machine drifts
between runs: compare within one): each ``--driver`` (default: ebpf and
userspace) with this tree's code, and with ``--before-src DIR`` also
"ebpf-before": the ebpf driver with the forwarders and agents of another
source tree (e.g. ``git archive <commit> src | tar -x -C /tmp/before`` and
``--before-src /tmp/before/src``), to show what the kernel label stack paths
changed. Loads, each the median of ``--runs`` runs, bounded by ``iperf3 -t``
and a process timeout: TCP throughput (receiver side) and 64-octet UDP packets
per second delivered (offered at ``--rate``). For ebpf labs, what the kernel
programs did and what they punted during the runs (fast path and punt
counters of each host). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "e2e")]

from e2e_lab import RunningLab, example_lab  # noqa: E402

PORT = 5398
HOSTS = ("h1", "asbr1", "asbr2", "h4")


@contextlib.contextmanager
def lab_for(driver: str, src: str | None) -> Iterator[RunningLab]:
    """The option C lab on ``driver``; ``src``: the source tree its processes run."""
    keep = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = src  # the agents and forwarders the lab starts inherit it
    gen = example_lab("inter-as-c", "bc", driver=driver)
    try:
        lab = next(gen)
    finally:
        if src is not None:
            if keep is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = keep
    try:
        yield lab
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)  # its teardown


def wait_two_labels(lab: RunningLab, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while '"outer"' not in json.dumps(lab.api("h1", "/v1/fib")):
        if time.monotonic() > deadline:
            raise RuntimeError("h1's FIB never got the two-label next hop")
        time.sleep(0.2)
    deadline = time.monotonic() + timeout
    while not lab.reaches("red1", lab.ip4("red4"), count=1):
        if time.monotonic() > deadline:
            raise RuntimeError("red1 does not reach red4")


def iperf(lab: RunningLab, dst: str, args: list[str], duration: int) -> dict[str, Any]:
    return lab.iperf("red1", "red4", dst, args, duration, PORT)


def kernel(lab: RunningLab) -> dict[str, dict[str, Any]]:
    """Per host: the ebpf fast path and punt counters ({} on userspace)."""
    out = {}
    for h in HOSTS:
        e = lab.counters(h).get("ebpf", {})
        out[h] = {"fast_path": dict(e.get("fast_path", {})), "punts": dict(e.get("punts", {}))}
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def measure(lab: RunningLab, runs: int, duration: int, rate: str) -> dict[str, Any]:
    dst = lab.ip4("red4")
    tcp, pps = [], []
    before = kernel(lab)
    for _ in range(runs):
        end = iperf(lab, dst, [], duration)["end"]
        tcp.append(end["sum_received"]["bits_per_second"] / 1e6)
        end = iperf(lab, dst, ["-u", "-l", "64", "-b", rate], duration)["end"]
        rcvd = end["sum_received"]
        pps.append(max(0, rcvd["packets"] - rcvd["lost_packets"]) / max(rcvd["seconds"], 1e-9))
    after = kernel(lab)
    res: dict[str, Any] = {
        "tcp_mbit_s": round(statistics.median(tcp), 1), "udp64_pps": round(statistics.median(pps)),
        "tcp_runs": [round(x, 1) for x in tcp], "udp64_runs": [round(x) for x in pps],
    }  # fmt: skip
    if lab.driver == "ebpf":
        res["kernel"] = {h: {"fast_path": delta(after[h]["fast_path"], before[h]["fast_path"]),
                             "punts": delta(after[h]["punts"], before[h]["punts"])} for h in HOSTS}  # fmt: skip
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--driver", action="append", choices=["userspace", "ebpf"],
                    help="a driver to measure (repeatable; default: ebpf and userspace)")
    ap.add_argument("--before-src", metavar="DIR", help="also ebpf with this source tree's processes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3, help="iperf3 -t seconds (1-30)")
    ap.add_argument("--rate", default="1G", help="offered UDP rate (iperf3 -b)")
    a = ap.parse_args()
    if not 1 <= a.duration <= 30 or not 1 <= a.runs <= 10:
        ap.error("--duration 1-30, --runs 1-10")
    configs: list[tuple[str, str, str | None]] = [(d, d, None) for d in (a.driver or ["ebpf", "userspace"])]
    if a.before_src:
        if not (Path(a.before_src) / "vpe").is_dir():
            ap.error(f"--before-src {a.before_src}: no vpe package there")
        configs.append(("ebpf-before", "ebpf", str(Path(a.before_src).resolve())))
    results: dict[str, Any] = {}
    for name, driver, src in configs:
        with lab_for(driver, src) as lab:
            wait_two_labels(lab)
            results[name] = measure(lab, a.runs, a.duration, a.rate)
        print(f"{name}: tcp {results[name]['tcp_mbit_s']} Mbit/s, udp64 {results[name]['udp64_pps']} pps",
              file=sys.stderr, flush=True)
    out: dict[str, Any] = {"bench": "inter_as_c", "runs": a.runs, "duration_s": a.duration, "rate": a.rate,
                           "cpus": os.cpu_count(), **results}  # fmt: skip
    if "ebpf" in results and "ebpf-before" in results:
        out["ebpf_after_over_before"] = {
            "tcp": round(results["ebpf"]["tcp_mbit_s"] / max(results["ebpf-before"]["tcp_mbit_s"], 1e-9), 2),
            "udp64": round(results["ebpf"]["udp64_pps"] / max(results["ebpf-before"]["udp64_pps"], 1e-9), 2),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
