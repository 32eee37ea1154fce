"""Issue 13, management plane: what a request may be (R13.4, authenticated management API).

Through the real app, a real Engine (dataplane none) and a real SQLite file:
bodies over the cap and lists over their caps are 413 without echoing the
input (finding 5); no body makes a 500 (finding 10: NaN, infinities, 1e400,
huge integers, bad UTF-8, wrong media types); every name and ifname obeys
the one rule of :mod:`vpe.vpn.names` (finding 7; ifnames counted in octets);
VM addresses are unicast host addresses of a subnet, MACs unicast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import create_app

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
"""

PORT = {"name": "vm1", "ifname": "tap-vm1", "vpn": "blue", "mac": "02:00:00:00:00:01",
        "ips": ["192.0.2.10/24"]}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    await e.start()
    transport = httpx.ASGITransport(app=create_app(e), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as c:
            r = await c.post("/v1/vpns", json={"name": "blue", "route_targets": ["65000:1"]})
            assert r.status_code == 201, r.text
            yield c, e
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()


async def test_r13_4_big_body_413_not_echoed(env: tuple[httpx.AsyncClient, Engine]) -> None:
    """Finding 5: a 3,000,000-RT (33 MB) body is refused with 413 before it is parsed."""
    c, e = env
    body = b'{"name": "big", "route_targets": [' + b",".join([b'"65000:1"'] * 3_000_000) + b"]}"
    assert len(body) > 30_000_000
    r = await c.post("/v1/vpns", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert len(r.content) < 300 and "1048576" in r.json()["detail"]
    assert "big" not in e.vpn.vrfs


async def test_r13_4_list_over_cap_413(env: tuple[httpx.AsyncClient, Engine]) -> None:
    """A list longer than its documented cap is a 413 naming the field, and nothing is echoed."""
    c, e = env
    r = await c.post("/v1/vpns", json={"name": "many", "route_targets": [f"65000:{i}" for i in range(257)]})
    assert r.status_code == 413, r.text
    assert r.json()["detail"].startswith("route_targets:") and "65000:" not in r.json()["detail"]
    r = await c.post("/v1/ports", json={**PORT, "ips": [f"192.0.2.{i}/24" for i in range(1, 66)]})
    assert r.status_code == 413 and r.json()["detail"].startswith("ips:"), r.text
    assert "many" not in e.vpn.vrfs


@pytest.mark.parametrize(("body", "ctype", "status", "needle"), [
    (b'{"name": "x", "route_targets": ["65000:1"], "multipath": NaN}', "application/json", 400, "NaN"),
    (b'{"name": "x", "route_targets": ["65000:1"], "multipath": Infinity}', "application/json", 400, "Infinity"),
    (b'{"name": "x", "route_targets": ["65000:1"], "multipath": 1e400}', "application/json", 400, "1e400"),
    (b'{"name": "x", "route_targets": ["65000:1"], "multipath": ' + b"9" * 5000 + b"}",
     "application/json", 400, "body"),
    (b'{"name": "x\xff", "route_targets": ["65000:1"]}', "application/json", 400, "UTF-8"),
    (b'{"name": "x", "route_targets": ["65000:1"]', "application/json", 400, "not JSON"),
    (b'{"name": "x", "route_targets": ["65000:1"]}', "text/plain", 415, "content-type"),
    (b"name=x", "application/x-www-form-urlencoded", 415, "content-type"),
    (b'{"name": "x", "route_targets": ["65000:1"]}', "", 415, "content-type"),
    (b"[" * 100_000, "application/json", 400, "body"),
])
async def test_r13_4_no_500_for_any_body(env: tuple[httpx.AsyncClient, Engine], body: bytes, ctype: str,
                                         status: int, needle: str) -> None:
    """Finding 10: no body gives a 500; each gets a precise 4xx naming what is wrong."""
    c, e = env
    headers = {"content-type": ctype} if ctype else {}
    for path in ("/v1/vpns", "/v1/ports"):
        r = await c.post(path, content=body, headers=headers)
        assert r.status_code == status, (path, r.status_code, r.text[:300])
        assert needle in r.json()["detail"], r.text[:300]
    assert "x" not in e.vpn.vrfs


async def test_r13_4_validation_errors_never_echo_input(env: tuple[httpx.AsyncClient, Engine]) -> None:
    """A 422 names the field and the reason, never carries the input back."""
    c, _ = env
    huge = "z" * 500_000
    r = await c.post("/v1/vpns", json={"name": huge, "route_targets": ["65000:1"]})
    assert r.status_code == 422 and len(r.content) < 1000, r.text[:300]
    assert r.json()["detail"][0]["loc"] == ["body", "name"]
    r = await c.patch("/v1/vpns/blue", json={"multipath": 1.5})
    assert r.status_code == 422 and "input" not in r.json()["detail"][0]


@pytest.mark.parametrize(("field", "value"), [
    ("name", "../../etc/passwd"), ("name", "vm\x00"), ("name", "vm\u202egnp.exe"), ("name", "vm 1"),
    ("name", ".."), ("name", "-rf"), ("name", "é"), ("vpn", "../vpns/blue"),
    ("ifname", "tap vm"), ("ifname", "tap/1"), ("ifname", ".."), ("ifname", "tap\u202e"),
    ("ifname", "ééééééééé"),  # 9 characters, 18 octets: over IFNAMSIZ
    ("ifname", "a" * 16),
    ("description", "evil\u202etxt"), ("description", "line\nbreak"),
])
async def test_names_follow_one_rule(env: tuple[httpx.AsyncClient, Engine], field: str, value: str) -> None:
    """Finding 7: names and ifnames are checked by one rule; descriptions have no control characters."""
    c, e = env
    r = await c.post("/v1/ports", json={**PORT, field: value})
    assert r.status_code == 422, (field, value, r.text)
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", field], r.text
    assert (await c.get("/v1/ports")).json() == []


async def test_vpn_names_follow_one_rule(env: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = env
    for bad in ("../x", "a b", "x\u202e", ".hidden", "a" * 65):
        r = await c.post("/v1/vpns", json={"name": bad, "route_targets": ["65000:1"]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"], (bad, r.text)
    r = await c.post("/v1/vpns", json={"name": "Tenant-1_a.b", "route_targets": ["65000:2"]})
    assert r.status_code == 201, r.text


async def test_ifname_of_15_octets_is_accepted(env: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = env
    r = await c.post("/v1/ports", json={**PORT, "ifname": "a" * 15})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("ips", ["10.9.9.9/0"], "/0"),
    ("ips", ["0.0.0.0/0"], "unspecified"),
    ("ips", ["224.0.0.1/32"], "multicast"),
    ("ips", ["255.255.255.255/32"], "broadcast"),
    ("ips", ["127.0.0.5/8"], "loopback"),
    ("ips", ["192.0.2.0/24"], "network address"),
    ("ips", ["192.0.2.255/24"], "broadcast address"),
    ("ips", ["::/0"], "unspecified"),
    ("ips", ["ff02::1/128"], "multicast"),
    ("ips", ["2001:db8::/64"], "anycast"),
    ("ips", ["2001:db8::1/8"], "shorter"),
    ("mac", "ff:ff:ff:ff:ff:ff", "unicast"),
    ("mac", "01:00:5e:00:00:01", "unicast"),
    ("mac", "00:00:00:00:00:00", "all-zeros"),
    ("gateways", ["224.0.0.1"], "unicast"),
])
async def test_vm_addresses_and_mac_unicast(env: tuple[httpx.AsyncClient, Engine], field: str, value: object,
                                            needle: str) -> None:
    """VM addresses are unicast host addresses of a subnet (no 0.0.0.0/0 injected); MACs unicast."""
    c, e = env
    r = await c.post("/v1/ports", json={**PORT, "advertise": "subnet", field: value})
    assert r.status_code == 422, (value, r.text)
    assert needle in r.json()["detail"][0]["msg"], r.text
    assert (await c.get("/v1/ports")).json() == []


async def test_point_to_point_and_host_addresses_ok(env: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = env
    r = await c.post("/v1/ports", json={**PORT, "ips": ["192.0.2.10/32", "198.51.100.0/31",
                                                        "2001:db8:1::10/64", "2001:db8:2::/127"]})
    assert r.status_code == 201, r.text


async def test_ipv4_mapped_neighbor_is_the_ipv4_neighbor(tmp_path: Path) -> None:
    """`::ffff:127.0.0.72` and `127.0.0.72` are one neighbor: in the configuration and in the API."""
    cfg = parse_config(CONFIG.format(state=tmp_path) +
                       '[[neighbors]]\naddress = "::ffff:127.0.0.72"\nremote_as = 65000\npassive = true\n')
    assert [n.address for n in cfg.neighbors] == ["127.0.0.72"]
    e = Engine(cfg, Store.in_dir(tmp_path))
    await e.start()
    try:
        transport = httpx.ASGITransport(app=create_app(e), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as c:
            for form in ("127.0.0.72", "::ffff:127.0.0.72"):
                r = await c.get(f"/v1/bgp/neighbors/{form}")
                assert r.status_code == 200 and r.json()["address"] == "127.0.0.72", r.text
            assert (await c.get("/v1/bgp/neighbors/not-an-ip")).status_code == 422
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()
