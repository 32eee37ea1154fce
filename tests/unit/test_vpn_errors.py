"""Configuration errors name the field and the value."""

from __future__ import annotations

import pytest

from vpe.vpn import VpnService


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"rd": "65000"}, "rd: '65000' is not a route distinguisher"),
        ({"rd": "65000:x"}, "rd: '65000:x'"),
        ({"import_rts": ["target:1.2.3:4"]}, "import-rts: 'target:1.2.3:4' is not a route target"),
        ({"export_rts": ["65000"]}, "export-rts: '65000'"),
        ({"route_targets": ["x:y"]}, "route-targets: 'x:y'"),
        ({"label_mode": "per-banana"}, "label-mode: 'per-banana' is not a label mode"),
        ({"multipath": 0}, "multipath: 0"),
    ],
)
def test_add_vrf_errors(kw: dict[str, object], msg: str) -> None:
    s = VpnService("192.0.2.1")
    with pytest.raises(ValueError) as e:
        s.add_vrf("red", **kw)  # type: ignore[arg-type]
    assert msg in str(e.value)
    assert "red" not in s.vrfs
    assert s.rds.rd_of("red") is None


def test_duplicate_vrf_name_and_rd() -> None:
    s = VpnService("192.0.2.1")
    s.add_vrf("red", rd="65000:1")
    with pytest.raises(ValueError, match="name: VRF 'red' already exists"):
        s.add_vrf("red")
    with pytest.raises(ValueError, match="rd: 65000:1 is already used by VRF 'red'"):
        s.add_vrf("blue", rd="65000:1")
    assert "blue" not in s.vrfs


def test_bad_names_and_service_settings() -> None:
    s = VpnService("192.0.2.1")
    with pytest.raises(ValueError, match="name: ''"):
        s.add_vrf("")
    with pytest.raises(ValueError, match="vrf: 'nope' does not exist"):
        s.set_import_rts("nope", [])
    with pytest.raises(ValueError, match="encapsulations: 'warp'"):
        VpnService("192.0.2.1", encapsulations=["warp"])
    with pytest.raises(ValueError, match="next-hop: 'x'"):
        VpnService("192.0.2.1", next_hop="x")
    with pytest.raises(ValueError, match="router-id"):
        VpnService("x")
    s.add_vrf("red")
    with pytest.raises(ValueError, match="label-mode"):
        s.set_label_mode("red", "per-nothing")
    with pytest.raises(ValueError, match="prefix: '10.0.0.9/32' is not a local route"):
        s.remove_local_route("red", "10.0.0.9/32")
