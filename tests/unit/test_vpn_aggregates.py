"""Aggregation (R10.3), the pure parts: the VPN service's aggregate list
(exported with this vPE's next hop and the VRF label, ``summary_only``
withholding what it covers), the FIB resolver's ``transit`` flag on remote
routes strictly inside an aggregate, and the userspace pipeline sending a
packet that arrived on the aggregate label on toward the specific's vPE,
once, never back."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from test_dp_helpers import forwarder, mpls_udp_payload, udp4
from test_vpn_import import remote

from vpe.agent.fib_resolver import FibResolver
from vpe.dataplane.driver import Batch, LabelEntry, NextHop, Route
from vpe.vpn import VpnPathsChanged, VpnService
from vpe.vpn.errors import InvalidValue
from vpe.vpn.vrf import covers, prefix_key

ME = "198.18.0.1"


def _svc() -> VpnService:
    vpn = VpnService(ME, next_hop=ME)
    vpn.add_vrf("red", import_rts=["65000:1"], export_rts=["65000:1"], label_mode="per-prefix")
    return vpn


def _exported(vpn: VpnService) -> dict[str, tuple[int, ...]]:
    return {str(r.nlri).split(":", 2)[2]: tuple(r.nlri.labels)  # type: ignore[attr-defined]
            for r in vpn.exporter.exported("red")}


def test_covers_is_strict_and_bitwise() -> None:
    agg, inside, other = prefix_key("192.0.2.0/24")[1], prefix_key("192.0.2.77/32")[1], prefix_key("192.0.3.1/32")[1]
    assert covers(agg, inside) and not covers(agg, agg) and not covers(agg, other)
    assert covers(prefix_key("2001:db8::/32")[1], prefix_key("2001:db8:1::1/128")[1])
    assert not covers(prefix_key("192.0.2.0/25")[1], prefix_key("192.0.2.128/32")[1])


def test_r10_3_aggregate_exported_with_own_next_hop_and_the_vrf_label() -> None:
    vpn = _svc()
    vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    out = vpn.set_aggregates("red", [("192.0.2.0/24", False)])
    (agg,) = [r for r in out.announce if str(r.nlri).endswith("/24")]
    assert str(agg.next_hop) == ME
    assert agg.nlri.labels == (vpn.vrf_label("red"),)  # type: ignore[attr-defined]
    assert vpn.label_bindings()[vpn.vrf_label("red")].vrf == "red"  # type: ignore[index,union-attr]
    # the specific keeps its own (per-prefix) label: both are exported
    ex = _exported(vpn)
    assert set(ex) == {"192.0.2.0/24", "192.0.2.10/32"} and ex["192.0.2.10/32"] != ex["192.0.2.0/24"]
    assert vpn.vrf("red").to_json()["aggregates"] == [{"prefix": "192.0.2.0/24", "summary_only": False}]


def test_r10_3_summary_only_withholds_the_covered_routes_and_gives_them_back() -> None:
    vpn = _svc()
    vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    vpn.add_local_route("red", "198.51.100.10/32", endpoint="vm2")
    out = vpn.set_aggregates("red", [("192.0.2.0/24", True)])
    assert [str(r.nlri) for r in out.withdraw] == [f"{ME}:1:192.0.2.10/32"]
    assert set(_exported(vpn)) == {"192.0.2.0/24", "198.51.100.10/32"}
    # the covered route stays in the VRF (local forwarding), only its export is withheld
    assert vpn.vrf("red").routes("192.0.2.10/32")
    # a route attached later under the aggregate is withheld too
    vpn.add_local_route("red", "192.0.2.11/32", endpoint="vm3")
    assert "192.0.2.11/32" not in _exported(vpn)
    # summary_only off: the specifics come back; the aggregate list emptied: it goes
    out = vpn.set_aggregates("red", [("192.0.2.0/24", False)])
    assert {str(r.nlri).split(":", 2)[2] for r in out.announce} == {"192.0.2.10/32", "192.0.2.11/32"}
    out = vpn.set_aggregates("red", [])
    assert [str(r.nlri).split(":", 2)[2] for r in out.withdraw] == ["192.0.2.0/24"]
    assert vpn.vrf("red").aggregates == {}


def test_r10_3_bad_aggregates_are_refused_by_name_and_change_nothing() -> None:
    vpn = _svc()
    vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    before = _exported(vpn)
    for bad, msg in (
        ([("192.0.2.1/24", False)], "aggregates prefix: '192.0.2.1/24' is not an IP prefix"),
        ([("192.0.2.0/24", False), ("192.0.2.0/24", True)], "aggregates: 192.0.2.0/24 is given twice"),
        ([("192.0.2.10/32", False)], "aggregates: 192.0.2.10/32 is already a host route"),
        ([("192.0.2.0/24", "yes")], "aggregates summary_only: 'yes' is not true or false"),
    ):
        with pytest.raises(InvalidValue, match=msg.replace(".", r"\.").replace("(", r"\(")):
            vpn.set_aggregates("red", bad)  # type: ignore[arg-type]
        assert _exported(vpn) == before and vpn.vrf("red").aggregates == {}


def test_r10_3_resolver_flags_remote_routes_strictly_inside_an_aggregate() -> None:
    vpn = _svc()
    res = FibResolver(ip_address(ME))
    inside = remote("65000:9:192.0.2.30/32", "198.18.0.3", "65000:1", label=3030)
    same = remote("65000:8:192.0.2.0/24", "198.18.0.2", "65000:1", label=2020)
    outside = remote("65000:9:198.51.100.30/32", "198.18.0.3", "65000:1", label=3031)
    res.vrf_changes(vpn.apply(VpnPathsChanged(adds=[inside, same, outside])).table_changes, vpn)
    assert not any(r.transit for r in res.routes.values())
    batch = res.vrf_changes(vpn.set_aggregates("red", [("192.0.2.0/24", False)]).table_changes, vpn)
    assert batch is not None
    flagged = {str(r.prefix) for r in batch.add_routes if r.transit}
    assert flagged == {"192.0.2.30/32"}  # not the other vPE's equal aggregate, not outside
    assert LabelEntry(vpn.vrf_label("red"), "vrf", "red") in batch.add_labels  # type: ignore[arg-type]
    # a specific learnt after the aggregate is flagged at once; the aggregate gone: unflagged
    later = remote("65000:9:192.0.2.31/32", "198.18.0.3", "65000:1", label=3032)
    batch = res.vrf_changes(vpn.apply(VpnPathsChanged(adds=[later])).table_changes, vpn)
    assert batch is not None and [r.transit for r in batch.add_routes] == [True]
    batch = res.vrf_changes(vpn.set_aggregates("red", []).table_changes, vpn)
    assert batch is not None and not any(r.transit for r in res.routes.values())
    # (the other vPE's equal aggregate, shadowed by ours, is back in the FIB too)
    assert {str(r.prefix) for r in batch.add_routes} == {"192.0.2.30/32", "192.0.2.31/32", "192.0.2.0/24"}


def test_r10_3_pipeline_retunnels_aggregate_traffic_once_never_back() -> None:
    fwd = forwarder()  # VRF label 1000 of red; .30/32 via 198.18.0.3 label 3000 (GRE)
    inner = udp4("198.51.100.7", "192.0.2.30", ttl=9)
    # without the flag: transit is refused, as for any route (R8.1)
    assert fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.2", "mpls-in-udp") == []
    assert fwd.drops["no-local-route"] == 1
    fwd.apply(Batch(add_routes=(
        Route("red", "192.0.2.30/32", (NextHop.remote("198.18.0.3", 3000, "mpls-in-gre"),), transit=True),
    )))
    out = fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.2", "mpls-in-udp")
    assert len(out) == 1 and out[0][0].endpoint == "198.18.0.3"  # type: ignore[union-attr]
    assert fwd.counters()["vrfs"]["red"]["redirected"] == 1
    # from the specific's own vPE: never sent back (a loop)
    assert fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.3", "mpls-in-udp") == []
    assert fwd.drops["redirect-loop"] == 1
    # local specifics under the aggregate are delivered straight to the port
    out = fwd.from_underlay(mpls_udp_payload(1000, udp4("198.51.100.7", "192.0.2.10")), "198.18.0.2")
    assert len(out) == 1 and out[0][0].name == "vm1"  # type: ignore[union-attr]
    assert Route.from_json(Route("red", "192.0.2.0/25", (NextHop.local("vm1"),), transit=True).to_json()).transit


# -- the API and the store -----------------------------------------------------------------


async def test_r10_3_aggregates_through_the_api_persist_and_restore(tmp_path: object) -> None:
    import httpx
    from test_api import CONFIG

    from vpe.agent.config import parse_config
    from vpe.agent.engine import Engine
    from vpe.agent.store import Store
    from vpe.api.app import create_app

    async def run(check: object) -> None:
        e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))  # type: ignore[arg-type]
        await e.start()
        try:
            transport = httpx.ASGITransport(app=create_app(e))
            async with httpx.AsyncClient(transport=transport, base_url="http://vpe") as c:
                await check(c, e)  # type: ignore[operator]
        finally:
            await e.stop()
            assert e.store is not None
            e.store.close()

    async def create(c: httpx.AsyncClient, e: Engine) -> None:
        r = await c.post("/v1/vpns", json={"name": "blue", "route_targets": ["65000:2"],
                                           "aggregates": [{"prefix": "192.0.2.0/24", "summary_only": True}]})
        assert r.status_code == 201, r.text
        assert r.json()["aggregates"] == [{"prefix": "192.0.2.0/24", "summary_only": True}]
        assert e.vpn.vrf_label("blue") in {r.nlri.labels[0] for r in e.vpn.exporter.exported("blue")}  # type: ignore[attr-defined]
        for body, where in (({"aggregates": [{"prefix": "192.0.2.1/24"}]}, "prefix"),
                            ({"aggregates": [{"prefix": "192.0.2.0/24", "summary_only": "maybe"}]}, "summary_only"),
                            ({"aggregates": [{"prefix": "192.0.2.0/24", "colour": 1}]}, "colour")):
            r = await c.patch("/v1/vpns/blue", json=body)
            assert r.status_code == 422 and where in r.text, r.text
        r = await c.patch("/v1/vpns/blue", json={"aggregates": [{"prefix": "192.0.2.0/25"}, {"prefix": "192.0.2.0/25"}]})
        assert r.status_code == 422 and r.json()["detail"] == "aggregates: 192.0.2.0/25 is given twice", r.text
        r = await c.patch("/v1/vpns/blue", json={"aggregates": [{"prefix": "2001:db8:1::/48"}]})
        assert r.status_code == 200 and r.json()["aggregates"] == [{"prefix": "2001:db8:1::/48", "summary_only": False}]
        r = await c.patch("/v1/vpns/cfg", json={"aggregates": []})
        assert r.status_code == 409

    async def restored(c: httpx.AsyncClient, e: Engine) -> None:
        r = await c.get("/v1/vpns/blue")
        assert r.json()["aggregates"] == [{"prefix": "2001:db8:1::/48", "summary_only": False}], r.text
        assert [str(x.nlri).split(":", 2)[2] for x in e.vpn.exporter.exported("blue")] == ["2001:db8:1::/48"]

    await run(create)
    await run(restored)


def test_r10_3_config_aggregates() -> None:
    from vpe.agent.config import ConfigError, parse_config

    base = '[bgp]\nlocal_as = 65000\nrouter_id = "198.18.0.1"\n[[vrfs]]\nname = "red"\nroute_targets = ["65000:1"]\n'
    cfg = parse_config(base + '[[vrfs.aggregates]]\nprefix = "192.0.2.0/24"\nsummary_only = true\n')
    assert cfg.vrfs[0].aggregates[0].summary_only is True
    with pytest.raises(ConfigError, match="192.0.2.1/24"):
        parse_config(base + '[[vrfs.aggregates]]\nprefix = "192.0.2.1/24"\n')
