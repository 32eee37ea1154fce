"""Route Distinguisher (RFC 4364 section 4.2), and the route target text forms.

An RD is kept as its raw 8 octets: that is what goes into NLRI keys, what
compares and hashes, and what round-trips for types this code does not know.
The human forms are computed on demand:

* type 0: ``"65000:1"`` (2-octet AS : 4-octet number)
* type 1: ``"192.0.2.1:7"`` (IPv4 address : 2-octet number)
* type 2: ``"4200000000:7"`` (4-octet AS : 2-octet number); a type 2 RD whose
  AS fits in 2 octets is written ``"65000L:7"`` so the text names one RD only
* anything else: ``"0x"`` + 16 hex digits

Route targets (RFC 4360 extended communities of subtype 2) use the same
administrator forms behind ``"target:"``; RTC NLRI (RFC 4684) need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF


def _number(text: str, limit: int, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what}: {text!r} is not a decimal number")
    v = int(text)
    if v > limit:
        raise ValueError(f"{what}: {v} exceeds {limit}")
    return v


def format_admin_pair(kind: int, six: bytes) -> str:
    """Text of the 6 value octets of an RD or route target of type ``kind`` (0, 1, 2)."""
    if kind == 0:
        return f"{int.from_bytes(six[:2], 'big')}:{int.from_bytes(six[2:], 'big')}"
    if kind == 1:
        return f"{six[0]}.{six[1]}.{six[2]}.{six[3]}:{int.from_bytes(six[4:], 'big')}"
    asn = int.from_bytes(six[:4], "big")
    return f"{asn}{'' if asn > _U16_MAX else 'L'}:{int.from_bytes(six[4:], 'big')}"


def parse_admin_pair(text: str, what: str) -> tuple[int, bytes]:
    """(type, 6 value octets) of ``"asn:n"``, ``"asnL:n"`` or ``"a.b.c.d:n"``."""
    admin, sep, assigned = text.partition(":")
    if not sep:
        raise ValueError(f"{what}: {text!r} has no ':' between administrator and number")
    if "." in admin:
        try:
            ip = IPv4Address(admin)
        except ValueError:
            raise ValueError(f"{what}: {admin!r} is not an IPv4 address") from None
        return 1, ip.packed + _number(assigned, _U16_MAX, what).to_bytes(2, "big")
    if admin[-1:] in ("L", "l"):
        asn = _number(admin[:-1], _U32_MAX, what)
        return 2, asn.to_bytes(4, "big") + _number(assigned, _U16_MAX, what).to_bytes(2, "big")
    asn = _number(admin, _U32_MAX, what)
    if asn <= _U16_MAX:
        return 0, asn.to_bytes(2, "big") + _number(assigned, _U32_MAX, what).to_bytes(4, "big")
    return 2, asn.to_bytes(4, "big") + _number(assigned, _U16_MAX, what).to_bytes(2, "big")


def _parse_hex8(text: str, what: str) -> bytes:
    digits = text[2:]
    if len(digits) != 16:
        raise ValueError(f"{what}: {text!r} must be 0x followed by 16 hex digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not hexadecimal") from None


@dataclass(frozen=True, slots=True, order=True)
class RouteDistinguisher:
    """An RD as its 8 wire octets; see the module docstring for the text forms."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != 8:
            raise ValueError(f"route distinguisher needs 8 octets, got {self.raw!r}")

    @property
    def type(self) -> int:
        return int.from_bytes(self.raw[:2], "big")

    @property
    def administrator(self) -> int | str:
        """AS number (types 0, 2), IPv4 address text (type 1), or the 6 value
        octets as an int for unknown types."""
        t = self.type
        if t == 0:
            return int.from_bytes(self.raw[2:4], "big")
        if t == 1:
            return str(IPv4Address(self.raw[2:6]))
        if t == 2:
            return int.from_bytes(self.raw[2:6], "big")
        return int.from_bytes(self.raw[2:], "big")

    @property
    def assigned(self) -> int:
        """The assigned number (0 for unknown types)."""
        t = self.type
        if t == 0:
            return int.from_bytes(self.raw[4:], "big")
        if t in (1, 2):
            return int.from_bytes(self.raw[6:], "big")
        return 0

    def __str__(self) -> str:
        t = self.type
        if t <= 2:
            return format_admin_pair(t, self.raw[2:])
        return "0x" + self.raw.hex()

    def __repr__(self) -> str:
        return f"RouteDistinguisher({str(self)!r})"

    def to_json(self) -> str:
        return str(self)

    @classmethod
    def from_str(cls, text: str) -> RouteDistinguisher:
        """Parse any of the text forms; ``ValueError`` naming the problem otherwise."""
        what = f"route distinguisher {text!r}"
        if text[:2] in ("0x", "0X"):
            return cls(_parse_hex8(text, what))
        kind, six = parse_admin_pair(text, what)
        return cls(kind.to_bytes(2, "big") + six)

    @classmethod
    def type0(cls, asn: int, number: int) -> RouteDistinguisher:
        if not (0 <= asn <= _U16_MAX and 0 <= number <= _U32_MAX):
            raise ValueError(f"type 0 route distinguisher {asn}:{number} out of range")
        return cls(b"\x00\x00" + asn.to_bytes(2, "big") + number.to_bytes(4, "big"))

    @classmethod
    def type1(cls, address: str | IPv4Address, number: int) -> RouteDistinguisher:
        if not 0 <= number <= _U16_MAX:
            raise ValueError(f"type 1 route distinguisher {address}:{number} out of range")
        return cls(b"\x00\x01" + IPv4Address(address).packed + number.to_bytes(2, "big"))

    @classmethod
    def type2(cls, asn: int, number: int) -> RouteDistinguisher:
        if not (0 <= asn <= _U32_MAX and 0 <= number <= _U16_MAX):
            raise ValueError(f"type 2 route distinguisher {asn}:{number} out of range")
        return cls(b"\x00\x02" + asn.to_bytes(4, "big") + number.to_bytes(2, "big"))


def as_rd(rd: RouteDistinguisher | str | bytes) -> RouteDistinguisher:
    """Accept an RD value, its text, or its 8 octets."""
    if isinstance(rd, RouteDistinguisher):
        return rd
    if isinstance(rd, str):
        return RouteDistinguisher.from_str(rd)
    return RouteDistinguisher(bytes(rd))


# -- route targets (as carried in RTC NLRI) ----------------------------------

_RT_TYPES = (0x00, 0x01, 0x02)  # transitive 2-octet AS, IPv4, 4-octet AS specific
_RT_SUBTYPE = 0x02


def format_route_target(raw: bytes) -> str:
    """``"target:65000:1"`` for route target extended communities, else ``"0x..."``."""
    if len(raw) == 8 and raw[1] == _RT_SUBTYPE and raw[0] in _RT_TYPES:
        return "target:" + format_admin_pair(raw[0], raw[2:])
    return "0x" + raw.hex()


def parse_route_target(text: str) -> bytes:
    """The 8 octets of ``"target:..."`` or ``"0x"`` + 16 hex digits."""
    what = f"route target {text!r}"
    if text[:2] in ("0x", "0X"):
        return _parse_hex8(text, what)
    if not text.startswith("target:"):
        raise ValueError(f"{what}: expected 'target:<admin>:<number>' or 0x + 16 hex digits")
    kind, six = parse_admin_pair(text[7:], what)
    return bytes((kind, _RT_SUBTYPE)) + six
