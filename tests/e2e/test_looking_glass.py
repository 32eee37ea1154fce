"""The web looking glass in a real browser, from a running lab (labs/lg.yaml).

Headless Chromium (Debian's ``chromium``) loads every page: through ``vpe lg
--lab`` (the agent's Unix socket, proxied on 127.0.0.1) and straight from an
agent's TCP API inside its host namespace with the lab's token (HTTP Basic,
the token as password, the way a browser sends it). For each page the test
checks the DOM text (``--dump-dom``) and that the browser logged no console
message at all (``--enable-logging=stderr``: script errors, CSP violations
and failed loads are all console messages); screenshots are kept as
artifacts in ``build/artifacts/looking-glass/`` (not committed).

The browser resolves no host name and reaches no address but the page's
(``--host-resolver-rules``) and runs with
its background networking off: it talks to the lab's addresses only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_lab import E2E, RunningLab, start_lab

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts" / "looking-glass"

pytestmark = [*E2E, pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is needed: apt-get install "
                                                                 "chromium (make deps installs it)")]

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,1100")


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab("lg", driver="userspace")
    try:
        yield running
    finally:
        running.teardown()


@pytest.fixture(scope="module")
def proxy(lab: RunningLab) -> Iterator[str]:
    """``vpe lg --lab PREFIX --port 0``: its base URL (``http://127.0.0.1:PORT/lg/``)."""
    proc = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "lg", "--lab", lab.prefix, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "looking glass of the agent at" in line, (line, proc.stderr.read() if proc.stderr else "")
        yield line.split(": ", 1)[1].split(";")[0].split()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def browse(url: str, *, ns: str | None = None, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load ``url`` in headless Chromium (in namespace ``ns``): the DOM (or "" for a
    screenshot run) and the console messages the page caused."""
    with tempfile.TemporaryDirectory(prefix="vpe-lg-chromium-") as profile:
        what = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        host = urlsplit(url).hostname
        # no name resolves, and no address but the page's is reachable
        rules = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"
        argv = [str(CHROMIUM), *FLAGS, rules, f"--user-data-dir={profile}", *what, url]
        if ns is not None:
            argv = ["ip", "netns", "exec", ns, *argv]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def shoot(url: str, name: str, ns: str | None = None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    _, console = browse(url, ns=ns, screenshot=path)
    assert console == [], console
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (path, len(data))
    return path


def text_of(dom: str) -> str:
    from html.parser import HTMLParser

    class T(HTMLParser):
        parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    t = T()
    t.parts = []
    t.feed(dom)
    return " ".join(" ".join(t.parts).split())


def expected(lab: RunningLab) -> dict[str, list[str]]:
    return {
        "": ["vpe looking glass: overview", "router id 198.18.0.11, AS 65000", "1 of 1 sessions established",
             "198.18.0.2", "BGP neighbors of this vPE", "Established"],
        "neighbors": ["198.18.0.2", "Established", "route reflector", "Msgs in", "vpnv4"],
        "vrfs": ["blue", "65000:100"],
        "vrfs/blue": ["192.0.2.11/32", "192.0.2.12/32", "198.18.0.12", "Ports"],
        "fib": ["FIB channel", "192.0.2.12/32", "198.18.0.12", "mpls-in-udp"],
        "counters": ["forwarder", "Ports", "Drops", "RX packets"],
        "lab": [f"lab {lab.prefix}", "host h1", "host h2", "VM blue1", "VM blue2", "route reflector",
                "1/1 sessions up"],
    }


def test_looking_glass_pages_through_vpe_lg(lab: RunningLab, proxy: str) -> None:
    """Every page through `vpe lg` (Unix socket): the DOM holds the lab's state, no console message."""
    assert lab.reaches("blue1", lab.ip4("blue2"))  # so the counters have moved
    for path, words in expected(lab).items():
        dom, console = browse(proxy + path)
        text = text_of(dom)
        missing = [w for w in words if w not in text]
        assert not missing, (path, missing, text[:3000])
        assert console == [], (path, console)
        assert "<script" not in dom
    for path, name in (("", "overview"), ("vrfs/blue", "vrf-blue"), ("lab", "lab")):
        shoot(proxy + path, name)


def test_looking_glass_over_tcp_with_the_token(lab: RunningLab) -> None:
    """Straight from h1's agent on TCP, in h1's namespace: the token as the Basic password
    opens the pages; without it the answer is a 401 with a Basic challenge (the browser asks)."""
    token = (lab.lab.state_dir / "api.token").read_text().strip()
    base = f"{lab.underlay('h1')}:8443/lg/"
    want = expected(lab)
    for path in ("", "neighbors", "vrfs/blue"):
        dom, console = browse(f"http://lg:{token}@{base}{path}", ns=lab.ns("h1"))
        text = text_of(dom)
        assert all(w in text for w in want[path]), (path, text[:3000])
        assert console == [], (path, console)
    shoot(f"http://lg:{token}@{base}", "overview-tcp", ns=lab.ns("h1"))
    r = lab.run("h1", "curl", "-sS", "-D", "-", f"http://{base}", timeout=15)  # a browser would ask
    assert r.stdout.startswith("HTTP/1.1 401") and 'www-authenticate: basic realm="vpe' in r.stdout.lower(), \
        r.stdout
    assert "router id" not in r.stdout
