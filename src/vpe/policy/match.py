"""What a policy term matches on, precompiled.

A :class:`Match` is a value (frozen, hashable, comparable) holding the
conditions in their parsed form. Conditions fall in two kinds, and the
split is what makes evaluation cheap:

* **per attribute set** (family, communities, route targets, AS path,
  next hop): decided once per interned :class:`PathAttributes` and next
  hop, then cached by the caller (:class:`~vpe.policy.policy.Policy`);
* **per route** (prefix with length range, route distinguisher): read
  from the NLRI key (``length || RD? || minimal prefix octets``), a few
  integer operations per route.

Every condition given must hold (AND); within one condition, any listed
value may match (OR). An empty :class:`Match` matches everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import ExtendedCommunity, RouteTarget
from ..bgp.wire.constants import AttrCode, Family
from ..bgp.wire.nlri.rd import RouteDistinguisher

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
LargeCommunity = tuple[int, int, int]

_COMMUNITIES = int(AttrCode.COMMUNITIES)
_EXT_COMMUNITIES = int(AttrCode.EXTENDED_COMMUNITIES)
_LARGE_COMMUNITY = int(AttrCode.LARGE_COMMUNITY)
_AS_PATH = int(AttrCode.AS_PATH)

#: SAFIs whose NLRI key is ``length || prefix`` (unicast, multicast, labeled unicast)
_PREFIX_SAFIS = frozenset({1, 2, 4})
#: SAFIs whose NLRI key is ``length || RD || prefix`` (VPN-IP)
_VPN_SAFIS = frozenset({128})


@dataclass(frozen=True, slots=True)
class PrefixRange:
    """A prefix and the range of lengths it matches: ``192.0.2.0/24 le 32``.

    A route matches when its prefix lies inside ``network`` and its length
    is within ``ge..le`` (both inclusive). Without ``ge``/``le`` only the
    exact prefix matches.
    """

    network: IPNetwork
    ge: int
    le: int

    @property
    def version(self) -> int:
        return self.network.version

    def covers(self, version: int, plen: int, value: int) -> bool:
        """Does the prefix ``value/plen`` (``value`` the full-width address as an int) match?"""
        net = self.network
        if version != net.version or not self.ge <= plen <= self.le:
            return False
        width = net.max_prefixlen
        shift = width - net.prefixlen
        return (value >> shift) == (int(net.network_address) >> shift)

    def __str__(self) -> str:
        p = self.network.prefixlen
        out = str(self.network)
        if self.ge != p:
            out += f" ge {self.ge}"
        if self.le != p:
            out += f" le {self.le}"
        return out

    @classmethod
    def parse(cls, text: str) -> PrefixRange:
        """``"P"``, ``"P le M"``, ``"P ge N"``, ``"P ge N le M"``; ``ValueError`` naming the problem."""
        words = text.split()
        if not words:
            raise ValueError("is not a prefix")
        try:
            net = ip_network(words[0], strict=True)
        except ValueError:
            raise ValueError("is not a prefix") from None
        p, top = net.prefixlen, net.max_prefixlen
        bounds: dict[str, int] = {}
        rest = words[1:]
        if len(rest) % 2:
            raise ValueError("expected 'PREFIX [ge N] [le M]'")
        for i in range(0, len(rest), 2):
            kw, num = rest[i].lower(), rest[i + 1]
            if kw not in ("ge", "le") or kw in bounds or not num.isdigit():
                raise ValueError("expected 'PREFIX [ge N] [le M]'")
            bounds[kw] = int(num)
        ge = bounds.get("ge", p)
        le = bounds.get("le", top if "ge" in bounds else p)
        if not p <= ge <= le <= top:
            raise ValueError(f"needs {p} <= ge <= le <= {top}")
        return cls(net, ge, le)


@lru_cache(maxsize=256)
def compile_regex(text: str) -> re.Pattern[str]:
    """The compiled AS path regex (``re.search`` over the path's text form)."""
    return re.compile(text)


def as_path_text(attrs: PathAttributes) -> str:
    """AS_PATH as text: space-separated ASNs, sets in braces (``"65001 65002 {65003 65004}"``)."""
    a = attrs.get(_AS_PATH)
    return "" if a is None else str(a)


@dataclass(frozen=True, slots=True)
class Match:
    """The conditions of one term; see the module docstring for the semantics.

    ``as_path_length`` is ``(ge, le)`` counted as the decision process does
    (a set counts one); ``next_hops`` are networks (an address is its host
    network).
    """

    families: frozenset[Family] = frozenset()
    prefixes: tuple[PrefixRange, ...] = ()
    rds: tuple[RouteDistinguisher, ...] = ()
    route_targets: tuple[RouteTarget, ...] = ()
    communities: tuple[int, ...] = ()
    ext_communities: tuple[ExtendedCommunity, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    as_path: str | None = None
    as_path_contains: tuple[int, ...] = ()
    as_path_length: tuple[int, int] | None = None
    next_hops: tuple[IPNetwork, ...] = ()

    @property
    def per_route(self) -> bool:
        """True when the match reads the route itself (prefix, RD), not only its attributes."""
        return bool(self.prefixes or self.rds)

    # -- per attribute set -------------------------------------------------------

    def matches_attrs(self, family: Family, attrs: PathAttributes, next_hop: IPAddress | None) -> bool:
        """Every condition that depends only on the family, attributes and next hop."""
        if self.families and family not in self.families:
            return False
        if self.prefixes or self.rds:
            # a route without a prefix (RTC, MCAST-VPN) can never match these
            if family.safi not in _PREFIX_SAFIS and family.safi not in _VPN_SAFIS:
                return False
            if self.rds and family.safi not in _VPN_SAFIS:
                return False
        if self.route_targets or self.ext_communities:
            ec = attrs.get(_EXT_COMMUNITIES)
            values = () if ec is None else ec.values
            if self.route_targets and not any(v in values for v in self.route_targets):
                return False
            if self.ext_communities and not any(v in values for v in self.ext_communities):
                return False
        if self.communities:
            c = attrs.get(_COMMUNITIES)
            if c is None or not any(v in c.values for v in self.communities):
                return False
        if self.large_communities:
            lc = attrs.get(_LARGE_COMMUNITY)
            if lc is None or not any(v in lc.values for v in self.large_communities):
                return False
        if self.as_path is not None or self.as_path_contains or self.as_path_length is not None:
            path = attrs.get(_AS_PATH)
            if self.as_path is not None and compile_regex(self.as_path).search(as_path_text(attrs)) is None:
                return False
            if self.as_path_contains:
                asns = set(path.asns()) if path is not None else set()
                if not any(a in asns for a in self.as_path_contains):
                    return False
            if self.as_path_length is not None:
                n = 0 if path is None else path.length()
                if not self.as_path_length[0] <= n <= self.as_path_length[1]:
                    return False
        return not self.next_hops or (
            next_hop is not None and any(next_hop in net for net in self.next_hops)
        )

    # -- per route ------------------------------------------------------------------

    def matches_route(self, family: Family, key: bytes) -> bool:
        """The per-route conditions on an NLRI key of ``family`` (call after :meth:`matches_attrs`)."""
        safi = family.safi
        if safi in _VPN_SAFIS:
            if len(key) < 9:
                return False
            if self.rds and not any(rd.raw == key[1:9] for rd in self.rds):
                return False
            octets = key[9:]
        elif safi in _PREFIX_SAFIS:
            octets = key[1:]
        else:
            return False
        if not self.prefixes:
            return True
        version = 4 if family.afi == 1 else 6
        width = 4 if version == 4 else 16
        plen = key[0]
        value = int.from_bytes(octets, "big") << (8 * (width - len(octets)))
        return any(r.covers(version, plen, value) for r in self.prefixes)
