"""E2E: kill -9 one host's agent while its VM pings across, restart it, count the loss.

The two-host lab (``src/vpe/lab/examples/two-hosts.yaml``, own per-run
prefix): blue1 on h1 pings blue2 on h2 (``ping -i 0.05 -c 200``, 10 s).
Half a second in, h1's agent gets SIGKILL (pid from
``/run/vpe-lab/<prefix>/h1/agent.pid``) and is started again by the lab
runner with the same configuration - not ``vpe lab up``, which would
re-attach the VM itself and hide whether the agent restored it.

What must hold: h1's forwarder keeps forwarding while its agent is away;
h2's agent keeps h1's routes as stale (graceful restart, no NOTIFICATION
came); the restarted agent restores the attachment from its SQLite store
with the same labels, finishes graceful restart and resynchronises the
forwarder. The loss is printed (target: zero) and asserted to be zero; the
attachments (GET /v1/ports) are identical before and after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vpe.lab import build, netns, runner
from vpe.lab.layout import Lab, make_lab
from vpe.lab.processes import default_host_processes
from vpe.lab.topology import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "vpe" / "lab" / "examples"
TWO_HOSTS = EXAMPLES / "two-hosts.yaml"

_why = netns.ip_available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(_why is not None, reason=f"vpe lab needs root and `ip netns`: {_why}"),
    pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping"),
]

ENV = dict(os.environ)
ENV.pop("VPE_LAB_FORWARDER", None)


def vpe(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "vpe.cli.main", *args], capture_output=True, text=True,
                       env=ENV, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"vpe {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture
def lab() -> Iterator[Lab]:
    prefix = "r" + uuid.uuid4().hex[:8]
    try:
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix)
        yield make_lab(load_topology(TWO_HOSTS), prefix)
    finally:
        vpe("lab", "down", "--prefix", prefix, check=False)
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith(f"{prefix}-"):
                subprocess.run(["ip", "netns", "delete", line.split()[0]], check=False)
        shutil.rmtree(build.STATE_ROOT / prefix, ignore_errors=True)


def api(lab: Lab, host: str, path: str) -> Any:
    sock = str(lab.node_dir(host) / "vpe.sock")
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=5) as c:
        r = c.get(f"http://vpe{path}")
    r.raise_for_status()
    return r.json() if path != "/metrics" else r.text


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (httpx.HTTPError, OSError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s (last error: {last})")


def ping_once(lab: Lab) -> bool:
    r = subprocess.run(["ip", "netns", "exec", lab.ns("blue1"), "ping", "-c1", "-W1", "192.0.2.12"],
                       capture_output=True, timeout=5)
    return r.returncode == 0


def test_kill_and_restart_agent_loses_nothing(lab: Lab) -> None:
    wait_for(lambda: ping_once(lab), 30, "first ping blue1 -> blue2")
    before = api(lab, "h1", "/v1/ports")
    assert [p["name"] for p in before] == ["blue1"]
    labels_before = api(lab, "h2", "/v1/bgp/routes?family=vpnv4&peer=198.18.0.11")["routes"]
    h1_dir = lab.node_dir("h1")
    old_pid = int((h1_dir / "agent.pid").read_text())

    ping = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("blue1"), "ping", "-i", "0.05", "-c", "200", "-W", "1",
         "192.0.2.12"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(0.5)
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: not runner.pid_alive(old_pid), 5, "the killed agent to go")
        killed_at = time.monotonic()
        # h2 keeps h1's routes (stale) while h1's agent is away
        assert len(api(lab, "h2", "/v1/bgp/routes?family=vpnv4&peer=198.18.0.11")["routes"]) == \
            len(labels_before)
        host = next(h for h in lab.topology.hosts if h.name == "h1")
        spec = next(s for s in default_host_processes(lab, host) if s.name == "agent")
        st = runner.start(lab.ns("h1"), spec, h1_dir)
        assert st.alive and st.pid != old_pid
        wait_for(lambda: api(lab, "h1", "/v1/restart")["restarting"] is True, 15, "restarted agent API")
        wait_for(lambda: api(lab, "h1", "/v1/restart")["deferring"] is False, 30, "graceful restart end")
        back_after = time.monotonic() - killed_at
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(5)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, received = int(m.group(1)), int(m.group(2))
    loss = sent - received
    print(f"\nrestart of h1's agent: {sent} sent, {received} received, {loss} lost "
          f"({100.0 * loss / sent:.1f}% loss); agent back and resynchronised {back_after:.2f} s "
          f"after kill -9")
    after = api(lab, "h1", "/v1/ports")
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
    labels_after = api(lab, "h2", "/v1/bgp/routes?family=vpnv4&peer=198.18.0.11")["routes"]
    assert sorted((r["prefix"], r["labels"]) for r in labels_after) == \
        sorted((r["prefix"], r["labels"]) for r in labels_before)
    assert "restored 0 VPN instance(s), 1 port(s) and 0 VRF neighbor(s)" in (h1_dir / "agent.log").read_text()
    metrics = api(lab, "h1", "/metrics")
    assert "vpe_forwarder_up 1.0" in metrics and 'vpe_ports{vrf="blue"} 1.0' in metrics
    assert loss == 0, out
