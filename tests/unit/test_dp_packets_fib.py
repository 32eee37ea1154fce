"""Packet helpers (checksums, MPLS, GRE) and the LPM tables / flow hash."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.dataplane.nhg import rank2
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.fib import DictLpm, FibEntry, TrieLpm, flow_hash


def _ref_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_checksum_matches_rfc1071_reference(data: bytes) -> None:
    assert P.checksum(data) == _ref_checksum(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 255), st.integers(0, 255), st.binary(min_size=8, max_size=8))
def test_incremental_ttl_update_equals_recompute(ttl: int, proto: int, addrs: bytes) -> None:
    hdr = bytearray(P.build_ipv4_header(addrs[:4], addrs[4:], proto, 100, ttl=ttl))
    P.ipv4_ttl_decrement(hdr, 0)
    ref = bytearray(P.build_ipv4_header(addrs[:4], addrs[4:], proto, 100, ttl=ttl - 1))
    assert hdr[8] == ttl - 1
    # both are valid checksums of the same header (0x0000 and 0xffff are equivalent)
    assert P.finish_checksum(P.ones_sum(hdr)) == 0 and P.finish_checksum(P.ones_sum(ref)) == 0


def test_ipv4_header_accepted_by_dpkt() -> None:
    hdr = P.build_ipv4_header(bytes((198, 18, 0, 1)), bytes((198, 18, 0, 2)), 17, 8, df=True)
    ip = dpkt.ip.IP(hdr + b"\0" * 8)
    assert ip.sum == dpkt.ip.IP(bytes(ip)).sum and ip.df == 1 and ip.ttl == 64


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 20) - 1), st.booleans(), st.integers(0, 255), st.integers(0, 7))
def test_mpls_entry_round_trip(label: int, bos: bool, ttl: int, tc: int) -> None:
    assert P.parse_mpls(P.mpls_entry(label, bos, ttl, tc)) == (label, tc, bos, ttl)


def test_gre_header_with_optional_fields() -> None:
    assert P.parse_gre(P.GRE_MPLS_HEADER) == (0x8847, 4)
    assert P.parse_gre(b"\xb0\x00\x88\x47" + b"\0" * 12) == (0x8847, 16)  # C, K, S
    with pytest.raises(P.PacketError):
        P.parse_gre(b"\x00\x01\x88\x47")
    with pytest.raises(P.PacketError):
        P.parse_gre(b"\x80\x00\x88\x47")


def test_multicast_macs() -> None:
    assert P.ipv4_multicast_mac(bytes((239, 129, 2, 3))) == bytes.fromhex("01005e010203")
    assert P.ipv6_multicast_mac(ipaddress.IPv6Address("ff02::1:ff00:20").packed) == bytes.fromhex(
        "3333ff000020"
    )


def test_tunnel_overheads() -> None:
    assert 1500 - P.tunnel_overhead("mpls-in-udp", False) == 1468
    assert 1500 - P.tunnel_overhead("mpls-in-gre", False) == 1472
    assert 1500 - P.tunnel_overhead("mpls-in-udp", True) == 1448
    assert 1500 - P.tunnel_overhead("mpls-in-gre", True) == 1452


# ----------------------------------------------------------------------------- LPM

prefix4 = st.tuples(st.integers(0, (1 << 32) - 1), st.integers(0, 32))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(prefix4, min_size=1, max_size=40),
    st.lists(st.integers(0, (1 << 32) - 1), min_size=1, max_size=40),
)
def test_dict_lpm_and_pytricia_agree_with_brute_force(
    prefixes: list[tuple[int, int]], addrs: list[int]
) -> None:
    tables = [DictLpm[str](32), TrieLpm[str](32)]
    nets = {}
    for raw, plen in prefixes:
        net = ipaddress.IPv4Network((raw, plen), strict=False)
        nets[net] = str(net)
        for t in tables:
            t.insert(int(net.network_address), plen, str(net))
    # remove one to exercise the removal path
    victim = next(iter(nets))
    del nets[victim]
    for t in tables:
        assert t.remove(int(victim.network_address), victim.prefixlen)
        assert not t.remove(int(victim.network_address), victim.prefixlen)
        assert len(t) == len(nets)
    for a in addrs:
        addr = ipaddress.IPv4Address(a)
        best = max((n for n in nets if addr in n), key=lambda n: n.prefixlen, default=None)
        want = None if best is None else str(best)
        for t in tables:
            assert t.lookup(a) == want


def test_lpm_ipv6() -> None:
    for t in (DictLpm[str](128), TrieLpm[str](128)):
        for p in ("2001:db8::/32", "2001:db8:1::/64", "2001:db8:1::20/128", "::/0"):
            n = ipaddress.IPv6Network(p)
            t.insert(int(n.network_address), n.prefixlen, p)

        def look(s: str, t: DictLpm[str] | TrieLpm[str] = t) -> str | None:
            return t.lookup(int(ipaddress.IPv6Address(s)))

        assert look("2001:db8:1::20") == "2001:db8:1::20/128"
        assert look("2001:db8:1::21") == "2001:db8:1::/64"
        assert look("2001:db8:2::1") == "2001:db8::/32"
        assert look("fe80::1") == "::/0"
        assert t.exact(int(ipaddress.IPv6Address("2001:db8::")), 32) == "2001:db8::/32"


# ------------------------------------------------------------------------ hashing


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.sampled_from([6, 17, 132, 1]),
)
def test_r12_3_flow_hash_is_symmetric_ipv4(
    a: bytes, b: bytes, sp: int, dp: int, proto: int
) -> None:
    def pkt(src: bytes, dst: bytes, s: int, d: int) -> bytes:
        return P.build_ipv4_header(src, dst, proto, 8) + struct.pack("!HHHH", s, d, 8, 0)

    assert flow_hash(pkt(a, b, sp, dp)) == flow_hash(pkt(b, a, dp, sp))


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
def test_r12_3_flow_hash_is_symmetric_ipv6(a: bytes, b: bytes, sp: int, dp: int) -> None:
    def pkt(src: bytes, dst: bytes, s: int, d: int) -> bytes:
        return P.build_ipv6_header(src, dst, 17, 8) + struct.pack("!HHHH", s, d, 8, 0)

    assert flow_hash(pkt(a, b, sp, dp)) == flow_hash(pkt(b, a, dp, sp))


def test_flow_hash_fragments_ignore_ports() -> None:
    hdr = bytearray(P.build_ipv4_header(b"\xc0\0\2\1", b"\xc0\0\2\2", 17, 8))
    whole = flow_hash(bytes(hdr) + struct.pack("!HHHH", 1, 2, 8, 0))
    hdr[6] = 0x20  # MF
    assert flow_hash(bytes(hdr) + struct.pack("!HHHH", 1, 2, 8, 0)) == flow_hash(
        bytes(hdr) + struct.pack("!HHHH", 3, 4, 8, 0)
    )
    assert whole == flow_hash(
        bytes(hdr[:6]) + b"\0\0" + bytes(hdr[8:]) + struct.pack("!HHHH", 1, 2, 8, 0)
    )


class _Adj:
    is_local = False

    def __init__(self, ep: str) -> None:
        self.endpoint = ep


def test_fib_entry_modes() -> None:
    adjs = tuple(_Adj(str(i)) for i in range(3))
    pkt = P.build_ipv4_header(b"\1\1\1\1", b"\2\2\2\2", 17, 8) + b"\0" * 8
    rr = FibEntry(None, adjs, 1, 0)
    assert [rr.pick(pkt, 0)[0].endpoint for _ in range(4)] == ["0", "1", "2", "0"]
    pp = FibEntry(None, adjs, 2, 7)
    expect = adjs[rank2((0, 1, 2), 7)[0]].endpoint
    assert {pp.pick(pkt, 0)[0].endpoint for _ in range(5)} == {expect}
    pf = FibEntry(None, adjs, 0, 0)
    adj, fh = pf.pick(pkt, 0)
    assert fh == flow_hash(pkt) and adj is adjs[rank2((0, 1, 2), fh)[0]]
    assert pf.pick_local(pkt, 0) is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(prefix4, min_size=1, max_size=60),
    st.lists(st.integers(0, (1 << 32) - 1), min_size=1, max_size=20),
)
def test_adaptive_lpm_matches_dict_across_the_switch(
    prefixes: list[tuple[int, int]], addrs: list[int]
) -> None:
    from vpe.dataplane.userspace.fib import AdaptiveLpm

    ad: AdaptiveLpm[int] = AdaptiveLpm(32)
    ref: DictLpm[int] = DictLpm(32)
    for i, (raw, plen) in enumerate(prefixes):
        ad.insert(raw, plen, i)
        ref.insert(raw, plen, i)
    for a in addrs:
        assert ad.lookup(a) == ref.lookup(a)
    for raw, plen in prefixes[: len(prefixes) // 2 + 1]:
        assert ad.remove(raw, plen) == ref.remove(raw, plen)
    for a in addrs:
        assert ad.lookup(a) == ref.lookup(a)
    assert len(ad) == len(ref)
