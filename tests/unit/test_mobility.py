"""Mobility in the control plane (R9.1-R9.3, R13.3; docs/mobility.md): the move as
prepare / activate / release over the attachment state machine and a real
VpnService, the sequence number on the routes (MAC Mobility community), and how
claims to one address are ordered in a VRF."""

from __future__ import annotations

import logging
from ipaddress import ip_address

import pytest

from vpe.agent.fib_resolver import FibResolver
from vpe.bgp.wire.attributes import (
    AsPath,
    ExtendedCommunities,
    LocalPref,
    Origin,
    OriginType,
    PathAttributes,
)
from vpe.bgp.wire.attributes.extended_communities import MacMobility
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.vpn import RouteSource, VpnPath, VpnPathsChanged, VpnService
from vpe.vpn.attachments import (
    Attachment,
    AttachmentState,
    AttachmentTable,
    PortDown,
    PortUp,
    StaleClaim,
)
from vpe.vpn.mobility import sequence_of

VM = "192.0.2.10"


def remote(nh: str, seq: int = 0, rd: str = "65000:9", label: int = 3000, ip: str = VM) -> VpnPath:
    """The VM's host route as vPE ``nh`` advertises it (with mobility sequence ``seq``)."""
    extra = [f"mac-mobility:{seq}"] if seq else []
    attrs = PathAttributes((Origin(OriginType.IGP), AsPath(), LocalPref(100),
                            ExtendedCommunities.from_strs(["target:65000:1", "encap:mpls-in-udp", *extra])))
    nlri = VPNv4Prefix.from_str(f"{rd}:{ip}/32", labels=[label])
    return VpnPath(VPNV4, nlri, attrs, ip_address(nh), (label,))


def host(rid: str = "198.18.0.1") -> AttachmentTable:
    vpn = VpnService(rid)
    vpn.add_vrf("red", route_targets=["65000:1"], label_mode="per-endpoint")
    return AttachmentTable(vpn)


def port(state: AttachmentState = AttachmentState.ACTIVE, seq: int = 0, name: str = "vm1") -> Attachment:
    return Attachment(name, f"tap-{name}", "red", "02:00:00:00:00:01", (f"{VM}/24",), state=state, sequence=seq)


def best(t: AttachmentTable) -> tuple[RouteSource, str | None]:
    r = t.vpn.vrf("red").active(f"{VM}/32")[0]
    return r.source, str(r.next_hop) if r.next_hop is not None else r.endpoint


def seen(t: AttachmentTable, *paths: VpnPath, gone: tuple[VpnPath, ...] = ()) -> None:
    t.vpn.apply(VpnPathsChanged(adds=list(paths), removes=list(gone)))


def test_r9_3_prepare_takes_a_higher_sequence_and_advertises_it_without_taking_the_port() -> None:
    dst = host("198.18.0.2")
    seen(dst, remote("198.18.0.1", seq=0))  # the VM runs at the source, plain route
    a = AttachmentTable.sequence_for(dst, port(AttachmentState.STANDBY))
    assert a.sequence == 1
    out = dst.attach(a)
    assert out.fib == []  # no port yet: the VM is not here
    (r,) = out.vpn.announce
    assert sequence_of(r.attributes) == 1
    assert MacMobility(1) in r.attributes.get(16).values  # type: ignore[union-attr]
    # this host forwards to where the VM still runs: the source's route wins here
    assert best(dst) == (RouteSource.IMPORTED, "198.18.0.1")


def test_r9_3_a_given_sequence_must_be_higher_than_the_claims_seen() -> None:
    dst = host("198.18.0.2")
    seen(dst, remote("198.18.0.1", seq=4))
    with pytest.raises(StaleClaim, match=r"sequence: 4 is not higher than 4, the mobility sequence vPE "
                                         r"198\.18\.0\.1 claims 192\.0\.2\.10 with in VPN 'red'"):
        dst.sequence_for(port(AttachmentState.STANDBY, seq=4))
    assert dst.sequence_for(port(AttachmentState.STANDBY, seq=9)).sequence == 9
    assert len(dst) == 0


def test_r9_3_activate_keeps_label_and_sequence_and_takes_the_port() -> None:
    dst = host("198.18.0.2")
    seen(dst, remote("198.18.0.1"))
    prepared = dst.attach(dst.sequence_for(port(AttachmentState.STANDBY)))
    (before,) = prepared.vpn.announce
    out = dst.activate("vm1")
    assert out.fib == [PortUp(out.attachment)] and out.attachment.state is AttachmentState.ACTIVE
    assert out.vpn.announce == [] and out.vpn.withdraw == []  # nothing new on the wire
    assert best(dst) == (RouteSource.LOCAL, "vm1")
    assert before.nlri.labels == dst.vpn.exporter.exported("red")[0].nlri.labels  # type: ignore[attr-defined]


def test_r9_3_release_withdraws_keeps_the_label_and_forwards_to_the_new_host() -> None:
    src = host("198.18.0.1")
    src.attach(port())
    label = src.vpn.exporter.exported("red")[0].nlri.labels[0]  # type: ignore[attr-defined]
    seen(src, remote("198.18.0.2", seq=1))
    assert best(src) == (RouteSource.LOCAL, "vm1")  # the VM still runs here: delivered here
    out = src.release("vm1")
    assert out.attachment.state is AttachmentState.REDIRECTING
    assert out.fib == [PortDown("vm1")]
    assert [str(w.nlri) for w in out.vpn.withdraw] == [f"198.18.0.1:1:{VM}/32"]
    assert out.vpn.released_labels == []  # kept: packets still sent with it are repaired
    assert label in src.vpn.label_bindings()
    assert best(src) == (RouteSource.IMPORTED, "198.18.0.2")
    # the FIB: the label is an IP lookup in the VRF (no port), the VM's route a tunnel
    fib = FibResolver(ip_address("198.18.0.1"))
    fib.vrf_changes(out.vpn.table_changes, src.vpn)
    assert fib.labels[label].kind == "vrf"
    (route,) = [r for k, r in fib.routes.items() if str(k.prefix) == f"{VM}/32"]
    assert [str(h.endpoint) for h in route.next_hops] == ["198.18.0.2"]
    # forgotten at last: the label goes into its hold-down like any other
    gone = src.detach("vm1")
    assert gone.vpn.released_labels == [label] and gone.vpn.withdraw == []


def test_r9_3_remotes_prefer_the_higher_sequence_and_a_stale_claim_never_wins_back() -> None:
    c = host("198.18.0.3")
    old, new = remote("198.18.0.1", seq=0, rd="65000:1"), remote("198.18.0.2", seq=1, rd="65000:2")
    seen(c, old)
    assert best(c) == (RouteSource.IMPORTED, "198.18.0.1")
    seen(c, new)
    assert best(c) == (RouteSource.IMPORTED, "198.18.0.2")
    # the old host re-advertises (a restart, a late UPDATE): still the higher number wins
    seen(c, remote("198.18.0.1", seq=0, rd="65000:1", label=3001))
    assert best(c) == (RouteSource.IMPORTED, "198.18.0.2")
    # even with a better LOCAL_PREF-free rank otherwise: sequence comes first
    assert len(c.vpn.vrf("red").active(f"{VM}/32")) == 1


def test_r13_3_equal_sequence_lowest_address_wins_only_one_path_and_it_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    c = host("198.18.0.9")
    c.vpn.set_multipath("red", 4)
    with caplog.at_level(logging.WARNING, logger="vpe.mobility"):
        seen(c, remote("198.18.0.7", seq=3, rd="65000:7"), remote("198.18.0.5", seq=3, rd="65000:5"))
    assert [str(r.next_hop) for r in c.vpn.vrf("red").active(f"{VM}/32")] == ["198.18.0.5"]
    assert "both claim it with mobility sequence 3; 198.18.0.5 (lower address) wins" in caplog.text
    # plain routes (no sequence: anycast) stay ECMP
    seen(c, remote("198.18.0.7", ip="192.0.2.77", rd="65000:7"), remote("198.18.0.5", ip="192.0.2.77", rd="65000:5"))
    assert len(c.vpn.vrf("red").active("192.0.2.77/32")) == 2


def test_r13_3_the_loser_of_an_equal_claim_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    a = host("198.18.0.8")
    a.attach(a.sequence_for(port(AttachmentState.ACTIVE, seq=2)))
    with caplog.at_level(logging.WARNING, logger="vpe.mobility"):
        seen(a, remote("198.18.0.4", seq=2))
    assert "198.18.0.4 claims it with the same mobility sequence 2" in caplog.text
    assert "this vPE lost the claim" in caplog.text


def test_r13_3_an_active_attach_of_a_moving_vms_address_is_refused() -> None:
    c = host("198.18.0.3")
    seen(c, remote("198.18.0.2", seq=1))
    with pytest.raises(StaleClaim, match=r"ips: 192\.0\.2\.10 is held by vPE 198\.18\.0\.2 with mobility "
                                         r"sequence 1 \(a moving VM\) in VPN 'red'"):
        c.sequence_for(port())
    assert len(c) == 0 and c.vpn.exporter.exported("red") == []
    # a plain address elsewhere (sequence 0: anycast) may still be attached here
    seen(c, remote("198.18.0.2", seq=0, ip="192.0.2.11"))
    c.attach(c.sequence_for(Attachment("vm2", "tap2", "red", "02:00:00:00:00:02", ("192.0.2.11/24",))))


def test_r9_3_whole_move_between_two_vpe_services() -> None:
    """Source and destination side by side, routes passed by hand as BGP would."""
    src, dst = host("198.18.0.1"), host("198.18.0.2")

    def pass_routes(frm: AttachmentTable, to: AttachmentTable, out: object) -> None:
        from vpe.vpn.exporter import vpn_path
        to.vpn.apply(VpnPathsChanged(adds=[vpn_path(r) for r in out.vpn.announce],  # type: ignore[attr-defined]
                                     removes=[vpn_path(r) for r in out.vpn.withdraw]))  # type: ignore[attr-defined]

    pass_routes(src, dst, src.attach(port()))
    prep = dst.attach(dst.sequence_for(port(AttachmentState.STANDBY)))
    pass_routes(dst, src, prep)
    assert prep.attachment.sequence == 1
    assert best(src) == (RouteSource.LOCAL, "vm1") and best(dst) == (RouteSource.IMPORTED, "198.18.0.1")
    dst.activate("vm1")
    assert best(dst) == (RouteSource.LOCAL, "vm1")
    pass_routes(src, dst, src.release("vm1"))
    assert best(src) == (RouteSource.IMPORTED, "198.18.0.2")
    assert [str(r.next_hop) for r in dst.vpn.vrf("red").routes(f"{VM}/32")] == ["None"]
    # a second move back: the number keeps growing
    back = src.sequence_for(Attachment("vm1b", "tap-b", "red", "02:00:00:00:00:01", (f"{VM}/24",),
                                       state=AttachmentState.STANDBY))
    assert back.sequence == 2


def test_r9_3_released_route_is_marked_moved_for_the_forwarder() -> None:
    src = host("198.18.0.1")
    src.attach(port())
    seen(src, remote("198.18.0.2", seq=1))
    out = src.release("vm1")
    fib = FibResolver(ip_address("198.18.0.1"))
    fib.vrf_changes(out.vpn.table_changes, src.vpn)
    (route,) = [r for k, r in fib.routes.items() if str(k.prefix) == f"{VM}/32"]
    assert route.moved and route.to_json()["moved"] is True


def test_r9_3_forwarder_retunnels_for_a_moved_vm_but_never_transit_or_back() -> None:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_dp_helpers import forwarder, mpls_udp_payload, udp4

    from vpe.dataplane.driver import Batch, NextHop, Route

    fwd = forwarder()
    fwd.apply(Batch(add_routes=(
        Route("red", "192.0.2.30/32", (NextHop.remote("198.18.0.3", 7000, "mpls-in-udp"),), moved=True),
    )))
    inner = udp4("192.0.2.20", "192.0.2.30", ttl=9)
    out = fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.2", "mpls-in-udp")
    assert len(out) == 1 and out[0][0].endpoint == "198.18.0.3"  # type: ignore[union-attr]
    payload = bytes(out[0][1])
    assert (int.from_bytes(payload[8:12], "big") >> 12) == 7000 and payload[12 + 8] == 8  # label, TTL - 1
    assert fwd.counters()["vrfs"]["red"]["redirected"] == 1
    # what came from the new host itself is not sent back (a loop)
    assert fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.3", "mpls-in-udp") == []
    assert fwd.drops["redirect-loop"] == 1


def test_r9_3_a_prepared_destination_is_a_trusted_tunnel_source_while_it_claims() -> None:
    """The VM's current host may have no route toward the vPE preparing the move, yet
    that vPE re-tunnels to it what arrives early (its standby redirect): while its
    path carries a sequence number (a claim) it is a trusted tunnel source (a Peer
    of the forwarder, R13.2), in the full state too; the claim gone, it is not."""
    fib = FibResolver(ip_address("198.18.0.1"))
    b = fib.set_claims("k1", [ip_address("198.18.0.2"), ip_address("198.18.0.1")])  # our own: ignored
    assert b is not None and [str(p.endpoint) for p in b.add_peers] == ["198.18.0.2"]
    assert fib.set_claims("k2", [ip_address("198.18.0.2")]) is None  # already trusted
    assert [str(p.endpoint) for p in fib.state().peers] == ["198.18.0.2"]
    assert fib.set_claims("k1", []) is None  # k2 still claims through it
    b = fib.set_claims("k2", [])
    assert b is not None and [str(e) for e in b.remove_peers] == ["198.18.0.2"] and fib.state().peers == ()
    # an IPv4 vPE behind an IPv4-mapped IPv6 next hop (VPN-IPv6 over IPv4)
    b = fib.set_claims("k3", [ip_address("::ffff:198.18.0.3")])
    assert b is not None and [str(p.endpoint) for p in b.add_peers] == ["198.18.0.3"]
