"""The ebpf driver's FIB compilation (pure: State -> map keys and values) and its registry entry."""

from __future__ import annotations

import ipaddress
import zlib

import pytest

from vpe.dataplane import registry
from vpe.dataplane.driver import LabelEntry, NextHop, Peer, Port, Route, State
from vpe.dataplane.ebpf import maps as M
from vpe.dataplane.ebpf.build import crc32_table
from vpe.dataplane.errors import PortUnavailable, ResourceExhausted

IFX = {"vp1": 7, "vp2": 8}


def ifindex_of(p: Port) -> int:
    if p.ifname not in IFX:
        raise PortUnavailable(f"port {p.name}: no interface {p.ifname!r}", port=p.name, ifname=p.ifname)
    return IFX[p.ifname]


def state() -> State:
    p1 = Port(
        "a", "vp1", "red", "02:00:00:00:00:01", ips=("192.0.2.10/24", "2001:db8:1::10/64"),
        gateway_ips=("192.0.2.1", "2001:db8:1::1"), allowed_pairs=(("192.0.2.128/25", "02:00:00:00:00:99"),),
    )  # fmt: skip
    p2 = Port("b", "vp2", "blue", "02:00:00:00:00:02", ips=("198.51.100.10/24",))
    remote = NextHop.remote("198.18.0.2", 1002)
    routes = (
        Route("red", "192.0.2.10/32", (NextHop.local("a"),)),
        Route("red", "192.0.2.20/32", (remote,)),
        Route("red", "203.0.113.0/24", (remote, NextHop.remote("198.18.0.3", 1003)), "per-prefix"),
        Route("red", "2001:db8:1::20/128", (remote,)),
    )
    return State(
        ports=(p1, p2),
        routes=routes,
        labels=(LabelEntry(1001, "vrf", "red"), LabelEntry(1005, "port", "a")),
        peers=(Peer("198.18.0.9"),),
    )


def test_compile_writes_the_c_layouts() -> None:
    ids = M.Ids()
    c = M.compile_tables(state(), ids, ifindex_of, 1500)
    t = c.tables
    red, blue = c.vrf_ids["red"], c.vrf_ids["blue"]
    assert red != blue
    assert t["ports"][M.U32.pack(7)] == M.PORT.pack(
        red, 0, bytes.fromhex("020000000001"), bytes.fromhex("02005e000001"), 1500
    )
    # own addresses are host entries with the port's MAC; pairs carry their own MAC
    own = M.SRC4_KEY.pack(64, 7, ipaddress.ip_address("192.0.2.10").packed)
    pair = M.SRC4_KEY.pack(32 + 25, 7, ipaddress.ip_address("192.0.2.128").packed)
    assert t["src4"][own][:6] == bytes.fromhex("020000000001")
    assert t["src4"][pair][:6] == bytes.fromhex("020000000099")
    assert M.addr_key(7, ipaddress.ip_address("192.0.2.1")) in t["gws"]
    assert M.addr_key(red, ipaddress.ip_address("192.0.2.255")) in t["bcasts"]
    # a remote next hop: kind, label entry word, the largest inner packet, endpoint
    rk = M.RT4_KEY.pack(64, red, ipaddress.ip_address("192.0.2.20").packed)
    nhg, phash, _rr, _ = M.RT_VAL.unpack(t["routes4"][rk])
    assert phash == zlib.crc32(bytes([192, 0, 2, 20, 32]))
    n, mode, nlocal, _ = M.NHG_VAL.unpack(t["nhgs"][M.U32.pack(nhg)])
    assert (n, mode, nlocal) == (1, 0, 0)
    (nh_id,) = M.U32.unpack(t["members"][M.MEMBER_KEY.pack(nhg, 0)])
    kind, _ifx, word, max_inner, dst, nout, *_ = M.NH_VAL.unpack(t["nhs"][M.U32.pack(nh_id)])
    assert (kind, word >> 12, word & 0x100, max_inner, nout) == (M.NH_UDP4, 1002, 0x100, 1500 - 32, 0)
    assert dst[:4] == bytes([198, 18, 0, 2])
    # per-prefix ECMP: the prefix hash crc32(network, length) is the flow hash
    # the program ranks the group's seeds with (vpe.dataplane.nhg)
    ek = M.RT4_KEY.pack(32 + 24, red, ipaddress.ip_address("203.0.113.0").packed)
    g2, phash2, _, _ = M.RT_VAL.unpack(t["routes4"][ek])
    assert phash2 == zlib.crc32(bytes([203, 0, 113, 0, 24]))
    assert M.NHG_VAL.unpack(t["nhgs"][M.U32.pack(g2)])[:2] == (2, 2)
    assert M.U32.pack(g2) in t["seeds"]
    # the ingress check knows both endpoints of that group
    assert M.addr_key(g2, ipaddress.ip_address("198.18.0.3")) in t["group_eps"]
    # labels: VRF and port; peers: configured and every route endpoint (R13.2)
    assert M.LABEL_VAL.unpack(t["labels"][M.U32.pack(1001)])[:2] == (M.LBL_VRF, red)
    assert M.LABEL_VAL.unpack(t["labels"][M.U32.pack(1005)])[:3] == (M.LBL_PORT, red, 7)
    peers = {ipaddress.ip_address(k[8:12]) for k in t["peers"]}
    assert peers == {ipaddress.ip_address(a) for a in ("198.18.0.9", "198.18.0.2", "198.18.0.3")}


def test_ids_are_stable_so_unchanged_entries_are_not_rewritten() -> None:
    ids = M.Ids()
    a = M.compile_tables(state(), ids, ifindex_of, 1500).tables
    s = state()
    smaller = State(ports=s.ports, routes=s.routes[:2] + s.routes[3:], labels=s.labels, peers=s.peers)
    b = M.compile_tables(smaller, ids, ifindex_of, 1500).tables
    changed = {n: [k for k, v in b[n].items() if a[n].get(k) != v] for n in M.FIB_MAPS}
    assert not any(changed.values()), changed
    assert len(b["routes4"]) == len(a["routes4"]) - 1


def test_refusals_are_typed_and_name_what_was_wrong() -> None:
    s = state()
    gone = State(ports=(Port("c", "vp9", "red", "02:00:00:00:00:03"),))
    with pytest.raises(PortUnavailable, match="vp9") as e:
        M.compile_tables(gone, M.Ids(), ifindex_of, 1500)
    assert e.value.port == "c"
    with pytest.raises(ResourceExhausted, match="ebpf map routes4: 3 entries needed, it holds 2") as r:
        M.compile_tables(s, M.Ids(), ifindex_of, 1500, {"routes4": 2})
    assert r.value.resource == "ebpf map routes4"


def test_crc_table_is_zlibs() -> None:
    table = [int(x, 16) for x in crc32_table().replace(",", " ").split()]
    crc = 0xFFFFFFFF
    for b in b"vpe flow key":
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    assert crc ^ 0xFFFFFFFF == zlib.crc32(b"vpe flow key")


def test_ebpf_is_a_registered_forwarding_driver() -> None:
    e = registry.get("ebpf")
    assert e.has_forwarder and e.factory == "vpe.dataplane.ebpf.driver:create_driver"
