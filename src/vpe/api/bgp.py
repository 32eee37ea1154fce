"""``/v1/bgp``: the BGP looking glass and the soft inbound reset."""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from ..agent.router import Router
from ..agent.view import AgentView
from ..bgp.wire.constants import FAMILY_BY_NAME


def _address(text: str) -> str:
    """A neighbor address as the configuration holds it (IPv4-mapped IPv6 folded to IPv4)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise HTTPException(422, f"address: {text!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def bgp_router(view: AgentView, router: Router) -> APIRouter:
    api = APIRouter(prefix="/v1/bgp", tags=["bgp"])

    @api.get("/neighbors")
    async def neighbors() -> list[dict[str, Any]]:
        return view.summary()

    @api.get("/neighbors/{address}")
    async def neighbor(address: str) -> dict[str, Any]:
        address = _address(address)
        n = view.neighbor(address)
        if n is None:
            raise HTTPException(404, f"no neighbor {address}")
        return n

    @api.post("/neighbors/{address}/refresh")
    async def refresh(address: str) -> dict[str, Any]:
        """Soft inbound reset: ask the neighbor to resend its routes (ROUTE-REFRESH)."""
        address = _address(address)
        try:
            fams = router.request_refresh(address)
        except KeyError:
            raise HTTPException(404, f"no neighbor {address}") from None
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return {"neighbor": address, "refreshed": [f.name for f in fams]}

    @api.get("/routes")
    async def routes(
        family: str = Query("vpnv4", description="family name, e.g. vpnv4, vpnv6, rtc"),
        peer: str | None = Query(None, description="only paths from this neighbor ('local' for ours)"),
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100000),
    ) -> dict[str, Any]:
        fam = FAMILY_BY_NAME.get(family)
        if fam is None:
            raise HTTPException(
                422, f"family: unknown family {family!r} (known: {', '.join(sorted(FAMILY_BY_NAME))})"
            )
        rows = view.routes(fam, peer)
        return {"family": family, "total": len(rows), "offset": offset, "routes": rows[offset : offset + limit]}

    return api
