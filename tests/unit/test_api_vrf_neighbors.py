"""``/v1/vpns/{vpn}/neighbors`` (PE-CE BGP by API) through the real app, a real Engine and a
real SQLite file; the live part between two in-process agents over loopback TCP.

The body is validated by VrfNeighborConfig (422 naming the field), a neighbor of the
configuration file is listed but read-only (409), the rows survive a restart, a VPN
instance with neighbors is deleted only with ``force``; adding starts a real session,
deleting sends Cease / Peer De-configured and the neighbor's routes leave the VRF.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store, StoreError, Transaction
from vpe.api.app import create_app

CFG_CE = "127.0.0.61"
CONFIG = f"""
state_dir = "{{state}}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[neighbors]]
address = "127.0.0.53"
remote_as = 65000
passive = true
[[policies]]
name = "accept-all"
[[vrfs]]
name = "cfg"
route_targets = ["65000:1"]
  [[vrfs.neighbors]]
  address = "{CFG_CE}"
  remote_as = 65001
  passive = true
"""
BODY = {"remote_as": 65002, "passive": True, "import_policy": "accept-all", "export_policy": "accept-all"}


def _engine(tmp_path: Path) -> Engine:
    return Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    e = _engine(tmp_path)
    await e.start()
    try:
        yield e
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                                 base_url="http://vpe") as c:
        r = await c.post("/v1/vpns", json={"name": "blue", "route_targets": ["65000:2"]})
        assert r.status_code == 201, r.text
        yield c


def _locs(r: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in r.json()["detail"]]


async def test_crud_and_listing(client: httpx.AsyncClient, engine: Engine) -> None:
    r = await client.put("/v1/vpns/blue/neighbors/127.0.0.62", json=BODY)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["vpn"] == "blue" and d["source"] == "api" and d["address"] == "127.0.0.62"
    assert d["config"]["remote_as"] == 65002 and d["config"]["families"] == ["ipv4-unicast", "ipv6-unicast"]
    assert d["state"] in ("Idle", "Active")  # passive, nobody there
    assert d["prefixes"] == {"ipv4-unicast": {"received": 0, "accepted": 0, "sent": 0},
                             "ipv6-unicast": {"received": 0, "accepted": 0, "sent": 0}}
    assert engine.router.vrf_of["127.0.0.62"] == "blue"
    assert engine.pe_ce is not None and engine.pe_ce.neighbors["127.0.0.62"].remote_as == 65002
    assert engine.speaker.peers["127.0.0.62"]._task is not None  # started at once
    # the global looking glass shows it too, with its VRF
    r = await client.get("/v1/bgp/neighbors/127.0.0.62")
    assert r.status_code == 200 and r.json()["vrf"] == "blue"
    # replace: the new settings, 200
    r = await client.put("/v1/vpns/blue/neighbors/127.0.0.62", json={**BODY, "hold_time": 30,
                                                                       "description": "tenant CE"})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["hold_time"] == 30 and r.json()["description"] == "tenant CE"
    assert engine.speaker.peers["127.0.0.62"].settings.hold_time == 30
    r = await client.get("/v1/vpns/blue/neighbors")
    assert [n["address"] for n in r.json()] == ["127.0.0.62"]
    # the config file's neighbor of "cfg": listed, read-only
    r = await client.get("/v1/vpns/cfg/neighbors")
    assert [(n["address"], n["source"]) for n in r.json()] == [(CFG_CE, "config")]
    r = await client.get(f"/v1/vpns/cfg/neighbors/{CFG_CE}")
    assert r.status_code == 200 and r.json()["config"]["remote_as"] == 65001
    # delete
    r = await client.delete("/v1/vpns/blue/neighbors/127.0.0.62")
    assert r.status_code == 204, r.text
    assert "127.0.0.62" not in engine.speaker.peers and "127.0.0.62" not in engine.router.vrf_of
    assert "127.0.0.62" not in engine.pe_ce.neighbors
    assert engine.router.policies.binding("127.0.0.62").name("import") is None
    assert (await client.get("/v1/vpns/blue/neighbors/127.0.0.62")).status_code == 404
    assert engine.store is not None and engine.store.vrf_neighbors() == {}


async def test_errors_name_the_field(client: httpx.AsyncClient, engine: Engine) -> None:
    base = "/v1/vpns/blue/neighbors"
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "hold_time": 2})
    assert r.status_code == 422 and ["body", "hold_time"] in _locs(r)
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "families": ["vpnv4"]})
    assert r.status_code == 422 and ["body", "families"] in _locs(r)
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "colour": "red"})
    assert r.status_code == 422 and ["body", "colour"] in _locs(r)
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "next_hop": "gateway"})
    assert r.status_code == 422 and ["body", "next_hop"] in _locs(r)
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "via": "port", "local_address": "192.0.2.1"})
    assert r.status_code == 422 and r.json()["detail"].startswith("via:")
    r = await client.put(f"{base}/not-an-ip", json=BODY)
    assert r.status_code == 422 and r.json()["detail"].startswith("address:")
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "address": "127.0.0.63"})
    assert r.status_code == 422 and r.json()["detail"].startswith("address:")
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "import_policy": "nope"})
    assert r.status_code == 422 and r.json()["detail"].startswith("import_policy:")
    r = await client.put(f"{base}/127.0.0.62", json={**BODY, "remote_as": 65000, "ebgp_multihop": 2})
    assert r.status_code == 422 and r.json()["detail"].startswith("ebgp_multihop:")
    r = await client.put("/v1/vpns/nope/neighbors/127.0.0.62", json=BODY)
    assert r.status_code == 404
    # an address another neighbor has: the global table's, the config file's, another VRF's
    r = await client.put(f"{base}/127.0.0.53", json=BODY)
    assert r.status_code == 409 and "global table" in r.json()["detail"]
    r = await client.put(f"{base}/{CFG_CE}", json=BODY)
    assert r.status_code == 409 and "configuration file" in r.json()["detail"]
    r = await client.put(f"/v1/vpns/cfg/neighbors/{CFG_CE}", json=BODY)
    assert r.status_code == 409 and "configuration file" in r.json()["detail"]
    r = await client.delete(f"/v1/vpns/cfg/neighbors/{CFG_CE}")
    assert r.status_code == 409 and "configuration file" in r.json()["detail"]
    assert (await client.put(f"{base}/::ffff:127.0.0.62", json=BODY)).status_code == 201  # folded
    r = await client.put("/v1/vpns/cfg/neighbors/127.0.0.62", json=BODY)
    assert r.status_code == 409 and "VPN instance 'blue'" in r.json()["detail"]
    r = await client.delete("/v1/vpns/cfg/neighbors/127.0.0.62")
    assert r.status_code == 404
    r = await client.delete("/v1/vpns/blue/neighbors/127.0.0.99")
    assert r.status_code == 404
    # nothing else was disturbed
    assert sorted(engine.router.vrf_of) == [CFG_CE, "127.0.0.62"]
    assert engine.router.vrf_neighbors["127.0.0.62"].remote_as == 65002
    assert engine.store is not None and list(engine.store.vrf_neighbors()) == ["127.0.0.62"]
    # the policy a neighbor uses cannot be deleted
    r = await client.delete("/v1/policies/accept-all")
    assert r.status_code == 409


async def test_stored_and_restored_and_vpn_delete(client: httpx.AsyncClient, engine: Engine,
                                                   tmp_path: Path) -> None:
    assert (await client.put("/v1/vpns/blue/neighbors/2001:db8::62", json=BODY)).status_code == 201
    assert (await client.put("/v1/vpns/cfg/neighbors/127.0.0.64", json=BODY)).status_code == 201
    # restart from the same file
    assert engine.store is not None
    rows = engine.store.vrf_neighbors()
    assert rows["2001:db8::62"]["vpn"] == "blue" and rows["127.0.0.64"]["vpn"] == "cfg"
    await engine.stop()
    engine.store.close()
    second = _engine(tmp_path)
    try:
        assert second.router.vrf_of == {CFG_CE: "cfg", "2001:db8::62": "blue", "127.0.0.64": "cfg"}
        assert second.router.policies.binding("2001:db8::62").name("export") == "accept-all"
        assert second.ops.config_neighbors == {CFG_CE}
    finally:
        assert second.store is not None
        second.store.close()
    engine.store = Store.in_dir(tmp_path)  # for the fixture's teardown
    engine.ops.store = engine.store
    # a VPN instance with neighbors: 409 naming them, unless force (which removes them)
    r = await client.delete("/v1/vpns/blue")
    assert r.status_code == 409 and "2001:db8::62" in r.json()["detail"]
    assert "blue" in engine.vpn.vrfs
    r = await client.delete("/v1/vpns/blue", params={"force": "true"})
    assert r.status_code == 204, r.text
    assert "blue" not in engine.vpn.vrfs and "2001:db8::62" not in engine.speaker.peers
    assert list(engine.store.vrf_neighbors()) == ["127.0.0.64"]


def test_restore_skips_a_neighbor_whose_vpn_is_gone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="vpe.agent.state")
    store = Store.in_dir(tmp_path)
    with store.transaction() as tx:
        tx.put_vrf_neighbor("127.0.0.70", "gone", {"address": "127.0.0.70", "remote_as": 65009})
        tx.put_vrf_neighbor("127.0.0.71", "cfg", {"address": "127.0.0.71", "remote_as": 65009})
        tx.put_vrf_neighbor("127.0.0.72", "cfg", {"address": "127.0.0.72", "hold_time": 1})
    store.close()
    e = _engine(tmp_path)
    try:
        assert sorted(e.router.vrf_of) == [CFG_CE, "127.0.0.71"]
        assert "BGP neighbor 127.0.0.70" in caplog.text and "no VPN instance 'gone'" in caplog.text
        assert "BGP neighbor 127.0.0.72" in caplog.text and "hold time" in caplog.text
    finally:
        assert e.store is not None
        e.store.close()


# -- live: two agents back to back over loopback ---------------------------------------------

def _free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


async def _until(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    for _ in range(int(timeout / 0.05)):
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_live_add_routes_flow_delete_sends_peer_deconfigured(client: httpx.AsyncClient,
                                                                   engine: Engine) -> None:
    """A second agent is the CE (its VRF ``ce`` has the API's agent as its own neighbor)."""
    me, ce_addr = "127.0.0.65", "127.0.0.66"
    port = _free_port(ce_addr)
    ce = Engine(parse_config(f"""
[bgp]
local_as = 65003
router_id = "198.18.0.66"
listen = ["{ce_addr}"]
port = {port}
ebgp_requires_policy = false
[[vrfs]]
name = "ce"
route_targets = ["65003:1"]
  [[vrfs.routes]]
  prefix = "203.0.113.0/24"
  kind = "static"
  next_hop = "192.0.2.50"
  [[vrfs.neighbors]]
  address = "{me}"
  remote_as = 65000
  passive = true
  families = ["ipv4-unicast"]
"""))
    await ce.start()
    try:
        engine.bridge.apply(engine.vpn.add_local_route("blue", "198.51.100.0/24", kind="static",
                                                       next_hop=ipaddress.ip_address("192.0.2.60")))
        r = await client.put(f"/v1/vpns/blue/neighbors/{ce_addr}",
                             json={"remote_as": 65003, "port": port, "local_address": me, "connect_retry": 0.2,
                                   "families": ["ipv4-unicast"], "import_policy": "accept-all",
                                   "export_policy": "accept-all"})
        assert r.status_code == 201, r.text
        await _until(lambda: engine.speaker.peers[ce_addr].established, "the session")
        await _until(lambda: engine.vpn.vrfs["blue"].routes("203.0.113.0/24"), "the CE's route in blue")
        await _until(lambda: ce.vpn.vrfs["ce"].routes("198.51.100.0/24"), "blue's route at the CE")
        d = (await client.get(f"/v1/vpns/blue/neighbors/{ce_addr}")).json()
        assert d["state"] == "Established" and d["uptime"] is not None
        assert d["prefixes"]["ipv4-unicast"] == {"received": 1, "accepted": 1, "sent": 1}
        r = await client.delete(f"/v1/vpns/blue/neighbors/{ce_addr}")
        assert r.status_code == 204
        assert not engine.vpn.vrfs["blue"].routes("203.0.113.0/24")  # gone when the DELETE returns
        peer = ce.speaker.peers[me]
        await _until(lambda: "Peer De-configured" in peer.last_error, "the CE to see Cease / Peer De-configured")
        await _until(lambda: not ce.vpn.vrfs["ce"].routes("198.51.100.0/24"), "blue's route gone at the CE")
    finally:
        await ce.stop()


async def test_store_failure_is_503_and_nothing_changes(client: httpx.AsyncClient, engine: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await client.put("/v1/vpns/blue/neighbors/127.0.0.62", json=BODY)).status_code == 201

    def broken(*_: Any) -> None:
        raise StoreError("vpe.db: write failed: disk I/O error (the test)")

    monkeypatch.setattr(Transaction, "put_vrf_neighbor", broken)
    monkeypatch.setattr(Transaction, "delete_vrf_neighbor", broken)
    r = await client.put("/v1/vpns/blue/neighbors/127.0.0.63", json=BODY)
    assert r.status_code == 503 and "disk I/O error" in r.json()["detail"]
    assert "127.0.0.63" not in engine.speaker.peers
    r = await client.put("/v1/vpns/blue/neighbors/127.0.0.62", json={**BODY, "hold_time": 30})
    assert r.status_code == 503 and engine.speaker.peers["127.0.0.62"].settings.hold_time == 90
    r = await client.delete("/v1/vpns/blue/neighbors/127.0.0.62")
    assert r.status_code == 503 and "127.0.0.62" in engine.speaker.peers
    assert engine.store is not None and list(engine.store.vrf_neighbors()) == ["127.0.0.62"]


PORT_CONFIG = CONFIG.replace("[[policies]]", """[dataplane]
driver = "userspace"
fib_socket = "{state}/no-forwarder.sock"
session_prefix = "198.19.179.0/24"

[[policies]]""", 1)
PORT_BODY = {"remote_as": 65010, "via": "port", "local_address": "192.0.2.1",
             "import_policy": "accept-all", "export_policy": "accept-all"}


def _port_engine(tmp_path: Path) -> Engine:
    return Engine(parse_config(PORT_CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))


def _sessions(e: Engine) -> set[tuple[str, str, str]]:
    assert e.fib is not None
    return {(x.vrf, str(x.peer), str(x.mapped)) for x in e.fib.state().sessions}


async def test_neighbors_through_ports_by_api_per_vpn_stored_and_removed(tmp_path: Path) -> None:
    e = _port_engine(tmp_path)
    await e.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(e)), base_url="http://vpe") as c:
            for vpn, rt in (("blue", "65000:2"), ("green", "65000:3")):
                assert (await c.post("/v1/vpns", json={"name": vpn, "route_targets": [rt]})).status_code == 201
                # the same CE address in two VPNs: each its own session, at its own mapped address
                r = await c.put(f"/v1/vpns/{vpn}/neighbors/192.0.2.2", json=PORT_BODY)
                assert r.status_code == 201, r.text
                d = r.json()
                assert d["via"] == "port" and d["vrf_address"] == "192.0.2.2" and d["vpn"] == vpn
                assert d["address"].startswith("198.19.179.") and d["config"]["address"] == "192.0.2.2"
            assert _sessions(e) == {("blue", "192.0.2.2", "198.19.179.2"), ("green", "192.0.2.2", "198.19.179.3")}
            assert "198.19.179.1" in e.speaker.listen  # the agent's end of the sessions
            r = await c.get("/v1/vpns/green/neighbors/192.0.2.2")
            assert r.status_code == 200 and r.json()["address"] == "198.19.179.3"
            # replaced (a new remote AS): one session still, same VPN
            r = await c.put("/v1/vpns/green/neighbors/192.0.2.2", json={**PORT_BODY, "remote_as": 65011})
            assert r.status_code == 200 and r.json()["remote_as"] == 65011
            assert len(_sessions(e)) == 2
            assert e.store is not None
            assert set(e.store.vrf_neighbors()) == {"192.0.2.2%blue", "192.0.2.2%green"}
            assert (await c.delete("/v1/vpns/blue/neighbors/192.0.2.2")).status_code == 204
            assert {s[0] for s in _sessions(e)} == {"green"}
            assert (await c.get("/v1/vpns/blue/neighbors/192.0.2.2")).status_code == 404
            assert set(e.store.vrf_neighbors()) == {"192.0.2.2%green"}
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()
    again = _port_engine(tmp_path)  # restored from the file, with its session in the FIB
    try:
        assert {s[:2] for s in _sessions(again)} == {("green", "192.0.2.2")}
        (pn,) = again.port_sessions.neighbors.values()
        assert pn.configured.remote_as == 65011 and again.router.vrf_of[pn.mapped] == "green"
    finally:
        assert again.store is not None
        again.store.close()


async def test_a_port_neighbor_needs_a_forwarder(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/vpns/blue/neighbors/192.0.2.2", json=PORT_BODY)
    assert r.status_code == 422 and "needs a forwarder" in r.text
