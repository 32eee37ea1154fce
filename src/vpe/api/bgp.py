"""``/v1/bgp``: the BGP looking glass and the operator's session actions.

Reads: the summary (local AS, router id, every neighbor), one neighbor,
its received routes (Adj-RIB-In) and advertised routes (Adj-RIB-Out), the
Loc-RIB of a family and a prefix lookup with the best path's reason.
Actions: soft reset in (ROUTE-REFRESH) and out (the Adj-RIB-Out sent
again), shutdown / enable, hard reset. ``family`` accepts the short names
(``ipv4``, ``vpnv4``, ``rtc``, ``ipv4-lu``, ``mvpn``...) and the full ones;
the JSON always uses the full name. Keys are snake_case (docs/cli.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query

from ..agent.router import Router
from ..agent.view import AgentView
from ..bgp.wire.constants import Family, family_from_name

_FAMILY_DOC = "family: short (ipv4, ipv6, vpnv4, vpnv6, rtc, ipv4-lu, mvpn) or full name"


def _family(name: str) -> Family:
    try:
        return family_from_name(name)
    except ValueError as e:
        raise HTTPException(422, f"family: {e}") from None


def neighbor_address(text: str) -> str:
    """A neighbor address as the configuration holds it (IPv4-mapped IPv6 folded to IPv4)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise HTTPException(422, f"address: {text!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _no_neighbor(address: str) -> HTTPException:
    return HTTPException(404, f"no neighbor {address}")


def bgp_router(view: AgentView, router: Router) -> APIRouter:
    api = APIRouter(prefix="/v1/bgp", tags=["bgp"])

    @api.get("/summary")
    async def summary() -> dict[str, Any]:
        """Local AS, router id and every neighbor."""
        return view.bgp_summary()

    @api.get("/neighbors")
    async def neighbors(
        accepted: bool = Query(False, description="also count the accepted prefixes (walks every Adj-RIB-In)"),
    ) -> list[dict[str, Any]]:
        return view.summary(accepted=accepted)

    @api.get("/neighbors/{address}")
    async def neighbor(address: str) -> dict[str, Any]:
        address = neighbor_address(address)
        n = view.neighbor(address)
        if n is None:
            raise _no_neighbor(address)
        return n

    def neighbor_routes(address: str, family: str,
                        read: Callable[[str, Family], list[dict[str, Any]]]) -> dict[str, Any]:
        address = neighbor_address(address)
        fam = _family(family)
        try:
            rows = read(address, fam)
        except KeyError:
            raise _no_neighbor(address) from None
        return {"neighbor": address, "family": fam.name, "total": len(rows), "routes": rows}

    @api.get("/neighbors/{address}/received-routes")
    async def received_routes(address: str, family: str = Query("vpnv4", description=_FAMILY_DOC)
                              ) -> dict[str, Any]:
        """The neighbor's Adj-RIB-In (after import policy)."""
        return neighbor_routes(address, family, view.received_routes)

    @api.get("/neighbors/{address}/advertised-routes")
    async def advertised_routes(address: str, family: str = Query("vpnv4", description=_FAMILY_DOC)
                                ) -> dict[str, Any]:
        """The neighbor's Adj-RIB-Out: routes as sent."""
        return neighbor_routes(address, family, view.advertised_routes)

    @api.post("/neighbors/{address}/refresh")
    async def refresh(
        address: str,
        direction: Literal["in", "out", "both"] = Query(
            "in", description="in: ROUTE-REFRESH to the neighbor; out: send it our routes again"),
    ) -> dict[str, Any]:
        """Soft reset: inbound asks the neighbor to resend its routes (ROUTE-REFRESH,
        RFC 2918); outbound sends it the Adj-RIB-Out again, then End-of-RIB."""
        address = neighbor_address(address)
        out: dict[str, Any] = {"neighbor": address, "direction": direction}
        try:
            if direction in ("in", "both"):
                out["refreshed"] = [f.name for f in router.request_refresh(address)]
            if direction in ("out", "both"):
                out["resent"] = [f.name for f in router.soft_reset_out(address)]
        except KeyError:
            raise _no_neighbor(address) from None
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return out

    @api.post("/neighbors/{address}/shutdown")
    async def shutdown(
        address: str,
        communication: str | None = Body(None, embed=True, max_length=255,
                                         description="shutdown communication sent in the Cease (RFC 9003)"),
    ) -> dict[str, Any]:
        """Administrative shutdown: Cease to the neighbor, then Idle until enabled."""
        address = neighbor_address(address)
        try:
            router.shutdown(address, communication)
        except KeyError:
            raise _no_neighbor(address) from None
        except ValueError as e:
            raise HTTPException(422, f"communication: {e}") from None
        return {"neighbor": address, "admin_down": True}

    @api.post("/neighbors/{address}/enable")
    async def enable(address: str) -> dict[str, Any]:
        """Undo a shutdown: the session starts again."""
        address = neighbor_address(address)
        try:
            router.enable(address)
        except KeyError:
            raise _no_neighbor(address) from None
        return {"neighbor": address, "admin_down": False}

    @api.post("/neighbors/{address}/reset")
    async def reset(address: str) -> dict[str, Any]:
        """Hard reset: Cease / Administrative Reset, the neighbor's routes flushed,
        the session started again."""
        address = neighbor_address(address)
        try:
            router.hard_reset(address)
        except KeyError:
            raise _no_neighbor(address) from None
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return {"neighbor": address, "reset": True}

    @api.get("/routes")
    async def routes(
        family: str = Query("vpnv4", description=_FAMILY_DOC),
        peer: str | None = Query(None, description="only paths from this neighbor ('local' for ours)"),
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100000),
    ) -> dict[str, Any]:
        fam = _family(family)
        rows = view.routes(fam, peer)
        return {"family": fam.name, "total": len(rows), "offset": offset, "routes": rows[offset : offset + limit]}

    @api.get("/lookup")
    async def lookup(
        prefix: str = Query(..., description="a prefix (exact match) or an address (longest match)"),
        family: str = Query("vpnv4", description=_FAMILY_DOC),
        rd: str | None = Query(None, description="only this route distinguisher (VPN families)"),
    ) -> dict[str, Any]:
        """Every path of the matching destinations, best first, with why it won."""
        fam = _family(family)
        try:
            return view.lookup(fam, prefix, rd)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    return api
