"""bagpipe-bgp's REST API on vpe (vpe.api.bagpipe) through the real app, a real
Engine (dataplane none) and a real SQLite file.

The bodies are those networking-bagpipe's clients send (``bagpipe-rest-attach``
and the Neutron agent's BGPVPN extension): every ipvpn field mapped onto the
/v1 operations, the fields vpe cannot honour refused with a 400 naming them,
endpoints of one interface accumulating into one port, route targets updated
with each attach, an instance created by an attach stopped with its last
endpoint, ``/ping`` and the looking glass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vpe.agent.config import ConfigError, parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import create_app
from vpe.api.bagpipe import BagpipeRefused, create_bagpipe_app, parse_request

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[vrfs]]
name = "cfg"
route_targets = ["65000:1"]
"""


def rest_attach_body(**over: Any) -> dict[str, Any]:
    """What ``bagpipe-rest-attach --attach --port netns --network-type ipvpn`` posts."""
    body: dict[str, Any] = {
        "import_rt": ["65000:77"], "export_rt": ["65000:77"],
        "local_port": {"linuxif": "ns-blue"}, "vpn_instance_id": "ipvpn-blue", "vpn_type": "ipvpn",
        "gateway_ip": "192.0.2.1", "mac_address": "02:00:00:00:00:21", "ip_address": "192.0.2.21/24",
        "advertise_subnet": False, "readvertise": None, "attract_traffic": {},
        "lb_consistent_hash_order": 0, "vni": 0, "direction": "both",
    }
    body.update(over)
    return body


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
async def clients(engine: Engine) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(the bagpipe listener, the /v1 API) of one engine."""
    b = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_bagpipe_app(engine)),
                          base_url="http://127.0.0.1:8082")
    v = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://vpe")
    async with b, v:
        yield b, v


async def test_attach_creates_vpn_and_port_then_endpoints_accumulate(clients: Any) -> None:
    b, v = clients
    r = await b.post("/attach_localport", json=rest_attach_body(local_pref=200, description={"port": "p1"},
                                                                 instance_description="net blue"))
    assert r.status_code == 200, r.text
    vpn = (await v.get("/v1/vpns/ipvpn-blue")).json()
    assert vpn["import_rts"] == vpn["export_rts"] == ["target:65000:77"]
    assert vpn["description"] == "net blue"
    port = (await v.get("/v1/ports/ns-blue")).json()
    assert port["ifname"] == "ns-blue" and port["vrf"] == "ipvpn-blue"
    assert port["ips"] == ["192.0.2.21/24"] and port["gateways"] == ["192.0.2.1"]
    assert port["local_pref"] == 200 and port["advertise"] == "host" and port["description"] == '{"port":"p1"}'
    # the same endpoint again (a client re-sending after a restart): nothing changes
    r = await b.post("/attach_localport", json=rest_attach_body(local_pref=200, description={"port": "p1"},
                                                                 instance_description="net blue"))
    assert r.json() == {"port": "ns-blue", "changed": False}
    # the IPv6 endpoint of the same interface joins the port; advertise_subnet applies
    r = await b.post("/attach_localport", json=rest_attach_body(
        ip_address="2001:db8:77::21/64", gateway_ip="2001:db8:77::1", advertise_subnet=True))
    assert r.status_code == 200, r.text
    port = (await v.get("/v1/ports/ns-blue")).json()
    assert port["ips"] == ["192.0.2.21/24", "2001:db8:77::21/64"]
    assert port["gateways"] == ["192.0.2.1", "2001:db8:77::1"] and port["advertise"] == "subnet"


async def test_attach_updates_route_targets_as_bagpipe(clients: Any) -> None:
    b, v = clients
    assert (await b.post("/attach_localport", json=rest_attach_body())).status_code == 200
    r = await b.post("/attach_localport", json=rest_attach_body(import_rt="65000:77, 65000:78"))
    assert r.status_code == 200, r.text
    vpn = (await v.get("/v1/vpns/ipvpn-blue")).json()
    assert vpn["import_rts"] == ["target:65000:77", "target:65000:78"]
    assert vpn["export_rts"] == ["target:65000:77"]


async def test_config_vrf_route_targets_are_not_changed(clients: Any) -> None:
    b, v = clients
    r = await b.post("/attach_localport", json=rest_attach_body(vpn_instance_id="cfg"))
    assert r.status_code == 409 and r.json()["detail"].startswith("import_rt: ")
    assert (await v.get("/v1/ports")).json() == []
    r = await b.post("/attach_localport", json=rest_attach_body(vpn_instance_id="cfg", import_rt=["65000:1"],
                                                                 export_rt=["target:65000:1"]))
    assert r.status_code == 200, r.text


async def test_detach_one_endpoint_then_the_last_stops_the_instance(clients: Any) -> None:
    b, v = clients
    await b.post("/attach_localport", json=rest_attach_body())
    await b.post("/attach_localport", json=rest_attach_body(ip_address="2001:db8:77::21/64", gateway_ip=None))
    r = await b.post("/detach_localport", json=rest_attach_body(ip_address="192.0.2.21/24"))
    assert r.status_code == 200 and r.json()["ips"] == ["2001:db8:77::21/64"]
    port = (await v.get("/v1/ports/ns-blue")).json()
    assert port["ips"] == ["2001:db8:77::21/64"] and port["gateways"] == []  # the IPv4 gateway went too
    r = await b.post("/detach_localport", json=rest_attach_body(ip_address="2001:db8:77::21/64"))
    assert r.status_code == 200 and r.json()["vpn_instance_stopped"] is True
    assert (await v.get("/v1/ports/ns-blue")).status_code == 404
    assert (await v.get("/v1/vpns/ipvpn-blue")).status_code == 404
    # detaching again: precise 404s
    r = await b.post("/detach_localport", json=rest_attach_body())
    assert r.status_code == 404 and r.json()["detail"].startswith("vpn_instance_id: no VPN instance")


async def test_detach_keeps_an_instance_created_through_v1(clients: Any) -> None:
    b, v = clients
    r = await v.post("/v1/vpns", json={"name": "ipvpn-blue", "route_targets": ["65000:77"]})
    assert r.status_code == 201
    assert (await b.post("/attach_localport", json=rest_attach_body())).status_code == 200
    r = await b.post("/detach_localport", json=rest_attach_body())
    assert r.status_code == 200 and r.json()["vpn_instance_stopped"] is False
    assert (await v.get("/v1/vpns/ipvpn-blue")).status_code == 200
    r = await b.post("/detach_localport", json=rest_attach_body())
    assert r.status_code == 404 and r.json()["detail"].startswith("local_port: ")


@pytest.mark.parametrize(("over", "field"), [
    ({"vpn_type": "evpn"}, "vpn_type"),
    ({"vpn_type": "l2"}, "vpn_type"),
    ({"local_port": {"linuxif": "tap1", "ovs": {"plugged": True, "port_number": 7, "vlan": 5}}}, "local_port.ovs"),
    ({"local_port": {"evpn": {"id": "evpn-1"}}}, "local_port.evpn"),
    ({"vni": 5000}, "vni"),
    ({"readvertise": {"from_rt": ["65000:1"], "to_rt": ["65000:2"]}}, "readvertise.to_rt"),
    ({"readvertise": {"from_rt": [], "to_rt": ["65000:77"]}}, "readvertise.from_rt"),
    ({"readvertise": {"from_rt": ["65000"], "to_rt": ["65000:77"]}}, "readvertise.from_rt"),
    ({"readvertise": {"from_rt": ["65000:1"], "to_rt": ["65000:77"], "via": 1}}, "readvertise.via"),
    ({"readvertise": {"from_rt": ["65000:77"], "to_rt": ["65000:77"]}}, "readvertise.from_rt"),  # a loop
    ({"attract_traffic": {"redirect_rts": ["65000:9"], "classifier": {"protocol": "tcp"}}},
     "attract_traffic.redirect_rts"),
    ({"attract_traffic": {"to": ["65000:77"], "static_destination_prefixes": ["192.0.2.1/24"]}},
     "attract_traffic.static_destination_prefixes[0]"),
    ({"attract_traffic": {"to": ["65000:78"], "static_destination_prefixes": ["0.0.0.0/0"]}},
     "attract_traffic.to"),
    ({"lb_consistent_hash_order": 3}, "lb_consistent_hash_order"),
    ({"fallback": {"dst_mac": "02:00:00:00:00:99"}}, "fallback"),
    ({"linuxbr": "br0"}, "linuxbr"),
    ({"color": "red"}, "color"),
    ({"mac_address": "ff:ff:ff:ff:ff:ff"}, "mac_address"),
    ({"ip_address": "not-an-ip"}, "ip_address"),
    ({"ip_address": "224.0.0.5/24"}, "ip_address"),
    ({"gateway_ip": "nope"}, "gateway_ip"),
    ({"import_rt": ["65000"]}, "import_rt"),
    ({"advertise_subnet": "yes"}, "advertise_subnet"),
    ({"direction": "sideways"}, "direction"),
    ({"local_pref": -1}, "local_pref"),
    ({"local_port": {"linuxif": "an-interface-name-too-long"}}, "local_port.linuxif"),
    ({"vpn_instance_id": "bad name!"}, "vpn_instance_id"),
])
async def test_attach_refusals_name_the_bagpipe_field(clients: Any, over: dict[str, Any], field: str) -> None:
    b, v = clients
    r = await b.post("/attach_localport", json=rest_attach_body(**over))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(f"{field}: "), r.json()
    assert (await v.get("/v1/ports")).json() == []
    assert [x["name"] for x in (await v.get("/v1/vpns")).json()] == ["cfg"]


async def test_missing_fields_and_non_json(clients: Any) -> None:
    b, _ = clients
    for field in ("vpn_type", "vpn_instance_id", "mac_address", "local_port", "import_rt", "ip_address"):
        body = rest_attach_body()
        del body[field]
        r = await b.post("/attach_localport", json=body)
        assert r.status_code == 400 and r.json()["detail"].startswith(f"{field}: "), (field, r.text)
    r = await b.post("/attach_localport", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith("body: ")


async def test_interface_in_two_instances_and_mac_change_conflict(clients: Any) -> None:
    b, _ = clients
    assert (await b.post("/attach_localport", json=rest_attach_body())).status_code == 200
    r = await b.post("/attach_localport", json=rest_attach_body(vpn_instance_id="ipvpn-red"))
    assert r.status_code == 409 and r.json()["detail"].startswith("local_port: ")
    r = await b.post("/attach_localport", json=rest_attach_body(mac_address="02:00:00:00:00:22"))
    assert r.status_code == 409 and r.json()["detail"].startswith("mac_address: ")


async def test_ping_and_looking_glass(clients: Any, engine: Engine) -> None:
    b, _ = clients
    seq = (await b.get("/ping")).json()
    assert isinstance(seq, int) and seq > 0 and (await b.get("/ping")).json() == seq
    other = create_bagpipe_app(engine)  # another start of the listener: another number
    assert other.state.compat.sequence != seq
    await b.post("/attach_localport", json=rest_attach_body())
    s = (await b.get("/looking-glass/summary")).json()
    assert s["vpn_instances_count"] == 2 and s["BGP_established_peers"] == 0
    inst = (await b.get("/looking-glass/vpns/instances")).json()
    assert {i["id"] for i in inst} == {"cfg", "ipvpn-blue"}
    href = next(i["href"] for i in inst if i["id"] == "ipvpn-blue")
    assert href == "http://127.0.0.1:8082/looking-glass/vpns/instances/ipvpn-blue"
    d = (await b.get("/looking-glass/vpns/instances/ipvpn-blue")).json()
    assert d["instance_type"] == "ipvpn" and d["route_targets"]["import"] == ["target:65000:77"]
    assert d["ports"]["ns-blue"][0]["ip_address"] == "192.0.2.21/24" and d["gateway_ip"] == "192.0.2.1"
    assert (await b.get("/looking-glass/vpns/instances/ipvpn-blue/route_targets")).json()["export"] == [
        "target:65000:77"]
    assert (await b.get("/looking-glass/vpns/instances/nope")).status_code == 404
    assert (await b.get("/looking-glass/nope")).status_code == 404
    assert (await b.post("/ping")).status_code == 405


def test_parse_request_forms() -> None:
    ep = parse_request(rest_attach_body(local_port="tap9", ip_address="192.0.2.9", import_rt="65000:1,65000:2"),
                       attach=True)
    assert ep.ifname == "tap9" and ep.ip == "192.0.2.9/32" and ep.import_rts == ("65000:1", "65000:2")
    # a detach may name the interface only (every endpoint of it goes)
    ep = parse_request({"vpn_instance_id": "x", "vpn_type": "ipvpn", "mac_address": "02:00:00:00:00:01",
                        "local_port": {"linuxif": "tap9"}}, attach=False)
    assert ep.ip is None
    with pytest.raises(BagpipeRefused, match="^body: "):
        parse_request([1], attach=True)


def test_config_section() -> None:
    base = 'state_dir = "/tmp/x"\n[bgp]\nlocal_as = 65000\nrouter_id = "198.18.0.1"\n'
    cfg = parse_config(base)
    assert cfg.bagpipe_compat.enabled is False and cfg.bagpipe_compat.listen == "127.0.0.1:8082"
    cfg = parse_config(base + '[bagpipe_compat]\nenabled = true\nlisten = "127.0.0.1:18082"\n')
    assert cfg.bagpipe_compat.enabled and cfg.bagpipe_compat.listen == "127.0.0.1:18082"
    with pytest.raises(ConfigError, match="bagpipe_compat.listen"):
        parse_config(base + '[bagpipe_compat]\nlisten = "localhost:8082"\n')


async def test_created_instances_are_remembered_across_a_restart(tmp_path: Path) -> None:
    """An instance the listener created is still stopped with its last port after a restart
    (kept in the state store), and one created through /v1 still is not."""
    async def started() -> Engine:
        e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
        await e.start()
        return e

    async def stopped(e: Engine) -> None:
        await e.stop()
        assert e.store is not None
        e.store.close()

    e = await started()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_bagpipe_app(e)),
                                     base_url="http://127.0.0.1:8082") as b:
            assert (await b.post("/attach_localport", json=rest_attach_body())).status_code == 200
        e.ops.create_vpn("mine", {"route_targets": ["65000:9"]})
    finally:
        await stopped(e)
    e = await started()
    try:
        app = create_bagpipe_app(e)
        assert app.state.compat.owned == {"ipvpn-blue"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8082") as b:
            assert (await b.post("/attach_localport", json=rest_attach_body(
                vpn_instance_id="mine", import_rt=["65000:9"], export_rt=["65000:9"],
                local_port={"linuxif": "ns-mine"}, ip_address="198.51.100.5/24", gateway_ip=None))).status_code == 200
            r = await b.post("/detach_localport", json=rest_attach_body())
            assert r.status_code == 200 and r.json()["vpn_instance_stopped"] is True
            r = await b.post("/detach_localport", json=rest_attach_body(
                vpn_instance_id="mine", local_port={"linuxif": "ns-mine"}, ip_address="198.51.100.5/24"))
            assert r.status_code == 200 and r.json()["vpn_instance_stopped"] is False
        assert not e.view.has_vrf("ipvpn-blue") and e.view.has_vrf("mine")
        assert e.store is not None and e.store.meta("bagpipe_owned") == []
    finally:
        await stopped(e)


async def test_refused_attach_leaves_route_targets_as_they_were(clients: Any) -> None:
    b, v = clients
    assert (await b.post("/attach_localport", json=rest_attach_body())).status_code == 200
    # another interface with the same address: the agent refuses it (409), the new RTs are undone
    r = await b.post("/attach_localport", json=rest_attach_body(local_port="ns-other", import_rt=["65000:99"],
                                                                 mac_address="02:00:00:00:00:23"))
    assert r.status_code == 409 and r.json()["detail"].startswith("ip_address: "), r.text
    assert (await v.get("/v1/vpns/ipvpn-blue")).json()["import_rts"] == ["target:65000:77"]
    assert [p["name"] for p in (await v.get("/v1/ports")).json()] == ["ns-blue"]


async def test_readvertise_and_attract_become_the_instance_service(clients: Any) -> None:
    """bagpipe's readvertise (from_rt, to_rt = the export RTs) and attract_traffic without a
    classifier are the VPN instance's service block (docs/service-chains.md): re-advertised
    and attracted routes go via the port's address."""
    b, v = clients
    r = await b.post("/attach_localport", json=rest_attach_body(
        readvertise={"from_rt": ["65000:5"], "to_rt": ["target:65000:77"]}))
    assert r.status_code == 200, r.text
    vpn = (await v.get("/v1/vpns/ipvpn-blue")).json()
    assert vpn["service"]["address"] == "192.0.2.21"
    assert vpn["service"]["readv_from_rts"] in (["65000:5"], ["target:65000:5"])
    d = (await b.get("/looking-glass/vpns/instances/ipvpn-blue")).json()
    assert d["readvertise"] == {"from": ["65000:5"], "to": ["target:65000:77"]}
    # the same again: nothing changes; then attraction added on the existing instance
    r = await b.post("/attach_localport", json=rest_attach_body(
        readvertise={"from_rt": ["65000:5"], "to_rt": ["65000:77"]}))
    assert r.json()["changed"] is False
    r = await b.post("/attach_localport", json=rest_attach_body(
        readvertise={"from_rt": ["65000:5"], "to_rt": ["65000:77"]},
        attract_traffic={"to": ["65000:77"], "static_destination_prefixes": ["0.0.0.0/0"]}))
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    assert (await v.get("/v1/vpns/ipvpn-blue")).json()["service"]["attract"] == ["0.0.0.0/0"]
    # a configuration-file instance keeps its own service block
    r = await b.post("/attach_localport", json=rest_attach_body(
        vpn_instance_id="cfg", import_rt=["65000:1"], export_rt=["65000:1"], local_port="ns-cfg",
        ip_address="198.51.100.7/24", gateway_ip=None, readvertise={"from_rt": ["65000:5"], "to_rt": ["65000:1"]}))
    assert r.status_code == 409 and r.json()["detail"].startswith("readvertise: "), r.text
    assert [p["name"] for p in (await v.get("/v1/ports")).json()] == ["ns-blue"]
