"""Path attribute registry, the opaque unknown attribute, and the attribute set.

Each attribute type is one small frozen dataclass registered by its type code
with :func:`register`. It implements ``decode(value, ctx)`` (a classmethod
over the attribute's value octets, raising :class:`MalformedAttribute` with
the RFC 7606 action on bad input), ``encode_value(ctx)`` and ``to_json()``.
The header (flags, code, length) is handled here once for all.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..constants import AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction

_OPT_TRANS = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE


class PathAttribute:
    """Base of every path attribute value class."""

    __slots__ = ()
    CODE: ClassVar[int]
    #: The Optional and Transitive bits the attribute must carry.
    FLAGS: ClassVar[int]
    #: RFC 7606 action when this attribute is malformed.
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = ""

    @property
    def code(self) -> int:
        return self.CODE

    @property
    def flags(self) -> int:
        return self.FLAGS

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> PathAttribute:
        raise NotImplementedError

    def encode_value(self, ctx: CodecContext) -> bytes:
        raise NotImplementedError

    def to_json(self) -> Any:
        raise NotImplementedError

    def encode(self, ctx: CodecContext) -> bytes:
        return encode_attribute(self.flags, self.code, self.encode_value(ctx))


A = TypeVar("A", bound=type[PathAttribute])

#: type code -> class
ATTRIBUTES: dict[int, type[PathAttribute]] = {}


def register(cls: A) -> A:
    """Class decorator: make ``cls`` the decoder for its type code."""
    if cls.CODE in ATTRIBUTES:
        raise RuntimeError(f"path attribute {cls.CODE} registered twice")
    ATTRIBUTES[cls.CODE] = cls
    return cls


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    """Attribute header + value; the extended-length bit is set when needed."""
    n = len(value)
    if n > 255:
        return struct.pack("!BBH", (flags | AttrFlag.EXTENDED_LENGTH) & 0xF0, code, n) + value
    return struct.pack("!BBB", flags & ~AttrFlag.EXTENDED_LENGTH & 0xF0, code, n) + value


@dataclass(frozen=True, slots=True)
class UnknownAttribute(PathAttribute):
    """An attribute this codec does not know: kept as opaque octets.

    Optional transitive ones are passed on with the Partial bit set
    (RFC 4271 section 5); optional non-transitive ones are dropped by the
    UPDATE decoder and never reach this class.
    """

    type_code: int
    attr_flags: int
    value: bytes

    @property
    def code(self) -> int:
        return self.type_code

    @property
    def flags(self) -> int:
        return self.attr_flags

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.value

    def to_json(self) -> Any:
        return {"code": self.type_code, "flags": self.attr_flags, "value": self.value.hex()}

    def propagated(self) -> UnknownAttribute:
        """The form passed on to other peers: Partial bit set."""
        if self.attr_flags & AttrFlag.PARTIAL:
            return self
        return UnknownAttribute(self.type_code, self.attr_flags | AttrFlag.PARTIAL, self.value)


class PathAttributes:
    """An immutable, hashable set of path attributes, at most one per type code.

    MP_REACH_NLRI and MP_UNREACH_NLRI are not kept here: the UPDATE carries
    them separately, so that one attribute set can be shared by every route
    of an UPDATE (and interned across UPDATEs).
    """

    __slots__ = ("_attrs", "_hash")

    def __init__(self, attrs: Iterable[PathAttribute] = ()) -> None:
        by_code: dict[int, PathAttribute] = {}
        for a in attrs:
            by_code[a.code] = a
        self._attrs: tuple[PathAttribute, ...] = tuple(by_code[c] for c in sorted(by_code))
        self._hash: int | None = None

    def get(self, code: int) -> Any:
        for a in self._attrs:
            if a.code == code:
                return a
        return None

    def __getitem__(self, code: int) -> PathAttribute:
        a = self.get(code)
        if a is None:
            raise KeyError(code)
        return a

    def __contains__(self, code: object) -> bool:
        return any(a.code == code for a in self._attrs)

    def __iter__(self) -> Iterator[PathAttribute]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathAttributes) and self._attrs == other._attrs

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(self._attrs)
        return h

    def __repr__(self) -> str:
        return f"PathAttributes({list(self._attrs)!r})"

    def replace(self, *attrs: PathAttribute) -> PathAttributes:
        """A copy with ``attrs`` added or replacing those of the same code."""
        return PathAttributes((*self._attrs, *attrs))

    def without(self, *codes: int) -> PathAttributes:
        drop = set(codes)
        return PathAttributes(a for a in self._attrs if a.code not in drop)

    def encode(self, ctx: CodecContext) -> bytes:
        return b"".join(a.encode(ctx) for a in self._attrs)

    def to_json(self) -> dict[str, Any]:
        """``{name: value}`` with snake_case names (``as_path``, ``local_pref``,
        ``extended_communities``; ``attr_N`` for an attribute of unknown type N)."""
        out: dict[str, Any] = {}
        for a in self._attrs:
            name = (a.NAME or f"attr-{a.code}").replace("-", "_")
            out[name] = a.to_json()
        return out
