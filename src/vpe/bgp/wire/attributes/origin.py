"""ORIGIN (type 1, RFC 4271 section 5.1.1): how the route entered BGP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag, UpdateSubcode
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length, malformed
from .base import PathAttribute, register


class OriginType(IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


_ORIGIN_BY_NAME = {o.name.lower(): o for o in OriginType}
_BYTES = {o: bytes([o]) for o in OriginType}


@register
@dataclass(frozen=True, slots=True)
class Origin(PathAttribute):
    """Well-known mandatory; a bad value or length is treat-as-withdraw (RFC 7606 7.1)."""

    CODE: ClassVar[int] = AttrCode.ORIGIN
    FLAGS: ClassVar[int] = AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "origin"

    value: OriginType = OriginType.IGP

    @classmethod
    def from_str(cls, text: str) -> Origin:
        """``"igp"``, ``"egp"`` or ``"incomplete"`` (also ``"?"``)."""
        key = text.strip().lower()
        if key == "?":
            return cls(OriginType.INCOMPLETE)
        try:
            return cls(_ORIGIN_BY_NAME[key])
        except KeyError:
            raise ValueError(f"origin {text!r}: expected igp, egp or incomplete") from None

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> Origin:
        if len(value) != 1:
            raise bad_length(cls.ON_ERROR, "ORIGIN", len(value), "1")
        v = value[0]
        if v > 2:
            raise malformed(
                cls.ON_ERROR,
                f"ORIGIN value {v} is not IGP(0), EGP(1) or INCOMPLETE(2)",
                UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE,
            )
        return cls(OriginType(v))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _BYTES[OriginType(self.value)]

    def to_json(self) -> Any:
        return OriginType(self.value).name.lower()

    def __str__(self) -> str:
        return OriginType(self.value).name.lower()
