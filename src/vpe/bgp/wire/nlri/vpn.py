"""VPNv4 and VPNv6 NLRI (RFC 4364 section 4.3.4, RFC 4659), label stack as in RFC 8277.

Wire form: ``[path id] length labels RD prefix``. The key is
``prefix-length octet + RD + minimal prefix octets`` (the length octet holds
the IP prefix length only, not the label and RD bits), so the same VPN route
has the same key whatever label it is advertised with.

Withdrawals carry one compatibility label field; see :mod:`.labeled`.

Next hop (RFC 4364 section 4.3.2, RFC 4659 section 3.2.1, RFC 8950): an
RD of zeros followed by the address: RD+IPv4 (12 octets, VPNv4 only),
RD+IPv6 (24) or RD+IPv6+RD+IPv6 link-local (48). The RD of a next hop
carries nothing and is not checked on receipt.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar, Self

from ..constants import VPNV4, VPNV6
from ..context import CodecContext
from ..errors import NlriError
from .base import IPAddress, register_codec
from .labeled import LabeledCodec, LabeledNlri, check_labels
from .prefix import (
    PLEN_BYTE,
    IPNetwork,
    check_path_id,
    format_prefix,
    make_network,
    prefix_octets,
)
from .rd import RouteDistinguisher, as_rd

_RD0 = bytes(8)
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


class VpnPrefix(LabeledNlri):
    """A VPN-IP route: RD + prefix (the key) and its label stack."""

    __slots__ = ()
    VERSION: ClassVar[int]

    @property
    def prefix_len(self) -> int:
        return self.key[0]

    @property
    def rd(self) -> RouteDistinguisher:
        return RouteDistinguisher(self.key[1:9])

    @property
    def prefix(self) -> IPNetwork:
        return make_network(self.key[9:], self.key[0], self.VERSION)

    def __str__(self) -> str:
        return f"{self.rd}:{format_prefix(self.key[9:], self.key[0], self.VERSION)}"

    @classmethod
    def from_str(cls, text: str, labels: Iterable[int] = (), path_id: int = 0) -> Self:
        """``"65000:1:192.0.2.0/24"``, ``"192.0.2.1:7:2001:db8::/32"``,
        ``"0x0003...:192.0.2.0/24"``; ``ValueError`` on bad input."""
        if text[:2] in ("0x", "0X"):
            rd_text, sep, rest = text.partition(":")
        else:
            parts = text.split(":", 2)
            if len(parts) != 3:
                raise ValueError(
                    f"{cls.FAMILY.name} route {text!r}: expected '<rd>:<prefix>', "
                    f"e.g. '65000:1:192.0.2.0/24'"
                )
            rd_text, rest = f"{parts[0]}:{parts[1]}", parts[2]
        return cls.from_parts(rd_text, rest, labels, path_id)

    @classmethod
    def from_parts(
        cls,
        rd: RouteDistinguisher | str | bytes,
        prefix: str | IPNetwork,
        labels: Iterable[int] = (),
        path_id: int = 0,
    ) -> Self:
        name = cls.FAMILY.name
        plen, octets = prefix_octets(prefix, cls.VERSION, name)
        return cls(
            PLEN_BYTE[plen] + as_rd(rd).raw + octets,
            check_path_id(path_id, name),
            check_labels(labels, name),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rd": str(self.rd),
            "prefix": format_prefix(self.key[9:], self.key[0], self.VERSION),
            "labels": list(self.labels),
            "path_id": self.path_id,
        }


class VPNv4Prefix(VpnPrefix):
    __slots__ = ()
    FAMILY = VPNV4
    VERSION = 4


class VPNv6Prefix(VpnPrefix):
    __slots__ = ()
    FAMILY = VPNV6
    VERSION = 6


def decode_vpn_nexthop(
    data: bytes, name: str, v4_ok: bool
) -> tuple[IPAddress, IPAddress | None]:
    n = len(data)
    if n == 12 and v4_ok:
        return IPv4Address(data[8:]), None
    if n == 24:
        return IPv6Address(data[8:]), None
    if n == 48:
        return IPv6Address(data[8:24]), IPv6Address(data[32:])
    allowed = "12, 24 or 48" if v4_ok else "24 or 48"
    raise NlriError(f"{name}: next hop length {n} (allowed {allowed})")


def encode_vpn_nexthop(
    nexthop: IPAddress | None, link_local: IPAddress | None, name: str, v6_family: bool
) -> bytes:
    if nexthop is None:
        raise ValueError(f"{name}: a next hop is required")
    if nexthop.version == 4:
        if link_local is not None:
            raise ValueError(f"{name}: a link-local address needs an IPv6 next hop")
        return _RD0 + (_V4_MAPPED + nexthop.packed if v6_family else nexthop.packed)
    if link_local is None:
        return _RD0 + nexthop.packed
    if link_local.version != 6:
        raise ValueError(f"{name}: link-local next hop {link_local} is not IPv6")
    return _RD0 + nexthop.packed + _RD0 + link_local.packed


class VpnCodec(LabeledCodec):
    rd_len = 8
    head_bits1 = 24 + 64

    def decode_nexthop(
        self, data: bytes, ctx: CodecContext
    ) -> tuple[IPAddress | None, IPAddress | None]:
        return decode_vpn_nexthop(data, self.family.name, self.max_bits == 32)

    def encode_nexthop(
        self, nexthop: IPAddress | None, link_local: IPAddress | None = None
    ) -> bytes:
        return encode_vpn_nexthop(nexthop, link_local, self.family.name, self.max_bits == 128)


class VPNv4Codec(VpnCodec):
    family = VPNV4
    cls = VPNv4Prefix
    max_bits = 32


class VPNv6Codec(VpnCodec):
    family = VPNV6
    cls = VPNv6Prefix
    max_bits = 128


VPNV4_CODEC = register_codec(VPNv4Codec())
VPNV6_CODEC = register_codec(VPNv6Codec())
