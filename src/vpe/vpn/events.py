"""Values that cross the VPN layer's edges: VPN paths in, VRF table changes and exports out.

In (from the RIB): :class:`VpnPathsChanged` batches of :class:`VpnPath`
values, defined in :mod:`vpe.vpn.paths` and re-exported here.

Out: :class:`VrfTableChange` - one VRF prefix and its new forwarding set,
for the FIB channel; :class:`ExportedRoute` - a VPN route ready for
``Speaker.announce(family, [nlri], attributes, next_hop)`` or
``Speaker.withdraw(family, [nlri])``; both gathered in :class:`VpnOutput`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import IPAddress, Nlri
from ..bgp.wire.nlri.prefix import format_prefix, make_network
from .entries import VrfRoute
from .paths import BestPathLike, PathIdent, VpnPath, VpnPathsChanged, vpn_path_of

__all__ = [
    "BestPathLike",
    "ExportedRoute",
    "PathIdent",
    "VpnOutput",
    "VpnPath",
    "VpnPathsChanged",
    "VrfTableChange",
    "vpn_path_of",
]

class VrfTableChange(NamedTuple):
    """The forwarding set of ``prefix`` in VRF ``vrf`` is now ``routes`` (empty: delete).

    ``prefix`` is the table key: prefix-length octet + minimal prefix octets;
    ``version`` (4 or 6) says how to read it.
    """

    vrf: str
    version: int
    prefix: bytes
    routes: tuple[VrfRoute, ...]
    #: the path the forwarders pre-install for when every ``routes`` next hop
    #: is down (R11.2, docs/fast-reroute.md): the best remote entry outside the set
    backup: tuple[VrfRoute, ...] = ()

    @property
    def network(self) -> Any:
        return make_network(self.prefix[1:], self.prefix[0], self.version)

    def __str__(self) -> str:
        p = format_prefix(self.prefix[1:], self.prefix[0], self.version)
        return f"{self.vrf} {p}: {len(self.routes)} route(s)"


class ExportedRoute(NamedTuple):
    """A VPN route this vPE originates, in the shape ``Speaker.announce`` takes."""

    family: Family
    nlri: Nlri
    attributes: PathAttributes
    next_hop: IPAddress


@dataclass(slots=True)
class VpnOutput:
    """Everything one VPN-layer operation produced.

    ``released_labels`` must be passed back to
    :meth:`vpe.vpn.service.VpnService.labels_withdrawn` once ``withdraw`` /
    ``announce`` have been sent, so those labels can start their hold-down.
    """

    table_changes: list[VrfTableChange] = field(default_factory=list)
    announce: list[ExportedRoute] = field(default_factory=list)
    withdraw: list[ExportedRoute] = field(default_factory=list)
    released_labels: list[int] = field(default_factory=list)

    def extend(self, other: VpnOutput) -> None:
        self.table_changes.extend(other.table_changes)
        self.announce.extend(other.announce)
        self.withdraw.extend(other.withdraw)
        self.released_labels.extend(other.released_labels)

    def announce_groups(self) -> Iterator[tuple[Family, PathAttributes, IPAddress, list[Nlri]]]:
        """Announcements grouped by (family, attributes, next hop): one
        ``Speaker.announce`` call each, packed densely into UPDATEs."""
        groups: dict[tuple[Family, PathAttributes, IPAddress], list[Nlri]] = {}
        for r in self.announce:
            groups.setdefault((r.family, r.attributes, r.next_hop), []).append(r.nlri)
        for (fam, attrs, nh), nlris in groups.items():
            yield fam, attrs, nh, nlris

    def withdraw_groups(self) -> Iterator[tuple[Family, list[Nlri]]]:
        groups: dict[Family, list[Nlri]] = {}
        for r in self.withdraw:
            groups.setdefault(r.family, []).append(r.nlri)
        yield from groups.items()

    def changes_by_vrf(self) -> dict[str, list[VrfTableChange]]:
        out: dict[str, list[VrfTableChange]] = {}
        for c in self.table_changes:
            out.setdefault(c.vrf, []).append(c)
        return out
