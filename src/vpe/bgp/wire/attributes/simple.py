"""Fixed-size attributes: MULTI_EXIT_DISC, LOCAL_PREF, ATOMIC_AGGREGATE, ORIGINATOR_ID.

Their RFC 7606 handling differs although their shapes are alike: a bad MED or
LOCAL_PREF length is treat-as-withdraw; LOCAL_PREF and ORIGINATOR_ID from an
external peer are simply discarded (sections 7.5, 7.9); a malformed
ATOMIC_AGGREGATE only loses the attribute (section 7.6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag, UpdateSubcode
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length, from_external_peer
from .base import PathAttribute, register

_U32 = struct.Struct("!I")
_MAX32 = 0xFFFFFFFF


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _MAX32:
        raise ValueError(f"{name} {value} is outside 0..{_MAX32}")


@register
@dataclass(frozen=True, slots=True)
class Med(PathAttribute):
    """MULTI_EXIT_DISC (type 4): optional non-transitive metric."""

    CODE: ClassVar[int] = AttrCode.MULTI_EXIT_DISC
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "med"

    value: int

    def __post_init__(self) -> None:
        _check_u32("MED", self.value)

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> Med:
        if len(value) != 4:
            raise bad_length(cls.ON_ERROR, "MULTI_EXIT_DISC", len(value), "4")
        return cls(_U32.unpack(value)[0])

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _U32.pack(self.value)

    def to_json(self) -> Any:
        return self.value


@register
@dataclass(frozen=True, slots=True)
class LocalPref(PathAttribute):
    """LOCAL_PREF (type 5): well-known, meaningful only inside an AS."""

    CODE: ClassVar[int] = AttrCode.LOCAL_PREF
    FLAGS: ClassVar[int] = AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "local-pref"

    value: int

    def __post_init__(self) -> None:
        _check_u32("LOCAL_PREF", self.value)

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> LocalPref:
        if not ctx.ibgp:
            raise from_external_peer("7.5", UpdateSubcode.MALFORMED_ATTRIBUTE_LIST)
        if len(value) != 4:
            raise bad_length(cls.ON_ERROR, "LOCAL_PREF", len(value), "4")
        return cls(_U32.unpack(value)[0])

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _U32.pack(self.value)

    def to_json(self) -> Any:
        return self.value


@register
@dataclass(frozen=True, slots=True)
class AtomicAggregate(PathAttribute):
    """ATOMIC_AGGREGATE (type 6): a flag with no value."""

    CODE: ClassVar[int] = AttrCode.ATOMIC_AGGREGATE
    FLAGS: ClassVar[int] = AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.ATTRIBUTE_DISCARD
    NAME: ClassVar[str] = "atomic-aggregate"

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> AtomicAggregate:
        if value:
            raise bad_length(cls.ON_ERROR, "ATOMIC_AGGREGATE", len(value), "0")
        return cls()

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b""

    def to_json(self) -> Any:
        return True


@register
@dataclass(frozen=True, slots=True)
class OriginatorId(PathAttribute):
    """ORIGINATOR_ID (type 9, RFC 4456): router id of the route's originator in the AS."""

    CODE: ClassVar[int] = AttrCode.ORIGINATOR_ID
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "originator-id"

    address: IPv4Address

    def __post_init__(self) -> None:
        if not isinstance(self.address, IPv4Address):
            object.__setattr__(self, "address", IPv4Address(self.address))

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> OriginatorId:
        if not ctx.ibgp:
            raise from_external_peer("7.9")
        if len(value) != 4:
            raise bad_length(cls.ON_ERROR, "ORIGINATOR_ID", len(value), "4")
        return cls(IPv4Address(value))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.address.packed

    def to_json(self) -> Any:
        return str(self.address)
