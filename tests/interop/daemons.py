"""Start, drive and stop real BGP daemons (GoBGP, FRR bgpd, BIRD, ExaBGP) for interop tests.

Why this exists: interop tests and the vector capture tool need the same thing
over and over -- a third-party speaker on a loopback address and an
unprivileged port, configured from a few parameters, ready before the test
talks to it, and gone afterwards even when the test fails. Each class here
writes its daemon's config into a per-test directory, runs the daemon in the
foreground as a child process, waits (bounded) until its control interface
answers, and stops it by process id.

Nothing here imports vpe: the harness must work even when vpe is broken, so
that a failing interop test points at vpe and not at the harness.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

#: Family names used by this harness, mapped per daemon below.
FAMILIES: tuple[str, ...] = (
    "ipv4",
    "ipv6",
    "vpnv4",
    "vpnv6",
    "rtc",
    "ipv4-labeled",
    "ipv6-labeled",
)

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.2


class DaemonError(RuntimeError):
    """A daemon failed to start, exited early, or did not reach a state in time."""


# --------------------------------------------------------------------------- helpers


def require_binary(binary: str, package: str | None = None) -> str:
    """Return the path of ``binary`` or skip the calling test, naming the package."""
    path = shutil.which(binary) or _sbin_lookup(binary)
    if path is None:
        pkg = package or binary
        pytest.skip(f"{binary} not installed: apt-get install {pkg}")
    return path


def _sbin_lookup(binary: str) -> str | None:
    """``shutil.which`` misses /usr/sbin and /usr/lib/frr for non-root PATHs."""
    for directory in ("/usr/sbin", "/sbin", "/usr/lib/frr"):
        candidate = Path(directory) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(address: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently unused TCP port on ``address``.

    There is a small window before the daemon binds it; tests accept that
    because each test allocates its own ports and nothing else binds here.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
        except (DaemonError, subprocess.SubprocessError, OSError, ValueError) as exc:
            last_exc = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise DaemonError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _run(cmd: Sequence[str], timeout: float = 10.0, check: bool = True) -> str:
    """Run a control command (gobgp, vtysh, birdc) and return stdout."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise DaemonError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One BGP neighbor as seen from the daemon being configured.

    ``port`` is the port the neighbor listens on (where an active session
    connects to). ``addpath_send`` is the number of paths to send per prefix
    (0 = do not send); daemons that only know "all paths" treat any value > 0
    as "all".
    """

    address: str
    peer_as: int
    port: int = 179
    passive: bool = False
    families: tuple[str, ...] = ("vpnv4",)
    addpath_send: int = 0
    addpath_receive: bool = False
    md5_password: str | None = None
    rr_client: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {FAMILIES}")


# --------------------------------------------------------------------------- base class


@dataclass
class Daemon:
    """A BGP daemon run in the foreground as a child process.

    Subclasses provide the binary, the config text, the command line and a
    readiness probe. Use as a context manager, or call ``start``/``stop``.
    """

    workdir: Path
    address: str
    port: int
    local_as: int
    router_id: str
    neighbors: Sequence[Neighbor] = ()
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    binary: ClassVar[str] = ""
    package: ClassVar[str] = ""
    name: ClassVar[str] = "daemon"

    # -- to be provided by subclasses
    def config_text(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def established(self, neighbor: str) -> bool:
        raise NotImplementedError

    @property
    def config_path(self) -> Path:
        """Where :meth:`prepare` writes :meth:`config_text`."""
        raise NotImplementedError

    # -- shared machinery
    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def prepare(self) -> None:
        """Create the work directory and write the config file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())

    def start(self, timeout: float = READY_TIMEOUT) -> Self:
        """Write config, spawn the daemon and wait until it answers its control channel."""
        require_binary(self.binary, self.package)
        self.prepare()
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            wait_until(self._ready_or_dead, timeout, f"{self.name} on {self.address}:{self.port}")
        except DaemonError:
            self.stop()
            raise DaemonError(
                f"{self.name} did not become ready; log:\n{self.log_tail()}"
            ) from None
        return self

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready_or_dead(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonError(f"{self.name} exited with {self.proc.returncode}")
        return self.is_ready()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the daemon (SIGTERM, then SIGKILL) and any children it spawned.

        The daemon runs in its own session, so its process group id is its
        pid; signalling that group by id also ends helper processes such as
        ExaBGP's API script, without touching anything else on the machine.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_established(self, neighbor: str, timeout: float = 30.0) -> None:
        """Block until the session with ``neighbor`` is Established."""
        try:
            wait_until(
                lambda: self.established(neighbor), timeout, f"{self.name} session to {neighbor}"
            )
        except DaemonError as exc:
            raise DaemonError(f"{exc}; {self.name} log:\n{self.log_tail()}") from None


# --------------------------------------------------------------------------- GoBGP

_GOBGP_AFI_SAFI = {
    "ipv4": "ipv4-unicast",
    "ipv6": "ipv6-unicast",
    "vpnv4": "l3vpn-ipv4-unicast",
    "vpnv6": "l3vpn-ipv6-unicast",
    "rtc": "rtc",
    "ipv4-labeled": "ipv4-labelled-unicast",
    "ipv6-labeled": "ipv6-labelled-unicast",
}

#: ``gobgp -a`` names for the harness family names.
GOBGP_CLI_FAMILY = {
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "vpnv4": "vpnv4",
    "vpnv6": "vpnv6",
    "rtc": "rtc",
    "ipv4-labeled": "ipv4-mpls",
    "ipv6-labeled": "ipv6-mpls",
}


@dataclass
class GoBGP(Daemon):
    """gobgpd with its gRPC API on ``api_port`` (driven through the ``gobgp`` CLI)."""

    api_port: int = 0

    binary: ClassVar[str] = "gobgpd"
    package: ClassVar[str] = "gobgpd"
    name: ClassVar[str] = "gobgpd"

    def __post_init__(self) -> None:
        if not self.api_port:
            self.api_port = free_port()

    @property
    def config_path(self) -> Path:
        return self.workdir / "gobgpd.toml"

    def config_text(self) -> str:
        out = [
            "[global.config]",
            f"  as = {self.local_as}",
            f'  router-id = "{self.router_id}"',
            f"  port = {self.port}",
            f'  local-address-list = ["{self.address}"]',
        ]
        for n in self.neighbors:
            out += [
                "",
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{n.address}"',
                f"    peer-as = {n.peer_as}",
            ]
            if n.md5_password:
                out.append(f'    auth-password = "{n.md5_password}"')
            out += [
                "  [neighbors.timers.config]",
                "    connect-retry = 2",
                "    idle-hold-time-after-reset = 1",
                "  [neighbors.transport.config]",
                f"    passive-mode = {'true' if n.passive else 'false'}",
                f'    local-address = "{self.address}"',
                f"    remote-port = {n.port}",
            ]
            if n.rr_client:
                out += [
                    "  [neighbors.route-reflector.config]",
                    "    route-reflector-client = true",
                    f'    route-reflector-cluster-id = "{self.router_id}"',
                ]
            for fam in n.families:
                out += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "{_GOBGP_AFI_SAFI[fam]}"',
                ]
                if n.addpath_send or n.addpath_receive:
                    out += [
                        "    [neighbors.afi-safis.add-paths.config]",
                        f"      receive = {'true' if n.addpath_receive else 'false'}",
                        f"      send-max = {n.addpath_send}",
                    ]
        if self.extra_config:
            out += ["", self.extra_config]
        return "\n".join(out) + "\n"

    def command(self) -> list[str]:
        return [
            require_binary("gobgpd", "gobgpd"),
            "-f",
            str(self.config_path),
            "--api-hosts",
            f"127.0.0.1:{self.api_port}",
            "--log-plain",
        ]

    def cli(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``gobgp -p API_PORT ARGS`` and return stdout (raises on failure)."""
        gobgp = require_binary("gobgp", "gobgp")
        return _run([gobgp, "-p", str(self.api_port), *args], timeout=timeout)

    def cli_json(self, *args: str) -> Any:
        text = self.cli(*args, "-j").strip()
        return json.loads(text) if text else None

    def is_ready(self) -> bool:
        self.cli("global")
        return True

    def neighbor_state(self, neighbor: str) -> str:
        """Session state as GoBGP reports it (e.g. ``"established"``)."""
        data = self.cli_json("neighbor", neighbor)
        state = data.get("state", {}).get("session_state", "")
        return str(state).lower()

    def established(self, neighbor: str) -> bool:
        return self.neighbor_state(neighbor) in ("established", "6")

    def rib(self, family: str = "vpnv4", table: str = "global", neighbor: str | None = None) -> Any:
        """Parsed ``gobgp ... rib -a FAMILY -j``.

        ``table`` is ``global`` or one of ``adj-in``/``adj-out``/``local``
        (with ``neighbor``).
        """
        fam = GOBGP_CLI_FAMILY.get(family, family)
        if table == "global":
            return self.cli_json("global", "rib", "-a", fam) or {}
        if neighbor is None:
            raise ValueError("neighbor rib needs a neighbor address")
        return self.cli_json("neighbor", neighbor, table, "-a", fam) or {}

    def add_vpnv4(
        self,
        prefix: str,
        rd: str,
        rt: str | Iterable[str],
        label: int,
        nexthop: str,
        *extra: str,
    ) -> None:
        """Originate a VPNv4 route; ``extra`` appends raw CLI words (e.g. ``encap``, ``mpls-in-udp``)."""
        self._add("vpnv4", prefix, rd, rt, label, nexthop, extra)

    def add_vpnv6(
        self,
        prefix: str,
        rd: str,
        rt: str | Iterable[str],
        label: int,
        nexthop: str,
        *extra: str,
    ) -> None:
        """Originate a VPNv6 route (same shape as ``add_vpnv4``)."""
        self._add("vpnv6", prefix, rd, rt, label, nexthop, extra)

    def _add(
        self,
        family: str,
        prefix: str,
        rd: str,
        rt: str | Iterable[str],
        label: int,
        nexthop: str,
        extra: Sequence[str],
    ) -> None:
        rts = [rt] if isinstance(rt, str) else list(rt)
        args = ["global", "rib", "-a", family, "add", prefix, "label", str(label), "rd", rd]
        if rts:
            args += ["rt", *rts]
        args += [*extra, "nexthop", nexthop]
        self.cli(*args)

    def add_route(self, family: str, *words: str) -> None:
        """Generic ``gobgp global rib -a FAMILY add WORDS...``."""
        self.cli("global", "rib", "-a", GOBGP_CLI_FAMILY.get(family, family), "add", *words)

    def add_vrf(self, name: str, rd: str, rt_import: str, rt_export: str, vrf_id: int = 0) -> None:
        """``gobgp vrf add``: also makes GoBGP originate RT-constraint routes for the import RT."""
        args = ["vrf", "add", name, "rd", rd, "rt", "import", rt_import, "export", rt_export]
        if vrf_id:
            args += ["id", str(vrf_id)]
        self.cli(*args)


# --------------------------------------------------------------------------- FRR

_FRR_AF = {
    "ipv4": "ipv4 unicast",
    "ipv6": "ipv6 unicast",
    "vpnv4": "ipv4 vpn",
    "vpnv6": "ipv6 vpn",
    "ipv4-labeled": "ipv4 labeled-unicast",
    "ipv6-labeled": "ipv6 labeled-unicast",
}


@dataclass
class FRR(Daemon):
    """FRR bgpd alone (``-Z``: no zebra), its vty socket in the work directory.

    Without zebra, bgpd cannot resolve next hops through a kernel table, so
    labeled unicast (which needs zebra for label/next-hop binding) is not
    usable; VPN families and plain unicast work. FRR always advertises
    ADD-PATH receive (its default); ``addpath_receive=False`` does not turn
    that off -- add ``neighbor X disable-addpath-rx`` through
    ``extra_config`` for that (FRR 8.4 then still sends the ADD-PATH
    capability, with send/receive = 0 per family). ``extra_config`` is appended
    inside ``router bgp`` (e.g. ``address-family ipv4 vpn`` + ``network``
    lines); ``extra_global`` goes before it.
    """

    extra_global: str = ""

    binary: ClassVar[str] = "bgpd"
    package: ClassVar[str] = "frr"
    name: ClassVar[str] = "bgpd"

    @property
    def config_path(self) -> Path:
        return self.workdir / "bgpd.conf"

    def config_text(self) -> str:
        out = ["hostname vpe-interop", "log stdout informational", "!"]
        if self.extra_global:
            out += [self.extra_global, "!"]
        out += [
            f"router bgp {self.local_as}",
            f" bgp router-id {self.router_id}",
            " no bgp default ipv4-unicast",
            " no bgp ebgp-requires-policy",
            " no bgp network import-check",
            " bgp cluster-id " + self.router_id,
        ]
        for n in self.neighbors:
            unsupported = [f for f in n.families if f not in _FRR_AF]
            if unsupported:
                raise ValueError(f"FRR harness does not support families {unsupported}")
            out += [
                f" neighbor {n.address} remote-as {n.peer_as}",
                f" neighbor {n.address} port {n.port}",
                f" neighbor {n.address} update-source {self.address}",
                f" neighbor {n.address} timers connect 2",
            ]
            if n.peer_as != self.local_as:
                # Loopback peers are not "connected" for bgpd without zebra.
                out.append(f" neighbor {n.address} disable-connected-check")
            if n.passive:
                out.append(f" neighbor {n.address} passive")
            if n.md5_password:
                out.append(f" neighbor {n.address} password {n.md5_password}")
        for fam in FAMILIES:
            users = [n for n in self.neighbors if fam in n.families]
            if not users:
                continue
            out.append(f" address-family {_FRR_AF[fam]}")
            for n in users:
                out.append(f"  neighbor {n.address} activate")
                if n.rr_client:
                    out.append(f"  neighbor {n.address} route-reflector-client")
                if n.addpath_send:
                    out.append(f"  neighbor {n.address} addpath-tx-all-paths")
            out.append(" exit-address-family")
        if self.extra_config:
            out.append(self.extra_config)
        out.append("!")
        return "\n".join(out) + "\n"

    def prepare(self) -> None:
        super().prepare()
        _chown_tree(self.workdir, "frr")

    def command(self) -> list[str]:
        return [
            require_binary("bgpd", "frr"),
            "-f",
            str(self.config_path),
            "-Z",
            "-p",
            str(self.port),
            "-l",
            self.address,
            "-i",
            str(self.workdir / "bgpd.pid"),
            "--vty_socket",
            str(self.workdir),
            "-u",
            "frr",
            "-g",
            "frr",
            "-A",
            "127.0.0.1",
            "-P",
            "0",
        ]

    def vtysh(self, command: str, timeout: float = 10.0) -> str:
        """Run one vtysh command against this bgpd; returns its text output."""
        vtysh = require_binary("vtysh", "frr")
        return _run([vtysh, "--vty_socket", str(self.workdir), "-c", command], timeout=timeout)

    def configure(self, *lines: str) -> None:
        """Run ``configure terminal`` + ``lines`` in one vtysh call; FRR must answer nothing."""
        vtysh = require_binary("vtysh", "frr")
        cmd = [vtysh, "--vty_socket", str(self.workdir), "-c", "configure terminal"]
        for line in lines:
            cmd += ["-c", line]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr

    def json(self, command: str) -> Any:
        """Run a ``show ... json`` command and parse it."""
        if not command.rstrip().endswith("json"):
            command = command.rstrip() + " json"
        text = self.vtysh(command).strip()
        return json.loads(text) if text else {}

    def is_ready(self) -> bool:
        if not (self.workdir / "bgpd.vty").exists():
            return False
        self.vtysh("show bgp summary")
        return True

    def established(self, neighbor: str) -> bool:
        data = self.json(f"show bgp neighbors {neighbor} json")
        return bool(data.get(neighbor, {}).get("bgpState") == "Established")


def _chown_tree(path: Path, user: str) -> None:
    """Give ``path`` (and what is in it) to ``user``: bgpd drops to frr and must write its pid file."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    if os.geteuid() != 0:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)
    # Temp dirs (mkdtemp, pytest's tmp_path) are 0700: let the daemon user
    # traverse (not list) the ancestors that we own, or it cannot reach its dir.
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == os.geteuid() and not st.st_mode & 0o001:
            os.chmod(parent, (st.st_mode & 0o7777) | 0o001)


# --------------------------------------------------------------------------- BIRD

_BIRD_CHANNEL = {
    "ipv4": ("ipv4", None),
    "ipv6": ("ipv6", None),
    "vpnv4": ("vpn4 mpls", "vpntab4"),
    "vpnv6": ("vpn6 mpls", "vpntab6"),
    "ipv4-labeled": ("ipv4 mpls", None),
    "ipv6-labeled": ("ipv6 mpls", None),
}


@dataclass
class BIRD(Daemon):
    """BIRD 2 with its control socket in the work directory.

    Tables ``vpntab4``/``vpntab6`` are always declared, so ``extra_config``
    can add ``protocol static`` blocks that originate VPN routes into them.
    ``channel_options`` adds raw statements per harness family name. IPv6
    families over an IPv4 session get ``next hop address 2001:db8:ffff::N``
    (N = last octet of the local address) unless overridden there, because
    BIRD otherwise has no IPv6 next hop to send and withdraws its own routes.
    (An IPv4-mapped ``::ffff:a.b.c.d`` does not work: BIRD stores IPv4
    addresses in exactly that form and rejects it as an IPv4 next hop.)
    ``strict bind`` makes each protocol listen on its own local address only,
    so several BIRDs (and other daemons) can share a port number.
    """

    channel_options: dict[str, str] = field(default_factory=dict)

    binary: ClassVar[str] = "bird"
    package: ClassVar[str] = "bird2"
    name: ClassVar[str] = "bird"

    @property
    def config_path(self) -> Path:
        return self.workdir / "bird.conf"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "bird.ctl"

    @staticmethod
    def protocol_name(neighbor: str) -> str:
        """BIRD protocol name used for ``neighbor``: ``peer_127_0_0_2``."""
        return "peer_" + re.sub(r"[^0-9A-Za-z]", "_", neighbor)

    def config_text(self) -> str:
        out = [
            f"router id {self.router_id};",
            "log stderr all;",
            "protocol device {}",
            "vpn4 table vpntab4;",
            "vpn6 table vpntab6;",
        ]
        for n in self.neighbors:
            unsupported = [f for f in n.families if f not in _BIRD_CHANNEL]
            if unsupported:
                raise ValueError(f"BIRD harness does not support families {unsupported}")
            out += [
                f"protocol bgp {self.protocol_name(n.address)} {{",
                f"  local {self.address} port {self.port} as {self.local_as};",
                f"  neighbor {n.address} port {n.port} as {n.peer_as};",
                "  strict bind on;",
                "  connect retry time 2;",
                "  connect delay time 1;",
                "  error wait time 1, 5;",
            ]
            if n.peer_as != self.local_as:
                out.append("  multihop;")
            if n.passive:
                out.append("  passive on;")
            if n.rr_client:
                out.append("  rr client;")
            if n.md5_password:
                out.append(f'  password "{n.md5_password}";')
            if n.addpath_send and n.addpath_receive:
                addpath = "on"
            elif n.addpath_send:
                addpath = "tx"
            elif n.addpath_receive:
                addpath = "rx"
            else:
                addpath = "off"
            for fam in n.families:
                channel, table = _BIRD_CHANNEL[fam]
                body = [f"table {table};"] if table else []
                body += ["import all;", "export all;"]
                if addpath != "off":
                    body.append(f"add paths {addpath};")
                options = self.channel_options.get(fam)
                if (
                    options is None
                    and fam in ("vpnv6", "ipv6", "ipv6-labeled")
                    and ":" not in n.address
                ):
                    options = f"next hop address 2001:db8:ffff::{self.address.rsplit('.', 1)[-1]};"
                if options:
                    body.append(options)
                out.append(f"  {channel} {{ {' '.join(body)} }};")
            out.append("}")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    def command(self) -> list[str]:
        return [
            require_binary("bird", "bird2"),
            "-f",
            "-c",
            str(self.config_path),
            "-s",
            str(self.socket_path),
            "-P",
            str(self.workdir / "bird.pid"),
        ]

    def birdc(self, command: str, timeout: float = 10.0) -> str:
        """Run one birdc command; returns its text output."""
        birdc = require_binary("birdc", "bird2")
        return _run([birdc, "-s", str(self.socket_path), *command.split()], timeout=timeout)

    def is_ready(self) -> bool:
        return "Daemon is up" in self.birdc("show status")

    def protocol_state(self, neighbor: str) -> str:
        """BIRD's BGP state word (``Established``, ``Active``, ``Connect``, ...)."""
        text = self.birdc(f"show protocols all {self.protocol_name(neighbor)}")
        match = re.search(r"BGP state:\s+(\S+)", text)
        return match.group(1) if match else ""

    def established(self, neighbor: str) -> bool:
        return self.protocol_state(neighbor) == "Established"

    def routes(self, table: str) -> list[dict[str, Any]]:
        """``show route table TABLE all`` parsed by ``parse_bird_routes``."""
        return parse_bird_routes(self.birdc(f"show route table {table} all"))


_BIRD_ROUTE_LINE = re.compile(
    r"^(?P<net>\S+(?: \S+/\d+)?)?\s+(?P<kind>unicast|unreachable|blackhole|prohibit)\s+"
    r"\[(?P<proto>\S+)\s[^\]]*\]\s*(?P<best>\*)?\s*\((?P<pref>\d+)(?:/(?P<metric>[^)]*))?\)"
    r"(?:\s*\[(?P<origin_info>[^\]]*)\])?"
)


def parse_bird_routes(text: str) -> list[dict[str, Any]]:
    """Parse ``birdc show route ... all`` into one dict per route.

    Each dict has ``net`` (as BIRD prints it, e.g. ``65000:1 192.0.2.0/24``),
    ``kind`` (unicast/unreachable/...), ``proto``, ``best`` (bool), ``pref``,
    ``via`` (next hop or None), ``mpls`` (label stack list), ``iface`` and
    ``attrs`` (``{"BGP.ext_community": "(rt, 65000, 1)", ...}``). A route line
    without a net belongs to the previous net (alternative path).
    """
    routes: list[dict[str, Any]] = []
    current_net: str | None = None
    current: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith(("BIRD ", "Table ", "Access restricted")):
            continue
        match = _BIRD_ROUTE_LINE.match(line)
        if match:
            if match.group("net"):
                current_net = match.group("net")
            current = {
                "net": current_net,
                "kind": match.group("kind"),
                "proto": match.group("proto"),
                "best": bool(match.group("best")),
                "pref": int(match.group("pref")),
                "via": None,
                "mpls": [],
                "iface": None,
                "attrs": {},
            }
            routes.append(current)
            continue
        if current is None:
            continue
        stripped = line.strip()
        via = re.match(r"via (\S+) on (\S+)(?: mpls (\S+))?", stripped)
        if via:
            current["via"] = via.group(1)
            current["iface"] = via.group(2)
            if via.group(3):
                current["mpls"] = [int(x) for x in via.group(3).split("/")]
            continue
        attr = re.match(r"([A-Za-z][\w.]*):\s?(.*)$", stripped)
        if attr:
            current["attrs"][attr.group(1)] = attr.group(2).strip()
    return routes


# --------------------------------------------------------------------------- ExaBGP

_EXABGP_FAMILY = {
    "ipv4": "ipv4 unicast",
    "ipv6": "ipv6 unicast",
    "vpnv4": "ipv4 mpls-vpn",
    "vpnv6": "ipv6 mpls-vpn",
    # no "rtc": ExaBGP 4.2 decodes RT-constraint NLRI but cannot negotiate the family
    "ipv4-labeled": "ipv4 nlri-mpls",
    "ipv6-labeled": "ipv6 nlri-mpls",
}

#: The API process ExaBGP runs: forwards lines appended to commands.txt to
#: ExaBGP (stdout) and records everything ExaBGP says (stdin) in received.jsonl.
_EXABGP_API_SCRIPT = '''\
"""ExaBGP API bridge written by tests/interop/daemons.py (runs as ExaBGP's child)."""
import os, sys, threading, time

WORKDIR = sys.argv[1]
COMMANDS = os.path.join(WORKDIR, "commands.txt")
RECEIVED = os.path.join(WORKDIR, "received.jsonl")
done = threading.Event()


def reader():
    with open(RECEIVED, "a", buffering=1) as out:
        for line in sys.stdin:
            out.write(line if line.endswith("\\n") else line + "\\n")
    done.set()


threading.Thread(target=reader, daemon=True).start()
open(os.path.join(WORKDIR, "api.started"), "w").close()
offset = 0
deadline = time.monotonic() + 3600  # bounded: never outlive a test run
while not done.is_set() and time.monotonic() < deadline and os.getppid() != 1:
    try:
        with open(COMMANDS) as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        chunk = ""
    if chunk.endswith("\\n"):
        offset += len(chunk)
        sys.stdout.write(chunk)
        sys.stdout.flush()
    time.sleep(0.1)
'''


@dataclass
class ExaBGP(Daemon):
    """ExaBGP 4 with an API process: ``announce(cmd)`` sends API commands, ``received()`` reads JSON.

    ``static_routes`` are lines for a ``static { }`` block, sent on session
    start without going through the API.
    """

    static_routes: Sequence[str] = ()

    binary: ClassVar[str] = "exabgp"
    package: ClassVar[str] = "exabgp"
    name: ClassVar[str] = "exabgp"

    @property
    def config_path(self) -> Path:
        return self.workdir / "exabgp.conf"

    def config_text(self) -> str:
        script = self.workdir / "api.py"
        out = [
            "process api {",
            f"  run {sys.executable or '/usr/bin/python3'} {script} {self.workdir};",
            "  encoder json;",
            "}",
        ]
        for n in self.neighbors:
            unsupported = [f for f in n.families if f not in _EXABGP_FAMILY]
            if unsupported:
                raise ValueError(f"ExaBGP harness does not support families {unsupported}")
            out += [
                f"neighbor {n.address} {{",
                f"  router-id {self.router_id};",
                f"  local-address {self.address};",
                f"  local-as {self.local_as};",
                f"  peer-as {n.peer_as};",
                "  hold-time 180;",
                "  group-updates true;",
            ]
            if n.passive:
                out += ["  passive true;", f"  listen {self.port};"]
            else:
                out.append(f"  connect {n.port};")
            if n.md5_password:
                out.append(f"  md5-password {n.md5_password};")
            out.append("  family {")
            out += [f"    {_EXABGP_FAMILY[f]};" for f in n.families]
            out.append("  }")
            if n.addpath_send or n.addpath_receive:
                mode = (
                    "send/receive"
                    if n.addpath_send and n.addpath_receive
                    else ("send" if n.addpath_send else "receive")
                )
                out += ["  capability {", f"    add-path {mode};", "  }", "  add-path {"]
                out += [f"    {_EXABGP_FAMILY[f]};" for f in n.families]
                out.append("  }")
            out += [
                "  api {",
                "    processes [ api ];",
                "    neighbor-changes;",
                "    receive { parsed; update; }",
                "  }",
            ]
            if self.static_routes:
                out.append("  static {")
                out += [f"    {r.rstrip(';')};" for r in self.static_routes]
                out.append("  }")
            out.append("}")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    def prepare(self) -> None:
        super().prepare()
        (self.workdir / "api.py").write_text(_EXABGP_API_SCRIPT)
        (self.workdir / "commands.txt").write_text("")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "exabgp_daemon_user": pwd.getpwuid(os.geteuid()).pw_name,
                "exabgp_daemon_daemonize": "false",
                "exabgp_log_destination": "stdout",
                "exabgp_log_level": "INFO",
                "exabgp_api_cli": "false",
                "exabgp_tcp_bind": "",
                "exabgp_tcp_delay": "0",
            }
        )
        return env

    def command(self) -> list[str]:
        return [require_binary("exabgp", "exabgp"), str(self.config_path)]

    def is_ready(self) -> bool:
        return (self.workdir / "api.started").exists()

    def announce(self, command: str) -> None:
        """Send one API command line, e.g. ``announce route 192.0.2.0/24 next-hop self``."""
        with (self.workdir / "commands.txt").open("a") as f:
            f.write(command.rstrip("\n") + "\n")

    def received(self) -> list[dict[str, Any]]:
        """All JSON messages ExaBGP has passed to the API process so far."""
        path = self.workdir / "received.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def established(self, neighbor: str) -> bool:
        state = ""
        for msg in self.received():
            if msg.get("type") == "state":
                peer = msg.get("neighbor", {})
                if peer.get("address", {}).get("peer") == neighbor:
                    state = peer.get("state", "")
        return state == "up"
