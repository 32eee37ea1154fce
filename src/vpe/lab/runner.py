"""Start and stop processes inside namespaces, with pid files and logs.

Each process has, in its directory under the lab state dir:

* ``<name>.pid``   - the process id, plain text (``kill $(cat agent.pid)`` works)
* ``<name>.json``  - argv, namespace and the kernel's start time of the process,
  so that a recycled pid is never mistaken for ours and never killed
* ``<name>.log``   - stdout and stderr

A process runs as ``ip netns exec NS argv...`` (which execs argv, so the pid
is the program's own) in a new session, so that it outlives ``vpe lab up``
and its whole process group can be signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import netns


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process to run in a namespace.

    ``config`` is the text of its configuration file (written to
    ``config_path`` before start); when it changes between two ``up``
    runs the process is restarted, otherwise a live process is left alone.
    """

    name: str
    argv: tuple[str, ...]
    config_path: Path | None = None
    config: str | None = None
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ProcessState:
    name: str
    ns: str
    pid: int | None
    alive: bool
    log: str
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "namespace": self.ns,
            "pid": self.pid,
            "alive": self.alive,
            "log": self.log,
            "argv": list(self.argv),
        }


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    if not rest or rest[0] in ("Z", "X"):
        return None
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect a child of this process that has exited (in-process callers, e.g. tests)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    _reap(pid)
    st = _start_time(pid)
    if st is None:
        return False
    return start_time is None or st == start_time


def _paths(directory: Path, name: str) -> tuple[Path, Path, Path]:
    return directory / f"{name}.pid", directory / f"{name}.json", directory / f"{name}.log"


def _read_meta(directory: Path, name: str) -> dict[str, object] | None:
    _, meta, _ = _paths(directory, name)
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def state(directory: Path, name: str) -> ProcessState:
    pidf, _, log = _paths(directory, name)
    meta = _read_meta(directory, name) or {}
    try:
        pid: int | None = int(pidf.read_text().strip())
    except (OSError, ValueError):
        pid = None
    start = meta.get("start_time")
    alive = pid is not None and pid_alive(pid, start if isinstance(start, int) else None)
    argv = meta.get("argv")
    return ProcessState(
        name=name,
        ns=str(meta.get("namespace", "")),
        pid=pid,
        alive=alive,
        log=str(log),
        argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
    )


def list_processes(directory: Path) -> list[ProcessState]:
    if not directory.is_dir():
        return []
    return [state(directory, p.stem) for p in sorted(directory.glob("*.pid"))]


def start(ns: str, spec: ProcessSpec, directory: Path) -> ProcessState:
    """Start ``spec`` in ``ns`` unless it already runs with the same configuration."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = False
    if spec.config_path is not None and spec.config is not None:
        try:
            old = spec.config_path.read_text()
        except OSError:
            old = None
        if old != spec.config:
            tmp = spec.config_path.with_suffix(spec.config_path.suffix + ".tmp")
            tmp.write_text(spec.config)
            tmp.replace(spec.config_path)
            changed = old is not None
    cur = state(directory, spec.name)
    if cur.alive and not changed and cur.argv == spec.argv:
        return cur
    if cur.alive:
        stop(directory, spec.name)

    pidf, metaf, logf = _paths(directory, spec.name)
    env = dict(os.environ)
    env.update(dict(spec.env))
    with open(logf, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start in {ns}: {' '.join(spec.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *spec.argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
            start_new_session=True,
        )
    # the kernel's start time identifies this process even after pid reuse
    meta = {"namespace": ns, "argv": list(spec.argv), "start_time": _start_time(proc.pid)}
    metaf.write_text(json.dumps(meta, indent=2) + "\n")
    pidf.write_text(f"{proc.pid}\n")
    return state(directory, spec.name)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: Sequence[tuple[int, int | None]], timeout: float) -> list[int]:
    """Poll (bounded) until none of the pids runs; the ones still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [(p, s) for p, s in pids if pid_alive(p, s)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [(p, s) for p, s in left if pid_alive(p, s)]
    return [p for p, _ in left]


def stop(directory: Path, name: str, timeout: float = 5.0) -> bool:
    """SIGTERM the process (its group), SIGKILL after ``timeout``; remove its pid file.

    True when a live process was stopped. The start time recorded at launch
    guards against signalling an unrelated process that reused the pid.
    """
    pidf, metaf, _ = _paths(directory, name)
    meta = _read_meta(directory, name) or {}
    start_time = meta.get("start_time")
    st = start_time if isinstance(start_time, int) else None
    try:
        pid = int(pidf.read_text().strip())
    except (OSError, ValueError):
        pid = None
    stopped = False
    if pid is not None and pid_alive(pid, st):
        _signal_group(pid, signal.SIGTERM)
        if _wait_gone([(pid, st)], timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone([(pid, st)], 2.0)
        stopped = True
    for p in (pidf, metaf):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stopped


def kill_namespace_processes(ns: str, timeout: float = 3.0) -> list[int]:
    """Terminate whatever still runs inside ``ns`` (`ip netns pids`); the pids signalled."""
    me = os.getpid()
    pids = [p for p in netns.netns_pids(ns) if p != me]
    if not pids:
        return []
    tracked = [(p, _start_time(p)) for p in pids]
    for p, _ in tracked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGTERM)
    left = _wait_gone(tracked, timeout)
    for p in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    _wait_gone([(p, None) for p in left], 2.0)
    return pids


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
