"""A named policy: ordered terms, first match decides, a default at the end.

Evaluation is split so callers pay per route only what depends on the route:

1. :meth:`Policy.candidates` - the terms whose attribute-set conditions hold
   for (family, attributes, next hop); cached per interned attribute set;
2. :meth:`Policy.select` - the first candidate whose per-route conditions
   (prefix, RD) hold for an NLRI key; for a policy that is not
   :attr:`~Policy.route_dependent`, the first candidate, whatever the route;
3. :meth:`Policy.verdict` - that term's (or the default's) :class:`Verdict`,
   the rewritten attributes cached per (term, attribute set, next hop), so
   every route sharing them shares one rewritten, equal-by-identity set.

:meth:`Policy.evaluate` does all three for one route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from .actions import Actions
from .match import Match

IPAddress = IPv4Address | IPv6Address

_CACHE_MAX = 65536
#: index of "no term matched: the default applies"
DEFAULT = -1


@dataclass(frozen=True, slots=True)
class Term:
    """One rule: when ``match`` holds, ``actions`` decide."""

    name: str
    match: Match = field(default_factory=Match)
    actions: Actions = field(default_factory=Actions)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a policy decided for a route.

    ``attrs``/``next_hop`` are the rewritten values (the input objects when
    nothing changed); ``relabel``: allocate a local label and a swap entry;
    ``term``: the deciding term's name, None for the default.
    """

    accept: bool
    attrs: PathAttributes
    next_hop: IPAddress | None
    relabel: bool = False
    term: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A named, ordered list of terms and a default verdict.

    A value: equal policies compare and hash equal (the caches are not part
    of the value), so peers given equal policies share an update group.
    """

    name: str
    terms: tuple[Term, ...] = ()
    default_accept: bool = True
    _candidates: dict[tuple[Any, ...], tuple[int, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _verdicts: dict[tuple[Any, ...], Verdict] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def route_dependent(self) -> bool:
        """True when some term matches on the route itself (prefix, RD): evaluate per route.

        Otherwise the verdict depends only on (family, attributes, next hop)
        and may be cached per interned attribute set.
        """
        return any(t.match.per_route for t in self.terms)

    @property
    def relabels(self) -> bool:
        """True when some term asks for a local label (per-route work on export)."""
        return any(t.actions.relabel for t in self.terms)

    def candidates(
        self, family: Family, attrs: PathAttributes, next_hop: IPAddress | None
    ) -> tuple[int, ...]:
        """Indexes of the terms whose attribute-set conditions hold (cached)."""
        k = (family, attrs, next_hop)
        got = self._candidates.get(k)
        if got is None:
            if len(self._candidates) >= _CACHE_MAX:
                self._candidates.clear()
            got = self._candidates[k] = tuple(
                i for i, t in enumerate(self.terms) if t.match.matches_attrs(family, attrs, next_hop)
            )
        return got

    def select(
        self, family: Family, attrs: PathAttributes, next_hop: IPAddress | None, key: bytes | None = None
    ) -> int:
        """Index of the deciding term, or :data:`DEFAULT`. ``key`` (the NLRI key) is needed only
        by route-dependent terms; without it they do not match."""
        terms = self.terms
        for i in self.candidates(family, attrs, next_hop):
            m = terms[i].match
            if not m.per_route:
                return i
            if key is not None and m.matches_route(family, key):
                return i
        return DEFAULT

    def verdict(
        self,
        index: int,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        self_next_hop: IPAddress | None = None,
        received_next_hop: IPAddress | None = None,
    ) -> Verdict:
        """The verdict of term ``index`` (or the default) for these attributes (cached);
        ``received_next_hop``: what ``next_hop = "unchanged"`` restores (export to eBGP)."""
        k = (index, attrs, next_hop, self_next_hop, received_next_hop)
        v = self._verdicts.get(k)
        if v is None:
            if index == DEFAULT:
                v = Verdict(self.default_accept, attrs, next_hop)
            else:
                t = self.terms[index]
                a = t.actions
                if a.accept:
                    out, nh = a.apply(attrs, next_hop, self_next_hop, received_next_hop)
                    v = Verdict(True, out, nh, a.relabel, t.name)
                else:
                    v = Verdict(False, attrs, next_hop, False, t.name)
            if len(self._verdicts) >= _CACHE_MAX:
                self._verdicts.clear()
            self._verdicts[k] = v
        return v

    def evaluate(
        self,
        family: Family,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        key: bytes | None = None,
        self_next_hop: IPAddress | None = None,
    ) -> Verdict:
        """The verdict for one route (``key`` its NLRI key; None for attribute-only use)."""
        return self.verdict(self.select(family, attrs, next_hop, key), attrs, next_hop, self_next_hop)
