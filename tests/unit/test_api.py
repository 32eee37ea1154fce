"""The REST API through the real app, a real Engine (dataplane none) and a real SQLite file.

Every endpoint and its errors: VPN instances (create/list/show/patch/delete,
409 on delete with ports unless ``force``), ports (attach/detach, 422 naming
the field, 409 on duplicates), pagination, the BGP looking glass,
``/metrics``, and the bearer token on the TCP listener (in-app middleware
and the real daemon with two listeners).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vpe.agent.config import parse_config
from vpe.agent.daemon import run_agent
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import BearerAuth, create_app

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[neighbors]]
address = "127.0.0.53"
remote_as = 65000
passive = true
[[vrfs]]
name = "cfg"
route_targets = ["65000:1"]
"""

PORT = {
    "name": "vm1",
    "ifname": "tap-vm1",
    "vpn": "blue",
    "mac": "02:00:00:00:00:01",
    "ips": ["192.0.2.10/24", "2001:db8:1::10/64"],
    "gateways": ["192.0.2.1"],
}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    await e.start()
    try:
        yield e
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as c:
        yield c


async def _blue(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    r = await client.post("/v1/vpns", json={"name": "blue", "route_targets": ["65000:2"], **kw})
    assert r.status_code == 201, r.text
    return r.json()


def _loc(r: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in r.json()["detail"]]


# -- VPN instances ---------------------------------------------------------------------


async def test_vpn_lifecycle(client: httpx.AsyncClient, engine: Engine) -> None:
    d = await _blue(client, label_mode="per-prefix")
    assert d["name"] == "blue" and d["import_rts"] == ["target:65000:2"] and d["label_mode"] == "per-prefix"
    assert d["rd"].startswith("198.18.0.1:")
    r = await client.get("/v1/vpns")
    assert [v["name"] for v in r.json()] == ["blue", "cfg"]
    r = await client.get("/v1/vpns/blue")
    assert r.status_code == 200 and r.json()["ports"] == []
    r = await client.patch("/v1/vpns/blue", json={"import_rts": ["65000:2", "65000:3"], "multipath": 2})
    assert r.status_code == 200, r.text
    assert r.json()["import_rts"] == ["target:65000:2", "target:65000:3"] and r.json()["multipath"] == 2
    assert engine.store is not None and engine.store.vpns()["blue"]["multipath"] == 2
    r = await client.patch("/v1/vpns/blue", json={"rd": "65000:42"})
    assert r.status_code == 200 and r.json()["rd"] == "65000:42"
    r = await client.delete("/v1/vpns/blue")
    assert r.status_code == 204
    assert (await client.get("/v1/vpns/blue")).status_code == 404
    assert "blue" not in engine.store.vpns()


async def test_vpn_errors(client: httpx.AsyncClient) -> None:
    await _blue(client, rd="65000:7")
    r = await client.post("/v1/vpns", json={"name": "blue"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = await client.post("/v1/vpns", json={"name": "cfg"})
    assert r.status_code == 409
    r = await client.post("/v1/vpns", json={"name": "bad name!"})
    assert r.status_code == 422 and ["body", "name"] in _loc(r)
    r = await client.post("/v1/vpns", json={"name": "x", "import_rts": ["banana"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("import_rts:")
    r = await client.post("/v1/vpns", json={"name": "x", "rd": "nope"})
    assert r.status_code == 422 and r.json()["detail"].startswith("rd:")
    r = await client.post("/v1/vpns", json={"name": "x", "rd": "65000:7"})
    assert r.status_code == 409 and "already used" in r.json()["detail"]
    r = await client.post("/v1/vpns", json={"name": "x", "multipath": 0})
    assert r.status_code == 422 and ["body", "multipath"] in _loc(r)
    r = await client.post("/v1/vpns", json={"name": "x", "colour": "red"})
    assert r.status_code == 422 and ["body", "colour"] in _loc(r)
    r = await client.get("/v1/vpns/nope")
    assert r.status_code == 404
    r = await client.patch("/v1/vpns/nope", json={"multipath": 2})
    assert r.status_code == 404
    r = await client.patch("/v1/vpns/blue", json={"export_rts": ["x:y:z"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("export_rts:")
    r = await client.patch("/v1/vpns/blue", json={"label_mode": "per-moon"})
    assert r.status_code == 422 and ["body", "label_mode"] in _loc(r)
    r = await client.patch("/v1/vpns/cfg", json={"multipath": 2})
    assert r.status_code == 409 and "configuration file" in r.json()["detail"]
    r = await client.delete("/v1/vpns/cfg")
    assert r.status_code == 409 and "configuration file" in r.json()["detail"]
    r = await client.delete("/v1/vpns/nope")
    assert r.status_code == 404


async def test_delete_vpn_with_ports_needs_force(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    assert (await client.post("/v1/ports", json=PORT)).status_code == 201
    r = await client.delete("/v1/vpns/blue")
    assert r.status_code == 409 and "vm1" in r.json()["detail"]
    assert (await client.get("/v1/vpns/blue")).json()["ports"] == ["vm1"]
    r = await client.delete("/v1/vpns/blue", params={"force": "true"})
    assert r.status_code == 204
    assert (await client.get("/v1/ports")).json() == []
    assert engine.store is not None and engine.store.ports() == {} and engine.store.vpns() == {}


# -- ports -------------------------------------------------------------------------------


async def test_attach_detach(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    r = await client.post("/v1/ports", json={**PORT, "mac": "02:00:00:00:00:AB"})
    assert r.status_code == 201, r.text
    assert r.json()["mac"] == "02:00:00:00:00:ab" and r.json()["vrf"] == "blue"
    assert (await client.get("/v1/ports/vm1")).json()["ips"] == PORT["ips"]
    table = (await client.get("/v1/vpns/blue")).json()["table"]
    assert "192.0.2.10/32" in table and "2001:db8:1::10/128" in table
    routes = (await client.get("/v1/bgp/routes", params={"family": "vpnv4", "peer": "local"})).json()
    assert any(r["prefix"] == "192.0.2.10/32" for r in routes["routes"])
    assert engine.store is not None and engine.store.ports()["vm1"]["ifname"] == "tap-vm1"
    r = await client.delete("/v1/ports/vm1")
    assert r.status_code == 204
    assert (await client.get("/v1/ports/vm1")).status_code == 404
    assert "192.0.2.10/32" not in (await client.get("/v1/vpns/blue")).json()["table"]
    assert engine.store.ports() == {}


async def test_attach_errors(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"mac": "02:00:00:00:00"}, "mac"),
        ({"mac": "zz:00:00:00:00:01"}, "mac"),
        ({"ips": ["192.0.2.300/24"]}, "ips"),
        ({"ips": ["not-an-ip"]}, "ips"),
        ({"ips": []}, "ips"),
        ({"ips": ["192.0.2.10/24", "192.0.2.10/25"]}, "ips"),
        ({"gateways": ["192.0.2.1.1"]}, "gateways"),
        ({"allowed_pairs": ["10.0.0.0/33"]}, "allowed_pairs"),
        ({"ifname": "x" * 16}, "ifname"),
        ({"advertise": "everything"}, "advertise"),
    ]
    for patch, field in cases:
        r = await client.post("/v1/ports", json={**PORT, **patch})
        assert r.status_code == 422, (patch, r.text)
        assert ["body", field] in [loc[:2] for loc in _loc(r)], (patch, r.text)
    r = await client.post("/v1/ports", json={**PORT, "vpn": "nope"})
    assert r.status_code == 422 and r.json()["detail"].startswith("vpn:")
    missing = {k: v for k, v in PORT.items() if k != "ifname"}
    r = await client.post("/v1/ports", json=missing)
    assert r.status_code == 422 and ["body", "ifname"] in _loc(r)
    assert (await client.post("/v1/ports", json=PORT)).status_code == 201
    r = await client.post("/v1/ports", json=PORT)
    assert r.status_code == 409 and "already attached" in r.json()["detail"]
    r = await client.post("/v1/ports", json={**PORT, "name": "vm2", "ips": ["192.0.2.10/24"]})
    assert r.status_code == 409 and r.json()["detail"].startswith("ips:")
    r = await client.delete("/v1/ports/nope")
    assert r.status_code == 404
    assert engine.store is not None and list(engine.store.ports()) == ["vm1"]


async def test_pagination(client: httpx.AsyncClient) -> None:
    await _blue(client)
    for i in range(5):
        body = {**PORT, "name": f"vm{i}", "ips": [f"192.0.2.{20 + i}/24"]}
        assert (await client.post("/v1/ports", json=body)).status_code == 201
    names = [p["name"] for p in (await client.get("/v1/ports")).json()]
    assert names == [f"vm{i}" for i in range(5)]
    page = (await client.get("/v1/ports", params={"offset": 1, "limit": 2})).json()
    assert [p["name"] for p in page] == ["vm1", "vm2"]
    assert (await client.get("/v1/ports", params={"offset": 10})).json() == []
    r = await client.get("/v1/ports", params={"limit": 0})
    assert r.status_code == 422 and ["query", "limit"] in _loc(r)
    r = await client.get("/v1/ports", params={"offset": -1})
    assert r.status_code == 422 and ["query", "offset"] in _loc(r)
    vp = (await client.get("/v1/vpns", params={"offset": 1, "limit": 1})).json()
    assert [v["name"] for v in vp] == ["cfg"]
    routes = (await client.get("/v1/bgp/routes", params={"family": "vpnv4", "limit": 2})).json()
    assert routes["total"] >= 5 and len(routes["routes"]) == 2 and routes["offset"] == 0


# -- BGP, FIB, restart, metrics -------------------------------------------------------------


async def test_bgp_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/bgp/neighbors")
    assert r.status_code == 200
    (n,) = r.json()
    assert n["address"] == "127.0.0.53" and n["state"] in ("Idle", "Active", "Connect")
    assert (await client.get("/v1/bgp/neighbors/127.0.0.53")).json()["remote_as"] == 65000
    assert (await client.get("/v1/bgp/neighbors/127.0.0.99")).status_code == 404
    r = await client.get("/v1/bgp/routes", params={"family": "rtc"})
    assert r.status_code == 200 and r.json()["total"] >= 1  # our RT membership route
    r = await client.get("/v1/bgp/routes", params={"family": "vpnv9"})
    assert r.status_code == 422 and r.json()["detail"].startswith("family:")
    r = await client.get("/v1/bgp/routes", params={"family": "vpnv4", "peer": "127.0.0.53"})
    assert r.json()["total"] == 0


async def test_fib_and_restart_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/fib")).json() == {"driver": "none"}
    r = (await client.get("/v1/restart")).json()
    assert r["restarting"] is False and r["deferring"] is False


async def test_metrics(client: httpx.AsyncClient) -> None:
    await _blue(client)
    assert (await client.post("/v1/ports", json=PORT)).status_code == 201
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'vpe_bgp_sessions{state="Established"} 0.0',
        'vpe_bgp_updates_received_total{peer="127.0.0.53"} 0.0',
        'vpe_bgp_updates_sent_total{peer="127.0.0.53"}',
        'vpe_rib_routes{family="vpnv4"}',
        'vpe_vrf_routes{afi="ipv4",vrf="blue"} 1.0',
        'vpe_vrf_routes{afi="ipv6",vrf="blue"} 1.0',
        'vpe_ports{vrf="blue"} 1.0',
        "vpe_forwarder_up 0.0",
        "vpe_fib_programming_seconds_bucket",
        "vpe_graceful_restart_deferring 0.0",
    ):
        assert needle in text, needle


# -- bearer token on TCP ---------------------------------------------------------------------


async def test_bearer_middleware(engine: Engine) -> None:
    app = BearerAuth(create_app(engine), "s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vpe") as c:
        r = await c.get("/v1/vpns")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get("/v1/vpns", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await c.get("/v1/vpns", headers={"Authorization": "Basic s3cret"})).status_code == 401
        assert (await c.post("/v1/vpns", json={"name": "z"})).status_code == 401
        assert (await c.get("/metrics")).status_code == 401
        ok = await c.get("/v1/vpns", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    with pytest.raises(ValueError, match="token"):
        BearerAuth(create_app(engine), "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_daemon_tcp_needs_token_unix_does_not(tmp_path: Path) -> None:
    port = _free_port()
    sock = tmp_path / "api.sock"
    cfg = parse_config(CONFIG.format(state=tmp_path) + f"""
[api]
socket = "{sock}"
tcp = "127.0.0.1:{port}"
token = "t0ken"
""")
    task = asyncio.create_task(run_agent(cfg))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as tcp:
            for _ in range(100):  # bounded: the listeners come up within 5 s
                try:
                    r = await tcp.get("/v1/vpns")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the TCP API did not come up")
            assert r.status_code == 401
            r = await tcp.get("/v1/vpns", headers={"Authorization": "Bearer t0ken"})
            assert r.status_code == 200 and [v["name"] for v in r.json()] == ["cfg"]
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as uds:
            r = await uds.get("/v1/vpns")
            assert r.status_code == 200
    finally:
        if not task.done():  # only then is the agent's own SIGTERM handler installed
            os.kill(os.getpid(), signal.SIGTERM)  # both servers stop
        await asyncio.wait_for(task, 10)
    assert not sock.exists()
