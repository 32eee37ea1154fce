"""Import policy: one received UPDATE in, the UPDATEs to apply to the RIB out.

The RIB never sees a rejected route as an announcement: it becomes a
withdrawal, so a route accepted earlier and rejected now (after a policy
change, or because its attributes changed) is removed rather than kept.
Accepted routes are grouped by their resulting (family, attributes, next
hop), one UPDATE per group, so routes that shared an attribute set still
share one (rewritten, cached) set and one RIB path source.

The function is pure; the caller applies each returned UPDATE in order
(``rib.apply_update(peer, u)``). Without a policy, or for End-of-RIB and
treat-as-withdraw UPDATEs, the UPDATE comes back as it is.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import IPV4_UNICAST, Family
from ..bgp.wire.errors import UpdateAction
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.update import MpReach, MpUnreach, Update
from .policy import Policy

IPAddress = IPv4Address | IPv6Address


def import_updates(
    policy: Policy | None, update: Update, self_next_hop: IPAddress | None = None,
    rejected: list[Nlri] | None = None,
) -> list[Update]:
    """``update`` filtered and rewritten by ``policy``: withdrawals first, then one
    UPDATE per resulting (family, attributes, next hop). ``self_next_hop`` is what a
    ``next_hop = "self"`` rewrite sets (None: such a rewrite keeps the next hop).
    The routes the policy rejected are appended to ``rejected`` when given (to log them)."""
    if policy is None or update.action >= UpdateAction.TREAT_AS_WITHDRAW:
        return [update]
    if not update.nlri and (update.mp_reach is None or not update.mp_reach.nlri):
        return [update]  # withdrawals only, or End-of-RIB: nothing to decide
    attrs = update.attributes
    withdrawn: dict[Family, list[Nlri]] = {}
    for fam, n in update.withdrawn_routes():
        withdrawn.setdefault(fam, []).append(n)
    groups: dict[tuple[Family, PathAttributes, IPAddress | None], list[Nlri]] = {}
    link_local = update.mp_reach.link_local if update.mp_reach is not None else None
    per_route = policy.route_dependent
    for fam, nlris, nh in _announced(update):
        if not per_route:
            v = policy.evaluate(fam, attrs, nh, None, self_next_hop)
            if v.accept:
                groups.setdefault((fam, v.attrs, v.next_hop), []).extend(nlris)
            else:
                withdrawn.setdefault(fam, []).extend(nlris)
                if rejected is not None:
                    rejected.extend(nlris)
            continue
        for n in nlris:
            idx = policy.select(fam, attrs, nh, n.key)
            v = policy.verdict(idx, attrs, nh, self_next_hop)
            if v.accept:
                groups.setdefault((fam, v.attrs, v.next_hop), []).append(n)
            else:
                withdrawn.setdefault(fam, []).append(n)
                if rejected is not None:
                    rejected.append(n)
    out: list[Update] = []
    errors = update.errors
    action = update.action
    for fam, ns in withdrawn.items():
        if fam == IPV4_UNICAST:
            out.append(Update(PathAttributes(), withdrawn=ns, action=action, errors=errors))
        else:
            out.append(Update(PathAttributes(), mp_unreach=MpUnreach(fam, ns), action=action, errors=errors))
    for (fam, a, nh), ns in groups.items():
        if fam == IPV4_UNICAST and update.mp_reach is None:
            out.append(Update(a, nlri=ns, action=action, errors=errors))
        else:
            out.append(Update(a, mp_reach=MpReach(fam, nh, ns, link_local), action=action, errors=errors))
    return out


def _announced(update: Update) -> list[tuple[Family, list[Nlri], IPAddress | None]]:
    """(family, routes, next hop) runs of the UPDATE's announcements."""
    runs: list[tuple[Family, list[Nlri], IPAddress | None]] = []
    if update.nlri:
        nh = update.attributes.get(3)  # NEXT_HOP
        runs.append((IPV4_UNICAST, update.nlri, nh.address if nh is not None else None))
    mp = update.mp_reach
    if mp is not None and mp.nlri:
        runs.append((mp.family, mp.nlri, mp.next_hop))
    return runs
