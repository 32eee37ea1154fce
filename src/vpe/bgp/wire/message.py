"""Whole-message decode/encode: header type -> message class.

Every message class has ``MSG_TYPE``, ``decode(body, ctx)`` (a classmethod
that raises only :class:`BGPError`) and ``encode(ctx) -> body``.
"""

from __future__ import annotations

from typing import Any, Protocol

from .constants import MessageType
from .context import DEFAULT_CONTEXT, CodecContext
from .header import frame
from .keepalive import Keepalive
from .notification import Notification
from .open import Open
from .route_refresh import RouteRefresh
from .update import Update


class Message(Protocol):
    MSG_TYPE: MessageType

    def encode(self, ctx: CodecContext) -> bytes: ...

    def to_json(self) -> Any: ...


MESSAGE_CLASSES: dict[int, Any] = {
    MessageType.OPEN: Open,
    MessageType.UPDATE: Update,
    MessageType.NOTIFICATION: Notification,
    MessageType.KEEPALIVE: Keepalive,
    MessageType.ROUTE_REFRESH: RouteRefresh,
}


def decode_message(msg_type: int, body: bytes, ctx: CodecContext = DEFAULT_CONTEXT) -> Any:
    """Decode one message body given its header type (see ``MessageReader``)."""
    return MESSAGE_CLASSES[msg_type].decode(body, ctx)


def encode_message(msg: Message, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
    """Header + body, limited to the context's maximum message size."""
    limit = 4096 if msg.MSG_TYPE in (MessageType.OPEN, MessageType.KEEPALIVE) else ctx.max_message_len
    return frame(msg.MSG_TYPE, msg.encode(ctx), limit)
