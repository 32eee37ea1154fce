"""The REST API through the real app, a real Engine (dataplane none) and a real SQLite file.

Every endpoint and its errors: VPN instances (create/list/show/patch/delete,
409 on delete with ports unless ``force``), ports (attach/detach, 422 naming
the field, 409 on duplicates), the bagpipe-bgp attach fields (local_pref,
direction, vpn_type, route targets creating the VPN instance, descriptions),
pagination, the BGP looking glass, ``/v1/counters`` against a forwarder on a
socket (answering, gone, silent), ``/metrics``, and the bearer token on the
TCP listener (in-app middleware and the real daemon with two listeners).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dp_helpers import state

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api import dataplane as api_dataplane
from vpe.api.app import BearerAuth, create_app
from vpe.daemon import run_agent
from vpe.dataplane.channel import ServerConnection
from vpe.dataplane.userspace.pipeline import Forwarder

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


# -- bagpipe-bgp attach_localport parity ---------------------------------------------------


def _local_route(routes: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    return next((r for r in routes["routes"] if r["prefix"] == prefix), None)


async def test_attach_local_pref_and_description(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    body = {**PORT, "local_pref": 250, "description": "web server", "advertise": "subnet"}
    r = await client.post("/v1/ports", json=body)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["local_pref"] == 250 and d["description"] == "web server" and d["direction"] == "both"
    assert d["vpn_created"] is False
    routes = (await client.get("/v1/bgp/routes", params={"family": "vpnv4", "peer": "local"})).json()
    host = _local_route(routes, "192.0.2.10/32")
    subnet = _local_route(routes, "192.0.2.0/24")
    assert host is not None and host["attributes"]["local_pref"] == 250
    assert subnet is not None and subnet["attributes"]["local_pref"] == 250
    # a port without local_pref keeps the default
    other = {**PORT, "name": "vm2", "ips": ["192.0.2.11/24"]}
    assert (await client.post("/v1/ports", json=other)).status_code == 201
    routes = (await client.get("/v1/bgp/routes", params={"family": "vpnv4", "peer": "local"})).json()
    assert _local_route(routes, "192.0.2.11/32")["attributes"]["local_pref"] == 100  # type: ignore[index]
    assert engine.store is not None and engine.store.ports()["vm1"]["local_pref"] == 250
    for bad in (-1, 2**32, "high"):
        r = await client.post("/v1/ports", json={**PORT, "name": "vm9", "local_pref": bad})
        assert r.status_code == 422 and ["body", "local_pref"] in [loc[:2] for loc in _loc(r)]


async def test_attach_direction(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    to_port = {**PORT, "name": "to", "ips": ["192.0.2.20/24"], "direction": "to-port"}
    from_port = {**PORT, "name": "from", "ips": ["192.0.2.21/24"], "direction": "from-port",
                 "advertise": "subnet"}
    assert (await client.post("/v1/ports", json=to_port)).status_code == 201
    r = await client.post("/v1/ports", json=from_port)
    assert r.status_code == 201 and r.json()["direction"] == "from-port"
    vrf = (await client.get("/v1/vpns/blue")).json()
    assert "192.0.2.20/32" in vrf["table"]
    assert "192.0.2.21/32" not in vrf["table"] and "192.0.2.0/24" not in vrf["table"]
    assert sorted(vrf["ports"]) == ["from", "to"]
    routes = (await client.get("/v1/bgp/routes", params={"family": "vpnv4", "peer": "local"})).json()
    assert _local_route(routes, "192.0.2.20/32") is not None
    assert _local_route(routes, "192.0.2.21/32") is None and _local_route(routes, "192.0.2.0/24") is None
    # the address is still the VM's: another port cannot take it
    r = await client.post("/v1/ports", json={**PORT, "name": "x", "ips": ["192.0.2.21/24"]})
    assert r.status_code == 409 and r.json()["detail"].startswith("ips:")
    assert (await client.delete("/v1/ports/from")).status_code == 204
    assert (await client.delete("/v1/ports/to")).status_code == 204
    assert (await client.get("/v1/vpns/blue")).json()["table"] == {}
    r = await client.post("/v1/ports", json={**PORT, "direction": "sideways"})
    assert r.status_code == 422 and ["body", "direction"] in _loc(r)


async def test_attach_vpn_type(client: httpx.AsyncClient) -> None:
    await _blue(client)
    r = await client.post("/v1/ports", json={**PORT, "vpn_type": "evpn"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "vpn_type"] and "evpn is not supported" in err["msg"]
    r = await client.post("/v1/ports", json={**PORT, "vpn_type": "vpls"})
    assert r.status_code == 422 and "only 'ipvpn'" in r.json()["detail"][0]["msg"]
    r = await client.post("/v1/ports", json={**PORT, "vpn_type": "ipvpn"})
    assert r.status_code == 201


async def test_attach_creates_vpn(client: httpx.AsyncClient, engine: Engine, tmp_path: Path) -> None:
    body = {**PORT, "vpn": "green", "import_rts": ["65000:7", "65000:8"], "export_rts": ["65000:7"],
            "vpn_description": "tenant green"}
    r = await client.post("/v1/ports", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["vpn_created"] is True
    v = (await client.get("/v1/vpns/green")).json()
    assert v["import_rts"] == ["target:65000:7", "target:65000:8"] and v["export_rts"] == ["target:65000:7"]
    assert v["description"] == "tenant green" and v["ports"] == ["vm1"] and v["rd"].startswith("198.18.0.1:")
    assert engine.store is not None and engine.store.vpns()["green"]["description"] == "tenant green"
    # a second port with the same RTs (spelled differently, other order): joins, creates nothing
    second = {**body, "name": "vm2", "ips": ["192.0.2.11/24"],
              "import_rts": ["target:65000:8", "65000:7"], "export_rts": ["target:65000:7"]}
    r = await client.post("/v1/ports", json=second)
    assert r.status_code == 201 and r.json()["vpn_created"] is False
    # RTs that differ from the instance's: 409 naming the field, nothing changed
    third = {**second, "name": "vm3", "ips": ["192.0.2.12/24"], "export_rts": ["65000:9"]}
    r = await client.post("/v1/ports", json=third)
    assert r.status_code == 409 and r.json()["detail"].startswith("export_rts:")
    assert (await client.get("/v1/vpns/green")).json()["export_rts"] == ["target:65000:7"]
    # only import_rts given: compared alone
    fourth = {**PORT, "name": "vm4", "vpn": "green", "ips": ["192.0.2.13/24"],
              "import_rts": ["65000:7", "65000:8"]}
    assert (await client.post("/v1/ports", json=fourth)).status_code == 201
    # invalid RTs or names for a new instance: 422, nothing created
    for patch, field in (({"import_rts": ["banana"]}, "import_rts:"), ({"vpn": "bad/name"}, "vpn:"),
                         ({"import_rts": [], "export_rts": []}, "import_rts:")):
        r = await client.post("/v1/ports", json={**body, "name": "vm5", "vpn": "violet", **patch})
        detail = r.json()["detail"]
        if isinstance(detail, list):  # refused by the request model: the field is the location
            detail = f"{detail[0]['loc'][-1]}: {detail[0]['msg']}"
        assert r.status_code == 422 and detail.startswith(field), (patch, r.text)
    assert "violet" not in engine.vpn.vrfs and "violet" not in engine.store.vpns()
    # the VPN instance and the bagpipe fields survive a restart from the store
    again = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    try:
        assert "green" in again.vpn.vrfs and again.ops.specs["green"]["description"] == "tenant green"
        assert sorted(a.name for a in again.view.attachments.values() if a.vrf == "green") == ["vm1", "vm2", "vm4"]
    finally:
        assert again.store is not None
        again.store.close()


async def test_attach_creating_vpn_is_atomic(client: httpx.AsyncClient, engine: Engine,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(a: Any) -> None:
        raise ValueError("ifname: refused by the test")

    monkeypatch.setattr(engine.bridge, "attach", refuse)
    body = {**PORT, "vpn": "green", "import_rts": ["65000:7"], "export_rts": ["65000:7"]}
    r = await client.post("/v1/ports", json=body)
    assert r.status_code == 422 and r.json()["detail"].startswith("ifname:")
    assert "green" not in engine.vpn.vrfs
    assert engine.store is not None and "green" not in engine.store.vpns() and engine.store.ports() == {}


async def test_vpn_description(client: httpx.AsyncClient, engine: Engine) -> None:
    d = await _blue(client, description="tenant blue")
    assert d["description"] == "tenant blue"
    r = await client.patch("/v1/vpns/blue", json={"description": "still blue"})
    assert r.status_code == 200 and r.json()["description"] == "still blue"
    assert engine.store is not None and engine.store.vpns()["blue"]["description"] == "still blue"
    assert (await client.get("/v1/vpns/cfg")).json()["description"] == ""
    r = await client.post("/v1/vpns", json={"name": "long", "description": "x" * 257})
    assert r.status_code == 422 and ["body", "description"] in _loc(r)


# -- forwarder counters -----------------------------------------------------------------------


@contextlib.contextmanager
def _serve_forwarder(path: str, fwd: Forwarder, *, answer: bool = True) -> Iterator[threading.Thread]:
    """A forwarder's FIB channel on ``path`` for one connection (a thread)."""
    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(path)
    lsn.listen(1)
    lsn.settimeout(5)

    class Handler:
        def sync(self, st: Any) -> None:
            fwd.full_sync(st)

        def apply(self, batch: Any) -> None:
            fwd.apply(batch)

        def counters(self) -> dict[str, Any]:
            return fwd.counters()

        def state(self) -> Any:
            return fwd.state()

    def serve() -> None:
        try:
            conn, _ = lsn.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            sc = ServerConnection(Handler(), lambda: 0)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if answer:
                    conn.sendall(sc.receive(data))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield t
    finally:
        t.join(timeout=10)
        lsn.close()


def _userspace_engine(fib_socket: str) -> Engine:
    return Engine(parse_config(CONFIG.format(state="/nonexistent") + f"""
[dataplane]
driver = "userspace"
fib_socket = "{fib_socket}"
"""))


async def test_counters(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await client.get("/v1/counters")).json() == {"driver": "none"}
    d = tempfile.mkdtemp(prefix="vpe-ctr-")
    path = os.path.join(d, "fib.sock")
    fwd = Forwarder(["198.18.0.1", "2001:db8:ffff::1"])
    fwd.full_sync(state())
    eng = _userspace_engine(path)
    transport = httpx.ASGITransport(app=create_app(eng))
    async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as c:
        with _serve_forwarder(path, fwd):
            r = await c.get("/v1/counters")
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["driver"] == "userspace" and data["socket"] == path
        assert set(data["ports"]) == {"vm1", "vm2"} and "rx_packets" in data["ports"]["vm1"]
        assert "red" in data["vrfs"] and isinstance(data["drops"], dict) and "underlay" in data
        # nobody listening: 503 naming the socket
        os.unlink(path)
        r = await c.get("/v1/counters")
        assert r.status_code == 503 and path in r.json()["detail"]
        # a forwarder that accepts and never answers: 503 within the bound
        monkeypatch.setattr(api_dataplane, "COUNTERS_TIMEOUT", 0.3)
        with _serve_forwarder(path, fwd, answer=False):
            t = time.monotonic()
            r = await c.get("/v1/counters")
            assert time.monotonic() - t < 2.0
        assert r.status_code == 503 and "not reachable" in r.json()["detail"]


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


async def test_bgp_looking_glass_and_actions_errors(client: httpx.AsyncClient, engine: Engine) -> None:
    """Issue 16's endpoints against a neighbor that is not up: precise refusals, nothing disturbed."""
    r = await client.get("/v1/bgp/summary")
    assert r.json()["local_as"] == 65000 and r.json()["router_id"] == "198.18.0.1"
    r = await client.get("/v1/bgp/routes", params={"family": "ipv4"})
    assert r.status_code == 200 and r.json()["family"] == "ipv4-unicast"
    for kind in ("received-routes", "advertised-routes"):
        r = await client.get(f"/v1/bgp/neighbors/127.0.0.53/{kind}", params={"family": "vpnv4"})
        assert r.status_code == 200 and r.json()["routes"] == []
        assert (await client.get(f"/v1/bgp/neighbors/127.0.0.99/{kind}")).status_code == 404
        r = await client.get(f"/v1/bgp/neighbors/127.0.0.53/{kind}", params={"family": "vpnv9"})
        assert r.status_code == 422 and "vpnv9" in r.json()["detail"]
    for direction in ("in", "out"):
        r = await client.post("/v1/bgp/neighbors/127.0.0.53/refresh", params={"direction": direction})
        assert r.status_code == 409 and "not Established" in r.json()["detail"]
    r = await client.post("/v1/bgp/neighbors/127.0.0.53/refresh", params={"direction": "sideways"})
    assert r.status_code == 422
    r = await client.get("/v1/bgp/lookup", params={"prefix": "banana"})
    assert r.status_code == 422 and r.json()["detail"].startswith("prefix:")
    r = await client.get("/v1/bgp/lookup", params={"prefix": "192.0.2.0/24", "rd": "nope"})
    assert r.status_code == 422 and r.json()["detail"].startswith("rd:")
    r = await client.get("/v1/bgp/lookup", params={"prefix": "192.0.2.0/24"})
    assert r.status_code == 200 and r.json()["destinations"] == []
    # shutdown / enable / reset on a passive neighbor
    assert (await client.post("/v1/bgp/neighbors/127.0.0.99/shutdown")).status_code == 404
    r = await client.post("/v1/bgp/neighbors/127.0.0.53/shutdown", json={"communication": "maintenance"})
    assert r.status_code == 200 and r.json() == {"neighbor": "127.0.0.53", "admin_down": True}
    await asyncio.sleep(0.05)
    n = (await client.get("/v1/bgp/neighbors/127.0.0.53")).json()
    assert n["admin_down"] and n["state"] == "Idle"
    r = await client.post("/v1/bgp/neighbors/127.0.0.53/reset")
    assert r.status_code == 409 and "shut down" in r.json()["detail"]
    assert (await client.post("/v1/bgp/neighbors/127.0.0.53/enable")).json()["admin_down"] is False
    await asyncio.sleep(0.05)
    n = (await client.get("/v1/bgp/neighbors/127.0.0.53")).json()
    assert not n["admin_down"] and n["state"] == "Active"  # passive: listening again
    assert (await client.post("/v1/bgp/neighbors/127.0.0.53/reset")).status_code == 200


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
        'vpe_dataplane_driver_info{driver="none"} 1.0',
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


# -- service chains (docs/service-chains.md) --------------------------------------------


async def test_r12_1_chains_through_the_api(client: httpx.AsyncClient, engine: Engine) -> None:
    await _blue(client)
    assert (await client.put("/v1/services/fw", json={})).status_code == 200
    chain = {"vpn": "blue", "destination": "cfg", "services": ["fw"], "prefixes": ["0.0.0.0/0"]}
    r = await client.put("/v1/chains/web", json={**chain, "services": ["ids"]})
    assert r.status_code == 404 and "no service 'ids'" in r.json()["detail"]
    r = await client.put("/v1/chains/web", json={**chain, "destination": "blue"})
    assert r.status_code == 422 and "a loop" in r.json()["detail"]
    r = await client.put("/v1/chains/web", json={**chain, "services": []})
    assert r.status_code == 422 and "has no service" in r.json()["detail"]
    r = await client.put("/v1/chains/web", json=chain)
    assert r.status_code == 200, r.text
    assert r.json()["hops"][0]["inside"]["attract"] == ["0.0.0.0/0"]
    port = {"name": "fw1-in", "ifname": "tap-fw1", "mac": "02:00:00:00:00:21", "ips": ["203.0.113.11/32"],
            "gateways": ["203.0.113.1"], "service": {"chain": "web", "service": "fw", "side": "inside"}}
    r = await client.post("/v1/ports", json=port)
    assert r.status_code == 201, r.text
    assert r.json()["vrf"] == "web.fw1-in"
    v = (await client.get("/v1/vpns/web.fw1-in")).json()
    assert v["service"]["attract"] == ["0.0.0.0/0"] and v["service"]["address"] == "203.0.113.11"
    assert (await client.delete("/v1/chains/web")).status_code == 409  # an instance is attached
    assert (await client.delete("/v1/services/fw")).status_code == 409  # a chain uses it
    assert (await client.delete("/v1/ports/fw1-in")).status_code == 204
    assert (await client.get("/v1/vpns/web.fw1-in")).status_code == 404  # the instance VRF went with it
    assert (await client.delete("/v1/chains/web")).status_code == 204
    r = await client.post("/v1/ports", json={**PORT, "vpn": ""})
    assert r.status_code == 422 and "vpn: missing" in r.text


async def test_r12_1_api_chains_survive_a_restart(client: httpx.AsyncClient, engine: Engine,
                                                  tmp_path: Path) -> None:
    await _blue(client)
    assert (await client.put("/v1/services/nat", json={"nat_pool": "203.0.113.128/26"})).status_code == 200
    r = await client.put("/v1/chains/early", json={
        "vpn": "cfg", "destination": "blue", "services": ["nat"],
        "classifier": {"protocol": "tcp", "ports": "25"}, "route_target_base": "65000:9300"})
    assert r.status_code == 200, r.text
    assert "early.redirect" in engine.vpn.vrfs  # the client VPN is here: its redirect VRF too
    r = await client.put("/v1/chains/natc", json={
        "vpn": "blue", "destination": "cfg", "services": ["nat"],
        "classifier": {"destination": "198.51.100.0/24", "protocol": "udp", "ports": "7000-7100"},
        "route_target_base": "65000:9200"})
    assert r.status_code == 200, r.text
    again = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    try:
        assert again.chains.services["nat"].nat_pool == "203.0.113.128/26"
        assert again.chains.chains["natc"] == engine.chains.chains["natc"]
        assert "natc.redirect" in again.vpn.vrfs
    finally:
        assert again.store is not None
        again.store.close()
