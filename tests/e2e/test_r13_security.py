"""R13.1-R13.3: anti-spoofing at the VM port, tunnel-source and label checks at
the egress vPE, and no impersonation of one VM by another."""

from __future__ import annotations

import json
import uuid

import pytest
from e2e_lab import (
    E2E,
    GATEWAY_MAC,
    RunningLab,
    arp_frame,
    delta,
    ether,
    ipv4_udp,
    ipv6_udp,
    mpls,
)

pytestmark = [*E2E, pytest.mark.timeout(90)]

#: send raw IPv4 packets (hex, outer header included) with IP_HDRINCL
RAW_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for h in sys.argv[1:]:
    pkt = bytes.fromhex(h)
    s.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
    time.sleep(0.02)
"""


def _listen_while(lab: RunningLab, vms: list[str], port: int, action, family: int = 4) -> dict[str, list[str]]:
    """Payloads each of ``vms`` receives on ``port`` while ``action()`` runs."""
    ls = {vm: lab.listen(vm, port, family=family, count=20, timeout=10) for vm in vms}
    try:
        action()
        return {vm: [p for p, _ in json.loads(b.finish(settle=0.5 if i == 0 else 0) or "[]")]
                for i, (vm, b) in enumerate(ls.items())}
    finally:
        for b in ls.values():
            b.kill()


def test_r13_1_spoofed_source_dropped_and_counted(main_lab: RunningLab) -> None:
    """R13.1: from red1's port, a packet is accepted only with red1's own MAC and
    address. A control datagram (own MAC/IP) reaches red2; the same datagram
    with a foreign source IP (IPv4 or IPv6), or with a foreign source MAC,
    does not, and h1's forwarder counts each by reason (spoof-ip, spoof-mac)
    and on red1's port."""
    lab = main_lab
    me, gw = lab.mac("red1"), GATEWAY_MAC
    t = uuid.uuid4().hex[:6]
    frames = [
        ether(gw, me, 0x0800, ipv4_udp("192.0.2.11", "192.0.2.12", 4401, 4401, f"ok-{t}".encode())),
        ether(gw, me, 0x0800, ipv4_udp("192.0.2.99", "192.0.2.12", 4401, 4401, f"ip-{t}".encode())),
        ether(gw, "02:00:00:00:99:99", 0x0800, ipv4_udp("192.0.2.11", "192.0.2.12", 4401, 4401, f"mac-{t}".encode())),
    ]
    frames6 = [
        ether(gw, me, 0x86DD, ipv6_udp("2001:db8:1::11", "2001:db8:1::12", 4402, 4402, f"ok6-{t}".encode())),
        ether(gw, me, 0x86DD, ipv6_udp("2001:db8:1::99", "2001:db8:1::12", 4402, 4402, f"ip6-{t}".encode())),
    ]
    before = lab.counters("h1")
    got = _listen_while(lab, ["red2"], 4401, lambda: lab.send_frames("red1", "eth0", frames))
    got6 = _listen_while(lab, ["red2"], 4402, lambda: lab.send_frames("red1", "eth0", frames6), family=6)
    after = lab.counters("h1")
    assert got["red2"] == [f"ok-{t}"]
    assert got6["red2"] == [f"ok6-{t}"]
    assert delta(before["drops"], after["drops"], "spoof-ip") == 2
    assert delta(before["drops"], after["drops"], "spoof-mac") == 1
    assert after["ports"]["red1"]["drops"] - before["ports"]["red1"]["drops"] >= 3


def _labels(lab: RunningLab, host: str) -> dict[int, dict]:
    return {e["label"]: e for e in lab.api(host, "/v1/fib")["labels"]}


def test_r13_2_tunnel_source_and_label_checked(main_lab: RunningLab) -> None:
    """R13.2: a namespace on the underlay bridge that is not a vPE (198.18.0.99)
    sends MPLS-in-UDP to h2 with h2's real red VRF label and an inner packet
    for red2: dropped (underlay-unknown-source), while the very same packet
    from h1's address is delivered (control). A packet claiming to come from
    h1 but carrying a label h2 never allocated (one of h3's) is dropped
    (unknown-label). At h3, a per-endpoint (port) label is honoured only for
    inner sources routed via the sending vPE: claiming h1 with spoke2's
    address (routed via h2) is dropped (ingress-check), with spoke1's
    (routed via h1) it is delivered to the hub VM."""
    lab = main_lab
    rogue = "198.18.0.99"
    lab.add_underlay_node("rogue", rogue)
    h1, h2, h3 = (lab.underlay(h) for h in ("h1", "h2", "h3"))
    l2, l3 = _labels(lab, "h2"), _labels(lab, "h3")
    red_label = next(lab_ for lab_, e in l2.items() if e["kind"] == "vrf" and e["target"] == "red")
    foreign = sorted(set(l3) - set(l2))
    assert foreign, (l2, l3)
    t = uuid.uuid4().hex[:6]

    def tunnelled(src: str, dst: str, label: int, inner: bytes) -> str:
        return ipv4_udp(src, dst, 50000, 6635, mpls(label) + inner).hex()

    def inner(payload: str) -> bytes:
        return ipv4_udp("192.0.2.11", "192.0.2.12", 4403, 4403, payload.encode())

    before = lab.drops("h2")

    def send() -> None:
        lab.py("h1", RAW_SEND, tunnelled(h1, h2, red_label, inner(f"ctl-{t}")))
        lab.py("rogue", RAW_SEND, tunnelled(rogue, h2, red_label, inner(f"rogue-{t}")),
               tunnelled(rogue, h2, red_label, inner(f"rogue-{t}")))
        lab.py("rogue", RAW_SEND, *[tunnelled(h1, h2, label, inner(f"label-{t}")) for label in foreign[:2]])

    got = _listen_while(lab, ["red2"], 4403, send)
    after = lab.drops("h2")
    assert got["red2"] == [f"ctl-{t}"]
    assert delta(before, after, "underlay-unknown-source") == 2
    assert delta(before, after, "unknown-label") == len(foreign[:2])

    # per-endpoint label of the hub VM at h3: the ingress check
    hub_label = next(lab_ for lab_, e in l3.items() if e["kind"] == "port" and e["target"] == "hub")
    before3 = lab.drops("h3")

    def send_hub() -> None:
        good = ipv4_udp("203.0.113.211", "203.0.113.197", 4404, 4404, f"hub-ok-{t}".encode())
        bad = ipv4_udp("203.0.113.212", "203.0.113.197", 4404, 4404, f"hub-bad-{t}".encode())
        lab.py("rogue", RAW_SEND, tunnelled(h1, h3, hub_label, good), tunnelled(h1, h3, hub_label, bad))

    got = _listen_while(lab, ["hub"], 4404, send_hub)
    assert got["hub"] == [f"hub-ok-{t}"]
    assert delta(before3, lab.drops("h3"), "ingress-check") == 1


def test_r13_3_no_impersonation_in_steady_state(main_lab: RunningLab) -> None:
    """R13.3: red1 tries to pass for red2 (another host) and red4 (its own host):
    packets with their addresses (with red1's MAC or with the victim's MAC)
    and gratuitous ARP claiming 192.0.2.12 are dropped and counted (spoof-ip,
    spoof-mac, spoof-arp); nothing reaches the targeted peers. Afterwards
    red4's neighbour entry for 192.0.2.12 is still the gateway MAC, the VRF
    still routes 192.0.2.12 to h2 only, and traffic to 192.0.2.12 reaches red2,
    never red1."""
    lab = main_lab
    me, gw = lab.mac("red1"), GATEWAY_MAC
    t = uuid.uuid4().hex[:6]
    frames = [
        ether(gw, me, 0x0800, ipv4_udp("192.0.2.12", "192.0.2.14", 4405, 4405, f"as-red2-{t}".encode())),
        ether(gw, lab.mac("red2"), 0x0800, ipv4_udp("192.0.2.12", "192.0.2.14", 4405, 4405, f"as-red2mac-{t}".encode())),
        ether(gw, me, 0x0800, ipv4_udp("192.0.2.14", "192.0.2.12", 4405, 4405, f"as-red4-{t}".encode())),
        arp_frame(me, "192.0.2.12", "192.0.2.12"),  # gratuitous ARP for red2's address
        arp_frame(me, "192.0.2.12", "192.0.2.14"),
    ]
    assert lab.reaches("red4", "192.0.2.12", count=1)  # red4 has a neighbour entry for red2's address
    before = lab.drops("h1")
    got = _listen_while(lab, ["red2", "red4"], 4405, lambda: lab.send_frames("red1", "eth0", frames))
    after = lab.drops("h1")
    assert got == {"red2": [], "red4": []}
    assert delta(before, after, "spoof-ip") == 2
    assert delta(before, after, "spoof-mac") == 1
    assert delta(before, after, "spoof-arp") == 2

    assert lab.neighbours("red4").get("192.0.2.12") == GATEWAY_MAC
    entries = lab.api("h1", "/v1/vpns/red")["table"]["192.0.2.12/32"]
    assert [e["next_hop"] for e in entries] == [lab.underlay("h2")]
    got = _listen_while(lab, ["red2", "red1"], 4406, lambda: lab.send_udp("red4", "192.0.2.12", 4406, f"to-red2-{t}"))
    assert got == {"red2": [f"to-red2-{t}"] * 3, "red1": []}
