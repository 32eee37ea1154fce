"""What a codec needs to know about the session: negotiated options."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import MAX_MESSAGE_LEN, Family


@dataclass(frozen=True, slots=True)
class CodecContext:
    """Negotiated options for one direction of one session.

    ``addpath``: families whose NLRI carry a 4-octet path identifier in this
    direction (RFC 7911). ``asn4``: both sides speak 4-octet AS (RFC 6793).
    ``ibgp``: the peer is internal (changes RFC 7606 handling of LOCAL_PREF
    and ORIGINATOR_ID). ``extended_nexthop``: families whose next hop may be
    IPv6 although the AFI is IPv4 (RFC 8950).
    """

    asn4: bool = True
    addpath: frozenset[Family] = field(default_factory=frozenset)
    max_message_len: int = MAX_MESSAGE_LEN
    ibgp: bool = True
    extended_nexthop: frozenset[Family] = field(default_factory=frozenset)


DEFAULT_CONTEXT = CodecContext()
