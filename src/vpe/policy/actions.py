"""What a policy term does to a route: accept or reject, and attribute rewrites.

:class:`Actions` is a value; :meth:`Actions.apply` turns one attribute set
and next hop into the rewritten pair. It only builds new attribute objects
through the codec's own classes, so what a policy produces encodes like
anything received. Callers cache the result per interned attribute set
(see :class:`~vpe.policy.policy.Policy`).

Community edits run in the order replace, remove, add. Route-target edits
touch only the Route Target values of EXTENDED_COMMUNITIES; other extended
communities (encapsulation, colour) are kept. An edit that leaves a
community attribute empty removes the attribute (an empty one is malformed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Generic, Literal, TypeVar

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttribute, PathAttributes
from ..bgp.wire.attributes.communities import Communities
from ..bgp.wire.attributes.extended_communities import (
    ExtendedCommunities,
    ExtendedCommunity,
    RouteTarget,
)
from ..bgp.wire.attributes.large_community import LargeCommunities
from ..bgp.wire.attributes.next_hop import NextHop
from ..bgp.wire.attributes.simple import LocalPref, Med
from ..bgp.wire.constants import AttrCode

IPAddress = IPv4Address | IPv6Address
V = TypeVar("V")

#: ``set_next_hop`` value meaning "the address this speaker uses as next hop"
SELF: Literal["self"] = "self"
#: ``set_next_hop`` value meaning "the next hop the path was received with" (an eBGP
#: speaker otherwise sends its own: Inter-AS option C's multihop VPN sessions between
#: route reflectors keep the PE's next hop and label end to end)
UNCHANGED: Literal["unchanged"] = "unchanged"

_COMMUNITIES = int(AttrCode.COMMUNITIES)
_EXT_COMMUNITIES = int(AttrCode.EXTENDED_COMMUNITIES)
_LARGE_COMMUNITY = int(AttrCode.LARGE_COMMUNITY)
_NEXT_HOP = int(AttrCode.NEXT_HOP)
_AS_PATH = int(AttrCode.AS_PATH)


@dataclass(frozen=True, slots=True)
class CommunityEdit(Generic[V]):
    """Edit of one kind of community list: ``replace`` (None: keep), then ``remove``, then ``add``."""

    add: tuple[V, ...] = ()
    remove: tuple[V, ...] = ()
    replace: tuple[V, ...] | None = None

    def apply(self, values: tuple[V, ...]) -> tuple[V, ...]:
        out = list(values if self.replace is None else self.replace)
        if self.remove:
            out = [v for v in out if v not in self.remove]
        for v in self.add:
            if v not in out:
                out.append(v)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Actions:
    """A term's verdict and rewrites. ``relabel`` asks the exporter for a local label
    (and a label-swap entry) for the route: meaningful on export of labeled/VPN routes."""

    accept: bool = True
    set_next_hop: IPAddress | Literal["self", "unchanged"] | None = None
    local_pref: int | None = None
    med: int | None = None
    communities: CommunityEdit[int] | None = None
    ext_communities: CommunityEdit[ExtendedCommunity] | None = None
    large_communities: CommunityEdit[tuple[int, int, int]] | None = None
    route_targets: CommunityEdit[RouteTarget] | None = None
    relabel: bool = False
    #: ASNs put in front of AS_PATH, in this order (after the eBGP speaker's own)
    as_path_prepend: tuple[int, ...] = ()

    @property
    def rewrites(self) -> bool:
        """True when :meth:`apply` may change the attributes or the next hop."""
        return (
            self.set_next_hop is not None
            or self.local_pref is not None
            or self.med is not None
            or self.communities is not None
            or self.ext_communities is not None
            or self.large_communities is not None
            or self.route_targets is not None
            or bool(self.as_path_prepend)
        )

    def apply(
        self,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        self_next_hop: IPAddress | None = None,
        received_next_hop: IPAddress | None = None,
    ) -> tuple[PathAttributes, IPAddress | None]:
        """(attributes, next hop) after the rewrites; ``self_next_hop`` is what ``"self"`` means
        (when None, a ``"self"`` rewrite keeps the next hop), ``received_next_hop`` what
        ``"unchanged"`` means (when None, ``next_hop`` is already the one received)."""
        if not self.rewrites:
            return attrs, next_hop
        put: list[PathAttribute] = []
        drop: list[int] = []
        if self.local_pref is not None:
            put.append(LocalPref(self.local_pref))
        if self.med is not None:
            put.append(Med(self.med))
        if self.as_path_prepend:
            path = attrs.get(_AS_PATH)
            new_path = AsPath.sequence(*self.as_path_prepend) if path is None else path
            if path is not None:
                for asn in reversed(self.as_path_prepend):
                    new_path = new_path.prepend(asn)
            put.append(new_path)
        if self.communities is not None:
            _edit(attrs, _COMMUNITIES, self.communities, Communities, put, drop)
        if self.large_communities is not None:
            _edit(attrs, _LARGE_COMMUNITY, self.large_communities, LargeCommunities, put, drop)
        if self.ext_communities is not None or self.route_targets is not None:
            cur = attrs.get(_EXT_COMMUNITIES)
            values: tuple[ExtendedCommunity, ...] = () if cur is None else cur.values
            new = values
            if self.ext_communities is not None:
                new = self.ext_communities.apply(new)
            if self.route_targets is not None:
                rts = tuple(v for v in new if isinstance(v, RouteTarget))
                others = [v for v in new if not isinstance(v, RouteTarget)]
                new = (*others, *self.route_targets.apply(rts))
            if new != values:
                if new:
                    put.append(ExtendedCommunities(new))
                else:
                    drop.append(_EXT_COMMUNITIES)
        nh = next_hop
        target = self.set_next_hop
        if target is not None:
            if target == SELF:
                nh = self_next_hop if self_next_hop is not None else next_hop
            elif target == UNCHANGED:
                nh = received_next_hop if received_next_hop is not None else next_hop
            else:
                nh = target
            cur_nh = attrs.get(_NEXT_HOP)
            if cur_nh is not None and isinstance(nh, IPv4Address) and cur_nh.address != nh:
                put.append(NextHop(nh))  # IPv4 unicast carries the next hop in the attribute
        out = attrs
        if drop:
            out = out.without(*drop)
        if put:
            out = out.replace(*put)
        if out == attrs:
            out = attrs  # keep the caller's (interned) object when nothing changed
        return out, nh


def _edit(
    attrs: PathAttributes,
    code: int,
    edit: CommunityEdit[Any],
    cls: Callable[[tuple[Any, ...]], PathAttribute],
    put: list[PathAttribute],
    drop: list[int],
) -> None:
    cur = attrs.get(code)
    values = () if cur is None else cur.values
    new = edit.apply(values)
    if new == values:
        return
    if new:
        put.append(cls(new))
    else:
        drop.append(code)
