"""``/v1/endpoints``: a host without a forwarder signals its endpoints to its external PE (R2.2).

The host (or its orchestrator) tells the PE which addresses sit behind which
attachment circuit: a VLAN on the PE's interface toward the host
(docs/external-pe.md). The PE makes the circuit's interface and attaches
it as the endpoint's port in the VPN; deleting the endpoint detaches the port
and removes the sub-interface again. Everything else (labels, routes, BGP)
is the PE's, exactly as for a VM on an internal vPE.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ..agent.circuits import Circuits, parse_circuit
from ..agent.durable import DurableOps
from ..agent.view import AgentView
from .errors import REFUSED, http_error
from .models import EndpointSignal
from .ports import forwarder_verdict


def _json(a: Any) -> dict[str, Any]:
    d: dict[str, Any] = a.to_json()
    c = parse_circuit(a.ifname)
    if c is None:
        d["circuit"] = None
    elif c[0] == "vxlan":
        d["circuit"] = {"kind": "vxlan", "vni": c[1], "ifname": a.ifname}
    else:
        d["circuit"] = {"kind": "vlan", "interface": c[0], "vlan": c[1], "ifname": a.ifname}
    return d


def endpoints_router(view: AgentView, ops: DurableOps, circuits: Circuits) -> APIRouter:
    api = APIRouter(prefix="/v1/endpoints", tags=["endpoints"])

    @api.get("")
    async def endpoints() -> list[dict[str, Any]]:
        """Endpoints served through attachment circuits (ports on a VLAN sub-interface)."""
        return [_json(a) for a in view.ports() if parse_circuit(a.ifname) is not None]

    @api.post("", status_code=201)
    async def signal(body: EndpointSignal) -> dict[str, Any]:
        if view.fib is None:
            raise HTTPException(422, "interface: this agent has no forwarder (dataplane driver 'none'): "
                                     "it cannot serve attachment circuits")
        try:
            ifname, created = circuits.ensure(body.interface, body.vlan, vni=body.vni, remote=body.remote)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        a = body.attachment(ifname)
        try:
            ops.attach(a)
        except REFUSED as e:
            if created:
                circuits.release(ifname)
            raise http_error(e) from None
        refused = await forwarder_verdict(view, ops, a.name, a.vrf, vpn_created=False)
        if refused is not None:
            if created:
                circuits.release(ifname)
            raise HTTPException(422, f"interface: the forwarder refused circuit {ifname!r}: {refused}")
        done = view.port(a.name)
        return _json(done or a)

    @api.delete("/{name}", status_code=204)
    async def withdraw(name: str) -> None:
        a = view.port(name)
        if a is None or parse_circuit(a.ifname) is None:
            raise HTTPException(404, f"no endpoint {name!r} behind an attachment circuit")
        try:
            ops.detach(name)
        except REFUSED as e:
            raise http_error(e) from None
        circuits.release(a.ifname)

    return api
