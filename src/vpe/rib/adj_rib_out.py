"""Adj-RIB-Out: what each established peer is sent, as whole UPDATE messages.

Pure code: Loc-RIB changes in, UPDATE octets per peer out. The engine calls
:meth:`AdjRibOut.peer_up` when a session is established (the full table and
End-of-RIB per family), :meth:`AdjRibOut.on_change` with every
:class:`~vpe.rib.rib.RibChange`, and writes the returned messages.

**Update groups.** Peers with the same outbound policy (iBGP or eBGP, client
flag, AS if external, next-hop-self, families, codec context, add-path
settings and RTC membership) form one group. A change is computed and
encoded once per group and every member gets the very same ``bytes``
objects: with four route-reflector clients, a million-route change costs
one encoding, not four.

**What a group sends.** Per destination, the *group view*: the best path
(or with add-path the best N / all eligible paths, each under a path id we
choose, stable per source route) if the group's policy allows it:
reflection rules (:func:`~vpe.rib.reflection.may_advertise`), no route back
into an AS already in its AS_PATH, and RTC for VPN families. The group view
is kept per destination (``sent``), so a change is diffed against it and
only what changed is (re)announced or withdrawn.

**Split horizon without per-member state.** Whether a member may get a
path the group may get depends only on the path's source: never back to
the peer it came from, nor (over iBGP) to the router named in its
ORIGINATOR_ID. Every advertised entry therefore carries a :class:`_Tag`
(source address, ORIGINATOR_ID), interned and stored inside the entry's
outbound key, and a member's view *is* the group view minus the entries
whose tag names it. Without add-path a member excluded from the best path
gets nothing for that destination (BGP advertises its best path or nothing);
with add-path it gets the other paths of the group view. Nothing is stored
per member and key: a batch is computed once, its announcements bucketed by
outbound key (so by tag) and its withdrawals by the tag of what they
withdraw; the few members some tag of the batch names get the shared
buckets minus those (whole lists, no per-key test). In the route-reflector
case, a client's million routes reflected to the other clients of its
group, that is one encoding for the others and nothing for the sender.
Entry counts per tag make :meth:`AdjRibOut.sent` O(1).

**Outbound attributes.** Computed once per (attribute set, transform kind)
and cached: attribute sets are interned and shared by many routes. See
:meth:`AdjRibOut._transform`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import (
    IPV4_MCAST_VPN,
    IPV4_UNICAST,
    IPV6_MCAST_VPN,
    RTC,
    VPNV4,
    VPNV6,
    Family,
)
from ..bgp.wire.context import CodecContext
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.update import end_of_rib, pack_announcements, pack_withdrawals
from . import attrs as A
from .loc_rib import LocRib
from .path import Path, PathSource, PeerInfo, same_nlri
from .reflection import is_reflection, may_advertise, outbound_reflection_attributes
from .rib import Rib, RibChange
from .rtc import RtcFilter, RtcFilters, RtIndex, membership_keys

IPAddress = IPv4Address | IPv6Address

#: Families whose routes carry Route Targets and are subject to RTC (RFC 4684).
DEFAULT_VPN_FAMILIES: frozenset[Family] = frozenset({VPNV4, VPNV6, IPV4_MCAST_VPN, IPV6_MCAST_VPN})


class _Tag:
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

    def excludes(self, m: _Member) -> bool:
        """Is member ``m`` the source peer or the originator (split horizon, RFC 4456 8)?"""
        return (self.addr is not None and m.addr == self.addr) or (self.oid is not None and m.rid == self.oid)

    def __repr__(self) -> str:
        return f"_Tag({self.addr}, {self.oid})"


#: (outbound attributes, outbound next hop, split-horizon tag): interned,
#: shared by every route sent with them, and the unit UPDATEs are packed by.
Okey = tuple[PathAttributes, IPAddress, _Tag | None]
#: one advertised route: the NLRI as sent (our path id with add-path) and its Okey
Entry = tuple[Nlri, Okey]
#: what a destination holds: one Entry (plain families), path id -> Entry
#: (add-path families), or None: nothing.
Stored = Any
#: the Okey of a path source for one group, or None: not sent to that group
Info = Okey | None
TagOrNone = _Tag | None

_MISSING: Any = object()
_NOBODY = IPv6Address("::")  # an address no peer has: stands for "a member" in group checks
_CACHE_MAX = 65536


@dataclass(frozen=True, slots=True)
class OutPeer:
    """What Adj-RIB-Out needs to know about one established peer.

    ``addpath_send`` maps a family to ``"all"`` or N (best-N); absent means
    best path only. It only takes effect for families in ``ctx.addpath``
    (where path ids are on the wire). ``next_hop_self`` is the next hop
    sent to eBGP peers, and to iBGP peers for local routes without one.
    ``rtc``: the peer negotiated RTC, so VPN routes are filtered by the
    RT membership it sent.
    """

    address: IPAddress
    info: PeerInfo
    families: frozenset[Family]
    ctx: CodecContext
    addpath_send: dict[Family, int | str] = field(default_factory=dict, hash=False)
    next_hop_self: IPAddress | None = None
    rtc: bool = False


class _FamilyState:
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
        self.tags: dict[_Tag, int] = {}

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

    def excluded_count(self, m: _Member) -> int:
        """How many entries of the view ``m`` does not get (split horizon)."""
        return sum(c for t, c in self.tags.items() if t.excludes(m))

    def reset(self) -> None:
        self.sent = {}
        self.okeys = {}
        self.table = None
        self.total = 0
        self.tags = {}

    def copy_from(self, other: _FamilyState, share: bool) -> None:
        """Take ``other``'s group view (shared when ``other`` is discarded)."""
        self.sent = other.sent if share else dict(other.sent)
        self.okeys = other.okeys if share else dict(other.okeys)
        self.table = other.table
        self.total = other.total
        self.tags = dict(other.tags)


class _Group:
    """An update group: members sharing one outbound policy."""

    __slots__ = ("sig", "rep", "ctx", "ebgp", "next_hop_self", "rtc", "fams", "members", "_excl", "narrow",
                 "base")

    def __init__(self, sig: tuple[Any, ...], peer: OutPeer, rtc: RtcFilter | None) -> None:
        info = peer.info
        self.sig = sig
        #: the members' PeerInfo with a member-neutral address and router id
        self.rep = PeerInfo(_NOBODY, IPv4Address(0), info.asn, info.ibgp, info.rr_client)
        self.ctx = peer.ctx
        self.ebgp = not info.ibgp
        self.next_hop_self = peer.next_hop_self
        self.rtc = rtc
        self.fams: dict[Family, _FamilyState] = {}
        for fam in peer.families:
            addpath = fam in peer.ctx.addpath
            mode = _mode(peer.addpath_send.get(fam)) if addpath else 1
            self.fams[fam] = _FamilyState(mode, addpath)
        self.members: dict[IPAddress, _Member] = {}
        #: tag -> the members it names (cleared when membership changes)
        self._excl: dict[_Tag, tuple[_Member, ...]] = {}
        #: VPN routes reach this group through the RT index (see RtIndex; set by AdjRibOut)
        self.narrow = False
        #: the signature without the RTC filter: groups with the same one share their
        #: views of the other families (set by AdjRibOut)
        self.base: tuple[Any, ...] = sig

    def excluded(self, t: _Tag) -> tuple[_Member, ...]:
        """The members ``t`` names: computed once per tag while membership stands."""
        r = self._excl.get(t)
        if r is None:
            r = self._excl[t] = tuple(m for m in self.members.values() if t.excludes(m))
        return r

    def membership_changed(self) -> None:
        self._excl = {}


class _Member:
    __slots__ = ("peer", "group", "addr", "rid", "excluded")

    def __init__(self, peer: OutPeer, group: _Group) -> None:
        self.peer = peer
        self.group = group
        self.addr = peer.address
        #: the router id ORIGINATOR_IDs are compared with (iBGP only: RFC 4456 8)
        self.rid: IPv4Address | None = peer.info.router_id if peer.info.ibgp else None
        #: family -> how many entries of the group view split horizon keeps from this member
        self.excluded: dict[Family, int] = {}


class _Batch:
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

    def tags(self) -> set[_Tag]:
        """Every tag the batch touches."""
        out: set[TagOrNone] = set(self.wd)
        out.update(o[2] for o in self.ann)
        for a, b in self.xwd:
            out.add(a)
            out.add(b)
        out.discard(None)
        return out  # type: ignore[return-value]


def _mode(v: int | str | None) -> int:
    if v is None:
        return 1
    if v == "all":
        return 0
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    raise ValueError(f"add-path send {v!r}: expected 'all' or a path count of at least 1")


def _with_path_id(n: Nlri, pid: int) -> Nlri:
    """``n`` carrying path id ``pid`` (a copy; NLRI values are shared by the tables)."""
    if n.path_id == pid:
        return n
    c = copy.copy(n)
    c.path_id = pid
    return c


def _same_entry(a: Entry, b: Entry) -> bool:
    return a is b or ((a[1] is b[1] or a[1] == b[1]) and same_nlri(a[0], b[0]))


def _as_view(s: Stored) -> dict[int, Entry]:
    if s is None:
        return {}
    if type(s) is dict:
        return s
    return {0: s}


def _entries(s: Stored) -> Iterable[Entry]:
    if s is None:
        return ()
    if type(s) is dict:
        return s.values()
    return (s,)


def _diff(old: dict[int, Entry], new: dict[int, Entry], wd: list[Nlri], ann: dict[Okey, list[Nlri]]) -> None:
    """One member's diff of one destination (used when a member changes group)."""
    for pid, e in old.items():
        if pid not in new:
            wd.append(e[0])
    for pid, e in new.items():
        o = old.get(pid)
        if o is not None and _same_entry(o, e):
            continue
        lst = ann.get(e[1])
        if lst is None:
            ann[e[1]] = [e[0]]
        else:
            lst.append(e[0])


def _family_order(families: Iterable[Family]) -> list[Family]:
    """RTC first (so the peer's filters are in place before VPN routes), then by AFI/SAFI."""
    return sorted(families, key=lambda f: (f != RTC, f.afi, f.safi))


class AdjRibOut:
    """Adj-RIBs-Out of every established peer of one :class:`Rib`, in update groups.

    ``cluster_id`` is used when reflecting (defaults to ``router_id``).
    Route reflection is always enabled: with no client configured, its rules
    reduce to plain iBGP split horizon.
    """

    def __init__(
        self,
        rib: Rib,
        *,
        local_asn: int,
        router_id: IPv4Address,
        cluster_id: IPv4Address | None = None,
        vpn_families: frozenset[Family] = DEFAULT_VPN_FAMILIES,
    ) -> None:
        self.rib = rib
        self.local_asn = local_asn
        self.router_id = IPv4Address(router_id)
        self.cluster_id = IPv4Address(cluster_id) if cluster_id is not None else self.router_id
        self.vpn_families = frozenset(vpn_families)
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._members: dict[IPAddress, _Member] = {}
        self._filters = RtcFilters()
        #: (attrs, transform kind) -> outbound attrs
        self._out_attrs: dict[tuple[PathAttributes, tuple[Any, ...]], PathAttributes] = {}
        self._okeys: dict[Okey, Okey] = {}
        self._rts: dict[PathAttributes, tuple[bytes, ...]] = {}
        #: (source address, ORIGINATOR_ID) -> tag; never cleared (one per source and
        #: originator), so equal tags are always the same object
        self._tags: dict[tuple[IPAddress | None, IPv4Address | None], _Tag] = {}
        #: family -> key -> (source Adj-RIB-In, received path id) -> our path id
        self._pids: dict[Family, dict[bytes, dict[tuple[object, int], int]]] = {}
        #: route targets of VPN destinations and narrow groups; from the first RTC peer on
        self._rtidx: RtIndex | None = None
        #: (signature without RTC filter, family) -> the groups sharing one view of that
        #: family (not a VPN family: it does not depend on the filter); with a thousand
        #: RTC peers, RTC routes are then processed and encoded once, not per group
        self._shared: dict[tuple[tuple[Any, ...], Family], list[_Group]] = {}

    # -- peers -----------------------------------------------------------------

    def peer_up(self, peer: OutPeer) -> list[bytes]:
        """The full table of every family of ``peer``, RTC first, End-of-RIB after each."""
        if peer.address in self._members:
            self.peer_down(peer.address)
        if peer.rtc and self._rtidx is None:
            self._start_rt_index()
        group = self._group_for(peer)
        m = _Member(peer, group)
        self._join(m, group)
        out: list[bytes] = []
        for fam in _family_order(peer.families):
            self._scan(group, m, fam)
            out.extend(self._table_msgs(group, m, fam))
            out.append(end_of_rib(fam))
        return out

    def peer_down(self, address: IPAddress) -> None:
        """Forget ``address`` and everything it was sent."""
        m = self._members.pop(address, None)
        if m is None:
            return
        self._leave(m)
        self._filters.release_unused(g.rtc for g in self._groups.values() if g.rtc is not None)

    def peers(self) -> list[IPAddress]:
        return list(self._members)

    def group_of(self, address: IPAddress) -> tuple[IPAddress, ...]:
        """The members of ``address``'s update group (for tests and show commands)."""
        m = self._members.get(address)
        return () if m is None else tuple(m.group.members)

    def _signature(self, peer: OutPeer, rtc: RtcFilter | None) -> tuple[Any, ...]:
        info = peer.info
        return (
            info.ibgp,
            info.rr_client,
            None if info.ibgp else info.asn,
            peer.next_hop_self,
            peer.families,
            peer.ctx,
            frozenset(peer.addpath_send.items()),
            rtc,
        )

    def _group_for(self, peer: OutPeer, rtc: RtcFilter | None | object = _MISSING) -> _Group:
        if rtc is _MISSING:
            rtc = self._filters.get(membership_keys(self.rib, peer.address)) if peer.rtc else None
        assert rtc is None or isinstance(rtc, RtcFilter)
        sig = self._signature(peer, rtc)
        g = self._groups.get(sig)
        if g is None:
            g = self._groups[sig] = _Group(sig, peer, rtc)
            if rtc is not None:
                g.base = self._signature(peer, None)
                for fam in g.fams:
                    if fam not in self.vpn_families:
                        sharing = self._shared.setdefault((g.base, fam), [])
                        if sharing:
                            g.fams[fam] = sharing[0].fams[fam]
                        sharing.append(g)
            idx = self._rtidx
            if idx is not None and rtc is not None and idx.narrow(rtc) and all(
                    fs.mode == 1 and not fs.addpath for f, fs in g.fams.items() if f in self.vpn_families):
                g.narrow = True
                idx.add_group(g, rtc)
        return g

    def _join(self, m: _Member, g: _Group) -> None:
        m.group = g
        g.members[m.addr] = m
        g.membership_changed()
        self._members[m.addr] = m

    def _leave(self, m: _Member) -> None:
        g = m.group
        g.members.pop(m.addr, None)
        g.membership_changed()
        if not g.members:
            self._groups.pop(g.sig, None)
            for fam in g.fams:
                sharing = self._shared.get((g.base, fam))
                if sharing is not None and g in sharing:
                    sharing.remove(g)
                    if not sharing:
                        del self._shared[(g.base, fam)]
            if g.narrow and self._rtidx is not None and g.rtc is not None:
                self._rtidx.remove_group(g, g.rtc)

    # -- changes ---------------------------------------------------------------

    def on_change(self, change: RibChange) -> dict[IPAddress, list[bytes]]:
        """Messages per peer for the destinations ``change`` names."""
        fam = change.family
        out: dict[IPAddress, list[bytes]] = {}
        groups = [g for g in self._groups.values() if fam in g.fams]
        if not groups or not change.keys:
            return out
        loc = self.rib.loc_rib(fam)
        work: list[tuple[_Group, Iterable[bytes]]] = [(g, change.keys) for g in groups]
        if self._rtidx is not None and fam in self.vpn_families:
            work = self._narrowed(fam, loc, groups, change.keys)
        done: dict[int, tuple[_Batch, dict[TagOrNone, int], dict[int, list[bytes]]] | None] = {}
        for g, keys in work:
            fs = g.fams[fam]
            shared = done.get(id(fs), _MISSING)  # a view shared with a group already done
            if shared is None:
                continue
            if shared is _MISSING:
                info_of = self._info_getter(g, fam)
                b = _Batch()
                if fs.mode == 1 and not fs.addpath:
                    self._process_plain(fs, keys, loc, info_of, b)
                else:
                    for k in keys:
                        self._process_key(fs, fam, loc, k, info_of, b)
                if not b:
                    done[id(fs)] = None
                    continue
                fs.table = None
                delta = b.tally()
                fs.count(delta)
                encoded: dict[int, list[bytes]] = {}
                done[id(fs)] = (b, delta, encoded)
            else:
                b, delta, encoded = shared
            self._account_members(g, fam, delta)
            self._deliver(g, fam, b, out, encoded)
        return out

    def _start_rt_index(self) -> None:
        """The first RTC peer: index the VPN destinations by route target from now on."""
        idx = self._rtidx = RtIndex()
        for fam in self.vpn_families:
            if fam in self.rib.families():
                loc = self.rib.loc_rib(fam)
                for k, p in loc.best_paths():
                    idx.set_key(fam, k, self._route_targets(p.attrs))

    def _narrowed(self, fam: Family, loc: LocRib, groups: list[_Group],
                  keys: Iterable[bytes]) -> list[tuple[_Group, Iterable[bytes]]]:
        """Each group with the changed keys it must look at: every key for a wide
        group; for a narrow group the keys whose route targets, now or when
        last seen, its filter names (so the work follows routes x interested
        groups, not routes x groups)."""
        idx = self._rtidx
        assert idx is not None
        keys = list(keys)
        per: dict[_Group, dict[bytes, None]] = {}
        rt_groups = idx.rt_groups
        for k in keys:
            p = loc.best(k)
            rts = self._route_targets(p.attrs) if p is not None else ()
            old = idx.set_key(fam, k, rts)
            for rt in {*old, *rts}:
                for g in rt_groups.get(rt, ()):
                    per.setdefault(g, {})[k] = None  # type: ignore[arg-type]
        out: list[tuple[_Group, Iterable[bytes]]] = []
        for g in groups:
            if not g.narrow:
                out.append((g, keys))
            elif g in per:
                out.append((g, list(per[g])))
        return out

    def _account(self, g: _Group, fam: Family, delta: dict[TagOrNone, int]) -> None:
        """Entry counts of the group view and of each member's exclusions (for :meth:`sent`)."""
        g.fams[fam].count(delta)
        self._account_members(g, fam, delta)

    def _account_members(self, g: _Group, fam: Family, delta: dict[TagOrNone, int]) -> None:
        """Entry counts of each member's exclusions (the view's own are counted once)."""
        for t, d in delta.items():
            if d and t is not None:
                for m in g.excluded(t):
                    m.excluded[fam] = m.excluded.get(fam, 0) + d

    def _deliver(self, g: _Group, fam: Family, b: _Batch, out: dict[IPAddress, list[bytes]],
                 encoded: dict[int, list[bytes]] | None = None) -> None:
        """Encode batch ``b`` once for the group: shared messages, filtered copies for named members.

        Members no tag of the batch names get every withdrawal and
        announcement. A member some tag names gets the announcement buckets
        of the other tags, the withdrawal buckets of the other tags, and the
        withdrawals of routes whose replacement it may not get. Messages are
        encoded per announcement bucket, so every member's list is made of
        the same ``bytes`` objects; withdrawal lists are encoded once per
        distinct selection.
        """
        ctx = g.ctx
        touched: dict[_Member, set[_Tag]] = {}
        for t in b.tags():
            for m in g.excluded(t):
                got = touched.get(m)
                if got is None:
                    touched[m] = {t}
                else:
                    got.add(t)
        if encoded is None:  # else shared by the groups sharing this view (same context)
            encoded = {}

        def ann_msgs(okey: Okey, nlris: list[Nlri]) -> list[bytes]:
            msgs = encoded.get(id(nlris))
            if msgs is None:
                msgs = encoded[id(nlris)] = pack_announcements(fam, okey[0], okey[1], nlris, ctx)
            return msgs

        if len(touched) < len(g.members):
            wd = [n for lst in b.wd.values() for n in lst]
            shared = pack_withdrawals(fam, wd, ctx) if wd else []
            for okey, nlris in b.ann.items():
                shared.extend(ann_msgs(okey, nlris))
            if shared:
                for a, m in g.members.items():
                    if m not in touched:
                        out[a] = list(shared)
        by_selection: dict[tuple[tuple[int, ...], ...], list[bytes]] = {}
        for m, ex in touched.items():
            wd_keep = tuple(t for t in b.wd if t not in ex)
            x_keep = tuple(tt for tt in b.xwd if tt[1] in ex and tt[0] not in ex)
            a_keep = tuple(o for o in b.ann if o[2] not in ex)
            sel = (tuple(map(id, wd_keep)), tuple(map(id, x_keep)), tuple(map(id, a_keep)))
            msgs = by_selection.get(sel)
            if msgs is None:
                wl = [n for t in wd_keep for n in b.wd[t]]
                wl.extend(n for tt in x_keep for n in b.xwd[tt])
                msgs = pack_withdrawals(fam, wl, ctx) if wl else []
                for o in a_keep:
                    msgs.extend(ann_msgs(o, b.ann[o]))
                by_selection[sel] = msgs
            if msgs:
                out[m.addr] = list(msgs)

    def rtc_changed(self, address: IPAddress) -> list[bytes]:
        """Re-filter VPN routes for ``address`` after its RTC routes changed.

        Newly allowed routes are announced, no longer allowed ones withdrawn.
        The peer moves to the update group of its new membership.
        """
        m = self._members.get(address)
        if m is None or not m.peer.rtc:
            return []
        filt = self._filters.get(membership_keys(self.rib, address))
        old = m.group
        if filt is old.rtc:
            return []
        vpn = [f for f in _family_order(m.peer.families) if f in self.vpn_families]
        before = {f: self._member_view(old, m, f) for f in vpn}
        self._leave(m)
        new = self._group_for(m.peer, filt)
        fresh = not new.members
        if fresh:
            for f, fs in new.fams.items():
                if f not in self.vpn_families and fs is not old.fams[f]:  # same policy: same view
                    fs.copy_from(old.fams[f], share=not old.members)
        self._join(m, new)
        self._filters.release_unused(g.rtc for g in self._groups.values() if g.rtc is not None)
        out: list[bytes] = []
        for f in vpn:
            self._scan(new, m, f)
            after = self._member_view(new, m, f)
            wd: list[Nlri] = []
            ann: dict[Okey, list[Nlri]] = {}
            for k, s in before[f].items():
                if k not in after:
                    wd.extend(e[0] for e in _entries(s))
            for k, s in after.items():
                _diff(_as_view(before[f].get(k)), _as_view(s), wd, ann)
            out.extend(self._encode(f, new.ctx, wd, ann))
        return out

    def refresh(self, address: IPAddress, family: Family) -> list[bytes]:
        """ROUTE-REFRESH: ``family``'s table for ``address`` again, then End-of-RIB."""
        m = self._members.get(address)
        if m is None or family not in m.group.fams:
            return []
        return [*self._table_msgs(m.group, m, family), end_of_rib(family)]

    # -- looking glass -----------------------------------------------------------

    def sent(self, address: IPAddress, family: Family) -> int:
        """How many routes (paths, with add-path) ``address`` currently holds from us in ``family``.

        O(1): the group view's entry count minus the member's split-horizon count.
        """
        m = self._members.get(address)
        if m is None:
            return 0
        fs = m.group.fams.get(family)
        if fs is None:
            return 0
        return fs.total - m.excluded.get(family, 0)

    def advertised(
        self, address: IPAddress, family: Family
    ) -> Iterator[tuple[Nlri, PathAttributes, IPAddress]]:
        """(NLRI as sent, attributes as sent, next hop as sent) of every route ``address`` holds."""
        m = self._members.get(address)
        if m is None or family not in m.group.fams:
            return
        for s in self._member_view(m.group, m, family).values():
            for n, (attrs, nh, _) in _entries(s):
                yield n, attrs, nh

    def _member_view(self, g: _Group, m: _Member, fam: Family) -> dict[bytes, Stored]:
        """key -> what ``m`` holds: the group view minus the entries split horizon keeps from it."""
        fs = g.fams[fam]
        ex = {t for t in fs.tags if t.excludes(m)}
        if not ex:
            return dict(fs.items())
        view: dict[bytes, Stored] = {}
        if not fs.addpath:
            for k, (n, okey) in fs.items():
                if okey[2] not in ex:
                    view[k] = (n, okey)
            return view
        for k, s in fs.items():
            kept = {pid: e for pid, e in s.items() if e[1][2] not in ex}
            if kept:
                view[k] = kept
        return view

    # -- per-source outbound facts ---------------------------------------------------

    def _info_getter(self, g: _Group, fam: Family) -> Callable[[PathSource], Info]:
        """A function source -> :data:`Info` for ``g`` in ``fam``, cached for one batch.

        Sources are shared by every route of one UPDATE, so a batch computes
        this a few thousand times for a million routes.
        """
        cache: dict[PathSource, Info] = {}
        vpn_filter = g.rtc if fam in self.vpn_families else None
        v4_unicast = fam == IPV4_UNICAST
        compute = self._source_info

        def info_of(src: PathSource) -> Info:
            r = cache.get(src, _MISSING)
            if r is _MISSING:
                r = cache[src] = compute(g, src, vpn_filter, v4_unicast)
            return r

        return info_of

    def _source_info(self, g: _Group, src: PathSource, vpn_filter: RtcFilter | None, v4_unicast: bool) -> Info:
        peer = src.peer
        attrs = src.attrs
        rep = g.rep
        if not may_advertise(peer, rep, route_reflector=True):
            return None
        if g.ebgp and A.as_path_contains(attrs, rep.asn):
            return None  # the peer's AS is on the path: it would drop the route as a loop
        if vpn_filter is not None and not vpn_filter.matches(self._route_targets(attrs)):
            return None
        if g.ebgp:
            nh = g.next_hop_self if g.next_hop_self is not None else src.next_hop
        else:
            nh = src.next_hop if src.next_hop is not None else g.next_hop_self
        if nh is None:
            return None
        out = self._transform(attrs, peer, g, nh if v4_unicast and nh.version == 4 else None)
        okey = (out, nh, self._tag(peer, None if g.ebgp else A.originator_id(attrs)))
        okey = self._okeys.setdefault(okey, okey)
        if len(self._okeys) > _CACHE_MAX:
            self._okeys.clear()
        return okey

    def _tag(self, peer: PeerInfo, oid: IPv4Address | None) -> _Tag | None:
        """The interned split-horizon tag of paths from ``peer`` with ORIGINATOR_ID ``oid``."""
        addr = None if peer.local else peer.address
        if addr is None and oid is None:
            return None
        k = (addr, oid)
        t = self._tags.get(k)
        if t is None:
            t = self._tags[k] = _Tag(addr, oid)
        return t

    def _route_targets(self, attrs: PathAttributes) -> tuple[bytes, ...]:
        rts = self._rts.get(attrs)
        if rts is None:
            if len(self._rts) > _CACHE_MAX:
                self._rts.clear()
            rts = self._rts[attrs] = A.route_target_octets(attrs)
        return rts

    def _transform(
        self, attrs: PathAttributes, source: PeerInfo, g: _Group, v4_next_hop: IPAddress | None
    ) -> PathAttributes:
        """Outbound attributes of ``attrs`` learned from ``source`` for group ``g``.

        * to eBGP: local AS prepended; LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST
          dropped; MED kept only for routes originated in our AS;
        * reflected (iBGP to iBGP): ORIGINATOR_ID (the source's router id if
          absent) and our cluster id prepended to CLUSTER_LIST;
        * local or eBGP-learned to iBGP: LOCAL_PREF 100 unless present;
        * unrecognised transitive attributes of learned routes get Partial;
        * NEXT_HOP is the outbound next hop for IPv4 unicast, absent otherwise.
        """
        if g.ebgp:
            kind: tuple[Any, ...] = ("ebgp", source.local, v4_next_hop)
        elif is_reflection(source, g.rep):
            kind = ("reflect", source.router_id, v4_next_hop)
        else:
            kind = ("ibgp", source.local, v4_next_hop)
        key = (attrs, kind)
        out = self._out_attrs.get(key)
        if out is not None:
            return out
        if g.ebgp:
            out = A.for_external_peer(attrs, self.local_asn, keep_med=A.is_originated_in_as(attrs))
        elif kind[0] == "reflect":
            out = outbound_reflection_attributes(attrs, source, g.rep, self.cluster_id)
        else:
            out = A.with_default_local_pref(attrs)
        if not source.local:
            out = A.with_partial_unknowns(out)
        out = A.with_next_hop(out, v4_next_hop)  # type: ignore[arg-type]
        if len(self._out_attrs) > _CACHE_MAX:
            self._out_attrs.clear()
        self._out_attrs[key] = out
        return out

    # -- what a destination offers a group ---------------------------------------------

    def _offers(
        self, fs: _FamilyState, fam: Family, loc: LocRib, key: bytes, info_of: Callable[[PathSource], Info]
    ) -> dict[int, Entry]:
        """The group view of ``key``: path id (0 without add-path) -> Entry."""
        chosen: list[tuple[Path, Okey]] = []
        if fs.mode == 1:
            best = loc.best(key)
            if best is not None:
                okey = info_of(best.source)
                if okey is not None:
                    chosen.append((best, okey))
        else:
            limit = fs.mode
            for p in _ranked_paths(loc, key):
                okey = info_of(p.source)
                if okey is not None:
                    chosen.append((p, okey))
                    if limit and len(chosen) >= limit:
                        break
        if not fs.addpath:
            if not chosen:
                return {}
            p, okey = chosen[0]
            return {0: (_with_path_id(p.nlri, 0), okey)}
        ids = self._path_ids(fam, loc, key)  # even with nothing chosen: frees the ids of gone paths
        out: dict[int, Entry] = {}
        for p, okey in chosen:
            pid = ids[(_origin(p.source), p.nlri.path_id)]
            out[pid] = (_with_path_id(p.nlri, pid), okey)
        return out

    def _path_ids(self, fam: Family, loc: LocRib, key: bytes) -> dict[tuple[object, int], int]:
        """Our path ids for ``key``'s paths: stable per (source Adj-RIB-In, received path id).

        Ids of paths that are gone are freed and the smallest free id is
        given to a new path; shared by all groups, so every peer sees one
        numbering. Sources are told apart by their Adj-RIB-In object (one
        per peer and family, kept across a graceful restart), which hashes
        by identity.
        """
        table = self._pids.setdefault(fam, {})
        paths = loc.paths(key)
        if not paths:
            table.pop(key, None)
            return {}
        present = {(_origin(p.source), p.nlri.path_id): None for p in paths}
        old = table.get(key, {})
        ids = {s: i for s, i in old.items() if s in present}
        used = set(ids.values())
        nxt = 1
        for s in present:
            if s not in ids:
                while nxt in used:
                    nxt += 1
                ids[s] = nxt
                used.add(nxt)
        table[key] = ids
        return ids

    # -- computing and diffing -------------------------------------------------------

    @staticmethod
    def _process_plain(
        fs: _FamilyState,
        keys: Iterable[bytes],
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        b: _Batch,
    ) -> None:
        """The hot loop: best path only, no path ids, every member's split horizon included.

        Reads the Loc-RIB's light entry forms directly (a sole source, or
        ranked sources best first: the NLRI is in the source's Adj-RIB-In)
        so that a million-route change makes no Path object. Per key, one
        dict lookup and at most two stores; consecutive keys mostly share a
        source (one UPDATE), so the source's Okey and its announcement list
        are looked up once per run of keys.
        """
        sent = fs.sent
        okeys = fs.okeys
        dests = loc.dests
        ann = b.ann
        wd = b.wd
        delta = b.delta
        # the change's keys need not come in UPDATE order (the engine may collect
        # them in a set): announcement lists are found by the Okey's identity
        # (an int hash) rather than by its value (hashing addresses in Python)
        lists: dict[int, list[Nlri]] = {}
        last_src: Any = _MISSING
        okey: Info = None
        last_okey: Any = _MISSING
        lst: list[Nlri] = []
        added = 0  # new entries under last_okey not yet in delta
        last_tag: Any = _MISSING
        wlst: list[Nlri] = []
        d: Any
        for k in keys:
            # _best(), inlined: this loop runs once per changed route
            d = dests.get(k)
            t = type(d)
            if t is PathSource:
                src = d
                n = d.adj.routes[k]
            elif t is tuple:
                src = d[0]
                n = src.adj.routes[k]
            elif d is None:
                src = None
            else:
                p = loc.best(k)
                if p is None:
                    src = None
                else:
                    src = p.source
                    n = p.nlri
            if src is not last_src:
                last_src = src
                okey = None if src is None else info_of(src)
            old = sent.get(k)
            if okey is None:
                if old is not None:
                    del sent[k]
                    tag = okeys.pop(k)[2]
                    if tag is not last_tag:
                        last_tag = tag
                        got = wd.get(tag)
                        if got is None:
                            got = wd[tag] = []
                        wlst = got
                    wlst.append(old)
                continue
            if old is not None:
                o = okeys[k]
                if (old is n or same_nlri(old, n)) and (o is okey or o == okey):
                    continue
                if o[2] is not okey[2]:
                    b.replace(o[2], okey[2], old)
            if n.path_id:
                n = _with_path_id(n, 0)
            sent[k] = n
            okeys[k] = okey
            if okey is not last_okey:
                if added:
                    lt = last_okey[2]
                    delta[lt] = delta.get(lt, 0) + added
                    added = 0
                last_okey = okey
                got = lists.get(id(okey))
                if got is None:
                    got = lists[id(okey)] = ann.setdefault(okey, [])
                lst = got
            if old is None:
                added += 1
            lst.append(n)
        if added:
            lt = last_okey[2]
            delta[lt] = delta.get(lt, 0) + added

    def _process_key(
        self,
        fs: _FamilyState,
        fam: Family,
        loc: LocRib,
        k: bytes,
        info_of: Callable[[PathSource], Info],
        b: _Batch,
    ) -> None:
        """One destination in the general way (add-path): diff the path-id views."""
        new = self._offers(fs, fam, loc, k, info_of)
        old = _as_view(fs.get(k))
        if not new and not old:
            return
        fs.put(k, (new if fs.addpath else new[0]) if new else None)
        delta = b.delta
        for pid, e in old.items():
            if pid not in new:
                b.withdraw(e[1][2], e[0])
        for pid, e in new.items():
            o = old.get(pid)
            t = e[1][2]
            if o is None:
                delta[t] = delta.get(t, 0) + 1
            elif _same_entry(o, e):
                continue
            elif o[1][2] is not t:
                b.replace(o[1][2], t, o[0])
            b.announce(e[1], e[0])

    def _scan(self, g: _Group, m: _Member, fam: Family) -> None:
        """Make ``g``'s view of ``fam`` ready for member ``m``, which just joined.

        A group whose only member is ``m`` has its view rebuilt from the
        Loc-RIB; otherwise the group view stands (it follows every change).
        Either way ``m``'s view is derived from it, so all that is computed
        for ``m`` is its split-horizon count (O(tags)).
        """
        fs = g.fams[fam]
        sharing = self._shared.get((g.base, fam), ())
        if len(g.members) == 1 and sum(len(o.members) for o in sharing if o is not g) == 0:
            fs.reset()
            if fam in self.rib.families():
                loc = self.rib.loc_rib(fam)
                info_of = self._info_getter(g, fam)
                b = _Batch()
                if g.narrow and fam in self.vpn_families and self._rtidx is not None and g.rtc is not None:
                    # only the destinations carrying the filter's route targets can pass it
                    self._process_plain(fs, self._rtidx.keys_for(fam, g.rtc.exact), loc, info_of, b)
                elif fs.mode == 1 and not fs.addpath:
                    self._process_plain(fs, loc.dests, loc, info_of, b)  # reads only: no copy
                else:
                    for k in list(loc.dests):
                        self._process_key(fs, fam, loc, k, info_of, b)
                fs.count(b.tally())
        m.excluded[fam] = fs.excluded_count(m)

    # -- encoding --------------------------------------------------------------------

    def _table_msgs(self, g: _Group, m: _Member, fam: Family) -> list[bytes]:
        """The whole of ``m``'s view of ``fam`` as UPDATEs (no End-of-RIB).

        The group view is encoded once per Okey and kept until it changes;
        a member gets the messages of every Okey whose tag does not name it.
        """
        fs = g.fams[fam]
        table = fs.table
        if table is None:
            ann: dict[Okey, list[Nlri]] = {}
            lists: dict[int, list[Nlri]] = {}  # by the Okey's identity: see _process_plain
            last: Any = _MISSING
            lst: list[Nlri] = []
            if not fs.addpath:
                okeys = fs.okeys
                for k, n in fs.sent.items():
                    okey = okeys[k]
                    if okey is not last:
                        last = okey
                        got = lists.get(id(okey))
                        if got is None:
                            got = lists[id(okey)] = ann.setdefault(okey, [])
                        lst = got
                    lst.append(n)
            else:
                for st in fs.sent.values():
                    for n, okey in st.values():
                        ann.setdefault(okey, []).append(n)
            table = fs.table = {
                okey: pack_announcements(fam, okey[0], okey[1], nlris, g.ctx) for okey, nlris in ann.items()
            }
        ex = {t for t in fs.tags if t.excludes(m)}
        return [msg for okey, msgs in table.items() if okey[2] not in ex for msg in msgs]

    @staticmethod
    def _encode(fam: Family, ctx: CodecContext, wd: list[Nlri], ann: dict[Okey, list[Nlri]]) -> list[bytes]:
        """Withdrawals first, then one run of packed UPDATEs per Okey."""
        out = pack_withdrawals(fam, wd, ctx) if wd else []
        for (attrs, nh, _), nlris in ann.items():
            out.extend(pack_announcements(fam, attrs, nh, nlris, ctx))
        return out


def _origin(src: PathSource) -> object:
    """What tells path sources apart for path ids: the Adj-RIB-In (identity-hashed), else the peer address."""
    return src.adj if src.adj is not None else src.peer.address


def _ranked_paths(loc: LocRib, key: bytes) -> list[Path]:
    """``key``'s eligible paths, best first, the rest in decision order."""
    paths = loc.paths(key)
    if not paths:
        return []
    best = loc.best(key)
    rank = loc.rank
    rest = sorted(
        (r.key, p.nlri.path_id, i, p)
        for i, p in enumerate(paths)
        if (r := rank(p.source)) is not None and p != best
    )
    head = [best] if best is not None else []
    return head + [t[3] for t in rest]
