"""Route distinguishers of this vPE's VRFs: configured, or ``router-id:n`` allocated.

RFC 4364 section 4.2 only asks that an RD make a VPN-IPv4 address unique;
the usual practice, followed here, is a type 1 RD per VRF per PE:
``<router id>:<n>`` with ``n`` unique on this router (1..65535). Two VRFs of
one vPE never share an RD: the exported VPN routes of the two would be the
same NLRI, and :mod:`vpe.vpn.importer` tells the VRF a route came from by
its RD.

Allocation takes the lowest free ``n`` (deterministic) and skips numbers a
configured RD of the same form already uses. :meth:`dump`/:meth:`restore`
keep "VRF name -> RD" so a restarted agent re-advertises the same RDs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from ipaddress import IPv4Address

from ..bgp.wire.nlri.rd import RouteDistinguisher
from .errors import Exhausted, InUse, InvalidValue

_MAX_N = 0xFFFF


def parse_rd(text: str | RouteDistinguisher, field: str = "rd") -> RouteDistinguisher:
    """An RD from ``"65000:1"``, ``"192.0.2.1:7"``, ``"4200000000:7"``, ``"65000L:7"``.

    ``ValueError`` names ``field`` and the value.
    """
    if isinstance(text, RouteDistinguisher):
        return text
    if not isinstance(text, str):
        raise InvalidValue(f"{field}: {text!r} is not a route distinguisher string")
    try:
        return RouteDistinguisher.from_str(text.strip())
    except ValueError as e:
        raise InvalidValue(f"{field}: {text!r} is not a route distinguisher ({e})") from None


class RdAllocator:
    """The RDs in use on this vPE, by VRF name."""

    __slots__ = ("router_id", "_by_vrf", "_owner", "_next", "_freed", "_preferred", "_dirty")

    def __init__(self, router_id: IPv4Address | str) -> None:
        try:
            self.router_id = IPv4Address(router_id)
        except ValueError:
            raise InvalidValue(f"router-id: {router_id!r} is not an IPv4 address") from None
        self._by_vrf: dict[str, RouteDistinguisher] = {}
        self._owner: dict[RouteDistinguisher, str] = {}
        self._next = 1
        self._freed: list[int] = []  # heap of released auto numbers below _next
        self._preferred: dict[str, RouteDistinguisher] = {}  # from restore()
        self._dirty: set[str] = set()  # VRFs whose RD changed since take_changes()

    def rd_of(self, vrf: str) -> RouteDistinguisher | None:
        return self._by_vrf.get(vrf)

    def claim(self, vrf: str, rd: RouteDistinguisher) -> RouteDistinguisher:
        """Give ``vrf`` a configured RD; ``ValueError`` if another VRF has it."""
        holder = self._owner.get(rd)
        if holder is not None and holder != vrf:
            raise InUse(f"rd: {rd} is already used by VRF {holder!r}")
        self.release(vrf)
        self._by_vrf[vrf] = rd
        self._owner[rd] = vrf
        self._dirty.add(vrf)
        return rd

    def allocate(self, vrf: str) -> RouteDistinguisher:
        """``router-id:n`` for ``vrf`` (its restored RD if it had one and it is free)."""
        have = self._by_vrf.get(vrf)
        if have is not None:
            return have
        pref = self._preferred.pop(vrf, None)
        if pref is not None and pref not in self._owner:
            return self.claim(vrf, pref)
        while True:
            if self._freed:
                n = heapq.heappop(self._freed)
            elif self._next <= _MAX_N:
                n = self._next
                self._next += 1
            else:
                raise Exhausted(
                    f"rd: no free '{self.router_id}:n' route distinguisher left for VRF {vrf!r}"
                )
            rd = RouteDistinguisher.type1(self.router_id, n)
            if rd not in self._owner:
                return self.claim(vrf, rd)

    def release(self, vrf: str) -> None:
        rd = self._by_vrf.pop(vrf, None)
        if rd is None:
            return
        self._dirty.add(vrf)
        del self._owner[rd]
        if rd.type == 1 and rd.raw[2:6] == self.router_id.packed:
            n = rd.assigned
            if 1 <= n < self._next:
                heapq.heappush(self._freed, n)

    def dump(self) -> dict[str, str]:
        return {name: str(rd) for name, rd in sorted(self._by_vrf.items())}

    def take_changes(self) -> dict[str, str | None]:
        """VRF -> its RD now (None: it has none) for every VRF whose RD changed
        since the last call; costs the changes, not the VRFs."""
        out = {}
        for name in sorted(self._dirty):
            rd = self._by_vrf.get(name)
            out[name] = None if rd is None else str(rd)
        self._dirty.clear()
        return out

    def changes_lost(self, names: Iterable[str]) -> None:
        """The changes :meth:`take_changes` returned were not stored: report them again."""
        self._dirty.update(names)

    def drop_preferred(self) -> list[str]:
        """Forget the restored RDs no VRF took back (after a restart's replay);
        they count as changed (gone). Returns their VRF names."""
        gone = [n for n in self._preferred if n not in self._by_vrf]
        self._preferred.clear()
        self._dirty.update(gone)
        return gone

    def restore(self, state: dict[str, str]) -> None:
        """Prefer these RDs when the named VRFs ask for an automatic RD again."""
        for name, text in state.items():
            self._preferred[name] = parse_rd(text, f"rd of VRF {name!r}")
