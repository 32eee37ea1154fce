"""`vpe agent`: the control plane as an ordinary process.

Wires the configuration to the BGP speaker and serves the REST API on a Unix
socket (TCP only when configured, and then with a bearer token).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

import uvicorn

from ..api.app import create_app
from .config import AgentConfig
from .engine import Engine

log = logging.getLogger("vpe.agent")


async def run_agent(cfg: AgentConfig) -> None:
    # Large route tables are millions of small acyclic objects: collect the
    # young generation rarely, so the collector does not dominate ingest.
    gc.set_threshold(200_000, 50, 1000)
    engine = Engine(cfg)
    await engine.start()
    sock = Path(cfg.api.socket)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_socket():
        sock.unlink()
    app = create_app(engine)
    server = uvicorn.Server(
        uvicorn.Config(app, uds=str(sock), log_level="warning", lifespan="off", access_log=False)
    )
    log.info(
        "vpe agent up: AS %d, router id %s, %d neighbor(s), API on %s",
        cfg.bgp.local_as,
        cfg.bgp.router_id,
        len(cfg.neighbors),
        sock,
    )
    try:
        await server.serve()
    finally:
        await engine.stop()
        if sock.exists():
            os.unlink(sock)
        log.info("vpe agent stopped")


def main(cfg: AgentConfig) -> None:
    asyncio.run(run_agent(cfg))
