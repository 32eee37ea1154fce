"""Label stacks deeper than one in the userspace forwarder (Inter-AS option C, R10.2):
push two labels toward a remote PE behind an ASBR, pop our own loopback's label on the way
in, swap a transit labeled-unicast label and keep the rest of the stack."""

from __future__ import annotations

import struct

import pytest
from test_dp_helpers import VM1_MAC, eth, forwarder, ipv4_checksum_ok, udp4

from vpe.dataplane.driver import Batch, DriverError, LabelEntry, NextHop, Peer, Route
from vpe.dataplane.ebpf import maps as M
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.pipeline import ToPort, ToUnderlay

ASBR = "198.18.0.40"
TWO = NextHop.remote(ASBR, 600, "mpls-in-udp", outer=(7001,))


def stack(data: bytes, off: int, n: int) -> list[tuple[int, bool, int]]:
    return [(lab, bos, ttl) for lab, _tc, bos, ttl in (P.parse_mpls(data, off + 4 * i) for i in range(n))]


def test_next_hop_outer_labels_validate_and_round_trip() -> None:
    assert NextHop.from_json(TWO.to_json()) == TWO and TWO.to_json()["outer"] == [7001]
    assert "outer" not in NextHop.remote(ASBR, 600).to_json()  # one label: the old wire form
    with pytest.raises(DriverError, match="outer label: 1048576 is not an MPLS label"):
        NextHop.remote(ASBR, 600, outer=(1 << 20,))
    with pytest.raises(DriverError, match="3 outer labels, at most 2"):
        NextHop.remote(ASBR, 600, outer=(20, 21, 22))
    with pytest.raises(DriverError, match="only a remote next hop has outer labels"):
        NextHop(port="vm1", outer=(20,))
    assert LabelEntry.from_json(LabelEntry.pop(5000).to_json()) == LabelEntry(5000, "pop")


@pytest.mark.parametrize("encap", ["mpls-in-udp", "mpls-in-gre"])
def test_r10_2_push_two_labels_lu_outside_vpn_inside(encap: str) -> None:
    fwd = forwarder()
    nh = NextHop.remote(ASBR, 600, encap, outer=(7001,))  # type: ignore[arg-type]
    fwd.apply(Batch(add_routes=(Route("red", "203.0.113.128/25", (nh,)),)))
    inner = udp4("192.0.2.10", "203.0.113.200", ttl=20)
    (where, data), = fwd.from_port("vm1", eth(VM1_MAC, inner))
    assert isinstance(where, ToUnderlay) and where.endpoint == ASBR
    data = bytes(data)
    shim = 8 if encap == "mpls-in-udp" else 4
    if encap == "mpls-in-udp":
        assert struct.unpack_from("!H", data, 2)[0] == P.MPLS_UDP_PORT
        assert struct.unpack_from("!H", data, 4)[0] == len(data)
    assert stack(data, shim, 2) == [(7001, False, 19), (600, True, 19)]
    out_inner = data[shim + 8:]
    assert out_inner[8] == 19 and ipv4_checksum_ok(out_inner) and out_inner[12:] == inner[12:]


def test_r10_2_two_label_route_mtu_counts_both_labels() -> None:
    fwd = forwarder()
    fwd.apply(Batch(add_routes=(Route("red", "203.0.113.128/25", (TWO,)),)))
    adj = fwd._adj(TWO)
    assert adj.max_inner == 1500 - 20 - 8 - 8


def test_r10_2_pop_our_loopback_label_then_the_vpn_label_decides() -> None:
    fwd = forwarder()
    fwd.apply(Batch(add_labels=(LabelEntry.pop(5000),), add_peers=(Peer(ASBR),)))
    inner = udp4("203.0.113.200", "192.0.2.10", ttl=30)
    payload = P.mpls_entry(5000, False, 30) + P.mpls_entry(1000, True, 30) + inner
    (where, frame), = fwd.from_underlay(payload, ASBR)
    assert isinstance(where, ToPort) and where.name == "vm1"
    assert bytes(frame)[14 + 8] == 29 and bytes(frame)[14 + 12:] == inner[12:]


def test_r10_2_transit_swaps_the_top_label_and_keeps_the_stack() -> None:
    fwd = forwarder()
    fwd.apply(Batch(add_labels=(LabelEntry.swap(5001, NextHop.remote("198.18.0.7", 8000)),),
                    add_peers=(Peer(ASBR),)))
    inner = udp4("203.0.113.200", "192.0.2.99", ttl=30)
    payload = P.mpls_entry(5001, False, 30) + P.mpls_entry(600, True, 30) + inner
    (where, data), = fwd.from_underlay(payload, ASBR)
    assert isinstance(where, ToUnderlay) and where.endpoint == "198.18.0.7"
    data = bytes(data)
    assert stack(data, 8, 2) == [(8000, False, 29), (600, True, 30)]
    assert data[16:] == inner and struct.unpack_from("!H", data, 4)[0] == len(data)
    assert fwd.counters()["swapped"] == 1


def test_r10_2_deep_stack_errors_are_named_drops() -> None:
    fwd = forwarder()
    fwd.apply(Batch(add_labels=(LabelEntry.pop(5000),), add_peers=(Peer(ASBR),)))
    inner = udp4("203.0.113.200", "192.0.2.10")
    assert fwd.from_underlay(P.mpls_entry(5999, False, 30) + P.mpls_entry(1000, True, 30) + inner, ASBR) == []
    assert fwd.drops["unknown-label"] == 1
    assert fwd.from_underlay(P.mpls_entry(1000, False, 30) + P.mpls_entry(1000, True, 30) + inner, ASBR) == []
    assert fwd.drops["mpls-label-stack"] == 1  # a VRF label is not poppable
    assert fwd.from_underlay(P.mpls_entry(5000, False, 30), ASBR) == []
    assert fwd.drops["mpls-short"] == 1


def test_r10_2_ebpf_compiles_label_stacks_for_the_tc_program() -> None:
    """A next hop with outer labels is an ordinary tunnel next hop whose value carries them
    (the tc program pushes the stack); a pop label is its own kind; a swap label names its
    next hop (swapped in the kernel above other labels); max_inner counts every label."""
    st = forwarder().state()
    swap = LabelEntry.swap(5001, NextHop.remote("198.18.0.41", 700, "mpls-in-gre", outer=(7002, 7003)))
    st = type(st)(ports=st.ports, routes=(*st.routes, Route("red", "203.0.113.128/25", (TWO,))),
                  labels=(*st.labels, LabelEntry.pop(5000), swap), replication=st.replication,
                  peers=st.peers)  # fmt: skip
    t = M.compile_tables(st, M.Ids(), lambda p: {"vm1": 5, "vm2": 6}[p.name], 1500).tables
    nhs = {k: M.NH_VAL.unpack(v) for k, v in t["nhs"].items()}
    two = next(v for v in nhs.values() if v[2] >> 12 == 600)
    assert two[0] == M.NH_UDP4 and two[3] == 1500 - 20 - 8 - 8 and two[5:] == (1, 7001 << 12, 0)
    assert M.LABEL_VAL.unpack(t["labels"][M.U32.pack(5000)])[0] == M.LBL_POP
    kind, _vrf, _ifx, nid = M.LABEL_VAL.unpack(t["labels"][M.U32.pack(5001)])
    assert kind == M.LBL_SWAP
    assert nhs[M.U32.pack(nid)] == (M.NH_GRE4, 0, (700 << 12) | 0x100, 1500 - 20 - 4 - 12,
                                     bytes([198, 18, 0, 41]).ljust(16, b"\0"), 2, 7002 << 12, 7003 << 12)


# -- the FIB resolver: VPN next hops through labeled-unicast routes ------------------------------


def test_r10_2_resolver_sends_through_the_labeled_unicast_route_with_two_labels() -> None:
    from ipaddress import ip_address

    from test_agent_fib_resolver import _setup
    from test_vpn_import import remote

    from vpe.vpn import VpnPathsChanged

    vpn, res = _setup()
    pe = ip_address("198.51.100.1")
    out = vpn.apply(VpnPathsChanged(adds=[remote("65001:1:10.0.0.0/24", str(pe), "65000:1", label=1234)]))
    batch = res.vrf_changes(out.table_changes, vpn)
    assert batch is not None and batch.add_routes[0].next_hops == (NextHop.remote(pe, 1234),)
    # a labeled-unicast route for the PE's loopback: via the ASBR, LU label outside
    batch = res.set_transport(pe, ip_address(ASBR), 7001)
    assert batch is not None
    (route,) = batch.add_routes
    assert route.next_hops == (NextHop.remote(ASBR, 1234, outer=(7001,)),)
    assert res.set_transport(pe, ip_address(ASBR), 7001) is None  # nothing changed
    # implicit null: one label, still via the ASBR
    (route,) = res.set_transport(pe, ip_address(ASBR), 3).add_routes  # type: ignore[union-attr]
    assert route.next_hops == (NextHop.remote(ASBR, 1234),)
    # the labeled-unicast route gone: straight to the PE again
    (route,) = res.remove_transport(pe).add_routes  # type: ignore[union-attr]
    assert route.next_hops == (NextHop.remote(pe, 1234),)
    assert res.remove_transport(pe) is None
    # our own loopback's label: a pop entry
    assert res.set_pop(5000) == Batch(add_labels=(LabelEntry.pop(5000),))
    assert res.labels[5000] == LabelEntry.pop(5000)
