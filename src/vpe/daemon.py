"""`vpe agent`: the control plane as an ordinary process (the composition root of the house).

Opens the state store (``<state_dir>/vpe.db``; a damaged or foreign file
stops the start with a message naming it), wires the configuration to the
engine, and serves the REST API on a Unix socket (no credentials) and, when
``api.tcp`` is set, on TCP behind a bearer token (R13.4).

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
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from .agent.config import AgentConfig
from .agent.engine import Engine
from .agent.store import Store, StoreError
from .api.app import BearerAuth, create_app

log = logging.getLogger("vpe.agent")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the agent (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _tcp_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"api.tcp: {text!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


async def run_agent(cfg: AgentConfig, *, withdraw_on_exit: bool = False) -> None:
    # Large route tables are millions of small acyclic objects: collect the
    # young generation rarely, so the collector does not dominate ingest.
    gc.set_threshold(200_000, 50, 1000)
    store = Store.in_dir(cfg.state_dir)
    engine = Engine(cfg, store)
    await engine.start()
    sock = Path(cfg.api.socket)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_socket():
        sock.unlink()
    app = create_app(engine)
    servers = [
        _Server(uvicorn.Config(app, uds=str(sock), log_level="warning", lifespan="off", access_log=False))
    ]
    if cfg.api.tcp:
        host, port = _tcp_address(cfg.api.tcp)
        assert cfg.api.token  # the config refuses api.tcp without a token
        servers.append(_Server(uvicorn.Config(BearerAuth(app, cfg.api.token), host=host, port=port,
                                              log_level="warning", lifespan="off", access_log=False)))
    loop = asyncio.get_running_loop()

    def _exit(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _exit, sig)
    log.info(
        "vpe agent up: AS %d, router id %s, %d neighbor(s), API on %s%s, state in %s",
        cfg.bgp.local_as,
        cfg.bgp.router_id,
        len(cfg.neighbors),
        sock,
        f" and tcp {cfg.api.tcp} (bearer token)" if cfg.api.tcp else "",
        store.path,
    )
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if withdraw_on_exit:
            await engine.stop()  # Cease to every peer: routes withdrawn now
        else:
            await engine.leave()
        store.close()
        if sock.exists():
            os.unlink(sock)
        log.info("vpe agent stopped%s", "" if withdraw_on_exit else " (routes kept for graceful restart)")


def main(cfg: AgentConfig, *, withdraw_on_exit: bool = False) -> None:
    try:
        asyncio.run(run_agent(cfg, withdraw_on_exit=withdraw_on_exit))
    except StoreError as e:
        log.error("cannot start: %s", e)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
