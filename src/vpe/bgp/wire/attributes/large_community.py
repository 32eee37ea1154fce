"""LARGE_COMMUNITY (type 32, RFC 8092): 12-octet tags "global:local1:local2"
that fit 4-octet ASNs."""

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

_MAX32 = 0xFFFFFFFF
LargeCommunity = tuple[int, int, int]


def parse_large_community(text: str) -> LargeCommunity:
    parts = text.strip().split(":")
    try:
        if len(parts) == 3:
            a, b, c = (int(p) for p in parts)
            if all(0 <= x <= _MAX32 for x in (a, b, c)):
                return (a, b, c)
    except ValueError:
        pass
    raise ValueError(f"large community {text!r}: expected GLOBAL:LOCAL1:LOCAL2, each 0..{_MAX32}")


def large_community_str(c: LargeCommunity) -> str:
    return f"{c[0]}:{c[1]}:{c[2]}"


@register
@dataclass(frozen=True, slots=True)
class LargeCommunities(PathAttribute):
    """Optional transitive; length not a non-zero multiple of 12 is treat-as-withdraw
    (RFC 8092 section 6)."""

    CODE: ClassVar[int] = AttrCode.LARGE_COMMUNITY
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "large-communities"

    values: tuple[LargeCommunity, ...]

    def __post_init__(self) -> None:
        vals = tuple(tuple(v) for v in self.values)
        for v in vals:
            if len(v) != 3 or not all(0 <= x <= _MAX32 for x in v):
                raise ValueError(f"large community {v!r}: expected three values in 0..{_MAX32}")
        object.__setattr__(self, "values", vals)

    @classmethod
    def from_strs(cls, texts: Iterable[str]) -> LargeCommunities:
        return cls(tuple(parse_large_community(t) for t in texts))

    def __contains__(self, value: object) -> bool:
        return value in self.values

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> LargeCommunities:
        n = len(value)
        if n == 0 or n % 12:
            raise bad_length(cls.ON_ERROR, "LARGE_COMMUNITY", n, "a non-zero multiple of 12")
        flat = struct.unpack(f"!{n // 4}I", value)
        return cls(tuple(flat[i : i + 3] for i in range(0, len(flat), 3)))

    def encode_value(self, ctx: CodecContext) -> bytes:
        flat = [x for v in self.values for x in v]
        return struct.pack(f"!{len(flat)}I", *flat)

    def to_json(self) -> Any:
        return [large_community_str(v) for v in self.values]

    def __str__(self) -> str:
        return " ".join(large_community_str(v) for v in self.values)
