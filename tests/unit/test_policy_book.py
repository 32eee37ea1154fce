"""PolicyBook, Relabeler, the config's [[policies]], the store's policies table and /v1/policies."""

from __future__ import annotations

import sqlite3
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from vpe.agent.config import ConfigError, parse_config
from vpe.agent.store import SCHEMA_VERSION, Store
from vpe.api.policies import policies_router
from vpe.policy import (
    PolicyBook,
    PolicyChange,
    PolicyError,
    PolicyInUse,
    PolicyNotFound,
    Relabeler,
    RelabelKey,
    SwapEntry,
    parse_policy,
    policy_to_json,
)

P1 = {"name": "p1", "terms": [{"match": {"prefix": "192.0.2.0/24"}, "action": "reject"}]}
P2 = {"name": "p2", "default": "reject"}
N = "192.0.2.7"


# -- PolicyBook ------------------------------------------------------------------------


def test_book_put_bind_notify_delete() -> None:
    book = PolicyBook()
    heard: list[list[PolicyChange]] = []
    book.subscribe(heard.append)
    p1 = parse_policy(P1)
    assert book.put(p1) == [] and book.get("p1") is p1
    with pytest.raises(PolicyNotFound, match=r"neighbor 192.0.2.7 export_policy: no policy named 'nope'"):
        book.bind(N, export_policy="nope")
    book.bind(N, import_policy="p1", export_policy="p1")
    assert heard[-1] == [PolicyChange(N, "import", p1), PolicyChange(N, "export", p1)]
    assert book.export_policy(N) is p1 and book.import_policy("192.0.2.07".replace("07", "7")) is p1
    assert book.users("p1") == [(N, "import"), (N, "export")]
    # replacing the policy tells its users; an equal one tells nobody
    n = len(heard)
    assert book.put(parse_policy(P1)) == [] and len(heard) == n
    p1b = parse_policy({**P1, "default": "reject"})
    assert book.put(p1b) == [PolicyChange(N, "import", p1b), PolicyChange(N, "export", p1b)]
    with pytest.raises(PolicyInUse, match=r"neighbor 192.0.2.7 \(import_policy\)"):
        book.delete("p1")
    book.bind(N, import_policy="p1")
    assert heard[-1] == [PolicyChange(N, "export", None)]
    book.unbind(N)
    book.delete("p1")
    assert book.get("p1") is None
    with pytest.raises(PolicyNotFound):
        book.delete("p1")


def test_book_json_round_trip() -> None:
    book = PolicyBook()
    book.load([P1, P2], [{"address": N, "export_policy": "p2"}])
    again = PolicyBook.from_json(book.to_json())
    assert again.to_json() == book.to_json()
    assert again.export_policy(N) == parse_policy(P2) and again.import_policy(N) is None
    with pytest.raises(PolicyError, match=r"policies\[1\].name: 'p1' names two policies"):
        PolicyBook().load([P1, P1])


# -- Relabeler --------------------------------------------------------------------------


def test_relabeler_counts_and_drains() -> None:
    freed: list[RelabelKey] = []
    nxt = iter(range(500, 600))
    r = Relabeler(lambda k: next(nxt), freed.append)
    a, b = ip_address("198.18.0.5"), ip_address("198.18.0.6")
    assert r.acquire("g1", "x", a, 16) == 500
    assert r.acquire("g1", "y", a, 16) == 500
    assert r.acquire("g2", "x", a, 16) == 500
    assert r.acquire("g1", "x", a, 16) == 500  # idempotent
    assert r.acquire("g1", "z", b, 16) == 501
    assert r.drain().added == (SwapEntry(500, a, 16), SwapEntry(501, b, 16))
    assert not r.drain()
    r.release("g1", "x")
    r.release("g1", "nothing")
    r.release_owner("g1")  # y and z
    assert freed == [RelabelKey(b, 16)] and r.local_label(a, 16) == 500 and r.held("g1") == 0
    assert r.drain().removed == (SwapEntry(501, b, 16),)
    # a holder moving to another pair releases the old one
    assert r.acquire("g2", "x", b, 17) == 502
    assert r.entries() == [SwapEntry(502, b, 17)]
    ch = r.drain()
    assert ch.added == (SwapEntry(502, b, 17),) and ch.removed == (SwapEntry(500, a, 16),)
    # added then removed before a drain: nothing to do
    r.acquire("g3", "q", a, 99)
    r.release_owner("g3")
    assert not r.drain()


# -- config ---------------------------------------------------------------------------------

BASE = """
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[neighbors]]
address = "127.0.0.2"
remote_as = 65000
export_policy = "{ref}"
[[policies]]
name = "to-rr"
default = "accept"
  [[policies.terms]]
  name = "drop"
  match = {{ family = "vpnv4", prefix = "{prefix}" }}
  action = "reject"
"""


def test_config_policies_and_bindings() -> None:
    cfg = parse_config(BASE.format(ref="to-rr", prefix="192.0.2.0/24 le 32"))
    book = cfg.policy_book()
    p = book.export_policy("127.0.0.2")
    assert p is not None and p.name == "to-rr" and p.route_dependent
    assert cfg.neighbors[0].export_policy == "to-rr" and cfg.neighbors[0].import_policy is None


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"policies\[0\].terms\[0\].match.prefix: '10.0.0.0/33' is not a prefix"):
        parse_config(BASE.format(ref="to-rr", prefix="10.0.0.0/33"))
    with pytest.raises(ConfigError, match=r"neighbor 127.0.0.2 export_policy: no policy named 'nope'"):
        parse_config(BASE.format(ref="nope", prefix="192.0.2.0/24"))


# -- store ------------------------------------------------------------------------------------


def test_store_policies_table(tmp_path: Path) -> None:
    s = Store(tmp_path / "vpe.db")
    with s.transaction() as tx:
        tx.put_policy("p1", P1)
        tx.put_policy("p2", P2)
    with s.transaction() as tx:
        tx.put_policy("p1", {**P1, "default": "reject"})
        tx.delete_policy("p2")
    assert s.policies() == {"p1": {**P1, "default": "reject"}}
    s.close()


def test_store_version_1_file_gains_policies(tmp_path: Path) -> None:
    path = tmp_path / "vpe.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE policies")
    # version 1 kept the label/RD state as one document (schema 4 turns it into rows)
    con.execute("CREATE TABLE service_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL, "
                "saved_at REAL NOT NULL)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    s = Store(path)
    assert s.policies() == {}
    s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    con.close()


# -- API ------------------------------------------------------------------------------------------


async def _client(book: PolicyBook, store: Store | None = None) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(policies_router(book, store))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vpe")


async def test_api_crud(tmp_path: Path) -> None:
    book = PolicyBook()
    store = Store(tmp_path / "vpe.db")
    heard: list[list[PolicyChange]] = []
    book.subscribe(heard.append)
    async with await _client(book, store) as c:
        assert (await c.get("/v1/policies")).json() == []
        r = await c.put("/v1/policies/p1", json={k: v for k, v in P1.items() if k != "name"})
        assert r.status_code == 200, r.text
        assert r.json() == {**policy_to_json(parse_policy(P1)), "used_by": []}
        assert store.policies()["p1"] == policy_to_json(parse_policy(P1))
        assert (await c.get("/v1/policies/p1")).json()["name"] == "p1"
        assert (await c.get("/v1/policies/nope")).status_code == 404
        book.bind(N, export_policy="p1")
        r = await c.put("/v1/policies/p1", json={"name": "p1", "default": "reject"})
        assert r.status_code == 200 and r.json()["used_by"] == [{"neighbor": N, "direction": "export"}]
        assert heard[-1][0].policy is not None and not heard[-1][0].policy.default_accept
        r = await c.delete("/v1/policies/p1")
        assert r.status_code == 409 and "neighbor 192.0.2.7 (export_policy)" in r.json()["detail"]
        book.unbind(N)
        assert (await c.delete("/v1/policies/p1")).status_code == 204
        assert (await c.delete("/v1/policies/p1")).status_code == 404
        assert store.policies() == {}
    store.close()


@pytest.mark.parametrize(
    ("name", "body", "detail"),
    [
        ("p", {"terms": [{}, {"match": {"prefix": "10.0.0.0/33"}}]},
         "policy.terms[1].match.prefix: '10.0.0.0/33' is not a prefix"),
        ("p", {"name": "q"}, "name: 'q' differs from the name in the path ('p')"),
        ("bad name", {}, "name: 'bad name' is not a policy name"),
        ("p", {"terms": [{"match": {"family": ["vpnv4", {"x": 1}]}}]}, "policy.terms[0].match.family[1]"),
        ("p", {"oops": 1}, "policy.oops: 1 is not a known key"),
    ],
)
async def test_api_422_names_the_field(name: str, body: Any, detail: str) -> None:
    book = PolicyBook()
    async with await _client(book) as c:
        r = await c.put(f"/v1/policies/{name}", json=body)
        assert r.status_code == 422 and detail in r.json()["detail"], r.text
        r = await c.put("/v1/policies/p", json=[1, 2])
        assert r.status_code == 422
    assert book.names() == []


async def test_api_config_policies_are_read_only() -> None:
    book = PolicyBook()
    book.load([P1])
    async with await _client_fixed(book, ["p1"]) as c:
        assert (await c.get("/v1/policies/p1")).status_code == 200
        r = await c.put("/v1/policies/p1", json={})
        assert r.status_code == 409 and "configuration file" in r.json()["detail"]
        assert (await c.delete("/v1/policies/p1")).status_code == 409
    assert book.get("p1") == parse_policy(P1)


async def _client_fixed(book: PolicyBook, names: list[str]) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(policies_router(book, None, names))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vpe")
