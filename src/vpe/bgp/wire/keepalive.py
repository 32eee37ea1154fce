"""KEEPALIVE: a header with no body (RFC 4271 section 4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import MessageType
from .context import CodecContext


@dataclass(frozen=True, slots=True)
class Keepalive:
    MSG_TYPE = MessageType.KEEPALIVE

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> Keepalive:
        return KEEPALIVE

    def encode(self, ctx: CodecContext) -> bytes:
        return b""

    def to_json(self) -> dict[str, Any]:
        return {}


KEEPALIVE = Keepalive()
