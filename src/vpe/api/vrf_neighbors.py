"""``/v1/vpns/{vpn}/neighbors``: BGP neighbors of a VPN instance's VRF (PE-CE BGP,
Inter-AS option A; docs/api.md).

The body of a PUT is a ``[[vrfs.neighbors]]`` table as JSON, validated by the
configuration's own model (:class:`~vpe.agent.config.VrfNeighborConfig`), so a
field added there is accepted here with no change; ``address`` may be left out
(the path gives it). Adding starts the session, replacing restarts it, deleting
stops it with Cease / Peer De-configured and its routes leave the VRF. A
neighbor of the configuration file is listed (``source: "config"``) but read-only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..agent.config import VrfNeighborConfig
from ..agent.durable import DurableOps
from ..agent.view import AgentView
from .bgp import neighbor_address
from .errors import REFUSED, http_error


def vrf_neighbors_router(view: AgentView, ops: DurableOps) -> APIRouter:
    api = APIRouter(prefix="/v1/vpns/{vpn}/neighbors", tags=["vpns"])

    def need_vpn(vpn: str) -> None:
        if not view.has_vrf(vpn):
            raise HTTPException(404, f"no VPN instance {vpn!r}")

    def shown(address: str) -> dict[str, Any]:
        """``address``: the speaker's (a mapped one for a neighbor reached through a port)."""
        d = view.vrf_neighbor(address)
        d["source"] = "config" if address in ops.config_neighbors else "api"
        return d

    @api.get("")
    async def neighbors(vpn: str) -> list[dict[str, Any]]:
        """Every BGP neighbor of the VPN instance: session, prefixes per family, configuration."""
        need_vpn(vpn)
        return [shown(a) for a in ops.vrf_neighbors_of(vpn)]

    @api.get("/{address}")
    async def neighbor(vpn: str, address: str) -> dict[str, Any]:
        need_vpn(vpn)
        address = neighbor_address(address)
        sa = ops.session_address(vpn, address)  # a neighbor through a port: by its VRF address
        if sa not in ops.vrf_neighbors_of(vpn):
            raise HTTPException(404, f"no neighbor {address} in VPN instance {vpn!r}")
        return shown(sa)

    @api.put("/{address}")
    async def put_neighbor(vpn: str, address: str, response: Response,
                           body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Create (201) or replace (200) the neighbor; replacing restarts its session."""
        address = neighbor_address(address)
        given = body.get("address")
        if given is not None:
            try:
                same = isinstance(given, str) and neighbor_address(given) == address
            except HTTPException:
                same = False
            if not same:
                raise HTTPException(422, f"address: {given!r} in the body is not the path's {address}")
        try:
            vn = VrfNeighborConfig.model_validate({**body, "address": address})
        except ValidationError as e:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_input=False)]) from None
        try:
            created = await ops.put_vrf_neighbor(vpn, vn)
        except REFUSED as e:
            raise http_error(e) from None
        response.status_code = 201 if created else 200
        return shown(ops.session_address(vpn, address))

    @api.delete("/{address}", status_code=204)
    async def delete_neighbor(vpn: str, address: str) -> None:
        """Cease / Peer De-configured to the neighbor; its routes leave the VRF."""
        address = neighbor_address(address)
        try:
            await ops.delete_vrf_neighbor(vpn, address)
        except REFUSED as e:
            raise http_error(e) from None

    return api
