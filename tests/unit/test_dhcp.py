"""R9.1 by DHCP: the vPE answers DHCPv4 on a VM port with the attachment's own
address (crafted requests; replies parsed independently with dpkt)."""

from __future__ import annotations

import struct

import dpkt
import pytest
from test_dp_helpers import GW_MAC, VM1_MAC, VM2_MAC, a4, eth, forwarder, mac

from vpe.dataplane.userspace import dhcp
from vpe.dataplane.userspace.pipeline import ToPort


def bootp(kind: int, chaddr: str = VM1_MAC, *, xid: int = 0x1234ABCD, ciaddr: str = "0.0.0.0",
          requested: str | None = None, server: str | None = None, broadcast: bool = False,
          extra: bytes = b"", end: bool = True) -> bytes:
    opts = bytes([53, 1, kind])
    if requested:
        opts += bytes([50, 4]) + a4(requested)
    if server:
        opts += bytes([54, 4]) + a4(server)
    opts += extra + (b"\xff" if end else b"")
    return (bytes([1, 1, 6, 0]) + struct.pack("!IHH", xid, 0, 0x8000 if broadcast else 0) + a4(ciaddr)
            + bytes(12) + mac(chaddr) + bytes(10) + bytes(192) + dhcp.MAGIC + opts)


def request_frame(payload: bytes, src: str = "0.0.0.0", dst: str = "255.255.255.255", src_mac: str = VM1_MAC,
                  sport: int = 68) -> bytes:
    from vpe.dataplane.userspace import packets as P

    udp = P.build_udp(sport, 67, len(payload)) + payload
    ip = P.build_ipv4_header(a4(src), a4(dst), P.IPPROTO_UDP, len(udp))
    return eth(src_mac, ip + udp, dst_mac="ff:ff:ff:ff:ff:ff")


def reply(fwd, frame: bytes) -> tuple[dpkt.ethernet.Ethernet, dpkt.dhcp.DHCP, dict[int, bytes]]:
    out = fwd.from_port("vm1", frame)
    assert len(out) == 1, fwd.drops
    where, data = out[0]
    assert isinstance(where, ToPort) and where.name == "vm1"
    e = dpkt.ethernet.Ethernet(bytes(data))
    ip = e.data
    assert isinstance(ip, dpkt.ip.IP) and ip.p == 17 and ip.sum == dpkt.ip.IP(bytes(ip)).sum
    udp = ip.data
    assert (udp.sport, udp.dport) == (67, 68)
    d = dpkt.dhcp.DHCP(bytes(udp.data))
    return e, d, dict(d.opts)


def test_r9_1_discover_gets_an_offer_of_the_ports_own_address() -> None:
    fwd = forwarder()
    e, d, opts = reply(fwd, request_frame(bootp(dhcp.DISCOVER)))
    assert e.src == mac(GW_MAC) and e.dst == mac(VM1_MAC)
    assert e.data.src == a4("192.0.2.1") and e.data.dst == a4("192.0.2.10")
    assert d.op == 2 and d.xid == 0x1234ABCD and d.chaddr == mac(VM1_MAC)
    assert struct.pack("!I", d.yiaddr) == a4("192.0.2.10")
    assert opts[53] == bytes([dhcp.OFFER]) and opts[54] == a4("192.0.2.1")
    assert opts[1] == a4("255.255.255.0") and opts[3] == a4("192.0.2.1")
    assert struct.unpack("!I", opts[51])[0] == dhcp.LEASE_TIME


def test_r9_1_request_for_the_lease_is_acked_anything_else_naked() -> None:
    fwd = forwarder()
    _, d, opts = reply(fwd, request_frame(bootp(dhcp.REQUEST, requested="192.0.2.10", server="192.0.2.1")))
    assert opts[53] == bytes([dhcp.ACK]) and struct.pack("!I", d.yiaddr) == a4("192.0.2.10")
    # renewing (ciaddr, unicast to the server from the leased address)
    _, d, opts = reply(fwd, request_frame(bootp(dhcp.REQUEST, ciaddr="192.0.2.10"), src="192.0.2.10",
                                          dst="192.0.2.1"))
    assert opts[53] == bytes([dhcp.ACK])
    e, d, opts = reply(fwd, request_frame(bootp(dhcp.REQUEST, requested="192.0.2.99")))
    assert opts[53] == bytes([dhcp.NAK]) and d.yiaddr == 0 and e.dst == b"\xff" * 6
    assert 1 not in opts and 3 not in opts


def test_r9_1_broadcast_flag_answered_by_broadcast() -> None:
    fwd = forwarder()
    e, _, _ = reply(fwd, request_frame(bootp(dhcp.DISCOVER, broadcast=True)))
    assert e.dst == b"\xff" * 6 and e.data.dst == b"\xff" * 4


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (request_frame(bootp(dhcp.DISCOVER, chaddr=VM2_MAC)), "spoof-mac"),  # another VM's MAC inside
        (request_frame(bootp(dhcp.DISCOVER), src_mac=VM2_MAC), "spoof-mac"),  # frame from another MAC
        (request_frame(bootp(dhcp.DISCOVER)[:200]), "dhcp-short"),
        (request_frame(bootp(dhcp.DISCOVER, end=False)), "dhcp-bad-option"),
        (request_frame(bootp(dhcp.DISCOVER, extra=bytes([12, 40, 1]))), "dhcp-bad-option"),
        (request_frame(bootp(dhcp.RELEASE, ciaddr="192.0.2.10")), "dhcp-no-reply"),
        (request_frame(bootp(dhcp.REQUEST, requested="192.0.2.10", server="192.0.2.254")), "dhcp-other-server"),
        (request_frame(b"\x02" + bootp(dhcp.DISCOVER)[1:]), "dhcp-not-request"),
    ],
)
def test_r9_1_bad_dhcp_refused_with_a_precise_reason(frame: bytes, reason: str) -> None:
    fwd = forwarder()
    before = dict(fwd.drops)
    assert fwd.from_port("vm1", frame) == []
    assert fwd.drops.get(reason, 0) == before.get(reason, 0) + 1, fwd.drops


def test_r9_1_not_dhcp_still_checked_for_spoofing() -> None:
    """Only UDP 68 -> 67 is DHCP: other traffic from 0.0.0.0 is a spoofed source."""
    fwd = forwarder()
    assert fwd.from_port("vm1", request_frame(bootp(dhcp.DISCOVER), sport=69)) == []
    assert fwd.drops["spoof-ip"] == 1


def test_r9_1_lease_of_picks_the_gateway_of_the_subnet() -> None:
    from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

    lease = dhcp.lease_of((IPv6Interface("2001:db8::5/64"), IPv4Interface("198.51.100.5/25")),
                          (IPv4Address("192.0.2.1"), IPv4Address("198.51.100.1")))
    assert lease == dhcp.Lease(IPv4Interface("198.51.100.5/25"), IPv4Address("198.51.100.1"))
    assert dhcp.lease_of((IPv6Interface("2001:db8::5/64"),), (IPv4Address("192.0.2.1"),)) is None
