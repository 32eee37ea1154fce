"""Frame builders shared by the dataplane unit tests (no tests here; crafted bytes)."""

from __future__ import annotations

import ipaddress
import struct

from vpe.dataplane.driver import (
    AddressPair,
    LabelEntry,
    NextHop,
    Peer,
    Port,
    ReplicationList,
    Route,
    State,
)
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.pipeline import Forwarder

GW_MAC = "02:00:5e:00:00:01"
VM1_MAC = "02:00:00:00:01:0a"
VM2_MAC = "02:00:00:00:01:0b"
PAIR_MAC = "02:00:00:00:01:ee"


def mac(m: str) -> bytes:
    return P.mac_bytes(m)


def a4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def a6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def udp4(
    src: str,
    dst: str,
    sport: int = 1234,
    dport: int = 5678,
    payload: bytes = b"x" * 32,
    ttl: int = 64,
    df: bool = False,
) -> bytes:
    """An IPv4/UDP packet (UDP checksum left 0)."""
    udp = P.build_udp(sport, dport, len(payload)) + payload
    return P.build_ipv4_header(a4(src), a4(dst), P.IPPROTO_UDP, len(udp), ttl=ttl, df=df) + udp


def udp6(
    src: str,
    dst: str,
    sport: int = 1234,
    dport: int = 5678,
    payload: bytes = b"y" * 32,
    hlim: int = 64,
) -> bytes:
    udp = P.build_udp(sport, dport, len(payload)) + payload
    return P.build_ipv6_header(a6(src), a6(dst), P.IPPROTO_UDP, len(udp), hlim=hlim) + udp


def eth(src_mac: str, ip_packet: bytes, dst_mac: str = GW_MAC) -> bytes:
    etype = P.ETH_P_IP if ip_packet[0] >> 4 == 4 else P.ETH_P_IPV6
    return P.eth_header(mac(dst_mac), mac(src_mac), etype) + ip_packet


def arp_request(src_mac: str, spa: str, tpa: str) -> bytes:
    return P.eth_header(P.BROADCAST_MAC, mac(src_mac), P.ETH_P_ARP) + P.build_arp(
        1, mac(src_mac), a4(spa), b"\0" * 6, a4(tpa)
    )


def neighbor_solicit(src_mac: str, src: str, target: str) -> bytes:
    t = a6(target)
    dst = a6("ff02::1:ff00:0")[:13] + t[13:]
    body = t + bytes((1, 1)) + mac(src_mac)
    pkt = P.build_icmp6_packet(a6(src), dst, P.ND_NEIGHBOR_SOLICIT, 0, b"\0" * 4, body, hlim=255)
    return P.eth_header(b"\x33\x33" + dst[12:], mac(src_mac), P.ETH_P_IPV6) + pkt


def state() -> State:
    """VRF red: vm1, vm2 local; .20 via UDP to 198.18.0.2, .30 via GRE to 198.18.0.3."""
    vm1 = Port(
        "vm1",
        "vp1",
        "red",
        VM1_MAC,
        ips=("192.0.2.10/24", "2001:db8:1::10/64"),
        gateway_ips=("192.0.2.1", "2001:db8:1::1", "fe80::1"),
        gateway_mac=GW_MAC,
        allowed_pairs=(AddressPair("203.0.113.0/28", PAIR_MAC),),
    )
    vm2 = Port(
        "vm2",
        "vp2",
        "red",
        VM2_MAC,
        ips=("192.0.2.11/24",),
        gateway_ips=("192.0.2.1",),
        gateway_mac=GW_MAC,
    )
    udp = NextHop.remote("198.18.0.2", 2000, "mpls-in-udp")
    gre = NextHop.remote("198.18.0.3", 3000, "mpls-in-gre")
    udp6_nh = NextHop.remote("2001:db8:ffff::2", 2001, "mpls-in-udp")
    routes = (
        Route("red", "192.0.2.10/32", (NextHop.local("vm1"),)),
        Route("red", "192.0.2.11/32", (NextHop.local("vm2"),)),
        Route("red", "203.0.113.0/28", (NextHop.local("vm1"),)),
        Route("red", "192.0.2.20/32", (udp,)),
        Route("red", "192.0.2.30/32", (gre,)),
        Route("red", "198.51.100.0/24", (udp, gre), ecmp="per-flow"),
        Route("red", "2001:db8:1::10/128", (NextHop.local("vm1"),)),
        Route("red", "2001:db8:1::20/128", (udp6_nh,)),
    )
    labels = (LabelEntry(1000, "vrf", "red"), LabelEntry(1001, "port", "vm1"))
    repl = (ReplicationList("red", (udp, gre)),)
    return State(
        ports=(vm1, vm2),
        routes=routes,
        labels=labels,
        replication=repl,
        peers=(Peer("198.18.0.9"),),
    )


def forwarder() -> Forwarder:
    fwd = Forwarder(["198.18.0.1", "2001:db8:ffff::1"], underlay_mtu=1500)
    fwd.full_sync(state())
    return fwd


def mpls_udp_payload(label: int, inner: bytes, ttl: int = 64) -> bytes:
    """What the UDP socket on port 6635 hands the forwarder: the label stack onward."""
    return P.mpls_entry(label, True, ttl) + inner


def mpls_gre_payload(label: int, inner: bytes, ttl: int = 64) -> bytes:
    return P.GRE_MPLS_HEADER + P.mpls_entry(label, True, ttl) + inner


def ipv4_checksum_ok(pkt: bytes) -> bool:
    hl = (pkt[0] & 0x0F) * 4
    return P.checksum(pkt[:hl]) in (0, 0xFFFF) and P.finish_checksum(P.ones_sum(pkt[:hl])) == 0


def u16(b: bytes, off: int) -> int:
    return int(struct.unpack_from("!H", b, off)[0])
