"""Benchmark: N VMs moving between hosts at once under traffic (R9.3, R11.1).

    sudo .venv/bin/python bench/mobility.py [--moves 1,10,100] [--runs 3] \\
        [--driver userspace|ebpf] [--total-rate 5000] [--prefix benchmob]

For each N a lab of three hosts and a vpe route reflector is built under
``--prefix`` (``vpe.lab``, the chosen dataplane driver): N movable VMs
(``vpe.lab.move``: each behind a cable namespace so that its link can be
re-plugged) on h1, ``peer`` on h3, an anchor VM on h2. Each run moves all N
from their host to the other one (h1 -> h2, then back, ...) while ``peer``
streams UDP datagrams with sequence numbers to every one of them
(``--total-rate`` datagrams/s shared by the N streams, at most 1,000 each),
the way an orchestrator moves a rack: prepare all N on the destination,
activate all N there, release all N on the source, each step's API calls
issued concurrently (8 at a time).

One JSON line per run:

* ``lost``: datagrams sent and never received (all streams);
* ``gap_ms``: the longest time between two datagrams of one stream at its
  receiver (the stream's own spacing is ``1000 / rate_pps`` ms);
* ``activate_to_first_ms``: per VM, from the start of its ``activate`` call
  to the first frame the destination host sends it (seen on the cable);
  median and max over the N;
* ``black_holed``: drops on any host for no route, no local route, port
  down, unknown label, no VRF; ``looped``: drops for redirect loop and TTL
  expiry (the forwarders' counters, before/after);
* ``redirected``: packets re-tunnelled by a vPE the VM is not at (the
  destination before ``activate``, the source after ``release``: local
  repair); a lower bound when a VRF's counters restarted;
* ``move_s``: wall time of the whole mass move.

A last line has the medians per N. Everything built is removed at the end,
also on failure. Run it under the e2e lock (the machine is shared).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from vpe.dataplane.channel import FibClient
from vpe.lab import build, netns, traffic
from vpe.lab import move as lab_move
from vpe.lab.layout import Lab
from vpe.lab.topology import VmConfig, parse_topology

PORT = 7300
BLACK_HOLE = ("no-route", "no-local-route", "port-down", "unknown-label", "no-vrf")
LOOP = ("redirect-loop", "ttl-expired")
HOSTS = ("h1", "h2", "h3")


def topology(n: int, driver: str, prefix: str) -> str:
    vms = "\n".join(f"  - {{name: m{i}, host: h1, vpn: mob, ipv4: 198.51.100.{10 + i}/24}}" for i in range(1, n + 1))
    return f"""
prefix: {prefix}
asn: 65000
driver: {driver}
families: [vpnv4]
underlay:
  ipv4: 198.18.0.0/24
route_reflector:
  kind: vpe
  address: 198.18.0.2
hosts:
  - {{name: h1, address: 198.18.0.11}}
  - {{name: h2, address: 198.18.0.12}}
  - {{name: h3, address: 198.18.0.13}}
tenants:
  - name: mob
    vpns:
      - {{name: mob, import: ["65000:500"], export: ["65000:500"]}}
vms:
  - {{name: peer, host: h3, vpn: mob, ipv4: 192.0.2.23/24}}
  - {{name: anchor, host: h2, vpn: mob, ipv4: 192.0.2.22/24}}
{vms}
"""


def api(lab: Lab, host: str, method: str, path: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(lab.node_dir(host) / "vpe.sock")), timeout=15) as c:
        return c.request(method, f"http://vpe{path}")


def drops(lab: Lab) -> dict[str, dict[str, int]]:
    out = {}
    for h in HOSTS:
        with FibClient.connect(str(lab.node_dir(h) / "forwarder.sock"), 5.0) as c:
            cnt = c.counters()
        d = dict(cnt["drops"])
        d["redirected"] = sum(v.get("redirected", 0) for v in cnt.get("vrfs", {}).values())
        out[h] = d
    return out


def grew(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], keys: tuple[str, ...]) -> int:
    """Growth over the hosts (a counter that restarted, as a VRF's does when the
    forwarder re-creates it, counts from 0: a lower bound then)."""
    return sum(max(0, after[h].get(k, 0) - before[h].get(k, 0)) for h in HOSTS for k in keys)


def wait(cond: Any, what: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def converged(lab: Lab, ips: list[str], host: str = "h3") -> bool:
    try:
        have = {r["prefix"] for r in api(lab, host, "GET", "/v1/fib").json().get("routes", [])}
    except (httpx.HTTPError, OSError):
        return False
    return all(f"{ip}/32" in have for ip in ips)


def one_run(lab: Lab, vms: list[VmConfig], src: str, dst: str, rate: float, pool: cf.Executor) -> dict[str, Any]:
    ips = [str(v.ipv4.ip) for v in vms if v.ipv4 is not None]
    cables = [lab_move.cable_ns(lab, v.name) for v in vms]
    before = drops(lab)
    seconds = 3.0 + len(vms) * 0.2  # the stream outlasts the mass move
    rx = traffic.receivers([lab.ns(v.name) for v in vms], PORT, seconds + 30)
    watch = None
    try:
        tx = traffic.stream(lab.ns("peer"), PORT, rate, seconds, ips)
        time.sleep(1.0)
        t0 = time.monotonic()
        list(pool.map(lambda v: lab_move.prepare(lab, v, dst), vms))
        watch = traffic.first_frames(cables, lab_move.uplink(dst), 30)
        started: dict[str, float] = {}

        def activate(v: VmConfig) -> None:
            started[v.name] = time.monotonic()
            lab_move.activate(lab, v.name, dst)

        list(pool.map(activate, vms))
        list(pool.map(lambda v: lab_move.release(lab, v.name, src, hold=1.0), vms))
        move_s = time.monotonic() - t0
        sent = tx.result(timeout=seconds + 60, stop=False)
        time.sleep(0.5)
        got = rx.result()
        first = watch.result()
    finally:
        rx.kill()
        if watch is not None:
            watch.kill()
    after = drops(lab)
    reps = [traffic.report(sent[ip], got[lab.ns(v.name)]) for v, ip in zip(vms, ips, strict=True)]
    a2f = [(first[c] - started[v.name]) * 1000 for v, c in zip(vms, cables, strict=True) if first.get(c) is not None]
    return {
        "sent": sum(r.sent for r in reps),
        "lost": sum(r.lost for r in reps),
        "duplicates": sum(r.duplicates for r in reps),
        "gap_ms": max(r.gap_ms for r in reps),
        "activate_to_first_ms": round(statistics.median(a2f), 2) if a2f else None,
        "activate_to_first_ms_max": round(max(a2f), 2) if a2f else None,
        "no_first_frame": len(vms) - len(a2f),
        "black_holed": grew(before, after, BLACK_HOLE),
        "looped": grew(before, after, LOOP),
        "redirected": grew(before, after, ("redirected",)),
        "drops": {f"{h}:{k}": n - before[h].get(k, 0) for h in HOSTS for k, n in after[h].items()
                  if k != "redirected" and n != before[h].get(k, 0)},
        "move_s": round(move_s, 3),
    }


def bench(n: int, runs: int, driver: str, total_rate: float, prefix: str,
          logs: Path | None = None) -> list[dict[str, Any]]:
    topo = parse_topology(topology(n, driver, prefix), f"bench mobility n={n}")
    lab = build.make_lab(topo, prefix)
    movers = {f"m{i}" for i in range(1, n + 1)}

    def attach(lb: Lab, vm: VmConfig) -> object:
        if vm.name in movers:
            lab_move.make_movable(lb, vm)
        return build.attach_vm(lb, vm)

    out = []
    try:
        t = time.monotonic()
        build.up(lab, attach=attach)
        vms = [v for v in topo.vms if v.name in movers]
        wait(lambda: converged(lab, [str(v.ipv4.ip) for v in vms if v.ipv4 is not None]), "routes at h3", 120)
        print(f"# lab with {n} movable VMs up in {time.monotonic() - t:.1f} s", file=sys.stderr)
        rate = min(1000.0, total_rate / n)
        src, dst = "h1", "h2"
        with cf.ThreadPoolExecutor(8) as pool:
            for i in range(runs):
                r = one_run(lab, vms, src, dst, rate, pool)
                line = {"bench": "mobility", "driver": driver, "moves": n, "run": i + 1, "from": src, "to": dst,
                        "rate_pps": rate, **r}
                print(json.dumps(line), flush=True)
                out.append(line)
                # the source forgets its redirects (hold 1 s), then the VMs can move back
                wait(lambda s=src: all(api(lab, s, "GET", f"/v1/ports/{v.name}").status_code == 404
                                       for v in vms), "the released ports to go", 30)
                src, dst = dst, src
    except BaseException:
        if logs is not None:  # what the processes said, before the lab goes
            dst = logs / f"n{n}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(lab.state_dir, dst, ignore=shutil.ignore_patterns("*.sock", "*.db*"))
            print(f"# logs of the failed run: {dst}", file=sys.stderr)
        raise
    finally:
        build.down(prefix, lab.state_dir)
        for ns in build.prefix_namespaces(prefix):
            netns.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(lab.state_dir, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moves", default="1,10,100", help="comma-separated N (at most 200)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--driver", default="userspace", choices=("userspace", "ebpf"))
    ap.add_argument("--total-rate", type=float, default=5000.0, help="datagrams/s over all streams")
    ap.add_argument("--prefix", default="benchmob")
    ap.add_argument("--logs", type=Path, help="on failure, copy the lab's logs here")
    args = ap.parse_args()
    why = netns.ip_available()
    if why is not None:
        print(f"bench/mobility.py needs root and `ip netns`: {why}", file=sys.stderr)
        return 2
    ns = [int(x) for x in args.moves.split(",") if x.strip()]
    if any(not 1 <= n <= 200 for n in ns):
        ap.error("--moves: each N must be 1..200")
    summary: dict[str, Any] = {"bench": "mobility", "driver": args.driver, "summary": {}}
    for n in ns:
        lines = bench(n, args.runs, args.driver, args.total_rate, args.prefix, args.logs)
        summary["summary"][str(n)] = {
            k: statistics.median(x[k] for x in lines if x[k] is not None)
            for k in ("lost", "gap_ms", "activate_to_first_ms", "black_holed", "looped", "move_s")
            if any(x[k] is not None for x in lines)
        }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

