"""Route Target Constraint (RFC 4684): which VPN routes a peer wants.

A peer that negotiated RTC (AFI 1 / SAFI 132) tells us, with RTC routes,
the route targets it imports; we then send it only the VPN routes carrying
one of them. Its *membership* is simply the set of RTC routes it sent us
(its Adj-RIB-In of family RTC). A membership route matches a VPN route when
its route target prefix matches one of the route's Route Targets:

* length 0, the default route: every VPN route;
* length 32 (origin AS only, no route target bits): every route carrying
  some Route Target;
* length 96: that exact route target (8 octets);
* lengths 33..95: the route target's leading ``length - 32`` bits.

The origin AS in a membership route says who originated the membership
(it steers how RTC routes themselves propagate), not which VPN routes
match, so matching ignores it.

A filter is built once per distinct membership set and shared: peers with
equal memberships get the same :class:`RtcFilter` object, which Adj-RIB-Out
uses as part of its update-group signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from ..bgp.wire.attributes.extended_communities import RouteTarget, parse_ext_community
from ..bgp.wire.constants import RTC
from ..bgp.wire.nlri.rtc import RouteTargetMembership

if TYPE_CHECKING:
    from .rib import Rib

IPAddress = IPv4Address | IPv6Address


class RtcFilter:
    """The VPN-route filter of one membership set (a set of RTC NLRI keys)."""

    __slots__ = ("keys", "default", "any_rt", "exact", "partial")

    def __init__(self, keys: frozenset[bytes]) -> None:
        self.keys = keys
        self.default = False
        self.any_rt = False
        exact: set[bytes] = set()
        partial: set[tuple[int, int]] = set()
        for k in keys:
            plen = k[0]
            if plen == 0:
                self.default = True
            elif plen <= 32:
                self.any_rt = True
            elif plen >= 96:
                exact.add(bytes(k[5:13]))
            else:
                bits = plen - 32
                rt = int.from_bytes(k[5:].ljust(8, b"\x00"), "big")
                partial.add((bits, rt >> (64 - bits)))
        self.exact = frozenset(exact)
        self.partial = tuple(sorted(partial))

    def matches(self, route_targets: Iterable[bytes]) -> bool:
        """Does a route carrying ``route_targets`` (8 octets each) pass the filter?"""
        if self.default:
            return True
        exact = self.exact
        partial = self.partial
        for rt in route_targets:
            if self.any_rt or rt in exact:
                return True
            if partial:
                v = int.from_bytes(rt, "big")
                for bits, want in partial:
                    if v >> (64 - bits) == want:
                        return True
        return False

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"RtcFilter({len(self.keys)} routes, default={self.default})"


class RtcFilters:
    """Interns filters: one :class:`RtcFilter` per distinct membership set."""

    __slots__ = ("_by_keys",)

    def __init__(self) -> None:
        self._by_keys: dict[frozenset[bytes], RtcFilter] = {}

    def get(self, keys: frozenset[bytes]) -> RtcFilter:
        f = self._by_keys.get(keys)
        if f is None:
            f = self._by_keys[keys] = RtcFilter(keys)
        return f

    def release_unused(self, in_use: Iterable[RtcFilter]) -> None:
        """Forget filters no update group uses any more."""
        keep = {id(f) for f in in_use}
        self._by_keys = {k: f for k, f in self._by_keys.items() if id(f) in keep}


def membership_keys(rib: Rib, peer: IPAddress) -> frozenset[bytes]:
    """The keys of the RTC routes ``peer`` sent us (its RT membership)."""
    adj = rib.adj_rib_in(peer, RTC)
    if adj is None:
        return frozenset()
    return frozenset(n.key for n in adj.nlris())


def local_rtc_routes(
    local_asn: int, import_rts: Iterable[RouteTarget | str | bytes]
) -> list[RouteTargetMembership]:
    """The RTC routes this speaker originates: one per import route target, in order.

    ``import_rts`` are :class:`RouteTarget` values, their text (``"target:65000:1"``
    or ``"65000:1"``) or their 8 wire octets; duplicates are dropped.
    """
    out: list[RouteTargetMembership] = []
    seen: set[bytes] = set()
    for rt in import_rts:
        if isinstance(rt, bytes):
            raw = rt
        elif isinstance(rt, str):
            text = rt if rt.startswith("target:") else "target:" + rt
            ec = parse_ext_community(text)
            raw = ec.encode()
        else:
            raw = rt.encode()
        if len(raw) != 8:
            raise ValueError(f"route target {rt!r}: needs 8 octets, got {len(raw)}")
        if raw in seen:
            continue
        seen.add(raw)
        out.append(RouteTargetMembership.from_parts(local_asn, raw))
    return out


class RtIndex:
    """Route targets of VPN destinations and of update groups, for RT-constrained output.

    With many RTC peers (a route reflector of a thousand vPEs), each peer's
    membership is different, so each is an update group of its own. Looking
    at every group for every changed route would cost routes x groups; this
    index lets Adj-RIB-Out visit, for a changed destination, only the
    *narrow* groups (filters of exact route targets) whose filter names a
    route target the destination carries now or carried when it was last
    sent, and lets a new narrow group scan only the destinations carrying
    its route targets. Its size follows routes plus groups, not their product.

    ``key_rts[family][key]``: the route targets of the destination's best
    path when last seen; ``rt_keys[family][rt]``: the destinations carrying
    ``rt``; ``rt_groups[rt]``: the narrow groups whose filter names ``rt``.
    """

    __slots__ = ("key_rts", "rt_keys", "rt_groups")

    def __init__(self) -> None:
        self.key_rts: dict[object, dict[bytes, tuple[bytes, ...]]] = {}
        self.rt_keys: dict[object, dict[bytes, set[bytes]]] = {}
        self.rt_groups: dict[bytes, set[object]] = {}

    @staticmethod
    def narrow(f: RtcFilter | None) -> bool:
        """Does ``f`` name exact route targets only (so the index can find what passes it)?"""
        return f is not None and not (f.default or f.any_rt or f.partial)

    def set_key(self, family: object, key: bytes, rts: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """The destination now carries ``rts`` (empty: gone); returns what it carried."""
        by_key = self.key_rts.setdefault(family, {})
        old = by_key.get(key, ())
        if old == rts:
            return old
        by_rt = self.rt_keys.setdefault(family, {})
        for rt in old:
            s = by_rt.get(rt)
            if s is not None:
                s.discard(key)
                if not s:
                    del by_rt[rt]
        if rts:
            by_key[key] = rts
            for rt in rts:
                by_rt.setdefault(rt, set()).add(key)
        else:
            by_key.pop(key, None)
        return old

    def keys_for(self, family: object, rts: Iterable[bytes]) -> set[bytes]:
        by_rt = self.rt_keys.get(family, {})
        out: set[bytes] = set()
        for rt in rts:
            out |= by_rt.get(rt, set())
        return out

    def add_group(self, group: object, f: RtcFilter) -> None:
        for rt in f.exact:
            self.rt_groups.setdefault(rt, set()).add(group)

    def remove_group(self, group: object, f: RtcFilter) -> None:
        for rt in f.exact:
            s = self.rt_groups.get(rt)
            if s is not None:
                s.discard(group)
                if not s:
                    del self.rt_groups[rt]
