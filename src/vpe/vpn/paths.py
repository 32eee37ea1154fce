"""VPN paths: what the VPN layer takes in from the RIB.

:class:`VpnPathsChanged` carries the paths of VPN destinations whose best
path / multipath set changed, as ``removes`` and ``adds`` lists of
:class:`VpnPath` ``(family, nlri, attributes, next_hop, labels)``. Wiring the
RIB is a few lines: for each changed key of a :class:`vpe.rib.RibChange` of
family VPNv4/VPNv6, the old multipath set goes to ``removes`` and the new one
to ``adds`` (:func:`vpn_path_of` reads anything shaped like ``vpe.rib.Path``).
An add whose identity (:attr:`VpnPath.ident`) is already known replaces it.

A :class:`VpnPath` is also the origin of every VRF entry imported from it
(:mod:`vpe.vpn.entries`): the entry points back to the path, no copy made.
This module sits below the VRF tables and the output events, so both can
name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import Family
from ..bgp.wire.nlri.base import IPAddress, Nlri

#: identity of a VPN path: (NLRI key, path id, packed next hop or b"").
#: Bytes, not address objects: they hash once (cached) and leave the tuple
#: untracked by the garbage collector.
PathIdent = tuple[bytes, int, bytes]


class VpnPath(NamedTuple):
    """One VPN path as the RIB selected it (the RD is inside ``nlri.key``)."""

    family: Family
    nlri: Nlri
    attributes: PathAttributes
    next_hop: IPAddress | None
    labels: tuple[int, ...]

    @property
    def ident(self) -> PathIdent:
        nh = self.next_hop
        return (self.nlri.key, self.nlri.path_id, nh.packed if nh is not None else b"")

    def __str__(self) -> str:
        """The VPN route's text form, ``RD:prefix`` (as an imported entry shows its origin)."""
        return str(self.nlri)


class BestPathLike(Protocol):
    """What :func:`vpn_path_of` needs of a RIB path (``vpe.rib.Path`` has it)."""

    @property
    def nlri(self) -> Nlri: ...

    @property
    def attrs(self) -> PathAttributes: ...

    @property
    def next_hop(self) -> IPAddress | None: ...


def vpn_path_of(family: Family, path: BestPathLike) -> VpnPath:
    nlri = path.nlri
    return VpnPath(family, nlri, path.attrs, path.next_hop, tuple(getattr(nlri, "labels", ())))


@dataclass(slots=True)
class VpnPathsChanged:
    """A batch of "best path changed" results for VPN destinations."""

    adds: list[VpnPath] = field(default_factory=list)
    removes: list[VpnPath] = field(default_factory=list)
