"""``/v1/ports``: attachments of endpoints (VM interfaces) to VPN instances."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from ..agent.chains import ServiceRole
from ..agent.durable import DurableOps
from ..agent.view import AgentView
from .errors import REFUSED, http_error
from .models import PortAttach, PortRelease


async def forwarder_verdict(view: AgentView, ops: DurableOps, name: str, vrf: str,
                            vpn_created: bool) -> str | None:
    """Wait for the forwarder to take port ``name`` just attached; when it refuses, undo
    the attach everywhere (the port, and VPN ``vrf`` if the attach created it) and return
    the forwarder's reason (None: taken, or no forwarder)."""
    fib = view.fib
    if fib is None:
        return None
    refused = await fib.port_result(name)
    if refused is not None:
        with contextlib.suppress(Exception):
            ops.detach(name)
            if vpn_created:
                ops.delete_vpn(vrf, force=True)
    return refused


def ports_router(view: AgentView, ops: DurableOps) -> APIRouter:
    api = APIRouter(prefix="/v1/ports", tags=["ports"])

    @api.get("")
    async def ports(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return [a.to_json() for a in view.ports(offset, limit)]

    @api.get("/{name}")
    async def port(name: str) -> dict[str, Any]:
        a = view.port(name)
        if a is None:
            raise HTTPException(404, f"no port {name!r}")
        return a.to_json()

    @api.post("", status_code=201)
    async def attach(body: PortAttach) -> dict[str, Any]:
        a = body.attachment()
        try:
            if body.service is not None:
                a = ops.attach_service(a, ServiceRole(**body.service.model_dump()))
                created = True
            else:
                created = ops.attach(a, body.vpn_spec())
        except REFUSED as e:
            raise http_error(e) from None
        # the forwarder must take the port, or the attach is undone everywhere
        refused = await forwarder_verdict(view, ops, a.name, a.vrf, created)
        if refused is not None:
            raise HTTPException(422, f"ifname: the forwarder refused port {a.name!r}: {refused}")
        done = view.port(a.name)
        d = (done or a).to_json()
        d["vpn_created"] = created
        return d

    @api.post("/{name}/activate")
    async def activate(name: str) -> dict[str, Any]:
        """A move's second step: the VM runs here now (docs/mobility.md)."""
        try:
            ops.activate(name)
        except REFUSED as e:
            raise http_error(e) from None
        fib = view.fib
        if fib is not None:
            refused = await fib.port_result(name)
            if refused is not None:
                raise HTTPException(422, f"ifname: the forwarder refused port {name!r}: {refused}")
        done = view.port(name)
        assert done is not None
        return done.to_json()

    @api.post("/{name}/release")
    async def release(name: str, body: PortRelease | None = None) -> dict[str, Any]:
        """A move's last step, on the source host: routes withdrawn, port let go,
        what still arrives for the VM re-tunnelled to its new host."""
        try:
            done = ops.release(name, (body or PortRelease()).hold)
        except REFUSED as e:
            raise http_error(e) from None
        return done.to_json()

    @api.delete("/{name}", status_code=204)
    async def detach(name: str) -> None:
        try:
            ops.detach(name)
        except REFUSED as e:
            raise http_error(e) from None

    return api
