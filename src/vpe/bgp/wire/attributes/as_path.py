"""AS_PATH (type 2) and AS4_PATH (type 17), and the RFC 6793 glue between them.

AS_PATH carries 2- or 4-octet ASNs depending on the session (``ctx.asn4``).
Towards a 2-octet-only peer, :func:`split_as4` puts AS_TRANS in AS_PATH and
the real path in AS4_PATH; from such a peer, :func:`reconcile_as4` merges the
two back (RFC 6793 section 4.2.3). The UPDATE codec calls both, so the rest of
vpe only ever sees one AS_PATH with real 4-octet ASNs.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from ..constants import AS_TRANS, AttrCode, AttrFlag, UpdateSubcode
from ..context import CodecContext
from ..errors import MalformedAttribute, UpdateAction
from .aggregator import Aggregator, As4Aggregator
from .base import PathAttribute, PathAttributes, register

_MAX_SEG = 255
_MAX32 = 0xFFFFFFFF


class SegmentType(IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3  # RFC 5065
    AS_CONFED_SET = 4


_CONFED = (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET)
_SEG_JSON = {
    SegmentType.AS_SET: "as-set",
    SegmentType.AS_SEQUENCE: "as-sequence",
    SegmentType.AS_CONFED_SEQUENCE: "as-confed-sequence",
    SegmentType.AS_CONFED_SET: "as-confed-set",
}
# brackets used by str(): sequence bare, set {..}, confed sequence (..), confed set [..]
_SEG_BRACKETS = {
    SegmentType.AS_SET: ("{", "}"),
    SegmentType.AS_SEQUENCE: ("", ""),
    SegmentType.AS_CONFED_SEQUENCE: ("(", ")"),
    SegmentType.AS_CONFED_SET: ("[", "]"),
}


@dataclass(frozen=True, slots=True)
class AsSegment:
    """One path segment: its type and ASNs (a set keeps the order it was received in)."""

    type: SegmentType
    asns: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.type, SegmentType):
            object.__setattr__(self, "type", SegmentType(self.type))
        if not isinstance(self.asns, tuple):
            object.__setattr__(self, "asns", tuple(self.asns))
        for a in self.asns:
            if not 0 <= a <= _MAX32:
                raise ValueError(f"ASN {a} is outside 0..{_MAX32}")

    def length(self) -> int:
        """Contribution to the path length (RFC 4271 9.1.2.2 a, RFC 5065 5.3)."""
        if self.type == SegmentType.AS_SEQUENCE:
            return len(self.asns)
        if self.type == SegmentType.AS_SET:
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        return {"type": _SEG_JSON[self.type], "asns": list(self.asns)}

    def __str__(self) -> str:
        left, right = _SEG_BRACKETS[self.type]
        return left + " ".join(str(a) for a in self.asns) + right


def _decode_segments(
    value: bytes, width: int, name: str, action: UpdateAction, subcode: int, allow_confed: bool
) -> tuple[AsSegment, ...]:
    """Walk the segments; every structural problem is a :class:`MalformedAttribute`."""
    n = len(value)
    pos = 0
    segs: list[AsSegment] = []
    fmt = "H" if width == 2 else "I"
    while pos < n:
        if pos + 2 > n:
            raise MalformedAttribute(
                action, subcode, f"{name} segment header truncated at octet {pos}"
            )
        stype = value[pos]
        count = value[pos + 1]
        if not 1 <= stype <= 4:
            raise MalformedAttribute(
                action, subcode, f"{name} segment type {stype} at octet {pos} is unknown"
            )
        if not allow_confed and stype >= 3:
            raise MalformedAttribute(
                action, subcode, f"{name} carries a confederation segment (type {stype})"
            )
        if count == 0:
            raise MalformedAttribute(
                action, subcode, f"{name} segment at octet {pos} has zero ASNs"
            )
        end = pos + 2 + count * width
        if end > n:
            raise MalformedAttribute(
                action,
                subcode,
                f"{name} segment at octet {pos} of {count} ASNs overruns the {n}-octet attribute",
            )
        asns = struct.unpack_from(f"!{count}{fmt}", value, pos + 2)
        if 0 in asns:
            raise MalformedAttribute(action, subcode, f"{name} contains AS 0 (RFC 7607)")
        segs.append(AsSegment(SegmentType(stype), asns))
        pos = end
    return tuple(segs)


def _encode_segments(segments: Iterable[AsSegment], four: bool) -> bytes:
    out = bytearray()
    for seg in segments:
        asns = seg.asns
        if not four:
            asns = tuple(a if a <= 0xFFFF else AS_TRANS for a in asns)
        fmt = "I" if four else "H"
        for i in range(0, len(asns), _MAX_SEG):
            chunk = asns[i : i + _MAX_SEG]
            out += bytes((seg.type, len(chunk)))
            out += struct.pack(f"!{len(chunk)}{fmt}", *chunk)
    return bytes(out)


_TOKEN = re.compile(r"\s*([{}()\[\]]|\d+)")


def _parse_path(text: str) -> tuple[AsSegment, ...]:
    """``"65000 65001 {65002 65003} (65004)"``: bare ASNs form sequences, ``{}`` a set,
    ``()`` a confed sequence, ``[]`` a confed set."""
    closers = {
        "{": ("}", SegmentType.AS_SET),
        "(": (")", SegmentType.AS_CONFED_SEQUENCE),
        "[": ("]", SegmentType.AS_CONFED_SET),
    }
    segs: list[AsSegment] = []
    seq: list[int] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"AS path {text!r}: unexpected text at position {pos}")
        tok = m.group(1)
        pos = m.end()
        if tok.isdigit():
            seq.append(int(tok))
            continue
        if tok not in closers:
            raise ValueError(f"AS path {text!r}: unbalanced {tok!r}")
        if seq:
            segs.append(AsSegment(SegmentType.AS_SEQUENCE, tuple(seq)))
            seq = []
        close, stype = closers[tok]
        members: list[int] = []
        while True:
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"AS path {text!r}: {tok!r} is not closed")
            pos = m.end()
            if m.group(1) == close:
                break
            if not m.group(1).isdigit():
                raise ValueError(f"AS path {text!r}: unexpected {m.group(1)!r}")
            members.append(int(m.group(1)))
        if not members:
            raise ValueError(f"AS path {text!r}: empty segment")
        segs.append(AsSegment(stype, tuple(members)))
    if seq:
        segs.append(AsSegment(SegmentType.AS_SEQUENCE, tuple(seq)))
    return tuple(segs)


class _SegmentsMixin(PathAttribute):
    """What AS_PATH and AS4_PATH share: segments, path length, text form."""

    __slots__ = ()
    segments: tuple[AsSegment, ...]

    def length(self) -> int:
        """Path length for best-path selection: a set counts 1, confed segments 0."""
        return sum(s.length() for s in self.segments)

    def asns(self) -> Iterator[int]:
        """Every ASN in the path, in order (for loop detection)."""
        for s in self.segments:
            yield from s.asns

    def first_asn(self) -> int | None:
        """The leftmost ASN of a leading AS_SEQUENCE (the neighbor AS), else None."""
        for s in self.segments:
            if s.type == SegmentType.AS_SEQUENCE:
                return s.asns[0]
            if s.type not in _CONFED:
                return None
        return None

    def to_json(self) -> Any:
        return [s.to_json() for s in self.segments]

    def __str__(self) -> str:
        return " ".join(str(s) for s in self.segments)


def _norm_segments(obj: Any) -> None:
    segs = obj.segments
    if not isinstance(segs, tuple):
        object.__setattr__(obj, "segments", tuple(segs))


@register
@dataclass(frozen=True, slots=True)
class AsPath(_SegmentsMixin):
    """AS_PATH: well-known mandatory; malformed is treat-as-withdraw (RFC 7606 7.2)."""

    CODE: ClassVar[int] = AttrCode.AS_PATH
    FLAGS: ClassVar[int] = AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "as-path"

    segments: tuple[AsSegment, ...] = ()

    def __post_init__(self) -> None:
        _norm_segments(self)

    @classmethod
    def sequence(cls, *asns: int) -> AsPath:
        """A path of one AS_SEQUENCE (empty path if no ASNs)."""
        return cls((AsSegment(SegmentType.AS_SEQUENCE, asns),) if asns else ())

    @classmethod
    def from_str(cls, text: str) -> AsPath:
        return cls(_parse_path(text))

    def prepend(self, asn: int, count: int = 1) -> AsPath:
        """The path sent to an external peer: ``asn`` added ``count`` times in front."""
        if count <= 0:
            return self
        segs = self.segments
        if (
            segs
            and segs[0].type == SegmentType.AS_SEQUENCE
            and len(segs[0].asns) + count <= _MAX_SEG
        ):
            first = AsSegment(SegmentType.AS_SEQUENCE, (asn,) * count + segs[0].asns)
            return AsPath((first, *segs[1:]))
        return AsPath((AsSegment(SegmentType.AS_SEQUENCE, (asn,) * count), *segs))

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> AsPath:
        width = 4 if ctx.asn4 else 2
        return cls(
            _decode_segments(
                value, width, "AS_PATH", cls.ON_ERROR, UpdateSubcode.MALFORMED_AS_PATH, True
            )
        )

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _encode_segments(self.segments, ctx.asn4)


@register
@dataclass(frozen=True, slots=True)
class As4Path(_SegmentsMixin):
    """AS4_PATH: optional transitive, always 4-octet ASNs, no confederation segments;
    malformed is attribute discard (RFC 6793 section 6)."""

    CODE: ClassVar[int] = AttrCode.AS4_PATH
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.ATTRIBUTE_DISCARD
    NAME: ClassVar[str] = "as4-path"

    segments: tuple[AsSegment, ...] = ()

    def __post_init__(self) -> None:
        _norm_segments(self)

    @classmethod
    def sequence(cls, *asns: int) -> As4Path:
        return cls((AsSegment(SegmentType.AS_SEQUENCE, asns),) if asns else ())

    @classmethod
    def from_str(cls, text: str) -> As4Path:
        return cls(_parse_path(text))

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> As4Path:
        if ctx.asn4:
            # RFC 6793 section 3: never sent between NEW speakers; discard if seen.
            raise MalformedAttribute(
                cls.ON_ERROR,
                UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
                "AS4_PATH from a 4-octet-AS peer: discarded",
            )
        return cls(
            _decode_segments(
                value, 4, "AS4_PATH", cls.ON_ERROR, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, False
            )
        )

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _encode_segments(self.segments, True)


# -- RFC 6793 glue ----------------------------------------------------------


def _join(head: list[AsSegment], tail: tuple[AsSegment, ...]) -> tuple[AsSegment, ...]:
    """``head + tail``, joining the AS_SEQUENCE cut in two at the seam (only there:
    other segment boundaries are kept as the peers sent them)."""
    if (
        head
        and tail
        and head[-1].type == SegmentType.AS_SEQUENCE
        and tail[0].type == SegmentType.AS_SEQUENCE
        and len(head[-1].asns) + len(tail[0].asns) <= _MAX_SEG
    ):
        seam = AsSegment(SegmentType.AS_SEQUENCE, head[-1].asns + tail[0].asns)
        return (*head[:-1], seam, *tail[1:])
    return (*head, *tail)


def merge_as4_path(path: AsPath, as4: As4Path) -> AsPath:
    """RFC 6793 4.2.3: take as many leading ASNs of AS_PATH as it has more than
    AS4_PATH, then append AS4_PATH. If AS_PATH is the shorter, AS4_PATH is ignored."""
    extra = path.length() - as4.length()
    if extra < 0:
        return path
    taken: list[AsSegment] = []
    need = extra
    for seg in path.segments:
        if seg.type in _CONFED:
            # confederation segments count 0 and never appear in AS4_PATH: keep them
            taken.append(seg)
            continue
        if need <= 0:
            break
        if seg.type == SegmentType.AS_SET:
            taken.append(seg)
            need -= 1
        else:
            k = min(need, len(seg.asns))
            taken.append(AsSegment(SegmentType.AS_SEQUENCE, seg.asns[:k]))
            need -= k
    return AsPath(_join(taken, as4.segments))


def reconcile_as4(attrs: PathAttributes) -> PathAttributes:
    """Attributes from a 2-octet-AS peer -> one AS_PATH/AGGREGATOR with real ASNs.

    AS4_PATH and AS4_AGGREGATOR never survive this. If AGGREGATOR names a
    2-octet AS other than AS_TRANS, a 2-octet-only speaker aggregated the
    route after AS4_* were made, so both AS4_* are stale and ignored.
    """
    as4 = attrs.get(AttrCode.AS4_PATH)
    as4agg = attrs.get(AttrCode.AS4_AGGREGATOR)
    if as4 is None and as4agg is None:
        return attrs
    out = attrs.without(AttrCode.AS4_PATH, AttrCode.AS4_AGGREGATOR)
    agg = attrs.get(AttrCode.AGGREGATOR)
    if as4agg is not None and agg is not None:
        if agg.asn != AS_TRANS:
            return out
        out = out.replace(Aggregator(as4agg.asn, as4agg.address))
    path = attrs.get(AttrCode.AS_PATH)
    if as4 is not None and path is not None:
        out = out.replace(merge_as4_path(path, as4))
    return out


def split_as4(attrs: PathAttributes) -> PathAttributes:
    """Attributes for a 2-octet-AS peer (RFC 6793 4.2.2): ASNs above 65535 become
    AS_TRANS in AS_PATH/AGGREGATOR, and the real values ride in AS4_PATH /
    AS4_AGGREGATOR, which are only added when needed."""
    out = attrs.without(AttrCode.AS4_PATH, AttrCode.AS4_AGGREGATOR)
    path = attrs.get(AttrCode.AS_PATH)
    if path is not None and any(a > 0xFFFF for a in path.asns()):
        mapped = AsPath(
            tuple(
                AsSegment(s.type, tuple(a if a <= 0xFFFF else AS_TRANS for a in s.asns))
                for s in path.segments
            )
        )
        out = out.replace(mapped)
        real = tuple(s for s in path.segments if s.type not in _CONFED)
        if real:
            out = out.replace(As4Path(real))
    agg = attrs.get(AttrCode.AGGREGATOR)
    if agg is not None and agg.asn > 0xFFFF:
        out = out.replace(Aggregator(AS_TRANS, agg.address), As4Aggregator(agg.asn, agg.address))
    return out
