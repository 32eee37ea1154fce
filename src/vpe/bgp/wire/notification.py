"""Placeholder: being written."""

from __future__ import annotations

from typing import Any

from .constants import MessageType
from .context import CodecContext


class Notification:
    MSG_TYPE = MessageType.NOTIFICATION

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> Any:
        raise NotImplementedError

    def encode(self, ctx: CodecContext) -> bytes:
        raise NotImplementedError
