"""OPEN message (RFC 4271 section 4.2) and what two OPENs negotiate.

:meth:`Open.decode` checks syntax only (RFC 4271 section 6.2: version,
hold time 1 or 2, BGP identifier zero, parameter lengths); whether the OPEN
is acceptable for this peer (its AS, its identifier against ours, required
capabilities) is the FSM's business, because only the FSM knows the
configuration. :func:`negotiate` turns our OPEN and the peer's into a
:class:`Negotiated` value from which the codec contexts of each direction
are derived.

Optional parameters longer than 255 octets use the RFC 9072 extended
encoding, both when decoding and (only when needed) when encoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, TypeVar

from . import capabilities as caps
from .capabilities import Capability, decode_capabilities, encode_capabilities
from .constants import (
    AS_TRANS,
    IPV4_UNICAST,
    MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN,
    ErrorCode,
    Family,
    HeaderSubcode,
    MessageType,
    OpenSubcode,
)
from .context import CodecContext
from .errors import BGPError

BGP_VERSION = 4
PARAM_CAPABILITIES = 2  # RFC 5492
_EXTENDED_PARAMS = 255  # RFC 9072 Non-Ext OP Type marking the extended encoding
_FIXED = struct.Struct("!BHH4sB")  # version, my AS, hold time, BGP id, opt param len

T = TypeVar("T", bound=Capability)


def _open_error(subcode: int, reason: str, data: bytes = b"") -> BGPError:
    return BGPError(ErrorCode.OPEN_MESSAGE, subcode, data, reason)


@dataclass(frozen=True, slots=True)
class Open:
    """A decoded or to-be-sent OPEN.

    ``my_as`` is the 2-octet field as on the wire (AS_TRANS for a 4-octet
    AS); :attr:`asn` is the real AS. ``capabilities`` keeps every capability
    in wire order (possibly several of one code, e.g. one Multiprotocol per
    family). ``other_params`` keeps optional parameters other than
    Capabilities as (type, value) pairs; RFC 4271 wants them refused, which
    the FSM does, but the codec keeps them so they can be shown.
    """

    version: int
    my_as: int
    hold_time: int
    bgp_id: IPv4Address
    capabilities: tuple[Capability, ...] = ()
    other_params: tuple[tuple[int, bytes], ...] = ()

    MSG_TYPE = MessageType.OPEN

    @classmethod
    def create(
        cls,
        asn: int,
        hold_time: int,
        bgp_id: IPv4Address | str,
        capabilities: tuple[Capability, ...] | list[Capability] = (),
    ) -> Open:
        """An OPEN for a speaker of AS ``asn``.

        Sets ``my_as`` to AS_TRANS when ``asn`` needs 4 octets and makes
        sure exactly one FourOctetAS capability carrying ``asn`` is present
        (every modern speaker sends it; RFC 6793).
        """
        if not 0 < asn <= 0xFFFFFFFF:
            raise ValueError(f"AS {asn} is not a valid AS number")
        rest = [c for c in capabilities if not isinstance(c, caps.FourOctetAS)]
        return cls(
            BGP_VERSION,
            asn if asn <= 0xFFFF else AS_TRANS,
            hold_time,
            IPv4Address(bgp_id),
            (*rest, caps.FourOctetAS(asn)),
        )

    # -- queries ------------------------------------------------------------

    @property
    def asn(self) -> int:
        """The sender's AS: from the FourOctetAS capability if sent, else ``my_as``."""
        c = self.find(caps.FourOctetAS)
        return c.asn if c is not None else self.my_as

    def find(self, kind: type[T]) -> T | None:
        """The first capability of class ``kind``, or None."""
        for c in self.capabilities:
            if isinstance(c, kind):
                return c
        return None

    def find_all(self, kind: type[T]) -> list[T]:
        return [c for c in self.capabilities if isinstance(c, kind)]

    def has(self, code: int) -> bool:
        """Whether a capability of this code (known or not) was sent."""
        return any(c.code == code for c in self.capabilities)

    @property
    def families(self) -> frozenset[Family]:
        """Families the sender offers; IPv4 unicast if it sent no Multiprotocol at all."""
        mp = self.find_all(caps.Multiprotocol)
        if not mp:
            return frozenset((IPV4_UNICAST,))
        return frozenset(c.family for c in mp)

    # -- decoding -----------------------------------------------------------

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> Open:
        """Decode an OPEN body; raises only :class:`BGPError`."""
        n = len(body)
        if n < _FIXED.size:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.BAD_MESSAGE_LENGTH,
                (19 + n).to_bytes(2, "big"),
                f"OPEN body of {n} octets, at least {_FIXED.size} needed",
            )
        version, my_as, hold, bgp_id, oplen = _FIXED.unpack_from(body, 0)
        if version != BGP_VERSION:
            raise _open_error(
                OpenSubcode.UNSUPPORTED_VERSION,
                f"BGP version {version}; only version {BGP_VERSION} is supported",
                BGP_VERSION.to_bytes(2, "big"),
            )
        if hold in (1, 2):
            raise _open_error(
                OpenSubcode.UNACCEPTABLE_HOLD_TIME,
                f"hold time {hold} s: must be 0 or at least 3 s",
            )
        if bgp_id == b"\x00\x00\x00\x00":
            raise _open_error(OpenSubcode.BAD_BGP_IDENTIFIER, "BGP identifier is 0.0.0.0")
        start = _FIXED.size
        if oplen and n > start and body[start] == _EXTENDED_PARAMS:
            # RFC 9072: Non-Ext OP Type 255, then a 2-octet length, 2-octet param lengths.
            if n < start + 3:
                raise _open_error(0, "extended optional parameters length truncated")
            plen = struct.unpack_from("!H", body, start + 1)[0]
            pstart = start + 3
            wide = True
        else:
            plen = oplen
            pstart = start
            wide = False
        if pstart + plen != n:
            raise _open_error(
                0,
                f"optional parameters length {plen} does not match the "
                f"{n - pstart} octets that follow",
            )
        found: list[Capability] = []
        other: list[tuple[int, bytes]] = []
        pos = pstart
        hdr = 3 if wide else 2
        while pos < n:
            if pos + hdr > n:
                raise _open_error(0, f"optional parameter header truncated at offset {pos - pstart}")
            ptype = body[pos]
            vlen = struct.unpack_from("!H", body, pos + 1)[0] if wide else body[pos + 1]
            vstart = pos + hdr
            vend = vstart + vlen
            if vend > n:
                raise _open_error(
                    0, f"optional parameter {ptype} length {vlen} overruns the parameters"
                )
            value = bytes(body[vstart:vend])
            if ptype == PARAM_CAPABILITIES:
                found.extend(decode_capabilities(value))
            else:
                other.append((ptype, value))
            pos = vend
        return cls(version, my_as, hold, IPv4Address(bgp_id), tuple(found), tuple(other))

    # -- encoding -----------------------------------------------------------

    def encode(self, ctx: CodecContext) -> bytes:
        """Encode the body.

        Each capability goes in its own Capabilities parameter, the form
        every implementation understands (some older ones read only one
        capability per parameter). If that does not fit the 1-octet
        parameters length, all capabilities share one parameter; if even
        that does not fit, the RFC 9072 extended encoding is used.
        """
        fixed = struct.pack(
            "!BHH4s", self.version, self.my_as, self.hold_time, self.bgp_id.packed
        )
        one_each = list(self.other_params) + [
            (PARAM_CAPABILITIES, c.encode()) for c in self.capabilities
        ]
        shared = list(self.other_params)
        if self.capabilities:
            shared.append((PARAM_CAPABILITIES, encode_capabilities(self.capabilities)))
        for params in (one_each, shared):
            short = sum(2 + len(v) for _, v in params)
            if short <= 255 and all(len(v) <= 255 for _, v in params):
                return fixed + bytes([short]) + b"".join(bytes((t, len(v))) + v for t, v in params)
        blob = b"".join(struct.pack("!BH", t, len(v)) + v for t, v in one_each)
        if len(blob) > 0xFFFF:
            raise ValueError(f"optional parameters of {len(blob)} octets exceed 65535")
        return fixed + struct.pack("!BBH", 255, _EXTENDED_PARAMS, len(blob)) + blob

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": self.version,
            "my_as": self.my_as,
            "asn": self.asn,
            "hold_time": self.hold_time,
            "bgp_id": str(self.bgp_id),
            "capabilities": [c.to_json() for c in self.capabilities],
        }
        if self.other_params:
            d["other_params"] = [{"type": t, "value": v.hex()} for t, v in self.other_params]
        return d


# -- negotiation ---------------------------------------------------------------


def _addpath_modes(o: Open) -> dict[Family, int]:
    modes: dict[Family, int] = {}
    for c in o.find_all(caps.AddPath):
        for fam, mode in c.entries:
            modes[fam] = mode
    return modes


def _extended_nexthop(o: Open) -> frozenset[Family]:
    out: set[Family] = set()
    for c in o.find_all(caps.ExtendedNextHop):
        out |= c.families()
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one session agreed, computed from both OPENs by :func:`negotiate`.

    Directions are named from our side: ``*_send`` governs what we encode,
    ``*_receive`` what we decode. ``route_refresh``: the peer accepts
    ROUTE-REFRESH from us (RFC 2918 only asks that the peer advertised it).
    ``enhanced_route_refresh``: both advertised it (RFC 7313).
    ``peer_graceful_restart`` is the peer's capability (its restart time,
    its R and N bits, the families whose forwarding it preserves).
    """

    local_asn: int
    peer_asn: int
    local_id: IPv4Address
    peer_id: IPv4Address
    hold_time: int
    keepalive_time: int
    families: frozenset[Family]
    asn4: bool
    addpath_send: frozenset[Family] = frozenset()
    addpath_receive: frozenset[Family] = frozenset()
    extended_message: bool = False
    route_refresh: bool = False
    enhanced_route_refresh: bool = False
    local_graceful_restart: caps.GracefulRestart | None = None
    peer_graceful_restart: caps.GracefulRestart | None = None
    extended_nexthop_send: frozenset[Family] = frozenset()
    extended_nexthop_receive: frozenset[Family] = frozenset()
    peer_fqdn: caps.Fqdn | None = field(default=None, compare=False)

    @property
    def ibgp(self) -> bool:
        return self.local_asn == self.peer_asn

    @property
    def max_message_len(self) -> int:
        return MAX_EXTENDED_MESSAGE_LEN if self.extended_message else MAX_MESSAGE_LEN

    def rx_context(self, ibgp: bool | None = None) -> CodecContext:
        """Context for decoding what the peer sends us."""
        return CodecContext(
            asn4=self.asn4,
            addpath=self.addpath_receive,
            max_message_len=self.max_message_len,
            ibgp=self.ibgp if ibgp is None else ibgp,
            extended_nexthop=self.extended_nexthop_receive,
        )

    def tx_context(self, ibgp: bool | None = None) -> CodecContext:
        """Context for encoding what we send the peer."""
        return CodecContext(
            asn4=self.asn4,
            addpath=self.addpath_send,
            max_message_len=self.max_message_len,
            ibgp=self.ibgp if ibgp is None else ibgp,
            extended_nexthop=self.extended_nexthop_send,
        )

    def to_json(self) -> dict[str, Any]:
        def fams(s: frozenset[Family]) -> list[str]:
            return sorted(f.name for f in s)

        return {
            "local_asn": self.local_asn,
            "peer_asn": self.peer_asn,
            "local_id": str(self.local_id),
            "peer_id": str(self.peer_id),
            "hold_time": self.hold_time,
            "keepalive_time": self.keepalive_time,
            "families": fams(self.families),
            "asn4": self.asn4,
            "addpath_send": fams(self.addpath_send),
            "addpath_receive": fams(self.addpath_receive),
            "extended_message": self.extended_message,
            "route_refresh": self.route_refresh,
            "enhanced_route_refresh": self.enhanced_route_refresh,
            "peer_graceful_restart": (
                self.peer_graceful_restart.to_json() if self.peer_graceful_restart else None
            ),
            "extended_nexthop_send": fams(self.extended_nexthop_send),
            "extended_nexthop_receive": fams(self.extended_nexthop_receive),
        }


def negotiate(local: Open, remote: Open) -> Negotiated:
    """Combine our OPEN and the peer's (RFC 4271 4.2, 5492, 4760, 6793, 7911, 8654, 8950).

    Hold time is the smaller of the two, keepalive a third of it (0: none).
    Families are the intersection (a side without any Multiprotocol
    capability offers IPv4 unicast only). Add-path and extended next hop
    are computed per direction and only for negotiated families.
    """
    hold = min(local.hold_time, remote.hold_time)
    families = local.families & remote.families
    lmodes = _addpath_modes(local)
    rmodes = _addpath_modes(remote)
    send = frozenset(
        f
        for f in families
        if lmodes.get(f, 0) & caps.AddPathMode.SEND and rmodes.get(f, 0) & caps.AddPathMode.RECEIVE
    )
    receive = frozenset(
        f
        for f in families
        if lmodes.get(f, 0) & caps.AddPathMode.RECEIVE and rmodes.get(f, 0) & caps.AddPathMode.SEND
    )
    code = caps.CapabilityCode
    return Negotiated(
        local_asn=local.asn,
        peer_asn=remote.asn,
        local_id=local.bgp_id,
        peer_id=remote.bgp_id,
        hold_time=hold,
        keepalive_time=hold // 3,
        families=families,
        asn4=local.has(code.FOUR_OCTET_AS) and remote.has(code.FOUR_OCTET_AS),
        addpath_send=send,
        addpath_receive=receive,
        extended_message=local.has(code.EXTENDED_MESSAGE) and remote.has(code.EXTENDED_MESSAGE),
        route_refresh=remote.has(code.ROUTE_REFRESH),
        enhanced_route_refresh=local.has(code.ENHANCED_ROUTE_REFRESH)
        and remote.has(code.ENHANCED_ROUTE_REFRESH),
        local_graceful_restart=local.find(caps.GracefulRestart),
        peer_graceful_restart=remote.find(caps.GracefulRestart),
        # We may send IPv6 next hops where the peer said it accepts them, and
        # must accept them where we said we do (RFC 8950 section 4).
        extended_nexthop_send=_extended_nexthop(remote) & families,
        extended_nexthop_receive=_extended_nexthop(local) & families,
        peer_fqdn=remote.find(caps.Fqdn),
    )
