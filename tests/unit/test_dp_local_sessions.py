"""PE-CE sessions through a VRF's port (LocalSession): the pipeline's address mapping
between a port and the control plane's local interface, on crafted TCP segments."""

from __future__ import annotations

import dpkt
import pytest
from test_dp_helpers import VM1_MAC, a4, a6, eth, forwarder, ipv4_checksum_ok, mac

from vpe.dataplane.driver import Batch, DriverError, LocalSession, State
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.pipeline import ToLocal, ToPort

SESSION = LocalSession("red", "192.0.2.10", "192.0.2.1", "198.19.255.2", "198.19.255.1", 1790)
SESSION6 = LocalSession("red", "2001:db8:1::10", "2001:db8:1::1", "2001:db8:ffff:ff::2",
                        "2001:db8:ffff:ff::1", 179)


def tcp4(src: str, dst: str, sport: int, dport: int, data: bytes = b"OPEN") -> bytes:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=1, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=data)
    ip = dpkt.ip.IP(src=a4(src), dst=a4(dst), p=6, ttl=1, data=seg)
    ip.len = 20 + len(bytes(seg))
    return bytes(ip)


def tcp6(src: str, dst: str, sport: int, dport: int, data: bytes = b"OPEN") -> bytes:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=1, flags=dpkt.tcp.TH_ACK, data=data)
    ip = dpkt.ip6.IP6(src=a6(src), dst=a6(dst), nxt=6, hlim=1, data=seg)
    ip.plen = len(bytes(seg))
    return bytes(ip)


def tcp_ok4(pkt: bytes) -> bool:
    hl = (pkt[0] & 0x0F) * 4
    pseudo = P.pseudo_sum_v4(pkt[12:16], pkt[16:20], 6, len(pkt) - hl)
    return P.finish_checksum(pseudo + P.ones_sum(pkt[hl:])) == 0


def tcp_ok6(pkt: bytes) -> bool:
    pseudo = P.pseudo_sum_v6(pkt[8:24], pkt[24:40], 6, len(pkt) - 40)
    return P.finish_checksum(pseudo + P.ones_sum(pkt[40:])) == 0


def with_sessions(*xs: LocalSession):  # type: ignore[no-untyped-def]
    fwd = forwarder()
    fwd.apply(Batch(add_sessions=xs))
    return fwd


def test_segment_to_the_gateway_goes_to_the_control_plane_mapped() -> None:
    fwd = with_sessions(SESSION)
    out = fwd.from_port("vm1", eth(VM1_MAC, tcp4("192.0.2.10", "192.0.2.1", 40000, 179)))
    assert len(out) == 1 and isinstance(out[0][0], ToLocal)
    pkt = bytes(out[0][1])
    ip = dpkt.ip.IP(pkt)
    assert ip.src == a4("198.19.255.2") and ip.dst == a4("198.19.255.1")
    assert (ip.data.sport, ip.data.dport) == (40000, 1790)  # 179 -> where the agent listens
    assert ip.ttl == 1 and ip.data.data == b"OPEN"  # not routed: no TTL change
    assert ipv4_checksum_ok(pkt) and tcp_ok4(pkt)
    assert fwd.counters()["local_sessions"]["to_local"] == 1


def test_reply_from_the_control_plane_leaves_by_the_port_as_from_the_gateway() -> None:
    fwd = with_sessions(SESSION)
    out = fwd.from_local(tcp4("198.19.255.1", "198.19.255.2", 1790, 40000))
    assert len(out) == 1 and isinstance(out[0][0], ToPort) and out[0][0].name == "vm1"
    frame = bytes(out[0][1])
    assert frame[0:6] == mac(VM1_MAC)
    ip = dpkt.ip.IP(frame[14:])
    assert ip.src == a4("192.0.2.1") and ip.dst == a4("192.0.2.10")
    assert (ip.data.sport, ip.data.dport) == (179, 40000)
    assert ipv4_checksum_ok(frame[14:]) and tcp_ok4(frame[14:])
    # the control plane's own connection (its ephemeral port) keeps its ports
    out = fwd.from_local(tcp4("198.19.255.1", "198.19.255.2", 51000, 179))
    ip = dpkt.ip.IP(bytes(out[0][1])[14:])
    assert (ip.data.sport, ip.data.dport) == (51000, 179)


def test_ipv6_session_both_ways() -> None:
    fwd = with_sessions(SESSION6)
    out = fwd.from_port("vm1", eth(VM1_MAC, tcp6("2001:db8:1::10", "2001:db8:1::1", 179, 40001)))
    pkt = bytes(out[0][1])
    assert isinstance(out[0][0], ToLocal) and pkt[8:24] == a6("2001:db8:ffff:ff::2") and tcp_ok6(pkt)
    out = fwd.from_local(tcp6("2001:db8:ffff:ff::1", "2001:db8:ffff:ff::2", 40001, 179))
    frame = bytes(out[0][1])
    assert out[0][0].name == "vm1" and frame[14 + 8 : 14 + 24] == a6("2001:db8:1::1")  # type: ignore[union-attr]
    assert tcp_ok6(frame[14:])


@pytest.mark.parametrize(
    "pkt",
    [
        tcp4("192.0.2.10", "192.0.2.1", 40000, 22),  # not BGP
        tcp4("192.0.2.11", "192.0.2.1", 40000, 179),  # not the session's peer (vm2 is no CE)
    ],
)
def test_other_tcp_to_the_gateway_is_dropped(pkt: bytes) -> None:
    fwd = with_sessions(SESSION)
    port, m = ("vm2", "02:00:00:00:01:0b") if pkt[12:16] == a4("192.0.2.11") else ("vm1", VM1_MAC)
    assert fwd.from_port(port, eth(m, pkt)) == []
    assert fwd.drops["to-gateway"] == 1


def test_without_sessions_the_gateway_drops_tcp_and_local_packets() -> None:
    fwd = forwarder()
    assert fwd.from_port("vm1", eth(VM1_MAC, tcp4("192.0.2.10", "192.0.2.1", 40000, 179))) == []
    assert fwd.from_local(tcp4("198.19.255.1", "198.19.255.2", 1790, 40000)) == []
    assert fwd.drops == {"to-gateway": 1, "local-no-session": 1}


def test_sessions_are_state_and_removed_by_mapped_address() -> None:
    fwd = with_sessions(SESSION, SESSION6)
    assert set(fwd.state().sessions) == {SESSION, SESSION6}
    assert State.from_json(fwd.state().to_json()).sessions == fwd.state().sessions
    assert Batch.from_json(Batch(add_sessions=(SESSION,), remove_sessions=("198.19.255.9",)).to_json()) == Batch(
        add_sessions=(SESSION,), remove_sessions=("198.19.255.9",))
    fwd.apply(Batch(remove_sessions=(SESSION.mapped,)))
    assert fwd.state().sessions == (SESSION6,)
    assert fwd.from_local(tcp4("198.19.255.1", "198.19.255.2", 1790, 40000)) == []


def test_bad_sessions_are_refused_and_change_nothing() -> None:
    with pytest.raises(DriverError, match="one IP version"):
        LocalSession("red", "192.0.2.10", "2001:db8:1::1", "198.19.255.2", "198.19.255.1")
    with pytest.raises(DriverError, match="listen_port"):
        LocalSession("red", "192.0.2.10", "192.0.2.1", "198.19.255.2", "198.19.255.1", 0)
    fwd = with_sessions(SESSION)
    twin = LocalSession("red", "192.0.2.10", "192.0.2.1", "198.19.255.3", "198.19.255.1")
    with pytest.raises(DriverError, match="already has session 198.19.255.2"):
        fwd.apply(Batch(add_sessions=(twin,)))
    clash = LocalSession("red", "192.0.2.11", "192.0.2.1", "198.19.255.1", "198.19.255.9")
    with pytest.raises(DriverError, match="host address of another session"):
        fwd.apply(Batch(add_sessions=(clash,)))
    assert fwd.state().sessions == (SESSION,)
