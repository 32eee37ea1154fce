"""The userspace pipeline with crafted frames: ARP/ND, anti-spoofing, ICMP, encap/decap."""

from __future__ import annotations

import struct

import dpkt
import pytest
from test_dp_helpers import (
    GW_MAC,
    PAIR_MAC,
    VM1_MAC,
    VM2_MAC,
    a4,
    a6,
    arp_request,
    eth,
    forwarder,
    ipv4_checksum_ok,
    mac,
    mpls_gre_payload,
    mpls_udp_payload,
    neighbor_solicit,
    u16,
    udp4,
    udp6,
)

from vpe.dataplane.driver import Batch, DriverError, LabelEntry, NextHop, Peer, Route, RouteKey
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.fib import flow_hash
from vpe.dataplane.userspace.pipeline import Forwarder, ToPort, ToUnderlay

# ------------------------------------------------------------------------- ARP/ND


def test_r3_3_arp_reply_for_gateway() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", arp_request(VM1_MAC, "192.0.2.10", "192.0.2.1"))
    assert len(out) == 1
    where, frame = out[0]
    assert isinstance(where, ToPort) and where.name == "vm1"
    e = dpkt.ethernet.Ethernet(bytes(frame))
    assert e.dst == mac(VM1_MAC) and e.src == mac(GW_MAC) and e.type == P.ETH_P_ARP
    arp = e.data
    assert arp.op == dpkt.arp.ARP_OP_REPLY
    assert arp.sha == mac(GW_MAC) and arp.spa == a4("192.0.2.1")
    assert arp.tha == mac(VM1_MAC) and arp.tpa == a4("192.0.2.10")


def test_r3_3_r6_1_proxy_arp_for_routed_address_only() -> None:
    """Any routed address is answered with the gateway MAC; unrouted and own are not."""
    fwd = forwarder()
    out = fwd.from_port("vm1", arp_request(VM1_MAC, "192.0.2.10", "192.0.2.20"))
    arp = dpkt.ethernet.Ethernet(bytes(out[0][1])).data
    assert arp.sha == mac(GW_MAC) and arp.spa == a4("192.0.2.20")
    assert fwd.from_port("vm1", arp_request(VM1_MAC, "192.0.2.10", "192.0.2.99")) == []
    assert fwd.drops["arp-no-route"] == 1
    assert fwd.from_port("vm1", arp_request(VM1_MAC, "192.0.2.10", "192.0.2.10")) == []
    assert fwd.drops["arp-self"] == 1
    assert fwd.from_port("vm1", arp_request(VM1_MAC, "0.0.0.0", "192.0.2.10")) == []
    assert fwd.drops["arp-probe"] == 1


def test_r13_1_arp_with_spoofed_sender_ip_dropped() -> None:
    fwd = forwarder()
    assert fwd.from_port("vm1", arp_request(VM1_MAC, "192.0.2.11", "192.0.2.1")) == []
    assert fwd.drops["spoof-arp"] == 1


def test_r3_3_neighbor_advert_for_gateway() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "fe80::10", "2001:db8:1::1"))
    assert len(out) == 1
    frame = bytes(out[0][1])
    e = dpkt.ethernet.Ethernet(frame)
    assert e.dst == mac(VM1_MAC) and e.src == mac(GW_MAC)
    ip6 = e.data
    assert ip6.hlim == 255 and ip6.src == a6("2001:db8:1::1") and ip6.dst == a6("fe80::10")
    assert P.icmp6_checksum_ok(frame, 14)
    icmp = frame[54:]
    assert icmp[0] == P.ND_NEIGHBOR_ADVERT and icmp[1] == 0
    assert icmp[4] & 0xE0 == 0xE0  # router, solicited, override
    assert icmp[8:24] == a6("2001:db8:1::1")
    assert icmp[24:26] == b"\x02\x01" and icmp[26:32] == mac(GW_MAC)


def test_r3_3_nd_proxy_for_routed_and_link_local_gateway() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "2001:db8:1::10", "2001:db8:1::20"))
    assert bytes(out[0][1])[62:78] == a6("2001:db8:1::20")
    assert fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "fe80::10", "fe80::1"))
    assert fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "fe80::10", "2001:db8:1::99")) == []
    assert fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "::", "2001:db8:1::1")) == []
    assert fwd.drops["nd-no-route"] == 1 and fwd.drops["nd-dad"] == 1


# ------------------------------------------------------------------ anti-spoofing


def test_r13_1_spoofed_source_mac_dropped() -> None:
    fwd = forwarder()
    assert fwd.from_port("vm1", eth(VM2_MAC, udp4("192.0.2.10", "192.0.2.11"))) == []
    assert fwd.drops["spoof-mac"] == 1
    assert fwd.counters()["ports"]["vm1"]["drops"] == 1


def test_r13_3_impersonating_another_vm_ip_dropped() -> None:
    """vm1 sends with vm2's source address: dropped, counted by reason."""
    fwd = forwarder()
    assert fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.11", "192.0.2.20"))) == []
    assert fwd.from_port("vm1", eth(VM1_MAC, udp6("2001:db8:1::11", "2001:db8:1::20"))) == []
    assert fwd.drops["spoof-ip"] == 2


def test_r13_1_allowed_address_pair_accepted_with_its_mac_only() -> None:
    fwd = forwarder()
    ok = fwd.from_port("vm1", eth(PAIR_MAC, udp4("203.0.113.5", "192.0.2.11")))
    assert len(ok) == 1 and ok[0][0].name == "vm2"
    assert fwd.from_port("vm1", eth(VM1_MAC, udp4("203.0.113.5", "192.0.2.11"))) == []
    assert fwd.from_port("vm1", eth(PAIR_MAC, udp4("192.0.2.10", "192.0.2.11"))) == []
    assert fwd.drops["spoof-ip"] == 2


# -------------------------------------------------------------- local forwarding


def test_r7_2_local_delivery_rewrites_macs_and_decrements_ttl() -> None:
    fwd = forwarder()
    pkt = udp4("192.0.2.10", "192.0.2.11", ttl=10)
    out = fwd.from_port("vm1", eth(VM1_MAC, pkt))
    assert len(out) == 1 and out[0][0].name == "vm2"
    frame = bytes(out[0][1])
    assert frame[0:6] == mac(VM2_MAC) and frame[6:12] == mac(GW_MAC)
    ip = frame[14:]
    assert ip[8] == 9 and ipv4_checksum_ok(ip)
    assert ip[20:] == pkt[20:]
    c = fwd.counters()
    assert c["vrfs"]["red"]["routed_local"] == 1
    assert c["ports"]["vm2"]["tx_packets"] == 1 and c["ports"]["vm1"]["rx_packets"] == 1


def test_r7_2_gateway_answers_echo() -> None:
    fwd = forwarder()
    echo = P.build_icmp4_packet(
        a4("192.0.2.10"), a4("192.0.2.1"), P.ICMP_ECHO, 0, b"\x12\x34\x00\x01", b"hello"
    )
    out = fwd.from_port("vm1", eth(VM1_MAC, echo))
    ip = dpkt.ip.IP(bytes(out[0][1])[14:])
    assert ip.src == a4("192.0.2.1") and ip.dst == a4("192.0.2.10")
    assert ip.data.type == P.ICMP_ECHO_REPLY and ip.data.data.id == 0x1234
    assert ipv4_checksum_ok(bytes(ip)) and P.checksum(bytes(ip.data)) in (0, 0xFFFF)


# --------------------------------------------------------------------- ICMP errors


def test_ttl_expiry_returns_icmp_time_exceeded() -> None:
    fwd = forwarder()
    pkt = udp4("192.0.2.10", "192.0.2.20", ttl=1)
    out = fwd.from_port("vm1", eth(VM1_MAC, pkt))
    assert len(out) == 1 and out[0][0].name == "vm1"
    frame = bytes(out[0][1])
    assert frame[0:6] == mac(VM1_MAC) and frame[6:12] == mac(GW_MAC)
    ip = dpkt.ip.IP(frame[14:])
    assert ip.src == a4("192.0.2.1") and ip.dst == a4("192.0.2.10")
    assert ip.p == P.IPPROTO_ICMP and ipv4_checksum_ok(frame[14:34])
    icmp = frame[34:]
    assert icmp[0] == P.ICMP_TIME_EXCEEDED and icmp[1] == 0
    assert P.finish_checksum(P.ones_sum(icmp)) == 0
    assert icmp[8:] == pkt  # the whole small original is quoted
    assert fwd.drops["ttl-expired"] == 1


def test_hop_limit_expiry_returns_icmpv6_time_exceeded() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", eth(VM1_MAC, udp6("2001:db8:1::10", "2001:db8:1::20", hlim=1)))
    frame = bytes(out[0][1])
    assert frame[54] == P.ICMP6_TIME_EXCEEDED and P.icmp6_checksum_ok(frame, 14)
    assert frame[22:38] == a6("2001:db8:1::1")


def test_no_route_returns_destination_unreachable() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "203.0.113.200")))
    icmp = bytes(out[0][1])[34:]
    assert icmp[0] == P.ICMP_UNREACH and icmp[1] == P.ICMP_UNREACH_NET
    out6 = fwd.from_port("vm1", eth(VM1_MAC, udp6("2001:db8:1::10", "2001:db8:9::1")))
    assert bytes(out6[0][1])[54] == P.ICMP6_UNREACH
    assert fwd.drops["no-route"] == 2


def test_no_icmp_error_about_an_icmp_error() -> None:
    fwd = forwarder()
    err = P.build_icmp4_packet(
        a4("192.0.2.10"), a4("203.0.113.200"), P.ICMP_UNREACH, 1, b"\0" * 4, b"q" * 28
    )
    assert fwd.from_port("vm1", eth(VM1_MAC, err)) == []


@pytest.mark.parametrize(
    ("dst", "mtu"),
    [("192.0.2.20", 1500 - 20 - 8 - 4), ("192.0.2.30", 1500 - 20 - 4 - 4)],
)
def test_pmtu_frag_needed_reduced_by_tunnel_overhead(dst: str, mtu: int) -> None:
    """1468 for MPLS-in-UDP over IPv4, 1472 for MPLS-in-GRE over IPv4."""
    fwd = forwarder()
    big = udp4("192.0.2.10", dst, payload=b"z" * (1500 - 28), df=True)
    out = fwd.from_port("vm1", eth(VM1_MAC, big))
    assert len(out) == 1 and isinstance(out[0][0], ToPort)
    icmp = bytes(out[0][1])[34:]
    assert icmp[0] == P.ICMP_UNREACH and icmp[1] == P.ICMP_UNREACH_NEEDFRAG
    assert u16(icmp, 6) == mtu
    fits = udp4("192.0.2.10", dst, payload=b"z" * (mtu - 28), df=True)
    assert isinstance(fwd.from_port("vm1", eth(VM1_MAC, fits))[0][0], ToUnderlay)
    nodf = udp4("192.0.2.10", dst, payload=b"z" * (1500 - 28), df=False)
    assert isinstance(fwd.from_port("vm1", eth(VM1_MAC, nodf))[0][0], ToUnderlay)


def test_pmtu_ipv6_packet_too_big_over_ipv6_underlay() -> None:
    fwd = forwarder()
    big = udp6("2001:db8:1::10", "2001:db8:1::20", payload=b"z" * (1500 - 48))
    frame = bytes(fwd.from_port("vm1", eth(VM1_MAC, big))[0][1])
    assert frame[54] == P.ICMP6_PACKET_TOO_BIG
    assert int.from_bytes(frame[58:62], "big") == 1500 - 40 - 8 - 4
    assert P.icmp6_checksum_ok(frame, 14)


# ------------------------------------------------------------------ encapsulation


def test_r7_1_mpls_in_udp_encap_header_bytes() -> None:
    fwd = forwarder()
    pkt = udp4("192.0.2.10", "192.0.2.20", ttl=64)
    out = fwd.from_port("vm1", eth(VM1_MAC, pkt))
    where, payload = out[0]
    assert isinstance(where, ToUnderlay)
    assert where.endpoint == "198.18.0.2" and where.proto == P.IPPROTO_UDP
    p = bytes(payload)
    sport, dport, length = P.parse_udp(p, 0)
    assert 49152 <= sport <= 65535 and dport == 6635 and length == len(p) == 8 + 4 + len(pkt)
    assert u16(p, 6) == 0
    assert P.parse_mpls(p, 8) == (2000, 0, True, 63)
    inner = p[12:]
    assert inner[8] == 63 and ipv4_checksum_ok(inner) and inner[20:] == pkt[20:]
    assert sport == P.flow_source_port(flow_hash(pkt))


def test_r7_1_mpls_in_gre_encap_header_bytes() -> None:
    fwd = forwarder()
    pkt = udp4("192.0.2.10", "192.0.2.30", ttl=64)
    where, payload = fwd.from_port("vm1", eth(VM1_MAC, pkt))[0]
    assert isinstance(where, ToUnderlay)
    assert where.endpoint == "198.18.0.3" and where.proto == P.IPPROTO_GRE
    p = bytes(payload)
    assert p[:4] == b"\x00\x00\x88\x47"
    assert P.parse_mpls(p, 4) == (3000, 0, True, 63)
    assert p[8:][8] == 63 and p[8 + 20 :] == pkt[20:]


def test_r7_1_ipv6_inner_over_ipv6_underlay() -> None:
    fwd = forwarder()
    pkt = udp6("2001:db8:1::10", "2001:db8:1::20", hlim=9)
    where, payload = fwd.from_port("vm1", eth(VM1_MAC, pkt))[0]
    assert isinstance(where, ToUnderlay) and where.family == 6
    assert where.endpoint == "2001:db8:ffff::2"
    p = bytes(payload)
    assert P.parse_mpls(p, 8) == (2001, 0, True, 8)
    assert p[12 + 7] == 8 and p[12 + 8 :] == pkt[8:]


def test_outer_ip_headers_for_both_underlays() -> None:
    """packets.build_outer_ip + parse_underlay_ip round-trip (IPv4 and IPv6 underlay)."""
    payload = P.udp_encap_template(2000) + udp4("192.0.2.10", "192.0.2.20")
    for src, dst in (("198.18.0.1", "198.18.0.2"), ("2001:db8:ffff::1", "2001:db8:ffff::2")):
        import ipaddress

        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        pkt = P.build_outer_ip(s, d, P.IPPROTO_UDP, len(payload)) + payload
        got_src, encap, off = P.parse_underlay_ip(pkt)
        assert got_src == s and encap == "mpls-in-udp" and off == len(pkt) - len(payload) + 8


# ------------------------------------------------------------------ decapsulation


def test_decap_vrf_label_ip_lookup_and_local_delivery() -> None:
    fwd = forwarder()
    inner = udp4("192.0.2.20", "192.0.2.10", ttl=5)
    for out in (
        fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.2", "mpls-in-udp"),
        fwd.from_underlay(mpls_gre_payload(1000, inner), "198.18.0.3", "mpls-in-gre"),
    ):
        assert len(out) == 1 and out[0][0].name == "vm1"
        frame = bytes(out[0][1])
        assert frame[0:6] == mac(VM1_MAC) and frame[6:12] == mac(GW_MAC)
        assert frame[14 + 8] == 4 and ipv4_checksum_ok(frame[14:])
    assert fwd.counters()["vrfs"]["red"]["decapsulated"] == 2


def test_decap_full_outer_ip_packet() -> None:
    fwd = forwarder()
    inner = udp4("192.0.2.20", "192.0.2.11")
    payload = P.udp_encap_template(1000)[:8] + P.mpls_entry(1000) + inner
    outer = P.build_outer_ip(a4("198.18.0.2"), a4("198.18.0.1"), P.IPPROTO_UDP, len(payload))
    out = fwd.from_underlay_ip(outer + payload)
    assert out[0][0].name == "vm2"


def test_r13_2_decap_from_unknown_underlay_source_dropped() -> None:
    fwd = forwarder()
    inner = udp4("192.0.2.20", "192.0.2.10")
    assert fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.66") == []
    assert fwd.drops["underlay-unknown-source"] == 1
    # A declared Peer with no route toward it is trusted.
    assert fwd.from_underlay(mpls_udp_payload(1000, inner), "198.18.0.9")


def test_r13_2_label_of_another_host_dropped() -> None:
    """A known vPE sending a label we never allocated (it belongs to another host)."""
    fwd = forwarder()
    inner = udp4("192.0.2.20", "192.0.2.10")
    assert fwd.from_underlay(mpls_udp_payload(2000, inner), "198.18.0.2") == []
    assert fwd.drops["unknown-label"] == 1


def test_r13_2_port_label_ingress_check() -> None:
    """Per-port label: the inner source must be routed via the sending vPE."""
    fwd = forwarder()
    good = udp4("192.0.2.20", "192.0.2.10")
    assert fwd.from_underlay(mpls_udp_payload(1001, good), "198.18.0.2")[0][0].name == "vm1"
    # 192.0.2.20 lives behind 198.18.0.2, not 198.18.0.3: spoofed ingress.
    assert fwd.from_underlay(mpls_udp_payload(1001, good), "198.18.0.3") == []
    unrouted = udp4("198.51.200.1", "192.0.2.10")
    assert fwd.from_underlay(mpls_udp_payload(1001, unrouted), "198.18.0.2") == []
    assert fwd.drops["ingress-check"] == 2


def test_r8_1_decap_never_sends_back_into_the_underlay() -> None:
    fwd = forwarder()
    transit = udp4("192.0.2.20", "192.0.2.30")
    assert fwd.from_underlay(mpls_udp_payload(1000, transit), "198.18.0.2") == []
    assert fwd.drops["no-local-route"] == 1


def test_decap_garbage_is_counted_not_raised() -> None:
    fwd = forwarder()
    for data in (
        b"",
        b"\x00",
        b"\x00\x3e\x81",
        mpls_udp_payload(1000, b"\x45\x00"),
        mpls_udp_payload(1000, b"\x99" * 40),
        b"\x00\x00\x08\x00" + b"\0" * 30,
    ):
        assert fwd.from_underlay(data, "198.18.0.2", "mpls-in-udp") == []
        assert fwd.from_underlay(data, "198.18.0.3", "mpls-in-gre") == []
    for frame in (
        b"",
        b"\x01" * 13,
        eth(VM1_MAC, b"\x45" + b"\0" * 10),
        eth(VM1_MAC, b"\x60" * 30),
    ):
        assert fwd.from_port("vm1", frame) == []
    assert fwd.from_port("nope", b"\0" * 60) == []


# -------------------------------------------------------------- replication/ECMP


def test_r3_2_broadcast_fan_out_local_and_ingress_replication() -> None:
    fwd = forwarder()
    for dst in ("255.255.255.255", "192.0.2.255", "239.1.2.3"):
        pkt = udp4("192.0.2.10", dst, ttl=1)
        out = fwd.from_port("vm1", eth(VM1_MAC, pkt, dst_mac="ff:ff:ff:ff:ff:ff"))
        ports = [w.name for w, _ in out if isinstance(w, ToPort)]
        remotes = sorted((w.endpoint, w.proto) for w, _ in out if isinstance(w, ToUnderlay))
        assert ports == ["vm2"]  # every local port but the sender
        assert remotes == [("198.18.0.2", P.IPPROTO_UDP), ("198.18.0.3", P.IPPROTO_GRE)]
        for w, data in out:
            if isinstance(w, ToUnderlay):
                off = 12 if w.proto == P.IPPROTO_UDP else 8
                assert bytes(data)[off:] == pkt  # TTL untouched: one VPN-wide broadcast domain
    assert fwd.counters()["vrfs"]["red"]["replicated"] == 3


def test_r3_2_ipv6_multicast_replicated_but_nd_is_not() -> None:
    fwd = forwarder()
    out = fwd.from_port("vm1", eth(VM1_MAC, udp6("2001:db8:1::10", "ff05::1:3")))
    assert len(out) == 3
    assert len(fwd.from_port("vm1", neighbor_solicit(VM1_MAC, "fe80::10", "2001:db8:1::1"))) == 1


def test_r3_2_decapped_broadcast_flooded_to_local_ports() -> None:
    fwd = forwarder()
    bcast = udp4("192.0.2.20", "192.0.2.255")
    out = fwd.from_underlay(mpls_udp_payload(1000, bcast), "198.18.0.2")
    assert sorted(w.name for w, _ in out) == ["vm1", "vm2"]
    assert all(bytes(f)[0:6] == P.BROADCAST_MAC for _, f in out)
    mc = fwd.from_underlay(mpls_udp_payload(1000, udp4("192.0.2.20", "239.1.2.3")), "198.18.0.2")
    assert bytes(mc[0][1])[0:6] == bytes.fromhex("01005e010203")


def test_r12_2_ecmp_symmetric_per_flow_hash() -> None:
    fwd = forwarder()
    nhs = tuple(
        NextHop.remote(f"198.18.{1 + i // 250}.{1 + i % 250}", 5000 + i) for i in range(512)
    )
    fwd.apply(Batch(add_routes=(Route("red", "198.51.100.0/24", nhs, "per-flow"),)))
    fwd.apply(Batch(add_routes=(Route("red", "192.0.2.10/32", nhs[:1] + (NextHop.local("vm1"),)),)))
    chosen = set()
    for sport in range(200):
        fwd_pkt = udp4("192.0.2.10", "198.51.100.7", sport=sport, dport=80)
        rev_pkt = udp4("198.51.100.7", "192.0.2.10", sport=80, dport=sport)
        assert flow_hash(fwd_pkt) == flow_hash(rev_pkt)
        w1, _ = fwd.from_port("vm1", eth(VM1_MAC, fwd_pkt))[0]
        w2, _ = fwd.from_port("vm1", eth(VM1_MAC, fwd_pkt))[0]
        assert w1.endpoint == w2.endpoint
        chosen.add(w1.endpoint)
    assert len(chosen) > 100  # spread over many of the 512


def test_r12_2_per_packet_and_per_prefix_modes() -> None:
    fwd = forwarder()
    nhs = tuple(NextHop.remote(f"198.18.0.{10 + i}", 6000 + i) for i in range(4))
    fwd.apply(
        Batch(
            add_routes=(
                Route("red", "198.51.100.0/25", nhs, "per-packet"),
                Route("red", "198.51.100.128/25", nhs, "per-prefix"),
            )
        )
    )
    pkt = udp4("192.0.2.10", "198.51.100.7")
    seen = [fwd.from_port("vm1", eth(VM1_MAC, pkt))[0][0].endpoint for _ in range(8)]
    # round robin in rank order (identity, not arrival order: vpe.dataplane.nhg)
    assert sorted(seen[:4]) == [f"198.18.0.{10 + i}" for i in range(4)] and seen[4:] == seen[:4]
    dests = {
        fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", f"198.51.100.{d}", sport=d)))[0][
            0
        ].endpoint
        for d in range(130, 250)
    }
    assert len(dests) == 1


# ------------------------------------------------------------------- programming


def test_batch_is_atomic_and_errors_name_the_value() -> None:
    fwd = Forwarder(["198.18.0.1"])
    good = Route("red", "192.0.2.0/24", (NextHop.remote("198.18.0.2", 100),))
    bad = Route("red", "2001:db8::/64", (NextHop.remote("2001:db8:ffff::2", 100),))
    with pytest.raises(DriverError, match="2001:db8:ffff::2.*IPv6 underlay"):
        fwd.apply(Batch(add_routes=(good, bad)))
    assert fwd.routes == {}
    fwd.apply(Batch(add_routes=(good,), add_labels=(LabelEntry(100, "vrf", "red"),)))
    fwd.apply(Batch(remove_routes=(RouteKey("red", "192.0.2.0/24"),), remove_labels=(100,)))
    assert fwd.routes == {} and fwd.labels == {}
    assert (
        fwd.from_underlay(mpls_udp_payload(100, udp4("192.0.2.1", "192.0.2.2")), "198.18.0.2") == []
    )
    assert fwd.drops["underlay-unknown-source"] == 1  # route gone: peer no longer trusted


def test_full_sync_replaces_everything_and_keeps_counters() -> None:
    fwd = forwarder()
    fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.11")))
    from test_dp_helpers import state

    s = state()
    fwd.full_sync(type(s)(ports=s.ports[:1]))
    assert set(fwd.ports) == {"vm1"} and fwd.routes == {}
    assert fwd.counters()["ports"]["vm1"]["rx_packets"] == 1
    assert fwd.from_port("vm1", eth(VM1_MAC, udp4("192.0.2.10", "192.0.2.11")))[0][0].name == "vm1"


def test_driver_values_validate_and_round_trip() -> None:
    from test_dp_helpers import state

    from vpe.dataplane.driver import Port, State

    s = state()
    assert State.from_json(s.to_json()) == s
    assert Batch.from_json(s.as_batch().to_json()) == s.as_batch()
    with pytest.raises(DriverError, match="mac"):
        Port("p", "veth0", "red", "nope")
    with pytest.raises(DriverError, match="513 next hops"):
        Route(
            "red", "192.0.2.0/24", tuple(NextHop.remote("198.18.0.2", 16 + i) for i in range(513))
        )
    with pytest.raises(DriverError, match="reserved"):
        LabelEntry(3, "vrf", "red")
    with pytest.raises(DriverError, match="prefix"):
        Route("red", "192.0.2.1/24", (NextHop.local("p"),))


# ------------------------------------------------------------------------ label swap


def _swapping_forwarder() -> Forwarder:
    """Label 4000 swaps toward 198.18.0.7 (UDP, out label 7000), 4001 toward
    2001:db8:ffff::7 (GRE, out label 7001); 198.18.0.5 is a vPE we accept from."""
    fwd = forwarder()
    fwd.apply(
        Batch(
            add_labels=(
                LabelEntry.swap(4000, NextHop.remote("198.18.0.7", 7000, "mpls-in-udp")),
                LabelEntry.swap(4001, NextHop.remote("2001:db8:ffff::7", 7001, "mpls-in-gre")),
            ),
            add_peers=(Peer("198.18.0.5"),),
        )
    )
    return fwd


def test_label_swap_reencapsulates_toward_the_next_hop_with_its_label() -> None:
    fwd = _swapping_forwarder()
    inner = udp4("198.51.100.7", "203.0.113.99", ttl=30)
    out = fwd.from_underlay(mpls_udp_payload(4000, inner, ttl=30), "198.18.0.5")
    assert len(out) == 1
    where, data = out[0]
    assert isinstance(where, ToUnderlay) and where.endpoint == "198.18.0.7" and where.proto == 17
    data = bytes(data)
    sport, dport, length = struct.unpack_from("!HHH", data, 0)
    assert dport == P.MPLS_UDP_PORT and length == len(data) == 12 + len(inner)
    assert sport == P.FLOW_PORT_MIN + flow_hash(inner, 0) % P.FLOW_PORT_COUNT
    label, _tc, bos, ttl = P.parse_mpls(data, 8)
    assert (label, bos, ttl) == (7000, True, 29)
    out_inner = data[12:]
    assert out_inner[8] == 29 and ipv4_checksum_ok(out_inner)  # TTL - 1, checksum updated
    assert out_inner[:8] == inner[:8] and out_inner[12:] == inner[12:]
    assert fwd.counters()["swapped"] == 1
    assert fwd.counters()["underlay"]["tx_packets"] == 1


def test_label_swap_ipv6_inner_over_gre_and_ipv6_underlay() -> None:
    fwd = _swapping_forwarder()
    inner = udp6("2001:db8:9::1", "2001:db8:9::2", hlim=10)
    out = fwd.from_underlay(mpls_gre_payload(4001, inner), "198.18.0.5", "mpls-in-gre")
    (where, data), = out
    assert isinstance(where, ToUnderlay) and where.endpoint == "2001:db8:ffff::7"
    assert where.proto == P.IPPROTO_GRE and where.family == 6
    data = bytes(data)
    assert P.parse_gre(data, 0) == (P.ETH_P_MPLS, 4)
    label, _tc, bos, ttl = P.parse_mpls(data, 4)
    assert (label, bos, ttl) == (7001, True, 9)
    assert data[8 + 7] == 9 and data[8:15] == inner[:7] and data[16:] == inner[8:]


def test_label_swap_expired_ttl_and_unknown_sources_are_dropped() -> None:
    fwd = _swapping_forwarder()
    inner = udp4("198.51.100.7", "203.0.113.99", ttl=1)
    assert fwd.from_underlay(mpls_udp_payload(4000, inner), "198.18.0.5") == []
    assert fwd.drops["ttl-expired"] == 1
    inner = udp4("198.51.100.7", "203.0.113.99")
    assert fwd.from_underlay(mpls_udp_payload(4000, inner), "198.18.0.66") == []
    assert fwd.drops["underlay-unknown-source"] == 1
    # the swap's next hop is a vPE whose traffic is accepted (the return direction)
    assert fwd.from_underlay(mpls_udp_payload(1000, udp4("192.0.2.20", "192.0.2.10")), "198.18.0.7")
    assert fwd.counters()["swapped"] == 0


def test_label_swap_entries_replace_remove_and_survive_state() -> None:
    fwd = _swapping_forwarder()
    inner = udp4("198.51.100.7", "203.0.113.99")
    fwd.apply(Batch(add_labels=(LabelEntry(4000, "vrf", "red"),)))
    assert fwd.from_underlay(mpls_udp_payload(4000, inner), "198.18.0.5") == []
    assert fwd.drops["no-route"] == 1  # looked up in red now, not swapped
    st = fwd.state()
    assert LabelEntry.swap(4001, NextHop.remote("2001:db8:ffff::7", 7001, "mpls-in-gre")) in st.labels
    fwd.apply(Batch(remove_labels=(4001,)))
    assert fwd.from_underlay(mpls_gre_payload(4001, udp6("2001:db8:9::1", "2001:db8:9::2")),
                             "198.18.0.5", "mpls-in-gre") == []
    assert fwd.drops["unknown-label"] == 1
    # full sync of the old state brings the swap back
    fwd.full_sync(st)
    assert fwd.from_underlay(mpls_gre_payload(4001, udp6("2001:db8:9::1", "2001:db8:9::2")),
                             "198.18.0.5", "mpls-in-gre")


def test_label_swap_entry_values_are_checked() -> None:
    with pytest.raises(DriverError, match="swap entry needs a remote next hop"):
        LabelEntry(4000, "swap")
    with pytest.raises(DriverError, match="swap entry needs a remote next hop"):
        LabelEntry(4000, "swap", next_hop=NextHop.local("vm1"))
    with pytest.raises(DriverError, match="only a swap entry has a next hop"):
        LabelEntry(4000, "vrf", "red", NextHop.remote("198.18.0.7", 7000))
    e = LabelEntry.swap(4000, NextHop.remote("198.18.0.7", 7000, "mpls-in-gre"))
    assert LabelEntry.from_json(e.to_json()) == e
    fwd = Forwarder(["198.18.0.1"])  # no IPv6 underlay
    with pytest.raises(DriverError, match="IPv6 underlay"):
        fwd.apply(Batch(add_labels=(LabelEntry.swap(4001, NextHop.remote("2001:db8::7", 1)),)))
