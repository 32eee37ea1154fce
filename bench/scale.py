"""Benchmark: scale (issue 15) - constant work per change, many tenants, many clients.

Part 1, one agent (``vpe agent``, dataplane none, its SQLite state file on
disk) driven through its REST API on the Unix socket, one request at a
time, as an orchestrator would:

* baseline: a fresh agent with 10 VPN instances: 1,000 create+delete pairs
  of an eleventh one, then 1,000 port attaches over the 10;
* scale: a fresh agent: ``--vpns`` VPN instances (default 10,000), then
  ``--ports`` ports (default 50,000) spread over them; then, at that size,
  1,000 create+delete pairs, 1,000 detaches and 1,000 attaches again;
* restart: SIGTERM, start again with the same state file, time until the
  API answers with every VPN instance and port restored.

Printed: the rate (operations per second) of the first and the last 1,000
operations of each kind, the baseline rates at 10 VRFs, the rates at
scale, the agent's peak RSS and the restart time. Targets (issue 15):
last rate >= 0.8 x first, and the rate at 10 VRFs reached at 10,000.

Part 2, reflection: one route reflector and ``--clients`` simulated vPE
clients (default 1,000; one process, one BGP session per client from its
own 127.0.0.0/8 address, as TESTBED.md allows), each a member of
``--member-of`` (10) of ``--client-vpns`` (1,000) VPNs, announcing
``--routes-per-vrf`` (10) VPN-IPv4 routes per VRF and one RTC route per
VPN it is a member of. Printed: the time from the first client's OPEN
until every client holds exactly the routes of its VPNs (those of the other
members), routes a client received that it did not ask for (must be 0),
and the reflector's peak RSS; the same run with GoBGP (``gobgpd``) as the
reflector when it is installed.

Each part prints one JSON line. Run it under the machine's e2e lock (it
starts agents and binds loopback addresses):

    flock /tmp/vpe-e2e.lock .venv/bin/python bench/scale.py [--part 1|2|all] [--vpns N] [--ports N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx

BLOCK = 1000  # operations per measured block


# -- part 1: one agent through its API ---------------------------------------------------

AGENT_CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[api]
socket = "{sock}"
"""


class Agent:
    """A ``vpe agent`` process with its own state directory and API socket."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = workdir / "api.sock"
        self.cfg = workdir / "agent.toml"
        self.cfg.write_text(AGENT_CONFIG.format(state=workdir / "state", sock=self.sock))
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None

    def start(self, timeout: float = 600.0) -> float:
        """Start; seconds until the API answers."""
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        t0 = time.perf_counter()
        log = (self.dir / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from vpe.cli.main import app; app()", "agent", "-c", str(self.cfg),
             "--log-level", "warning"],
            stdout=log, stderr=log, env=os.environ.copy(),
        )
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), base_url="http://vpe",
                                   timeout=120.0)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.proc.returncode}; see {self.dir}/agent.log")
            if self.sock.exists():
                with contextlib.suppress(httpx.TransportError):
                    if self.client.get("/v1/vpns", params={"limit": 1}).status_code == 200:
                        return time.perf_counter() - t0
            time.sleep(0.02)
        raise RuntimeError(f"the agent's API did not answer within {timeout} s")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def peak_rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def call(self, method: str, path: str, body: Any = None, ok: int = 200, **params: Any) -> Any:
        assert self.client is not None
        r = self.client.request(method, path, json=body, params=params or None)
        if r.status_code != ok:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text}")
        return r.json() if r.content else None


def _vpn(i: int) -> dict[str, Any]:
    return {"name": f"vpn{i:05d}", "route_targets": [f"65000:{i + 1}"]}


def _port(n: int, vpn: int, slot: int) -> dict[str, Any]:
    return {"name": f"port{n:06d}", "ifname": f"tap{n:06d}", "vpn": f"vpn{vpn:05d}",
            "mac": f"02:00:{n >> 24 & 255:02x}:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
            "ips": [f"192.0.2.{10 + slot % 240}/24", f"2001:db8:1::{slot + 10:x}/64"]}


def _timed(ops: Iterator[Callable[[], object]]) -> list[float]:
    """Run each operation; the duration of each."""
    out = []
    for op in ops:
        t0 = time.perf_counter()
        op()
        out.append(time.perf_counter() - t0)
    return out


def _rate(durations: list[float]) -> float:
    return round(len(durations) / sum(durations), 1) if durations else 0.0


def _first_last(durations: list[float]) -> dict[str, float]:
    first, last = durations[:BLOCK], durations[-BLOCK:]
    return {"first": _rate(first), "last": _rate(last),
            "last_over_first": round(_rate(last) / _rate(first), 2) if first else 0.0,
            "median_ms_first": round(statistics.median(first) * 1e3, 2),
            "median_ms_last": round(statistics.median(last) * 1e3, 2)}


def _churn(agent: Agent, base: int, n: int) -> tuple[list[float], list[float]]:
    """``n`` create+delete pairs of one more VPN instance: (create durations, delete durations)."""
    creates, deletes = [], []
    for k in range(n):
        spec = {"name": f"churn{k}", "route_targets": [f"65001:{base + k}"]}
        t0 = time.perf_counter()
        agent.call("POST", "/v1/vpns", spec, ok=201)
        t1 = time.perf_counter()
        agent.call("DELETE", f"/v1/vpns/churn{k}", ok=204)
        t2 = time.perf_counter()
        creates.append(t1 - t0)
        deletes.append(t2 - t1)
    return creates, deletes


def part1(vpns: int, ports: int, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"part": 1, "vpns": vpns, "ports": ports}
    # baseline: 10 VRFs
    base = Agent(workdir / "base")
    base.start()
    try:
        for i in range(10):
            base.call("POST", "/v1/vpns", _vpn(i), ok=201)
        c, d = _churn(base, 0, BLOCK)
        a = _timed(
            (lambda n=n: base.call("POST", "/v1/ports", _port(n, n % 10, n // 10), ok=201)) for n in range(BLOCK)
        )
        result["at_10_vrfs"] = {"create": _rate(c), "delete": _rate(d), "attach": _rate(a)}
    finally:
        base.stop()
    # scale
    agent = Agent(workdir / "scale")
    agent.start()
    try:
        created = _timed((lambda i=i: agent.call("POST", "/v1/vpns", _vpn(i), ok=201)) for i in range(vpns))
        attached = _timed(
            (lambda n=n: agent.call("POST", "/v1/ports", _port(n, n % vpns, n // vpns), ok=201))
            for n in range(ports)
        )
        result["create"] = _first_last(created)
        result["attach"] = _first_last(attached)
        c, d = _churn(agent, 0, BLOCK)
        last = range(ports - BLOCK, ports)
        det = _timed((lambda n=n: agent.call("DELETE", f"/v1/ports/port{n:06d}", ok=204)) for n in last)
        att = _timed(
            (lambda n=n: agent.call("POST", "/v1/ports", _port(n, n % vpns, n // vpns), ok=201)) for n in last
        )
        result["at_scale"] = {"create": _rate(c), "delete": _rate(d), "detach": _rate(det), "attach": _rate(att)}
        t0 = time.perf_counter()
        page = agent.call("GET", "/v1/vpns", offset=vpns // 2, limit=10)
        result["list_page_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        assert len(page) == 10
        result["peak_rss_mib"] = round(agent.peak_rss_mib(), 1)
        agent.stop()
        restart = agent.start()
        last_vpn = agent.call("GET", "/v1/vpns", offset=vpns - 1, limit=10)
        last_port = agent.call("GET", "/v1/ports", offset=ports - 1, limit=10)
        if len(last_vpn) != 1 or len(last_port) != 1:
            raise RuntimeError(f"restart restored {len(last_vpn)} / {len(last_port)} at the end of the lists")
        result["restart_s"] = round(restart, 2)
        result["peak_rss_after_restart_mib"] = round(agent.peak_rss_mib(), 1)
    finally:
        agent.stop()
    ten = result["at_10_vrfs"]
    result["targets_met"] = {
        "create_last_over_first": result["create"]["last_over_first"] >= 0.8,
        "attach_last_over_first": result["attach"]["last_over_first"] >= 0.8,
        "create_rate_of_10_at_scale": result["at_scale"]["create"] >= 0.8 * ten["create"],
        "attach_rate_of_10_at_scale": result["at_scale"]["attach"] >= 0.8 * ten["attach"],
    }
    return result


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("1", "2", "all"), default="all")
    ap.add_argument("--vpns", type=int, default=10_000)
    ap.add_argument("--ports", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--client-vpns", type=int, default=1000)
    ap.add_argument("--member-of", type=int, default=10)
    ap.add_argument("--routes-per-vrf", type=int, default=10)
    ap.add_argument("--reflectors", default="vpe,gobgp", help="comma-separated: vpe, gobgp")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vpe-scale-"))
    try:
        if args.part in ("1", "all"):
            print(json.dumps(part1(args.vpns, args.ports, workdir / "part1")), flush=True)
        if args.part in ("2", "all"):
            for rr in args.reflectors.split(","):
                res = part2(rr.strip(), args.clients, args.client_vpns, args.member_of, args.routes_per_vrf,
                            workdir / f"part2-{rr.strip()}")
                print(json.dumps(res), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
