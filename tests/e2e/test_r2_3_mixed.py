"""R2.3: a mixed deployment. One VPN spans an external PE ("tor", serving host
h1's VMs over VXLAN attachment circuits, R2.2) and an internal vPE ("h2",
forwarder on the host itself); the two PEs peer over iBGP. VMs behind
either reach each other, and each PE holds the other's VM as a VPN route
whose next hop is the other PE's underlay address. World:
tests/e2e/external_pe_lab.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_lab import DRIVERS
from external_pe_lab import MGMT, UNDERLAY, VMS, VNIS, World, external_pe_world, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture(scope="module", params=DRIVERS)
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    with external_pe_world(Path(tmp_path_factory.mktemp("r2_3")), request.param) as w:
        yield w


def test_r2_3_vms_behind_external_and_internal_pes_reach_each_other(world: World) -> None:
    w = world
    ip1, mac1 = VMS["vm1"]
    status, body = w.signal({"name": "vm1", "vpn": "red", "interface": "ac0", "vni": VNIS["vm1"], "remote": MGMT["h1"],
                             "mac": mac1, "ips": [f"{ip1}/24"], "gateways": ["192.0.2.1"]})
    assert status == 201, (body, w.logs())
    ip2 = VMS["vm2"][0]
    until(lambda: f"{ip1}/32" in w.get("h2", "/v1/vpns/red")["table"], what="vm1's route at h2")
    until(lambda: f"{ip2}/32" in w.get("tor", "/v1/vpns/red")["table"], what="vm2's route at tor")
    assert [e["next_hop"] for e in w.get("h2", "/v1/vpns/red")["table"][f"{ip1}/32"]] == [UNDERLAY["tor"]]
    assert [e["next_hop"] for e in w.get("tor", "/v1/vpns/red")["table"][f"{ip2}/32"]] == [UNDERLAY["h2"]]
    for src, dst in (("vm1", ip2), ("vm2", ip1)):
        r = w.ping(src, dst, count=3)
        assert r.returncode == 0, (src, dst, r.stdout, w.logs())
    # the internal vPE's forwarder tunnels toward the external PE, and back
    fib = {r["prefix"]: r for r in w.get("h2", "/v1/fib")["routes"]}
    assert [h["endpoint"] for h in fib[f"{ip1}/32"]["next_hops"]] == [UNDERLAY["tor"]]
