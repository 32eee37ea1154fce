"""AGGREGATOR (type 7) and AS4_AGGREGATOR (type 18): who aggregated the route.

AGGREGATOR's AS field is 2 or 4 octets depending on whether the session
negotiated 4-octet ASNs (RFC 6793); AS4_AGGREGATOR is always 4 octets and only
travels across 2-octet-only speakers. Both are attribute discard when malformed
(RFC 7606 section 7.7, RFC 6793 section 6), as is an AS of 0 (RFC 7607).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, ClassVar

from ..constants import AS_TRANS, AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length, malformed
from .base import PathAttribute, register

_AGG2 = struct.Struct("!H4s")
_AGG4 = struct.Struct("!I4s")


def _decode4(cls: type[Any], name: str, value: bytes) -> Any:
    if len(value) != 8:
        raise bad_length(UpdateAction.ATTRIBUTE_DISCARD, name, len(value), "8")
    asn, addr = _AGG4.unpack(value)
    if asn == 0:
        raise malformed(UpdateAction.ATTRIBUTE_DISCARD, f"{name} AS 0 (RFC 7607)")
    return cls(asn, IPv4Address(addr))


@dataclass(frozen=True, slots=True)
class _AggregatorValue(PathAttribute):
    """What both attributes hold: the aggregating AS (4-octet range) and router id.

    They differ only on the wire (AS field width, when each may travel).
    """

    asn: int
    address: IPv4Address

    def __post_init__(self) -> None:
        if not 0 <= self.asn <= 0xFFFFFFFF:
            raise ValueError(f"aggregator AS {self.asn} is outside 0..4294967295")
        if not isinstance(self.address, IPv4Address):
            object.__setattr__(self, "address", IPv4Address(self.address))

    def to_json(self) -> Any:
        return {"asn": self.asn, "address": str(self.address)}


@register
@dataclass(frozen=True, slots=True)
class Aggregator(_AggregatorValue):
    CODE: ClassVar[int] = AttrCode.AGGREGATOR
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.ATTRIBUTE_DISCARD
    NAME: ClassVar[str] = "aggregator"

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> Aggregator:
        if ctx.asn4:
            return _decode4(cls, "AGGREGATOR", value)
        if len(value) != 6:
            raise bad_length(cls.ON_ERROR, "AGGREGATOR (2-octet AS session)", len(value), "6")
        asn, addr = _AGG2.unpack(value)
        if asn == 0:
            raise malformed(cls.ON_ERROR, "AGGREGATOR AS 0 (RFC 7607)")
        return cls(asn, IPv4Address(addr))

    def encode_value(self, ctx: CodecContext) -> bytes:
        if ctx.asn4:
            return _AGG4.pack(self.asn, self.address.packed)
        asn = self.asn if self.asn <= 0xFFFF else AS_TRANS
        return _AGG2.pack(asn, self.address.packed)


@register
@dataclass(frozen=True, slots=True)
class As4Aggregator(_AggregatorValue):
    CODE: ClassVar[int] = AttrCode.AS4_AGGREGATOR
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.ATTRIBUTE_DISCARD
    NAME: ClassVar[str] = "as4-aggregator"

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> As4Aggregator:
        if ctx.asn4:
            # RFC 6793 section 3: a NEW speaker never sends it to a NEW speaker.
            raise malformed(cls.ON_ERROR, "AS4_AGGREGATOR from a 4-octet-AS peer: discarded")
        return _decode4(cls, "AS4_AGGREGATOR", value)

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _AGG4.pack(self.asn, self.address.packed)
