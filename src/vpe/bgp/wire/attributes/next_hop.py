"""NEXT_HOP (type 3, RFC 4271 section 5.1.3): the IPv4 next hop of IPv4-unicast NLRI.

Only the syntax is checked here (RFC 7606 section 7.3: a length other than 4
is treat-as-withdraw). Semantic checks (the receiver's own address, martians)
need session state and belong to the speaker; and with MP_REACH_NLRI present
the attribute is ignored anyway (RFC 4760 section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length
from .base import PathAttribute, register


@register
@dataclass(frozen=True, slots=True)
class NextHop(PathAttribute):
    CODE: ClassVar[int] = AttrCode.NEXT_HOP
    FLAGS: ClassVar[int] = AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "next-hop"

    address: IPv4Address

    def __post_init__(self) -> None:
        if not isinstance(self.address, IPv4Address):
            object.__setattr__(self, "address", IPv4Address(self.address))

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> NextHop:
        if len(value) != 4:
            raise bad_length(cls.ON_ERROR, "NEXT_HOP", len(value), "4")
        return cls(IPv4Address(value))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.address.packed

    def to_json(self) -> Any:
        return str(self.address)
