"""NLRI value base class and the per-family codec registry.

An NLRI value is a small slotted object. Its ``key`` is a canonical ``bytes``
form that identifies the destination within its family (for prefixes:
``bytes([prefix_len]) + RD? + minimal prefix octets``); the RIB indexes by
``(key, path_id)``. Labels, when the family has them, are data of the route,
not part of the key. Keeping the key as bytes makes decoding cheap (one slice
per NLRI) and tables compact; human forms are computed on demand.

Each family has one :class:`NlriCodec` registered with :func:`register_codec`:
it walks an NLRI field with plain indexing (no per-byte loops), and encodes
and decodes the MP_REACH next hop of the family.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar

from ..constants import Family
from ..context import CodecContext

IPAddress = IPv4Address | IPv6Address


class Nlri:
    """Base of NLRI values. Subclasses add slots (e.g. ``labels``)."""

    __slots__ = ("key", "path_id")
    FAMILY: ClassVar[Family]

    key: bytes
    path_id: int

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self._all_slots())

    @classmethod
    def _all_slots(cls) -> tuple[str, ...]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            names.extend(getattr(klass, "__slots__", ()))
        return tuple(names)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()  # type: ignore[attr-defined,unused-ignore]

    def __hash__(self) -> int:
        return hash((type(self), self.key, self.path_id))

    def __repr__(self) -> str:
        extra = f", path_id={self.path_id}" if self.path_id else ""
        return f"{type(self).__name__}({str(self)!r}{extra})"

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class PlainNlri(Nlri):
    """An NLRI that is only ``key`` and ``path_id`` (no labels): unicast, RTC, MCAST-VPN.

    Its constructor and equality are written out rather than inherited from
    :class:`Nlri`'s generic slot walk, because decoders build one per route.
    """

    __slots__ = ()

    def __init__(self, key: bytes, path_id: int = 0) -> None:
        self.key = key
        self.path_id = path_id

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.key == other.key
            and self.path_id == other.path_id
        )

    __hash__ = Nlri.__hash__


class NlriCodec:
    """Decode/encode the NLRI of one family, and its MP_REACH next hop."""

    family: ClassVar[Family]

    def decode(self, data: bytes, addpath: bool) -> list[Nlri]:
        """All NLRI in ``data``; raise ``NlriError`` if they cannot be parsed."""
        raise NotImplementedError

    def encode_one(self, nlri: Nlri, addpath: bool) -> bytes:
        raise NotImplementedError

    def encode(self, nlris: Iterable[Nlri], addpath: bool) -> bytes:
        # a list comprehension: join() turns a generator into a list anyway, more slowly
        enc = self.encode_one
        return b"".join([enc(n, addpath) for n in nlris])

    def decode_withdrawn(self, data: bytes, addpath: bool) -> list[Nlri]:
        """NLRI of MP_UNREACH_NLRI. Same as :meth:`decode` except for families whose
        withdrawals differ on the wire: labeled and VPN families carry one 3-octet
        compatibility field instead of the label stack (RFC 8277 section 2.4)."""
        return self.decode(data, addpath)

    def encode_withdrawn_one(self, nlri: Nlri, addpath: bool) -> bytes:
        """Wire form of ``nlri`` in MP_UNREACH_NLRI (see :meth:`decode_withdrawn`)."""
        return self.encode_one(nlri, addpath)

    def encode_withdrawn(self, nlris: Iterable[Nlri], addpath: bool) -> bytes:
        enc = self.encode_withdrawn_one
        return b"".join([enc(n, addpath) for n in nlris])

    def decode_nexthop(self, data: bytes, ctx: CodecContext) -> tuple[IPAddress | None, IPAddress | None]:
        """(next hop, IPv6 link-local or None) from MP_REACH's next hop field.

        Raise ``NlriError`` if the length is not one this family allows.
        """
        raise NotImplementedError

    def encode_nexthop(self, nexthop: IPAddress | None, link_local: IPAddress | None = None) -> bytes:
        raise NotImplementedError


#: family -> codec
NLRI_CODECS: dict[Family, NlriCodec] = {}


def register_codec(codec: NlriCodec) -> NlriCodec:
    if codec.family in NLRI_CODECS:
        raise RuntimeError(f"NLRI codec for {codec.family} registered twice")
    NLRI_CODECS[codec.family] = codec
    return codec
