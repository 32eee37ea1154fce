"""Load the captured BGP test vectors in tests/vectors/ (pcap + tshark JSON).

Why a loader of our own: the vectors are raw TCP captures of real daemons
(see tests/vectors/README.md). To feed vpe's decoder we need the BGP
messages themselves: each TCP direction reassembled by sequence number, then
cut at the 19-octet BGP header. This module does only that -- it knows
nothing about vpe -- and hands out message bodies beside tshark's
independent decode so a test can compare the two.

Messages come out in the order tshark lists them: by the capture frame that
completes the message, then by position within that frame. That makes
``messages(name)[i]`` and ``tshark_messages(name)[i]`` the same message.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import dpkt

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"

BGP_HEADER_LEN = 19
BGP_MARKER = b"\xff" * 16
MAX_SEGMENTS = 100_000  # bound on segments per capture, far above anything we store


class VectorError(ValueError):
    """A capture cannot be turned into BGP messages (bad framing, gap in a stream)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One BGP message from a capture.

    ``direction`` is ``"SRC_IP:PORT->DST_IP:PORT"``; ``type`` the BGP message
    type (1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE, 5 ROUTE-REFRESH);
    ``body`` the octets after the 19-octet header; ``raw`` the whole message.
    ``frame`` is the 1-based capture frame that completed it.
    """

    direction: str
    type: int
    body: bytes
    raw: bytes
    frame: int


@dataclass(frozen=True, slots=True)
class Capture:
    """One entry of tests/vectors/manifest.json."""

    name: str
    pcap: Path
    tshark: Path
    rib: Path | None
    bgp_port: int
    description: str
    expected_total: int
    expected_by_type: dict[str, int]


# --------------------------------------------------------------------------- manifest


def manifest() -> dict[str, Any]:
    """The parsed manifest.json (generator, tool versions, captures)."""
    return json.loads((VECTORS_DIR / "manifest.json").read_text())


def captures() -> list[Capture]:
    """All captures listed in the manifest, in manifest order."""
    out = []
    for entry in manifest()["captures"]:
        rib = entry.get("rib")
        out.append(
            Capture(
                name=entry["name"],
                pcap=VECTORS_DIR / entry["pcap"],
                tshark=VECTORS_DIR / entry["tshark"],
                rib=VECTORS_DIR / rib if rib else None,
                bgp_port=int(entry["bgp_port"]),
                description=entry["description"],
                expected_total=int(entry["messages"]["total"]),
                expected_by_type=dict(entry["messages"]["by_type"]),
            )
        )
    return out


def capture(name: str) -> Capture:
    """The manifest entry called ``name``."""
    for c in captures():
        if c.name == name:
            return c
    raise KeyError(f"no capture named {name!r} in {VECTORS_DIR / 'manifest.json'}")


# --------------------------------------------------------------------------- pcap


def _ip_packets(pcap_path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based frame number, IPv4/IPv6 packet) for every frame in a pcap."""
    with pcap_path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        for number, (_ts, buf) in enumerate(reader, start=1):
            if number > MAX_SEGMENTS:
                raise VectorError(f"{pcap_path.name}: more than {MAX_SEGMENTS} frames")
            yield number, _decapsulate(linktype, buf)


def _decapsulate(linktype: int, buf: bytes) -> Any:
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(buf).data
    if linktype in (dpkt.pcap.DLT_RAW, 101):  # 101 = LINKTYPE_RAW
        return dpkt.ip6.IP6(buf) if buf and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
    raise VectorError(f"unsupported pcap link type {linktype}")


def _address(ip: Any, attr: str) -> str:
    raw = getattr(ip, attr)
    family = socket.AF_INET6 if len(raw) == 16 else socket.AF_INET
    return socket.inet_ntop(family, raw)


class _Stream:
    """One TCP direction: in-order payload plus, per byte range, the frame that delivered it."""

    __slots__ = ("direction", "next_seq", "pending", "data", "frames", "offset", "fin")

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[bytes, int]] = {}
        self.data = bytearray()
        self.frames: list[tuple[int, int]] = []  # (end offset in data, frame number)
        self.offset = 0  # bytes of ``data`` already cut into messages
        self.fin = False

    def add(self, seq: int, payload: bytes, frame: int) -> None:
        if self.next_seq is None:
            self.next_seq = seq
        delta = (seq - self.next_seq) & 0xFFFFFFFF
        if delta >= 0x80000000:  # starts before next_seq: retransmission / overlap
            overlap = (self.next_seq - seq) & 0xFFFFFFFF
            if overlap >= len(payload):
                return
            payload = payload[overlap:]
            seq = self.next_seq
            delta = 0
        if delta:
            self.pending[seq] = (payload, frame)
            return
        self._append(payload, frame)
        # drain segments that were waiting for this one
        for _ in range(len(self.pending) + 1):
            assert self.next_seq is not None
            nxt = self.pending.pop(self.next_seq, None)
            if nxt is None:
                break
            self._append(*nxt)

    def _append(self, payload: bytes, frame: int) -> None:
        self.data += payload
        self.frames.append((len(self.data), frame))
        assert self.next_seq is not None
        self.next_seq = (self.next_seq + len(payload)) & 0xFFFFFFFF

    def frame_of(self, end: int) -> int:
        """Frame that delivered the byte just before offset ``end``."""
        for stop, frame in self.frames:
            if stop >= end:
                return frame
        raise VectorError(f"{self.direction}: offset {end} beyond stream")


def _streams(pcap_path: Path, port: int | None) -> list[_Stream]:
    """Reassemble every TCP direction (with payload) of a pcap, optionally only ``port``."""
    streams: dict[tuple[str, int, str, int], _Stream] = {}
    order: list[_Stream] = []
    for frame, ip in _ip_packets(pcap_path):
        tcp = getattr(ip, "data", None)
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        if port is not None and port not in (tcp.sport, tcp.dport):
            continue
        src, dst = _address(ip, "src"), _address(ip, "dst")
        key = (src, tcp.sport, dst, tcp.dport)
        stream = streams.get(key)
        if tcp.flags & dpkt.tcp.TH_SYN:
            # A new connection on the same 4-tuple starts a new stream.
            stream = _Stream(f"{src}:{tcp.sport}->{dst}:{tcp.dport}")
            stream.next_seq = (tcp.seq + 1) & 0xFFFFFFFF
            streams[key] = stream
            order.append(stream)
            continue
        if stream is None:
            stream = _Stream(f"{src}:{tcp.sport}->{dst}:{tcp.dport}")
            streams[key] = stream
            order.append(stream)
        payload = bytes(tcp.data)
        if payload:
            stream.add(tcp.seq, payload, frame)
    return order


def _cut(stream: _Stream) -> Iterator[Message]:
    """Split a reassembled stream into BGP messages by the 19-octet header."""
    data = bytes(stream.data)
    pos = 0
    while len(data) - pos >= BGP_HEADER_LEN:
        if data[pos : pos + 16] != BGP_MARKER:
            raise VectorError(f"{stream.direction}: no BGP marker at stream offset {pos}")
        length = int.from_bytes(data[pos + 16 : pos + 18], "big")
        if length < BGP_HEADER_LEN:
            raise VectorError(f"{stream.direction}: BGP length {length} at offset {pos}")
        if len(data) - pos < length:
            break  # capture ended mid-message
        raw = data[pos : pos + length]
        yield Message(
            direction=stream.direction,
            type=raw[18],
            body=raw[BGP_HEADER_LEN:],
            raw=raw,
            frame=stream.frame_of(pos + length),
        )
        pos += length


def load_pcap(pcap_path: Path, port: int | None = None) -> list[Message]:
    """All BGP messages of a capture, ordered by completing frame then stream position."""
    keyed: list[tuple[int, int, int, Message]] = []
    for index, stream in enumerate(_streams(pcap_path, port)):
        for pos, msg in enumerate(_cut(stream)):
            keyed.append((msg.frame, index, pos, msg))
    keyed.sort(key=lambda item: item[:3])
    return [item[3] for item in keyed]


@cache
def messages(name: str) -> tuple[Message, ...]:
    """BGP messages of the capture called ``name`` (cached)."""
    c = capture(name)
    return tuple(load_pcap(c.pcap, c.bgp_port))


# --------------------------------------------------------------------------- tshark


@cache
def tshark(name: str) -> dict[str, Any]:
    """The whole ``<name>.tshark.json`` (``capture``, ``bgp_port``, ``frames``)."""
    return json.loads(capture(name).tshark.read_text())


def tshark_messages(name: str) -> list[dict[str, Any]]:
    """tshark's BGP message objects in capture order, each with ``_frame``/``_src``/``_dst`` added.

    The objects are tshark's own JSON for one BGP PDU: keys such as
    ``bgp.type``, ``bgp.length``, ``bgp.update.path_attributes``. Values are
    strings, as tshark writes them.
    """
    out = []
    for frame in tshark(name)["frames"]:
        for msg in frame["bgp"]:
            out.append(
                {**msg, "_frame": frame["frame"], "_src": frame["src"], "_dst": frame["dst"]}
            )
    return out


def fields(obj: Any, key: str, _depth: int = 0) -> list[Any]:
    """Every value stored under ``key`` anywhere inside a tshark JSON object, in document order.

    tshark nests fields under subtree keys that are sometimes labels
    (``"BGP Prefix"``) and turns repeated keys into lists; walking by field
    name sidesteps both.
    """
    if _depth > 64:
        raise VectorError("tshark JSON nested deeper than 64 levels")
    found: list[Any] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                found.extend(v if isinstance(v, list) else [v])
            found.extend(fields(v, key, _depth + 1))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(fields(item, key, _depth + 1))
    return found


def rib_views(name: str) -> dict[str, Any]:
    """The daemons' own view of the routes (``<name>.rib.json``), a second oracle."""
    c = capture(name)
    if c.rib is None:
        return {}
    return json.loads(c.rib.read_text())
