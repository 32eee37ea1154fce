"""The real `vpe` CLI against a real agent over TCP: TLS, the bearer token, and the
error of every way it can go wrong (refused token, unknown CA, plain HTTP to a
TLS listener, nothing listening, bad options).

`vpe agent -c` runs as a subprocess (dataplane none, its API on a Unix socket
and on 127.0.0.1 with TLS and a token); the commands run in-process through
typer's CliRunner.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from vpe.cli.client import Target, TargetError, check_url, make_target
from vpe.cli.lg import Background, make_server
from vpe.cli.main import app

TOKEN = "tcp-cli-token-0123456789"

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.8"
[api]
socket = "{sock}"
tcp = "127.0.0.1:{port}"
token = "{token}"
tls_cert = "{cert}"
tls_key = "{key}"
[dataplane]
driver = "none"
"""


@dataclass
class TcpAgent:
    url: str
    port: int
    token_file: Path
    ca: Path
    dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def agent() -> Iterator[TcpAgent]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate (package openssl)")
    d = Path(tempfile.mkdtemp(prefix="vpe-clitcp-"))
    cert, key = d / "api.crt", d / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=vpe-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    port = _free_port()
    cfg = d / "vpe.toml"
    cfg.write_text(CONFIG.format(state=d / "state", sock=d / "api.sock", port=port, token=TOKEN,
                                 cert=cert, key=key))
    token_file = d / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    log = (d / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg),
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vpe agent exited with {proc.returncode}: {(d / 'agent.log').read_text()}")
            try:
                with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=2) as c:
                    if c.get(f"{url}/v1/vpns", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent's TCP API did not come up: {(d / 'agent.log').read_text()}")
            time.sleep(0.05)
        yield TcpAgent(url, port, token_file, cert, d)
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


def vpe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "VPE_API": "", "VPE_TOKEN": "",
                                                 "VPE_CA": "", **(env or {})})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def test_r13_4_cli_over_tls_with_token_file(agent: TcpAgent) -> None:
    rc, out, err = vpe("--api", agent.url, "--token-file", str(agent.token_file), "--ca", str(agent.ca),
                       "show", "bgp", "summary", "--json")
    assert rc == 0, err
    assert json.loads(out)["router_id"] == "198.18.0.8"


def test_cli_over_tls_from_environment(agent: TcpAgent) -> None:
    env = {"VPE_API": agent.url, "VPE_TOKEN": TOKEN, "VPE_CA": str(agent.ca)}
    rc, out, err = vpe("vpn", "create", "tcpblue", "--rt", "65000:77", env=env)
    assert rc == 0, err
    rc, out, err = vpe("vpn", "list", "--json", env=env)
    assert rc == 0 and [v["name"] for v in json.loads(out)] == ["tcpblue"], (out, err)
    rc, _, err = vpe("vpn", "delete", "tcpblue", env=env)
    assert rc == 0, err


def test_wrong_token_is_401_exit_1_naming_its_source(agent: TcpAgent, tmp_path: Path) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    rc, out, err = vpe("--api", agent.url, "--token-file", str(bad), "--ca", str(agent.ca), "vpn", "list")
    assert rc == 1 and out == ""
    assert "refused the bearer token (HTTP 401)" in err and str(bad) in err, err
    assert "not-the-token" not in err and err.count("\n") == 1
    rc, _, err = vpe("vpn", "list", env={"VPE_API": agent.url, "VPE_TOKEN": "wrong", "VPE_CA": str(agent.ca)})
    assert rc == 1 and "check VPE_TOKEN" in err, err


def test_unknown_ca_is_a_tls_error_exit_3(agent: TcpAgent) -> None:
    rc, _, err = vpe("--api", agent.url, "--token-file", str(agent.token_file), "vpn", "list")
    assert rc == 3, err
    assert err.startswith(f"error: TLS verification of {agent.url} failed:") and "--ca FILE" in err, err


def test_plain_http_to_tls_listener_exit_3(agent: TcpAgent) -> None:
    url = f"http://127.0.0.1:{agent.port}"
    rc, _, err = vpe("--api", url, "--token-file", str(agent.token_file), "vpn", "list")
    assert rc == 3 and url in err and "https://" in err, err


def test_refused_exit_3() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    rc, _, err = vpe("--api", url, "vpn", "list", env={"VPE_TOKEN": "x"})
    assert rc == 3 and f"cannot reach the vpe agent at {url}: connection refused" in err, err


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--api", "https://127.0.0.1:1"], {}, "--api needs the agent's bearer token"),
    (["--api", "ftp://127.0.0.1:1", "--token-file", "/nonexistent"], {}, "expected http://HOST:PORT"),
    (["--api", "https://127.0.0.1", "--token-file", "/nonexistent"], {}, "names no port"),
    (["--api", "https://127.0.0.1:1/v1", "--token-file", "/nonexistent"], {}, "no path"),
    (["--api", "https://127.0.0.1:1", "--token-file", "/nonexistent/token"], {}, "cannot read /nonexistent/token"),
    (["--token-file", "/nonexistent"], {}, "give --api"),
    (["--api", "http://127.0.0.1:1", "--ca", "/nonexistent"], {"VPE_TOKEN": "x"}, "--ca is for https://"),
    (["--api", "https://127.0.0.1:1", "--ca", "/nonexistent"], {"VPE_TOKEN": "x"}, "--ca: /nonexistent"),
    (["--api", "https://127.0.0.1:1"], {"VPE_TOKEN": "a b"}, "VPE_TOKEN: not one token"),
])
def test_bad_options_exit_2(args: list[str], env: dict[str, str], needle: str) -> None:
    rc, out, err = vpe(*args, "vpn", "list", env=env)
    assert rc == 2 and out == "", (out, err)
    assert needle in err and err.startswith("error: ") and err.count("\n") == 1, err


def test_empty_token_file(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("\n")
    with pytest.raises(TargetError, match="is empty"):
        make_target("/s", "https://127.0.0.1:1", str(f), None, None)


def test_check_url_keeps_ipv6_and_drops_slash() -> None:
    assert check_url("https://[::1]:8443/") == "https://[::1]:8443"
    assert make_target("/run/x.sock", None, None, "ignored", None).socket == "/run/x.sock"


# -- `vpe lg`: the looking glass proxied to a local browser ------------------------------------


def _tcp_target(agent: TcpAgent) -> Target:
    return make_target("/unused", agent.url, str(agent.token_file), None, str(agent.ca))


@pytest.mark.parametrize("over", ["socket", "tcp"])
def test_lg_proxy_serves_pages_only(agent: TcpAgent, over: str) -> None:
    t = Target(socket=str(agent.dir / "api.sock")) if over == "socket" else _tcp_target(agent)
    bg = Background(make_server(t, "127.0.0.1", 0))
    try:
        with httpx.Client(timeout=10) as c:
            r = c.get(bg.url)
            assert r.status_code == 200 and "router id 198.18.0.8" in r.text, r.text
            assert "default-src 'none'" in r.headers["content-security-policy"]
            assert c.get(bg.url + "neighbors").status_code == 200
            r = c.get(bg.url.removesuffix("/lg/"), follow_redirects=False)
            assert r.status_code == 308 and r.headers["location"] == "/lg/"
            assert c.get(bg.url.removesuffix("lg/") + "v1/vpns").status_code == 404  # the API stays out
            assert c.post(bg.url.removesuffix("lg/") + "v1/vpns", json={}).status_code == 405
            assert c.get(bg.url, headers={"Host": "evil.example:80"}).status_code == 421
    finally:
        bg.close()


def test_lg_proxy_wrong_token_and_no_agent(agent: TcpAgent, tmp_path: Path) -> None:
    bad = tmp_path / "t"
    bad.write_text("nope")
    for t, needle in ((make_target("/u", agent.url, str(bad), None, str(agent.ca)), "refused the bearer token"),
                      (Target(socket=str(tmp_path / "none.sock")), "cannot reach the vpe agent")):
        bg = Background(make_server(t, "127.0.0.1", 0))
        try:
            r = httpx.get(bg.url, timeout=10)
            assert r.status_code == 502 and needle in r.text, r.text
            assert "nope" not in r.text
        finally:
            bg.close()


def test_vpe_lg_command(agent: TcpAgent) -> None:
    """`vpe lg --port 0` prints its URL, serves the agent's pages over TCP with the token, stops on SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "--api", agent.url, "--token-file",
                             str(agent.token_file), "--ca", str(agent.ca), "lg", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"looking glass of the agent at {agent.url}: http://127.0.0.1:" in line, line
        url = line.split(": ", 1)[1].split(";")[0].split()[0]
        r = httpx.get(url + "vrfs", timeout=10)
        assert r.status_code == 200 and "<table>" in r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
