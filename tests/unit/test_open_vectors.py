"""OPEN, NOTIFICATION and negotiation against real captures (tests/vectors).

The captures were taken between GoBGP, FRR, BIRD and ExaBGP (see
manifest.json); tshark's dissection sits beside each one. Every OPEN must
decode to the fields and capability codes tshark saw, survive our
re-encoding, and the two OPENs of each session must negotiate to what the
two daemons evidently agreed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import dpkt
import pytest

from vpe.bgp import fsm as F
from vpe.bgp.wire import capabilities as c
from vpe.bgp.wire.constants import IPV4_LABELED, RTC, VPNV4, VPNV6, MessageType
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.header import MessageReader
from vpe.bgp.wire.notification import Notification
from vpe.bgp.wire.open import Open, negotiate

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
CAPTURES = sorted(p.stem for p in VECTORS.glob("*.pcap"))
CTX = DEFAULT_CONTEXT
Endpoint = str  # "ip:port"


def _streams(pcap: Path) -> dict[tuple[Endpoint, Endpoint], bytes]:
    """TCP payload per direction, reassembled by sequence number."""
    segs: dict[tuple[Endpoint, Endpoint], dict[int, bytes]] = defaultdict(dict)
    base: dict[tuple[Endpoint, Endpoint], int] = {}
    with pcap.open("rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            if not tcp.data:
                continue
            src = f"{dpkt.utils.inet_to_str(ip.src)}:{tcp.sport}"
            dst = f"{dpkt.utils.inet_to_str(ip.dst)}:{tcp.dport}"
            flow = (src, dst)
            start = base.setdefault(flow, tcp.seq)
            segs[flow].setdefault((tcp.seq - start) & 0xFFFFFFFF, bytes(tcp.data))
    return {flow: b"".join(d[k] for k in sorted(d)) for flow, d in segs.items()}


def _messages(stream: bytes) -> list[tuple[int, bytes]]:
    r = MessageReader(max_len=65535)
    r.feed(stream)
    out = []
    for _ in range(10000):
        m = r.next_message()
        if m is None:
            break
        out.append(m)
    return out


def _decoded(name: str) -> dict[Endpoint, list[Any]]:
    """Sender -> its OPENs and NOTIFICATIONs, decoded by vpe, in order."""
    out: dict[Endpoint, list[Any]] = defaultdict(list)
    for (src, _dst), data in _streams(VECTORS / f"{name}.pcap").items():
        for t, body in _messages(data):
            if t == MessageType.OPEN:
                out[src].append(Open.decode(body, CTX))
            elif t == MessageType.NOTIFICATION:
                out[src].append(Notification.decode(body, CTX))
    return out


def _listify(x: Any) -> list[Any]:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _tshark_opens(name: str) -> list[tuple[Endpoint, dict[str, Any]]]:
    d = json.loads((VECTORS / f"{name}.tshark.json").read_text())
    return [
        (f["src"], b)
        for f in d["frames"]
        for b in _listify(f.get("bgp"))
        if b.get("bgp.type") == "1"
    ]


def _tshark_cap_codes(b: dict[str, Any]) -> list[int]:
    params = _listify(b.get("bgp.open.opt", {}).get("bgp.open.opt.param"))
    return [int(cap["bgp.cap.type"]) for p in params for cap in _listify(p.get("bgp.cap"))]


@pytest.mark.parametrize("name", CAPTURES)
def test_opens_match_tshark(name: str) -> None:
    ours = _decoded(name)
    theirs = _tshark_opens(name)
    assert theirs, f"{name}: tshark saw no OPEN"
    for src, b in theirs:
        opens = [m for m in ours[src] if isinstance(m, Open)]
        assert len(opens) == 1, f"{name}: {src} sent {len(opens)} OPENs"
        o = opens[0]
        assert o.my_as == int(b["bgp.open.myas"])
        assert o.hold_time == int(b["bgp.open.holdtime"])
        assert str(o.bgp_id) == b["bgp.open.identifier"]
        assert [cap.code for cap in o.capabilities] == _tshark_cap_codes(b)
        # every capability vpe knows decodes to its class, not the opaque one
        for cap in o.capabilities:
            if cap.code in c.CAPABILITIES and cap.code != c.CapabilityCode.ADD_PATH:
                assert not isinstance(cap, c.UnknownCapability), cap
        assert Open.decode(o.encode(CTX), CTX) == o
        assert o.to_json()["bgp_id"] == b["bgp.open.identifier"]


def _session(name: str) -> tuple[Open, Open]:
    ours = _decoded(name)
    opens = [m for msgs in ours.values() for m in msgs if isinstance(m, Open)]
    assert len(opens) == 2
    return opens[0], opens[1]


@pytest.mark.parametrize(
    ("name", "families", "addpath"),
    [
        ("gobgp_frr_vpn", {VPNV4, VPNV6}, set()),
        ("gobgp_bird_vpn_lu", {VPNV4, VPNV6, IPV4_LABELED}, set()),
        ("gobgp_gobgp_rtc", {VPNV4, RTC}, set()),
        ("gobgp_gobgp_addpath", None, "some"),
        ("exabgp_gobgp_addpath_vpn", None, "some"),
    ],
)
def test_negotiation_of_captured_sessions(name: str, families: Any, addpath: Any) -> None:
    a, b = _session(name)
    ab, ba = negotiate(a, b), negotiate(b, a)
    assert ab.families == ba.families and ab.families
    if families is not None:
        assert families <= ab.families
    assert ab.hold_time == ba.hold_time == min(a.hold_time, b.hold_time)
    assert ab.asn4 and ab.ibgp == (a.asn == b.asn)
    # directions mirror each other
    assert ab.addpath_send == ba.addpath_receive and ab.addpath_receive == ba.addpath_send
    assert ab.tx_context().addpath == ba.rx_context().addpath
    if addpath == "some":
        assert ab.addpath_send | ab.addpath_receive


@pytest.mark.parametrize("name", CAPTURES)
def test_fsm_accepts_each_captured_open(name: str) -> None:
    """Our FSM, configured as the receiving daemon was, takes the peer's OPEN."""
    a, b = _session(name)
    for local, remote in ((a, b), (b, a)):
        cfg = F.FsmConfig(
            local_as=local.asn,
            router_id=local.bgp_id,
            peer_as=remote.asn,
            capabilities=tuple(x for x in local.capabilities if not isinstance(x, c.FourOctetAS)),
        )
        m = F.BgpFsm(cfg, random=lambda: 0.0)
        m.handle(F.ManualStart(), 0)
        m.handle(F.TcpCrAcked(), 0)
        m.handle(F.BGPOpen(remote), 1)
        assert m.state is F.State.OPENCONFIRM, m.last_reason


def test_captured_cease_notifications() -> None:
    seen = []
    for name in CAPTURES:
        for msgs in _decoded(name).values():
            seen += [m for m in msgs if isinstance(m, Notification)]
    assert seen
    for n in seen:
        assert (n.code, n.subcode) == (6, 3)
        assert n.reason.startswith("Cease / Peer De-configured")
