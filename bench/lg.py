"""Benchmark: the web looking glass's pages at size.

One agent (``vpe agent``, dataplane none, its state on disk, a Unix socket)
with ``--vpns`` VPN instances (default 1,000) and ``--ports`` ports
(default 5,000) spread over them, made through the REST API. Then each
looking-glass page is fetched ``--runs`` times (default 20) over the socket,
and the same page through ``vpe lg`` (the local proxy), and the median,
the 90th percentile and the size of each are printed as one JSON line:
``/lg/`` (overview and the SVG of the peers), ``/lg/neighbors``,
``/lg/vrfs`` (a page of 200), ``/lg/vrfs/NAME`` (one VRF with its ports),
``/lg/fib``.

It starts an agent and binds a loopback port: run it under the e2e lock.

    flock /tmp/vpe-e2e.lock .venv/bin/python bench/lg.py [--vpns N] [--ports N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.31"
{neighbors}
[api]
socket = "{sock}"
[dataplane]
driver = "none"
"""

PAGES = ["/lg/", "/lg/neighbors", "/lg/vrfs", "/lg/vrfs/v0", "/lg/fib"]


def timed(client: httpx.Client, url: str, runs: int) -> dict[str, float | int]:
    times = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        size = len(r.content)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2), "octets": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vpns", type=int, default=1000)
    ap.add_argument("--ports", type=int, default=5000)
    ap.add_argument("--neighbors", type=int, default=20, help="configured (idle, passive) neighbors")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="vpe-bench-lg-"))
    sock = d / "api.sock"
    neighbors = "\n".join(f'[[neighbors]]\naddress = "127.0.1.{i + 1}"\nremote_as = 65000\npassive = true\n'
                          f'description = "peer {i}"' for i in range(a.neighbors))
    (d / "vpe.toml").write_text(CONFIG.format(state=d / "state", sock=sock, neighbors=neighbors))
    agent = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(d / "vpe.toml"),
                              "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        c = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://vpe", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                if c.get("/v1/vpns").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the agent did not come up")
            time.sleep(0.05)
        t0 = time.perf_counter()
        for i in range(a.vpns):
            r = c.post("/v1/vpns", json={"name": f"v{i}", "route_targets": [f"65000:{i + 1}"]})
            assert r.status_code in (200, 201), r.text
        for i in range(a.ports):
            r = c.post("/v1/ports", json={
                "name": f"p{i}", "ifname": f"tap{i}", "vpn": f"v{i % a.vpns}",
                "mac": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                "ips": [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32"]})
            assert r.status_code in (200, 201), r.text
        setup = time.perf_counter() - t0
        proxy = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "lg", "--socket", str(sock), "--port", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proxy.stdout is not None
        base = proxy.stdout.readline().split(": ", 1)[1].split(";")[0].split()[0].removesuffix("/lg/")
        out: dict[str, object] = {"bench": "lg", "vpns": a.vpns, "ports": a.ports, "neighbors": a.neighbors,
                                  "runs": a.runs, "setup_s": round(setup, 1), "socket": {}, "vpe_lg": {}}
        with httpx.Client(timeout=60) as browser:
            for page in PAGES:
                out["socket"][page] = timed(c, page, a.runs)  # type: ignore[index]
                out["vpe_lg"][page] = timed(browser, base + page, a.runs)  # type: ignore[index]
        print(json.dumps(out))
    finally:
        for p in (proxy, agent):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
