"""Issue 13, management plane: how `vpe agent` starts, as a real process.

* the API socket is 0600 (0660 with ``api.socket_group``), never 0666
  (finding 1, R13.4: the authenticated management API);
* the TCP API serves TLS when a certificate is configured, and still needs
  the bearer token (R13.4);
* one agent per state directory: the second exits 2 naming the first one's
  pid and leaves its socket alone; an API socket another agent serves is
  never taken over (finding 8);
* the state is keyed to the configuration: an agent of another AS/router id
  is refused instead of sharing it;
* every configuration error, schema or semantic or found against the host,
  is one line ``FILE: KEY: REASON`` and exit 2, never a traceback (finding 11);
* a read-only state database is reported as read-only, not as damaged.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import socket
import ssl
import stat
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

BASE = """
state_dir = "{state}"
[bgp]
local_as = {asn}
router_id = "{rid}"
[api]
socket = "{sock}"
{api}
[dataplane]
driver = "none"
"""

START_TIMEOUT = 20.0


def _config(d: Path, name: str = "a", *, state: Path | None = None, sock: Path | None = None,
            asn: int = 65000, rid: str = "198.18.0.7", api: str = "") -> Path:
    cfg = d / f"{name}.toml"
    cfg.write_text(BASE.format(state=state or d / "state", sock=sock or d / f"{name}.sock", asn=asn,
                               rid=rid, api=api))
    return cfg


class Agent:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.log = log
        self._f = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "agent", "-c", str(cfg),
                                      "--log-level", "warning"], stdout=self._f, stderr=subprocess.STDOUT)

    def wait_api(self, sock: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log.read_text()}")
            if sock.exists():
                try:
                    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2) as c:
                        if c.get("http://vpe/v1/vpns").status_code == 200:
                            return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"API did not come up: {self.log.read_text()}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._f.close()
        return rc, self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._f.close()


@pytest.fixture
def d() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="vpe-st-"))  # short: Unix socket paths are limited
    try:
        yield p
    finally:
        shutil.rmtree(p, ignore_errors=True)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    try:
        yield started
    finally:
        for a in started:
            a.stop()


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_r13_4_api_socket_is_owner_only(d: Path, agents: list[Agent]) -> None:
    """Finding 1: the Unix socket is 0600 by default, not uvicorn's world-writable 0666:
    another local user cannot create a VPN through it."""
    cfg = _config(d)
    a = Agent(cfg, d / "a.log")
    agents.append(a)
    a.wait_api(d / "a.sock")
    mode = stat.S_IMODE(os.stat(d / "a.sock").st_mode)
    assert mode == 0o600, oct(mode)
    if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("curl"):
        d.chmod(0o755)  # the directory is not what guards it: the socket's mode is
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-sS",
                            "--unix-socket", str(d / "a.sock"), "-H", "content-type: application/json",
                            "-d", '{"name": "evil", "route_targets": ["65000:9"]}', "http://vpe/v1/vpns"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 7, (r.returncode, r.stdout, r.stderr)  # 7: could not connect (EACCES)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(d / "a.sock")), timeout=5) as c:
            assert c.get("http://vpe/v1/vpns").json() == []


def test_r13_4_api_socket_group(d: Path, agents: list[Agent]) -> None:
    """With ``api.socket_group`` the socket is 0660 and belongs to that group."""
    group = grp.getgrgid(os.getgid() if os.getgid() != 0 else 1).gr_name
    cfg = _config(d, api=f'socket_group = "{group}"')
    a = Agent(cfg, d / "a.log")
    agents.append(a)
    a.wait_api(d / "a.sock")
    st = os.stat(d / "a.sock")
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam(group).gr_gid


def _self_signed(d: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate (package openssl)")
    cert, key = d / "api.crt", d / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=vpe-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_r13_4_tcp_api_tls_and_token(d: Path, agents: list[Agent]) -> None:
    """TCP API over TLS: the certificate is served, the token is still needed, plain HTTP fails."""
    cert, key = _self_signed(d)
    port = _free_port()
    token = "s3cret-token-for-tests"
    cfg = _config(d, api=f'tcp = "127.0.0.1:{port}"\ntoken = "{token}"\n'
                         f'tls_cert = "{cert}"\ntls_key = "{key}"')
    a = Agent(cfg, d / "a.log")
    agents.append(a)
    a.wait_api(d / "a.sock")
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}/v1/vpns"
    with httpx.Client(verify=ctx, timeout=5) as c:
        assert c.get(url).status_code == 401
        r = c.get(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == []
    with httpx.Client(timeout=5) as c, pytest.raises(httpx.TransportError):
        c.get(f"http://127.0.0.1:{port}/v1/vpns", headers={"Authorization": f"Bearer {token}"})


def test_second_agent_on_state_dir_exits_2_naming_pid(d: Path, agents: list[Agent]) -> None:
    """Finding 8: a second agent on the same state dir exits 2 naming the first one's pid,
    and does not unlink the first one's socket or touch its database."""
    first = Agent(_config(d, "a"), d / "a.log")
    agents.append(first)
    first.wait_api(d / "a.sock")
    second = Agent(_config(d, "b", state=d / "state"), d / "b.log")
    agents.append(second)
    rc, out = second.wait_exit()
    assert rc == 2, out
    assert f"pid {first.proc.pid}" in out and str(d / "state") in out, out
    assert "Traceback" not in out
    assert not (d / "b.sock").exists()
    first.wait_api(d / "a.sock")  # the first one still serves


def test_socket_served_by_another_agent_is_not_taken(d: Path, agents: list[Agent]) -> None:
    """A second agent (another state dir) configured with a socket the first serves exits 2."""
    first = Agent(_config(d, "a"), d / "a.log")
    agents.append(first)
    first.wait_api(d / "a.sock")
    second = Agent(_config(d, "b", state=d / "state-b", sock=d / "a.sock", rid="198.18.0.8"), d / "b.log")
    agents.append(second)
    rc, out = second.wait_exit()
    assert rc == 2 and "api.socket" in out and "served by another process" in out, out
    first.wait_api(d / "a.sock")


def test_state_keyed_to_configuration(d: Path, agents: list[Agent]) -> None:
    """Two configurations (another AS or router id) never silently share one state dir."""
    first = Agent(_config(d, "a"), d / "a.log")
    agents.append(first)
    first.wait_api(d / "a.sock")
    first.stop()
    other = Agent(_config(d, "b", rid="198.18.0.99"), d / "b.log")
    agents.append(other)
    rc, out = other.wait_exit()
    assert rc == 2, out
    assert "198.18.0.7" in out and "198.18.0.99" in out and "state_dir of its own" in out, out
    again = Agent(_config(d, "a"), d / "a2.log")  # the owner itself starts again
    agents.append(again)
    again.wait_api(d / "a.sock")


# -- configuration errors: one line each, exit 2 ----------------------------------------------

GOOD_VRF = '[[vrfs]]\nname = "red"\nroute_targets = ["65000:1"]\n'


def _run_agent_cli(cfg: Path) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["agent", "-c", str(cfg), "--log-level", "critical"],
                           env={"COLUMNS": "400"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"traceback: {r.exception!r}")
    return r.exit_code, r.stderr


SEMANTIC = [
    ("bad RT", GOOD_VRF.replace('"65000:1"', '"banana"'), "vrfs.0.route_targets"),
    ("bad RD", GOOD_VRF + 'rd = "nonsense"\n', "vrfs.0.rd"),
    ("duplicate RD", GOOD_VRF + 'rd = "65000:5"\n[[vrfs]]\nname = "blue"\nroute_targets = ["65000:2"]\n'
                     'rd = "65000:5"\n', "vrfs.1.rd"),
    ("leak onto itself", GOOD_VRF + '[[leaks]]\nname = "l"\nsource = "red"\ndestination = "red"\n', "leaks.0"),
    ("leak to nowhere", GOOD_VRF + '[[leaks]]\nname = "l"\nsource = "red"\ndestination = "nope"\n',
     "leaks.0.destination"),
    ("static without next hop", GOOD_VRF + '[[vrfs.routes]]\nprefix = "192.0.2.0/24"\nkind = "static"\n',
     "vrfs.0.routes.0"),
    ("vrf without RT", '[[vrfs]]\nname = "red"\n', "vrfs.0"),
    ("bad vrf name", '[[vrfs]]\nname = "../red"\nroute_targets = ["65000:1"]\n', "vrfs.0.name"),
    ("mapped neighbor twice", '[[neighbors]]\naddress = "::ffff:127.0.0.72"\nremote_as = 65000\n'
                              '[[neighbors]]\naddress = "127.0.0.72"\nremote_as = 65000\n', "neighbors.1.address"),
]


@pytest.mark.parametrize(("what", "extra", "key"), SEMANTIC, ids=[s[0] for s in SEMANTIC])
def test_semantic_config_errors_one_line_exit_2(d: Path, what: str, extra: str, key: str) -> None:
    """Finding 11 (and the smaller ones): semantic errors name file and key, exit 2, no traceback."""
    cfg = d / "bad.toml"
    cfg.write_text(BASE.format(state=d / "state", sock=d / "a.sock", asn=65000, rid="198.18.0.7", api="")
                   .replace("[api]", extra + "[api]"))
    code, err = _run_agent_cli(cfg)
    assert code == 2, (what, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any(ln.startswith(f"error: {cfg}: {key}") for ln in lines), (what, err)
    assert "Traceback" not in err


def _host_cases(d: Path) -> list[tuple[str, str, str]]:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    _host_cases.busy = busy  # type: ignore[attr-defined]  # kept open for the test
    port = busy.getsockname()[1]
    a_file = d / "plain-file"
    a_file.write_text("x")
    return [
        ("api.tcp nonsense", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{d / "a.sock"}"\ntcp = "nonsense"\n'
                             'token = "t0ken-for-tests"\n', "api.tcp"),
        ("state_dir is a file", f'state_dir = "{a_file}"\n[api]\nsocket = "{d / "a.sock"}"\n', "state_dir"),
        ("state_dir unusable", f'state_dir = "/proc/vpe-no/state"\n[api]\nsocket = "{d / "a.sock"}"\n',
         "state_dir"),
        ("socket path too long", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{d / ("x" * 120)}.sock"\n',
         "api.socket"),
        ("socket dir impossible", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{a_file}/a.sock"\n', "api.socket"),
        ("listen not local", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{d / "a.sock"}"\n'
                             '[bgp]\nlisten = ["203.0.113.9"]\n', "bgp.listen.0"),
        ("BGP port in use", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{d / "a.sock"}"\n'
                            f'[bgp]\nlisten = ["127.0.0.1"]\nport = {port}\n', "bgp.port"),
        ("no socket group", f'state_dir = "{d / "s"}"\n[api]\nsocket = "{d / "a.sock"}"\n'
                            'socket_group = "no-such-group-vpe"\n', "api.socket_group"),
    ]


def test_host_config_errors_one_line_exit_2(d: Path) -> None:
    """Finding 11: errors found against the host: file, key and reason on one line, exit 2."""
    try:
        for what, body, key in _host_cases(d):
            head, _, rest = body.partition("[bgp]\n")
            text = head.replace("[api]", "[dataplane]\ndriver = \"none\"\n[api]") + \
                '[bgp]\nlocal_as = 65000\nrouter_id = "198.18.0.7"\n' + rest
            cfg = d / "bad.toml"
            cfg.write_text(text)
            code, err = _run_agent_cli(cfg)
            assert code == 2, (what, err)
            assert any(ln.startswith(f"error: {cfg}: {key}:") for ln in err.splitlines()), (what, err)
            assert "Traceback" not in err, (what, err)
    finally:
        _host_cases.busy.close()  # type: ignore[attr-defined]


def test_read_only_state_db_reported_as_such(d: Path) -> None:
    """A state database on a read-only mount is "read-only", not "damaged, restore a backup"."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a read-only bind mount in a private mount namespace")
    state = d / "state"
    cfg = _config(d)
    a = Agent(cfg, d / "a.log")
    a.wait_api(d / "a.sock")
    a.stop()
    script = (f"mount --bind {state} {state} && mount -o remount,bind,ro {state} && "
              f"exec {sys.executable} -m vpe.cli.main agent -c {cfg} --log-level critical")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 2, r.stderr
    assert "read-only" in r.stderr.lower() and "damaged" not in r.stderr, r.stderr
