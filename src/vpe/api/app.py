"""The agent's REST API, versioned under /v1 (OpenAPI at /openapi.json).

Every validation error is a 422 naming the field and the reason, every
conflict a 409, an unknown object a 404; a state database that cannot be
written is a 503 (:mod:`vpe.api.errors`). An operation that fails is not
half-applied: the VPN bridge and the state store change together or not at
all (:mod:`vpe.agent.durable`). Lists are paginated with ``offset``/``limit``.
Prometheus metrics are at ``/metrics``.

One router per resource: :mod:`~vpe.api.bgp`, :mod:`~vpe.api.vpns` (and its :mod:`~vpe.api.vrf_neighbors`),
:mod:`~vpe.api.ports`, :mod:`~vpe.api.dataplane`, :mod:`~vpe.api.policies`, and the web
looking glass under ``/lg/`` (:mod:`~vpe.api.lg`, HTML). They read through the
agent's :class:`~vpe.agent.view.AgentView` and change state only through
:class:`~vpe.agent.durable.DurableOps` (and the router's refresh).

On the Unix socket no credentials are needed (file permissions guard it);
the optional TCP listener wraps the app in :class:`BearerAuth`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from ..agent.engine import Engine
from ..agent.metrics import AgentMetrics
from .auth import BearerAuth
from .bgp import bgp_router
from .chains import chains_router
from .dataplane import COUNTERS_TIMEOUT, dataplane_router
from .endpoints import endpoints_router
from .lg import lg_router
from .limits import MAX_BODY, BodyGuard, validation_handler
from .policies import policies_router
from .ports import ports_router
from .vpns import vpns_router
from .vrf_neighbors import vrf_neighbors_router


def create_app(engine: Engine) -> FastAPI:
    """The API of ``engine``. Endpoints are ``async``: they run on the event
    loop that owns the engine, never in a worker thread."""
    app = FastAPI(title="vpe agent", version="1", openapi_url="/openapi.json")
    metrics = AgentMetrics(engine.view)
    app.state.metrics = metrics
    app.include_router(bgp_router(engine.view, engine.router))
    app.include_router(vpns_router(engine.view, engine.ops))
    app.include_router(vrf_neighbors_router(engine.view, engine.ops))
    app.include_router(ports_router(engine.view, engine.ops))
    app.include_router(endpoints_router(engine.view, engine.ops, engine.circuits))
    app.include_router(chains_router(engine.chains))
    app.include_router(dataplane_router(engine.view, metrics))
    app.include_router(lg_router(engine.view, COUNTERS_TIMEOUT))
    app.include_router(policies_router(engine.router.policies, engine.store,
                                       config_names=[p["name"] for p in engine.cfg.policies]))
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_middleware(BodyGuard, max_body=MAX_BODY)
    return app


__all__ = ["COUNTERS_TIMEOUT", "MAX_BODY", "BearerAuth", "create_app"]
