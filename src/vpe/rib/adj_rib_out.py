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

**Per-member exceptions.** Split horizon (never back to the peer a path came
from, nor to the router named in its ORIGINATOR_ID) depends on the member,
not the group. Such destinations are rare (only paths learned from a member
itself) and are handled apart: the member's actual state is kept as an
*override* for that destination, the destination leaves the shared
messages, and members are sent their own diff for it (encoded once per
distinct diff). Without add-path, a member excluded from the best path gets
nothing for that destination (BGP advertises its best path or nothing);
with add-path it gets the other paths.

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
from .rtc import RtcFilter, RtcFilters, membership_keys

IPAddress = IPv4Address | IPv6Address

#: Families whose routes carry Route Targets and are subject to RTC (RFC 4684).
DEFAULT_VPN_FAMILIES: frozenset[Family] = frozenset({VPNV4, VPNV6, IPV4_MCAST_VPN, IPV6_MCAST_VPN})

#: (outbound attributes, outbound next hop): interned, shared by every route
#: sent with them, and the unit UPDATEs are packed by.
Okey = tuple[PathAttributes, IPAddress]
#: one advertised route: the NLRI as sent (our path id with add-path) and its Okey
Entry = tuple[Nlri, Okey]
#: what a destination holds: one Entry (plain families), path id -> Entry
#: (add-path families); None in a member override means "nothing".
Stored = Any
#: (our path id, entry, addresses of members excluded from it)
Offer = tuple[int, Entry, frozenset[IPAddress]]
#: per-source outbound facts of one group: (Okey, excluded members), or None: not sent
Info = tuple[Okey, frozenset[IPAddress]] | None

_NONE: frozenset[IPAddress] = frozenset()
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
    """

    __slots__ = ("sent", "okeys", "overridden", "mode", "addpath", "table")

    def __init__(self, mode: int, addpath: bool) -> None:
        self.sent: dict[bytes, Any] = {}
        self.okeys: dict[bytes, Okey] = {}
        #: keys some member holds an override for
        self.overridden: set[bytes] = set()
        #: 1 best path, 0 all paths, N best N
        self.mode = mode
        #: path ids on the wire
        self.addpath = addpath
        #: the encoded group view, reused by members joining without overrides
        self.table: list[bytes] | None = None

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

    def reset(self) -> None:
        self.sent = {}
        self.okeys = {}
        self.overridden = set()
        self.table = None

    def copy_from(self, other: _FamilyState, share: bool) -> None:
        """Take ``other``'s group view (shared when ``other`` is discarded)."""
        self.sent = other.sent if share else dict(other.sent)
        self.okeys = other.okeys if share else dict(other.okeys)
        self.table = other.table


class _Group:
    """An update group: members sharing one outbound policy."""

    __slots__ = (
        "sig", "rep", "ctx", "ebgp", "next_hop_self", "rtc", "fams", "members", "addrs", "rids",
    )

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
        self.addrs: frozenset[IPAddress] = frozenset()
        self.rids: frozenset[IPv4Address] = frozenset()

    def update_members(self) -> None:
        self.addrs = frozenset(self.members)
        self.rids = frozenset(m.peer.info.router_id for m in self.members.values()) if not self.ebgp else frozenset()


class _Member:
    __slots__ = ("peer", "group", "over")

    def __init__(self, peer: OutPeer, group: _Group) -> None:
        self.peer = peer
        self.group = group
        #: family -> key -> what this member holds where it differs from the group view
        self.over: dict[Family, dict[bytes, Stored]] = {f: {} for f in peer.families}


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


def _same_stored(a: Stored, b: Stored) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is dict:
        if type(b) is not dict or a.keys() != b.keys():
            return False
        return all(_same_entry(e, b[p]) for p, e in a.items())
    return type(b) is not dict and _same_entry(a, b)


def _entries(s: Stored) -> Iterable[Entry]:
    if s is None:
        return ()
    if type(s) is dict:
        return s.values()
    return (s,)


def _diff(old: dict[int, Entry], new: dict[int, Entry], wd: list[Nlri], ann: dict[Okey, list[Nlri]]) -> None:
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
        #: family -> key -> (source peer address, received path id) -> our path id
        self._pids: dict[Family, dict[bytes, dict[tuple[IPAddress, int], int]]] = {}

    # -- peers -----------------------------------------------------------------

    def peer_up(self, peer: OutPeer) -> list[bytes]:
        """The full table of every family of ``peer``, RTC first, End-of-RIB after each."""
        if peer.address in self._members:
            self.peer_down(peer.address)
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
        return g

    def _join(self, m: _Member, g: _Group) -> None:
        m.group = g
        g.members[m.peer.address] = m
        g.update_members()
        self._members[m.peer.address] = m
        for fam, over in m.over.items():
            if over:
                g.fams[fam].overridden.update(over)

    def _leave(self, m: _Member) -> None:
        g = m.group
        g.members.pop(m.peer.address, None)
        if not g.members:
            self._groups.pop(g.sig, None)
            return
        g.update_members()
        for fam, over in m.over.items():
            if over:
                fs = g.fams[fam]
                fs.overridden = {k for o in g.members.values() for k in o.over.get(fam, ())}

    # -- changes ---------------------------------------------------------------

    def on_change(self, change: RibChange) -> dict[IPAddress, list[bytes]]:
        """Messages per peer for the destinations ``change`` names."""
        fam = change.family
        out: dict[IPAddress, list[bytes]] = {}
        groups = [g for g in self._groups.values() if fam in g.fams]
        if not groups or not change.keys:
            return out
        loc = self.rib.loc_rib(fam)
        for g in groups:
            shared, own = self._process(g, fam, change.keys, loc)
            for a in g.members:
                mine = own.get(a)
                if shared or mine:
                    out[a] = [*shared, *mine] if mine else list(shared)
        return out

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
        for f in vpn:
            m.over[f] = {}  # recomputed against the new group by _scan below
        new = self._group_for(m.peer, filt)
        fresh = not new.members
        if fresh:
            for f, fs in new.fams.items():
                if f not in self.vpn_families:  # same policy as before: same group view
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
        """How many routes ``address`` currently holds from us in ``family``."""
        m = self._members.get(address)
        if m is None or family not in m.group.fams:
            return 0
        fs = m.group.fams[family]
        over = m.over.get(family, {})
        if not fs.addpath:
            n = len(fs.sent)
            for k, s in over.items():
                n += (s is not None) - (k in fs.sent)
            return n
        return sum(len(_as_view(s)) for s in self._member_view(m.group, m, family).values())

    def advertised(
        self, address: IPAddress, family: Family
    ) -> Iterator[tuple[Nlri, PathAttributes, IPAddress]]:
        """(NLRI as sent, attributes as sent, next hop as sent) of every route ``address`` holds."""
        m = self._members.get(address)
        if m is None or family not in m.group.fams:
            return
        for s in self._member_view(m.group, m, family).values():
            for n, (attrs, nh) in _entries(s):
                yield n, attrs, nh

    def _member_view(self, g: _Group, m: _Member, fam: Family) -> dict[bytes, Stored]:
        fs = g.fams[fam]
        over = m.over.get(fam)
        view = dict(fs.items())
        if not over:
            return view
        for k, s in over.items():
            if s is None:
                view.pop(k, None)
            else:
                view[k] = s
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
        okey = (out, nh)
        okey = self._okeys.setdefault(okey, okey)
        if len(self._okeys) > _CACHE_MAX:
            self._okeys.clear()
        excluded = _NONE
        oid = A.originator_id(attrs)
        if (not peer.local and peer.address in g.addrs) or (oid is not None and oid in g.rids):
            excluded = frozenset(
                a
                for a, m in g.members.items()
                if not may_advertise(peer, m.peer.info, route_reflector=True, originator_id=oid)
            )
        return okey, excluded

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
    ) -> list[Offer]:
        chosen: list[tuple[Path, tuple[Okey, frozenset[IPAddress]]]] = []
        if fs.mode == 1:
            best = loc.best(key)
            if best is not None:
                info = info_of(best.source)
                if info is not None:
                    chosen.append((best, info))
        else:
            limit = fs.mode
            for p in _ranked_paths(loc, key):
                info = info_of(p.source)
                if info is not None:
                    chosen.append((p, info))
                    if limit and len(chosen) >= limit:
                        break
        if not fs.addpath:
            if not chosen:
                return []
            p, (okey, exc) = chosen[0]
            return [(0, (_with_path_id(p.nlri, 0), okey), exc)]
        ids = self._path_ids(fam, loc, key)
        out: list[Offer] = []
        for p, (okey, exc) in chosen:
            pid = ids[(p.source.peer.address, p.nlri.path_id)]
            out.append((pid, (_with_path_id(p.nlri, pid), okey), exc))
        return out

    def _path_ids(self, fam: Family, loc: LocRib, key: bytes) -> dict[tuple[IPAddress, int], int]:
        """Our path ids for ``key``'s paths: stable per (source peer, received path id).

        Ids of paths that are gone are freed and the smallest free id is
        given to a new path; shared by all groups, so every peer sees one
        numbering.
        """
        table = self._pids.setdefault(fam, {})
        paths = loc.paths(key)
        if not paths:
            table.pop(key, None)
            return {}
        present = [(p.source.peer.address, p.nlri.path_id) for p in paths]
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

    def _process(
        self, g: _Group, fam: Family, keys: Iterable[bytes], loc: LocRib
    ) -> tuple[list[bytes], dict[IPAddress, list[bytes]]]:
        """One change batch for one group: (messages for every member, extra per member)."""
        fs = g.fams[fam]
        info_of = self._info_getter(g, fam)
        wd: list[Nlri] = []
        ann: dict[Okey, list[Nlri]] = {}
        special: list[bytes]
        if fs.mode == 1 and not fs.addpath:
            special = self._process_plain(fs, keys, loc, info_of, wd, ann)
        else:
            special = list(keys)
        changes: dict[IPAddress, tuple[list[Nlri], dict[Okey, list[Nlri]]]] = {}
        for k in special:
            self._process_key(g, fs, fam, loc, k, info_of, wd, ann, changes)
        if wd or ann or special:
            fs.table = None
        shared = self._encode(fam, g.ctx, wd, ann)
        own: dict[IPAddress, list[bytes]] = {}
        encoded: dict[tuple[Any, ...], list[bytes]] = {}
        for a, (mwd, mann) in changes.items():
            if not mwd and not mann:
                continue
            sig = (tuple(map(id, mwd)), tuple((id(o), tuple(map(id, ns))) for o, ns in mann.items()))
            msgs = encoded.get(sig)
            if msgs is None:
                msgs = encoded[sig] = self._encode(fam, g.ctx, mwd, mann)
            own[a] = msgs
        return shared, own

    def _process_plain(
        self,
        fs: _FamilyState,
        keys: Iterable[bytes],
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        wd: list[Nlri],
        ann: dict[Okey, list[Nlri]],
    ) -> list[bytes]:
        """The hot loop: best path only, no path ids. Returns the keys needing per-member care.

        Reads the Loc-RIB's light entry forms directly (a sole source, or
        ranked sources best first: the NLRI is in the source's Adj-RIB-In)
        so that a million-route change makes no Path object.
        """
        sent = fs.sent
        okeys = fs.okeys
        over = fs.overridden
        dests = loc.dests
        special: list[bytes] = []
        # consecutive routes mostly share a source (one UPDATE): remember the last
        last_src: Any = _MISSING
        info: Info = None
        last_okey: Any = _MISSING
        lst: list[Nlri] = []
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
                info = None if src is None else info_of(src)
            if (info is not None and info[1]) or (over and k in over):
                special.append(k)
                continue
            old = sent.get(k)
            if info is None:
                if old is not None:
                    del sent[k]
                    del okeys[k]
                    wd.append(old)
                continue
            okey = info[0]
            if old is not None and (old is n or same_nlri(old, n)):
                o = okeys[k]
                if o is okey or o == okey:
                    continue
            if n.path_id:
                n = _with_path_id(n, 0)
            sent[k] = n
            okeys[k] = okey
            if okey is not last_okey:
                last_okey = okey
                got = ann.get(okey)
                if got is None:
                    got = ann[okey] = []
                lst = got
            lst.append(n)
        return special

    def _process_key(
        self,
        g: _Group,
        fs: _FamilyState,
        fam: Family,
        loc: LocRib,
        k: bytes,
        info_of: Callable[[PathSource], Info],
        wd: list[Nlri],
        ann: dict[Okey, list[Nlri]],
        changes: dict[IPAddress, tuple[list[Nlri], dict[Okey, list[Nlri]]]],
    ) -> None:
        """One destination in the general way: add-path, or a member-specific view."""
        offers = self._offers(fs, fam, loc, k, info_of)
        new_g = {pid: e for pid, e, _ in offers}
        old_g = _as_view(fs.get(k))
        fs.put(k, (new_g if fs.addpath else new_g[0]) if new_g else None)
        if not any(exc for _, _, exc in offers) and k not in fs.overridden:
            _diff(old_g, new_g, wd, ann)
            return
        overridden = False
        for a, m in g.members.items():
            over = m.over[fam]
            old_m = _as_view(over[k]) if k in over else old_g
            new_m = {pid: e for pid, e, exc in offers if a not in exc}
            if len(new_m) == len(new_g):
                over.pop(k, None)
            else:
                over[k] = (new_m if fs.addpath else new_m[0]) if new_m else None
                overridden = True
            c = changes.get(a)
            if c is None:
                c = changes[a] = ([], {})
            _diff(old_m, new_m, c[0], c[1])
        if overridden:
            fs.overridden.add(k)
        else:
            fs.overridden.discard(k)

    def _scan(self, g: _Group, m: _Member, fam: Family) -> None:
        """Compute member ``m``'s whole view of ``fam`` (it just joined ``g``).

        A group whose only member is ``m`` has its view rebuilt from the
        Loc-RIB; otherwise the group view stands (it follows every change)
        and only ``m``'s overrides, the destinations where split horizon
        takes something away from it, are looked for.
        """
        fs = g.fams[fam]
        build = len(g.members) == 1
        over: dict[bytes, Stored] = {}
        m.over[fam] = over
        if build:
            fs.reset()
        if fam not in self.rib.families():
            return
        loc = self.rib.loc_rib(fam)
        info_of = self._info_getter(g, fam)
        if fs.mode == 1 and not fs.addpath:
            self._scan_plain(fs, loc, info_of, m.peer.address, build, over)
        else:
            a = m.peer.address
            for k in list(loc.dests):
                offers = self._offers(fs, fam, loc, k, info_of)
                vg = {pid: e for pid, e, _ in offers}
                vm = {pid: e for pid, e, exc in offers if a not in exc}
                new_g: Stored = (vg if fs.addpath else vg[0]) if vg else None
                new_m: Stored = (vm if fs.addpath else vm[0]) if vm else None
                if build:
                    fs.put(k, new_g)
                    group_s = new_g
                else:
                    group_s = fs.get(k)
                if not _same_stored(new_m, group_s):
                    over[k] = new_m
        if over:
            fs.overridden.update(over)

    @staticmethod
    def _scan_plain(
        fs: _FamilyState,
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        a: IPAddress,
        build: bool,
        over: dict[bytes, Stored],
    ) -> None:
        """:meth:`_scan` for best-path-only families: the loop of :meth:`_process_plain`."""
        sent = fs.sent
        okeys = fs.okeys
        last_src: Any = _MISSING
        info: Info = None
        d: Any
        for k, d in loc.dests.items():
            t = type(d)
            if t is PathSource:
                src = d
                n = d.adj.routes[k]
            elif t is tuple:
                src = d[0]
                n = src.adj.routes[k]
            else:
                p = loc.best(k)
                if p is None:
                    continue
                src = p.source
                n = p.nlri
            if src is not last_src:
                last_src = src
                info = info_of(src)
            if info is None:
                continue
            if build:
                if n.path_id:
                    n = _with_path_id(n, 0)
                sent[k] = n
                okeys[k] = info[0]
            if info[1] and a in info[1]:
                over[k] = None

    # -- encoding --------------------------------------------------------------------

    def _table_msgs(self, g: _Group, m: _Member, fam: Family) -> list[bytes]:
        """The whole of ``m``'s view of ``fam`` as UPDATEs (no End-of-RIB)."""
        fs = g.fams[fam]
        over = m.over.get(fam)
        if not over and fs.table is not None:
            return list(fs.table)
        ann: dict[Okey, list[Nlri]] = {}
        last: Any = _MISSING
        lst: list[Nlri] = []
        if not fs.addpath:
            okeys = fs.okeys
            for k, n in fs.sent.items():
                if over and k in over:
                    continue  # only ever None: a member's view is the group's minus exclusions
                okey = okeys[k]
                if okey is not last:
                    last = okey
                    got = ann.get(okey)
                    if got is None:
                        got = ann[okey] = []
                    lst = got
                lst.append(n)
        else:
            for k, st in fs.items():
                if over and k in over:
                    st = over[k]
                for n, okey in _entries(st):
                    ann.setdefault(okey, []).append(n)
        msgs = self._encode(fam, g.ctx, [], ann)
        if not over:
            fs.table = msgs
        return list(msgs)

    @staticmethod
    def _encode(fam: Family, ctx: CodecContext, wd: list[Nlri], ann: dict[Okey, list[Nlri]]) -> list[bytes]:
        """Withdrawals first, then one run of packed UPDATEs per (attributes, next hop)."""
        out = pack_withdrawals(fam, wd, ctx) if wd else []
        for (attrs, nh), nlris in ann.items():
            out.extend(pack_announcements(fam, attrs, nh, nlris, ctx))
        return out


def _best(loc: LocRib, key: bytes) -> tuple[PathSource, Nlri] | None:
    """(source, NLRI) of ``key``'s best path without making a Path object.

    The Loc-RIB keeps a destination with one path (or ranked sources, best
    first) as bare sources whose NLRI is in the source's Adj-RIB-In under
    the same key; anything else is read through :meth:`LocRib.best`.
    """
    d: Any = loc.dests.get(key)
    t = type(d)
    if t is PathSource:
        return d, d.adj.routes[key]
    if t is tuple:
        s = d[0]
        return s, s.adj.routes[key]
    if d is None:
        return None
    p = loc.best(key)
    return None if p is None else (p.source, p.nlri)


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
