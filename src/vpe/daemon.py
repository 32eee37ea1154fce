"""`vpe agent`: the control plane as an ordinary process (the composition root of the house).

Before anything changes, the configuration is checked against the host
(:mod:`vpe.agent.preflight`: state_dir, socket directory and group, TLS
files, listen addresses and ports; every problem one line ``FILE: KEY:
REASON``, exit 2). Then the state directory is locked (a second agent on it
exits 2 naming the first one's pid), the state store is opened
(``<state_dir>/vpe.db``; a damaged, foreign or read-only file stops the
start with a message naming it) and claimed for this configuration's AS and
router id, and the engine starts.

The REST API is served on a Unix socket created with mode 0600 (0660 and
the group ``api.socket_group`` when set: file permissions are the
credentials there) and, when ``api.tcp`` is set, on TCP behind a bearer
token, over TLS when ``api.tls_cert``/``api.tls_key`` are given (R13.4).
An existing socket that another process still serves is never removed.

Exit: SIGTERM and SIGINT stop the API and leave as a graceful restart
would see it: the BGP connections are closed without a NOTIFICATION and the
forwarder keeps its FIB, so peers with graceful restart keep our routes
(stale) for the restart time and traffic keeps flowing until the agent is
back. ``withdraw_on_exit`` (``vpe agent --withdraw-on-exit``) sends a Cease
to every peer instead, which withdraws everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from .agent.config import AgentConfig, ApiConfig, ConfigError, tcp_address
from .agent.engine import Engine
from .agent.preflight import check_host
from .agent.store import StateInUse, StateLock, Store, StoreError
from .api.app import BearerAuth, create_app
from .api.bagpipe import create_bagpipe_app

log = logging.getLogger("vpe.agent")

#: most requests the API serves at once per listener (beyond: 503); with the
#: body cap this bounds the memory requests may hold
API_CONCURRENCY = 64


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the agent (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _served(path: Path) -> bool:
    """Does a process accept connections on the Unix socket ``path``?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


def unix_listener(api: ApiConfig, source: str) -> socket.socket:
    """The API's Unix socket, bound with its final mode from the start (no 0666 window).

    Mode 0600, or 0660 with group ``api.socket_group``. A stale socket file is
    replaced; a socket another process serves, or a file that is not a
    socket, is refused (:class:`ConfigError`).
    """
    path = Path(api.socket)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{source}: api.socket: {path} exists and is not a socket; refusing to remove it")
        if _served(path):
            raise ConfigError(f"{source}: api.socket: {path} is served by another process (another vpe "
                              "agent?); refusing to take it over")
        path.unlink()
    mode = 0o660 if api.socket_group else 0o600
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise ConfigError(f"{source}: api.socket: cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    if api.socket_group:
        os.chown(path, -1, grp.getgrnam(api.socket_group).gr_gid)
    os.chmod(path, mode)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def tcp_listener(api: ApiConfig, source: str, address: str | None = None,
                 key: str = "api.tcp") -> socket.socket:
    text = address or api.tcp
    assert text
    host, port = tcp_address(text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"{source}: {key}: cannot listen on {text}: {e.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def run_agent(cfg: AgentConfig, *, withdraw_on_exit: bool = False, source: str = "<config>") -> None:
    # Large route tables are millions of small acyclic objects: collect the
    # young generation rarely, so the collector does not dominate ingest.
    gc.set_threshold(200_000, 50, 1000)
    lock = StateLock(cfg.state_dir)
    try:
        lock.acquire()  # first: a second agent is told whose the state is, not "port in use"
    except StateInUse:
        raise
    except StoreError:
        check_host(cfg, source)  # says what is wrong with state_dir, with the key
        raise
    try:
        check_host(cfg, source)
        await _run_locked(cfg, withdraw_on_exit, source)
    finally:
        lock.release()


async def _run_locked(cfg: AgentConfig, withdraw_on_exit: bool, source: str) -> None:
    store = Store.in_dir(cfg.state_dir)
    try:
        store.claim(cfg.bgp.local_as, cfg.bgp.router_id, source)
        usock = unix_listener(cfg.api, source)
    except BaseException:
        store.close()
        raise
    sock = Path(cfg.api.socket)
    listeners = [usock]
    try:
        if cfg.api.tcp:
            listeners.append(tcp_listener(cfg.api, source))
        if cfg.bagpipe_compat.enabled:
            listeners.append(tcp_listener(cfg.api, source, cfg.bagpipe_compat.listen, "bagpipe_compat.listen"))
        engine = Engine(cfg, store)
        try:
            await engine.start()
        except OSError as e:
            await engine.stop()
            raise ConfigError(f"{source}: bgp.listen: cannot listen for BGP on port {cfg.bgp.port}: "
                              f"{e.strerror or e}") from None
    except BaseException:
        for s in listeners:
            s.close()
        with contextlib.suppress(OSError):
            sock.unlink()
        store.close()
        raise
    app = create_app(engine)
    def config(asgi: object, tls: bool = False) -> uvicorn.Config:
        return uvicorn.Config(asgi, log_level="warning", lifespan="off", access_log=False,  # type: ignore[arg-type]
                              limit_concurrency=API_CONCURRENCY,
                              ssl_certfile=cfg.api.tls_cert if tls else None,
                              ssl_keyfile=cfg.api.tls_key if tls else None)

    servers: list[tuple[_Server, socket.socket]] = [(_Server(config(app)), usock)]
    if cfg.api.tcp:
        assert cfg.api.token  # the config refuses api.tcp without a token
        servers.append((_Server(config(BearerAuth(app, cfg.api.token), tls=cfg.api.tls_cert is not None)),
                        listeners[1]))
    if cfg.bagpipe_compat.enabled:  # bagpipe-bgp's REST API (no auth, as bagpipe-bgp: loopback)
        servers.append((_Server(config(create_bagpipe_app(engine))), listeners[-1]))
    loop = asyncio.get_running_loop()

    def _exit(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        for s, _ in servers:
            s.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _exit, sig)
    log.info(
        "vpe agent up: AS %d, router id %s, %d neighbor(s), API on %s (mode %s)%s, state in %s",
        cfg.bgp.local_as,
        cfg.bgp.router_id,
        len(cfg.neighbors),
        sock,
        f"0660 group {cfg.api.socket_group}" if cfg.api.socket_group else "0600",
        (f" and tcp {cfg.api.tcp} ({'TLS, ' if cfg.api.tls_cert else ''}bearer token)" if cfg.api.tcp else "")
        + (f", bagpipe-bgp API on {cfg.bagpipe_compat.listen}" if cfg.bagpipe_compat.enabled else ""),
        store.path,
    )
    try:
        await asyncio.gather(*(s.serve(sockets=[ls]) for s, ls in servers))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if withdraw_on_exit:
            await engine.stop()  # Cease to every peer: routes withdrawn now
        else:
            await engine.leave()
        store.close()
        for ls in listeners:
            ls.close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(sock.lstat().st_mode):
                sock.unlink()
        log.info("vpe agent stopped%s", "" if withdraw_on_exit else " (routes kept for graceful restart)")


def main(cfg: AgentConfig, *, withdraw_on_exit: bool = False, source: str = "<config>") -> None:
    try:
        asyncio.run(run_agent(cfg, withdraw_on_exit=withdraw_on_exit, source=source))
    except (StoreError, ConfigError) as e:
        log.error("cannot start: %s", e)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
