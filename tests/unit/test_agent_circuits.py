"""External PE attachment circuits (R2.2), the parts without namespaces: names, parsing,
and the API's refusals (the e2e tests make real circuits: test_r2_2_external_pe.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_api import CONFIG

from vpe.agent.circuits import Circuits, circuit_ifname, parse_circuit, vxlan_ifname
from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.api.app import create_app


def test_circuit_names_and_parsing() -> None:
    assert circuit_ifname("ac0", 101) == "ac0.101" and parse_circuit("ac0.101") == ("ac0", 101)
    assert vxlan_ifname(101) == "vx101" and parse_circuit("vx101") == ("vxlan", 101)
    assert parse_circuit("vm-a") is None and parse_circuit("ac0.4095") is None and parse_circuit("eth0") is None
    for bad, msg in ((("ac0", 0), "vlan: 0 is not a VLAN id"), (("ac0", 4095), "vlan: 4095"),
                     (("a" * 12, 1000), "longer than 15 characters"), (("a b", 5), "interface: 'a b'")):
        with pytest.raises(ValueError, match=msg):
            circuit_ifname(*bad)
    with pytest.raises(ValueError, match="vni: 16777216 is not a VXLAN network identifier"):
        vxlan_ifname(1 << 24)
    c = Circuits()
    with pytest.raises(ValueError, match="give exactly one of vlan"):
        c.ensure("ac0", 5, vni=5)
    with pytest.raises(ValueError, match="remote: a VXLAN circuit needs the host's address"):
        c.ensure("ac0", vni=5)
    c.release("never-made")  # not ours: nothing happens
    assert c.created == {}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)))  # driver none: no forwarder
    await e.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(e)), base_url="http://vpe") as c:
            yield c
    finally:
        await e.stop()


async def test_r2_2_endpoints_api_refusals(client: httpx.AsyncClient) -> None:
    body = {"name": "vm1", "vpn": "cfg", "interface": "ac0", "vni": 101, "remote": "198.18.26.21",
            "mac": "02:00:00:00:26:01", "ips": ["192.0.2.21/24"]}
    r = await client.post("/v1/endpoints", json=body)
    assert r.status_code == 422 and r.json()["detail"].startswith("interface: this agent has no forwarder"), r.text
    for change, field in (({"vlan": 0}, "vlan"), ({"vni": 1 << 24}, "vni"), ({"remote": "h1"}, "remote"),
                          ({"ips": ["192.0.2.300/24"]}, "ips"), ({"mac": "01:00:00:00:00:01"}, "mac"),
                          ({"interface": "x" * 16}, "interface"), ({"colour": 1}, "colour")):
        r = await client.post("/v1/endpoints", json={**body, **change})
        assert r.status_code == 422 and field in r.text, (change, r.text)
    assert (await client.get("/v1/endpoints")).json() == []
    assert (await client.delete("/v1/endpoints/vm1")).status_code == 404
