"""MCAST-VPN NLRI (RFC 6514 section 4), SAFI 5, for AFI IPv4 and IPv6.

Wire form: ``[path id] route-type(1) length(1) value``. The key is
``route-type octet + value`` (the length follows from the value).

Types 1 (Intra-AS I-PMSI A-D: RD + originating router's IP) and 3 (S-PMSI
A-D: RD, multicast source length in bits + source, group length + group,
originating router's IP) are checked on decode and have named parts; other
types are kept opaque and round-trip unchanged. Address lengths follow
RFC 6515 (IPv4 or IPv6 in either AFI) and RFC 6625 (length 0 = wildcard).

Text forms: ``"[1][65000:1][192.0.2.1]"``,
``"[3][65000:1][192.0.2.5][232.1.1.1][192.0.2.1]"`` (``*`` for a wildcard),
``"[4][<value hex>]"`` for the opaque types.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, ClassVar, Self

from ..constants import IPV4_MCAST_VPN, IPV6_MCAST_VPN
from ..context import CodecContext
from ..errors import NlriError
from .base import IPAddress, Nlri, NlriCodec, PlainNlri, register_codec
from .prefix import PLEN_BYTE, check_path_id, decode_ip_nexthop, encode_ip_nexthop, path_id_error
from .rd import RouteDistinguisher, as_rd

INTRA_AS_I_PMSI_AD = 1
S_PMSI_AD = 3

ROUTE_TYPE_NAMES = {
    1: "intra-as-i-pmsi-a-d",
    2: "inter-as-i-pmsi-a-d",
    3: "s-pmsi-a-d",
    4: "leaf-a-d",
    5: "source-active-a-d",
    6: "shared-tree-join",
    7: "source-tree-join",
}

_ADDR_OCTETS = (0, 4, 16)  # wildcard, IPv4, IPv6


def _ip(raw: bytes) -> IPAddress:
    return IPv4Address(raw) if len(raw) == 4 else IPv6Address(raw)


def _check_value(rtype: int, v: bytes, name: str, pos: int) -> None:
    """Raise ``NlriError`` if a type 1 or 3 value does not have its RFC 6514 layout."""
    n = len(v)
    if rtype == INTRA_AS_I_PMSI_AD:
        if n not in (12, 24):
            raise NlriError(
                f"{name}: Intra-AS I-PMSI A-D route at offset {pos} has length {n} "
                f"(allowed 12 or 24: RD + IPv4/IPv6 originating router)"
            )
        return
    # S-PMSI A-D: RD(8) srclen(1) src grplen(1) grp orig(4|16)
    if n < 9:
        raise NlriError(f"{name}: S-PMSI A-D route at offset {pos} has length {n}, under 9")
    slen = v[8]
    if slen not in (0, 32, 128):
        raise NlriError(
            f"{name}: S-PMSI A-D route at offset {pos}: multicast source length {slen} "
            f"(allowed 0, 32, 128)"
        )
    g = 9 + (slen >> 3)
    if g >= n:
        raise NlriError(
            f"{name}: S-PMSI A-D route at offset {pos} of length {n} truncated before "
            f"the multicast group length"
        )
    glen = v[g]
    if glen not in (0, 32, 128):
        raise NlriError(
            f"{name}: S-PMSI A-D route at offset {pos}: multicast group length {glen} "
            f"(allowed 0, 32, 128)"
        )
    rest = n - (g + 1 + (glen >> 3))
    if rest not in (4, 16):
        raise NlriError(
            f"{name}: S-PMSI A-D route at offset {pos}: {rest} octets left for the "
            f"originating router's IP (allowed 4 or 16)"
        )


class McastVpnRoute(PlainNlri):
    """One MCAST-VPN route; parts of types 1 and 3 are computed from the key."""

    __slots__ = ()
    FAMILY_NAME: ClassVar[str]

    @property
    def route_type(self) -> int:
        return self.key[0]

    @property
    def value(self) -> bytes:
        return self.key[1:]

    @property
    def rd(self) -> RouteDistinguisher | None:
        """The RD of types 1 and 3; None for the opaque types."""
        if self.key[0] in (INTRA_AS_I_PMSI_AD, S_PMSI_AD):
            return RouteDistinguisher(self.key[1:9])
        return None

    def _s_pmsi_parts(self) -> tuple[bytes, bytes, bytes]:
        v = self.key[1:]
        s_end = 9 + (v[8] >> 3)
        g_end = s_end + 1 + (v[s_end] >> 3)
        return v[9:s_end], v[s_end + 1 : g_end], v[g_end:]

    @property
    def originating_router(self) -> IPAddress | None:
        t = self.key[0]
        if t == INTRA_AS_I_PMSI_AD:
            return _ip(self.key[9:])
        if t == S_PMSI_AD:
            return _ip(self._s_pmsi_parts()[2])
        return None

    @property
    def source(self) -> IPAddress | None:
        """S-PMSI A-D multicast source; None for a wildcard or another type."""
        if self.key[0] != S_PMSI_AD:
            return None
        raw = self._s_pmsi_parts()[0]
        return _ip(raw) if raw else None

    @property
    def group(self) -> IPAddress | None:
        """S-PMSI A-D multicast group; None for a wildcard or another type."""
        if self.key[0] != S_PMSI_AD:
            return None
        raw = self._s_pmsi_parts()[1]
        return _ip(raw) if raw else None

    def __str__(self) -> str:
        t = self.key[0]
        if t == INTRA_AS_I_PMSI_AD:
            return f"[1][{self.rd}][{_ip(self.key[9:])}]"
        if t == S_PMSI_AD:
            src, grp, orig = self._s_pmsi_parts()
            s = str(_ip(src)) if src else "*"
            g = str(_ip(grp)) if grp else "*"
            return f"[3][{self.rd}][{s}][{g}][{_ip(orig)}]"
        return f"[{t}][{self.key[1:].hex()}]"

    def to_json(self) -> dict[str, Any]:
        t = self.key[0]
        d: dict[str, Any] = {
            "route_type": t,
            "type_name": ROUTE_TYPE_NAMES.get(t, f"type-{t}"),
            "path_id": self.path_id,
        }
        if t in (INTRA_AS_I_PMSI_AD, S_PMSI_AD):
            d["rd"] = str(self.rd)
            d["originating_router"] = str(self.originating_router)
            if t == S_PMSI_AD:
                src, grp = self.source, self.group
                d["source"] = str(src) if src is not None else "*"
                d["group"] = str(grp) if grp is not None else "*"
        else:
            d["value"] = self.key[1:].hex()
        return d

    # -- constructors ----------------------------------------------------------

    @classmethod
    def intra_as_i_pmsi_ad(
        cls, rd: RouteDistinguisher | str | bytes, originating_router: str | IPAddress,
        path_id: int = 0,
    ) -> Self:
        value = as_rd(rd).raw + ip_address(originating_router).packed
        return cls(PLEN_BYTE[INTRA_AS_I_PMSI_AD] + value, check_path_id(path_id, cls.FAMILY_NAME))

    @classmethod
    def s_pmsi_ad(
        cls,
        rd: RouteDistinguisher | str | bytes,
        source: str | IPAddress | None,
        group: str | IPAddress | None,
        originating_router: str | IPAddress,
        path_id: int = 0,
    ) -> Self:
        """``source``/``group`` None (or ``"*"``) is the RFC 6625 wildcard."""
        parts = [as_rd(rd).raw]
        for addr in (source, group):
            raw = b"" if addr is None or addr == "*" else ip_address(addr).packed
            parts.append(PLEN_BYTE[len(raw) * 8] + raw)
        parts.append(ip_address(originating_router).packed)
        return cls(PLEN_BYTE[S_PMSI_AD] + b"".join(parts), check_path_id(path_id, cls.FAMILY_NAME))

    @classmethod
    def opaque(cls, route_type: int, value: bytes, path_id: int = 0) -> Self:
        """Any route type as raw value octets (checked like a decoded route)."""
        if not 0 <= route_type <= 255 or len(value) > 255:
            raise ValueError(
                f"{cls.FAMILY_NAME}: route type {route_type} with {len(value)} value octets"
            )
        if route_type in (INTRA_AS_I_PMSI_AD, S_PMSI_AD):
            try:
                _check_value(route_type, bytes(value), cls.FAMILY_NAME, 0)
            except NlriError as e:
                raise ValueError(str(e)) from None
        return cls(PLEN_BYTE[route_type] + bytes(value), check_path_id(path_id, cls.FAMILY_NAME))

    @classmethod
    def from_str(cls, text: str, path_id: int = 0) -> Self:
        """Parse the bracket forms of the module docstring."""
        fields = _BRACKETS.findall(text)
        if not fields or "".join(f"[{f}]" for f in fields) != text:
            raise ValueError(f"{cls.FAMILY_NAME} route {text!r}: expected '[type][...]...'")
        t = fields[0]
        if not (t.isascii() and t.isdigit()):
            raise ValueError(f"{cls.FAMILY_NAME} route {text!r}: route type {t!r} is not a number")
        rtype = int(t)
        if rtype == INTRA_AS_I_PMSI_AD and len(fields) == 3:
            return cls.intra_as_i_pmsi_ad(fields[1], fields[2], path_id)
        if rtype == S_PMSI_AD and len(fields) == 5:
            return cls.s_pmsi_ad(fields[1], fields[2], fields[3], fields[4], path_id)
        if rtype not in (INTRA_AS_I_PMSI_AD, S_PMSI_AD) and len(fields) == 2:
            try:
                value = bytes.fromhex(fields[1])
            except ValueError:
                raise ValueError(f"{cls.FAMILY_NAME} route {text!r}: value is not hex") from None
            return cls.opaque(rtype, value, path_id)
        raise ValueError(f"{cls.FAMILY_NAME} route {text!r}: wrong number of fields for type {rtype}")


_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


class IPv4McastVpnRoute(McastVpnRoute):
    __slots__ = ()
    FAMILY = IPV4_MCAST_VPN
    FAMILY_NAME = IPV4_MCAST_VPN.name


class IPv6McastVpnRoute(McastVpnRoute):
    __slots__ = ()
    FAMILY = IPV6_MCAST_VPN
    FAMILY_NAME = IPV6_MCAST_VPN.name


class McastVpnCodec(NlriCodec):
    cls: ClassVar[type[McastVpnRoute]]

    def decode(self, data: bytes, addpath: bool) -> list[Nlri]:
        if type(data) is not bytes:
            data = bytes(data)
        name = self.family.name
        cls = self.cls
        out: list[Nlri] = []
        n = len(data)
        pos = 0
        pid = 0
        while pos < n:
            if addpath:
                if pos + 5 > n:
                    raise path_id_error(name, pos, n)
                pid = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            if pos + 2 > n:
                raise NlriError(f"{name}: route header at offset {pos} truncated")
            rtype = data[pos]
            vlen = data[pos + 1]
            end = pos + 2 + vlen
            if end > n:
                raise NlriError(
                    f"{name}: route type {rtype} length {vlen} at offset {pos} overruns "
                    f"the {n}-octet NLRI field"
                )
            value = data[pos + 2 : end]
            if rtype in (INTRA_AS_I_PMSI_AD, S_PMSI_AD):
                _check_value(rtype, value, name, pos)
            out.append(cls(PLEN_BYTE[rtype] + value, pid))
            pos = end
        return out

    def encode_one(self, nlri: Nlri, addpath: bool) -> bytes:
        key = nlri.key
        wire = key[:1] + PLEN_BYTE[len(key) - 1] + key[1:]
        if addpath:
            return nlri.path_id.to_bytes(4, "big") + wire
        return wire

    def decode_nexthop(
        self, data: bytes, ctx: CodecContext
    ) -> tuple[IPAddress | None, IPAddress | None]:
        return decode_ip_nexthop(data, self.family.name, True)

    def encode_nexthop(
        self, nexthop: IPAddress | None, link_local: IPAddress | None = None
    ) -> bytes:
        return encode_ip_nexthop(nexthop, link_local, self.family.name, False)


class IPv4McastVpnCodec(McastVpnCodec):
    family = IPV4_MCAST_VPN
    cls = IPv4McastVpnRoute


class IPv6McastVpnCodec(McastVpnCodec):
    family = IPV6_MCAST_VPN
    cls = IPv6McastVpnRoute


IPV4_MCAST_VPN_CODEC = register_codec(IPv4McastVpnCodec())
IPV6_MCAST_VPN_CODEC = register_codec(IPv6McastVpnCodec())
