"""Sans-IO BGP wire codec: bytes in, typed values out, and back.

Nothing here touches sockets or clocks. Importing this package registers
every path attribute, capability and NLRI family.
"""

from __future__ import annotations

from . import attributes as _attributes  # noqa: F401  (registers attribute types)
from . import nlri as _nlri  # noqa: F401  (registers NLRI families)
from .constants import Family
from .context import DEFAULT_CONTEXT, CodecContext
from .errors import BGPError, MalformedAttribute, UpdateAction
from .header import MessageReader, frame
from .message import decode_message, encode_message

__all__ = [
    "BGPError",
    "CodecContext",
    "DEFAULT_CONTEXT",
    "Family",
    "MalformedAttribute",
    "MessageReader",
    "UpdateAction",
    "decode_message",
    "encode_message",
    "frame",
]
