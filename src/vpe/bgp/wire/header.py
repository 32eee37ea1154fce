"""The 19-octet message header and a sans-IO stream framer.

:class:`MessageReader` takes bytes as they arrive from a transport and hands
back whole messages; it validates the marker, the length and the type
(RFC 4271 section 6.1) and raises :class:`BGPError` carrying the
NOTIFICATION to send. It never blocks and never reads a socket.
"""

from __future__ import annotations

import struct

from .constants import (
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_LEN,
    ErrorCode,
    HeaderSubcode,
    MessageType,
)
from .errors import BGPError

_HDR = struct.Struct("!16sHB")

# Smallest legal total length per type (RFC 4271 section 4, RFC 2918).
MIN_LENGTH = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: 19,
    MessageType.ROUTE_REFRESH: 23,
}
_VALID_TYPES = frozenset(int(t) for t in MessageType)


def frame(msg_type: int, body: bytes, max_len: int = 65535) -> bytes:
    """Prefix ``body`` with a BGP header."""
    total = HEADER_LEN + len(body)
    if total > max_len:
        raise ValueError(f"message of {total} octets exceeds the {max_len}-octet limit")
    return _HDR.pack(MARKER, total, msg_type) + body


class MessageReader:
    """Split a byte stream into (type, body) messages.

    ``max_len`` is 4096 until the extended message capability (RFC 8654) has
    been negotiated; the session raises it then. OPEN and KEEPALIVE stay
    limited to 4096 even then (RFC 8654 section 4).
    """

    __slots__ = ("_buf", "_pos", "max_len")

    def __init__(self, max_len: int = MAX_MESSAGE_LEN) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_len = max_len

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_message(self) -> tuple[int, bytes] | None:
        """Return the next whole message as (type, body), or None if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER_LEN:
            return None
        marker, length, msg_type = _HDR.unpack_from(buf, pos)
        if marker != MARKER:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
                reason=f"header marker is not all ones: {bytes(marker).hex()}",
            )
        if msg_type not in _VALID_TYPES:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.BAD_MESSAGE_TYPE,
                bytes([msg_type]),
                reason=f"unknown message type {msg_type}",
            )
        limit = self.max_len
        if msg_type in (MessageType.OPEN, MessageType.KEEPALIVE):
            limit = MAX_MESSAGE_LEN
        bad = length < MIN_LENGTH[MessageType(msg_type)] or length > limit
        if msg_type in (MessageType.KEEPALIVE,) and length != HEADER_LEN:
            bad = True
        if bad:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.BAD_MESSAGE_LENGTH,
                length.to_bytes(2, "big"),
                reason=f"{MessageType(msg_type).name} message length {length} "
                f"(allowed {MIN_LENGTH[MessageType(msg_type)]}..{limit})",
            )
        if len(buf) - pos < length:
            return None
        body = bytes(buf[pos + HEADER_LEN : pos + length])
        self._pos = pos + length
        return msg_type, body
