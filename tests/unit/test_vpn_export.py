"""Export of local routes (R4.x, R10.3): RD, export RTs, labels per mode, encapsulation,
next hop; withdrawals and label release; same-host extranet through the importer."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vpe.bgp.wire.attributes import Encapsulation, ExtendedCommunities, LocalPref
from vpe.bgp.wire.constants import VPNV4, VPNV6, AttrCode
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.bgp.wire.update import pack_announcements
from vpe.vpn import (
    Endpoint,
    EndpointLabel,
    PrefixLabel,
    RouteKind,
    RouteSource,
    VpnService,
    VrfLabel,
    parse_route_targets,
)


def svc(**kw: object) -> VpnService:
    return VpnService("192.0.2.1", next_hop="198.18.0.1", encapsulations=("mpls-in-udp", "mpls-in-gre"), **kw)  # type: ignore[arg-type]


def test_host_route_exported_with_rd_rts_label_encap_next_hop() -> None:
    s = svc()
    s.add_vrf("red", rd="65000:7", route_targets=["65000:1"], export_rts=["65000:99"])
    out = s.add_local_route("red", "10.0.0.5/32", endpoint="vm1-eth0")
    (ann,) = out.announce
    assert ann.family == VPNV4
    assert isinstance(ann.nlri, VPNv4Prefix)
    assert str(ann.nlri) == "65000:7:10.0.0.5/32"
    assert ann.nlri.labels == (16,)
    assert ann.next_hop == IPv4Address("198.18.0.1")
    ec = ann.attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    assert isinstance(ec, ExtendedCommunities)
    assert set(ec.route_targets()) == parse_route_targets(["65000:1", "65000:99"])
    assert [e.tunnel_type for e in ec.of_type(Encapsulation)] == [13, 11]  # type: ignore[type-var]
    assert ann.attributes.get(AttrCode.LOCAL_PREF) == LocalPref(100)
    # the local entry carries the label the dataplane binds
    (local,) = s.vrf("red").routes("10.0.0.5/32")
    assert local.source is RouteSource.LOCAL and local.kind is RouteKind.HOST
    assert local.labels == (16,) and local.origin == Endpoint("vm1-eth0") and local.next_hop is None
    assert [c.vrf for c in out.table_changes] == ["red"]
    # ready for the speaker: it packs into UPDATEs
    for fam, a, nh, nlris in out.announce_groups():
        assert pack_announcements(fam, a, nh, nlris, DEFAULT_CONTEXT)


def test_auto_rd_and_ipv6() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    (ann,) = s.add_local_route("red", "2001:db8:1::5/128").announce
    assert ann.family == VPNV6
    assert str(ann.nlri) == "192.0.2.1:1:2001:db8:1::5/128"


def test_label_modes() -> None:
    s = svc()
    s.add_vrf("v", route_targets=["65000:1"], label_mode="per-vrf")
    s.add_vrf("p", route_targets=["65000:2"], label_mode="per-prefix")
    s.add_vrf("e", route_targets=["65000:3"], label_mode="per-endpoint")

    def lab(vrf: str, prefix: str, **kw: object) -> int:
        (a,) = s.add_local_route(vrf, prefix, **kw).announce  # type: ignore[arg-type]
        return a.nlri.labels[0]  # type: ignore[attr-defined]

    v = {lab("v", "10.0.0.1/32", endpoint="a"), lab("v", "10.0.0.2/32", endpoint="b")}
    assert len(v) == 1
    p = {lab("p", "10.0.0.1/32", endpoint="a"), lab("p", "10.0.0.2/32", endpoint="a")}
    assert len(p) == 2
    e1 = lab("e", "10.0.0.1/32", endpoint="a")
    e2 = lab("e", "2001:db8::1/128", endpoint="a")
    e3 = lab("e", "10.0.0.2/32", endpoint="b")
    assert e1 == e2 != e3
    # aggregates always get the VRF's IP-lookup label (R10.3)
    agg_p = lab("p", "10.0.0.0/16", kind="aggregate")
    agg_e = lab("e", "10.0.0.0/16", kind="aggregate")
    assert s.label_bindings()[agg_p] == VrfLabel("p")
    assert s.label_bindings()[agg_e] == VrfLabel("e")
    assert s.label_bindings()[e1] == EndpointLabel("e", "a")
    assert s.label_bindings()[min(p)] == PrefixLabel("p", "10.0.0.1/32")
    assert agg_p not in p


def test_no_export_rts_means_no_export_and_no_label() -> None:
    s = svc()
    s.add_vrf("red", import_rts=["65000:1"])
    out = s.add_local_route("red", "10.0.0.5/32")
    assert out.announce == []
    assert s.vrf("red").routes("10.0.0.5/32")[0].labels == ()
    out = s.set_export_rts("red", ["65000:1"])
    assert len(out.announce) == 1


def test_remove_local_route_withdraws_and_releases_label_after_last_user() -> None:
    s = svc(label_hold_down=10)
    s.add_vrf("red", route_targets=["65000:1"])
    a = s.add_local_route("red", "10.0.0.1/32").announce[0]
    s.add_local_route("red", "10.0.0.2/32")
    out = s.remove_local_route("red", "10.0.0.1/32")
    assert out.withdraw == [a]
    assert out.released_labels == []  # per-VRF label still used by 10.0.0.2
    out = s.remove_local_route("red", "10.0.0.2/32")
    assert out.released_labels == [16]
    assert s.labels.state_of(16) == "pending"
    s.labels_withdrawn(out.released_labels, now=100)
    assert s.labels.state_of(16) == "hold-down"


def test_rd_change_withdraws_old_and_announces_new() -> None:
    s = svc()
    s.add_vrf("red", rd="65000:1", route_targets=["65000:1"])
    old = s.add_local_route("red", "10.0.0.1/32").announce[0]
    out = s.set_rd("red", "65000:2")
    assert out.withdraw == [old]
    assert [str(a.nlri) for a in out.announce] == ["65000:2:10.0.0.1/32"]


def test_export_rt_change_reannounces_same_nlri() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    s.add_local_route("red", "10.0.0.1/32")
    out = s.set_export_rts("red", ["65000:5"])
    assert out.withdraw == []
    (a,) = out.announce
    ec = a.attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    assert set(ec.route_targets()) == parse_route_targets(["65000:5"])


def test_label_mode_change_moves_labels_and_releases_old() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    s.add_local_route("red", "10.0.0.1/32")
    out = s.set_label_mode("red", "per-prefix")
    assert [a.nlri.labels for a in out.announce] == [(17,)]  # type: ignore[attr-defined]
    assert out.released_labels == [16]
    assert s.vrf("red").routes("10.0.0.1/32")[0].labels == (17,)


def test_same_host_extranet_goes_through_import_but_not_back_into_origin() -> None:
    s = svc()
    s.add_vrf("shared", rd="65000:100", export_rts=["65000:100"], import_rts=["65000:1"])
    s.add_vrf("tenant", rd="65000:1", export_rts=["65000:1"], import_rts=["65000:100"])
    out = s.add_local_route("shared", "203.0.113.10/32", endpoint="dns")
    assert {c.vrf for c in out.table_changes} == {"shared", "tenant"}
    (imp,) = s.vrf("tenant").routes("203.0.113.10/32")
    assert imp.source is RouteSource.IMPORTED
    assert imp.next_hop == IPv4Address("198.18.0.1")  # our own underlay: a local label lookup
    assert str(imp.origin) == "65000:100:203.0.113.10/32"
    (own,) = s.vrf("shared").routes("203.0.113.10/32")
    assert own.source is RouteSource.LOCAL
    s.add_local_route("tenant", "10.0.0.5/32")
    assert [r.source for r in s.vrf("shared").routes("10.0.0.5/32")] == [RouteSource.IMPORTED]
    out = s.remove_local_route("shared", "203.0.113.10/32")
    assert s.vrf("tenant").routes("203.0.113.10/32") == ()


def test_local_route_beats_imported_same_prefix() -> None:
    from test_vpn_import import remote  # type: ignore[import-not-found]

    from vpe.vpn import VpnPathsChanged

    s = svc()
    s.add_vrf("red", import_rts=["65000:1"], multipath=4)
    s.apply(VpnPathsChanged(adds=[remote("65001:1:10.0.0.0/24", "198.51.100.1", "65000:1")]))
    s.add_local_route("red", "10.0.0.0/24", kind="subnet")
    active = s.vrf("red").active("10.0.0.0/24")
    assert [r.source for r in active] == [RouteSource.LOCAL]
    assert len(s.vrf("red").routes("10.0.0.0/24")) == 2


def test_remove_vrf_withdraws_everything() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    s.add_vrf("blue", import_rts=["65000:1"])
    s.add_local_route("red", "10.0.0.1/32")
    out = s.remove_vrf("red")
    assert [str(w.nlri) for w in out.withdraw] == ["192.0.2.1:1:10.0.0.1/32"]
    assert out.released_labels == [16]
    assert {(c.vrf, c.routes) for c in out.table_changes} == {("red", ()), ("blue", ())}
    assert "red" not in s.vrfs
    s.add_vrf("red2", route_targets=["65000:1"])
    assert str(s.vrf("red2").rd) == "192.0.2.1:1"


def test_restart_keeps_rds_and_labels() -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"], label_mode="per-prefix")
    s.add_vrf("blue", route_targets=["65000:2"])
    before = {str(a.nlri): a.nlri.labels for a in s.add_local_route("blue", "10.0.0.9/32").announce}  # type: ignore[attr-defined]
    before.update({str(a.nlri): a.nlri.labels for a in s.add_local_route("red", "10.0.0.1/32").announce})  # type: ignore[attr-defined]
    state = s.dump_state(now=0)
    t = svc(state=state)
    t.add_vrf("blue", route_targets=["65000:2"])  # other order than before
    t.add_vrf("red", route_targets=["65000:1"], label_mode="per-prefix")
    after = {str(a.nlri): a.nlri.labels for a in t.add_local_route("red", "10.0.0.1/32").announce}  # type: ignore[attr-defined]
    after.update({str(a.nlri): a.nlri.labels for a in t.add_local_route("blue", "10.0.0.9/32").announce})  # type: ignore[attr-defined]
    assert after == before
    assert t.release_unclaimed_labels() == []


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"prefix": "10.0.0.0/24"}, "prefix: host route"),
        ({"prefix": "10.0.0.1/24"}, "prefix: '10.0.0.1/24' is not an IP prefix"),
        ({"prefix": "10.0.0.0/24", "kind": "static"}, "next-hop: static route"),
        ({"prefix": "10.0.0.0/24", "kind": "static", "next_hop": "2001:db8::1"}, "next-hop: 2001:db8::1 is not an IPv4"),
        ({"prefix": "10.0.0.0/24", "kind": "bogus"}, "kind: 'bogus' is not a local route kind"),
        ({"prefix": "10.0.0.0/24", "kind": "vpn"}, "kind: "),
        ({"prefix": "10.0.0.0/24", "kind": "subnet", "next_hop": "x"}, "next-hop: 'x' is not an IP address"),
    ],
)
def test_local_route_errors(kw: dict[str, object], msg: str) -> None:
    s = svc()
    s.add_vrf("red", route_targets=["65000:1"])
    prefix = kw.pop("prefix")
    with pytest.raises(ValueError, match=msg.replace(".", r"\.").replace("(", r"\(")):
        s.add_local_route("red", prefix, **kw)  # type: ignore[arg-type]
