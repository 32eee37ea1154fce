"""UPDATE message: decode with RFC 7606 error handling, encode with NLRI packing.

Decoding parses the attribute block once per UPDATE and shares the resulting
:class:`PathAttributes` by every route in it; identical attribute blocks seen
again (the common case when a peer sends a large table) are interned, so they
are parsed once per session, not once per UPDATE.

Errors follow RFC 7606: a malformed attribute yields attribute discard or
treat-as-withdraw (recorded on the :class:`Update` in ``action`` and
``errors``); only what the RFC names as fatal raises :class:`BGPError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .attributes.base import ATTRIBUTES, PathAttributes, UnknownAttribute, encode_attribute
from .constants import (
    HEADER_LEN,
    IPV4_UNICAST,
    AttrCode,
    AttrFlag,
    ErrorCode,
    Family,
    MessageType,
    UpdateSubcode,
)
from .context import CodecContext
from .errors import BGPError, MalformedAttribute, NlriError, UpdateAction
from .header import frame
from .nlri.base import NLRI_CODECS, IPAddress, Nlri

_U16 = struct.Struct("!H")
_MP_CODES = (AttrCode.MP_REACH_NLRI, AttrCode.MP_UNREACH_NLRI)
_OT_MASK = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE


@dataclass(slots=True)
class MpReach:
    """MP_REACH_NLRI content (RFC 4760): family, next hop, routes."""

    family: Family
    next_hop: IPAddress | None
    nlri: list[Nlri]
    link_local: IPAddress | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "family": self.family.name,
            "next_hop": str(self.next_hop) if self.next_hop is not None else None,
            "nlri": [n.to_json() for n in self.nlri],
        }
        if self.link_local is not None:
            d["link_local"] = str(self.link_local)
        return d


@dataclass(slots=True)
class MpUnreach:
    """MP_UNREACH_NLRI content: family and withdrawn routes."""

    family: Family
    nlri: list[Nlri]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family.name, "nlri": [n.to_json() for n in self.nlri]}


@dataclass(slots=True)
class Update:
    """A decoded UPDATE.

    ``action`` is the strongest RFC 7606 action taken while decoding
    (NONE, ATTRIBUTE_DISCARD or TREAT_AS_WITHDRAW); ``errors`` says why, one
    line per problem, naming the attribute. With TREAT_AS_WITHDRAW,
    :meth:`announced` yields nothing and :meth:`withdrawn_routes` also yields
    every route the UPDATE tried to announce.
    """

    attributes: PathAttributes = field(default_factory=PathAttributes)
    nlri: list[Nlri] = field(default_factory=list)
    withdrawn: list[Nlri] = field(default_factory=list)
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    action: UpdateAction = UpdateAction.NONE
    errors: tuple[str, ...] = ()

    MSG_TYPE = MessageType.UPDATE

    def end_of_rib(self) -> Family | None:
        """The family this UPDATE marks End-of-RIB for (RFC 4724), else None."""
        if self.nlri or self.withdrawn or self.mp_reach is not None:
            return None
        if self.mp_unreach is None:
            return IPV4_UNICAST if len(self.attributes) == 0 and self.action == 0 else None
        if not self.mp_unreach.nlri and len(self.attributes) == 0:
            return self.mp_unreach.family
        return None

    def announced(self) -> Iterator[tuple[Family, Nlri, IPAddress | None]]:
        """(family, route, next hop) for every route this UPDATE announces."""
        if self.action >= UpdateAction.TREAT_AS_WITHDRAW:
            return
        if self.nlri:
            nh = self.attributes.get(AttrCode.NEXT_HOP)
            addr = nh.address if nh is not None else None
            for n in self.nlri:
                yield IPV4_UNICAST, n, addr
        mp = self.mp_reach
        if mp is not None:
            for n in mp.nlri:
                yield mp.family, n, mp.next_hop

    def withdrawn_routes(self) -> Iterator[tuple[Family, Nlri]]:
        for n in self.withdrawn:
            yield IPV4_UNICAST, n
        if self.mp_unreach is not None:
            fam = self.mp_unreach.family
            for n in self.mp_unreach.nlri:
                yield fam, n
        if self.action >= UpdateAction.TREAT_AS_WITHDRAW:
            for n in self.nlri:
                yield IPV4_UNICAST, n
            if self.mp_reach is not None:
                fam = self.mp_reach.family
                for n in self.mp_reach.nlri:
                    yield fam, n

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"attributes": self.attributes.to_json()}
        if self.withdrawn:
            d["withdrawn"] = [n.to_json() for n in self.withdrawn]
        if self.nlri:
            d["nlri"] = [n.to_json() for n in self.nlri]
        if self.mp_reach is not None:
            d["mp_reach"] = self.mp_reach.to_json()
        if self.mp_unreach is not None:
            d["mp_unreach"] = self.mp_unreach.to_json()
        if self.action:
            d["action"] = self.action.name.lower()
            d["errors"] = list(self.errors)
        return d

    # -- decoding ---------------------------------------------------------

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> Update:
        return decode_update(body, ctx)

    def encode(self, ctx: CodecContext) -> bytes:
        return encode_update_body(self, ctx)


def _fatal(subcode: int, reason: str, data: bytes = b"") -> BGPError:
    return BGPError(ErrorCode.UPDATE_MESSAGE, subcode, data, reason)


def _decode_nlri_field(
    family: Family, data: bytes, ctx: CodecContext, where: str, withdrawn: bool = False
) -> list[Nlri]:
    codec = NLRI_CODECS[family]
    try:
        if withdrawn:
            return codec.decode_withdrawn(data, family in ctx.addpath)
        return codec.decode(data, family in ctx.addpath)
    except NlriError as e:
        raise _fatal(UpdateSubcode.INVALID_NETWORK_FIELD, f"{where}: {e}") from None


# Interned attribute sets: (asn4, ibgp, raw non-MP attribute octets) -> result.
_INTERN: dict[tuple[bool, bool, bytes], tuple[PathAttributes, UpdateAction, tuple[str, ...]]] = {}
_INTERN_MAX = 65536


def decode_update(body: bytes, ctx: CodecContext) -> Update:
    """Decode an UPDATE body (after the header). Raises only :class:`BGPError`."""
    n = len(body)
    if n < 4:
        raise _fatal(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, f"UPDATE body of {n} octets")
    wlen = _U16.unpack_from(body, 0)[0]
    if 2 + wlen + 2 > n:
        raise _fatal(
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
            f"withdrawn routes length {wlen} overruns the {n}-octet UPDATE",
        )
    alen = _U16.unpack_from(body, 2 + wlen)[0]
    astart = 4 + wlen
    aend = astart + alen
    if aend > n:
        raise _fatal(
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
            f"total path attribute length {alen} overruns the {n}-octet UPDATE",
        )
    withdrawn = (
        _decode_nlri_field(IPV4_UNICAST, body[2 : 2 + wlen], ctx, "withdrawn routes") if wlen else []
    )
    nlri = _decode_nlri_field(IPV4_UNICAST, body[aend:], ctx, "NLRI") if aend < n else []

    # Pass 1: walk attribute headers; split MP attributes from the rest.
    spans: list[tuple[int, int, int, int]] = []  # (flags, code, value start, value end)
    action = UpdateAction.NONE
    errors: list[str] = []
    pos = astart
    while pos < aend:
        if pos + 3 > aend:
            action = UpdateAction.TREAT_AS_WITHDRAW
            errors.append(f"attribute header truncated at offset {pos - astart} of the attribute block")
            break
        flags = body[pos]
        code = body[pos + 1]
        if flags & AttrFlag.EXTENDED_LENGTH:
            if pos + 4 > aend:
                action = UpdateAction.TREAT_AS_WITHDRAW
                errors.append(f"attribute {code}: extended length truncated")
                break
            vlen = _U16.unpack_from(body, pos + 2)[0]
            vstart = pos + 4
        else:
            vlen = body[pos + 2]
            vstart = pos + 3
        vend = vstart + vlen
        if vend > aend:
            if code in _MP_CODES:
                raise _fatal(
                    UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    f"attribute {code} (MP) length {vlen} overruns the attribute block",
                    bytes(body[pos:aend]),
                )
            action = UpdateAction.TREAT_AS_WITHDRAW
            errors.append(f"attribute {code}: length {vlen} overruns the attribute block")
            break
        spans.append((flags, code, vstart, vend))
        pos = vend

    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    other: list[tuple[int, int, int, int]] = []
    for span in spans:
        flags, code, vstart, vend = span
        if code == AttrCode.MP_REACH_NLRI or code == AttrCode.MP_UNREACH_NLRI:
            if (code == AttrCode.MP_REACH_NLRI and mp_reach is not None) or (
                code == AttrCode.MP_UNREACH_NLRI and mp_unreach is not None
            ):
                raise _fatal(
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    f"attribute {code} ({AttrCode(code).name}) appears more than once",
                )
            if flags & _OT_MASK != AttrFlag.OPTIONAL:
                raise _fatal(
                    UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
                    f"{AttrCode(code).name} flags 0x{flags:02x}: must be optional non-transitive",
                    bytes(body[vstart - (4 if flags & AttrFlag.EXTENDED_LENGTH else 3) : vend]),
                )
            if code == AttrCode.MP_REACH_NLRI:
                mp_reach = _decode_mp_reach(body[vstart:vend], ctx)
            else:
                mp_unreach = _decode_mp_unreach(body[vstart:vend], ctx)
        else:
            other.append(span)

    key = (ctx.asn4, ctx.ibgp, b"".join(body[s[2] - (4 if s[0] & AttrFlag.EXTENDED_LENGTH else 3) : s[3]] for s in other))
    cached = _INTERN.get(key)
    if cached is None:
        cached = _decode_attributes(body, other, ctx)
        if len(_INTERN) >= _INTERN_MAX:
            _INTERN.clear()
        _INTERN[key] = cached
    attrs, a_action, a_errors = cached
    if a_action > action:
        action = a_action
    errors.extend(a_errors)

    # Missing well-known mandatory attributes (RFC 7606 section 3 d).
    if nlri or (mp_reach is not None and mp_reach.nlri):
        missing = [
            c.name
            for c in (AttrCode.ORIGIN, AttrCode.AS_PATH)
            if c not in attrs
        ]
        if nlri and AttrCode.NEXT_HOP not in attrs:
            missing.append(AttrCode.NEXT_HOP.name)
        if missing:
            action = max(action, UpdateAction.TREAT_AS_WITHDRAW)
            errors.append("missing well-known attribute(s): " + ", ".join(missing))
    return Update(attrs, nlri, withdrawn, mp_reach, mp_unreach, action, tuple(errors))


def _decode_attributes(
    body: bytes, spans: list[tuple[int, int, int, int]], ctx: CodecContext
) -> tuple[PathAttributes, UpdateAction, tuple[str, ...]]:
    action = UpdateAction.NONE
    errors: list[str] = []
    out: list[Any] = []
    seen: set[int] = set()
    for flags, code, vstart, vend in spans:
        if code in seen:
            # RFC 7606 section 3 g: keep the first, discard the others.
            action = max(action, UpdateAction.ATTRIBUTE_DISCARD)
            errors.append(f"attribute {code} repeated: later copies discarded")
            continue
        seen.add(code)
        cls = ATTRIBUTES.get(code)
        value = body[vstart:vend]
        if cls is None:
            if not flags & AttrFlag.OPTIONAL:
                hlen = 4 if flags & AttrFlag.EXTENDED_LENGTH else 3
                raise _fatal(
                    UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    f"unrecognized well-known attribute {code}",
                    bytes(body[vstart - hlen : vend]),
                )
            if flags & AttrFlag.TRANSITIVE:
                out.append(UnknownAttribute(code, flags & 0xF0 & ~AttrFlag.EXTENDED_LENGTH, bytes(value)))
            continue
        name = cls.NAME or str(code)
        if flags & _OT_MASK != cls.FLAGS & _OT_MASK:
            errors.append(f"{name}: flags 0x{flags:02x} conflict with the attribute type")
            a = max(cls.ON_ERROR, UpdateAction.TREAT_AS_WITHDRAW)
            if a == UpdateAction.SESSION_RESET:
                raise _fatal(UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, errors[-1], encode_attribute(flags, code, bytes(value)))
            action = max(action, a)
            continue
        try:
            out.append(cls.decode(value, ctx))
        except MalformedAttribute as e:
            errors.append(f"{name}: {e.reason}")
            if e.action == UpdateAction.SESSION_RESET:
                raise _fatal(e.subcode, f"{name}: {e.reason}", e.data or encode_attribute(flags, code, bytes(value))) from None
            action = max(action, e.action)
    attrs = PathAttributes(out)
    if not ctx.asn4:
        from .attributes.as_path import reconcile_as4

        attrs = reconcile_as4(attrs)
    return attrs, action, tuple(errors)


def _decode_mp_reach(value: bytes, ctx: CodecContext) -> MpReach:
    n = len(value)
    if n < 5:
        raise _fatal(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"MP_REACH_NLRI of {n} octets")
    afi = _U16.unpack_from(value, 0)[0]
    safi = value[2]
    nhlen = value[3]
    if 4 + nhlen + 1 > n:
        raise _fatal(
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            f"MP_REACH_NLRI next hop length {nhlen} overruns the {n}-octet attribute",
        )
    family = Family(afi, safi)
    codec = NLRI_CODECS.get(family)
    if codec is None:
        raise _fatal(
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            f"MP_REACH_NLRI for AFI {afi} SAFI {safi}, which this speaker does not support",
        )
    try:
        nh, ll = codec.decode_nexthop(value[4 : 4 + nhlen], ctx)
    except NlriError as e:
        raise _fatal(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"MP_REACH_NLRI {family}: {e}") from None
    # one reserved octet (was SNPA count) follows the next hop
    pos = 4 + nhlen + 1
    routes = _decode_nlri_field(family, value[pos:], ctx, f"MP_REACH_NLRI {family}")
    return MpReach(family, nh, routes, ll)


def _decode_mp_unreach(value: bytes, ctx: CodecContext) -> MpUnreach:
    n = len(value)
    if n < 3:
        raise _fatal(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"MP_UNREACH_NLRI of {n} octets")
    afi = _U16.unpack_from(value, 0)[0]
    safi = value[2]
    family = Family(afi, safi)
    if family not in NLRI_CODECS:
        raise _fatal(
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            f"MP_UNREACH_NLRI for AFI {afi} SAFI {safi}, which this speaker does not support",
        )
    routes = _decode_nlri_field(family, value[3:], ctx, f"MP_UNREACH_NLRI {family}", withdrawn=True)
    return MpUnreach(family, routes)


# -- encoding -------------------------------------------------------------


def _mp_reach_value(mp: MpReach, nlri_bytes: bytes) -> bytes:
    codec = NLRI_CODECS[mp.family]
    nh = codec.encode_nexthop(mp.next_hop, mp.link_local)
    return struct.pack("!HBB", mp.family.afi, mp.family.safi, len(nh)) + nh + b"\x00" + nlri_bytes


def encode_update_body(u: Update, ctx: CodecContext) -> bytes:
    """Encode one UPDATE body exactly as given (no splitting)."""
    v4 = NLRI_CODECS[IPV4_UNICAST]
    wd = v4.encode(u.withdrawn, IPV4_UNICAST in ctx.addpath)
    parts = []
    if u.mp_reach is not None:
        mp = u.mp_reach
        nl = NLRI_CODECS[mp.family].encode(mp.nlri, mp.family in ctx.addpath)
        parts.append(encode_attribute(AttrFlag.OPTIONAL, AttrCode.MP_REACH_NLRI, _mp_reach_value(mp, nl)))
    if u.mp_unreach is not None:
        mu = u.mp_unreach
        nl = NLRI_CODECS[mu.family].encode_withdrawn(mu.nlri, mu.family in ctx.addpath)
        val = struct.pack("!HB", mu.family.afi, mu.family.safi) + nl
        parts.append(encode_attribute(AttrFlag.OPTIONAL, AttrCode.MP_UNREACH_NLRI, val))
    attrs = encode_path_attributes(u.attributes, ctx)
    ab = b"".join(parts) + attrs
    nl4 = v4.encode(u.nlri, IPV4_UNICAST in ctx.addpath)
    return _U16.pack(len(wd)) + wd + _U16.pack(len(ab)) + ab + nl4


def encode_path_attributes(attrs: PathAttributes, ctx: CodecContext) -> bytes:
    """Attribute octets for ``ctx``: towards a 2-octet-AS peer, AS4_* are added."""
    if not ctx.asn4:
        from .attributes.as_path import split_as4

        attrs = split_as4(attrs)
    return attrs.encode(ctx)


def _chunks(encoded: list[bytes], room: int) -> Iterator[bytes]:
    """Group encoded NLRI into runs whose total size fits ``room`` octets."""
    buf: list[bytes] = []
    size = 0
    for e in encoded:
        if size + len(e) > room and buf:
            yield b"".join(buf)
            buf = []
            size = 0
        buf.append(e)
        size += len(e)
    if buf:
        yield b"".join(buf)


def pack_announcements(
    family: Family,
    attrs: PathAttributes,
    next_hop: IPAddress | None,
    routes: Iterable[Nlri],
    ctx: CodecContext,
    link_local: IPAddress | None = None,
) -> list[bytes]:
    """Whole UPDATE messages (header included) announcing ``routes``.

    As many routes as fit share one message; the attribute octets are
    encoded once for all messages.
    """
    codec = NLRI_CODECS[family]
    addpath = family in ctx.addpath
    enc = codec.encode_one
    encoded = [enc(r, addpath) for r in routes]
    if not encoded:
        return []
    abytes = encode_path_attributes(attrs, ctx)
    limit = ctx.max_message_len
    out: list[bytes] = []
    if family == IPV4_UNICAST and not (next_hop is not None and next_hop.version == 6):
        head_room = limit - HEADER_LEN - 4 - len(abytes)
        for chunk in _chunks(encoded, head_room):
            body = b"\x00\x00" + _U16.pack(len(abytes)) + abytes + chunk
            out.append(frame(MessageType.UPDATE, body, limit))
        return out
    nh = codec.encode_nexthop(next_hop, link_local)
    mp_head = struct.pack("!HBB", family.afi, family.safi, len(nh)) + nh + b"\x00"
    # extended-length attribute header (4) + mp_head
    room = limit - HEADER_LEN - 4 - len(abytes) - 4 - len(mp_head)
    for chunk in _chunks(encoded, room):
        mp = encode_attribute(AttrFlag.OPTIONAL, AttrCode.MP_REACH_NLRI, mp_head + chunk)
        ab = mp + abytes
        out.append(frame(MessageType.UPDATE, b"\x00\x00" + _U16.pack(len(ab)) + ab, limit))
    return out


def pack_withdrawals(family: Family, routes: Iterable[Nlri], ctx: CodecContext) -> list[bytes]:
    """Whole UPDATE messages withdrawing ``routes``, as few as fit."""
    codec = NLRI_CODECS[family]
    addpath = family in ctx.addpath
    encoded = [codec.encode_withdrawn_one(r, addpath) for r in routes]
    if not encoded:
        return []
    limit = ctx.max_message_len
    out: list[bytes] = []
    if family == IPV4_UNICAST:
        for chunk in _chunks(encoded, limit - HEADER_LEN - 4):
            out.append(frame(MessageType.UPDATE, _U16.pack(len(chunk)) + chunk + b"\x00\x00", limit))
        return out
    head = struct.pack("!HB", family.afi, family.safi)
    for chunk in _chunks(encoded, limit - HEADER_LEN - 4 - 4 - len(head)):
        ab = encode_attribute(AttrFlag.OPTIONAL, AttrCode.MP_UNREACH_NLRI, head + chunk)
        out.append(frame(MessageType.UPDATE, b"\x00\x00" + _U16.pack(len(ab)) + ab, limit))
    return out


def end_of_rib(family: Family) -> bytes:
    """The End-of-RIB marker UPDATE for ``family`` (RFC 4724 section 2)."""
    if family == IPV4_UNICAST:
        return frame(MessageType.UPDATE, b"\x00\x00\x00\x00")
    ab = encode_attribute(AttrFlag.OPTIONAL, AttrCode.MP_UNREACH_NLRI, struct.pack("!HB", family.afi, family.safi))
    return frame(MessageType.UPDATE, b"\x00\x00" + _U16.pack(len(ab)) + ab)
