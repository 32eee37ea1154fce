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


# -- part 2: reflection to simulated vPE clients --------------------------------------------

ASN = 65000
RR_ADDRESS = "127.0.0.1"
RR_PORT = 17990
AFI_IPV4, SAFI_VPN, SAFI_RTC = 1, 128, 132
_MARKER = b"\xff" * 16


def client_address(i: int) -> str:
    return f"127.10.{i >> 8}.{i & 255}"


def client_router_id(i: int) -> str:
    return f"198.19.{i >> 8}.{i & 255}"


def memberships(clients: int, vpns: int, member_of: int) -> list[list[int]]:
    """Client -> the VPNs it is a member of (seeded: the same every run)."""
    import random

    rnd = random.Random(15)
    return [sorted(rnd.sample(range(vpns), member_of)) for _ in range(clients)]


def route_target(vpn: int) -> bytes:
    return struct.pack("!BBHI", 0x00, 0x02, ASN, vpn + 1)  # two-octet-AS route target ASN:vpn+1


def _msg(kind: int, body: bytes) -> bytes:
    return _MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def _attr(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def _open(router_id: str) -> bytes:
    caps = b"".join([
        b"\x01\x04" + struct.pack("!HBB", AFI_IPV4, 0, SAFI_VPN),
        b"\x01\x04" + struct.pack("!HBB", AFI_IPV4, 0, SAFI_RTC),
        b"\x41\x04" + struct.pack("!I", ASN),
        b"\x02\x00",
    ])
    params = b"\x02" + bytes([len(caps)]) + caps
    return _msg(1, struct.pack("!BHH4sB", 4, ASN, 180, IPv4Address(router_id).packed, len(params)) + params)


def _update(attrs: bytes) -> bytes:
    return _msg(2, struct.pack("!HH", 0, len(attrs)) + attrs)


_BASE_ATTRS = _attr(0x40, 1, b"\x00") + _attr(0x40, 2, b"") + _attr(0x40, 5, struct.pack("!I", 100))


def _vpn_update(router_id: str, vpn: int, prefixes: list[bytes], label: int) -> bytes:
    rid = IPv4Address(router_id).packed
    rd = struct.pack("!H4sH", 1, rid, vpn)
    nlri = b"".join(bytes([120]) + struct.pack("!I", (label << 4) | 1)[1:] + rd + p for p in prefixes)
    reach = struct.pack("!HBB", AFI_IPV4, SAFI_VPN, 12) + bytes(8) + rid + b"\x00" + nlri
    return _update(_BASE_ATTRS + _attr(0xC0, 16, route_target(vpn)) + _attr(0x80, 14, reach))


def _rtc_update(router_id: str, vpns: list[int]) -> bytes:
    nlri = b"".join(bytes([96]) + struct.pack("!I", ASN) + route_target(v) for v in vpns)
    reach = struct.pack("!HBB", AFI_IPV4, SAFI_RTC, 4) + IPv4Address(router_id).packed + b"\x00" + nlri
    return _update(_BASE_ATTRS + _attr(0x80, 14, reach))


def _eor(safi: int) -> bytes:
    return _update(_attr(0x80, 15, struct.pack("!HB", AFI_IPV4, safi)))


def _vpn_keys(data: bytes) -> list[bytes]:
    """RD + prefix of every VPN-IPv4 NLRI (one label each) in ``data``."""
    out = []
    i = 0
    while i < len(data):
        plen = data[i]
        n = (plen + 7) // 8
        out.append(data[i + 4 : i + 1 + n])
        i += 1 + n
    return out


class SimClient:
    """One simulated vPE: its session, what it announces, what it received."""

    def __init__(self, i: int, vpns: list[int], expected: set[bytes], routes_per_vrf: int) -> None:
        self.i = i
        self.address = client_address(i)
        self.router_id = client_router_id(i)
        self.vpns = vpns
        self.rts = {route_target(v) for v in vpns}
        self.expected = expected
        self.routes_per_vrf = routes_per_vrf
        self.received: set[bytes] = set()
        self.hits = 0
        self.unwanted = 0  # VPN routes carrying none of our RTs
        self.error = ""
        self.done = asyncio.Event()

    def own_keys(self) -> set[bytes]:
        rid = IPv4Address(self.router_id).packed
        return {struct.pack("!H4sH", 1, rid, v) + _prefix(k) for v in self.vpns for k in range(self.routes_per_vrf)}

    async def run(self, connect_sem: asyncio.Semaphore, port: int) -> None:
        try:
            async with connect_sem:
                reader, writer = await asyncio.open_connection(RR_ADDRESS, port, local_addr=(self.address, 0))
                writer.write(_open(self.router_id))
                await self._expect(reader, 1)
                writer.write(_msg(4, b""))
                await self._expect(reader, 4)
            writer.write(_rtc_update(self.router_id, self.vpns))
            writer.write(_eor(SAFI_RTC))
            for v in self.vpns:
                writer.write(_vpn_update(self.router_id, v, [_prefix(k) for k in range(self.routes_per_vrf)],
                                         16 + v))
            writer.write(_eor(SAFI_VPN))
            await writer.drain()
            keepalive = asyncio.create_task(self._keepalive(writer))
            try:
                await self._read(reader)
            finally:
                keepalive.cancel()
                writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"
            self.done.set()

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(20)
            writer.write(_msg(4, b""))

    async def _expect(self, reader: asyncio.StreamReader, kind: int) -> bytes:
        head = await reader.readexactly(19)
        body = await reader.readexactly(struct.unpack("!H", head[16:18])[0] - 19)
        if head[18] == 3:
            raise ValueError(f"NOTIFICATION {body[:2].hex()} {body[2:].hex()}")
        if head[18] != kind:
            raise ValueError(f"expected message type {kind}, got {head[18]}")
        return body

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            head = await reader.readexactly(19)
            body = await reader.readexactly(struct.unpack("!H", head[16:18])[0] - 19)
            kind = head[18]
            if kind == 2:
                self._update(body)
            elif kind == 3:
                raise ValueError(f"NOTIFICATION {body[:2].hex()} {body[2:].hex()}")

    def _update(self, body: bytes) -> None:
        wlen = struct.unpack("!H", body[:2])[0]
        alen = struct.unpack("!H", body[2 + wlen : 4 + wlen])[0]
        attrs = body[4 + wlen : 4 + wlen + alen]
        i = 0
        rts: set[bytes] = set()
        reach: list[bytes] = []
        unreach: list[bytes] = []
        while i < len(attrs):
            flags, code = attrs[i], attrs[i + 1]
            if flags & 0x10:
                n = struct.unpack("!H", attrs[i + 2 : i + 4])[0]
                v = attrs[i + 4 : i + 4 + n]
                i += 4 + n
            else:
                n = attrs[i + 2]
                v = attrs[i + 3 : i + 3 + n]
                i += 3 + n
            if code == 14 and v[2] == SAFI_VPN:
                nh = v[3]
                reach = _vpn_keys(v[5 + nh :])
            elif code == 15 and len(v) > 3 and v[2] == SAFI_VPN:
                unreach = _vpn_keys(v[3:])
            elif code == 16:
                rts = {v[j : j + 8] for j in range(0, len(v), 8) if v[j + 1] == 0x02}
        for k in unreach:
            if k in self.received:
                self.received.discard(k)
                if k in self.expected:
                    self.hits -= 1
        if reach:
            if not rts & self.rts:
                self.unwanted += len(reach)
            for k in reach:
                if k not in self.received:
                    self.received.add(k)
                    if k in self.expected:
                        self.hits += 1
            if self.hits == len(self.expected):
                self.done.set()


def _prefix(k: int) -> bytes:
    return IPv4Address(f"198.51.100.{k % 256}").packed if k < 256 else IPv4Address(f"203.0.113.{k % 256}").packed


def _clients(n: int, vpns: int, member_of: int, routes_per_vrf: int) -> list[SimClient]:
    member = memberships(n, vpns, member_of)
    by_vpn: dict[int, list[int]] = {}
    for c, vs in enumerate(member):
        for v in vs:
            by_vpn.setdefault(v, []).append(c)
    keys_of: dict[tuple[int, int], list[bytes]] = {}
    for c, vs in enumerate(member):
        rid = IPv4Address(client_router_id(c)).packed
        for v in vs:
            keys_of[(c, v)] = [struct.pack("!H4sH", 1, rid, v) + _prefix(k) for k in range(routes_per_vrf)]
    out = []
    for c, vs in enumerate(member):
        expected = {k for v in vs for other in by_vpn[v] if other != c for k in keys_of[(other, v)]}
        out.append(SimClient(c, vs, expected, routes_per_vrf))
    return out


def _proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS in MiB, CPU seconds) of a process."""
    rss = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def _start_vpe_rr(workdir: Path, n: int, port: int) -> subprocess.Popen[bytes]:
    lines = [f'state_dir = "{workdir / "state"}"', "[bgp]", f"local_as = {ASN}", 'router_id = "198.18.0.1"',
             f'listen = ["{RR_ADDRESS}"]', f"port = {port}", "[api]", f'socket = "{workdir / "api.sock"}"']
    for i in range(n):
        lines += ["[[neighbors]]", f'address = "{client_address(i)}"', f"remote_as = {ASN}", "passive = true",
                  "hold_time = 180", "route_reflector_client = true", 'families = ["vpnv4", "rtc"]']
    (workdir / "rr.toml").write_text("\n".join(lines) + "\n")
    log = (workdir / "rr.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from vpe.cli.main import app; app()", "agent", "-c", str(workdir / "rr.toml"),
         "--log-level", "warning"], stdout=log, stderr=log, env=os.environ.copy())


def _start_gobgp_rr(workdir: Path, n: int, port: int) -> subprocess.Popen[bytes]:
    lines = ["[global.config]", f"  as = {ASN}", '  router-id = "198.18.0.1"', f"  port = {port}",
             f'  local-address-list = ["{RR_ADDRESS}"]']
    for i in range(n):
        lines += ["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{client_address(i)}"',
                  f"    peer-as = {ASN}", "  [neighbors.timers.config]", "    hold-time = 180",
                  "  [neighbors.transport.config]", "    passive-mode = true", f'    local-address = "{RR_ADDRESS}"',
                  "  [neighbors.route-reflector.config]", "    route-reflector-client = true",
                  '    route-reflector-cluster-id = "198.18.0.1"',
                  "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                  '      afi-safi-name = "l3vpn-ipv4-unicast"',
                  "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]", '      afi-safi-name = "rtc"']
    (workdir / "gobgpd.toml").write_text("\n".join(lines) + "\n")
    log = (workdir / "rr.log").open("ab")
    return subprocess.Popen(["gobgpd", "-f", str(workdir / "gobgpd.toml"), "--api-hosts", "127.0.0.1:50151",
                             "-l", "warn"], stdout=log, stderr=log)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the reflector exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            s.bind((client_address(65535), 0))  # no neighbor: refused by the reflector, harmlessly
            if s.connect_ex((RR_ADDRESS, port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the reflector does not listen on {RR_ADDRESS}:{port}")


async def _drive(clients: list[SimClient], port: int, timeout: float) -> tuple[float, bool]:
    sem = asyncio.Semaphore(64)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(c.run(sem, port)) for c in clients]
    waits = [asyncio.create_task(c.done.wait()) for c in clients]
    done, _ = await asyncio.wait(waits, timeout=timeout)
    elapsed = time.perf_counter() - t0
    complete = len(done) == len(clients) and not any(c.error for c in clients)
    await asyncio.sleep(2.0)  # anything more that arrives now was not asked for
    for t in tasks + waits:
        t.cancel()
    await asyncio.gather(*tasks, *waits, return_exceptions=True)
    return elapsed, complete


def part2(rr: str, clients: int, vpns: int, member_of: int, routes_per_vrf: int, workdir: Path,
          timeout: float = 900.0) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"part": 2, "reflector": rr, "clients": clients, "vpns": vpns, "member_of": member_of,
                              "routes_per_vrf": routes_per_vrf}
    if rr == "gobgp" and shutil.which("gobgpd") is None:
        result["skipped"] = "gobgpd is not installed (Debian package gobgpd)"
        return result
    sims = _clients(clients, vpns, member_of, routes_per_vrf)
    result["routes_announced"] = clients * member_of * routes_per_vrf
    result["routes_expected_total"] = sum(len(c.expected) for c in sims)
    proc = (_start_vpe_rr if rr == "vpe" else _start_gobgp_rr)(workdir, clients, RR_PORT)
    try:
        t0 = time.perf_counter()
        _wait_listening(proc, RR_PORT)
        result["reflector_start_s"] = round(time.perf_counter() - t0, 2)
        _, cpu0 = _proc_stats(proc.pid)
        elapsed, complete = asyncio.run(_drive(sims, RR_PORT, timeout))
        rss, cpu1 = _proc_stats(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    errors = [f"{c.address}: {c.error}" for c in sims if c.error]
    result.update({
        "complete": complete,
        "converged_s": round(elapsed, 2) if complete else None,
        "clients_complete": sum(1 for c in sims if c.hits == len(c.expected)),
        "routes_received_total": sum(len(c.received) for c in sims),
        "unwanted_routes": sum(c.unwanted for c in sims),
        "extra_routes": sum(len(c.received - c.expected) for c in sims),
        "reflector_peak_rss_mib": round(rss, 1),
        "reflector_cpu_s": round(cpu1 - cpu0, 2),
        "errors": errors[:5],
    })
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
    ap.add_argument("--timeout", type=float, default=900.0, help="part 2: seconds to wait for convergence")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vpe-scale-"))
    try:
        if args.part in ("1", "all"):
            print(json.dumps(part1(args.vpns, args.ports, workdir / "part1")), flush=True)
        if args.part in ("2", "all"):
            for rr in args.reflectors.split(","):
                res = part2(rr.strip(), args.clients, args.client_vpns, args.member_of, args.routes_per_vrf,
                            workdir / f"part2-{rr.strip()}", args.timeout)
                print(json.dumps(res), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
