"""``/v1/services`` and ``/v1/chains``: service chains (docs/service-chains.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException

from ..agent.chains import ChainBook
from ..vpn.chains import ChainDef, ServiceDef
from ..vpn.errors import Conflict
from .errors import REFUSED, http_error


def chains_router(book: ChainBook) -> APIRouter:
    api = APIRouter(tags=["chains"])

    @api.get("/v1/services")
    async def services() -> list[dict[str, Any]]:
        return [book.services[n].to_json() for n in sorted(book.services)]

    @api.put("/v1/services/{name}")
    async def put_service(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            s = ServiceDef.parse({**body, "name": name}, "service")
            book.put_service(s)
            book.save("service", name, s.to_json())
        except REFUSED as e:
            raise http_error(e) from None
        return s.to_json()

    @api.delete("/v1/services/{name}", status_code=204)
    async def delete_service(name: str) -> None:
        try:
            book.delete_service(name)
            book.save("service", name, None)
        except REFUSED as e:
            raise http_error(e) from None

    @api.get("/v1/chains")
    async def chains() -> list[dict[str, Any]]:
        return [book.describe(n) for n in sorted(book.chains)]

    @api.get("/v1/chains/{name}")
    async def chain(name: str) -> dict[str, Any]:
        if name not in book.chains:
            raise HTTPException(404, f"no chain {name!r}")
        return book.describe(name)

    @api.put("/v1/chains/{name}")
    async def put_chain(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            if name in book.configured:
                raise Conflict(f"chain {name!r} is defined in the configuration file: change it there")
            c = ChainDef.parse(body, "chain", name=name)
            book.put_chain(c)
            book.save("chain", name, c.to_json())
        except REFUSED as e:
            raise http_error(e) from None
        return book.describe(name)

    @api.delete("/v1/chains/{name}", status_code=204)
    async def delete_chain(name: str) -> None:
        try:
            if name in book.configured:
                raise Conflict(f"chain {name!r} is defined in the configuration file: remove it there")
            book.delete_chain(name)
            book.save("chain", name, None)
        except REFUSED as e:
            raise http_error(e) from None

    return api
