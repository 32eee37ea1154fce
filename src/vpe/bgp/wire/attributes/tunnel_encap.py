"""TUNNEL_ENCAPSULATION (type 23, RFC 9012): tunnels a route's next hop can be reached by.

The attribute is a list of Tunnel TLVs (2-octet type, 2-octet length), each a
list of sub-TLVs whose length field is 1 octet for sub-TLV types 0..127 and 2
octets for 128..255 (RFC 9012 section 2). Sub-TLVs this codec understands get
a class; anything else -- and any known sub-TLV whose content is not in the
exact form the class can re-create (e.g. non-zero reserved bits) -- is kept as
:class:`OpaqueSubTlv` so that the attribute is passed on unchanged.

Errors (RFC 9012 section 13): a TLV structure that cannot be walked makes the
whole attribute malformed (treat-as-withdraw); a Tunnel Egress Endpoint sub-TLV
that is malformed makes its TLV ignored and removed; an attribute left with no
TLV is discarded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import malformed
from .base import PathAttribute, register
from .tunnel_types import TunnelType, tunnel_name

IPAddress = IPv4Address | IPv6Address

SUB_ENCAPSULATION = 1
SUB_PROTOCOL_TYPE = 2
SUB_COLOR = 4
SUB_TUNNEL_EGRESS_ENDPOINT = 6
SUB_UDP_DESTINATION_PORT = 8

_SUB_NAMES = {
    SUB_ENCAPSULATION: "encapsulation",
    SUB_PROTOCOL_TYPE: "protocol-type",
    SUB_COLOR: "color",
    5: "load-balancing-block",
    SUB_TUNNEL_EGRESS_ENDPOINT: "remote-endpoint",
    7: "ds-field",
    SUB_UDP_DESTINATION_PORT: "udp-destination-port",
    9: "embedded-label-handling",
    10: "mpls-label-stack",
    11: "prefix-sid",
    12: "preference",
    13: "binding-sid",
}

_VXLAN_V = 0x80
_VXLAN_M = 0x40


def encode_sub_tlv(sub_type: int, value: bytes) -> bytes:
    """Sub-TLV header + value with the length width RFC 9012 section 2 prescribes."""
    n = len(value)
    if sub_type < 128:
        if n > 255:
            raise ValueError(
                f"sub-TLV {sub_type} value of {n} octets needs a 2-octet length (type >= 128)"
            )
        return bytes((sub_type, n)) + value
    return struct.pack("!BH", sub_type, n) + value


class SubTlv:
    """Base of Tunnel TLV sub-TLVs."""

    __slots__ = ()
    CODE: ClassVar[int] = 0

    @property
    def code(self) -> int:
        return self.CODE

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return encode_sub_tlv(self.code, self.encode_value())

    def _json(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {"type": _SUB_NAMES.get(self.code, f"sub-tlv-{self.code}"), **self._json()}


@dataclass(frozen=True, slots=True)
class OpaqueSubTlv(SubTlv):
    """A sub-TLV kept as received."""

    sub_type: int
    value: bytes

    @property
    def code(self) -> int:
        return self.sub_type

    def encode_value(self) -> bytes:
        return self.value

    def _json(self) -> dict[str, Any]:
        return {"value": self.value.hex()}


def _mac_bytes(mac: bytes | str) -> bytes:
    if isinstance(mac, str):
        mac = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(mac) != 6:
        raise ValueError(f"MAC address of {len(mac)} octets, expected 6")
    return bytes(mac)


@dataclass(frozen=True, slots=True)
class VxlanEncapsulation(SubTlv):
    """VXLAN Encapsulation sub-TLV (RFC 9012 section 3.2.1): VNI (V bit) and the
    router MAC for the inner Ethernet header (M bit)."""

    CODE: ClassVar[int] = SUB_ENCAPSULATION
    vni: int | None = None
    mac: bytes | None = None

    def __post_init__(self) -> None:
        if self.vni is not None and not 0 <= self.vni <= 0xFFFFFF:
            raise ValueError(f"VNI {self.vni} is outside 0..16777215")
        if self.mac is not None:
            object.__setattr__(self, "mac", _mac_bytes(self.mac))

    @classmethod
    def from_value(cls, v: bytes) -> VxlanEncapsulation | None:
        if len(v) != 12 or v[0] & 0x3F or v[10] or v[11]:
            return None
        vni = int.from_bytes(v[1:4], "big")
        mac = bytes(v[4:10])
        has_v, has_m = bool(v[0] & _VXLAN_V), bool(v[0] & _VXLAN_M)
        if (not has_v and vni) or (not has_m and any(mac)):
            return None
        return cls(vni if has_v else None, mac if has_m else None)

    def encode_value(self) -> bytes:
        flags = (_VXLAN_V if self.vni is not None else 0) | (
            _VXLAN_M if self.mac is not None else 0
        )
        return (
            bytes((flags,))
            + (self.vni or 0).to_bytes(3, "big")
            + (self.mac or b"\x00" * 6)
            + b"\x00\x00"
        )

    def _json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.vni is not None:
            d["vni"] = self.vni
        if self.mac is not None:
            d["mac"] = ":".join(f"{b:02x}" for b in self.mac)
        return d


@dataclass(frozen=True, slots=True)
class GreKeyEncapsulation(SubTlv):
    """GRE / MPLS-in-GRE Encapsulation sub-TLV (RFC 9012 sections 3.2.3, 3.2.6):
    an optional 4-octet GRE key (``None`` = empty sub-TLV)."""

    CODE: ClassVar[int] = SUB_ENCAPSULATION
    key: int | None = None

    def __post_init__(self) -> None:
        if self.key is not None and not 0 <= self.key <= 0xFFFFFFFF:
            raise ValueError(f"GRE key {self.key} is outside 0..4294967295")

    @classmethod
    def from_value(cls, v: bytes) -> GreKeyEncapsulation | None:
        if len(v) == 0:
            return cls(None)
        if len(v) == 4:
            return cls(int.from_bytes(v, "big"))
        return None

    def encode_value(self) -> bytes:
        return b"" if self.key is None else self.key.to_bytes(4, "big")

    def _json(self) -> dict[str, Any]:
        return {} if self.key is None else {"gre_key": self.key}


@dataclass(frozen=True, slots=True)
class ProtocolType(SubTlv):
    """Protocol Type sub-TLV (RFC 9012 section 3.4.1): Ethertype of the payload."""

    CODE: ClassVar[int] = SUB_PROTOCOL_TYPE
    ethertype: int

    @classmethod
    def from_value(cls, v: bytes) -> ProtocolType | None:
        return cls(int.from_bytes(v, "big")) if len(v) == 2 else None

    def encode_value(self) -> bytes:
        return self.ethertype.to_bytes(2, "big")

    def _json(self) -> dict[str, Any]:
        return {"ethertype": f"0x{self.ethertype:04x}"}


@dataclass(frozen=True, slots=True)
class ColorSubTlv(SubTlv):
    """Color sub-TLV (RFC 9012 section 3.4.2): a Color extended community."""

    CODE: ClassVar[int] = SUB_COLOR
    color: int

    @classmethod
    def from_value(cls, v: bytes) -> ColorSubTlv | None:
        if len(v) != 8 or v[0] != 0x03 or v[1] != 0x0B or v[2] or v[3]:
            return None
        return cls(int.from_bytes(v[4:8], "big"))

    def encode_value(self) -> bytes:
        return b"\x03\x0b\x00\x00" + self.color.to_bytes(4, "big")

    def _json(self) -> dict[str, Any]:
        return {"color": self.color}


class _BadEndpoint(Exception):
    """A malformed Tunnel Egress Endpoint: its whole TLV is dropped (RFC 9012 s. 13)."""


@dataclass(frozen=True, slots=True)
class RemoteEndpoint(SubTlv):
    """Tunnel Egress Endpoint sub-TLV (RFC 9012 section 3.1): where the tunnel ends;
    ``None`` (AFI 0) means "the route's next hop". Reserved octets are kept."""

    CODE: ClassVar[int] = SUB_TUNNEL_EGRESS_ENDPOINT
    address: IPAddress | None
    reserved: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.address, str):
            object.__setattr__(self, "address", ip_address(self.address))

    @classmethod
    def from_value(cls, v: bytes) -> RemoteEndpoint:
        n = len(v)
        if n < 6:
            raise _BadEndpoint(f"remote endpoint sub-TLV of {n} octets, expected at least 6")
        reserved = int.from_bytes(v[0:4], "big")
        afi = int.from_bytes(v[4:6], "big")
        if afi == 0 and n == 6:
            return cls(None, reserved)
        if afi == 1 and n == 10:
            return cls(IPv4Address(v[6:10]), reserved)
        if afi == 2 and n == 22:
            return cls(IPv6Address(v[6:22]), reserved)
        raise _BadEndpoint(f"remote endpoint with AFI {afi} and {n} octets")

    def encode_value(self) -> bytes:
        addr = self.address
        head = self.reserved.to_bytes(4, "big")
        if addr is None:
            return head + b"\x00\x00"
        return head + (b"\x00\x01" if addr.version == 4 else b"\x00\x02") + addr.packed

    def _json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"address": str(self.address) if self.address is not None else None}
        if self.reserved:
            d["reserved"] = self.reserved
        return d


@dataclass(frozen=True, slots=True)
class UdpDestinationPort(SubTlv):
    """UDP Destination Port sub-TLV (RFC 9012 section 3.3.2), e.g. 6635 for MPLS-in-UDP."""

    CODE: ClassVar[int] = SUB_UDP_DESTINATION_PORT
    port: int

    @classmethod
    def from_value(cls, v: bytes) -> UdpDestinationPort | None:
        return cls(int.from_bytes(v, "big")) if len(v) == 2 else None

    def encode_value(self) -> bytes:
        return self.port.to_bytes(2, "big")

    def _json(self) -> dict[str, Any]:
        return {"port": self.port}


_GRE_LIKE = (TunnelType.GRE, TunnelType.MPLS_IN_GRE)


def _decode_sub_tlv(tunnel_type: int, sub_type: int, v: bytes) -> SubTlv:
    """Typed sub-TLV if its content has the exact expected form, else opaque.
    Raises :class:`_BadEndpoint` for a malformed egress endpoint."""
    typed: SubTlv | None = None
    if sub_type == SUB_ENCAPSULATION:
        if tunnel_type == TunnelType.VXLAN:
            typed = VxlanEncapsulation.from_value(v)
        elif tunnel_type in _GRE_LIKE:
            typed = GreKeyEncapsulation.from_value(v)
    elif sub_type == SUB_TUNNEL_EGRESS_ENDPOINT:
        typed = RemoteEndpoint.from_value(v)
    elif sub_type == SUB_COLOR:
        typed = ColorSubTlv.from_value(v)
    elif sub_type == SUB_UDP_DESTINATION_PORT:
        typed = UdpDestinationPort.from_value(v)
    elif sub_type == SUB_PROTOCOL_TYPE:
        typed = ProtocolType.from_value(v)
    return typed if typed is not None else OpaqueSubTlv(sub_type, bytes(v))


@dataclass(frozen=True, slots=True)
class Tunnel:
    """One Tunnel TLV: a tunnel type and its sub-TLVs, in wire order."""

    tunnel_type: int
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.tunnel_type <= 0xFFFF:
            raise ValueError(f"tunnel type {self.tunnel_type} is outside 0..65535")
        if not isinstance(self.sub_tlvs, tuple):
            object.__setattr__(self, "sub_tlvs", tuple(self.sub_tlvs))

    @staticmethod
    def _common(
        endpoint: IPAddress | str | None, udp_port: int | None, color: int | None
    ) -> list[SubTlv]:
        subs: list[SubTlv] = []
        if endpoint is not None:
            subs.append(RemoteEndpoint(ip_address(endpoint)))
        if color is not None:
            subs.append(ColorSubTlv(color))
        if udp_port is not None:
            subs.append(UdpDestinationPort(udp_port))
        return subs

    @classmethod
    def vxlan(
        cls,
        endpoint: IPAddress | str | None = None,
        *,
        vni: int | None = None,
        mac: bytes | str | None = None,
        udp_port: int | None = None,
        color: int | None = None,
    ) -> Tunnel:
        mac_b = _mac_bytes(mac) if mac is not None else None
        subs: list[SubTlv] = (
            [VxlanEncapsulation(vni, mac_b)] if (vni is not None or mac_b is not None) else []
        )
        return cls(TunnelType.VXLAN, (*subs, *cls._common(endpoint, udp_port, color)))

    @classmethod
    def mpls_in_gre(
        cls,
        endpoint: IPAddress | str | None = None,
        *,
        key: int | None = None,
        color: int | None = None,
    ) -> Tunnel:
        subs: list[SubTlv] = [GreKeyEncapsulation(key)] if key is not None else []
        return cls(TunnelType.MPLS_IN_GRE, (*subs, *cls._common(endpoint, None, color)))

    @classmethod
    def mpls_in_udp(
        cls,
        endpoint: IPAddress | str | None = None,
        *,
        udp_port: int | None = None,
        color: int | None = None,
    ) -> Tunnel:
        return cls(TunnelType.MPLS_IN_UDP, tuple(cls._common(endpoint, udp_port, color)))

    def _first(self, kind: type[Any]) -> Any:
        for s in self.sub_tlvs:
            if isinstance(s, kind):
                return s
        return None

    @property
    def endpoint(self) -> IPAddress | None:
        s = self._first(RemoteEndpoint)
        return s.address if s is not None else None

    @property
    def udp_port(self) -> int | None:
        s = self._first(UdpDestinationPort)
        return s.port if s is not None else None

    @property
    def color(self) -> int | None:
        s = self._first(ColorSubTlv)
        return s.color if s is not None else None

    @property
    def encapsulation(self) -> SubTlv | None:
        """The Encapsulation sub-TLV (typed or opaque), if any."""
        for s in self.sub_tlvs:
            if s.code == SUB_ENCAPSULATION:
                return s
        return None

    def encode(self) -> bytes:
        body = b"".join(s.encode() for s in self.sub_tlvs)
        return struct.pack("!HH", self.tunnel_type, len(body)) + body

    def to_json(self) -> dict[str, Any]:
        return {
            "type": tunnel_name(self.tunnel_type),
            "sub_tlvs": [s.to_json() for s in self.sub_tlvs],
        }


_TLV_HDR = struct.Struct("!HH")
_U16 = struct.Struct("!H")


def _decode_tunnel(ttype: int, v: bytes, action: UpdateAction) -> Tunnel:
    subs: list[SubTlv] = []
    pos = 0
    n = len(v)
    while pos < n:
        st = v[pos]
        if st < 128:
            if pos + 2 > n:
                raise malformed(action, f"tunnel {tunnel_name(ttype)}: sub-TLV header truncated")
            sl = v[pos + 1]
            vs = pos + 2
        else:
            if pos + 3 > n:
                raise malformed(action, f"tunnel {tunnel_name(ttype)}: sub-TLV header truncated")
            sl = _U16.unpack_from(v, pos + 1)[0]
            vs = pos + 3
        ve = vs + sl
        if ve > n:
            raise malformed(
                action,
                f"tunnel {tunnel_name(ttype)}: sub-TLV {st} length {sl} overruns the {n}-octet TLV",
            )
        subs.append(_decode_sub_tlv(ttype, st, v[vs:ve]))
        pos = ve
    return Tunnel(ttype, tuple(subs))


@register
@dataclass(frozen=True, slots=True)
class TunnelEncapsulation(PathAttribute):
    CODE: ClassVar[int] = AttrCode.TUNNEL_ENCAPSULATION
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "tunnel-encapsulation"

    tunnels: tuple[Tunnel, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.tunnels, tuple):
            object.__setattr__(self, "tunnels", tuple(self.tunnels))

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> TunnelEncapsulation:
        n = len(value)
        tunnels: list[Tunnel] = []
        dropped: list[str] = []
        pos = 0
        while pos < n:
            if pos + 4 > n:
                raise malformed(
                    cls.ON_ERROR, f"TUNNEL_ENCAPSULATION: TLV header truncated at octet {pos}"
                )
            ttype, tlen = _TLV_HDR.unpack_from(value, pos)
            end = pos + 4 + tlen
            if end > n:
                raise malformed(
                    cls.ON_ERROR,
                    f"TUNNEL_ENCAPSULATION: tunnel {tunnel_name(ttype)} length {tlen} overruns the "
                    f"{n}-octet attribute",
                )
            try:
                tunnels.append(_decode_tunnel(ttype, value[pos + 4 : end], cls.ON_ERROR))
            except _BadEndpoint as e:
                dropped.append(f"tunnel {tunnel_name(ttype)}: {e}")
            pos = end
        if not tunnels:
            why = "; ".join(dropped) if dropped else "no tunnel TLV"
            raise malformed(
                UpdateAction.ATTRIBUTE_DISCARD, f"TUNNEL_ENCAPSULATION has no usable tunnel ({why})"
            )
        return cls(tuple(tunnels))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b"".join(t.encode() for t in self.tunnels)

    def to_json(self) -> Any:
        return [t.to_json() for t in self.tunnels]
