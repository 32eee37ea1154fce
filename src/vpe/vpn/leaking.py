"""Route leaking between VRFs of one tenant, under policy (R4.2).

A :class:`LeakPolicy` copies the forwarding set of prefixes of a source VRF
into a destination VRF, filtered by an optional prefix list (prefix with
``ge``/``le`` lengths, as in the usual router prefix lists) and an optional
RT match (the route's RTs: the attributes of an imported route, the source
VRF's export RTs for a local one). Leaked entries are marked
:attr:`~vpe.vpn.entries.RouteSource.LEAKED` with a :class:`~vpe.vpn.entries.Leak`
origin naming the source VRF and the entry copied; they keep its next hop,
labels and encapsulation, so traffic goes exactly where the source VRF
would send it. They rank after the destination's own entries.

Leaked entries are never leaked again (no chains, no loops). The
:class:`Leaker` works on :class:`~vpe.vpn.events.VrfTableChange` values -
the same stream the FIB gets - so it needs no hook inside the tables: for
each changed prefix of a source VRF it recomputes that prefix's leaked
entries in each destination, from all policies of that (source,
destination) pair at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from .entries import Leak, RouteSource, VrfRoute
from .errors import AlreadyExists, InvalidValue, UnknownLeakPolicy
from .events import VrfTableChange
from .route_target import RouteTargets, matches, parse_route_targets, route_targets_of
from .vrf import Vrf

_LEAKED = RouteSource.LEAKED


@dataclass(frozen=True, slots=True)
class PrefixListEntry:
    """``prefix`` with optional ``ge``/``le``: matches prefixes inside ``prefix``
    whose length is in [ge or len, le or (32/128 if ge else len)]."""

    prefix: IPv4Network | IPv6Network
    ge: int | None = None
    le: int | None = None

    def __post_init__(self) -> None:
        p = self.prefix
        if isinstance(p, str):
            try:
                p = ip_network(p, strict=True)
            except ValueError as e:
                raise InvalidValue(f"prefix-list prefix: {self.prefix!r} is not an IP prefix ({e})") from None
            object.__setattr__(self, "prefix", p)
        bits = p.max_prefixlen
        for name, v in (("ge", self.ge), ("le", self.le)):
            if v is not None and (type(v) is not int or not p.prefixlen <= v <= bits):
                raise InvalidValue(f"prefix-list {name}: {v!r} not in {p.prefixlen}..{bits} for {p}")
        if self.ge is not None and self.le is not None and self.ge > self.le:
            raise InvalidValue(f"prefix-list ge/le: ge {self.ge} > le {self.le} for {p}")

    @classmethod
    def parse(cls, text: str) -> PrefixListEntry:
        """``"10.0.0.0/8"``, ``"10.0.0.0/8 le 24"``, ``"2001:db8::/32 ge 48 le 64"``."""
        parts = text.split()
        if not parts or len(parts) % 2 == 0:
            raise InvalidValue(f"prefix-list entry: {text!r} (expected 'PREFIX [ge N] [le M]')")
        opts: dict[str, int] = {}
        for k, v in zip(parts[1::2], parts[2::2], strict=True):
            if k not in ("ge", "le") or k in opts or not v.isdigit():
                raise InvalidValue(f"prefix-list entry: {text!r} (expected 'PREFIX [ge N] [le M]')")
            opts[k] = int(v)
        return cls(parts[0], opts.get("ge"), opts.get("le"))  # type: ignore[arg-type]

    @property
    def _bounds(self) -> tuple[int, int]:
        n = self.prefix.prefixlen
        lo = self.ge if self.ge is not None else n
        if self.le is not None:
            hi = self.le
        else:
            hi = self.prefix.max_prefixlen if self.ge is not None else n
        return lo, hi

    def matches(self, version: int, key: bytes) -> bool:
        """Does the table key ``key`` (length octet + minimal octets) match?"""
        p = self.prefix
        if p.version != version:
            return False
        plen = key[0]
        lo, hi = self._bounds
        if not lo <= plen <= hi:
            return False
        bits = p.max_prefixlen
        addr = int.from_bytes(key[1:].ljust(bits // 8, b"\0"), "big")
        shift = bits - p.prefixlen
        return (addr >> shift) == (int(p.network_address) >> shift)

    def __str__(self) -> str:
        s = str(self.prefix)
        if self.ge is not None:
            s += f" ge {self.ge}"
        if self.le is not None:
            s += f" le {self.le}"
        return s


@dataclass(frozen=True, slots=True)
class LeakPolicy:
    """Leak from VRF ``source`` to VRF ``destination`` the prefixes matching
    ``prefixes`` (None: all) whose RTs meet ``route_targets`` (None: any)."""

    name: str
    source: str
    destination: str
    prefixes: tuple[PrefixListEntry, ...] | None = None
    route_targets: RouteTargets | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidValue("leak policy name: must not be empty")
        if self.source == self.destination:
            raise InvalidValue(f"leak policy {self.name!r}: source and destination are both {self.source!r}")
        if self.prefixes is not None:
            object.__setattr__(
                self,
                "prefixes",
                tuple(PrefixListEntry.parse(p) if isinstance(p, str) else p for p in self.prefixes),
            )
        if self.route_targets is not None:
            object.__setattr__(
                self, "route_targets", parse_route_targets(self.route_targets, "leak route-targets")
            )

    def admits(self, route: VrfRoute, source_export_rts: RouteTargets) -> bool:
        if route.source is _LEAKED:
            return False
        if self.prefixes is not None and not any(
            e.matches(route.version, route.prefix) for e in self.prefixes
        ):
            return False
        if self.route_targets is not None:
            rts = (
                source_export_rts
                if route.source is RouteSource.LOCAL
                else route_targets_of(route.attributes)
            )
            if not matches(self.route_targets, rts):
                return False
        return True


def leaked_copy(source_vrf: str, route: VrfRoute) -> VrfRoute:
    return route._replace(
        source=_LEAKED, origin=Leak(source_vrf, route), rank=(int(_LEAKED), *route.rank[1:])
    )


class Leaker:
    """The leak policies, applied to VRF table changes."""

    __slots__ = ("policies", "_pairs")

    def __init__(self) -> None:
        self.policies: dict[str, LeakPolicy] = {}
        #: source -> destination -> policies
        self._pairs: dict[str, dict[str, list[LeakPolicy]]] = {}

    def add(self, policy: LeakPolicy) -> None:
        if policy.name in self.policies:
            raise AlreadyExists(f"leak policy name: {policy.name!r} already exists")
        self.policies[policy.name] = policy
        self._pairs.setdefault(policy.source, {}).setdefault(policy.destination, []).append(policy)

    def remove(self, name: str) -> LeakPolicy:
        policy = self.policies.pop(name, None)
        if policy is None:
            raise UnknownLeakPolicy(f"leak policy name: {name!r} does not exist")
        dests = self._pairs[policy.source]
        dests[policy.destination].remove(policy)
        if not dests[policy.destination]:
            del dests[policy.destination]
        if not dests:
            del self._pairs[policy.source]
        return policy

    def involving(self, vrf: str) -> list[LeakPolicy]:
        return [p for p in self.policies.values() if vrf in (p.source, p.destination)]

    def on_changes(self, changes: Iterable[VrfTableChange], vrfs: Mapping[str, Vrf]) -> None:
        """Bring leaked entries in line with the changed source prefixes."""
        pairs = self._pairs
        for c in changes:
            dests = pairs.get(c.vrf)
            if not dests:
                continue
            src = vrfs.get(c.vrf)
            if src is None:
                continue
            for dname, policies in dests.items():
                dst = vrfs.get(dname)
                if dst is not None:
                    self._sync(src, dst, policies, c.version, c.prefix, c.routes)

    def resync_pair(self, source: str, destination: str, vrfs: Mapping[str, Vrf]) -> None:
        """Recompute every leaked prefix of one pair (after a policy change)."""
        src = vrfs.get(source)
        dst = vrfs.get(destination)
        if src is None or dst is None:
            return
        policies = self._pairs.get(source, {}).get(destination, [])
        for v in (4, 6):
            keys = set(src.keys(v))
            keys.update(k for k, lst in dst.items(v) if any(e.leaked_from == source for e in lst))
            for k in sorted(keys):
                self._sync(src, dst, policies, v, k, src.active((v, k)))

    @staticmethod
    def _sync(
        src: Vrf,
        dst: Vrf,
        policies: list[LeakPolicy],
        version: int,
        prefix: bytes,
        routes: tuple[VrfRoute, ...],
    ) -> None:
        name = src.name
        want = {}
        for r in routes:
            if any(p.admits(r, src.export_rts) for p in policies):
                copy = leaked_copy(name, r)
                want[copy.ident] = copy
        have = [e for e in dst.routes((version, prefix)) if e.leaked_from == name]
        for e in have:
            w = want.get(e.ident)
            if w is None:
                dst.remove_route(version, prefix, e.ident)
            elif w == e:
                del want[e.ident]
        for copy in want.values():
            dst.add_route(copy)
