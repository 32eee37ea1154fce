"""External PE attachment circuits (R2.2), the parts without namespaces: names, parsing,
and the API's refusals (the e2e tests make real circuits: test_r2_2_external_pe.py)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_api import CONFIG

from vpe.agent import circuits as circuits_mod
from vpe.agent.circuits import META_KEY, Circuits, circuit_ifname, parse_circuit, vxlan_ifname
from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
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


class FakeIp:
    """``ip link`` on a pretend set of interfaces: what add/del/show would do, recorded."""

    def __init__(self, links: set[str]) -> None:
        self.links = set(links)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        ok = True
        if args[:2] == ("link", "show"):
            ok = args[-1] in self.links
        elif args[:2] == ("link", "add"):
            self.links.add(args[args.index("name") + 1] if "name" in args else args[2])
        elif args[:2] == ("link", "del"):
            ok = args[-1] in self.links
            self.links.discard(args[-1])
        return subprocess.CompletedProcess(["ip", *args], 0 if ok else 1, "", "" if ok else "no such device")

    def adds(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[:2] == ("link", "add")]


def test_r2_2_vxlan_circuits_come_back_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The circuits a PE made are stored with how they were made; after a restart a VXLAN
    circuit is made again when its device is gone (with the stored remote and interface),
    taken as it is when still there, and either way removed with its endpoint."""
    ip = FakeIp({"ac0"})
    monkeypatch.setattr(circuits_mod, "_ip", ip)
    monkeypatch.setattr(circuits_mod.shutil, "which", lambda _name: "/sbin/ip")
    store = Store.in_dir(tmp_path)
    try:
        c = Circuits(store)
        assert c.ensure("ac0", vni=101, remote="198.18.26.21") == ("vx101", True)
        assert c.ensure("ac0", vni=102, remote="198.18.26.22") == ("vx102", True)
        assert c.ensure("ac0", vni=103, remote="198.18.26.23") == ("vx103", True)  # its port never stored
        assert store.meta(META_KEY)["vx101"] == {"interface": "ac0", "vni": 101, "remote": "198.18.26.21"}

        # restart: vx101 is gone (made again), vx102 is still there (taken), vx103 has no port
        ip.links.discard("vx101")
        ip.calls.clear()
        again = Circuits(store)
        assert again.restore(["vx101", "vx102", "vm-a"]) == 1
        assert ip.adds() == [("link", "add", "vx101", "type", "vxlan", "id", "101", "remote", "198.18.26.21",
                              "dstport", "4789", "dev", "ac0")]
        assert {"vx101", "vx102"} <= ip.links and "vx103" not in ip.links
        assert set(again.created) == {"vx101", "vx102"} and set(store.meta(META_KEY)) == {"vx101", "vx102"}
        # withdrawn after the restart: the device goes, and from the store
        again.release("vx102")
        assert "vx102" not in ip.links and set(store.meta(META_KEY)) == {"vx101"}
        # restored twice in a row: nothing made, nothing lost
        ip.calls.clear()
        assert Circuits(store).restore(["vx101"]) == 0 and ip.adds() == []
    finally:
        store.close()
