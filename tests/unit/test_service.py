"""Running as a service: the systemd units (``systemd-analyze verify``), the default
configuration path, the state directory keyed per configuration (and the refusal of a
changed key), and logs for the journal (no second timestamp, syslog priorities).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vpe.agent.config import ConfigError, parse_config
from vpe.agent.statedir import resolve_state_dir, state_key
from vpe.agent.store import Store
from vpe.cli.main import DEFAULT_CONFIG, _JournalFormatter, app, under_journal

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"

BASE = """
[bgp]
local_as = 65000
router_id = "198.18.0.21"
[dataplane]
driver = "none"
"""


# -- the unit files --------------------------------------------------------------------------


def _units_for_here(tmp: Path) -> Path:
    """The units with /opt/vpe/bin/ replaced by a directory holding this venv's programs
    (``systemd-analyze verify`` checks that ExecStart's program exists)."""
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    vpe = Path(sys.executable).parent / "vpe"
    if vpe.exists():
        (bindir / "vpe").symlink_to(vpe)
    else:
        (bindir / "vpe").write_text("#!/bin/sh\nexec python3 -m vpe.cli.main \"$@\"\n")
        (bindir / "vpe").chmod(0o755)
    out = tmp / "units"
    out.mkdir()
    for unit in UNITS.glob("*.service"):
        (out / unit.name).write_text(unit.read_text().replace("/opt/vpe/bin/", f"{bindir}/"))
    return out


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is needed to check the unit files (Debian package systemd)")


def test_systemd_analyze_verify_accepts_the_units(analyze: None, tmp_path: Path) -> None:
    units = _units_for_here(tmp_path)
    r = _verify(units / "vpe-agent.service", units / "vpe-forwarder.service")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_systemd_analyze_verify_refuses_a_broken_unit(analyze: None, tmp_path: Path) -> None:
    """The check above checks something: a misspelt key and a missing program are refused."""
    units = _units_for_here(tmp_path)
    bad = units / "vpe-agent.service"
    bad.write_text(bad.read_text().replace("Restart=on-failure", "Restart=sometimes")
                   .replace(f"{tmp_path}/bin/vpe agent", "/nonexistent/vpe agent"))
    r = _verify(bad)
    assert r.returncode != 0 and "/nonexistent/vpe" in r.stderr, r.stderr


def _keys(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_restarting_the_agent_keeps_the_forwarder() -> None:
    """No unit binds the forwarder's life to the agent's, and neither removes /run/vpe
    (the forwarder's socket) when it stops; the agent reads the default configuration."""
    agent, fwd = _keys(UNITS / "vpe-agent.service"), _keys(UNITS / "vpe-forwarder.service")
    for k in ("Requires", "BindsTo", "PartOf", "Requisite"):
        assert k not in agent and k not in fwd, k
    assert "vpe-forwarder.service" in agent["Wants"][0] and "vpe-forwarder.service" in agent["After"][0]
    assert agent["RuntimeDirectoryPreserve"] == ["yes"] and fwd["RuntimeDirectoryPreserve"] == ["yes"]
    assert agent["ExecStart"] == [f"/opt/vpe/bin/vpe agent --config {DEFAULT_CONFIG}"]
    assert agent["StateDirectory"] == ["vpe"] and agent["RestartPreventExitStatus"] == ["2"]
    assert "--socket /run/vpe/fib.sock" in fwd["ExecStart"][0]


# -- the default configuration path -----------------------------------------------------------


def test_agent_without_config_reads_the_default_path(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path(DEFAULT_CONFIG).exists():
        pytest.skip(f"{DEFAULT_CONFIG} exists on this machine")
    monkeypatch.delenv("VPE_CONFIG", raising=False)
    r = CliRunner().invoke(app, ["agent"])
    assert r.exit_code == 2 and f"error: {DEFAULT_CONFIG}: cannot read" in r.stderr, r.stderr


def test_agent_config_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text("[bgp]\nlocal_as = 0\n")
    r = CliRunner().invoke(app, ["agent"], env={"VPE_CONFIG": str(f)})
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {f}: bgp"), r.stderr


# -- the state directory, keyed per configuration ---------------------------------------------------


def test_state_dir_keyed_by_router_id_and_config_path(tmp_path: Path) -> None:
    cfg = parse_config(BASE)
    a = resolve_state_dir(cfg, "/etc/vpe/agent.toml", root=str(tmp_path))
    b = resolve_state_dir(cfg, "/etc/vpe/other.toml", root=str(tmp_path))
    assert Path(a.state_dir).parent == tmp_path and a.state_dir != b.state_dir
    assert Path(a.state_dir).name == state_key("198.18.0.21", "/etc/vpe/agent.toml")
    assert Path(a.state_dir).name.startswith("198.18.0.21-") and len(Path(a.state_dir).name) == len("198.18.0.21-") + 8
    assert resolve_state_dir(cfg, "/etc/vpe/agent.toml", root=str(tmp_path)).state_dir == a.state_dir
    # a configured state_dir is used as it is
    given = parse_config(f'state_dir = "{tmp_path / "mine"}"\n' + BASE)
    assert resolve_state_dir(given, "/x.toml", root=str(tmp_path)).state_dir == str(tmp_path / "mine")


def test_changed_key_is_refused_naming_both(tmp_path: Path) -> None:
    """The configuration moved (another path): its state is in the old key's directory;
    the agent refuses to start afresh and says how to keep it."""
    cfg = parse_config(BASE)
    old = Path(resolve_state_dir(cfg, "/etc/vpe/agent.toml", root=str(tmp_path)).state_dir)
    old.mkdir()
    store = Store.in_dir(old)
    store.claim(65000, "198.18.0.21", "/etc/vpe/agent.toml")
    store.close()
    with pytest.raises(ConfigError) as e:
        resolve_state_dir(cfg, "/srv/vpe/agent.toml", root=str(tmp_path))
    msg = str(e.value)
    assert msg.startswith("/srv/vpe/agent.toml: state_dir:") and str(old) in msg
    assert "(configuration /etc/vpe/agent.toml)" in msg and f'set state_dir = "{old}"' in msg
    # another router id is another directory: no clash
    other = parse_config(BASE.replace("198.18.0.21", "198.18.0.22"))
    assert resolve_state_dir(other, "/srv/vpe/agent.toml", root=str(tmp_path)).state_dir != str(old)


def test_state_of_older_versions_in_the_root_is_kept(tmp_path: Path) -> None:
    (tmp_path / "vpe.db").write_bytes(b"")
    cfg = parse_config(BASE)
    assert resolve_state_dir(cfg, "/etc/vpe/agent.toml", root=str(tmp_path)).state_dir == str(tmp_path)


# -- logs for the journal ---------------------------------------------------------------------------


def test_journal_formatter_priorities_no_timestamp() -> None:
    import logging

    f = _JournalFormatter()
    rec = logging.LogRecord("vpe.agent", logging.WARNING, __file__, 1, "peer %s: down", ("198.18.0.2",), None)
    assert f.format(rec) == "<4>WARNING vpe.agent: peer 198.18.0.2: down"
    rec = logging.LogRecord("vpe.agent", logging.ERROR, __file__, 1, "two\nlines", (), None)
    assert f.format(rec) == "<3>ERROR vpe.agent: two\n<3>lines"


def test_under_journal_matches_the_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "err").open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not under_journal(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not under_journal(stream)


def test_agent_logs_for_the_journal(tmp_path: Path) -> None:
    """A real agent whose stderr is the stream JOURNAL_STREAM names (as under systemd):
    lines carry a syslog priority and no timestamp of their own."""
    d = Path(tempfile.mkdtemp(prefix="vpe-svc-"))
    try:
        cfg = d / "agent.toml"
        cfg.write_text(f'state_dir = "{d / "state"}"\n' + BASE + f'[api]\nsocket = "{d / "api.sock"}"\n')
        with (d / "stderr").open("w") as err:
            st = os.fstat(err.fileno())
            env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            proc = subprocess.Popen([sys.executable, "-m", "vpe.cli.main", "agent", "--config", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=err, env=env)
            try:
                deadline = time.monotonic() + 20
                while "vpe agent up" not in (d / "stderr").read_text():
                    assert proc.poll() is None, (d / "stderr").read_text()
                    assert time.monotonic() < deadline, (d / "stderr").read_text()
                    time.sleep(0.05)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        lines = (d / "stderr").read_text().splitlines()
        up = next(line for line in lines if "vpe agent up" in line)
        assert up.startswith("<6>INFO vpe.agent: vpe agent up"), up
        assert all(line.startswith("<") for line in lines), lines
    finally:
        shutil.rmtree(d, ignore_errors=True)
