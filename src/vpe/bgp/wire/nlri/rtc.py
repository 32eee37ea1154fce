"""Route Target Constraint NLRI (RFC 4684 section 4), AFI 1 / SAFI 132.

Wire form: ``[path id] length prefix`` where the prefix is the origin AS
(4 octets) followed by a route target (an 8-octet extended community) and
the length is 0 (the default route: "send me every VPN route") or 32..96
bits; lengths between 33 and 95 name a route target prefix. Like unicast,
the key is the record itself (length octet + minimal octets).

Text forms: ``"default"``; ``"65000:target:65000:1"`` (whole route target);
``"65000:0x1122..."`` (whole, not a route target type); ``"65000:*"`` (origin
AS only, 32 bits); ``"65000:0x0002fde8/32"`` (a partial route target: its
present octets in hex and its bit length).
"""

from __future__ import annotations

from typing import Any, Self

from ..constants import RTC
from ..context import CodecContext
from ..errors import NlriError
from .base import IPAddress, Nlri, PlainNlri, register_codec
from .prefix import (
    HOST_BITS,
    PLEN_BYTE,
    KeyRecordCodec,
    check_path_id,
    clear_host_bits,
    decode_ip_nexthop,
    encode_ip_nexthop,
    path_id_error,
)
from .rd import format_route_target, parse_route_target


class RouteTargetMembership(PlainNlri):
    """One RT membership advertisement: origin AS + route target (prefix)."""

    __slots__ = ()
    FAMILY = RTC

    @property
    def prefix_len(self) -> int:
        return self.key[0]

    @property
    def is_default(self) -> bool:
        return self.key[0] == 0

    @property
    def origin_as(self) -> int | None:
        """None for the default route."""
        return int.from_bytes(self.key[1:5], "big") if self.key[0] else None

    @property
    def route_target_len(self) -> int:
        """Bits of the route target present (0..64)."""
        return max(self.key[0] - 32, 0)

    @property
    def route_target(self) -> bytes | None:
        """The route target as 8 raw octets (zero-padded when partial); None
        for the default route and for an origin-AS-only NLRI."""
        rt = self.key[5:]
        return rt + bytes(8 - len(rt)) if rt else None

    def __str__(self) -> str:
        plen = self.key[0]
        if plen == 0:
            return "default"
        asn = int.from_bytes(self.key[1:5], "big")
        if plen == 32:
            return f"{asn}:*"
        rt = self.key[5:]
        if plen == 96:
            return f"{asn}:{format_route_target(rt)}"
        return f"{asn}:0x{rt.hex()}/{plen - 32}"

    def to_json(self) -> dict[str, Any]:
        rt = self.route_target
        if rt is None:
            rt_text = None
        elif self.key[0] == 96:
            rt_text = format_route_target(rt)
        else:
            rt_text = "0x" + rt.hex()
        return {
            "rtc": str(self),
            "prefix_len": self.key[0],
            "origin_as": self.origin_as,
            "route_target": rt_text,
            "route_target_len": self.route_target_len,
            "path_id": self.path_id,
        }

    @classmethod
    def default(cls, path_id: int = 0) -> Self:
        return cls(b"\x00", check_path_id(path_id, "rtc"))

    @classmethod
    def from_parts(
        cls, origin_as: int, route_target: bytes | str | None = None, rt_bits: int = 64,
        path_id: int = 0,
    ) -> Self:
        """``route_target`` as 8 octets or text; ``rt_bits`` < 64 makes a prefix
        of it; ``None`` makes the origin-AS-only (32-bit) form."""
        if not 0 <= origin_as <= 0xFFFFFFFF:
            raise ValueError(f"rtc: origin AS {origin_as} is not a 4-octet AS number")
        if route_target is None:
            rt_bits = 0
            raw = b""
        else:
            raw = parse_route_target(route_target) if isinstance(route_target, str) else bytes(route_target)
            if len(raw) != 8:
                raise ValueError(f"rtc: route target needs 8 octets, got {len(raw)}")
            if not 0 <= rt_bits <= 64:
                raise ValueError(f"rtc: route target length {rt_bits} is not within 0..64")
        key = PLEN_BYTE[32 + rt_bits] + origin_as.to_bytes(4, "big") + raw[: (rt_bits + 7) >> 3]
        return cls(clear_host_bits(key, rt_bits), check_path_id(path_id, "rtc"))

    @classmethod
    def from_str(cls, text: str, path_id: int = 0) -> Self:
        """Parse any of the text forms in the module docstring."""
        if text == "default":
            return cls.default(path_id)
        asn_text, sep, rest = text.partition(":")
        if not (sep and asn_text.isascii() and asn_text.isdigit()):
            raise ValueError(f"rtc {text!r}: expected 'default' or '<origin AS>:<route target>'")
        asn = int(asn_text)
        if rest == "*":
            return cls.from_parts(asn, None, path_id=path_id)
        if "/" in rest:
            hex_text, _, bits_text = rest.partition("/")
            if not (hex_text[:2] in ("0x", "0X") and bits_text.isascii() and bits_text.isdigit()):
                raise ValueError(f"rtc {text!r}: a partial route target is written 0x<hex>/<bits>")
            try:
                raw = bytes.fromhex(hex_text[2:])
            except ValueError:
                raise ValueError(f"rtc {text!r}: {hex_text!r} is not hexadecimal") from None
            bits = int(bits_text)
            if len(raw) > 8 or bits > 64 or len(raw) < (bits + 7) >> 3:
                raise ValueError(f"rtc {text!r}: {len(raw)} octets cannot hold {bits} bits")
            return cls.from_parts(asn, raw + bytes(8 - len(raw)), bits, path_id)
        return cls.from_parts(asn, parse_route_target(rest), 64, path_id)


class RtcCodec(KeyRecordCodec):
    """RTC: like unicast, with the length restricted to 0 or 32..96.

    :meth:`decode` keeps its own copy of the unicast walk rather than adding
    the 0-or-32..96 test to the unicast hot loop."""

    family = RTC

    def decode(self, data: bytes, addpath: bool) -> list[Nlri]:
        if type(data) is not bytes:
            data = bytes(data)
        out: list[Nlri] = []
        app = out.append
        n = len(data)
        pos = 0
        pid = 0
        while pos < n:
            if addpath:
                if pos + 5 > n:
                    raise path_id_error("rtc", pos, n)
                pid = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            plen = data[pos]
            if plen > 96 or 0 < plen < 32:
                raise NlriError(
                    f"rtc: prefix length {plen} at offset {pos} (allowed 0 or 32..96)"
                )
            end = pos + 1 + ((plen + 7) >> 3)
            if end > n:
                raise NlriError(
                    f"rtc: prefix length {plen} at offset {pos} needs {end - pos} octets, "
                    f"{n - pos} remain"
                )
            key = data[pos:end]
            if plen & 7 and key[-1] & HOST_BITS[plen & 7]:
                key = clear_host_bits(key, plen)
            app(RouteTargetMembership(key, pid))
            pos = end
        return out

    def decode_nexthop(
        self, data: bytes, ctx: CodecContext
    ) -> tuple[IPAddress | None, IPAddress | None]:
        return decode_ip_nexthop(data, "rtc", True)

    def encode_nexthop(
        self, nexthop: IPAddress | None, link_local: IPAddress | None = None
    ) -> bytes:
        return encode_ip_nexthop(nexthop, link_local, "rtc", False)


RTC_CODEC = register_codec(RtcCodec())
