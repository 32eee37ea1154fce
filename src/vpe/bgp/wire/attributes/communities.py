"""COMMUNITIES (type 8, RFC 1997): 32-bit route tags, shown as "asn:value"."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length
from .base import PathAttribute, register

NO_EXPORT = 0xFFFFFF01
NO_ADVERTISE = 0xFFFFFF02
NO_EXPORT_SUBCONFED = 0xFFFFFF03
NOPEER = 0xFFFFFF04  # RFC 3765
GRACEFUL_SHUTDOWN = 0xFFFF0000  # RFC 8326
ACCEPT_OWN = 0xFFFF0001  # RFC 7611
LLGR_STALE = 0xFFFF0006  # RFC 9494
NO_LLGR = 0xFFFF0007
BLACKHOLE = 0xFFFF029A  # RFC 7999

#: value -> name used in str() and JSON
WELL_KNOWN: dict[int, str] = {
    NO_EXPORT: "NO_EXPORT",
    NO_ADVERTISE: "NO_ADVERTISE",
    NO_EXPORT_SUBCONFED: "NO_EXPORT_SUBCONFED",
    NOPEER: "NOPEER",
    GRACEFUL_SHUTDOWN: "GRACEFUL_SHUTDOWN",
    ACCEPT_OWN: "ACCEPT_OWN",
    LLGR_STALE: "LLGR_STALE",
    NO_LLGR: "NO_LLGR",
    BLACKHOLE: "BLACKHOLE",
}
_BY_NAME = {name: v for v, name in WELL_KNOWN.items()}


def community_str(value: int) -> str:
    name = WELL_KNOWN.get(value)
    if name is not None:
        return name
    return f"{value >> 16}:{value & 0xFFFF}"


def parse_community(text: str) -> int:
    """``"65000:1"``, a well-known name (``"no-export"``/``"NO_EXPORT"``) or a plain integer."""
    t = text.strip()
    named = _BY_NAME.get(t.upper().replace("-", "_"))
    if named is not None:
        return named
    hi, sep, lo = t.partition(":")
    try:
        if not sep:
            v = int(t, 0)
            if 0 <= v <= 0xFFFFFFFF:
                return v
        else:
            h, low = int(hi), int(lo)
            if 0 <= h <= 0xFFFF and 0 <= low <= 0xFFFF:
                return (h << 16) | low
    except ValueError:
        pass
    raise ValueError(
        f"community {text!r}: expected ASN:VALUE with both parts in 0..65535, or a well-known name"
    )


@register
@dataclass(frozen=True, slots=True)
class Communities(PathAttribute):
    """Optional transitive; a length that is not a non-zero multiple of 4 is
    treat-as-withdraw (RFC 7606 section 7.8). Order and duplicates are kept as received."""

    CODE: ClassVar[int] = AttrCode.COMMUNITIES
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "communities"

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.values, tuple):
            object.__setattr__(self, "values", tuple(self.values))
        for v in self.values:
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"community {v} is outside 0..4294967295")

    @classmethod
    def from_strs(cls, texts: Iterable[str]) -> Communities:
        return cls(tuple(parse_community(t) for t in texts))

    def __contains__(self, value: object) -> bool:
        return value in self.values

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> Communities:
        n = len(value)
        if n == 0 or n % 4:
            raise bad_length(cls.ON_ERROR, "COMMUNITIES", n, "a non-zero multiple of 4")
        return cls(struct.unpack(f"!{n // 4}I", value))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack(f"!{len(self.values)}I", *self.values)

    def to_json(self) -> Any:
        return [community_str(v) for v in self.values]

    def __str__(self) -> str:
        return " ".join(community_str(v) for v in self.values)
