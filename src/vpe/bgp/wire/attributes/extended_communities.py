"""EXTENDED_COMMUNITIES (type 16, RFC 4360) and the extended community value registry.

Each 8-octet value is decoded by the class registered for its (type, subtype)
with :func:`register_ext_community`; values of other types, and values whose
reserved bits are not zero, become :class:`OpaqueExtendedCommunity` and are
re-encoded byte for byte. Values are frozen and hashable, so RT sets and
import/export policy work on them directly; ``str()`` gives the usual text
form (``target:65000:1``, ``origin:192.0.2.1:5``, ``encap:mpls-in-udp``,
``mac-mobility:5``), which :func:`parse_ext_community` reads back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, ClassVar, TypeVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length
from .base import PathAttribute, register
from .tunnel_types import parse_tunnel_type, tunnel_name

_MAX32 = 0xFFFFFFFF

#: type octet flags (RFC 4360 section 2)
EXT_IANA_AUTHORITY = 0x80
EXT_NON_TRANSITIVE = 0x40

# Types (high octet) and subtypes, RFC 4360 / RFC 5668 / RFC 7432 / RFC 9012.
TYPE_AS2 = 0x00
TYPE_IPV4 = 0x01
TYPE_AS4 = 0x02
TYPE_OPAQUE = 0x03
TYPE_EVPN = 0x06
SUBTYPE_ROUTE_TARGET = 0x02
SUBTYPE_ROUTE_ORIGIN = 0x03
SUBTYPE_COLOR = 0x0B
SUBTYPE_ENCAPSULATION = 0x0C
SUBTYPE_MAC_MOBILITY = 0x00


class ExtendedCommunity:
    """Base of extended community values: ``encode()`` gives the 8 wire octets."""

    __slots__ = ()
    #: short text tag used in str() and parsing, e.g. "target"
    TAG: ClassVar[str] = ""

    def encode(self) -> bytes:
        raise NotImplementedError

    @property
    def type_octets(self) -> tuple[int, int]:
        """(type, subtype) as on the wire."""
        b = self.encode()
        return b[0], b[1]

    @property
    def transitive(self) -> bool:
        return not self.encode()[0] & EXT_NON_TRANSITIVE

    def to_json(self) -> Any:
        return str(self)


E = TypeVar("E", bound=type[ExtendedCommunity])

#: (type, subtype) -> decoder of the 6 value octets; returns None for a form it
#: cannot represent exactly (then the value is kept opaque).
EXT_COMMUNITY_DECODERS: dict[
    tuple[int, int], Callable[[int, int, bytes], ExtendedCommunity | None]
] = {}
#: text tag -> parser of the text after "tag:"
EXT_COMMUNITY_PARSERS: dict[str, Callable[[str], ExtendedCommunity]] = {}


def register_ext_community(*keys: tuple[int, int]) -> Callable[[E], E]:
    """Class decorator: ``cls.from_wire`` decodes these (type, subtype) pairs and
    ``cls.from_text`` parses ``cls.TAG:...``."""

    def deco(cls: E) -> E:
        for key in keys:
            if key in EXT_COMMUNITY_DECODERS:
                raise RuntimeError(f"extended community {key} registered twice")
            EXT_COMMUNITY_DECODERS[key] = cls.from_wire  # type: ignore[attr-defined]
        if cls.TAG:
            EXT_COMMUNITY_PARSERS[cls.TAG] = cls.from_text  # type: ignore[attr-defined]
        return cls

    return deco


@dataclass(frozen=True, slots=True)
class OpaqueExtendedCommunity(ExtendedCommunity):
    """Any value this codec does not interpret; kept as its 8 octets."""

    TAG: ClassVar[str] = "raw"
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 8:
            raise ValueError(f"extended community is {len(self.raw)} octets, expected 8")

    @classmethod
    def from_text(cls, text: str) -> ExtendedCommunity:
        """16 hex digits; decoded like received octets, so a known type gets its class."""
        t = text.strip().lower().removeprefix("0x")
        try:
            raw = bytes.fromhex(t)
        except ValueError:
            raw = b""
        if len(raw) != 8:
            raise ValueError(f"raw extended community {text!r}: expected 16 hex digits")
        return decode_ext_community(raw)

    def encode(self) -> bytes:
        return self.raw

    def __str__(self) -> str:
        return f"raw:{self.raw.hex()}"


EXT_COMMUNITY_PARSERS[OpaqueExtendedCommunity.TAG] = OpaqueExtendedCommunity.from_text


# -- route target / route origin ----------------------------------------------

KIND_AS2 = TYPE_AS2
KIND_IPV4 = TYPE_IPV4
KIND_AS4 = TYPE_AS4
_AS2_FMT = struct.Struct("!BBHI")
_IP_FMT = struct.Struct("!BB4sH")
_AS4_FMT = struct.Struct("!BBIH")


def _parse_admin_assigned(text: str, what: str) -> tuple[int | IPv4Address, int, int]:
    """``"65000:1"``, ``"192.0.2.1:5"``, ``"4200000000:7"``; ``"65000L:7"`` forces
    the 4-octet AS form. Returns (admin, assigned, kind)."""
    admin_s, sep, assigned_s = text.strip().rpartition(":")
    err = ValueError(
        f"{what} {text!r}: expected ASN:N (N<2^32 for ASN<65536), IPv4:N or ASN4:N (N<65536)"
    )
    if not sep:
        raise err
    try:
        assigned = int(assigned_s)
    except ValueError:
        raise err from None
    if "." in admin_s:
        try:
            addr = IPv4Address(admin_s)
        except ValueError:
            raise err from None
        if not 0 <= assigned <= 0xFFFF:
            raise err
        return addr, assigned, KIND_IPV4
    force4 = admin_s[-1:] in ("L", "l")
    try:
        asn = int(admin_s[:-1] if force4 else admin_s)
    except ValueError:
        raise err from None
    if not force4 and 0 <= asn <= 0xFFFF and 0 <= assigned <= _MAX32:
        return asn, assigned, KIND_AS2
    if 0 <= asn <= _MAX32 and 0 <= assigned <= 0xFFFF:
        return asn, assigned, KIND_AS4
    raise err


@dataclass(frozen=True, slots=True)
class _AdminAssigned(ExtendedCommunity):
    """Two-part value "administrator:assigned number" in one of three formats:
    kind 0 = 2-octet AS + 4-octet number, 1 = IPv4 + 2-octet, 2 = 4-octet AS + 2-octet.
    ``kind`` is inferred when not given (smallest format that fits)."""

    SUBTYPE: ClassVar[int] = 0
    admin: int | IPv4Address
    assigned: int
    kind: int = -1

    def __post_init__(self) -> None:
        admin = self.admin
        if isinstance(admin, str):
            admin = IPv4Address(admin)
            object.__setattr__(self, "admin", admin)
        kind = self.kind
        if kind == -1:
            if isinstance(admin, IPv4Address):
                kind = KIND_IPV4
            elif admin <= 0xFFFF:
                kind = KIND_AS2
            else:
                kind = KIND_AS4
            object.__setattr__(self, "kind", kind)
        ok = False
        if kind == KIND_IPV4:
            ok = isinstance(admin, IPv4Address) and 0 <= self.assigned <= 0xFFFF
        elif kind == KIND_AS2:
            ok = isinstance(admin, int) and 0 <= admin <= 0xFFFF and 0 <= self.assigned <= _MAX32
        elif kind == KIND_AS4:
            ok = isinstance(admin, int) and 0 <= admin <= _MAX32 and 0 <= self.assigned <= 0xFFFF
        if not ok:
            raise ValueError(
                f"{self.TAG} {admin}:{self.assigned} does not fit extended community format {kind}"
            )

    @classmethod
    def from_str(cls, text: str) -> Any:
        """``"65000:1"``, ``"192.0.2.1:5"``, ``"4200000000:7"`` (a ``"target:"``-style
        prefix is accepted)."""
        t = text.strip()
        prefix = cls.TAG + ":"
        if t.startswith(prefix):
            t = t[len(prefix) :]
        admin, assigned, kind = _parse_admin_assigned(t, cls.TAG)
        return cls(admin, assigned, kind)

    @classmethod
    def from_text(cls, text: str) -> Any:
        return cls.from_str(text)

    @classmethod
    def from_wire(cls, etype: int, subtype: int, value: bytes) -> Any:
        if etype == KIND_AS2:
            _, _, asn, n = _AS2_FMT.unpack(bytes((etype, subtype)) + value)
            return cls(asn, n, KIND_AS2)
        if etype == KIND_IPV4:
            _, _, ip, n = _IP_FMT.unpack(bytes((etype, subtype)) + value)
            return cls(IPv4Address(ip), n, KIND_IPV4)
        _, _, asn, n = _AS4_FMT.unpack(bytes((etype, subtype)) + value)
        return cls(asn, n, KIND_AS4)

    def encode(self) -> bytes:
        admin = self.admin
        if self.kind == KIND_IPV4:
            assert isinstance(admin, IPv4Address)
            return _IP_FMT.pack(KIND_IPV4, self.SUBTYPE, admin.packed, self.assigned)
        assert isinstance(admin, int)
        if self.kind == KIND_AS2:
            return _AS2_FMT.pack(KIND_AS2, self.SUBTYPE, admin, self.assigned)
        return _AS4_FMT.pack(KIND_AS4, self.SUBTYPE, admin, self.assigned)

    def __str__(self) -> str:
        admin = str(self.admin)
        if self.kind == KIND_AS4 and isinstance(self.admin, int) and self.admin <= 0xFFFF:
            admin += "L"
        return f"{self.TAG}:{admin}:{self.assigned}"


@register_ext_community(
    (TYPE_AS2, SUBTYPE_ROUTE_TARGET),
    (TYPE_IPV4, SUBTYPE_ROUTE_TARGET),
    (TYPE_AS4, SUBTYPE_ROUTE_TARGET),
)
@dataclass(frozen=True, slots=True)
class RouteTarget(_AdminAssigned):
    """Route Target (RFC 4360 section 4, RFC 5668): decides which VRFs import a route."""

    TAG: ClassVar[str] = "target"
    SUBTYPE: ClassVar[int] = SUBTYPE_ROUTE_TARGET


@register_ext_community(
    (TYPE_AS2, SUBTYPE_ROUTE_ORIGIN),
    (TYPE_IPV4, SUBTYPE_ROUTE_ORIGIN),
    (TYPE_AS4, SUBTYPE_ROUTE_ORIGIN),
)
@dataclass(frozen=True, slots=True)
class RouteOrigin(_AdminAssigned):
    """Route Origin / Site of Origin (RFC 4360 section 5): stops loops back into a site."""

    TAG: ClassVar[str] = "origin"
    SUBTYPE: ClassVar[int] = SUBTYPE_ROUTE_ORIGIN


# -- opaque-type communities: color, encapsulation ----------------------------

_OPAQUE_FMT = struct.Struct("!BBHI")  # type, subtype, 2 octets, 4 octets
_ENCAP_FMT = struct.Struct("!BBIH")


@register_ext_community((TYPE_OPAQUE, SUBTYPE_ENCAPSULATION))
@dataclass(frozen=True, slots=True)
class Encapsulation(ExtendedCommunity):
    """Encapsulation extended community (RFC 9012 section 4.1): the tunnel type a
    route's next hop expects (e.g. MPLS-in-UDP for vpe's userspace forwarder)."""

    TAG: ClassVar[str] = "encap"
    tunnel_type: int

    def __post_init__(self) -> None:
        if not 0 <= self.tunnel_type <= 0xFFFF:
            raise ValueError(f"tunnel type {self.tunnel_type} is outside 0..65535")

    @classmethod
    def from_str(cls, text: str) -> Encapsulation:
        t = text.strip()
        if t.lower().startswith("encap:"):
            t = t[6:]
        return cls(parse_tunnel_type(t))

    from_text = from_str

    @classmethod
    def from_wire(cls, etype: int, subtype: int, value: bytes) -> Encapsulation | None:
        reserved, tunnel = struct.unpack("!IH", value)
        if reserved:
            return None
        return cls(tunnel)

    def encode(self) -> bytes:
        return _ENCAP_FMT.pack(TYPE_OPAQUE, SUBTYPE_ENCAPSULATION, 0, self.tunnel_type)

    def __str__(self) -> str:
        return f"encap:{tunnel_name(self.tunnel_type)}"


@register_ext_community((TYPE_OPAQUE, SUBTYPE_COLOR))
@dataclass(frozen=True, slots=True)
class Color(ExtendedCommunity):
    """Color extended community (RFC 9012 section 4.3): steers a route onto a policy."""

    TAG: ClassVar[str] = "color"
    color: int
    flags: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.color <= _MAX32 or not 0 <= self.flags <= 0xFFFF:
            raise ValueError(f"color {self.color} flags {self.flags} out of range")

    @classmethod
    def from_str(cls, text: str) -> Color:
        t = text.strip()
        if t.lower().startswith("color:"):
            t = t[6:]
        flags = "0"
        if ":flags-" in t.lower():  # the form __str__ writes for non-zero flags
            i = t.lower().index(":flags-")
            t, flags = t[:i], t[i + 7:]
        try:
            return cls(int(t), int(flags, 0))
        except ValueError:
            raise ValueError(f"color {text!r}: expected a number 0..{_MAX32} "
                             "(optionally :flags-0xNNNN)") from None

    from_text = from_str

    @classmethod
    def from_wire(cls, etype: int, subtype: int, value: bytes) -> Color:
        flags, color = struct.unpack("!HI", value)
        return cls(color, flags)

    def encode(self) -> bytes:
        return _OPAQUE_FMT.pack(TYPE_OPAQUE, SUBTYPE_COLOR, self.flags, self.color)

    def __str__(self) -> str:
        if self.flags:
            return f"color:{self.color}:flags-{self.flags:#06x}"
        return f"color:{self.color}"


# -- EVPN: MAC mobility --------------------------------------------------------

_MACMOB_FMT = struct.Struct("!BBBBI")
MAC_MOBILITY_STICKY = 0x01


@register_ext_community((TYPE_EVPN, SUBTYPE_MAC_MOBILITY))
@dataclass(frozen=True, slots=True)
class MacMobility(ExtendedCommunity):
    """MAC Mobility (RFC 7432 section 7.7): a sequence number that orders moves of
    a host; ``sticky`` marks a static address that must not move."""

    TAG: ClassVar[str] = "mac-mobility"
    sequence: int
    sticky: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= _MAX32:
            raise ValueError(f"MAC mobility sequence {self.sequence} is outside 0..{_MAX32}")

    @classmethod
    def from_str(cls, text: str) -> MacMobility:
        t = text.strip()
        if t.lower().startswith("mac-mobility:"):
            t = t[13:]
        seq_s, _, flag = t.partition(":")
        try:
            seq = int(seq_s)
        except ValueError:
            seq = -1
        if seq < 0 or flag not in ("", "sticky"):
            raise ValueError(f"MAC mobility {text!r}: expected SEQUENCE or SEQUENCE:sticky")
        return cls(seq, flag == "sticky")

    from_text = from_str

    @classmethod
    def from_wire(cls, etype: int, subtype: int, value: bytes) -> MacMobility | None:
        flags, reserved, seq = struct.unpack("!BBI", value)
        if flags & ~MAC_MOBILITY_STICKY or reserved:
            return None
        return cls(seq, bool(flags & MAC_MOBILITY_STICKY))

    def encode(self) -> bytes:
        return _MACMOB_FMT.pack(
            TYPE_EVPN,
            SUBTYPE_MAC_MOBILITY,
            MAC_MOBILITY_STICKY if self.sticky else 0,
            0,
            self.sequence,
        )

    def __str__(self) -> str:
        return f"mac-mobility:{self.sequence}" + (":sticky" if self.sticky else "")


# -- decoding and parsing -------------------------------------------------------

_CACHE: dict[bytes, ExtendedCommunity] = {}
_CACHE_MAX = 65536


def decode_ext_community(data: bytes) -> ExtendedCommunity:
    """One 8-octet value -> its class (cached: the same RTs recur in every UPDATE)."""
    data = bytes(data)
    hit = _CACHE.get(data)
    if hit is not None:
        return hit
    if len(data) != 8:
        raise ValueError(f"extended community is {len(data)} octets, expected 8")
    dec = EXT_COMMUNITY_DECODERS.get((data[0], data[1]))
    ec = dec(data[0], data[1], data[2:]) if dec is not None else None
    if ec is None:
        ec = OpaqueExtendedCommunity(data)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[data] = ec
    return ec


def parse_ext_community(text: str) -> ExtendedCommunity:
    """``"target:65000:1"``, ``"origin:192.0.2.1:5"``, ``"encap:vxlan"``,
    ``"color:100"``, ``"mac-mobility:5"``, ``"raw:0300000000000008"``."""
    tag, sep, rest = text.strip().partition(":")
    parser = EXT_COMMUNITY_PARSERS.get(tag.lower()) if sep else None
    if parser is None:
        raise ValueError(
            f"extended community {text!r}: expected one of {', '.join(sorted(EXT_COMMUNITY_PARSERS))} "
            "followed by ':'"
        )
    return parser(rest)


@register
@dataclass(frozen=True, slots=True)
class ExtendedCommunities(PathAttribute):
    """Optional transitive; a length that is not a non-zero multiple of 8 is
    treat-as-withdraw (RFC 7606 section 7.14). Order is kept as received."""

    CODE: ClassVar[int] = AttrCode.EXTENDED_COMMUNITIES
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "extended-communities"

    values: tuple[ExtendedCommunity, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.values, tuple):
            object.__setattr__(self, "values", tuple(self.values))

    @classmethod
    def from_strs(cls, texts: Iterable[str]) -> ExtendedCommunities:
        return cls(tuple(parse_ext_community(t) for t in texts))

    def route_targets(self) -> tuple[RouteTarget, ...]:
        return tuple(v for v in self.values if isinstance(v, RouteTarget))

    def of_type(self, kind: type[E]) -> tuple[Any, ...]:
        """The values that are instances of ``kind`` (e.g. ``Encapsulation``)."""
        return tuple(v for v in self.values if isinstance(v, kind))

    def __contains__(self, value: object) -> bool:
        return value in self.values

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> ExtendedCommunities:
        n = len(value)
        if n == 0 or n % 8:
            raise bad_length(cls.ON_ERROR, "EXTENDED_COMMUNITIES", n, "a non-zero multiple of 8")
        return cls(tuple(decode_ext_community(value[i : i + 8]) for i in range(0, n, 8)))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b"".join(v.encode() for v in self.values)

    def to_json(self) -> Any:
        return [str(v) for v in self.values]

    def __str__(self) -> str:
        return " ".join(str(v) for v in self.values)
