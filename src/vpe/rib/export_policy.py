"""A peer group's export policy as Adj-RIB-Out applies it: verdicts made into outbound keys.

Adj-RIB-Out sends routes in runs that share an outbound key (attributes as
sent, next hop as sent, split-horizon tag). The standard rewrites
(:mod:`vpe.rib.outbound`) make one key per path source; the export policy
(:mod:`vpe.policy`) then maps that key to another one, or to None (rejected):

* a policy that reads only attributes maps a path source's key once
  (:meth:`GroupExportPolicy.source_key`);
* a per-route policy gets a :data:`Plan` per path source - its candidate
  terms, each with the key it gives - and runs only the prefix/RD tests per
  route (:meth:`GroupExportPolicy.plan`, :func:`plan_key`);
* a relabelling verdict makes the next hop ours; the label itself is
  Adj-RIB-Out's business (it owns the :class:`~vpe.policy.Relabeler` use).

Keys are interned through the callback Adj-RIB-Out gives, so equal keys are
one object and the rewritten attribute sets are shared by every route.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from ..policy.match import Match
from ..policy.policy import DEFAULT, Policy

IPAddress = IPv4Address | IPv6Address
#: (outbound attributes, outbound next hop, split-horizon tag): Adj-RIB-Out's Okey
OutKey = tuple[PathAttributes, IPAddress, Any]
#: per path source: ((per-route Match, or None: always decides; the key it gives), ...)
#: and the key of the default
Plan = tuple[tuple[tuple[Match | None, OutKey | None], ...], OutKey | None]


def plan_key(plan: Plan, family: Family, key: bytes) -> OutKey | None:
    """The outbound key of the route with NLRI key ``key`` under ``plan`` (None: rejected)."""
    for m, out in plan[0]:
        if m is None or m.matches_route(family, key):
            return out
    return plan[1]


class GroupExportPolicy:
    """One update group's export policy, with what "next hop self" means for the group."""

    __slots__ = ("policy", "self_next_hop", "per_route", "_intern")

    def __init__(
        self, policy: Policy, self_next_hop: IPAddress, intern: Callable[[OutKey], OutKey]
    ) -> None:
        self.policy = policy
        self.self_next_hop = self_next_hop
        #: evaluated per route (prefix/RD terms, or relabel), not per path source
        self.per_route = policy.route_dependent or policy.relabels
        self._intern = intern

    def source_key(self, family: Family, out: OutKey, received: IPAddress | None = None) -> OutKey | None:
        """A policy that reads no route: the key of every route of the source whose key is ``out``
        (``received``: the source's own next hop, for ``next_hop = "unchanged"``)."""
        return self.verdict_key(self.policy.select(family, out[0], out[1]), out, received=received)[0]

    def route_key(
        self, family: Family, key: bytes, out: OutKey, can_relabel: bool, received: IPAddress | None = None
    ) -> tuple[OutKey | None, bool]:
        """One route (NLRI key ``key``) of a source whose key is ``out``: (its key, relabel?)."""
        return self.verdict_key(self.policy.select(family, out[0], out[1], key), out, can_relabel, received)

    def plan(self, family: Family, out: OutKey | None, received: IPAddress | None = None) -> Plan:
        """The :data:`Plan` of a path source whose key is ``out`` (no relabel: see :meth:`route_key`)."""
        if out is None:
            return (), None
        pol = self.policy
        steps: list[tuple[Match | None, OutKey | None]] = []
        for i in pol.candidates(family, out[0], out[1]):
            m = pol.terms[i].match
            steps.append((m if m.per_route else None, self.verdict_key(i, out, received=received)[0]))
            if not m.per_route:
                break  # it always decides: later terms are never reached
        return tuple(steps), self.verdict_key(DEFAULT, out, received=received)[0]

    def verdict_key(self, index: int, out: OutKey, can_relabel: bool = False,
                    received: IPAddress | None = None) -> tuple[OutKey | None, bool]:
        """The key term ``index`` (or :data:`DEFAULT`) makes of ``out`` (None: rejected), and
        whether it relabels (only when ``can_relabel``; the next hop is then ours)."""
        attrs, nh, tag = out
        v = self.policy.verdict(index, attrs, nh, self.self_next_hop, received)
        if not v.accept or v.next_hop is None:
            return None, False
        relabel = v.relabel and can_relabel
        if relabel:
            return self._intern((v.attrs, self.self_next_hop, tag)), True
        if v.attrs is attrs and v.next_hop is nh:
            return out, False
        return self._intern((v.attrs, v.next_hop, tag)), False
