"""R13.4, issue 13 finding 5: the management API never stalls BGP.

A real `vpe agent` process (dataplane none) holds an iBGP session with hold
time 3 s to a real GoBGP, which sends it a VPN route. While the session
runs, the agent's API is hammered from several threads with what stalled
the event loop for 10 to 12 s before: 33 MB bodies (3,000,000 route
targets), bodies at the 1 MiB cap, lists over their caps, and valid creates
and deletes. The session must stay Established throughout (neither side
sees a hold-timer expiry: GoBGP's uptime covers the whole hammer and vpe
reports no error), the route stays, and no request gets a 500.

Bounded: the hammer runs for :data:`HAMMER_SECONDS` and at most
:data:`MAX_REQUESTS` requests.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import GoBGP, Neighbor, free_port, wait_until

pytestmark = pytest.mark.interop

HOLD_TIME = 3
HAMMER_SECONDS = 15.0
MAX_REQUESTS = 5_000
THREADS = 6

AGENT = """
state_dir = "{d}/state"
[bgp]
local_as = 65000
router_id = "198.18.0.71"
[[neighbors]]
address = "{gobgp}"
remote_as = 65000
port = {gobgp_port}
local_address = "{me}"
hold_time = {hold}
connect_retry = 1
families = ["vpnv4"]
graceful_restart = false
[api]
socket = "{d}/api.sock"
[dataplane]
driver = "none"
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vpe-ham-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _api(sock: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://vpe", timeout=30)


def _gobgp_session(g: GoBGP, neighbor: str) -> tuple[str, float]:
    """GoBGP's session state and the time (Unix seconds) the session came up."""
    data = g.cli_json("neighbor", neighbor)
    state = str(data.get("state", {}).get("session_state", "")).lower()
    up = data.get("timers", {}).get("state", {}).get("uptime", {})
    seconds = float(up.get("seconds", 0)) if isinstance(up, dict) else 0.0
    return state, seconds


def _bodies() -> list[tuple[str, bytes]]:
    rts = b",".join([b'"65000:1"'] * 3_000_000)
    near_cap = b'{"name": "near", "route_targets": [' + b",".join([b'"65000:1"'] * 100_000) + b"]}"
    assert len(near_cap) < (1 << 20)
    return [
        ("33MB", b'{"name": "big", "route_targets": [' + rts + b"]}"),
        ("1MiB-list", near_cap),
        ("nan", b'{"name": "n", "route_targets": ["65000:1"], "multipath": NaN}'),
    ]


def test_r13_4_bgp_stays_up_while_api_hammered(spawn: Callable[..., Any], loopback: Callable[[], str],
                                               workdir: Path) -> None:
    me, peer = loopback(), loopback()
    gport = free_port(peer)
    g: GoBGP = spawn(GoBGP, address=peer, port=gport, local_as=65000, router_id="198.18.0.72",
                     neighbors=[Neighbor(me, 65000, port=free_port(me), passive=True, families=("vpnv4",))])
    g.add_vpnv4("192.0.2.0/24", "65000:9", "65000:9", 100, "198.18.0.72")
    cfg = workdir / "agent.toml"
    cfg.write_text(AGENT.format(d=workdir, gobgp=peer, gobgp_port=gport, me=me, hold=HOLD_TIME))
    log = (workdir / "agent.log").open("wb")
    agent = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg),
                              "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    sock = workdir / "api.sock"
    try:
        wait_until(lambda: agent.poll() is None and g.established(me), 30, "session up")
        with _api(sock) as c:
            wait_until(lambda: c.get("/v1/bgp/routes", params={"family": "vpnv4"}).json()["total"] >= 1,
                       15, "GoBGP's route at vpe")
        codes: Counter[str] = Counter()
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + HAMMER_SECONDS
        bodies = _bodies()
        sent = [0]

        def hammer(k: int) -> None:
            i = 0
            with _api(sock) as c:
                while time.monotonic() < stop_at:
                    with lock:
                        if sent[0] >= MAX_REQUESTS:
                            return
                        sent[0] += 1
                    i += 1
                    try:
                        if i % 4 == 0:  # a valid create and delete
                            name = f"h{k}-{i}"
                            r = c.post("/v1/vpns", json={"name": name,
                                                         "route_targets": [f"65000:{n}" for n in range(1, 257)]})
                            c.delete(f"/v1/vpns/{name}")
                            label = "create"
                        else:
                            label, body = bodies[i % len(bodies)]
                            r = c.post("/v1/vpns", content=body, headers={"content-type": "application/json"})
                    except httpx.HTTPError as e:  # the agent closes a 413'd upload early: fine
                        with lock:
                            codes["closed"] += 1
                        if not isinstance(e, httpx.RemoteProtocolError | httpx.WriteError | httpx.ReadError):
                            errors.append(repr(e))
                        continue
                    with lock:
                        codes[f"{label}:{r.status_code}"] += 1
                        if r.status_code >= 500:
                            errors.append(f"{label}: {r.status_code} {r.text[:200]}")

        _, since = _gobgp_session(g, me)
        assert 0 < since <= time.time()
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(THREADS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        # meanwhile: the session as both sides see it, twice a second
        samples: list[tuple[float, str, float]] = []
        lags: list[float] = []  # how long a small GET waits for the agent's event loop
        with _api(sock) as probe:
            while any(t.is_alive() for t in threads):
                state, up = _gobgp_session(g, me)
                samples.append((time.monotonic() - t0, state, up))
                a = time.monotonic()
                probe.get("/v1/restart")
                lags.append(time.monotonic() - a)
                time.sleep(0.5)
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - t0
        state, up = _gobgp_session(g, me)
        with _api(sock) as c:
            n = c.get(f"/v1/bgp/neighbors/{peer}").json()
            total = c.get("/v1/bgp/routes", params={"family": "vpnv4"}).json()["total"]
        print(f"hammer: {sum(codes.values())} requests in {elapsed:.1f} s by {THREADS} threads: "
              f"{json.dumps(dict(sorted(codes.items())))}; session up since {time.time() - up:.1f} s; "
              f"small GET during the hammer: median {1000 * sorted(lags)[len(lags) // 2]:.0f} ms, "
              f"max {1000 * max(lags):.0f} ms ({len(lags)} probes)")
        assert not errors, errors[:5]
        assert codes["33MB:413"] > 0 and codes["1MiB-list:413"] > 0 and codes["create:201"] > 0, codes
        assert state in ("established", "6") and n["state"].lower() == "established", (state, n)
        assert up == since, f"the session was reset during the hammer (up since {since}, now since {up})"
        assert all(s in ("established", "6") and u == since for _, s, u in samples), samples
        assert not n.get("last_error"), n
        assert total >= 1
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)
        log.close()
