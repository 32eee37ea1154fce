"""Update groups of the Adj-RIB-Out: who shares one outbound policy, and what it was sent.

The values :class:`~vpe.rib.adj_rib_out.AdjRibOut` is built from, kept here
so that the Adj-RIB-Out itself reads as the algorithm (group, diff, encode):

* :class:`OutPeer` - an established peer as the Adj-RIB-Out sees it;
* :class:`Group` / :class:`Member` - peers with one outbound policy, and one
  peer of a group (with its split-horizon exclusion counts);
* :class:`FamilyState` - what a group's view holds per destination of one
  family, with entry counts per split-horizon :class:`Tag`;
* :class:`Batch` - the withdrawals and announcements one change produces,
  bucketed by outbound key, before encoding;
* the small helpers that diff two views of a destination.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import (
    RTC,
    Family,
)
from ..bgp.wire.context import CodecContext
from ..bgp.wire.nlri.base import Nlri
from ..policy.policy import Policy
from .export_policy import GroupExportPolicy
from .path import PeerInfo, same_nlri
from .rtc import RtcFilter

IPAddress = IPv4Address | IPv6Address


class Tag:
    """Whom an advertised path must not go back to: its source peer and its originator.

    ``addr`` is the source peer's address (None for local routes);
    ``oid`` the ORIGINATOR_ID the path arrived with (None if absent, and
    always None towards eBGP groups, where it does not matter). Interned
    per (addr, oid), so tags hash and compare by identity: cheap as dict
    keys in the per-batch buckets.
    """

    __slots__ = ("addr", "oid")

    def __init__(self, addr: IPAddress | None, oid: IPv4Address | None) -> None:
        self.addr = addr
        self.oid = oid

    def excludes(self, m: Member) -> bool:
        """Is member ``m`` the source peer or the originator (split horizon, RFC 4456 8)?"""
        return (self.addr is not None and m.addr == self.addr) or (self.oid is not None and m.rid == self.oid)

    def __repr__(self) -> str:
        return f"Tag({self.addr}, {self.oid})"


#: (outbound attributes, outbound next hop, split-horizon tag): interned,
#: shared by every route sent with them, and the unit UPDATEs are packed by.
Okey = tuple[PathAttributes, IPAddress, Tag | None]
#: one advertised route: the NLRI as sent (our path id with add-path) and its Okey
Entry = tuple[Nlri, Okey]
#: what a destination holds: one Entry (plain families), path id -> Entry
#: (add-path families), or None: nothing.
Stored = Any
#: the Okey of a path source for one group, or None: not sent to that group
Info = Okey | None
TagOrNone = Tag | None

MISSING: Any = object()
NOBODY = IPv6Address("::")  # an address no peer has: stands for "a member" in group checks
CACHE_MAX = 65536


@dataclass(frozen=True, slots=True)
class OutPeer:
    """What Adj-RIB-Out needs to know about one established peer.

    ``addpath_send`` maps a family to ``"all"`` or N (best-N); absent means
    best path only. It only takes effect for families in ``ctx.addpath``
    (where path ids are on the wire). ``next_hop_self`` is the next hop
    sent to eBGP peers, and to iBGP peers for local routes without one.
    ``rtc``: the peer negotiated RTC, so VPN routes are filtered by the
    RT membership it sent. ``export_policy``: the user's policy, applied
    after the standard rewrites (part of the update-group signature).
    """

    address: IPAddress
    info: PeerInfo
    families: frozenset[Family]
    ctx: CodecContext
    addpath_send: dict[Family, int | str] = field(default_factory=dict, hash=False)
    next_hop_self: IPAddress | None = None
    rtc: bool = False
    export_policy: Policy | None = None


class FamilyState:
    """One group's state in one family: the group view of every destination.

    Without add-path the view is two dicts, key -> NLRI sent and key ->
    Okey, rather than one dict of (NLRI, Okey) pairs: both values already
    exist, so a million-route table adds no object for the garbage collector
    to walk. With add-path, ``sent`` maps key -> path id -> Entry.
    ``total`` counts the entries (routes, or paths with add-path) and
    ``tags`` the entries per tag, so a member's count is ``total`` minus
    the counts of the tags that name it.
    """

    __slots__ = ("sent", "okeys", "mode", "addpath", "table", "total", "tags")

    def __init__(self, mode: int, addpath: bool) -> None:
        self.sent: dict[bytes, Any] = {}
        self.okeys: dict[bytes, Okey] = {}
        #: 1 best path, 0 all paths, N best N
        self.mode = mode
        #: path ids on the wire
        self.addpath = addpath
        #: the encoded group view per Okey, reused by members joining
        self.table: dict[Okey, list[bytes]] | None = None
        self.total = 0
        self.tags: dict[Tag, int] = {}

    def get(self, key: bytes) -> Stored:
        if self.addpath:
            return self.sent.get(key)
        n = self.sent.get(key)
        return None if n is None else (n, self.okeys[key])

    def put(self, key: bytes, s: Stored) -> None:
        if s is None:
            if self.sent.pop(key, None) is not None and not self.addpath:
                del self.okeys[key]
        elif self.addpath:
            self.sent[key] = s
        else:
            self.sent[key] = s[0]
            self.okeys[key] = s[1]

    def items(self) -> Iterator[tuple[bytes, Stored]]:
        if self.addpath:
            yield from self.sent.items()
            return
        okeys = self.okeys
        for k, n in self.sent.items():
            yield k, (n, okeys[k])

    def count(self, delta: dict[TagOrNone, int]) -> None:
        """Add per-tag entry count changes."""
        tags = self.tags
        for t, d in delta.items():
            if not d:
                continue
            self.total += d
            if t is not None:
                c = tags.get(t, 0) + d
                if c:
                    tags[t] = c
                else:
                    del tags[t]

    def excluded_count(self, m: Member) -> int:
        """How many entries of the view ``m`` does not get (split horizon)."""
        return sum(c for t, c in self.tags.items() if t.excludes(m))

    def reset(self) -> None:
        self.sent = {}
        self.okeys = {}
        self.table = None
        self.total = 0
        self.tags = {}

    def copy_from(self, other: FamilyState, share: bool) -> None:
        """Take ``other``'s group view (shared when ``other`` is discarded)."""
        self.sent = other.sent if share else dict(other.sent)
        self.okeys = other.okeys if share else dict(other.okeys)
        self.table = other.table
        self.total = other.total
        self.tags = dict(other.tags)


class Group:
    """An update group: members sharing one outbound policy."""

    __slots__ = (
        "sig", "rep", "ctx", "ebgp", "next_hop_self", "rtc", "fams", "members", "_excl",
        "export", "per_route", "relabels", "narrow", "base",
    )

    def __init__(
        self,
        sig: tuple[Any, ...],
        peer: OutPeer,
        rtc: RtcFilter | None,
        router_id: IPv4Address,
        intern: Callable[[Okey], Okey],
    ) -> None:
        info = peer.info
        self.sig = sig
        #: the members' PeerInfo with a member-neutral address and router id
        self.rep = PeerInfo(NOBODY, IPv4Address(0), info.asn, info.ibgp, info.rr_client)
        self.ctx = peer.ctx
        self.ebgp = not info.ibgp
        self.next_hop_self = peer.next_hop_self
        self.rtc = rtc
        #: the export policy ("next hop self" is the group's next_hop_self, else our router
        #: id); ``per_route``: it runs per route (prefix/RD terms, relabel), not per source
        pol = peer.export_policy
        self.export = None if pol is None else GroupExportPolicy(
            pol, peer.next_hop_self if peer.next_hop_self is not None else router_id, intern
        )
        self.per_route = self.export is not None and self.export.per_route
        self.relabels = pol is not None and pol.relabels
        self.fams: dict[Family, FamilyState] = {}
        for fam in peer.families:
            addpath = fam in peer.ctx.addpath
            mode = addpath_mode(peer.addpath_send.get(fam)) if addpath else 1
            self.fams[fam] = FamilyState(mode, addpath)
        self.members: dict[IPAddress, Member] = {}
        #: tag -> the members it names (cleared when membership changes)
        self._excl: dict[Tag, tuple[Member, ...]] = {}
        #: VPN routes reach this group through the RT index (rtc.RtIndex; set by AdjRibOut)
        self.narrow = False
        #: the signature without the RTC filter: groups with the same one share their
        #: views of the families RTC does not filter (set by AdjRibOut)
        self.base: tuple[Any, ...] = sig

    def excluded(self, t: Tag) -> tuple[Member, ...]:
        """The members ``t`` names: computed once per tag while membership stands."""
        r = self._excl.get(t)
        if r is None:
            r = self._excl[t] = tuple(m for m in self.members.values() if t.excludes(m))
        return r

    def membership_changed(self) -> None:
        self._excl = {}


class Member:
    __slots__ = ("peer", "group", "addr", "rid", "excluded")

    def __init__(self, peer: OutPeer, group: Group) -> None:
        self.peer = peer
        self.group = group
        self.addr = peer.address
        #: the router id ORIGINATOR_IDs are compared with (iBGP only: RFC 4456 8)
        self.rid: IPv4Address | None = peer.info.router_id if peer.info.ibgp else None
        #: family -> how many entries of the group view split horizon keeps from this member
        self.excluded: dict[Family, int] = {}


class Batch:
    """One change batch of one group in one family, before encoding.

    ``ann``: Okey -> NLRIs to announce (to every member its tag does not
    name); ``wd``: tag of what is withdrawn -> NLRIs (members the tag names
    never had them); ``xwd``: (old tag, new tag) -> NLRIs replaced by a path
    with another tag (members the new tag names but the old one does not
    get these withdrawn); ``delta``: entry count change per tag.
    """

    __slots__ = ("ann", "wd", "xwd", "delta")

    def __init__(self) -> None:
        self.ann: dict[Okey, list[Nlri]] = {}
        self.wd: dict[TagOrNone, list[Nlri]] = {}
        self.xwd: dict[tuple[TagOrNone, TagOrNone], list[Nlri]] = {}
        self.delta: dict[TagOrNone, int] = {}

    def __bool__(self) -> bool:
        return bool(self.ann or self.wd)

    def withdraw(self, t: TagOrNone, n: Nlri) -> None:
        lst = self.wd.get(t)
        if lst is None:
            lst = self.wd[t] = []
        lst.append(n)

    def replace(self, old: TagOrNone, new: TagOrNone, n: Nlri) -> None:
        lst = self.xwd.get((old, new))
        if lst is None:
            lst = self.xwd[(old, new)] = []
        lst.append(n)

    def announce(self, okey: Okey, n: Nlri) -> None:
        lst = self.ann.get(okey)
        if lst is None:
            lst = self.ann[okey] = []
        lst.append(n)

    def tally(self) -> dict[TagOrNone, int]:
        """``delta`` completed with the withdrawals and tag changes (counted from list sizes)."""
        delta = self.delta
        for t, lst in self.wd.items():
            delta[t] = delta.get(t, 0) - len(lst)
        for (a, b), lst in self.xwd.items():
            delta[a] = delta.get(a, 0) - len(lst)
            delta[b] = delta.get(b, 0) + len(lst)
        return delta

    def tags(self) -> set[Tag]:
        """Every tag the batch touches."""
        out: set[TagOrNone] = set(self.wd)
        out.update(o[2] for o in self.ann)
        for a, b in self.xwd:
            out.add(a)
            out.add(b)
        out.discard(None)
        return out  # type: ignore[return-value]


def addpath_mode(v: int | str | None) -> int:
    if v is None:
        return 1
    if v == "all":
        return 0
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    raise ValueError(f"add-path send {v!r}: expected 'all' or a path count of at least 1")


def with_path_id(n: Nlri, pid: int) -> Nlri:
    """``n`` carrying path id ``pid`` (a copy; NLRI values are shared by the tables)."""
    if n.path_id == pid:
        return n
    c = copy.copy(n)
    c.path_id = pid
    return c


def same_entry(a: Entry, b: Entry) -> bool:
    return a is b or ((a[1] is b[1] or a[1] == b[1]) and same_nlri(a[0], b[0]))


def as_view(s: Stored) -> dict[int, Entry]:
    if s is None:
        return {}
    if type(s) is dict:
        return s
    return {0: s}


def entries_of(s: Stored) -> Iterable[Entry]:
    if s is None:
        return ()
    if type(s) is dict:
        return s.values()
    return (s,)


def diff_views(old: dict[int, Entry], new: dict[int, Entry], wd: list[Nlri], ann: dict[Okey, list[Nlri]]) -> None:
    """One member's diff of one destination (used when a member changes group)."""
    for pid, e in old.items():
        if pid not in new:
            wd.append(e[0])
    for pid, e in new.items():
        o = old.get(pid)
        if o is not None and same_entry(o, e):
            continue
        lst = ann.get(e[1])
        if lst is None:
            ann[e[1]] = [e[0]]
        else:
            lst.append(e[0])


def family_order(families: Iterable[Family]) -> list[Family]:
    """RTC first (so the peer's filters are in place before VPN routes), then by AFI/SAFI."""
    return sorted(families, key=lambda f: (f != RTC, f.afi, f.safi))
