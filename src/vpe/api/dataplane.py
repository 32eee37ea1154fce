"""``/v1/fib``, ``/v1/counters``, ``/v1/restart`` and ``/metrics``: forwarder and agent state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from ..agent.metrics import AgentMetrics
from ..agent.view import AgentView

log = logging.getLogger("vpe.api")

#: seconds ``GET /v1/counters`` waits for the forwarder (connect and each read);
#: the whole call is bounded by twice that
COUNTERS_TIMEOUT = 2.0


def dataplane_router(view: AgentView, metrics: AgentMetrics) -> APIRouter:
    api = APIRouter(tags=["dataplane"])

    @api.get("/v1/fib")
    async def fib() -> dict[str, Any]:
        return view.fib_json()

    @api.get("/v1/counters", responses={503: {"description": "the forwarder did not answer"}})
    async def counters() -> dict[str, Any]:
        """The forwarder's packet counters: per port, per VRF, drops by reason, underlay.

        Read from the forwarder now, over a connection of its own, in a
        worker thread (the event loop never blocks on it) and bounded by
        :data:`COUNTERS_TIMEOUT`.
        """
        link = view.fib
        if link is None:
            return {"driver": "none"}
        try:
            data = await asyncio.wait_for(asyncio.to_thread(link.counters, COUNTERS_TIMEOUT),
                                          COUNTERS_TIMEOUT * 2)
        except Exception as e:  # any failure means: no counters from the forwarder now
            why = str(e) or type(e).__name__
            log.warning("counters: forwarder at %s did not answer: %s", link.socket_path, why)
            raise HTTPException(503, f"forwarder at {link.socket_path} is not reachable: {why}") from None
        return {"driver": view.driver, "socket": link.socket_path, **data}

    @api.get("/v1/restart")
    async def restart() -> dict[str, Any]:
        """Graceful restart state: after a restart, whether route selection is still deferred."""
        return view.restart_json()

    @api.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def prometheus() -> Response:
        body, ctype = await metrics.render()
        return Response(content=body, media_type=ctype)

    return api
