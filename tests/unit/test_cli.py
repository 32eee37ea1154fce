"""The real `vpe` CLI against a real agent: `vpe agent -c` runs as a subprocess
(dataplane none, a temporary state dir, its API on a Unix socket in a temporary
directory) and the commands run in-process through typer's CliRunner.

Covers the looking glass (table and ``--json``), VPN instances and ports end
to end, and the exit codes ``vpe --help`` documents: 0 ok, 1 refused (4xx
other than 422), 2 usage/validation (422, bad config), 3 agent unreachable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from vpe.cli.main import app

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.7"
[[neighbors]]
address = "127.0.0.61"
remote_as = 65000
passive = true
[api]
socket = "{sock}"
[dataplane]
driver = "none"
"""

#: seconds the agent gets to bring its API up
START_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    """A running `vpe agent`; yields its API socket path."""
    d = Path(tempfile.mkdtemp(prefix="vpe-cli-"))  # short: Unix socket paths are limited
    sock = d / "api.sock"
    cfg = d / "vpe.toml"
    cfg.write_text(CONFIG.format(state=d / "state", sock=sock))
    log = (d / "agent.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vpe agent exited with {proc.returncode}: "
                                     f"{(d / 'agent.log').read_text()}")
            if sock.exists():
                try:
                    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2) as c:
                        if c.get("http://vpe/v1/vpns").status_code == 200:
                            break
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent API did not come up: {(d / 'agent.log').read_text()}")
            time.sleep(0.05)
        yield str(sock)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def vpe(*args: str) -> tuple[int, str, str]:
    """Run ``vpe ARGS``: exit code, stdout, stderr."""
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def _attach_args(sock: str, name: str, vpn_name: str, ip: str, *extra: str) -> list[str]:
    return ["attach", name, "--vpn", vpn_name, "--ifname", f"tap-{name}", "--mac", "02:00:00:00:07:01",
            "--ip", ip, "--socket", sock, *extra]


# -- help and exit codes without an agent ----------------------------------------------------


def test_help_documents_exit_codes() -> None:
    code, out, _ = vpe("--help")
    assert code == 0
    text = " ".join(out.split())
    assert "Exit codes" in text
    for needle in ("0 success", "1 refused by the agent", "2 usage error", "HTTP 422",
                   "3 the agent cannot be reached"):
        assert needle in text, needle


def test_no_agent_exit_3_names_the_socket(tmp_path: Path) -> None:
    sock = str(tmp_path / "nobody.sock")
    code, _, err = vpe("show", "bgp", "summary", "--socket", sock)
    assert code == 3
    assert "cannot reach the vpe agent" in err and sock in err.replace("\n", "")
    code, _, _ = vpe("vpn", "list", "--socket", sock)
    assert code == 3


def test_bad_config_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[bgp]\nlocal_as = 'many'\n")
    code, _, err = vpe("agent", "-c", str(bad))
    assert code == 2 and "error" in err
    code, _, _ = vpe("agent", "-c", str(tmp_path / "missing.toml"))
    assert code == 2


def test_usage_error_exit_2(agent: str) -> None:
    code, _, _ = vpe("attach", "x", "--socket", agent)  # required options missing
    assert code == 2


# -- looking glass ------------------------------------------------------------------------------


def test_show_bgp_summary_table_and_json(agent: str) -> None:
    code, out, _ = vpe("show", "bgp", "summary", "--socket", agent)
    assert code == 0
    assert "Neighbor" in out and "127.0.0.61" in out and "65000" in out
    code, out, _ = vpe("show", "bgp", "summary", "--json", "--socket", agent)
    assert code == 0
    data = json.loads(out)
    assert (data["local_as"], data["router_id"]) == (65000, "198.18.0.7")
    (n,) = data["neighbors"]
    assert n["address"] == "127.0.0.61" and n["remote_as"] == 65000
    assert n["state"] in ("Idle", "Active", "Connect")
    assert n["configured_families"] == ["vpnv4", "vpnv6"] and n["uptime"] is None


def test_show_counters_without_forwarder(agent: str) -> None:
    code, out, _ = vpe("show", "counters", "--json", "--socket", agent)
    assert code == 0 and json.loads(out) == {"driver": "none"}
    code, out, _ = vpe("show", "counters", "--socket", agent)
    assert code == 0 and "no forwarder" in out


# -- VPN instances --------------------------------------------------------------------------------


def test_vpn_create_list_show_delete(agent: str) -> None:
    code, out, err = vpe("vpn", "create", "cli-blue", "--rt", "65000:10", "--description", "tenant blue",
                         "--socket", agent)
    assert code == 0, err
    assert "VRF cli-blue" in out and "target:65000:10" in out and "tenant blue" in out
    code, out, _ = vpe("vpn", "list", "--socket", agent)
    assert code == 0 and "cli-blue" in out
    code, out, _ = vpe("vpn", "list", "--json", "--socket", agent)
    assert "cli-blue" in [v["name"] for v in json.loads(out)]
    code, out, _ = vpe("vpn", "show", "cli-blue", "--json", "--socket", agent)
    d = json.loads(out)
    assert code == 0 and d["import_rts"] == ["target:65000:10"] and d["description"] == "tenant blue"
    # a second create of the same name is refused: 409 -> 1
    code, _, err = vpe("vpn", "create", "cli-blue", "--rt", "65000:10", "--socket", agent)
    assert code == 1 and "already exists" in err
    # an invalid value: 422 -> 2, the field named
    code, _, err = vpe("vpn", "create", "cli-bad", "--rt", "banana", "--socket", agent)
    assert code == 2 and "route_targets" in err.replace("\n", "")
    code, out, _ = vpe("vpn", "delete", "cli-blue", "--socket", agent)
    assert code == 0 and "deleted" in out
    code, _, err = vpe("vpn", "show", "cli-blue", "--socket", agent)
    assert code == 1 and "no VPN instance" in err


# -- ports ----------------------------------------------------------------------------------------


def test_attach_detach(agent: str) -> None:
    assert vpe("vpn", "create", "cli-red", "--rt", "65000:11", "--socket", agent)[0] == 0
    code, out, err = vpe(*_attach_args(agent, "cvm1", "cli-red", "192.0.2.71/24", "--local-pref", "300",
                                       "--description", "web"))
    assert code == 0, err
    assert "attached cvm1 to cli-red" in out and "created" not in out
    code, out, _ = vpe("show", "vrf", "cli-red", "--json", "--socket", agent)
    d = json.loads(out)
    assert "192.0.2.71/32" in d["table"] and d["ports"] == ["cvm1"]
    code, out, _ = vpe("show", "bgp", "routes", "--peer", "local", "--json", "--socket", agent)
    mine = [r for r in json.loads(out)["routes"] if r["prefix"] == "192.0.2.71/32"]
    assert mine and mine[0]["attributes"]["local_pref"] == 300
    # the same port again: 409 -> 1
    code, _, err = vpe(*_attach_args(agent, "cvm1", "cli-red", "192.0.2.71/24"))
    assert code == 1 and "already attached" in err
    code, out, _ = vpe("detach", "cvm1", "--socket", agent)
    assert code == 0 and "detached cvm1" in out
    code, _, err = vpe("detach", "cvm1", "--socket", agent)
    assert code == 1 and "no port" in err
    assert vpe("vpn", "delete", "cli-red", "--socket", agent)[0] == 0


def test_attach_creates_vpn_with_route_targets(agent: str) -> None:
    code, out, err = vpe(*_attach_args(agent, "cvm2", "cli-green", "192.0.2.72/24",
                                       "--import-rt", "65000:12", "--export-rt", "65000:12",
                                       "--direction", "from-port", "--json"))
    assert code == 0, err
    d = json.loads(out)
    assert d["vpn_created"] is True and d["direction"] == "from-port"
    code, out, _ = vpe("vpn", "show", "cli-green", "--json", "--socket", agent)
    v = json.loads(out)
    assert v["export_rts"] == ["target:65000:12"] and v["ports"] == ["cvm2"]
    assert "192.0.2.72/32" not in v["table"]  # from-port: the address is not a route
    assert vpe("vpn", "delete", "cli-green", "--force", "--socket", agent)[0] == 0


def test_attach_errors_exit_codes(agent: str) -> None:
    assert vpe("vpn", "create", "cli-err", "--rt", "65000:13", "--socket", agent)[0] == 0
    # bad MAC: 422 -> 2, the field named
    code, _, err = vpe("attach", "cvm3", "--vpn", "cli-err", "--ifname", "tap-cvm3", "--mac", "02:00:zz",
                       "--ip", "192.0.2.73/24", "--socket", agent)
    assert code == 2 and err.startswith("error: mac:"), err
    # unknown VPN instance (and no RTs to create it): 422 -> 2
    code, _, err = vpe(*_attach_args(agent, "cvm3", "cli-nope", "192.0.2.73/24"))
    assert code == 2 and "vpn:" in err and "cli-nope" in err
    # a bad direction: 422 -> 2
    code, _, err = vpe(*_attach_args(agent, "cvm3", "cli-err", "192.0.2.73/24", "--direction", "sideways"))
    assert code == 2 and "direction" in err
    # RTs that contradict the existing instance: 409 -> 1
    code, _, err = vpe(*_attach_args(agent, "cvm3", "cli-err", "192.0.2.73/24", "--import-rt", "65000:99"))
    assert code == 1 and "import_rts" in err
    # nothing was attached by the failures
    code, out, _ = vpe("vpn", "show", "cli-err", "--json", "--socket", agent)
    assert json.loads(out)["ports"] == []
    assert vpe("vpn", "delete", "cli-err", "--socket", agent)[0] == 0


def test_agent_socket_env(agent: str) -> None:
    """``VPE_SOCKET`` is read when the CLI module is imported: check it in a subprocess."""
    env = {**os.environ, "VPE_SOCKET": agent}
    r = subprocess.run([sys.executable, "-m", "vpe.cli.main", "vpn", "list", "--json"],
                       env=env, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


def test_show_counters_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table for people, from a userspace forwarder's answer (as ``GET /v1/counters`` gives it)."""
    import vpe.cli.main as cli

    sample = {
        "driver": "userspace", "socket": "/run/vpe/fib.sock",
        "ports": {"vm1": {"rx_packets": 11, "rx_bytes": 1100, "tx_packets": 7, "tx_bytes": 700, "drops": 2}},
        "vrfs": {"red": {"routed_local": 5, "encapsulated": 6, "decapsulated": 7, "replicated": 0, "drops": 1}},
        "drops": {"no-route": 3},
        "underlay": {"rx_packets": 9},
    }
    monkeypatch.setattr(cli, "_get", lambda socket, path, **kw: sample)
    code, out, _ = vpe("show", "counters")
    assert code == 0
    for needle in ("/run/vpe/fib.sock", "vm1", "1100", "red", "encapsulated", "no-route", "Underlay"):
        assert needle in out, needle


# -- names never change the URL, and nothing ends in a traceback (issue 13, finding 6) ----------


def test_detach_path_traversal_refused(agent: str) -> None:
    """`vpe detach ../vpns/victim` must not delete VPN `victim`: exit 2, nothing removed."""
    code, _, err = vpe("vpn", "create", "victim", "--rt", "65000:66", "--socket", agent)
    assert code == 0, err
    try:
        for args in (["detach", "../vpns/victim"], ["detach", ".."], ["vpn", "delete", "../vpns/victim"],
                     ["detach", "%2e%2e%2Fvpns%2Fvictim"]):
            code, _, err = vpe(*args, "--socket", agent)
            assert code == 2 and "name:" in err, (args, code, err)
        code, out, _ = vpe("vpn", "show", "victim", "--json", "--socket", agent)
        assert code == 0 and json.loads(out)["name"] == "victim"
    finally:
        vpe("vpn", "delete", "victim", "--force", "--socket", agent)


def test_show_odd_names_no_traceback(agent: str) -> None:
    """`vpe vpn show ../ports` (and friends) end in one error line, never a traceback."""
    for args in (["vpn", "show", "../ports"], ["show", "vrf", "../ports"], ["show", "bgp", "neighbors", "../x"],
                 ["vpn", "show", "a b"], ["vpn", "show", "x\u202e"]):
        r = subprocess.run([sys.executable, "-m", "vpe.cli.main", *args, "--socket", agent],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.startswith("error:"), (args, r.stderr)


# -- VRF neighbors (PE-CE BGP) ---------------------------------------------------------------------


def test_vpn_neighbor_add_list_show_del(agent: str) -> None:
    assert vpe("vpn", "create", "cli-ce", "--rt", "65000:12", "--socket", agent)[0] == 0
    code, out, err = vpe("vpn", "neighbor", "add", "cli-ce", "127.0.0.62", "--remote-as", "65009", "--passive",
                         "--family", "ipv4-unicast", "--description", "tenant CE", "--set", "hold_time=30",
                         "--json", "--socket", agent)
    assert code == 0, err
    d = json.loads(out)
    assert d["vpn"] == "cli-ce" and d["source"] == "api" and d["config"]["hold_time"] == 30
    assert d["config"]["families"] == ["ipv4-unicast"] and d["description"] == "tenant CE"
    code, out, _ = vpe("vpn", "neighbor", "list", "cli-ce", "--socket", agent)
    assert code == 0 and "127.0.0.62" in out and "65009" in out
    code, out, _ = vpe("vpn", "neighbor", "list", "cli-ce", "--json", "--socket", agent)
    assert [n["address"] for n in json.loads(out)] == ["127.0.0.62"]
    code, out, _ = vpe("vpn", "neighbor", "show", "cli-ce", "127.0.0.62", "--socket", agent)
    assert code == 0 and "tenant CE" in out and "ipv4-unicast" in out
    # invalid value: 422 -> 2 naming the field; unknown VPN: 404 -> 1; a bad address: 2 before sending
    code, _, err = vpe("vpn", "neighbor", "add", "cli-ce", "127.0.0.62", "--set", "hold_time=2", "--socket", agent)
    assert code == 2 and "hold_time" in err
    code, _, err = vpe("vpn", "neighbor", "add", "nope", "127.0.0.62", "--remote-as", "1", "--socket", agent)
    assert code == 1 and "no VPN instance" in err
    code, _, err = vpe("vpn", "neighbor", "show", "cli-ce", "banana", "--socket", agent)
    assert code == 2 and "address" in err
    code, _, err = vpe("vpn", "delete", "cli-ce", "--socket", agent)
    assert code == 1 and "BGP neighbors" in err
    code, out, _ = vpe("vpn", "neighbor", "del", "cli-ce", "127.0.0.62", "--socket", agent)
    assert code == 0 and "deleted" in out
    code, _, err = vpe("vpn", "neighbor", "show", "cli-ce", "127.0.0.62", "--socket", agent)
    assert code == 1 and "no neighbor" in err
    assert vpe("vpn", "delete", "cli-ce", "--socket", agent)[0] == 0
