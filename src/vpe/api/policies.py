"""/v1/policies: the agent's routing policies over REST.

A router factory over a :class:`~vpe.policy.PolicyBook`; the book tells
its listeners (the router of the BGP side) which neighbors' policies
changed, so a PUT takes effect on established sessions without a reset.
With a ``store``, API-made policies are written to the state database
before the book changes (a failed write is a 503 and changes nothing).

* ``GET /v1/policies``: every policy (canonical form) and who uses it;
* ``GET /v1/policies/{name}``: one, 404 if unknown;
* ``PUT /v1/policies/{name}``: create or replace from the body (the form
  of ``[[policies]]`` in the config, ``name`` optional and, if given,
  equal to the path's); 422 naming the field path and value;
* ``DELETE /v1/policies/{name}``: 204; 404 if unknown; 409 while a
  neighbor uses it.

Policies named in ``config_names`` come from the configuration file, which
stays authoritative for them (as for VRFs): PUT and DELETE on them are 409.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, Body, HTTPException

from ..agent.store import Store, StoreError
from ..policy.book import PolicyBook
from ..policy.errors import PolicyError, PolicyInUse, PolicyNotFound
from ..policy.parse import check_name, parse_policy, policy_to_json
from ..policy.policy import Policy


def policies_router(
    book: PolicyBook, store: Store | None = None, config_names: Collection[str] = ()
) -> APIRouter:
    """The /v1/policies endpoints over ``book`` (persisted in ``store`` when given)."""
    router = APIRouter(prefix="/v1/policies", tags=["policies"])
    fixed = frozenset(config_names)

    def writable(name: str) -> None:
        if name in fixed:
            raise HTTPException(409, f"policy {name!r} is defined in the configuration file: change it there")

    def shown(p: Policy) -> dict[str, Any]:
        d = policy_to_json(p)
        d["used_by"] = [{"neighbor": n, "direction": dr} for n, dr in book.users(p.name)]
        return d

    def lookup(name: str) -> Policy:
        p = book.get(name)
        if p is None:
            raise HTTPException(404, f"no policy {name!r}")
        return p

    @router.get("")
    async def list_policies() -> list[dict[str, Any]]:
        return [shown(p) for p in book.policies()]

    @router.get("/{name}")
    async def get_policy(name: str) -> dict[str, Any]:
        return shown(lookup(name))

    @router.put(
        "/{name}",
        responses={
            422: {"description": "invalid policy: the field path and value"},
            409: {"description": "defined in the configuration file"},
        },
    )
    async def put_policy(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            check_name(name, "name")
            if "name" in body and body["name"] != name:
                raise PolicyError("name", body["name"], f"differs from the name in the path ({name!r})")
            policy = parse_policy({k: v for k, v in body.items() if k != "name"}, "policy", name=name)
        except PolicyError as e:
            raise HTTPException(422, str(e)) from None
        writable(name)
        if store is not None:
            try:
                with store.transaction() as tx:
                    tx.put_policy(name, policy_to_json(policy))
            except StoreError as e:
                raise HTTPException(503, f"state database: {e}") from None
        book.put(policy)
        return shown(policy)

    @router.delete(
        "/{name}",
        status_code=204,
        responses={409: {"description": "a neighbor uses it, or it is defined in the configuration file"}},
    )
    async def delete_policy(name: str) -> None:
        lookup(name)
        writable(name)
        users = book.users(name)
        if users:
            raise HTTPException(409, str(PolicyInUse(name, [(n, str(d)) for n, d in users])))
        if store is not None:
            try:
                with store.transaction() as tx:
                    tx.delete_policy(name)
            except StoreError as e:
                raise HTTPException(503, f"state database: {e}") from None
        try:
            book.delete(name)
        except PolicyNotFound:
            raise HTTPException(404, f"no policy {name!r}") from None

    return router
