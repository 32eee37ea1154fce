"""DHCPv4 served by the vPE on a VM port (R9.1, docs/mobility.md): pure functions.

The lease is the port's own IPv4 address (the attachment's), so a VM that
moves gets the same address from its new host: the router option and the
server identifier are the port's gateway address, the subnet mask comes
from the attachment's prefix length, and the reply comes from the anycast
gateway MAC like everything else the vPE sends on the port.

Handled (RFC 2131): DISCOVER -> OFFER; REQUEST -> ACK when it asks for the
lease (option 50, or ``ciaddr`` when renewing) and names no other server
(option 54), else NAK; RELEASE, DECLINE and INFORM get no reply (the lease is
the attachment's, nothing to free or to tell). Anything malformed is refused
with a reason the pipeline counts as a drop. No state: every answer follows
from the frame and the port.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from . import packets as P

SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC = b"\x63\x82\x53\x63"
#: seconds of a lease; the address never changes, so renewing is cheap
LEASE_TIME = 86400
#: BOOTP fixed part (op .. file) before the magic cookie
_BOOTP_LEN = 236
_BROADCAST = 0x8000

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8

OPT_MASK, OPT_ROUTER, OPT_REQUESTED, OPT_LEASE, OPT_TYPE, OPT_SERVER = 1, 3, 50, 51, 53, 54
OPT_RENEWAL, OPT_REBINDING, OPT_PAD, OPT_END = 58, 59, 0, 255


class DhcpRefused(Exception):
    """The frame gets no answer; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Lease:
    """What the port offers: its address (with prefix length) and its gateway."""

    address: IPv4Interface
    gateway: IPv4Address


def is_dhcp_request(frame: bytes | bytearray | memoryview, hl: int) -> bool:
    """An IPv4 frame (header length ``hl``) carrying UDP from port 68 to port 67."""
    o = 14 + hl
    return len(frame) >= o + 8 and frame[23] == P.IPPROTO_UDP and frame[o] == 0 and frame[o + 1] == CLIENT_PORT \
        and frame[o + 2] == 0 and frame[o + 3] == SERVER_PORT


def options(data: bytes) -> dict[int, bytes]:
    """The options after the magic cookie (``data`` starts there); DhcpRefused on a bad one."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            return out
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise DhcpRefused("dhcp-bad-option")
        out.setdefault(code, data[i + 2 : i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    raise DhcpRefused("dhcp-bad-option")  # no END


def answer(frame: bytes | bytearray | memoryview, hl: int, vm_mac: bytes, gateway_mac: bytes,
           lease: Lease | None) -> bytes:
    """The reply frame to a DHCP message from the VM (IPv4 header length ``hl``);
    :class:`DhcpRefused` when there is none."""
    if lease is None:
        raise DhcpRefused("dhcp-no-address")
    o = 14 + hl + 8  # BOOTP
    b = bytes(frame[o:])
    if len(b) < _BOOTP_LEN + 4 or b[236:240] != MAGIC:
        raise DhcpRefused("dhcp-short")
    op, htype, hlen = b[0], b[1], b[2]
    if op != 1 or htype != 1 or hlen != 6:
        raise DhcpRefused("dhcp-not-request")
    if b[28:34] != vm_mac:  # chaddr: only the port's own VM (R13.1)
        raise DhcpRefused("spoof-mac")
    opts = options(b[240:])
    kind = opts.get(OPT_TYPE, b"")
    if len(kind) != 1:
        raise DhcpRefused("dhcp-no-type")
    xid, flags, ciaddr = b[4:8], struct.unpack_from("!H", b, 10)[0], b[12:16]
    mine = lease.address.ip.packed
    server = lease.gateway.packed
    if kind[0] == DISCOVER:
        reply = OFFER
    elif kind[0] == REQUEST:
        wanted = opts.get(OPT_REQUESTED, ciaddr)
        other_server = OPT_SERVER in opts and opts[OPT_SERVER] != server
        if other_server:
            raise DhcpRefused("dhcp-other-server")  # the client chose another server: silence
        reply = ACK if wanted == mine else NAK
    else:
        raise DhcpRefused("dhcp-no-reply")  # RELEASE, DECLINE, INFORM, or a server's message
    out_opts = bytearray(bytes([OPT_TYPE, 1, reply, OPT_SERVER, 4]) + server)
    if reply != NAK:
        mask = lease.address.network.netmask.packed
        out_opts += bytes([OPT_LEASE, 4]) + LEASE_TIME.to_bytes(4, "big")
        out_opts += bytes([OPT_RENEWAL, 4]) + (LEASE_TIME // 2).to_bytes(4, "big")
        out_opts += bytes([OPT_REBINDING, 4]) + (LEASE_TIME * 7 // 8).to_bytes(4, "big")
        out_opts += bytes([OPT_MASK, 4]) + mask + bytes([OPT_ROUTER, 4]) + server
    out_opts.append(OPT_END)
    yiaddr = mine if reply != NAK else bytes(4)
    bootp = (bytes([2, 1, 6, 0]) + xid + b"\0\0" + struct.pack("!H", flags) + (ciaddr if reply != NAK else bytes(4))
             + yiaddr + bytes(4) + bytes(4) + b[28:44] + bytes(64 + 128) + MAGIC + bytes(out_opts))
    # to the client: broadcast when it asks so (or when NAKing), else to its address/MAC
    if reply == NAK or flags & _BROADCAST:
        dst_ip, dst_mac = b"\xff\xff\xff\xff", b"\xff" * 6
    else:
        dst_ip, dst_mac = (ciaddr if ciaddr != bytes(4) else mine), vm_mac
    udp = P.build_udp(SERVER_PORT, CLIENT_PORT, len(bootp))  # checksum 0: allowed over IPv4
    ip = P.build_ipv4_header(server, dst_ip, P.IPPROTO_UDP, len(udp) + len(bootp))
    return P.eth_header(dst_mac, gateway_mac, P.ETH_P_IP) + ip + udp + bootp


def lease_of(ips: tuple[object, ...], gateways: tuple[object, ...]) -> Lease | None:
    """The lease a port offers: its first IPv4 address, and the IPv4 gateway in that
    subnet (else the first IPv4 gateway); None without both."""
    addr = next((a for a in ips if isinstance(a, IPv4Interface)), None)
    gws = [g for g in gateways if isinstance(g, IPv4Address)]
    if addr is None or not gws:
        return None
    gw = next((g for g in gws if g in addr.network), gws[0])
    return Lease(addr, gw)
