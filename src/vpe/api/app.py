"""The agent's REST API, versioned under /v1 (OpenAPI at /openapi.json).

Every validation error is a 422 naming the field and the reason, every
conflict a 409, an unknown object a 404; an operation that fails is not
half-applied (the engine rolls back). Lists are paginated with
``offset``/``limit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from ..bgp.wire.constants import FAMILY_BY_NAME

if TYPE_CHECKING:
    from ..agent.engine import Engine


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VpnCreate(_Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    rd: str = "auto"
    import_rts: list[str] = Field(default_factory=list)
    export_rts: list[str] = Field(default_factory=list)
    route_targets: list[str] = Field(default_factory=list, description="imported and exported")
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] = "per-vrf"
    multipath: int = Field(default=1, ge=1, le=64)


class VpnUpdate(_Model):
    rd: str | None = None
    import_rts: list[str] | None = None
    export_rts: list[str] | None = None
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] | None = None
    multipath: int | None = Field(default=None, ge=1, le=64)


class PortAttach(_Model):
    """An endpoint to attach; mirrors bagpipe-bgp's attach_localport (see docs/api.md)."""

    name: str = Field(min_length=1, max_length=64, description="port id (bagpipe: local_port / port id)")
    ifname: str = Field(min_length=1, max_length=15, description="host-side interface of the VM")
    vpn: str = Field(min_length=1, description="VRF name (bagpipe: vpn_instance_id)")
    mac: str = Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", description="the VM's MAC")
    ips: list[str] = Field(min_length=1, description="the VM's addresses with prefix length")
    gateways: list[str] = Field(default_factory=list, description="gateway IPs the vPE answers for")
    allowed_pairs: list[str] = Field(default_factory=list, description="extra source prefixes")
    advertise: Literal["host", "subnet"] = "host"


def _fail(e: Exception) -> HTTPException:
    text = str(e).strip("'\"")
    if "already" in text:
        return HTTPException(409, text)
    return HTTPException(422, text)


def create_app(engine: Engine) -> FastAPI:
    """The API of ``engine``. Endpoints are ``async``: they run on the event
    loop that owns the engine, never in a worker thread."""
    app = FastAPI(title="vpe agent", version="1", openapi_url="/openapi.json")

    # -- BGP looking glass ------------------------------------------------------

    @app.get("/v1/bgp/neighbors")
    async def neighbors() -> list[dict[str, Any]]:
        return engine.summary()

    @app.get("/v1/bgp/neighbors/{address}")
    async def neighbor(address: str) -> dict[str, Any]:
        for n in engine.summary():
            if n["address"] == address:
                return n
        raise HTTPException(404, f"no neighbor {address}")

    @app.get("/v1/bgp/routes")
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
        rows = engine.routes(fam, peer)
        return {"family": family, "total": len(rows), "offset": offset, "routes": rows[offset : offset + limit]}

    # -- VPN instances ----------------------------------------------------------

    @app.get("/v1/vpns")
    async def vpns() -> list[dict[str, Any]]:
        return [engine.vrf_json(n) for n in sorted(engine.vpn.vrfs)]

    @app.get("/v1/vpns/{name}")
    async def vpn(name: str) -> dict[str, Any]:
        if name not in engine.vpn.vrfs:
            raise HTTPException(404, f"no VPN instance {name!r}")
        return engine.vrf_json(name)

    @app.post("/v1/vpns", status_code=201)
    async def create_vpn(body: VpnCreate) -> dict[str, Any]:
        if body.name in engine.vpn.vrfs:
            raise HTTPException(409, f"name: VPN instance {body.name!r} already exists")
        try:
            engine.add_vrf(body.name, **body.model_dump(exclude={"name"}))
        except ValueError as e:
            raise _fail(e) from None
        return engine.vrf_json(body.name)

    @app.patch("/v1/vpns/{name}")
    async def update_vpn(name: str, body: VpnUpdate) -> dict[str, Any]:
        if name not in engine.vpn.vrfs:
            raise HTTPException(404, f"no VPN instance {name!r}")
        try:
            engine.update_vrf(name, **body.model_dump(exclude_none=True))
        except ValueError as e:
            raise _fail(e) from None
        return engine.vrf_json(name)

    @app.delete("/v1/vpns/{name}", status_code=204)
    async def delete_vpn(name: str, force: bool = False) -> None:
        if name not in engine.vpn.vrfs:
            raise HTTPException(404, f"no VPN instance {name!r}")
        ports = [a.name for a in engine.attachments.values() if a.vrf == name]
        if ports and not force:
            raise HTTPException(409, f"VPN instance {name!r} has attached ports: {', '.join(ports)}")
        for p in ports:
            engine.detach(p)
        engine.remove_vrf(name)

    # -- ports ------------------------------------------------------------------

    @app.get("/v1/ports")
    async def ports(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        items = sorted(engine.attachments.values(), key=lambda a: a.name)
        return [a.to_json() for a in items[offset : offset + limit]]

    @app.post("/v1/ports", status_code=201)
    async def attach(body: PortAttach) -> dict[str, Any]:
        from ..agent.engine import Attachment

        if body.name in engine.attachments:
            raise HTTPException(409, f"name: port {body.name!r} is already attached")
        if body.vpn not in engine.vpn.vrfs:
            raise HTTPException(422, f"vpn: no VPN instance {body.vpn!r}")
        a = Attachment(
            name=body.name, ifname=body.ifname, vrf=body.vpn, mac=body.mac.lower(),
            ips=tuple(body.ips), gateways=tuple(body.gateways),
            allowed_pairs=tuple(body.allowed_pairs), advertise=body.advertise,
        )
        try:
            engine.attach(a)
        except ValueError as e:
            raise _fail(e) from None
        return a.to_json()

    @app.delete("/v1/ports/{name}", status_code=204)
    async def detach(name: str) -> None:
        if name not in engine.attachments:
            raise HTTPException(404, f"no port {name!r}")
        engine.detach(name)

    # -- forwarder --------------------------------------------------------------

    @app.get("/v1/fib")
    async def fib() -> dict[str, Any]:
        if engine.fib is None:
            return {"driver": "none"}
        d = engine.fib.to_json()
        d["driver"] = "userspace"
        return d

    return app
