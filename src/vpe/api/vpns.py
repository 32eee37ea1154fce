"""``/v1/vpns``: VPN instances (VRFs): list, show, create, change, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from ..agent.durable import DurableOps
from ..agent.view import AgentView
from .errors import REFUSED, http_error
from .models import VpnCreate, VpnUpdate


def vpns_router(view: AgentView, ops: DurableOps) -> APIRouter:
    api = APIRouter(prefix="/v1/vpns", tags=["vpns"])

    @api.get("")
    async def vpns(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return [view.vrf_json(n) for n in view.vrf_names(offset, limit)]

    @api.get("/{name}")
    async def vpn(name: str) -> dict[str, Any]:
        if not view.has_vrf(name):
            raise HTTPException(404, f"no VPN instance {name!r}")
        return view.vrf_json(name)

    @api.post("", status_code=201)
    async def create_vpn(body: VpnCreate) -> dict[str, Any]:
        try:
            ops.create_vpn(body.name, body.model_dump(exclude={"name"}))
        except REFUSED as e:
            raise http_error(e) from None
        return view.vrf_json(body.name)

    @api.patch("/{name}")
    async def update_vpn(name: str, body: VpnUpdate) -> dict[str, Any]:
        try:
            ops.update_vpn(name, body.model_dump(exclude_none=True))
        except REFUSED as e:
            raise http_error(e) from None
        return view.vrf_json(name)

    @api.delete("/{name}", status_code=204)
    async def delete_vpn(name: str, force: bool = False) -> None:
        try:
            await ops.delete_vpn_and_neighbors(name, force=force)
        except REFUSED as e:
            raise http_error(e) from None

    return api
