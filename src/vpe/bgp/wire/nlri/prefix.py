"""IPv4 and IPv6 unicast NLRI (RFC 4271, RFC 4760), with ADD-PATH (RFC 7911).

On the wire a unicast NLRI is ``length octet + minimal prefix octets``, which
is exactly the canonical key form of :mod:`.base`; decoding is therefore one
slice per route and encoding is the key itself.

This module also holds the pieces the other prefix-shaped families share
(labeled unicast, VPN, RTC): the octet tables, the host-bit canonicalisation,
the human form of a key, and the plain IP next hop field.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any, ClassVar, Self

from ..constants import IPV4_UNICAST, IPV6_UNICAST
from ..context import CodecContext
from ..errors import NlriError
from .base import IPAddress, Nlri, NlriCodec, PlainNlri, register_codec

IPNetwork = IPv4Network | IPv6Network

PLEN_BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))
"""``PLEN_BYTE[n] == bytes([n])``, prebuilt so hot loops do not allocate it."""

HOST_BITS: tuple[int, ...] = tuple((0xFF >> r) if r else 0 for r in range(8))
"""Index ``prefix_len & 7``: the bits of the last prefix octet outside the prefix.

A sender may leave garbage there (RFC 4271 says the bits are irrelevant); the
key must not depend on it, so decoders clear them."""

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def clear_host_bits(key: bytes, bits: int) -> bytes:
    """``key`` with the bits beyond a ``bits``-long prefix cleared in its last octet."""
    r = bits & 7
    if r and key[-1] & HOST_BITS[r]:
        return key[:-1] + PLEN_BYTE[key[-1] & ~HOST_BITS[r] & 0xFF]
    return key


def format_prefix(octets: bytes, plen: int, version: int) -> str:
    """Human form of a prefix given as its minimal octets ("192.0.2.0/24")."""
    if version == 4:
        o = octets + bytes(4 - len(octets))
        return f"{o[0]}.{o[1]}.{o[2]}.{o[3]}/{plen}"
    return f"{IPv6Address(octets + bytes(16 - len(octets)))}/{plen}"


def make_network(octets: bytes, plen: int, version: int) -> IPNetwork:
    """The ``ipaddress`` network of a prefix given as its minimal octets."""
    if version == 4:
        return IPv4Network((IPv4Address(octets + bytes(4 - len(octets))), plen))
    return IPv6Network((IPv6Address(octets + bytes(16 - len(octets))), plen))


def prefix_octets(prefix: str | IPNetwork, version: int, what: str) -> tuple[int, bytes]:
    """(prefix length, minimal octets) of ``prefix``; ``ValueError`` if it is not a
    network of the given IP version (host bits set are an error too: they would
    silently name another route)."""
    net = ip_network(prefix, strict=True) if isinstance(prefix, str) else prefix
    if net.version != version:
        raise ValueError(f"{what}: {prefix} is not an IPv{version} prefix")
    plen = net.prefixlen
    return plen, net.network_address.packed[: (plen + 7) >> 3]


def check_path_id(path_id: int, what: str) -> int:
    if not 0 <= path_id <= 0xFFFFFFFF:
        raise ValueError(f"{what}: path identifier {path_id} is not a 32-bit unsigned value")
    return path_id


# -- next hop ----------------------------------------------------------------


def decode_ip_nexthop(
    data: bytes, name: str, v4_ok: bool
) -> tuple[IPAddress, IPAddress | None]:
    """A plain next hop: IPv4 (4 octets, when ``v4_ok``), IPv6 (16), or IPv6
    global + link-local (32, RFC 2545). An IPv4 family accepts IPv6 forms
    whenever the length says so (RFC 8950)."""
    n = len(data)
    if n == 4 and v4_ok:
        return IPv4Address(data), None
    if n == 16:
        return IPv6Address(data), None
    if n == 32:
        return IPv6Address(data[:16]), IPv6Address(data[16:])
    allowed = "4, 16 or 32" if v4_ok else "16 or 32"
    raise NlriError(f"{name}: next hop length {n} (allowed {allowed})")


def encode_ip_nexthop(
    nexthop: IPAddress | None, link_local: IPAddress | None, name: str, v6_family: bool
) -> bytes:
    """Inverse of :func:`decode_ip_nexthop`. An IPv4 next hop of an IPv6 family
    becomes the IPv4-mapped IPv6 address (RFC 4798, RFC 4659)."""
    if nexthop is None:
        raise ValueError(f"{name}: a next hop is required")
    if nexthop.version == 4:
        if link_local is not None:
            raise ValueError(f"{name}: a link-local address needs an IPv6 next hop")
        return _V4_MAPPED + nexthop.packed if v6_family else nexthop.packed
    if link_local is None:
        return nexthop.packed
    if link_local.version != 6:
        raise ValueError(f"{name}: link-local next hop {link_local} is not IPv6")
    return nexthop.packed + link_local.packed


# -- values ------------------------------------------------------------------


class IPPrefixNlri(Nlri):
    """Shared by unicast and labeled unicast: ``key = length octet + prefix octets``."""

    __slots__ = ()
    VERSION: ClassVar[int]

    @property
    def prefix_len(self) -> int:
        return self.key[0]

    @property
    def prefix(self) -> IPNetwork:
        return make_network(self.key[1:], self.key[0], self.VERSION)

    def __str__(self) -> str:
        return format_prefix(self.key[1:], self.key[0], self.VERSION)


class UnicastPrefix(PlainNlri, IPPrefixNlri):
    """A unicast route's destination (and ADD-PATH path id)."""

    __slots__ = ()

    @classmethod
    def from_str(cls, text: str, path_id: int = 0) -> Self:
        """``"192.0.2.0/24"``; ``ValueError`` on anything else (host bits included)."""
        return cls.from_network(text, path_id)

    @classmethod
    def from_network(cls, prefix: str | IPNetwork, path_id: int = 0) -> Self:
        plen, octets = prefix_octets(prefix, cls.VERSION, cls.FAMILY.name)
        return cls(PLEN_BYTE[plen] + octets, check_path_id(path_id, cls.FAMILY.name))

    def to_json(self) -> dict[str, Any]:
        return {"prefix": str(self), "path_id": self.path_id}


class IPv4Prefix(UnicastPrefix):
    __slots__ = ()
    FAMILY = IPV4_UNICAST
    VERSION = 4


class IPv6Prefix(UnicastPrefix):
    __slots__ = ()
    FAMILY = IPV6_UNICAST
    VERSION = 6


# -- codec -------------------------------------------------------------------


def path_id_error(name: str, pos: int, n: int) -> NlriError:
    return NlriError(
        f"{name}: NLRI with path identifier at offset {pos} truncated ({n - pos} octets remain)"
    )


class KeyRecordCodec(NlriCodec):
    """Families whose NLRI record is ``[path id] + key`` (unicast, RTC): encoding is the key."""

    def encode_one(self, nlri: Nlri, addpath: bool) -> bytes:
        if addpath:
            return nlri.path_id.to_bytes(4, "big") + nlri.key
        return nlri.key

    def encode(self, nlris: Iterable[Nlri], addpath: bool) -> bytes:
        if addpath:
            return b"".join([n.path_id.to_bytes(4, "big") + n.key for n in nlris])
        return b"".join([n.key for n in nlris])


class IPPrefixCodec(NlriCodec):
    """Unicast and labeled unicast: a plain IP next hop whose forms follow the AFI.

    An IPv4 family (``max_bits`` 32) also takes a 4-octet next hop; an IPv6
    family sends an IPv4 next hop IPv4-mapped.
    """

    max_bits: ClassVar[int]

    def decode_nexthop(
        self, data: bytes, ctx: CodecContext
    ) -> tuple[IPAddress | None, IPAddress | None]:
        return decode_ip_nexthop(data, self.family.name, self.max_bits == 32)

    def encode_nexthop(
        self, nexthop: IPAddress | None, link_local: IPAddress | None = None
    ) -> bytes:
        return encode_ip_nexthop(nexthop, link_local, self.family.name, self.max_bits == 128)


class UnicastCodec(KeyRecordCodec, IPPrefixCodec):
    """Walks ``[path id] length prefix`` records; the key is the record itself."""

    cls: ClassVar[type[UnicastPrefix]]

    def decode(self, data: bytes, addpath: bool) -> list[Nlri]:
        if type(data) is not bytes:
            data = bytes(data)
        cls = self.cls
        max_bits = self.max_bits
        host = HOST_BITS
        out: list[Nlri] = []
        app = out.append
        n = len(data)
        pos = 0
        pid = 0
        while pos < n:
            if addpath:
                if pos + 5 > n:
                    raise path_id_error(self.family.name, pos, n)
                pid = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            plen = data[pos]
            if plen > max_bits:
                raise NlriError(
                    f"{self.family.name}: prefix length {plen} exceeds {max_bits} at offset {pos}"
                )
            end = pos + 1 + ((plen + 7) >> 3)
            if end > n:
                raise NlriError(
                    f"{self.family.name}: prefix length {plen} at offset {pos} needs "
                    f"{end - pos} octets, {n - pos} remain"
                )
            key = data[pos:end]
            if plen & 7 and key[-1] & host[plen & 7]:
                key = clear_host_bits(key, plen)
            app(cls(key, pid))
            pos = end
        return out


class IPv4UnicastCodec(UnicastCodec):
    family = IPV4_UNICAST
    cls = IPv4Prefix
    max_bits = 32


class IPv6UnicastCodec(UnicastCodec):
    family = IPV6_UNICAST
    cls = IPv6Prefix
    max_bits = 128


IPV4_UNICAST_CODEC = register_codec(IPv4UnicastCodec())
IPV6_UNICAST_CODEC = register_codec(IPv6UnicastCodec())
