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
ORIGINATOR_ID. Every advertised entry therefore carries a :class:`Tag`
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

**Outbound attributes.** First the standard rewrites
(:mod:`vpe.rib.outbound`: eBGP prepend, reflection attributes, default
LOCAL_PREF, Partial bit, NEXT_HOP), then the peer's export policy
(:attr:`OutPeer.export_policy`, :mod:`vpe.policy`). Both are computed once
per path source (attribute set, next hop) and group, and cached: attribute
sets are interned and shared by many routes. A policy that matches on the
route itself (prefix, RD) or relabels is evaluated per route, only in the
groups that have one (which then take the general, per-destination path
instead of the hot loop). The policy is part of the group signature, so
peers with different policies are in different groups;
:meth:`AdjRibOut.set_export_policy` moves a peer and sends the difference.

**Relabel.** When a peer's export verdict says relabel (Inter-AS option B,
re-advertisement with next hop self), the route is sent with a local label
from :attr:`AdjRibOut.relabeler` (a :class:`~vpe.policy.relabel.Relabeler`,
which also yields the label-swap entries for the FIB) and our next hop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import (
    IPV4_MCAST_VPN,
    IPV4_UNICAST,
    IPV6_MCAST_VPN,
    VPNV4,
    VPNV6,
    Family,
)
from ..bgp.wire.context import CodecContext
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.update import end_of_rib, pack_announcements, pack_withdrawals
from ..policy.policy import Policy
from ..policy.relabel import Relabeler
from . import attrs as A
from .export_policy import Plan, plan_key
from .loc_rib import LocRib
from .outbound import OutboundRewrites, outbound_next_hop
from .path import Path, PathSource, PeerInfo, same_nlri
from .reflection import may_advertise
from .rib import Rib, RibChange
from .rtc import RtcFilter, RtcFilters, RtIndex, membership_keys
from .update_groups import (
    CACHE_MAX,
    MISSING,
    Batch,
    Entry,
    FamilyState,
    Group,
    Info,
    Member,
    Okey,
    OutPeer,
    Stored,
    Tag,
    TagOrNone,
    as_view,
    diff_views,
    entries_of,
    family_order,
    same_entry,
    with_path_id,
)

IPAddress = IPv4Address | IPv6Address

#: Families whose routes carry Route Targets and are subject to RTC (RFC 4684).
DEFAULT_VPN_FAMILIES: frozenset[Family] = frozenset({VPNV4, VPNV6, IPV4_MCAST_VPN, IPV6_MCAST_VPN})


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
        relabeler: Relabeler | None = None,
    ) -> None:
        self.rib = rib
        self.local_asn = local_asn
        self.router_id = IPv4Address(router_id)
        self.cluster_id = IPv4Address(cluster_id) if cluster_id is not None else self.router_id
        self.vpn_families = frozenset(vpn_families)
        #: local labels for routes an export policy relabels (None: relabel is ignored)
        self.relabeler = relabeler
        self._groups: dict[tuple[Any, ...], Group] = {}
        self._members: dict[IPAddress, Member] = {}
        self._filters = RtcFilters()
        #: the standard outbound rewrites, cached per (attrs, kind)
        self._std = OutboundRewrites(local_asn, self.cluster_id)
        self._okeys: dict[Okey, Okey] = {}
        self._rts: dict[PathAttributes, tuple[bytes, ...]] = {}
        #: (source address, ORIGINATOR_ID) -> tag; never cleared (one per source and
        #: originator), so equal tags are always the same object
        self._tags: dict[tuple[IPAddress | None, IPv4Address | None], Tag] = {}
        #: family -> key -> (source Adj-RIB-In, received path id) -> our path id
        self._pids: dict[Family, dict[bytes, dict[tuple[object, int], int]]] = {}
        #: route targets of VPN destinations and narrow groups; from the first RTC peer on
        self._rtidx: RtIndex | None = None
        #: (signature without RTC filter, family) -> the groups sharing one view of that
        #: family (not a VPN family: it does not depend on the filter); with a thousand
        #: RTC peers, RTC routes are then processed and encoded once, not per group
        self._shared: dict[tuple[tuple[Any, ...], Family], list[Group]] = {}

    # -- peers -----------------------------------------------------------------

    def peer_up(self, peer: OutPeer) -> list[bytes]:
        """The full table of every family of ``peer``, RTC first, End-of-RIB after each."""
        if peer.address in self._members:
            self.peer_down(peer.address)
        if peer.rtc and self._rtidx is None:
            self._start_rt_index()
        group = self._group_for(peer)
        m = Member(peer, group)
        self._join(m, group)
        out: list[bytes] = []
        for fam in family_order(peer.families):
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
            peer.export_policy,
        )

    def _group_for(self, peer: OutPeer, rtc: RtcFilter | None | object = MISSING) -> Group:
        if rtc is MISSING:
            rtc = self._filters.get(membership_keys(self.rib, peer.address)) if peer.rtc else None
        assert rtc is None or isinstance(rtc, RtcFilter)
        sig = self._signature(peer, rtc)
        g = self._groups.get(sig)
        if g is None:
            g = self._groups[sig] = Group(sig, peer, rtc, self.router_id, self._intern)
            if rtc is not None and peer.export_policy is None:
                self._rtc_group(g, peer, rtc)
        return g

    def _rtc_group(self, g: Group, peer: OutPeer, rtc: RtcFilter) -> None:
        """A new group of an RTC peer (no export policy): it shares the views of the
        families RTC does not filter with the groups differing by their filter only,
        and, if its filter names exact RTs, is found through the RT index."""
        g.base = self._signature(peer, None)
        for fam in g.fams:
            if fam not in self.vpn_families:
                sharing = self._shared.setdefault((g.base, fam), [])
                if sharing:
                    g.fams[fam] = sharing[0].fams[fam]
                sharing.append(g)
        idx = self._rtidx
        if idx is not None and idx.narrow(rtc) and all(
                fs.mode == 1 and not fs.addpath for f, fs in g.fams.items() if f in self.vpn_families):
            g.narrow = True
            idx.add_group(g, rtc)

    def _join(self, m: Member, g: Group) -> None:
        m.group = g
        g.members[m.addr] = m
        g.membership_changed()
        self._members[m.addr] = m

    def _leave(self, m: Member) -> None:
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
            if self.relabeler is not None and g.per_route:
                for fs in g.fams.values():
                    self.relabeler.release_owner(fs)

    # -- changes ---------------------------------------------------------------

    def on_change(self, change: RibChange) -> dict[IPAddress, list[bytes]]:
        """Messages per peer for the destinations ``change`` names."""
        fam = change.family
        out: dict[IPAddress, list[bytes]] = {}
        groups = [g for g in self._groups.values() if fam in g.fams]
        if not groups or not change.keys:
            return out
        loc = self.rib.loc_rib(fam)
        work: list[tuple[Group, Iterable[bytes]]] = [(g, change.keys) for g in groups]
        if self._rtidx is not None and fam in self.vpn_families:
            work = self._narrowed(fam, loc, groups, change.keys)
        done: dict[int, tuple[Batch, dict[TagOrNone, int], dict[int, list[bytes]]] | None] = {}
        for g, keys in work:
            fs = g.fams[fam]
            shared = done.get(id(fs), MISSING)  # a view shared with a group already done
            if shared is None:
                continue
            if shared is MISSING:
                info_of = self._info_getter(g, fam)
                b = Batch()
                self._process(g, fs, fam, keys, loc, info_of, b)
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
                for k, p in self.rib.loc_rib(fam).best_paths():
                    idx.set_key(fam, k, self._route_targets(p.attrs))

    def _narrowed(self, fam: Family, loc: LocRib, groups: list[Group],
                  keys: Iterable[bytes]) -> list[tuple[Group, Iterable[bytes]]]:
        """Each group with the changed keys it must look at: every key for a wide
        group; for a narrow group the keys whose route targets, now or when
        last seen, its filter names (so the work follows routes x interested
        groups, not routes x groups)."""
        idx = self._rtidx
        assert idx is not None
        keys = list(keys)
        per: dict[object, dict[bytes, None]] = {}
        rt_groups = idx.rt_groups
        for k in keys:
            p = loc.best(k)
            rts = self._route_targets(p.attrs) if p is not None else ()
            old = idx.set_key(fam, k, rts)
            for rt in {*old, *rts}:
                for g in rt_groups.get(rt, ()):
                    per.setdefault(g, {})[k] = None
        out: list[tuple[Group, Iterable[bytes]]] = []
        for g in groups:
            if not g.narrow:
                out.append((g, keys))
            elif g in per:
                out.append((g, list(per[g])))
        return out

    def _account(self, g: Group, fam: Family, delta: dict[TagOrNone, int]) -> None:
        """Entry counts of the group view and of each member's exclusions (for :meth:`sent`)."""
        g.fams[fam].count(delta)
        self._account_members(g, fam, delta)

    def _account_members(self, g: Group, fam: Family, delta: dict[TagOrNone, int]) -> None:
        """Entry counts of each member's exclusions (the view's own are counted once)."""
        for t, d in delta.items():
            if d and t is not None:
                for m in g.excluded(t):
                    m.excluded[fam] = m.excluded.get(fam, 0) + d

    def _deliver(self, g: Group, fam: Family, b: Batch, out: dict[IPAddress, list[bytes]],
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
        touched: dict[Member, set[Tag]] = {}
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
        vpn = [f for f in family_order(m.peer.families) if f in self.vpn_families]
        # the other families' group views do not depend on RTC: copied, not rebuilt
        keep = [f for f in m.peer.families if f not in self.vpn_families]
        out = self._regroup(m, m.peer, filt, vpn, keep)
        self._filters.release_unused(g.rtc for g in self._groups.values() if g.rtc is not None)
        return out

    def set_export_policy(self, address: IPAddress, policy: Policy | None) -> list[bytes]:
        """Give ``address`` a new export policy without a session reset.

        The peer moves to the update group of its new signature (built from
        the Loc-RIB if it is new, else joined as it stands), and gets the
        UPDATEs that turn what it holds into what it must hold now:
        withdrawals for routes the policy now rejects, announcements for
        routes now allowed or sent with other attributes, next hop or label.
        """
        m = self._members.get(address)
        if m is None:
            return []
        if m.peer.export_policy == policy:
            m.peer = replace(m.peer, export_policy=policy)
            return []
        old = m.group
        return self._regroup(m, replace(m.peer, export_policy=policy), old.rtc, family_order(m.peer.families))

    def _regroup(
        self, m: Member, peer: OutPeer, rtc: RtcFilter | None, fams: list[Family], keep: Iterable[Family] = ()
    ) -> list[bytes]:
        """Move ``m`` to the group of (``peer``, ``rtc``); the UPDATEs that turn its view of
        ``fams`` into its view in the new group.

        ``keep``: families whose group view is the same in both groups; a new
        group takes them from the old one instead of rebuilding them (unless
        its views are its own: relabeled entries hold local labels per group).
        """
        old = m.group
        fresh = self._signature(peer, rtc) not in self._groups
        pol = peer.export_policy
        copy = fresh and (pol is None or not (pol.route_dependent or pol.relabels))
        diffed = list(fams) if copy or not fresh else [*fams, *keep]
        before = {f: self._member_view(old, m, f) for f in diffed}
        self._leave(m)
        m.peer = peer
        new = self._group_for(peer, rtc)
        if copy:
            for f in keep:
                if new.fams[f] is not old.fams[f]:  # (a view shared by both: nothing to copy)
                    new.fams[f].copy_from(old.fams[f], share=not old.members)
        self._join(m, new)
        out: list[bytes] = []
        for f in diffed:
            self._scan(new, m, f)
            after = self._member_view(new, m, f)
            wd: list[Nlri] = []
            ann: dict[Okey, list[Nlri]] = {}
            for k, s in before[f].items():
                if k not in after:
                    wd.extend(e[0] for e in entries_of(s))
            for k, s in after.items():
                diff_views(as_view(before[f].get(k)), as_view(s), wd, ann)
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
            for n, (attrs, nh, _) in entries_of(s):
                yield n, attrs, nh

    def _member_view(self, g: Group, m: Member, fam: Family) -> dict[bytes, Stored]:
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

    def _info_getter(self, g: Group, fam: Family) -> Callable[[PathSource], Info]:
        """A function source -> :data:`Info` for ``g`` in ``fam``, cached for one batch.

        Sources are shared by every route of one UPDATE, so a batch computes
        this a few thousand times for a million routes.
        """
        cache: dict[PathSource, Info] = {}
        vpn_filter = g.rtc if fam in self.vpn_families else None
        v4_unicast = fam == IPV4_UNICAST
        compute = self._source_info

        def info_of(src: PathSource) -> Info:
            r = cache.get(src, MISSING)
            if r is MISSING:
                r = cache[src] = compute(g, fam, src, vpn_filter, v4_unicast)
            return r

        return info_of

    def _source_info(
        self, g: Group, fam: Family, src: PathSource, vpn_filter: RtcFilter | None, v4_unicast: bool
    ) -> Info:
        """The Okey of ``src``'s routes for ``g``: may they go, with which attributes and next hop.

        Standard rewrites, then the export policy when it does not depend on
        the route (a route-dependent one runs per route: :mod:`vpe.rib.export_policy`).
        """
        peer = src.peer
        attrs = src.attrs
        rep = g.rep
        if not may_advertise(peer, rep, route_reflector=True):
            return None
        if g.ebgp and A.as_path_contains(attrs, rep.asn):
            return None  # the peer's AS is on the path: it would drop the route as a loop
        if vpn_filter is not None and not vpn_filter.matches(self._route_targets(attrs)):
            return None
        nh = outbound_next_hop(src.next_hop, g.ebgp, g.next_hop_self)
        if nh is None:
            return None
        out = self._std.attributes(attrs, peer, rep, nh if v4_unicast and nh.version == 4 else None)
        okey = self._intern((out, nh, self._tag(peer, None if g.ebgp else A.originator_id(attrs))))
        if g.export is not None and not g.per_route:
            return g.export.source_key(fam, okey, src.next_hop)
        return okey

    def _intern(self, okey: Okey) -> Okey:
        """The one Okey object equal to ``okey`` (routes are bucketed by Okey identity)."""
        got = self._okeys.setdefault(okey, okey)
        if len(self._okeys) > CACHE_MAX:
            self._okeys.clear()
        return got

    def _tag(self, peer: PeerInfo, oid: IPv4Address | None) -> Tag | None:
        """The interned split-horizon tag of paths from ``peer`` with ORIGINATOR_ID ``oid``."""
        addr = None if peer.local else peer.address
        if addr is None and oid is None:
            return None
        k = (addr, oid)
        t = self._tags.get(k)
        if t is None:
            t = self._tags[k] = Tag(addr, oid)
        return t

    def _route_targets(self, attrs: PathAttributes) -> tuple[bytes, ...]:
        rts = self._rts.get(attrs)
        if rts is None:
            if len(self._rts) > CACHE_MAX:
                self._rts.clear()
            rts = self._rts[attrs] = A.route_target_octets(attrs)
        return rts

    # -- what a destination offers a group ---------------------------------------------

    def _offers(
        self,
        g: Group,
        fs: FamilyState,
        fam: Family,
        loc: LocRib,
        key: bytes,
        info_of: Callable[[PathSource], Info],
    ) -> dict[int, Entry]:
        """The group view of ``key``: path id (0 without add-path) -> Entry."""
        chosen: list[tuple[Path, Okey, bool]] = []
        route_policy = g.per_route
        relabel = False
        if fs.mode == 1:
            best = loc.best(key)
            if best is not None:
                okey = info_of(best.source)
                if okey is not None and route_policy:
                    okey, relabel = self._route_policy(g, fam, best, okey)
                if okey is not None:
                    chosen.append((best, okey, relabel))
        else:
            limit = fs.mode
            for p in _ranked_paths(loc, key):
                okey = info_of(p.source)
                if okey is not None and route_policy:
                    okey, relabel = self._route_policy(g, fam, p, okey)
                if okey is not None:
                    chosen.append((p, okey, relabel))
                    if limit and len(chosen) >= limit:
                        break
        if not fs.addpath:
            if not chosen:
                return {}
            p, okey, relabel = chosen[0]
            n = with_path_id(p.nlri, 0)
            return {0: self._relabeled(fs, p, n, okey, relabel) if route_policy else (n, okey)}
        ids = self._path_ids(fam, loc, key)  # even with nothing chosen: frees the ids of gone paths
        out: dict[int, Entry] = {}
        for p, okey, relabel in chosen:
            pid = ids[(_origin(p.source), p.nlri.path_id)]
            n = with_path_id(p.nlri, pid)
            out[pid] = self._relabeled(fs, p, n, okey, relabel) if route_policy else (n, okey)
        return out

    def _route_policy(self, g: Group, fam: Family, p: Path, okey: Okey) -> tuple[Okey | None, bool]:
        """``g``'s per-route export policy on one path: (Okey or None if rejected, relabel?)."""
        assert g.export is not None
        # a route without a label, or a local one (no next hop to swap to), is not relabeled
        can = self.relabeler is not None and bool(getattr(p.nlri, "labels", None)) and p.source.next_hop is not None
        return g.export.route_key(fam, p.nlri.key, okey, can, p.source.next_hop)

    def _relabeled(self, fs: FamilyState, p: Path, n: Nlri, okey: Okey, relabel: bool) -> Entry:
        """The entry of ``n`` (our path id set): with ``relabel``, carrying the local label
        for ``p``'s (next hop, label); without, any local label it held is given back."""
        relabeler = self.relabeler
        if relabeler is None:
            return n, okey
        if not relabel:
            relabeler.release(fs, (n.key, n.path_id))
            return n, okey
        assert p.source.next_hop is not None
        labels: tuple[int, ...] = n.labels  # type: ignore[attr-defined]
        local = relabeler.acquire(fs, (n.key, n.path_id), p.source.next_hop, labels[-1])
        if labels != (local,):
            n = copy.copy(n)
            n.labels = (local,)  # type: ignore[attr-defined]
        return n, okey

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

    def _process(
        self,
        g: Group,
        fs: FamilyState,
        fam: Family,
        keys: Iterable[bytes],
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        b: Batch,
    ) -> None:
        """Diff ``keys`` into batch ``b``, the fastest way the group's settings allow."""
        if fs.mode == 1 and not fs.addpath and not g.relabels:
            if not g.per_route:
                self._process_plain(fs, keys, loc, info_of, b)
            else:
                self._process_route_policy(g, fs, fam, keys, loc, info_of, b)
            return
        for k in list(keys):  # (the keys may be the Loc-RIB's own dict)
            self._process_key(g, fs, fam, loc, k, info_of, b)

    @staticmethod
    def _process_plain(
        fs: FamilyState,
        keys: Iterable[bytes],
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        b: Batch,
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
        last_src: Any = MISSING
        okey: Info = None
        last_okey: Any = MISSING
        lst: list[Nlri] = []
        added = 0  # new entries under last_okey not yet in delta
        last_tag: Any = MISSING
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
                n = with_path_id(n, 0)
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

    def _process_route_policy(
        self,
        g: Group,
        fs: FamilyState,
        fam: Family,
        keys: Iterable[bytes],
        loc: LocRib,
        info_of: Callable[[PathSource], Info],
        b: Batch,
    ) -> None:
        """Best path only with a per-route export policy (prefix/RD terms, no relabel).

        Per path source, a plan: the candidate terms for its attributes, each
        with the Okey it gives (computed once); per route, only the prefix/RD
        tests of the plan's terms, first match deciding.
        """
        sent = fs.sent
        okeys = fs.okeys
        dests = loc.dests
        delta = b.delta
        export = g.export
        assert export is not None
        plans: dict[PathSource, Plan] = {}
        last_src: Any = MISSING
        plan: Plan = ((), None)
        d: Any
        for k in keys:
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
                if src is None:
                    plan = ((), None)
                else:
                    got = plans.get(src)
                    if got is None:
                        got = plans[src] = export.plan(fam, info_of(src), src.next_hop)
                    plan = got
            okey = plan_key(plan, fam, k)
            old = sent.get(k)
            if okey is None:
                if old is not None:
                    del sent[k]
                    b.withdraw(okeys.pop(k)[2], old)
                continue
            if old is not None:
                o = okeys[k]
                if (old is n or same_nlri(old, n)) and (o is okey or o == okey):
                    continue
                if o[2] is not okey[2]:
                    b.replace(o[2], okey[2], old)
            else:
                tag = okey[2]
                delta[tag] = delta.get(tag, 0) + 1
            if n.path_id:
                n = with_path_id(n, 0)
            sent[k] = n
            okeys[k] = okey
            b.announce(okey, n)

    def _process_key(
        self,
        g: Group,
        fs: FamilyState,
        fam: Family,
        loc: LocRib,
        k: bytes,
        info_of: Callable[[PathSource], Info],
        b: Batch,
    ) -> None:
        """One destination in the general way (add-path, per-route policy): diff the path-id views."""
        old = as_view(fs.get(k))
        new = self._offers(g, fs, fam, loc, k, info_of)
        if g.per_route and self.relabeler is not None:
            self._release_relabels(fs, k, old, new)
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
            elif same_entry(o, e):
                continue
            elif o[1][2] is not t:
                b.replace(o[1][2], t, o[0])
            b.announce(e[1], e[0])

    def _release_relabels(
        self, fs: FamilyState, k: bytes, old: dict[int, Entry], new: dict[int, Entry]
    ) -> None:
        """Give back the local labels of ``k``'s entries that are gone (entries kept but no
        longer relabeled gave theirs back in :meth:`_offers`)."""
        relabeler = self.relabeler
        assert relabeler is not None
        for pid in old:
            if pid not in new:
                relabeler.release(fs, (k, pid))

    def _scan(self, g: Group, m: Member, fam: Family) -> None:
        """Make ``g``'s view of ``fam`` ready for member ``m``, which just joined.

        A group whose only member is ``m`` has its view rebuilt from the
        Loc-RIB; otherwise the group view stands (it follows every change).
        Either way ``m``'s view is derived from it, so all that is computed
        for ``m`` is its split-horizon count (O(tags)).
        """
        fs = g.fams[fam]
        sharing = self._shared.get((g.base, fam), ())
        if len(g.members) == 1 and not any(o.members for o in sharing if o is not g):
            if self.relabeler is not None and g.per_route:
                self.relabeler.release_owner(fs)
            fs.reset()
            if fam in self.rib.families():
                loc = self.rib.loc_rib(fam)
                info_of = self._info_getter(g, fam)
                b = Batch()
                keys: Iterable[bytes] = loc.dests  # reads only: no copy
                if g.narrow and fam in self.vpn_families and self._rtidx is not None and g.rtc is not None:
                    # only the destinations carrying the filter's route targets can pass it
                    keys = self._rtidx.keys_for(fam, g.rtc.exact)
                self._process(g, fs, fam, keys, loc, info_of, b)
                fs.count(b.tally())
        m.excluded[fam] = fs.excluded_count(m)

    # -- encoding --------------------------------------------------------------------

    def _table_msgs(self, g: Group, m: Member, fam: Family) -> list[bytes]:
        """The whole of ``m``'s view of ``fam`` as UPDATEs (no End-of-RIB).

        The group view is encoded once per Okey and kept until it changes;
        a member gets the messages of every Okey whose tag does not name it.
        """
        fs = g.fams[fam]
        table = fs.table
        if table is None:
            ann: dict[Okey, list[Nlri]] = {}
            lists: dict[int, list[Nlri]] = {}  # by the Okey's identity: see _process_plain
            last: Any = MISSING
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
