"""The agent's REST API.

Read-only looking glass for now (neighbors, routes per family); the VPN and
port endpoints arrive with the VPN service. Every list is paginated with
``offset``/``limit``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Query

from ..bgp.speaker import Speaker
from ..bgp.wire.constants import FAMILY_BY_NAME


def create_app(speaker: Speaker) -> FastAPI:
    app = FastAPI(title="vpe agent", version="1", openapi_url="/openapi.json")

    @app.get("/v1/bgp/neighbors")
    def neighbors() -> list[dict[str, Any]]:
        return speaker.summary()

    @app.get("/v1/bgp/neighbors/{address}")
    def neighbor(address: str) -> dict[str, Any]:
        for n in speaker.summary():
            if n["address"] == address:
                return n
        raise HTTPException(404, f"no neighbor {address}")

    @app.get("/v1/bgp/routes")
    def routes(
        family: str = Query("vpnv4", description="family name, e.g. vpnv4, vpnv6, rtc"),
        peer: str | None = Query(None, description="only routes received from this neighbor"),
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100000),
    ) -> dict[str, Any]:
        fam = FAMILY_BY_NAME.get(family)
        if fam is None:
            raise HTTPException(
                422, f"family: unknown family {family!r} (known: {', '.join(sorted(FAMILY_BY_NAME))})"
            )
        if peer is not None and peer not in speaker.peers:
            raise HTTPException(404, f"no neighbor {peer}")
        rows: list[Any] = []
        sources = [peer] if peer else list(speaker.peers)
        for p in sources:
            rows.extend(speaker.received(p, fam))
        rows.extend(speaker.local.get(fam, {}).values())
        total = len(rows)
        page = rows[offset : offset + limit]
        return {"family": family, "total": total, "offset": offset, "routes": [r.to_json() for r in page]}

    return app
