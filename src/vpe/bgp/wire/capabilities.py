"""BGP capabilities (RFC 5492): one small class per capability code.

Each capability is a frozen slotted dataclass registered by its code with
:func:`register`. It implements ``decode(value)`` (a classmethod over the
capability's value octets that raises only :class:`BGPError`),
``encode_value()`` and ``to_json()``; the (code, length) header is handled
here once for all. Capabilities this speaker does not know are kept as
:class:`UnknownCapability` so they can be shown and ignored (RFC 5492
section 3: an unrecognised capability is not an error).

Capabilities carry no session context: unlike path attributes their
encoding never depends on what was negotiated, so ``decode`` takes no ctx.
A malformed known capability is an OPEN Message Error with subcode 0
(Unspecific): RFC 5492 names no subcode for it, and the data field carries
the offending capability so the peer's operator can see what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .constants import AFI, ErrorCode, Family
from .errors import BGPError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class CapabilityCode:
    """IANA capability codes this module knows about."""

    MULTIPROTOCOL = 1
    ROUTE_REFRESH = 2
    EXTENDED_NEXT_HOP = 5
    EXTENDED_MESSAGE = 6
    ROLE = 9
    GRACEFUL_RESTART = 64
    FOUR_OCTET_AS = 65
    ADD_PATH = 69
    ENHANCED_ROUTE_REFRESH = 70
    LONG_LIVED_GRACEFUL_RESTART = 71
    FQDN = 73
    ROUTE_REFRESH_OLD = 128  # pre-standard (Cisco) route refresh


def _family_json(afi: int, safi: int) -> str:
    return Family(afi, safi).name


def _malformed(code: int, name: str, value: bytes, why: str) -> BGPError:
    """The OPEN Message Error raised for a malformed known capability."""
    tlv = bytes([code, min(len(value), 255)]) + bytes(value[:255])
    return BGPError(ErrorCode.OPEN_MESSAGE, 0, tlv, f"capability {code} ({name}): {why}")


class Capability:
    """Base of every capability class."""

    __slots__ = ()
    CODE: ClassVar[int]
    NAME: ClassVar[str] = ""

    @property
    def code(self) -> int:
        return self.CODE

    @property
    def name(self) -> str:
        return self.NAME or f"capability-{self.code}"

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        raise NotImplementedError

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        """Code, length and value. Raises ValueError if the value exceeds 255 octets."""
        value = self.encode_value()
        if len(value) > 255:
            raise ValueError(f"capability {self.name}: value of {len(value)} octets exceeds 255")
        return bytes((self.code, len(value))) + value

    def _json_fields(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, **self._json_fields()}


C = TypeVar("C", bound=type[Capability])

#: capability code -> class
CAPABILITIES: dict[int, type[Capability]] = {}


def register(cls: C) -> C:
    """Class decorator: make ``cls`` the decoder for its capability code."""
    if cls.CODE in CAPABILITIES:
        raise RuntimeError(f"capability {cls.CODE} registered twice")
    CAPABILITIES[cls.CODE] = cls
    return cls


@dataclass(frozen=True, slots=True)
class UnknownCapability(Capability):
    """A capability this speaker does not implement: kept opaque, shown, ignored."""

    type_code: int
    value: bytes = b""

    @property
    def code(self) -> int:
        return self.type_code

    @classmethod
    def decode(cls, value: bytes) -> Capability:  # pragma: no cover - built directly
        raise NotImplementedError("UnknownCapability is built with its code")

    def encode_value(self) -> bytes:
        return self.value

    def _json_fields(self) -> dict[str, Any]:
        return {"value": self.value.hex()}


class _Empty(Capability):
    """A capability whose presence is all it says: the value must be empty."""

    __slots__ = ()

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        if value:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {len(value)}, must be 0")
        return cls()

    def encode_value(self) -> bytes:
        return b""


@register
@dataclass(frozen=True, slots=True)
class Multiprotocol(Capability):
    """RFC 4760: the sender can exchange routes of one (AFI, SAFI); one per family."""

    CODE = CapabilityCode.MULTIPROTOCOL
    NAME = "multiprotocol"

    afi: int
    safi: int

    @property
    def family(self) -> Family:
        return Family(self.afi, self.safi)

    @classmethod
    def of(cls, family: Family) -> Multiprotocol:
        return cls(family.afi, family.safi)

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        if len(value) != 4:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {len(value)}, must be 4")
        # AFI (2), reserved (1, ignored on receipt), SAFI (1)
        return cls(_U16.unpack_from(value, 0)[0], value[3])

    def encode_value(self) -> bytes:
        return struct.pack("!HBB", self.afi, 0, self.safi)

    def _json_fields(self) -> dict[str, Any]:
        return {"family": _family_json(self.afi, self.safi)}


@register
@dataclass(frozen=True, slots=True)
class RouteRefresh(_Empty):
    """RFC 2918: the sender accepts ROUTE-REFRESH messages."""

    CODE = CapabilityCode.ROUTE_REFRESH
    NAME = "route-refresh"


@register
@dataclass(frozen=True, slots=True)
class ExtendedNextHop(Capability):
    """RFC 8950: the sender accepts next hops of ``nh_afi`` for NLRI of (afi, safi).

    ``entries`` holds (NLRI AFI, NLRI SAFI, next-hop AFI) triples; the usual
    one is (1, 1, 2): IPv4 unicast routes with IPv6 next hops.
    """

    CODE = CapabilityCode.EXTENDED_NEXT_HOP
    NAME = "extended-next-hop"

    entries: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        n = len(value)
        if n % 6:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {n} is not a multiple of 6")
        return cls(tuple(struct.unpack_from("!HHH", value, i) for i in range(0, n, 6)))

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HHH", a, s, nh) for a, s, nh in self.entries)

    def families(self, nh_afi: int = AFI.IPV6) -> frozenset[Family]:
        """Families of another AFI for which next hops of ``nh_afi`` are accepted.

        Entries whose NLRI AFI equals the next-hop AFI (GoBGP sends
        (2, 128, 2)) say nothing beyond the default and are left out.
        """
        return frozenset(Family(a, s) for a, s, nh in self.entries if nh == nh_afi and a != nh)

    def _json_fields(self) -> dict[str, Any]:
        return {
            "entries": [
                {"family": _family_json(a, s), "next_hop_afi": nh} for a, s, nh in self.entries
            ]
        }


@register
@dataclass(frozen=True, slots=True)
class ExtendedMessage(_Empty):
    """RFC 8654: the sender accepts messages up to 65535 octets."""

    CODE = CapabilityCode.EXTENDED_MESSAGE
    NAME = "extended-message"


@register
@dataclass(frozen=True, slots=True)
class GracefulRestart(Capability):
    """RFC 4724 (+ RFC 8538 N bit).

    ``restart_state`` (R bit): the sender has restarted and is holding its
    routes' forwarding state. ``notification`` (N bit, RFC 8538): graceful
    restart also applies after a NOTIFICATION other than Hard Reset.
    ``time``: seconds the peer should wait for the session to come back
    (12 bits). ``families``: (family, forwarding state preserved) pairs.
    """

    CODE = CapabilityCode.GRACEFUL_RESTART
    NAME = "graceful-restart"

    restart_state: bool = False
    notification: bool = False
    time: int = 120
    families: tuple[tuple[Family, bool], ...] = ()

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        n = len(value)
        if n < 2 or (n - 2) % 4:
            raise _malformed(
                cls.CODE, cls.NAME, value, f"length {n}, must be 2 plus a multiple of 4"
            )
        head = _U16.unpack_from(value, 0)[0]
        fams = []
        for i in range(2, n, 4):
            afi, safi, flags = struct.unpack_from("!HBB", value, i)
            fams.append((Family(afi, safi), bool(flags & 0x80)))
        return cls(bool(head & 0x8000), bool(head & 0x4000), head & 0x0FFF, tuple(fams))

    def encode_value(self) -> bytes:
        if not 0 <= self.time <= 0x0FFF:
            raise ValueError(f"graceful restart time {self.time} does not fit 12 bits")
        head = self.time | (0x8000 if self.restart_state else 0) | (
            0x4000 if self.notification else 0
        )
        return _U16.pack(head) + b"".join(
            struct.pack("!HBB", f.afi, f.safi, 0x80 if fwd else 0) for f, fwd in self.families
        )

    def _json_fields(self) -> dict[str, Any]:
        return {
            "restart_state": self.restart_state,
            "notification": self.notification,
            "time": self.time,
            "families": [{"family": f.name, "forwarding": fwd} for f, fwd in self.families],
        }


@register
@dataclass(frozen=True, slots=True)
class FourOctetAS(Capability):
    """RFC 6793: the sender speaks 4-octet AS numbers; carries its real AS."""

    CODE = CapabilityCode.FOUR_OCTET_AS
    NAME = "four-octet-as"

    asn: int

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        if len(value) != 4:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {len(value)}, must be 4")
        return cls(_U32.unpack_from(value, 0)[0])

    def encode_value(self) -> bytes:
        return _U32.pack(self.asn)

    def _json_fields(self) -> dict[str, Any]:
        return {"asn": self.asn}


class AddPathMode:
    """RFC 7911 Send/Receive field values (bit flags).

    0 is outside RFC 7911 but FRR sends it for families where it does
    neither; it is kept (as "none") since its meaning is unambiguous.
    """

    NONE = 0
    RECEIVE = 1
    SEND = 2
    BOTH = 3
    NAMES: ClassVar[dict[int, str]] = {0: "none", 1: "receive", 2: "send", 3: "both"}


@register
@dataclass(frozen=True, slots=True)
class AddPath(Capability):
    """RFC 7911: per family, whether the sender can send and/or receive path ids.

    ``entries`` holds (family, mode) pairs, mode one of :class:`AddPathMode`.
    """

    CODE = CapabilityCode.ADD_PATH
    NAME = "add-path"

    entries: tuple[tuple[Family, int], ...] = ()

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        n = len(value)
        if n % 4:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {n} is not a multiple of 4")
        entries = []
        for i in range(0, n, 4):
            afi, safi, mode = struct.unpack_from("!HBB", value, i)
            if mode > AddPathMode.BOTH:
                # RFC 7911 section 4: treat the capability as not understood.
                return UnknownCapability(cls.CODE, bytes(value))
            entries.append((Family(afi, safi), mode))
        return cls(tuple(entries))

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HBB", f.afi, f.safi, m) for f, m in self.entries)

    def mode(self, family: Family) -> int:
        """The mode for ``family`` (0 if the family is not listed)."""
        for f, m in self.entries:
            if f == family:
                return m
        return 0

    def _json_fields(self) -> dict[str, Any]:
        return {
            "families": [
                {"family": f.name, "mode": AddPathMode.NAMES.get(m, str(m))}
                for f, m in self.entries
            ]
        }


@register
@dataclass(frozen=True, slots=True)
class EnhancedRouteRefresh(_Empty):
    """RFC 7313: the sender brackets refreshed routes with BoRR/EoRR."""

    CODE = CapabilityCode.ENHANCED_ROUTE_REFRESH
    NAME = "enhanced-route-refresh"


@register
@dataclass(frozen=True, slots=True)
class LongLivedGracefulRestart(Capability):
    """RFC 9494: per family (family, forwarding preserved, long-lived stale time in s)."""

    CODE = CapabilityCode.LONG_LIVED_GRACEFUL_RESTART
    NAME = "long-lived-graceful-restart"

    families: tuple[tuple[Family, bool, int], ...] = ()

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        n = len(value)
        if n % 7:
            raise _malformed(cls.CODE, cls.NAME, value, f"length {n} is not a multiple of 7")
        fams = []
        for i in range(0, n, 7):
            afi, safi, flags = struct.unpack_from("!HBB", value, i)
            stale = int.from_bytes(value[i + 4 : i + 7], "big")
            fams.append((Family(afi, safi), bool(flags & 0x80), stale))
        return cls(tuple(fams))

    def encode_value(self) -> bytes:
        out = []
        for f, fwd, stale in self.families:
            if not 0 <= stale <= 0xFFFFFF:
                raise ValueError(f"long-lived stale time {stale} does not fit 24 bits")
            out.append(struct.pack("!HBB", f.afi, f.safi, 0x80 if fwd else 0))
            out.append(stale.to_bytes(3, "big"))
        return b"".join(out)

    def _json_fields(self) -> dict[str, Any]:
        return {
            "families": [
                {"family": f.name, "forwarding": fwd, "stale_time": t}
                for f, fwd, t in self.families
            ]
        }


@register
@dataclass(frozen=True, slots=True)
class Fqdn(Capability):
    """draft-walton-bgp-hostname-capability: the sender's host and domain name.

    Names are informational only, so undecodable octets are replaced rather
    than rejected.
    """

    CODE = CapabilityCode.FQDN
    NAME = "fqdn"

    hostname: str
    domain: str = ""

    @classmethod
    def decode(cls, value: bytes) -> Capability:
        n = len(value)
        if n < 1 or 1 + value[0] + 1 > n:
            raise _malformed(cls.CODE, cls.NAME, value, "host name length overruns the value")
        hlen = value[0]
        host = bytes(value[1 : 1 + hlen]).decode("utf-8", "replace")
        dlen = value[1 + hlen]
        if 2 + hlen + dlen != n:
            raise _malformed(
                cls.CODE, cls.NAME, value, f"domain name length {dlen} does not match the value"
            )
        dom = bytes(value[2 + hlen : n]).decode("utf-8", "replace")
        return cls(host, dom)

    def encode_value(self) -> bytes:
        h = self.hostname.encode()[:255]
        d = self.domain.encode()[:255]
        return bytes([len(h)]) + h + bytes([len(d)]) + d

    def _json_fields(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "domain": self.domain}


def decode_capabilities(data: bytes) -> list[Capability]:
    """All capabilities in one Capabilities optional parameter value (RFC 5492)."""
    out: list[Capability] = []
    n = len(data)
    pos = 0
    while pos < n:
        if pos + 2 > n:
            raise BGPError(
                ErrorCode.OPEN_MESSAGE,
                0,
                bytes(data[pos:]),
                f"capability header truncated at offset {pos} of the {n}-octet parameter",
            )
        code = data[pos]
        length = data[pos + 1]
        end = pos + 2 + length
        if end > n:
            raise BGPError(
                ErrorCode.OPEN_MESSAGE,
                0,
                bytes(data[pos:]),
                f"capability {code} length {length} overruns the {n}-octet parameter",
            )
        value = bytes(data[pos + 2 : end])
        cls = CAPABILITIES.get(code)
        out.append(UnknownCapability(code, value) if cls is None else cls.decode(value))
        pos = end
    return out


def encode_capabilities(caps: tuple[Capability, ...] | list[Capability]) -> bytes:
    return b"".join(c.encode() for c in caps)

