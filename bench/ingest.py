"""Ingest benchmark: one iBGP peer sends N VPNv4 host routes to a passive `vpe agent`.

Run: .venv/bin/python bench/ingest.py [--routes 1000000] [--runs 3] [--clients 0]

The agent runs as its own process with no dataplane. The sender is this
script: it speaks just enough BGP (OPEN, KEEPALIVE) with vpe's codec and then
writes pre-encoded UPDATEs (200 routes each, 100 RDs/RTs) as fast as the
agent's TCP window allows, so the sender is never the bottleneck. The clock
starts at the first UPDATE byte and stops when the agent's API reports all N
routes in its Loc-RIB. Peak RSS is the agent's VmHWM from /proc; agent CPU is
the user + system time the agent used meanwhile (steadier than the wall clock
on a busy machine).

With ``--clients K`` the agent is also a route reflector for K passive vpe
clients (separate agent processes) and the script reports when the last
client holds all N routes.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from vpe.bgp.wire import CodecContext, MessageReader, decode_message, encode_message
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    RouteTarget,
)
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.capabilities import Multiprotocol
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.keepalive import KEEPALIVE
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.bgp.wire.open import Open
from vpe.bgp.wire.update import end_of_rib, pack_announcements

PER_UPDATE = 200
AGENT_ADDR = "127.0.0.61"
SENDER_ADDR = "127.0.0.62"


def build_stream(n: int) -> bytes:
    ctx = CodecContext()
    out: list[bytes] = []
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    nh = ipaddress.IPv4Address("198.18.0.62")
    for u in range((n + PER_UPDATE - 1) // PER_UPDATE):
        vpn = u % 100 + 1
        attrs = PathAttributes(
            [Origin(0), AsPath.sequence(), LocalPref(100),
             ExtendedCommunities((RouteTarget.from_str(f"65000:{vpn}"),
                                  Encapsulation.from_str("encap:mpls-in-udp")))]
        )
        count = min(PER_UPDATE, n - u * PER_UPDATE)
        nlri = [
            VPNv4Prefix.from_str(f"65000:{vpn}:{ipaddress.IPv4Address(base + u * PER_UPDATE + i)}/32",
                                 labels=(16 + vpn,))
            for i in range(count)
        ]
        out.extend(pack_announcements(VPNV4, attrs, nh, nlri, ctx))
    out.append(end_of_rib(VPNV4))
    return b"".join(out)


def client_addr(i: int) -> str:
    return f"127.0.0.{70 + i}"


def agent_config(dirpath: Path, port: int, clients: int = 0) -> Path:
    cfg = dirpath / "agent.toml"
    extra = "".join(
        f"""
[[neighbors]]
address = "{client_addr(i)}"
remote_as = 65000
passive = true
route_reflector_client = true
families = ["vpnv4"]
hold_time = 180
"""
        for i in range(clients)
    )
    cfg.write_text(
        f"""
state_dir = "{dirpath}/state"

[bgp]
local_as = 65000
router_id = "198.18.0.61"
listen = ["{AGENT_ADDR}"]
port = {port}

[[neighbors]]
address = "{SENDER_ADDR}"
remote_as = 65000
passive = true
route_reflector_client = {"true" if clients else "false"}
families = ["vpnv4"]
hold_time = 180
{extra}
[api]
socket = "{dirpath}/api.sock"
"""
    )
    return cfg


class Client:
    """A route reflector client that counts the VPNv4 routes it receives."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.routes = 0
        self.done = asyncio.Event()
        self.target = 0

    async def run(self, port: int, up: asyncio.Event) -> None:
        reader, writer = await open_session(port, self.addr, f"198.18.0.{100 + int(self.addr.split('.')[-1])}")
        up.set()
        framer = MessageReader(65535)
        ctx = CodecContext()
        while True:
            data = await reader.read(1 << 18)
            if not data:
                return
            framer.feed(data)
            while (m := framer.next_message()) is not None:
                if m[0] == 2:
                    u = decode_message(2, m[1], ctx)
                    if u.mp_reach is not None:
                        self.routes += len(u.mp_reach.nlri)
                        if self.target and self.routes >= self.target:
                            self.done.set()


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: less sensitive to a busy
    machine than the wall clock, so before/after comparisons hold."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rib_count(sock: str) -> int:
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=30) as c:
        r = c.get("http://vpe/v1/bgp/neighbors")
        r.raise_for_status()
        for n in r.json():
            if n["address"] == SENDER_ADDR:
                return int(n.get("received", {}).get("vpnv4", 0))
    return 0


async def open_session(port: int, local: str, router_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the agent and complete the OPEN exchange."""
    reader, writer = await asyncio.open_connection(AGENT_ADDR, port, local_addr=(local, 0))
    op = Open.create(65000, 180, router_id, (Multiprotocol(1, 128),))
    writer.write(encode_message(op) + encode_message(KEEPALIVE))
    framer = MessageReader()
    got_open = got_ka = False
    while not (got_open and got_ka):
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            raise RuntimeError("agent closed the session")
        framer.feed(data)
        while (m := framer.next_message()) is not None:
            msg = decode_message(*m)
            got_open |= m[0] == 1
            got_ka |= m[0] == 4 and got_open
            if m[0] == 3:
                raise RuntimeError(f"agent sent NOTIFICATION {msg}")
    return reader, writer


async def send_routes(stream: bytes, port: int, n: int, sock: str, clients: int = 0) -> tuple[float, float]:
    cl = [Client(client_addr(i)) for i in range(clients)]
    tasks_c = []
    for c in cl:
        up = asyncio.Event()
        c.target = n
        tasks_c.append(asyncio.create_task(c.run(port, up)))
        await asyncio.wait_for(up.wait(), 20)
    reader, writer = await open_session(port, SENDER_ADDR, "198.18.0.62")
    t0 = time.perf_counter()
    view = memoryview(stream)
    for off in range(0, len(view), 1 << 20):
        writer.write(view[off : off + (1 << 20)])
        await writer.drain()

    async def keepalives() -> None:
        while True:
            await asyncio.sleep(20)
            writer.write(encode_message(KEEPALIVE))

    async def drain_input() -> None:
        while await reader.read(65536):
            pass

    tasks = [asyncio.create_task(keepalives()), asyncio.create_task(drain_input())]
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + 300
    while True:
        count = await loop.run_in_executor(None, rib_count, sock)
        if count >= n:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {count} of {n} routes after 300 s")
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - t0
    reflected = 0.0
    if cl:
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in cl)), 600)
        reflected = time.perf_counter() - t0
    for t in [*tasks, *tasks_c]:
        t.cancel()
    writer.close()
    return elapsed, reflected


def one_run(stream: bytes, n: int, clients: int = 0) -> tuple[float, float, int, float]:
    with tempfile.TemporaryDirectory(prefix="vpe-ingest-") as d:
        dirpath = Path(d)
        port = 20179
        cfg = agent_config(dirpath, port, clients)
        with open(dirpath / "agent.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg), "--log-level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            sock = str(dirpath / "api.sock")
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("agent did not start: " + (dirpath / "agent.log").read_text())
            cpu0 = cpu_seconds(proc.pid)
            elapsed, reflected = asyncio.run(send_routes(stream, port, n, sock, clients))
            return elapsed, reflected, vm_hwm(proc.pid), cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description="vpe ingest benchmark")
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=0, help="route reflector clients to reflect to")
    args = ap.parse_args()
    t = time.perf_counter()
    stream = build_stream(args.routes)
    print(f"built {args.routes} VPNv4 routes ({len(stream) / 1e6:.1f} MB of UPDATEs) "
          f"in {time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs")
    times, refl, rss, cpus = [], [], [], []
    for i in range(args.runs):
        e, r, m, c = one_run(stream, args.routes, args.clients)
        times.append(e)
        refl.append(r)
        rss.append(m)
        cpus.append(c)
        line = (f"run {i + 1}: {e:.2f} s until all {args.routes} routes are in the RIB, "
                f"agent CPU {c:.2f} s, agent peak RSS {m / 2**20:.0f} MiB")
        if args.clients:
            line += f"; {r:.2f} s until the last of {args.clients} RR clients has them all"
        print(line)
    out = (f"median: {statistics.median(times):.2f} s, agent CPU {statistics.median(cpus):.2f} s, "
           f"peak RSS {statistics.median(rss) / 2**20:.0f} MiB")
    if args.clients:
        out += f", reflected to {args.clients} clients in {statistics.median(refl):.2f} s"
    print(out)


if __name__ == "__main__":
    main()
