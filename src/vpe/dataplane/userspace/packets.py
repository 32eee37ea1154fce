"""Packet formats the forwarder reads and writes, with ``struct`` and memoryview.

Only what a routed first hop plus MPLS tunnel endpoint needs: Ethernet, ARP,
IPv4 (header checksum, RFC 1624 incremental TTL update), IPv6, ICMP and
ICMPv6 (checksums with the pseudo-header), UDP, MPLS label stack entries,
GRE (RFC 2784, protocol 0x8847 for MPLS per RFC 4023) and MPLS-in-UDP
(RFC 7510: destination port 6635, source port carries flow entropy).

Parsers take a ``memoryview``/bytes plus an offset and return plain ints or
small tuples; builders return ``bytes``. Nothing here raises on short or
malformed input except :class:`PacketError`, which the pipeline turns into a
counted drop.
"""

from __future__ import annotations

import struct
from typing import Final

Buffer = bytes | bytearray | memoryview

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ETH_P_IPV6: Final = 0x86DD
ETH_P_MPLS: Final = 0x8847

IPPROTO_ICMP: Final = 1
IPPROTO_IGMP: Final = 2
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_GRE: Final = 47
IPPROTO_ICMPV6: Final = 58
IPPROTO_SCTP: Final = 132

MPLS_UDP_PORT: Final = 6635
#: RFC 7510 section 3: the source port is taken from this range (entropy).
FLOW_PORT_MIN: Final = 49152
FLOW_PORT_COUNT: Final = 65536 - 49152

ETH_LEN: Final = 14
IPV4_LEN: Final = 20
IPV6_LEN: Final = 40
UDP_LEN: Final = 8
GRE_LEN: Final = 4
MPLS_LEN: Final = 4

BROADCAST_MAC: Final = b"\xff" * 6

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")
_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")


class PacketError(Exception):
    """Input too short or not the format expected; ``reason`` is a counter name."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --------------------------------------------------------------------------- MAC


def mac_bytes(mac: str) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` to 6 octets."""
    return bytes.fromhex(mac.replace(":", ""))


def mac_str(raw: Buffer) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw[:6]))


def ipv4_multicast_mac(dst: Buffer) -> bytes:
    """RFC 1112: 01:00:5e + low 23 bits of the group."""
    return b"\x01\x00\x5e" + bytes((dst[1] & 0x7F, dst[2], dst[3]))


def ipv6_multicast_mac(dst: Buffer) -> bytes:
    """RFC 2464: 33:33 + low 32 bits of the group."""
    return b"\x33\x33" + bytes(dst[12:16])


def eth_header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return _ETH.pack(dst, src, ethertype)


# --------------------------------------------------------------------- checksums


def ones_sum(data: Buffer) -> int:
    """One's-complement sum of 16-bit big-endian words, reduced modulo 0xffff.

    Uses 65536 == 1 (mod 65535): the sum of the words equals the whole
    buffer read as one big integer, modulo 65535, which CPython computes in C.
    """
    n = len(data)
    value = int.from_bytes(data, "big")
    if n & 1:
        value <<= 8
    return value % 0xFFFF if value else 0


def finish_checksum(total: int) -> int:
    """Checksum field value from a sum of :func:`ones_sum` parts (RFC 1071)."""
    s = total % 0xFFFF
    return 0xFFFF - s if s else 0


def checksum(data: Buffer) -> int:
    """Internet checksum of ``data`` (its checksum field must be zero)."""
    total = ones_sum(data)
    if total == 0 and not int.from_bytes(data, "big"):
        return 0xFFFF
    return finish_checksum(total)


def pseudo_sum_v4(src: Buffer, dst: Buffer, proto: int, length: int) -> int:
    return ones_sum(bytes(src) + bytes(dst) + struct.pack("!BBH", 0, proto, length))


def pseudo_sum_v6(src: Buffer, dst: Buffer, nh: int, length: int) -> int:
    return ones_sum(bytes(src) + bytes(dst) + struct.pack("!IxxxB", length, nh))


def ipv4_ttl_decrement(buf: bytearray, off: int) -> None:
    """TTL - 1 with the RFC 1624 incremental checksum update (as Linux does)."""
    buf[off + 8] -= 1
    check = ((buf[off + 10] << 8) | buf[off + 11]) + 0x0100
    check = (check + (check >= 0xFFFF)) & 0xFFFF
    buf[off + 10] = check >> 8
    buf[off + 11] = check & 0xFF


# ---------------------------------------------------------------------- Ethernet


def parse_eth(frame: Buffer) -> tuple[bytes, bytes, int]:
    """(dst MAC, src MAC, ethertype); raises PacketError("runt") when short."""
    if len(frame) < ETH_LEN:
        raise PacketError("runt")
    dst, src, etype = _ETH.unpack_from(frame, 0)
    return dst, src, etype


# --------------------------------------------------------------------------- ARP


def parse_arp(frame: Buffer, off: int = ETH_LEN) -> tuple[int, bytes, bytes, bytes, bytes]:
    """Ethernet/IPv4 ARP: (op, sender MAC, sender IP, target MAC, target IP)."""
    if len(frame) < off + 28:
        raise PacketError("arp-short")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, off)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        raise PacketError("arp-unsupported")
    return op, sha, spa, tha, tpa


def build_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return _ARP.pack(1, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


def build_arp_reply_frame(gw_mac: bytes, ip: bytes, req_mac: bytes, req_ip: bytes) -> bytes:
    """The answer "``ip`` is at ``gw_mac``" to the requester."""
    return eth_header(req_mac, gw_mac, ETH_P_ARP) + build_arp(2, gw_mac, ip, req_mac, req_ip)


# -------------------------------------------------------------------------- IPv4


def parse_ipv4(pkt: Buffer, off: int = 0) -> tuple[int, int, int, int, bytes, bytes]:
    """(header length, total length, ttl, protocol, src, dst) after sanity checks."""
    if len(pkt) < off + IPV4_LEN:
        raise PacketError("ipv4-short")
    vihl, _tos, total, _id, _frag, ttl, proto, _ck, src, dst = _IPV4.unpack_from(pkt, off)
    hl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or hl < IPV4_LEN or total < hl or len(pkt) < off + total:
        raise PacketError("ipv4-bad-header")
    return hl, total, ttl, proto, src, dst


def build_ipv4_header(
    src: bytes,
    dst: bytes,
    proto: int,
    payload_len: int,
    ttl: int = 64,
    ident: int = 0,
    df: bool = False,
    tos: int = 0,
) -> bytes:
    hdr = bytearray(
        _IPV4.pack(
            0x45, tos, IPV4_LEN + payload_len, ident, 0x4000 if df else 0, ttl, proto, 0, src, dst
        )
    )
    _H.pack_into(hdr, 10, checksum(hdr))
    return bytes(hdr)


def ipv4_is_fragment(pkt: Buffer, off: int = 0) -> bool:
    """True for any fragment but an unfragmented packet (MF set or offset != 0)."""
    return bool(_H.unpack_from(pkt, off + 6)[0] & 0x3FFF)


def ipv4_df(pkt: Buffer, off: int = 0) -> bool:
    return bool(pkt[off + 6] & 0x40)


# -------------------------------------------------------------------------- IPv6


def parse_ipv6(pkt: Buffer, off: int = 0) -> tuple[int, int, int, bytes, bytes]:
    """(payload length, next header, hop limit, src, dst)."""
    if len(pkt) < off + IPV6_LEN:
        raise PacketError("ipv6-short")
    vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(pkt, off)
    if vtf >> 28 != 6 or len(pkt) < off + IPV6_LEN + plen:
        raise PacketError("ipv6-bad-header")
    return plen, nh, hlim, src, dst


def build_ipv6_header(
    src: bytes,
    dst: bytes,
    nh: int,
    payload_len: int,
    hlim: int = 64,
    tclass: int = 0,
    flow: int = 0,
) -> bytes:
    return _IPV6.pack((6 << 28) | (tclass << 20) | flow, payload_len, nh, hlim, src, dst)


# ---------------------------------------------------------------- ICMP / ICMPv6

ICMP_ECHO_REPLY: Final = 0
ICMP_UNREACH: Final = 3
ICMP_UNREACH_NET: Final = 0
ICMP_UNREACH_NEEDFRAG: Final = 4
ICMP_ECHO: Final = 8
ICMP_TIME_EXCEEDED: Final = 11

ICMP6_UNREACH: Final = 1
ICMP6_PACKET_TOO_BIG: Final = 2
ICMP6_TIME_EXCEEDED: Final = 3
ICMP6_ECHO: Final = 128
ICMP6_ECHO_REPLY: Final = 129
ND_ROUTER_SOLICIT: Final = 133
ND_ROUTER_ADVERT: Final = 134
ND_NEIGHBOR_SOLICIT: Final = 135
ND_NEIGHBOR_ADVERT: Final = 136
ND_REDIRECT: Final = 137
MLD_TYPES: Final = frozenset((130, 131, 132, 143))

#: RFC 1812 4.3.2.3: quote as much of the original as fits in 576 octets.
ICMP4_MAX_QUOTE: Final = 576 - IPV4_LEN - 8
#: RFC 4443 2.4(c): the error must not exceed the IPv6 minimum MTU.
ICMP6_MAX_QUOTE: Final = 1280 - IPV6_LEN - 8


def build_icmp4(icmp_type: int, code: int, rest: bytes, body: Buffer) -> bytes:
    msg = bytearray(struct.pack("!BBH", icmp_type, code, 0) + rest)
    msg += body
    _H.pack_into(msg, 2, checksum(msg))
    return bytes(msg)


def build_icmp4_packet(
    src: bytes, dst: bytes, icmp_type: int, code: int, rest: bytes, body: Buffer, ttl: int = 64
) -> bytes:
    """Whole IPv4 packet carrying one ICMP message."""
    msg = build_icmp4(icmp_type, code, rest, body)
    return build_ipv4_header(src, dst, IPPROTO_ICMP, len(msg), ttl=ttl) + msg


def build_icmp6(
    src: bytes, dst: bytes, icmp_type: int, code: int, rest: bytes, body: Buffer
) -> bytes:
    msg = bytearray(struct.pack("!BBH", icmp_type, code, 0) + rest)
    msg += body
    total = pseudo_sum_v6(src, dst, IPPROTO_ICMPV6, len(msg)) + ones_sum(msg)
    _H.pack_into(msg, 2, finish_checksum(total))
    return bytes(msg)


def build_icmp6_packet(
    src: bytes,
    dst: bytes,
    icmp_type: int,
    code: int,
    rest: bytes,
    body: Buffer,
    hlim: int = 64,
) -> bytes:
    msg = build_icmp6(src, dst, icmp_type, code, rest, body)
    return build_ipv6_header(src, dst, IPPROTO_ICMPV6, len(msg), hlim=hlim) + msg


def icmp6_checksum_ok(pkt: Buffer, off: int = 0) -> bool:
    """Verify an ICMPv6 checksum of a whole IPv6 packet (no extension headers)."""
    plen, _nh, _h, src, dst = parse_ipv6(pkt, off)
    body = pkt[off + IPV6_LEN : off + IPV6_LEN + plen]
    return finish_checksum(pseudo_sum_v6(src, dst, IPPROTO_ICMPV6, plen) + ones_sum(body)) == 0


def build_neighbor_advert(
    src: bytes,
    dst: bytes,
    target: bytes,
    target_mac: bytes,
    router: bool = True,
    solicited: bool = True,
) -> bytes:
    """IPv6 packet with an NA (override set) and a target link-layer address option."""
    flags = (0x80000000 if router else 0) | (0x40000000 if solicited else 0) | 0x20000000
    body = target + bytes((2, 1)) + target_mac
    return build_icmp6_packet(src, dst, ND_NEIGHBOR_ADVERT, 0, _I.pack(flags), body, hlim=255)


# ------------------------------------------------------------------------- UDP


def build_udp(sport: int, dport: int, payload_len: int, csum: int = 0) -> bytes:
    return _UDP.pack(sport, dport, UDP_LEN + payload_len, csum)


def parse_udp(pkt: Buffer, off: int) -> tuple[int, int, int]:
    """(src port, dst port, length)."""
    if len(pkt) < off + UDP_LEN:
        raise PacketError("udp-short")
    sport, dport, length, _ck = _UDP.unpack_from(pkt, off)
    return sport, dport, length


def flow_source_port(flow_hash: int) -> int:
    """RFC 7510 section 3 entropy: a source port in 49152-65535 from the flow hash."""
    return FLOW_PORT_MIN + (flow_hash % FLOW_PORT_COUNT)


# ------------------------------------------------------------------------ MPLS


def mpls_entry(label: int, bos: bool = True, ttl: int = 64, tc: int = 0) -> bytes:
    """One 4-octet label stack entry (RFC 3032)."""
    return _I.pack((label << 12) | (tc << 9) | (int(bos) << 8) | ttl)


def parse_mpls(pkt: Buffer, off: int = 0) -> tuple[int, int, bool, int]:
    """(label, traffic class, bottom of stack, ttl) of the entry at ``off``."""
    if len(pkt) < off + MPLS_LEN:
        raise PacketError("mpls-short")
    v = _I.unpack_from(pkt, off)[0]
    return v >> 12, (v >> 9) & 7, bool(v & 0x100), v & 0xFF


# ------------------------------------------------------------------------- GRE

GRE_MPLS_HEADER: Final = _HH.pack(0, ETH_P_MPLS)


def parse_gre(pkt: Buffer, off: int = 0) -> tuple[int, int]:
    """(protocol type, header length) of an RFC 2784/2890 GRE header."""
    if len(pkt) < off + GRE_LEN:
        raise PacketError("gre-short")
    flags, proto = _HH.unpack_from(pkt, off)
    if flags & 0x0007:
        raise PacketError("gre-bad-version")
    hlen = GRE_LEN + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    if len(pkt) < off + hlen:
        raise PacketError("gre-short")
    return proto, hlen


# --------------------------------------------------------------- tunnel headers


def udp_encap_template(label: int) -> bytes:
    """UDP header (dport 6635, sport/length/checksum filled per packet) + one label.

    The checksum stays 0 for an IPv4 underlay (allowed by RFC 7510 section 5);
    the process asks the kernel to fill it for IPv6 (IPV6_CHECKSUM).
    """
    return build_udp(0, MPLS_UDP_PORT, 0) + mpls_entry(label, bos=True, ttl=0)


def gre_encap_template(label: int) -> bytes:
    """GRE header (no optional fields, protocol 0x8847) + one label (RFC 4023)."""
    return GRE_MPLS_HEADER + mpls_entry(label, bos=True, ttl=0)


def build_outer_ip(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int = 64) -> bytes:
    """Outer underlay IP header (family from the address length)."""
    if len(src) == 4:
        return build_ipv4_header(src, dst, proto, payload_len, ttl=ttl)
    return build_ipv6_header(src, dst, proto, payload_len, hlim=ttl)


def outer_ip_len(endpoint_len: int) -> int:
    return IPV4_LEN if endpoint_len == 4 else IPV6_LEN


def tunnel_overhead(encap: str, ipv6_underlay: bool, labels: int = 1) -> int:
    """Octets added in front of an inner IP packet (outer IP + UDP/GRE + labels)."""
    outer = IPV6_LEN if ipv6_underlay else IPV4_LEN
    shim = UDP_LEN if encap == "mpls-in-udp" else GRE_LEN
    return outer + shim + MPLS_LEN * labels


def parse_underlay_ip(pkt: Buffer) -> tuple[bytes, str, int]:
    """A whole outer IP packet: (source address, encap, offset of the UDP/GRE payload).

    For MPLS-in-UDP the payload offset points at the label stack (the UDP
    header is consumed); for GRE it points at the GRE header.
    """
    if not len(pkt):
        raise PacketError("underlay-short")
    version = pkt[0] >> 4
    if version == 4:
        hl, _total, _ttl, proto, src, _dst = parse_ipv4(pkt)
        if ipv4_is_fragment(pkt):
            raise PacketError("underlay-fragment")
    elif version == 6:
        _plen, proto, _hlim, src, _dst = parse_ipv6(pkt)
        hl = IPV6_LEN
    else:
        raise PacketError("underlay-not-ip")
    if proto == IPPROTO_UDP:
        _sport, dport, _length = parse_udp(pkt, hl)
        if dport != MPLS_UDP_PORT:
            raise PacketError("underlay-not-mpls")
        return src, "mpls-in-udp", hl + UDP_LEN
    if proto == IPPROTO_GRE:
        return src, "mpls-in-gre", hl
    raise PacketError("underlay-not-mpls")
