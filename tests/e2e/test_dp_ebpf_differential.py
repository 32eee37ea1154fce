"""Differential test: the eBPF programs against the userspace pipeline, packet by packet.

The same FIB is compiled into the programs' maps and programmed into the
reference pipeline (:class:`vpe.dataplane.userspace.pipeline.Forwarder`); a
few hundred crafted frames (every fast-path feature, the slow-path classes,
malformed and hostile ones) go through both. The kernel side runs with
``BPF_PROG_TEST_RUN`` (no device, no namespace), so what each program does
to the frame is seen exactly:

* forwarded by the kernel (TC_ACT_REDIRECT): the frame equals the pipeline's
  output byte for byte; for MPLS-in-UDP everything from the UDP header on is
  identical (source port included: both use zlib's CRC-32 of the flow key)
  and the outer IPv4 header has the same addresses, protocol, length and a
  valid checksum (its identification differs: the kernel picks one, the
  userspace path leaves it to the raw socket);
* dropped by the kernel: the pipeline drops it too, for the same reason;
* punted: the copy that reaches the forwarder process is the frame itself
  (the slow path is then the pipeline, by construction);
* left to the stack (underlay program, TC_ACT_OK): the forwarder's sockets
  get it, which is the userspace path again.

Needs root (loading BPF programs) and clang/libbpf-dev (building them).
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_lab import ebpf_missing

from vpe.dataplane.driver import LabelEntry, NextHop, Peer, Port, Route, State
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.pipeline import Forwarder, ToPort, ToUnderlay

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root"),
    pytest.mark.skipif(ebpf_missing() is not None, reason=str(ebpf_missing())),
]

MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"
MAC_PAIR = "02:00:00:00:00:99"
GW = "02:00:5e:00:00:01"
UL4 = "198.18.0.1"
UL6 = "2001:db8:ffff::1"
IFX = {"a": 1, "b": 2}
R4 = [f"198.18.0.{i}" for i in (2, 3, 4, 5)]


def fib() -> State:
    a = Port(
        "a", "vpa", "red", MAC_A, ips=("192.0.2.10/24", "2001:db8:1::10/64"),
        gateway_ips=("192.0.2.1", "2001:db8:1::1"), allowed_pairs=(("192.0.2.128/25", MAC_PAIR),),
    )  # fmt: skip
    b = Port("b", "vpb", "red", MAC_B, ips=("192.0.2.11/24", "2001:db8:1::11/64"), mtu=1400)
    rem = NextHop.remote(R4[0], 1002)
    routes = [
        Route("red", "192.0.2.10/32", (NextHop.local("a"),)),
        Route("red", "192.0.2.11/32", (NextHop.local("b"),)),
        Route("red", "2001:db8:1::10/128", (NextHop.local("a"),)),
        Route("red", "2001:db8:1::11/128", (NextHop.local("b"),)),
        Route("red", "192.0.2.20/32", (rem,)),
        Route("red", "2001:db8:1::20/128", (rem,)),
        Route("red", "203.0.113.0/24", tuple(NextHop.remote(e, 2000 + i) for i, e in enumerate(R4))),
        Route("red", "2001:db8:2::/64", tuple(NextHop.remote(e, 2100 + i) for i, e in enumerate(R4))),
        Route("red", "198.51.100.0/25", tuple(NextHop.remote(e, 2200 + i) for i, e in enumerate(R4[:3])),
              "per-prefix"),
        Route("red", "198.51.100.128/25", tuple(NextHop.remote(e, 2300 + i) for i, e in enumerate(R4[:2])),
              "per-packet"),
        Route("red", "192.0.2.30/32", (NextHop.remote(R4[1], 1030, "mpls-in-gre"),)),
        Route("red", "192.0.2.40/32", (NextHop.remote("2001:db8:ffff::2", 1040),)),
        # a VM that moved away to R4[2] (docs/mobility.md): local repair in the slow path
        Route("red", "192.0.2.50/32", (NextHop.remote(R4[2], 1050),), moved=True),
        # Inter-AS option C (R10.2): label stacks pushed in the kernel, UDP and GRE, ECMP
        Route("red", "192.0.2.60/32", (NextHop.remote(R4[3], 1060, outer=(7001,)),)),
        Route("red", "192.0.2.61/32", (NextHop.remote(R4[1], 1061, "mpls-in-gre", outer=(7001, 7002)),)),
        Route("red", "2001:db8:1::60/128", (NextHop.remote(R4[3], 1060, outer=(7001,)),)),
        Route("red", "192.0.2.64/26", (NextHop.remote(R4[0], 2400, outer=(7010,)),
                                       NextHop.remote(R4[1], 2401, "mpls-in-gre", outer=(7011,)))),
        # more specific routes under an aggregate of ours (R10.3): re-tunnelled once
        Route("red", "192.0.2.70/32", (NextHop.remote(R4[1], 1070),), transit=True),
        Route("red", "192.0.2.71/32", (NextHop.remote(R4[3], 1071, "mpls-in-gre", outer=(7020,)),),
              transit=True),
    ]  # fmt: skip
    return State(
        ports=(a, b),
        routes=tuple(routes),
        labels=(LabelEntry(1001, "vrf", "red"), LabelEntry(1005, "port", "a"),
                # our loopback's labeled-unicast label, transit labeled-unicast swaps that
                # grow (one more label), shrink (UDP -> GRE) and keep the stack's size
                LabelEntry.pop(5000),
                LabelEntry.swap(5001, NextHop.remote(R4[3], 7100, outer=(7101,))),
                LabelEntry.swap(5002, NextHop.remote(R4[1], 7200, "mpls-in-gre")),
                LabelEntry.swap(5003, NextHop.remote(R4[2], 7300))),
        peers=(Peer("198.18.0.9"),),
    )


def mac(t: str) -> bytes:
    return bytes.fromhex(t.replace(":", ""))


def ip(t: str) -> bytes:
    return ipaddress.ip_address(t).packed


def l4(proto: int, rnd: random.Random, n: int) -> bytes:
    body = bytes(rnd.getrandbits(8) for _ in range(n))
    if proto in (6, 17):
        hdr = struct.pack("!HH", rnd.randrange(1, 65536), rnd.randrange(1, 65536))
        if proto == 6:
            return hdr + bytes(8) + b"\x50\x10\xff\xff" + bytes(4) + body
        return hdr + struct.pack("!HH", 8 + n, 0) + body
    return bytes([8, 0, 0, 0]) + body  # ICMP(v6) echo-ish


def v4(src: str, dst: str, proto: int, rnd: random.Random, n: int, ttl: int = 64, df: bool = True) -> bytes:
    payload = l4(proto, rnd, n)
    return P.build_ipv4_header(ip(src), ip(dst), proto, len(payload), ttl=ttl, df=df,
                               ident=rnd.randrange(65536)) + payload  # fmt: skip


def v6(src: str, dst: str, proto: int, rnd: random.Random, n: int, ttl: int = 64) -> bytes:
    if proto == 1:
        proto = 58
        payload = bytes([128, 0, 0, 0]) + bytes(n)
    else:
        payload = l4(proto, rnd, n)
    return P.build_ipv6_header(ip(src), ip(dst), proto, len(payload), hlim=ttl) + payload


def eth(src: str, pkt: bytes, dst: str = GW) -> bytes:
    return mac(dst) + mac(src) + struct.pack("!H", 0x0800 if pkt[0] >> 4 == 4 else 0x86DD) + pkt


def port_frames(rnd: random.Random) -> Iterator[tuple[str, bytes]]:
    dsts4 = ["192.0.2.11", "192.0.2.20", "192.0.2.30", "192.0.2.40", "192.0.2.9", "192.0.2.1",
             "192.0.2.255", "224.0.0.5", "255.255.255.255", "198.51.100.200",
             "192.0.2.60", "192.0.2.61", "192.0.2.60", "192.0.2.61"]  # fmt: skip
    dsts6 = ["2001:db8:1::11", "2001:db8:1::20", "2001:db8:1::99", "2001:db8:1::1", "ff02::1",
             "2001:db8:1::60", "2001:db8:1::60"]  # fmt: skip
    for i in range(120):
        proto = rnd.choice((1, 6, 17))
        n = rnd.choice((0, 18, 200, 1300, 1372, 1380, 1440, 1460))
        ttl = rnd.choice((64, 64, 64, 2, 1))
        d4 = rnd.choice([*dsts4, f"203.0.113.{rnd.randrange(1, 255)}", f"198.51.100.{rnd.randrange(1, 127)}",
                         f"192.0.2.{rnd.randrange(64, 128)}"])
        yield f"v4 #{i} {proto} {d4} {n} ttl {ttl}", eth(MAC_A, v4("192.0.2.10", d4, proto, rnd, n, ttl,
                                                                        df=rnd.random() < 0.8))
        d6 = rnd.choice([*dsts6, f"2001:db8:2::{rnd.randrange(1, 65535):x}"])
        yield f"v6 #{i} {proto} {d6} {n} hl {ttl}", eth(MAC_A, v6("2001:db8:1::10", d6, proto, rnd, n, ttl))
    for _ in range(20):  # spoofed sources, pair addresses, wrong MACs
        src = rnd.choice(("192.0.2.77", "192.0.2.200", "203.0.113.5"))
        yield f"spoof-ip {src}", eth(MAC_A, v4(src, "192.0.2.20", 17, rnd, 40))
        yield "spoof-mac", eth("02:00:00:00:00:42", v4("192.0.2.10", "192.0.2.20", 17, rnd, 40))
        yield "pair-mac", eth(MAC_PAIR, v4("192.0.2.200", "192.0.2.20", 17, rnd, 40))
        yield "spoof-ip6", eth(MAC_A, v6("2001:db8:1::77", "2001:db8:1::20", 17, rnd, 40))
    arp = P.build_arp(1, mac(MAC_A), ip("192.0.2.10"), bytes(6), ip("192.0.2.1"))
    yield "arp", mac("ff:ff:ff:ff:ff:ff") + mac(MAC_A) + b"\x08\x06" + arp
    yield "link-local", eth(MAC_A, v6("fe80::1", "2001:db8:1::20", 17, rnd, 20))
    opts = bytearray(v4("192.0.2.10", "192.0.2.20", 17, rnd, 20))
    yield "ipv4-options", eth(MAC_A, bytes(opts[:0]) + b"\x46" + bytes(opts[1:20]) + b"\x01\x01\x01\x01" + bytes(opts[20:]))
    yield "truncated", eth(MAC_A, v4("192.0.2.10", "192.0.2.20", 17, rnd, 100))[:60]
    # (BPF_PROG_TEST_RUN wants a whole IPv4 header: shorter ones cannot be run)
    yield "bad total length", mac(GW) + mac(MAC_A) + b"\x08\x00\x45\x00\x00\x08" + bytes(17)
    yield "ethertype", mac(GW) + mac(MAC_A) + b"\x88\xcc" + bytes(46)
    # DHCPv4 DISCOVER from 0.0.0.0 (R9.1): the slow path answers it
    bootp = (bytes([1, 1, 6, 0, 0, 0, 0, 7]) + bytes(20) + mac(MAC_A) + bytes(202) + b"\x63\x82\x53\x63"
             + bytes([53, 1, 1, 255]))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    yield "dhcp discover", eth(MAC_A, P.build_ipv4_header(ip("0.0.0.0"), ip("255.255.255.255"), 17, len(udp)) + udp,
                               dst="ff:ff:ff:ff:ff:ff")


def tunnel(src: str, label: int | list[int], inner: bytes, bos: bool = True, gre: bool = False,
           ttl: int = 63) -> bytes:
    """A tunnel frame from ``src``: one label, or a stack (outermost first, the last one bottom)."""
    labels = label if isinstance(label, list) else [label]
    lse = b"".join(struct.pack("!I", (x << 12) | (0x100 if bos and i == len(labels) - 1 else 0) | ttl)
                   for i, x in enumerate(labels))
    if gre:
        shim, proto = struct.pack("!HH", 0, 0x8847), 47
    else:
        shim, proto = struct.pack("!HHHH", 50000, 6635, 8 + 4 + len(inner), 0), 17
    body = shim + lse + inner
    return mac("02:00:00:00:aa:01") + mac("02:00:00:00:aa:02") + b"\x08\x00" + P.build_ipv4_header(
        ip(src), ip(UL4), proto, len(body)) + body  # fmt: skip


def underlay_frames(rnd: random.Random) -> Iterator[tuple[str, bytes]]:
    for i in range(60):
        proto = rnd.choice((1, 6, 17))
        ttl = rnd.choice((64, 64, 2, 1))
        d4 = rnd.choice(("192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.255", "224.0.0.9"))
        yield f"decap v4 #{i} {d4} ttl {ttl}", tunnel(R4[0], 1001, v4("192.0.2.20", d4, proto, rnd,
                                                                       rnd.choice((10, 500, 1390)), ttl))
        d6 = rnd.choice(("2001:db8:1::10", "2001:db8:1::11", "2001:db8:1::20"))
        yield f"decap v6 #{i} {d6}", tunnel(R4[0], 1001, v6("2001:db8:1::20", d6, proto, rnd, 64, ttl))
        yield f"decap gre #{i} {d4}", tunnel(R4[1], 1001, v4("192.0.2.30", d4, proto, rnd, 100, ttl), gre=True)
        yield f"port label #{i}", tunnel(R4[0], 1005, v4("192.0.2.20", "192.0.2.10", proto, rnd, 30, ttl))
        yield f"ingress check #{i}", tunnel("198.18.0.9", 1005, v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        yield f"unknown label #{i}", tunnel(R4[1], 77777, v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        yield f"unknown source #{i}", tunnel("198.18.0.77", 1001, v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        yield f"moved #{i} ttl {ttl}", tunnel(R4[0], 1001, v4("192.0.2.20", "192.0.2.50", proto, rnd, 60, ttl))
        yield f"moved, back to its sender #{i}", tunnel(R4[2], 1001, v4("192.0.2.20", "192.0.2.50", proto, rnd, 60))
    yield "label stack", tunnel(R4[0], 1001, v4("192.0.2.20", "192.0.2.10", 17, rnd, 30), bos=False)
    yield from stack_frames(rnd)
    yield "not ip", tunnel(R4[0], 1001, b"\x00" * 40)
    keyed = tunnel(R4[1], 1001, v4("192.0.2.30", "192.0.2.10", 17, rnd, 30), gre=True)
    yield "gre with a key", keyed[:34] + b"\x20\x00\x88\x47" + bytes(4) + keyed[38:]


#: the new kernel paths of label stacks and aggregate transit, by the name prefix of their frames
STACK_PATHS = ("pop", "swap", "transit")


def stack_frames(rnd: random.Random) -> Iterator[tuple[str, bytes]]:
    """Inter-AS option C (R10.2) and aggregate transit (R10.3) from the underlay."""
    for i in range(16):
        proto = rnd.choice((1, 6, 17))
        ttl = rnd.choice((64, 64, 64, 2, 1))
        gre = rnd.random() < 0.5
        n = rnd.choice((10, 500, 1380))
        d4 = rnd.choice(("192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.255"))
        # our loopback's label above the VPN label: popped, the VPN label decides
        yield f"pop vrf #{i} {d4} ttl {ttl}", tunnel(R4[0] if not gre else R4[1], [5000, 1001],
                                                     v4("192.0.2.20", d4, proto, rnd, n, ttl), gre=gre)
        yield f"pop v6 #{i}", tunnel(R4[0], [5000, 1001], v6("2001:db8:1::20", "2001:db8:1::11", proto, rnd, 64, ttl))
        yield f"pop port #{i}", tunnel(R4[0], [5000, 1005], v4("192.0.2.20", "192.0.2.10", proto, rnd, 30, ttl))
        yield f"pop ingress check #{i}", tunnel("198.18.0.9", [5000, 1005], v4("192.0.2.20", "192.0.2.10", proto,
                                                                                rnd, 30))  # fmt: skip
        yield f"pop unknown label #{i}", tunnel(R4[1], [5000, 77777], v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        yield f"pop twice #{i}", tunnel(R4[0], [5000, 5000, 1001], v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        # a transit labeled-unicast hop: the top label swapped, the VPN label travels on
        lbl = rnd.choice((5001, 5002, 5003))
        yield f"swap {lbl} #{i} gre {gre} ttl {ttl}", tunnel(
            R4[0] if not gre else R4[1], [lbl, 1234], v4("192.0.2.20", "203.0.113.9", proto, rnd, n), gre=gre,
            ttl=ttl)  # fmt: skip
        yield f"swap deep #{i}", tunnel(R4[0], [5001, 1234, 1235], v6("2001:db8:1::20", "2001:db8:3::1", proto,
                                                                       rnd, 40))  # fmt: skip
        yield f"unknown top label #{i}", tunnel(R4[0], [6000, 1001], v4("192.0.2.20", "192.0.2.10", proto, rnd, 30))
        # an aggregate's label, the more specific route on another vPE (R10.3)
        d = rnd.choice(("192.0.2.70", "192.0.2.71"))
        yield f"transit #{i} {d} ttl {ttl}", tunnel(R4[0], 1001, v4("192.0.2.20", d, proto, rnd, n, ttl), gre=gre)
        yield f"transit pop #{i} {d}", tunnel(R4[2], [5000, 1001], v4("192.0.2.20", d, proto, rnd, 60))
        yield f"transit back to its sender #{i}", tunnel(R4[1], 1001, v4("192.0.2.20", "192.0.2.70", proto, rnd, 60))
    big = v4("192.0.2.20", "192.0.2.71", 17, random.Random(1), 1440)
    yield "transit too big", tunnel(R4[0], 1001, big)


def valid_ipv4_checksum(h: bytes) -> bool:
    return P.checksum(h[:20]) == 0


@pytest.fixture(scope="module")
def programs() -> Iterator[dict[str, Any]]:
    from vpe.dataplane.ebpf import build
    from vpe.dataplane.ebpf import libbpf as B
    from vpe.dataplane.ebpf import maps as M

    obj = B.BpfObject(str(build.ensure_built()))
    try:
        state = fib()
        compiled = M.compile_tables(state, M.Ids(), lambda p: IFX[p.name], 1500)
        for name in M.FIB_MAPS:
            m = obj.map(name)
            for k, v in compiled.tables[name].items():
                m.update(k, v)
        obj.map("cfg").update(M.U32.pack(0), M.CFG.pack(1, 1, 1, 0, ip(UL4), ip(UL6)))
        punted: list[bytes] = []
        perf = B.PerfBuffer(obj.map("punt_events"), punted.append, lambda _n: None)
        yield {
            "obj": obj, "B": B, "M": M, "perf": perf, "punted": punted,
            "port": obj.program_fd("vpe_port"), "underlay": obj.program_fd("vpe_underlay"),
            "drops": obj.map("drops"), "ncpus": B.possible_cpus(),
        }  # fmt: skip
        perf.close()
    finally:
        obj.close()


def kernel_drops(pr: dict[str, Any]) -> dict[str, int]:
    out = {}
    for i, reason in enumerate(pr["M"].DROP_REASONS):
        raw = pr["drops"].lookup(struct.pack("<I", i), 8 * pr["ncpus"])
        out[reason] = sum(struct.unpack(f"<{pr['ncpus']}Q", raw))
    return out


def run(pr: dict[str, Any], prog: str, frame: bytes) -> tuple[int, bytes, dict[str, int], list[bytes]]:
    before = kernel_drops(pr)
    pr["punted"].clear()
    rc, out, _ns = pr["B"].test_run(pr[prog], frame)
    pr["perf"].consume()
    after = kernel_drops(pr)
    return rc, out, {k: after[k] - before[k] for k in after if after[k] != before[k]}, list(pr["punted"])


def check_punt(frame: bytes, punted: list[bytes], pr: dict[str, Any], what: str) -> None:
    M = pr["M"]
    assert len(punted) == 1, f"{what}: punted {len(punted)} copies"
    _ifx, reason, length, _mtu = M.PUNT_META.unpack_from(punted[0])
    cap = M.PUNT_QUOTE if reason == M.P_TOO_BIG else M.PUNT_MAX
    assert length == len(frame)
    assert punted[0][16 : 16 + min(length, cap)] == frame[:cap], f"{what}: punted copy differs"


def test_ebpf_programs_match_the_userspace_pipeline(programs: dict[str, Any]) -> None:
    """Every crafted frame: kernel output == pipeline output, or the same drop, or a faithful punt."""
    pr = programs
    B = pr["B"]
    ref = Forwarder([UL4, UL6], 1500)
    ref.full_sync(fib())
    rnd = random.Random(9)
    tally = {"redirect": 0, "drop": 0, "punt": 0, "to-stack": 0}
    kernel_paths = dict.fromkeys(("push", *STACK_PATHS), 0)
    repaired = 0
    frames = [("port", w, f) for w, f in port_frames(rnd)] + [("underlay", w, f) for w, f in underlay_frames(rnd)]
    assert len(frames) >= 300
    for side, what, frame in frames:
        drops_before = dict(ref.drops)
        outs = ref.from_port("a", frame) if side == "port" else ref.from_underlay_ip(frame[14:])
        ref_drops = {k: v - drops_before.get(k, 0) for k, v in ref.drops.items() if v != drops_before.get(k, 0)}
        rc, out, kdrops, punted = run(pr, "port" if side == "port" else "underlay", frame)
        if what.startswith("moved"):
            # the kernel leaves a moved VM's traffic to the slow path, which re-tunnels it
            # toward the VM's new host (inner TTL - 1), never back to its sender
            assert rc == B.TC_ACT_OK, f"{what}: return code {rc}"
            if "back to its sender" in what:
                assert not outs and ref_drops == {"redirect-loop": 1}, (what, ref_drops)
            elif "ttl 1" not in what:
                (where, data), = outs
                assert isinstance(where, ToUnderlay) and str(where.endpoint) == R4[2], what
                assert struct.unpack("!I", bytes(data[8:12]))[0] >> 12 == 1050, what
                repaired += 1
        if what == "dhcp discover":
            assert rc == B.TC_ACT_SHOT and not kdrops, what  # punted: the slow path offers the lease
            (where, _data), = outs
            assert isinstance(where, ToPort) and where.name == "a", what
        if rc == B.TC_ACT_REDIRECT:
            tally["redirect"] += 1
            assert len(outs) == 1, f"{what}: kernel forwarded, userspace gave {outs}"
            where, data = outs[0]
            if isinstance(where, ToPort):
                assert out == bytes(data), f"{what}: frame to {where.name} differs"
            else:
                assert isinstance(where, ToUnderlay) and where.proto in (17, 47), what
                outer = out[14:34]
                assert out[12:14] == b"\x08\x00" and valid_ipv4_checksum(outer), what
                assert outer[12:16] == ip(UL4) and outer[9] == where.proto and outer[8] == 64, what
                assert struct.unpack("!H", outer[2:4])[0] == 20 + len(data), what
                if "198.51.100." in what and int(what.split()[3].split(".")[-1]) >= 128:
                    # per-packet ECMP: both rotate, each over its own sequence
                    assert str(ipaddress.ip_address(outer[16:20])) in R4, what
                    assert out[34:36] == bytes(data)[0:2], what
                elif what.startswith("swap") and where.proto == 17:
                    # a transit swap keeps the entropy (UDP source port) it arrived with, or
                    # takes the skb's hash; the userspace path hashes the payload itself
                    assert outer[16:20] == ip(where.endpoint), f"{what}: endpoint differs"
                    assert struct.unpack("!H", out[34:36])[0] >= P.FLOW_PORT_MIN, what
                    assert out[36:] == bytes(data)[2:], f"{what}: UDP/MPLS/inner differ"
                else:
                    assert outer[16:20] == ip(where.endpoint), f"{what}: endpoint differs"
                    assert out[34:] == bytes(data), f"{what}: UDP/MPLS/inner differ"
                shim = 8 if where.proto == 17 else 4
                if side == "port" and not struct.unpack("!I", out[34 + shim : 38 + shim])[0] & 0x100:
                    kernel_paths["push"] += 1  # two or three labels pushed in the kernel
            if side == "underlay" and what.startswith(STACK_PATHS):
                kernel_paths[what.split()[0]] += 1
        elif rc == B.TC_ACT_SHOT and kdrops:
            tally["drop"] += 1
            assert not outs, f"{what}: kernel dropped ({kdrops}), userspace forwarded"
            assert set(kdrops) == set(ref_drops), f"{what}: kernel {kdrops} vs userspace {ref_drops}"
        elif rc == B.TC_ACT_SHOT:
            tally["punt"] += 1
            check_punt(frame, punted, pr, what)
        else:
            assert side == "underlay" and rc == B.TC_ACT_OK, f"{what}: return code {rc}"
            tally["to-stack"] += 1
    # every class was exercised
    assert all(tally.values()), tally
    assert tally["redirect"] >= 100, tally
    assert repaired >= 20, repaired
    # the label stack paths ran in the kernel (before: all of them took the userspace path)
    assert kernel_paths["push"] >= 20 and all(v >= 5 for v in kernel_paths.values()), kernel_paths
