"""Read BGP messages out of .pcap / .pcapng captures, two ways.

Why two views: tcpdump decodes every frame on its own (it does not reassemble
TCP), so its ``.out`` file describes the messages *of each frame*; a BGP
session, and vpe's codec behind it, sees the *reassembled byte stream* of each
direction. :func:`read_capture` gives both:

* ``frame_messages`` - each frame's TCP payload split the way tcpdump splits
  it (scan for the 16-octet marker, take ``length`` octets; a message whose
  end lies beyond the frame is a partial one). These line up one to one with
  the messages of the ``.out`` file.
* ``stream_messages`` - each direction reassembled by TCP sequence number,
  then split by the 19-octet header. A capture may start in the middle of a
  stream or lose bytes (snaplen, missing segments): a message cut that way
  is marked ``truncated`` (cut by the capture, not malformed), and the
  splitter re-synchronises on the next marker after the gap.

Only the file readers come from dpkt; link, IP and TCP headers are parsed
here with ``struct`` so that truncated or fuzzed frames never raise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import dpkt

MARKER = b"\xff" * 16
HEADER_LEN = 19
BGP_PORT = 179

# Link-layer header types (https://www.tcpdump.org/linktypes.html); values are
# the LINKTYPE_ numbers found in files, after masking off the FCS bits.
LINKTYPE_NULL = 0  # BSD loopback, host byte order AF_ value
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101
LINKTYPE_PPP_HDLC = 50
LINKTYPE_LOOP = 108  # OpenBSD loopback, network byte order AF_ value
LINKTYPE_LINUX_SLL = 113
LINKTYPE_JUNIPER_ETHER = 178
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_DLT_RAW_ALIASES = (12, 14)  # DLT_RAW on some BSDs

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = (0x8100, 0x88A8, 0x9100)
_AF_INET6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, macOS


@dataclass(frozen=True, slots=True)
class Flow:
    """One direction of one TCP connection."""

    src: str
    sport: int
    dst: str
    dport: int

    def __str__(self) -> str:
        return f"{self.src}.{self.sport} > {self.dst}.{self.dport}"


@dataclass(frozen=True, slots=True)
class Segment:
    """The TCP payload of one captured frame to or from port 179."""

    frame: int  # 1-based, as tcpdump numbers frames
    flow: Flow
    seq: int
    syn: bool
    payload: bytes  # captured octets (at most wire_len)
    wire_len: int  # payload length on the wire, from the IP length fields

    @property
    def cut_by_snaplen(self) -> bool:
        return len(self.payload) < self.wire_len


@dataclass(frozen=True, slots=True)
class BgpMessage:
    """One BGP message found in a capture.

    ``raw`` is header + body as far as captured; when ``truncated`` is set it
    is shorter than ``length`` because the capture (snaplen, a missing
    segment, the end of the file, the end of the frame) cut it, which says
    nothing about the message being malformed.
    """

    flow: Flow
    frame: int  # frame holding the first octet
    offset: int  # offset of the first octet within that frame's payload
    length: int  # the header's length field
    msg_type: int
    raw: bytes
    truncated: bool = False
    spans_frames: bool = False
    index: int = 0  # position within its view (frame view: within the frame)

    @property
    def body(self) -> bytes:
        return self.raw[HEADER_LEN:]


@dataclass(slots=True)
class Capture:
    path: Path
    linktype: int
    segments: list[Segment] = field(default_factory=list)
    frame_count: int = 0
    #: frame number -> messages tcpdump would print for that frame
    frame_messages: dict[int, list[BgpMessage]] = field(default_factory=dict)
    #: reassembled stream messages, in capture order of their first octet
    stream_messages: list[BgpMessage] = field(default_factory=list)
    #: frames whose payload ends inside a message (tcpdump prints "[|BGP ...]")
    partial_frames: list[int] = field(default_factory=list)

    def all_frame_messages(self) -> list[BgpMessage]:
        return [m for f in sorted(self.frame_messages) for m in self.frame_messages[f]]


# -- link and network layers ---------------------------------------------


def _ip_offset(linktype: int, buf: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version hint or 0) for one frame, or None."""
    lt = linktype & 0x03FFFFFF  # upper bits may carry FCS length (pcap-savefile)
    if lt == LINKTYPE_ETHERNET:
        return _ether(buf, 0)
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *_DLT_RAW_ALIASES):
        return (0, 0)
    if lt == LINKTYPE_LINUX_SLL:
        if len(buf) < 16:
            return None
        return _ethertype(struct.unpack_from("!H", buf, 14)[0], buf, 16)
    if lt == LINKTYPE_LINUX_SLL2:
        if len(buf) < 20:
            return None
        return _ethertype(struct.unpack_from("!H", buf, 0)[0], buf, 20)
    if lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(buf) < 4:
            return None
        fam = struct.unpack_from("!I" if lt == LINKTYPE_LOOP else "<I", buf, 0)[0]
        if lt == LINKTYPE_NULL and fam > 0xFFFF:  # written big-endian after all
            fam = struct.unpack_from("!I", buf, 0)[0]
        if fam == 2:
            return (4, 4)
        if fam in _AF_INET6:
            return (4, 6)
        return None
    if lt in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
        off = 2 if buf[:2] == b"\xff\x03" else 0
        if len(buf) < off + 2:
            return None
        proto = struct.unpack_from("!H", buf, off)[0]
        if proto == 0x0021:
            return (off + 2, 4)
        if proto == 0x0057:
            return (off + 2, 6)
        return None
    if lt == LINKTYPE_JUNIPER_ETHER:
        return _juniper_ether(buf)
    return None


def _ethertype(etype: int, buf: bytes, off: int) -> tuple[int, int] | None:
    while etype in _ETH_VLAN and len(buf) >= off + 4:
        etype = struct.unpack_from("!H", buf, off + 2)[0]
        off += 4
    if etype == _ETH_IPV4:
        return (off, 4)
    if etype == _ETH_IPV6:
        return (off, 6)
    return None


def _ether(buf: bytes, off: int) -> tuple[int, int] | None:
    if len(buf) < off + 14:
        return None
    return _ethertype(struct.unpack_from("!H", buf, off + 12)[0], buf, off + 14)


def _juniper_ether(buf: bytes) -> tuple[int, int] | None:
    """Juniper "MGC" pseudo-header, then an Ethernet frame.

    Magic "MGC", one flags octet; with the extension flag (0x80) a 2-octet
    extension length and that many TLV octets follow.
    """
    if len(buf) < 4 or buf[:3] != b"MGC":
        return None
    off = 4
    if buf[3] & 0x80:
        if len(buf) < 6:
            return None
        off = 6 + struct.unpack_from("!H", buf, 4)[0]
    return _ether(buf, off)


def _tcp_segment(frame_no: int, buf: bytes, off: int, version: int) -> Segment | None:
    """Parse IP + TCP at ``off``; None unless TCP to or from port 179."""
    if len(buf) < off + 1:
        return None
    if version == 0:
        version = buf[off] >> 4
    if version == 4:
        if len(buf) < off + 20:
            return None
        ihl = (buf[off] & 0x0F) * 4
        total = struct.unpack_from("!H", buf, off + 2)[0]
        frag = struct.unpack_from("!H", buf, off + 6)[0]
        if buf[off + 9] != 6 or ihl < 20 or frag & 0x1FFF:
            return None
        src = ".".join(str(b) for b in buf[off + 12 : off + 16])
        dst = ".".join(str(b) for b in buf[off + 16 : off + 20])
        l4 = off + ihl
        l4_wire = total - ihl
    elif version == 6:
        if len(buf) < off + 40:
            return None
        plen = struct.unpack_from("!H", buf, off + 4)[0]
        nxt = buf[off + 6]
        src = _v6(buf[off + 8 : off + 24])
        dst = _v6(buf[off + 24 : off + 40])
        l4 = off + 40
        l4_wire = plen
        for _ in range(8):  # bounded walk over extension headers
            if nxt in (0, 43, 60) and len(buf) >= l4 + 2:
                hlen = (buf[l4 + 1] + 1) * 8
                nxt = buf[l4]
                l4 += hlen
                l4_wire -= hlen
            else:
                break
        if nxt != 6:
            return None
    else:
        return None
    if len(buf) < l4 + 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", buf, l4)
    doff = (buf[l4 + 12] >> 4) * 4
    flags = buf[l4 + 13]
    if BGP_PORT not in (sport, dport) or doff < 20:
        return None
    wire_len = max(0, l4_wire - doff)
    start = l4 + doff
    payload = bytes(buf[start : start + wire_len]) if start <= len(buf) else b""
    return Segment(
        frame_no, Flow(src, sport, dst, dport), seq, bool(flags & 0x02), payload, wire_len
    )


def _v6(b: bytes) -> str:
    from ipaddress import IPv6Address

    return str(IPv6Address(bytes(b)))


# -- splitting ------------------------------------------------------------


def split_frame(seg: Segment) -> tuple[list[BgpMessage], bool]:
    """Messages of one frame as tcpdump finds them; second value: frame ends in a partial one.

    Like tcpdump, octets that do not start with a marker are skipped until
    one is found; a message whose ``length`` runs past the captured payload
    is returned with ``truncated`` set.
    """
    data = seg.payload
    out: list[BgpMessage] = []
    pos = 0
    n = len(data)
    partial = False
    while pos < n:
        at = data.find(MARKER, pos)
        if at < 0 or at + HEADER_LEN > n:
            partial = at >= 0
            break
        length = struct.unpack_from("!H", data, at + 16)[0]
        mtype = data[at + 18]
        if length < HEADER_LEN:
            break
        if at + length > n:
            out.append(
                BgpMessage(
                    seg.flow, seg.frame, at, length, mtype, bytes(data[at:]), True, False, len(out)
                )
            )
            partial = True
            break
        out.append(
            BgpMessage(
                seg.flow,
                seg.frame,
                at,
                length,
                mtype,
                bytes(data[at : at + length]),
                False,
                False,
                len(out),
            )
        )
        pos = at + length
    return out, partial


@dataclass(slots=True)
class _Run:
    """Contiguous stream octets, with the frame that supplied each stretch."""

    data: bytearray
    # (stream offset where a frame's octets start, frame number, offset in that frame's payload)
    marks: list[tuple[int, int, int]]
    cut: bool  # ended because the capture lost octets (gap, snaplen, end of file)


def _reassemble(segs: list[Segment]) -> list[_Run]:
    """Contiguous runs of one direction, ordered by sequence number.

    Retransmitted or overlapping octets keep the first copy seen. A segment
    cut by snaplen ends its run (the next octets are unknown); so does a gap
    in sequence space.
    """
    if not segs:
        return []
    base = segs[0].seq + (1 if segs[0].syn else 0)

    def rel(s: Segment) -> int:
        # sequence numbers wrap at 2**32; relative offsets stay small
        r = (s.seq + (1 if s.syn else 0) - base) & 0xFFFFFFFF
        return r - (1 << 32) if r >= 1 << 31 else r

    ordered = sorted((s for s in segs if s.payload), key=lambda s: (rel(s), s.frame))
    runs: list[_Run] = []
    cur: _Run | None = None
    cur_end = 0
    for s in ordered:
        start = rel(s)
        end = start + len(s.payload)
        if cur is not None and start <= cur_end and not cur.cut:
            if end > cur_end:
                skip = cur_end - start
                cur.marks.append((len(cur.data), s.frame, skip))
                cur.data += s.payload[skip:]
                cur_end = end
            if s.cut_by_snaplen and end >= cur_end:
                cur.cut = True
            continue
        if cur is not None and not cur.cut:
            cur.cut = True  # a gap follows: octets were lost
        cur = _Run(bytearray(s.payload), [(0, s.frame, 0)], s.cut_by_snaplen)
        cur_end = end
        runs.append(cur)
    if runs:
        runs[-1].cut = True  # the capture ends; a message may continue beyond it
    return runs


def _locate(run: _Run, pos: int) -> tuple[int, int]:
    frame, foff = run.marks[0][1], run.marks[0][2] + pos
    for start, f, off in run.marks:
        if start > pos:
            break
        frame, foff = f, off + (pos - start)
    return frame, foff


def split_stream(flow: Flow, runs: list[_Run]) -> list[BgpMessage]:
    """Messages of one reassembled direction.

    At the start of every run the splitter seeks the first marker (the
    capture may begin mid-message). Inside a run a header without a marker
    is kept as a one-header message so the codec's framer can reject it the
    way a session would (NOTIFICATION Connection Not Synchronized).
    """
    out: list[BgpMessage] = []
    for run in runs:
        data = bytes(run.data)
        n = len(data)
        pos = data.find(MARKER)
        if pos < 0:
            continue
        while pos < n:
            if pos + HEADER_LEN > n:
                frame, off = _locate(run, pos)
                out.append(BgpMessage(flow, frame, off, 0, 0, data[pos:], True, False, len(out)))
                break
            length = struct.unpack_from("!H", data, pos + 16)[0]
            mtype = data[pos + 18]
            frame, off = _locate(run, pos)
            if data[pos : pos + 16] != MARKER or length < HEADER_LEN:
                # not a message boundary: the session would stop here
                out.append(
                    BgpMessage(
                        flow,
                        frame,
                        off,
                        length,
                        mtype,
                        data[pos : pos + HEADER_LEN],
                        False,
                        False,
                        len(out),
                    )
                )
                nxt = data.find(MARKER, pos + 1)
                if nxt < 0:
                    break
                pos = nxt
                continue
            end = pos + length
            last_frame, _ = _locate(run, min(end, n) - 1)
            if end > n:
                out.append(
                    BgpMessage(
                        flow,
                        frame,
                        off,
                        length,
                        mtype,
                        data[pos:],
                        True,
                        last_frame != frame,
                        len(out),
                    )
                )
                break
            out.append(
                BgpMessage(
                    flow,
                    frame,
                    off,
                    length,
                    mtype,
                    data[pos:end],
                    False,
                    last_frame != frame,
                    len(out),
                )
            )
            pos = end
    return out


# -- files ----------------------------------------------------------------


def _open_reader(fh: BinaryIO) -> dpkt.pcap.Reader | dpkt.pcapng.Reader:
    magic = fh.read(4)
    fh.seek(0)
    if magic == b"\x0a\x0d\x0d\x0a":
        return dpkt.pcapng.Reader(fh)
    return dpkt.pcap.Reader(fh)


def read_capture(path: str | Path) -> Capture:
    """Every BGP message of a capture, per frame and per reassembled stream."""
    path = Path(path)
    with path.open("rb") as fh:
        reader = _open_reader(fh)
        cap = Capture(path, reader.datalink())
        frame_no = 0
        for _ts, buf in reader:
            frame_no += 1
            loc = _ip_offset(cap.linktype, buf)
            if loc is None:
                continue
            seg = _tcp_segment(frame_no, buf, loc[0], loc[1])
            if seg is not None:
                cap.segments.append(seg)
        cap.frame_count = frame_no
    for seg in cap.segments:
        if not seg.payload:
            continue
        msgs, partial = split_frame(seg)
        if msgs:
            cap.frame_messages[seg.frame] = msgs
        if partial:
            cap.partial_frames.append(seg.frame)
    by_flow: dict[Flow, list[Segment]] = {}
    for seg in cap.segments:
        by_flow.setdefault(seg.flow, []).append(seg)
    msgs_all: list[BgpMessage] = []
    for flow, segs in by_flow.items():
        msgs_all.extend(split_stream(flow, _reassemble(segs)))
    msgs_all.sort(key=lambda m: (m.frame, m.offset))
    cap.stream_messages = msgs_all
    return cap


def flows(cap: Capture) -> list[Flow]:
    seen: dict[Flow, None] = {}
    for s in cap.segments:
        seen.setdefault(s.flow, None)
    return list(seen)


def reverse(flow: Flow) -> Flow:
    return Flow(flow.dst, flow.dport, flow.src, flow.sport)
