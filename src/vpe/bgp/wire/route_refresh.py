"""ROUTE-REFRESH message (RFC 2918) with the RFC 7313 message subtype.

The body is AFI (2), subtype (1; "reserved" in RFC 2918), SAFI (1). A
normal request (subtype 0) may be followed by Outbound Route Filtering
entries (RFC 5291), kept as opaque octets in ``orf``. A BoRR or EoRR
(subtypes 1, 2) whose body is not exactly 4 octets, or any body shorter
than 4, is a ROUTE-REFRESH Message Error / Invalid Message Length whose
data is the whole message, header included (RFC 7313 section 5). An
unknown subtype is not an error: RFC 7313 says such a message is ignored,
so it is decoded and :attr:`RouteRefresh.known` is False; the session
drops it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .constants import HEADER_LEN, MARKER, ErrorCode, Family, MessageType, RouteRefreshSubcode
from .context import CodecContext
from .errors import BGPError

_BODY = struct.Struct("!HBB")


class RefreshSubtype(IntEnum):
    NORMAL = 0  # plain route refresh request
    BORR = 1  # beginning of route refresh
    EORR = 2  # end of route refresh


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    afi: int
    safi: int
    subtype: int = RefreshSubtype.NORMAL
    orf: bytes = b""  # RFC 5291 ORF entries after the fixed part, opaque

    MSG_TYPE = MessageType.ROUTE_REFRESH

    @classmethod
    def for_family(cls, family: Family, subtype: int = RefreshSubtype.NORMAL) -> RouteRefresh:
        return cls(family.afi, family.safi, subtype)

    @property
    def family(self) -> Family:
        return Family(self.afi, self.safi)

    @property
    def known(self) -> bool:
        """False for a subtype RFC 7313 says must be ignored."""
        return self.subtype in (0, 1, 2)

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> RouteRefresh:
        n = len(body)
        if n < _BODY.size or (n != _BODY.size and body[2] in (RefreshSubtype.BORR, RefreshSubtype.EORR)):
            total = HEADER_LEN + n
            whole = (
                MARKER + struct.pack("!HB", total, MessageType.ROUTE_REFRESH) + bytes(body)
                if total <= 0xFFFF
                else bytes(body)
            )
            raise BGPError(
                ErrorCode.ROUTE_REFRESH,
                RouteRefreshSubcode.INVALID_MESSAGE_LENGTH,
                whole,
                f"ROUTE-REFRESH body of {n} octets, must be 4"
                + (f" for subtype {body[2]}" if n > _BODY.size else ""),
            )
        afi, subtype, safi = _BODY.unpack_from(body, 0)
        return cls(afi, safi, subtype, bytes(body[_BODY.size :]))

    def encode(self, ctx: CodecContext) -> bytes:
        return _BODY.pack(self.afi, self.subtype, self.safi) + self.orf

    def to_json(self) -> dict[str, Any]:
        try:
            sub = RefreshSubtype(self.subtype).name.lower()
        except ValueError:
            sub = str(self.subtype)
        d: dict[str, Any] = {"family": self.family.name, "subtype": sub}
        if self.orf:
            d["orf"] = self.orf.hex()
        return d
