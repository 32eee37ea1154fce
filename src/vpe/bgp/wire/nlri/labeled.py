"""IPv4/IPv6 labeled unicast NLRI (RFC 8277), and the label stack walk VPN shares.

Wire form: ``[path id] length labels prefix`` where ``length`` counts the
bits of labels and prefix, and the label stack is 3-octet entries (20-bit
label, 3 TC bits, bottom-of-stack bit) up to the first entry with the
bottom-of-stack bit set (RFC 8277 section 2.3, multiple labels).

Withdrawals differ: in MP_UNREACH_NLRI the stack is replaced by one 3-octet
"compatibility" field whose value is ignored (0x800000 per RFC 3107, 0x000000
by some speakers; neither has the bottom-of-stack bit, so the walk above
cannot be used). Hence :meth:`LabeledCodec.decode_withdrawn`, which reads
exactly one field, and :meth:`LabeledCodec.encode_withdrawn_one`, which
always writes 0x800000. Decoded withdrawals have ``labels == ()``; an NLRI
with no labels encodes as a withdrawal.

Labels are kept as their 20-bit values; the TC bits are not kept (they have
no meaning in BGP and are sent as zero).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

from ..constants import IPV4_LABELED, IPV6_LABELED
from ..errors import NlriError
from .base import Nlri, register_codec
from .prefix import (
    HOST_BITS,
    PLEN_BYTE,
    IPNetwork,
    IPPrefixCodec,
    IPPrefixNlri,
    check_path_id,
    clear_host_bits,
    path_id_error,
    prefix_octets,
)

WITHDRAW_LABEL_FIELD = b"\x80\x00\x00"
"""The compatibility field sent in withdrawals (RFC 8277 section 2.4)."""

MAX_LABEL = 0xFFFFF


def check_labels(labels: Iterable[int], what: str) -> tuple[int, ...]:
    out = tuple(labels)
    for lab in out:
        if type(lab) is not int or not 0 <= lab <= MAX_LABEL:
            raise ValueError(f"{what}: label {lab!r} is not a 20-bit value")
    return out


def label_stack_bytes(labels: tuple[int, ...]) -> bytes:
    """The wire label stack; bottom-of-stack set on the last; empty -> withdraw field."""
    if len(labels) == 1:
        return ((labels[0] << 4) | 1).to_bytes(3, "big")
    if not labels:
        return WITHDRAW_LABEL_FIELD
    last = len(labels) - 1
    return b"".join(((lab << 4) | (i == last)).to_bytes(3, "big") for i, lab in enumerate(labels))


def _walk_labels(
    data: bytes, p: int, stop: int, name: str, pos: int, plen: int
) -> tuple[tuple[int, ...], int]:
    """Labels from ``p`` up to bottom-of-stack; the stack must end by ``stop``."""
    labels: list[int] = []
    while True:
        e = p + 3
        if e > stop:
            raise NlriError(
                f"{name}: label stack of the NLRI at offset {pos} (length {plen}) has no "
                f"bottom-of-stack entry within the NLRI"
            )
        v = int.from_bytes(data[p:e], "big")
        labels.append(v >> 4)
        p = e
        if v & 1:
            return tuple(labels), e


def _length_error(
    name: str, plen: int, used: int, head_bits: int, max_bits: int, pos: int
) -> NlriError:
    if plen < used + head_bits:
        return NlriError(
            f"{name}: prefix length {plen} is shorter than the {used}+{head_bits} "
            f"bits of labels and RD at offset {pos}"
        )
    return NlriError(
        f"{name}: prefix length {plen} exceeds {used + head_bits}+{max_bits} at offset {pos}"
    )


def _overrun_error(name: str, plen: int, pos: int, end: int, n: int) -> NlriError:
    return NlriError(
        f"{name}: prefix length {plen} at offset {pos} needs {end - pos} octets, "
        f"{n - pos} remain"
    )


def decode_labeled(
    data: bytes,
    addpath: bool,
    cls: type[Any],
    name: str,
    rd_len: int,
    max_bits: int,
    withdraw: bool,
) -> list[Nlri]:
    """Walk ``[path id] length labels [RD] prefix`` records (labeled unicast,
    VPN). Key = prefix-length octet + RD + minimal prefix octets; one slice
    and one concatenation per route, labels read by indexing."""
    if type(data) is not bytes:
        data = bytes(data)
    if not (addpath or withdraw):
        return _decode_labeled_plain(data, cls, name, rd_len, max_bits)
    head_bits = rd_len * 8
    pb = PLEN_BYTE
    host = HOST_BITS
    out: list[Nlri] = []
    app = out.append
    n = len(data)
    pos = 0
    pid = 0
    labels: tuple[int, ...] = ()
    while pos < n:
        if addpath:
            if pos + 5 > n:
                raise path_id_error(name, pos, n)
            pid = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        plen = data[pos]
        p = pos + 1
        e = p + 3
        if withdraw:
            if e > n:
                raise NlriError(
                    f"{name}: withdrawn NLRI at offset {pos} truncated in its label field"
                )
            used = 24
        elif e <= n and (b2 := data[p + 2]) & 1:
            labels = ((data[p] << 12) | (data[p + 1] << 4) | (b2 >> 4),)
            used = 24
        else:
            labels, e = _walk_labels(data, p, min(n, p + (plen >> 3)), name, pos, plen)
            used = (e - p) << 3
        bits = plen - used - head_bits
        if bits < 0 or bits > max_bits:
            raise _length_error(name, plen, used, head_bits, max_bits, pos)
        end = e + rd_len + ((bits + 7) >> 3)
        if end > n:
            raise _overrun_error(name, plen, pos, end, n)
        key = pb[bits] + data[e:end]
        if bits & 7 and data[end - 1] & host[bits & 7]:
            key = clear_host_bits(key, bits)
        app(cls(key, pid, labels))
        pos = end
    return out


#: interned one-label stacks (label value -> ``(label,)``): a million routes
#: usually share a few labels, so they share the tuples too (at most 2^20).
_ONE_LABEL: dict[int, tuple[int]] = {}


def _decode_labeled_plain(
    data: bytes, cls: type[Any], name: str, rd_len: int, max_bits: int
) -> list[Nlri]:
    """:func:`decode_labeled` without ADD-PATH and withdrawal: the hot case, kept
    free of the per-route tests those need (about 8% faster)."""
    head_bits = rd_len * 8
    head1 = head_bits + 24
    pb = PLEN_BYTE
    host = HOST_BITS
    one = _ONE_LABEL
    out: list[Nlri] = []
    app = out.append
    n = len(data)
    pos = 0
    while pos < n:
        plen = data[pos]
        p = pos + 1
        e = p + 3
        if e <= n and (b2 := data[p + 2]) & 1:
            v = (data[p] << 12) | (data[p + 1] << 4) | (b2 >> 4)
            labels: tuple[int, ...] = one.get(v) or one.setdefault(v, (v,))
            bits = plen - head1
        else:
            labels, e = _walk_labels(data, p, min(n, p + (plen >> 3)), name, pos, plen)
            bits = plen - ((e - p) << 3) - head_bits
        if bits < 0 or bits > max_bits:
            raise _length_error(name, plen, (e - p) << 3, head_bits, max_bits, pos)
        end = e + rd_len + ((bits + 7) >> 3)
        if end > n:
            raise _overrun_error(name, plen, pos, end, n)
        key = pb[bits] + data[e:end]
        if bits & 7 and data[end - 1] & host[bits & 7]:
            key = clear_host_bits(key, bits)
        app(cls(key, 0, labels))
        pos = end
    return out


class LabeledNlri(Nlri):
    """Mixin state of every family with a label stack: ``labels`` (20-bit values)."""

    __slots__ = ("labels",)
    labels: tuple[int, ...]

    def __init__(self, key: bytes, path_id: int = 0, labels: tuple[int, ...] = ()) -> None:
        self.key = key
        self.path_id = path_id
        self.labels = labels

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.key == other.key
            and self.path_id == other.path_id
            and self.labels == other.labels
        )

    __hash__ = Nlri.__hash__

    def __repr__(self) -> str:
        extra = f", path_id={self.path_id}" if self.path_id else ""
        return f"{type(self).__name__}({str(self)!r}, labels={list(self.labels)}{extra})"


class LabeledPrefix(LabeledNlri, IPPrefixNlri):
    """A labeled unicast route: prefix key plus the label stack."""

    __slots__ = ()

    @classmethod
    def from_str(cls, text: str, labels: Iterable[int] = (), path_id: int = 0) -> Self:
        """``"192.0.2.0/24"`` with ``labels``; ``ValueError`` on bad input."""
        return cls.from_network(text, labels, path_id)

    @classmethod
    def from_network(
        cls, prefix: str | IPNetwork, labels: Iterable[int] = (), path_id: int = 0
    ) -> Self:
        name = cls.FAMILY.name
        plen, octets = prefix_octets(prefix, cls.VERSION, name)
        return cls(
            PLEN_BYTE[plen] + octets, check_path_id(path_id, name), check_labels(labels, name)
        )

    def to_json(self) -> dict[str, Any]:
        return {"prefix": str(self), "labels": list(self.labels), "path_id": self.path_id}


class IPv4LabeledPrefix(LabeledPrefix):
    __slots__ = ()
    FAMILY = IPV4_LABELED
    VERSION = 4


class IPv6LabeledPrefix(LabeledPrefix):
    __slots__ = ()
    FAMILY = IPV6_LABELED
    VERSION = 6


class LabeledCodec(IPPrefixCodec):
    """Codec of labeled unicast; VPN subclasses it with an 8-octet RD (and its next hop)."""

    cls: ClassVar[type[LabeledNlri]]
    rd_len: ClassVar[int] = 0
    #: bits before the prefix with a one-entry stack (label + RD)
    head_bits1: ClassVar[int] = 24

    def decode(self, data: bytes, addpath: bool) -> list[Nlri]:
        return decode_labeled(
            data, addpath, self.cls, self.family.name, self.rd_len, self.max_bits, False
        )

    def decode_withdrawn(self, data: bytes, addpath: bool) -> list[Nlri]:
        return decode_labeled(
            data, addpath, self.cls, self.family.name, self.rd_len, self.max_bits, True
        )

    def encode_one(self, nlri: Nlri, addpath: bool) -> bytes:
        key = nlri.key
        labels: tuple[int, ...] = nlri.labels  # type: ignore[attr-defined]
        if len(labels) == 1:
            wire = (
                PLEN_BYTE[key[0] + self.head_bits1]
                + ((labels[0] << 4) | 1).to_bytes(3, "big")
                + key[1:]
            )
        else:
            wire = self._encode_stack(key, label_stack_bytes(labels))
        if addpath:
            return nlri.path_id.to_bytes(4, "big") + wire
        return wire

    def encode_withdrawn_one(self, nlri: Nlri, addpath: bool) -> bytes:
        key = nlri.key
        wire = PLEN_BYTE[key[0] + self.head_bits1] + WITHDRAW_LABEL_FIELD + key[1:]
        if addpath:
            return nlri.path_id.to_bytes(4, "big") + wire
        return wire

    def _encode_stack(self, key: bytes, stack: bytes) -> bytes:
        total = key[0] + len(stack) * 8 + self.rd_len * 8
        if total > 255:
            raise ValueError(
                f"{self.family.name}: {len(stack) // 3} labels and a /{key[0]} prefix need "
                f"{total} bits, more than an NLRI length octet holds"
            )
        return PLEN_BYTE[total] + stack + key[1:]


class IPv4LabeledCodec(LabeledCodec):
    family = IPV4_LABELED
    cls = IPv4LabeledPrefix
    max_bits = 32


class IPv6LabeledCodec(LabeledCodec):
    family = IPV6_LABELED
    cls = IPv6LabeledPrefix
    max_bits = 128


IPV4_LABELED_CODEC = register_codec(IPv4LabeledCodec())
IPV6_LABELED_CODEC = register_codec(IPv6LabeledCodec())
