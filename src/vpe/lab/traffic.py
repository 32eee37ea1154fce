"""Bounded traffic programs for lab measurements (moves, R9.3/R11.1).

Each is a small Python program run as its own process (``python -c CODE``)
that enters network namespaces itself (``setns``), so one process serves many
VMs. Times are ``CLOCK_MONOTONIC`` (one clock for every namespace), so a
caller can compare them with its own ``time.monotonic()``. Every loop is
bounded by a count and a deadline, and a receiver also stops when its stdin
is closed or gets a line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

#: enter a namespace by name (used by the programs below)
_SETNS = r"""
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
def enter(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)
"""

#: a UDP stream: ns port rate seconds dst...; each destination gets ``rate``
#: datagrams/s carrying "<seq>" from 0; prints JSON {dst: sent}
STREAM_SEND = _SETNS + r"""
import json, socket, sys, time
ns, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
dsts = sys.argv[5:]
enter(ns)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
sent = {d: 0 for d in dsts}
n = int(rate * seconds)
t0 = time.monotonic() + 0.05
for i in range(n):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    payload = str(i).encode()
    for d in dsts:
        try:
            s.sendto(payload, (d, port))
            sent[d] += 1
        except OSError:
            pass
print(json.dumps(sent), flush=True)
"""

#: receivers in many namespaces: port timeout ns...; READY, then at the end one
#: JSON line {ns: {"received", "unique", "max_seq", "gap_ms", "first", "last", "missing"}}
#: ("missing": the first 20 sequence numbers below max_seq not received)
STREAM_RECV = _SETNS + r"""
import json, select, socket, sys, time
port, timeout = int(sys.argv[1]), float(sys.argv[2])
socks = {}
for ns in sys.argv[3:]:
    enter(ns)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.setblocking(False)
    socks[s] = ns
st = {ns: {"received": 0, "seqs": set(), "gap": 0.0, "prev": None, "first": None} for ns in socks.values()}
print("READY", flush=True)
end = time.monotonic() + timeout
rl = list(socks) + [sys.stdin]
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    r, _, _ = select.select(rl, [], [], min(left, 1.0))
    if sys.stdin in r:
        break
    now = time.monotonic()
    for s in r:
        x = st[socks[s]]
        for _ in range(256):
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            x["received"] += 1
            try:
                x["seqs"].add(int(data))
            except ValueError:
                pass
            if x["prev"] is not None:
                x["gap"] = max(x["gap"], now - x["prev"])
            else:
                x["first"] = now
            x["prev"] = now
out = {ns: {"received": x["received"], "unique": len(x["seqs"]), "max_seq": max(x["seqs"], default=-1),
            "gap_ms": round(x["gap"] * 1000, 2), "first": x["first"], "last": x["prev"],
            "missing": sorted(set(range(max(x["seqs"], default=-1) + 1)) - x["seqs"])[:20]}
       for ns, x in st.items()}
print(json.dumps(out), flush=True)
"""

#: the first frame a host sends toward a VM on one interface per namespace:
#: timeout ifname ns...; READY, then JSON {ns: monotonic time or null}
FIRST_FRAME = _SETNS + r"""
import json, select, socket, sys, time
timeout, ifname = float(sys.argv[1]), sys.argv[2]
socks = {}
for ns in sys.argv[3:]:
    enter(ns)
    # ETH_P_ALL: taps see a frame before tc ingress (which may redirect it away)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    socks[s] = ns
first = {ns: None for ns in socks.values()}
print("READY", flush=True)
end = time.monotonic() + timeout
rl = list(socks) + [sys.stdin]
while any(v is None for v in first.values()):
    left = end - time.monotonic()
    if left <= 0:
        break
    r, _, _ = select.select(rl, [], [], min(left, 1.0))
    if sys.stdin in r:
        break
    now = time.monotonic()
    for s in r:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\x08\x00" and first[socks[s]] is None:
            first[socks[s]] = now
            rl.remove(s)
print(json.dumps(first), flush=True)
"""


class Program:
    """One of the programs above, started and synchronised on its READY line."""

    def __init__(self, code: str, *args: str, ready: bool = True, timeout: float = 15.0) -> None:
        import select

        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if ready:
            assert self.proc.stdout is not None
            r, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if r else ""
            if line.strip() != "READY":
                self.kill()
                raise RuntimeError(f"traffic program did not start: {line!r} {self.stderr()}")

    def stderr(self) -> str:
        try:
            _, err = self.proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ValueError):
            return ""
        return err or ""

    def result(self, timeout: float = 60.0, stop: bool = True) -> Any:
        """Stop it (stdin), wait, and parse its last output line as JSON."""
        try:
            out, err = self.proc.communicate(input="stop\n" if stop else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"traffic program did not finish in {timeout} s") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"traffic program failed ({self.proc.returncode}): {err}")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return json.loads(lines[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


def stream(ns: str, port: int, rate: float, seconds: float, dsts: list[str]) -> Program:
    """Start a UDP stream from namespace ``ns`` to each of ``dsts`` (``rate`` per destination)."""
    return Program(STREAM_SEND, ns, str(port), str(rate), str(seconds), *dsts, ready=False)


def receivers(namespaces: list[str], port: int, timeout: float) -> Program:
    return Program(STREAM_RECV, str(port), str(timeout), *namespaces)


def first_frames(namespaces: list[str], ifname: str, timeout: float) -> Program:
    return Program(FIRST_FRAME, str(timeout), ifname, *namespaces)


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One stream's outcome: sent, received (with duplicates), lost, longest gap."""

    sent: int
    received: int
    unique: int
    lost: int
    duplicates: int
    gap_ms: float


def report(sent: int, got: dict[str, Any]) -> StreamReport:
    unique = int(got["unique"])
    return StreamReport(sent, int(got["received"]), unique, sent - unique, int(got["received"]) - unique,
                        float(got["gap_ms"]))
