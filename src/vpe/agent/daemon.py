"""`vpe agent`: the control plane as an ordinary process.

Wires the configuration to the BGP speaker and serves the REST API on a Unix
socket (TCP only when configured, and then with a bearer token).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import uvicorn

from ..api.app import create_app
from ..bgp.speaker import Speaker, settings_from_config
from .config import AgentConfig

log = logging.getLogger("vpe.agent")


def build_speaker(cfg: AgentConfig) -> Speaker:
    speaker = Speaker(cfg.bgp.listen, cfg.bgp.port)
    for n in cfg.neighbors:
        speaker.add_peer(settings_from_config(cfg.bgp, n))
    return speaker


async def run_agent(cfg: AgentConfig) -> None:
    speaker = build_speaker(cfg)
    await speaker.start()
    sock = Path(cfg.api.socket)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_socket():
        sock.unlink()
    app = create_app(speaker)
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
        await speaker.stop()
        if sock.exists():
            os.unlink(sock)
        log.info("vpe agent stopped")


def main(cfg: AgentConfig) -> None:
    asyncio.run(run_agent(cfg))
