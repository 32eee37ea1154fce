"""The agent's REST API, versioned under /v1 (OpenAPI at /openapi.json).

Every validation error is a 422 naming the field and the reason, every
conflict a 409, an unknown object a 404; a state database that cannot be
written is a 503. An operation that fails is not half-applied: the engine
and the state store change together or not at all
(:mod:`vpe.agent.durable`). Lists are paginated with ``offset``/``limit``.
Prometheus metrics are at ``/metrics``.

On the Unix socket no credentials are needed (file permissions guard it);
the optional TCP listener wraps the app in :class:`BearerAuth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..agent.durable import Conflict, NotFound
from ..agent.metrics import AgentMetrics
from ..agent.store import StoreError
from ..bgp.wire.constants import FAMILY_BY_NAME

if TYPE_CHECKING:
    from ..agent.engine import Engine

log = logging.getLogger("vpe.api")

#: seconds ``GET /v1/counters`` waits for the forwarder (connect and each read);
#: the whole call is bounded by twice that
COUNTERS_TIMEOUT = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
    description: str = Field(default="", max_length=256, description="free text (bagpipe: instance_description)")


class VpnUpdate(_Model):
    rd: str | None = None
    import_rts: list[str] | None = None
    export_rts: list[str] | None = None
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] | None = None
    multipath: int | None = Field(default=None, ge=1, le=64)
    description: str | None = Field(default=None, max_length=256)


class PortAttach(_Model):
    """An endpoint to attach; mirrors bagpipe-bgp's attach_localport (see docs/api.md)."""

    name: str = Field(min_length=1, max_length=64, description="port id (bagpipe: local_port / port id)")
    ifname: str = Field(min_length=1, max_length=15, description="host-side interface of the VM")
    vpn: str = Field(min_length=1, description="VRF name (bagpipe: vpn_instance_id)")
    mac: str = Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", description="the VM's MAC")
    ips: list[str] = Field(min_length=1, max_length=64,
                           description="the VM's addresses with prefix length")
    gateways: list[str] = Field(default_factory=list, max_length=16,
                                description="gateway IPs the vPE answers for")
    allowed_pairs: list[str] = Field(default_factory=list, max_length=256,
                                     description="extra source prefixes")
    advertise: Literal["host", "subnet"] = "host"
    direction: Literal["both", "to-port", "from-port"] = Field(
        default="both",
        description="both / to-port: the addresses are routes of the VRF and advertised; "
                    "from-port: the port only sends, its addresses are neither routes nor advertised",
    )
    local_pref: int | None = Field(default=None, ge=0, le=0xFFFFFFFF,
                                   description="LOCAL_PREF of the port's exported routes (default 100)")
    description: str = Field(default="", max_length=256, description="free text about the port")
    vpn_type: str = Field(default="ipvpn", description="only 'ipvpn' (bagpipe: vpn_type)")
    import_rts: list[str] | None = Field(
        default=None, max_length=64,
        description="bagpipe: import_rt; creates the VPN instance if it does not exist, "
                    "else must equal its import RTs")
    export_rts: list[str] | None = Field(
        default=None, max_length=64,
        description="bagpipe: export_rt; creates the VPN instance if it does not exist, "
                    "else must equal its export RTs")
    vpn_description: str = Field(default="", max_length=256,
                                 description="description of a VPN instance created by this attach "
                                             "(bagpipe: instance_description)")

    @field_validator("vpn_type")
    @classmethod
    def _vpn_type(cls, v: str) -> str:
        if v == "ipvpn":
            return v
        if v == "evpn":
            raise ValueError("evpn is not supported: vpe is a BGP/MPLS IP VPN (RFC 4364) PE, "
                             "it has no E-VPN (RFC 7432) instances; use 'ipvpn'")
        raise ValueError(f"unknown VPN type {v!r}: only 'ipvpn' is supported")

    def vpn_spec(self) -> dict[str, Any] | None:
        """The VPN instance to create (or check) with the port, when RTs were given."""
        if self.import_rts is None and self.export_rts is None:
            return None
        spec: dict[str, Any] = {"description": self.vpn_description}
        if self.import_rts is not None:
            spec["import_rts"] = self.import_rts
        if self.export_rts is not None:
            spec["export_rts"] = self.export_rts
        return spec

    @field_validator("ips")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        seen: set[Any] = set()
        out = []
        for text in v:
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                raise ValueError(f"{text!r} is not an address with prefix length") from None
            if iface.ip in seen:
                raise ValueError(f"address {iface.ip} is given twice")
            seen.add(iface.ip)
            out.append(str(iface))
        return out

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_address(g)) for g in v]
        except ValueError as e:
            raise ValueError(f"not an IP address: {e}") from None

    @field_validator("allowed_pairs")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(p, strict=False)) for p in v]
        except ValueError as e:
            raise ValueError(f"not an IP prefix: {e}") from None


def _fail(e: Exception) -> HTTPException:
    """The HTTP error of a refused operation (the message names the field first)."""
    if isinstance(e, NotFound):
        return HTTPException(404, str(e))
    if isinstance(e, StoreError):
        return HTTPException(503, f"state database: {e}")
    text = str(e).strip("'\"")
    if isinstance(e, Conflict) or "already" in text:
        return HTTPException(409, text)
    return HTTPException(422, text)


_REFUSED = (ValueError, KeyError, StoreError)


def create_app(engine: Engine) -> FastAPI:
    """The API of ``engine``. Endpoints are ``async``: they run on the event
    loop that owns the engine, never in a worker thread."""
    app = FastAPI(title="vpe agent", version="1", openapi_url="/openapi.json")
    metrics = AgentMetrics(engine)
    app.state.metrics = metrics

    def vrf_json(name: str) -> dict[str, Any]:
        d = engine.vrf_json(name)
        d["description"] = engine.ops.specs.get(name, {}).get("description", "")
        return d

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

    @app.post("/v1/bgp/neighbors/{address}/refresh")
    async def refresh(address: str) -> dict[str, Any]:
        """Soft inbound reset: ask the neighbor to resend its routes (ROUTE-REFRESH)."""
        peer = engine.speaker.peers.get(address)
        if peer is None:
            raise HTTPException(404, f"no neighbor {address}")
        try:
            fams = peer.request_refresh()
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return {"neighbor": address, "refreshed": [f.name for f in fams]}

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
    async def vpns(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        names = sorted(engine.vpn.vrfs)[offset : offset + limit]
        return [vrf_json(n) for n in names]

    @app.get("/v1/vpns/{name}")
    async def vpn(name: str) -> dict[str, Any]:
        if name not in engine.vpn.vrfs:
            raise HTTPException(404, f"no VPN instance {name!r}")
        return vrf_json(name)

    @app.post("/v1/vpns", status_code=201)
    async def create_vpn(body: VpnCreate) -> dict[str, Any]:
        try:
            engine.ops.create_vpn(body.name, body.model_dump(exclude={"name"}))
        except _REFUSED as e:
            raise _fail(e) from None
        return vrf_json(body.name)

    @app.patch("/v1/vpns/{name}")
    async def update_vpn(name: str, body: VpnUpdate) -> dict[str, Any]:
        try:
            engine.ops.update_vpn(name, body.model_dump(exclude_none=True))
        except _REFUSED as e:
            raise _fail(e) from None
        return vrf_json(name)

    @app.delete("/v1/vpns/{name}", status_code=204)
    async def delete_vpn(name: str, force: bool = False) -> None:
        try:
            engine.ops.delete_vpn(name, force=force)
        except _REFUSED as e:
            raise _fail(e) from None

    # -- ports ------------------------------------------------------------------

    @app.get("/v1/ports")
    async def ports(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        items = sorted(engine.attachments.values(), key=lambda a: a.name)
        return [a.to_json() for a in items[offset : offset + limit]]

    @app.get("/v1/ports/{name}")
    async def port(name: str) -> dict[str, Any]:
        a = engine.attachments.get(name)
        if a is None:
            raise HTTPException(404, f"no port {name!r}")
        return a.to_json()

    @app.post("/v1/ports", status_code=201)
    async def attach(body: PortAttach) -> dict[str, Any]:
        from ..agent.engine import Attachment

        a = Attachment(
            name=body.name, ifname=body.ifname, vrf=body.vpn, mac=body.mac.lower(),
            ips=tuple(body.ips), gateways=tuple(body.gateways),
            allowed_pairs=tuple(body.allowed_pairs), advertise=body.advertise,
            direction=body.direction, local_pref=body.local_pref, description=body.description,
        )
        try:
            created = engine.ops.attach(a, body.vpn_spec())
        except _REFUSED as e:
            raise _fail(e) from None
        if engine.fib is not None:
            # the forwarder must take the port, or the attach is undone everywhere
            refused = await engine.fib.port_result(a.name)
            if refused is not None:
                with contextlib.suppress(Exception):
                    engine.ops.detach(a.name)
                    if created:
                        engine.ops.delete_vpn(a.vrf, force=True)
                raise HTTPException(422, f"ifname: the forwarder refused port {a.name!r}: {refused}")
        d = a.to_json()
        d["vpn_created"] = created
        return d

    @app.delete("/v1/ports/{name}", status_code=204)
    async def detach(name: str) -> None:
        try:
            engine.ops.detach(name)
        except _REFUSED as e:
            raise _fail(e) from None

    # -- forwarder, metrics -------------------------------------------------------

    @app.get("/v1/fib")
    async def fib() -> dict[str, Any]:
        if engine.fib is None:
            return {"driver": "none"}
        d = engine.fib.to_json()
        d["driver"] = "userspace"
        return d

    @app.get("/v1/counters", responses={503: {"description": "the forwarder did not answer"}})
    async def counters() -> dict[str, Any]:
        """The forwarder's packet counters: per port, per VRF, drops by reason, underlay.

        Read from the forwarder now, over a connection of its own, in a
        worker thread (the event loop never blocks on it) and bounded by
        :data:`COUNTERS_TIMEOUT`.
        """
        fib = engine.fib
        if fib is None:
            return {"driver": "none"}
        try:
            data = await asyncio.wait_for(asyncio.to_thread(fib.counters, COUNTERS_TIMEOUT),
                                          COUNTERS_TIMEOUT * 2)
        except Exception as e:  # any failure means: no counters from the forwarder now
            why = str(e) or type(e).__name__
            log.warning("counters: forwarder at %s did not answer: %s", fib.socket_path, why)
            raise HTTPException(503, f"forwarder at {fib.socket_path} is not reachable: {why}") from None
        return {"driver": "userspace", "socket": fib.socket_path, **data}

    @app.get("/v1/restart")
    async def restart() -> dict[str, Any]:
        """Graceful restart state: after a restart, whether route selection is still deferred."""
        return engine.gr.to_json()

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def prometheus() -> Response:
        body, ctype = await metrics.render()
        return Response(content=body, media_type=ctype)

    return app


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (else 401).

    Used on the TCP listener only (R13.4); the Unix socket is guarded by its
    file permissions. The token is compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("api.token: a TCP API needs a non-empty bearer token")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = b""
        for k, v in scope.get("headers") or ():
            if k.lower() == b"authorization":
                given = bytes(v)
                break
        scheme, _, cred = given.partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(cred.strip(), self._token):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": "missing or wrong bearer token (Authorization: Bearer <api.token>)"}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="vpe"')],
        })
        await send({"type": "http.response.body", "body": body})
