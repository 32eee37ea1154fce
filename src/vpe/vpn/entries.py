"""The entries of a VRF table, and where each came from (its origin).

A :class:`VrfRoute` is one entry of one prefix of a VRF; its ``origin`` is
one of four typed values, never a bare string or None:

* a :class:`~vpe.vpn.paths.VpnPath` - imported from that VPN path (the path
  itself: one object per path however many VRFs import it, nothing copied);
* :class:`Endpoint` - a local route leading to an attached endpoint;
* :class:`Configured` - a local route with no endpoint (static, subnet,
  aggregate, or a host route configured without one);
* :class:`Leak` - copied from another VRF's entry by a leak policy.

``source`` (:class:`RouteSource`) says the same coarsely and is the first
element of the rank. This module sits below the VRF table
(:mod:`vpe.vpn.vrf`) and the output events (:mod:`vpe.vpn.events`), which
both name these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from ipaddress import IPv4Network, IPv6Network
from typing import Any, NamedTuple

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.tunnel_types import tunnel_name
from ..bgp.wire.nlri.base import IPAddress
from ..bgp.wire.nlri.prefix import format_prefix, make_network
from .paths import VpnPath

IPNetwork = IPv4Network | IPv6Network


class RouteSource(IntEnum):
    """Where a VRF entry came from; also the first element of its rank."""

    LOCAL = 0
    IMPORTED = 1
    LEAKED = 2


class RouteKind(StrEnum):
    """What a local route is; imported entries have the kind ``vpn``."""

    HOST = "host"  # an attached endpoint's address
    STATIC = "static"  # configured, via a next hop inside the VRF
    SUBNET = "subnet"  # an attached segment
    AGGREGATE = "aggregate"  # a summary: label triggers an IP lookup (R10.3)
    VPN = "vpn"  # imported from a VPN route


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Origin of a local route that leads to the attached endpoint ``name``
    (a port name; the FIB delivers to it)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Configured:
    """Origin of a local route not tied to an endpoint: static, subnet,
    aggregate (use :data:`CONFIGURED`, all are equal)."""

    def __str__(self) -> str:
        return "configured"


CONFIGURED = Configured()


@dataclass(frozen=True, slots=True)
class Leak:
    """Origin of a leaked entry: the source VRF and its entry that was copied."""

    vrf: str
    route: VrfRoute


#: where a VRF entry came from (see the module docstring)
RouteOrigin = VpnPath | Endpoint | Configured | Leak


class VrfRoute(NamedTuple):
    """One entry of a VRF table.

    ``next_hop`` is the remote vPE/PE for imported entries, the in-VRF next
    hop of a static route, or None (deliver locally / IP lookup). ``labels``
    is the stack to push toward ``next_hop`` for imported entries, and the
    label this vPE allocated for local ones (empty if not exported).
    ``encapsulation`` lists tunnel types (RFC 9012 numbers) the next hop
    accepts. ``origin`` says where the entry came from (:data:`RouteOrigin`).
    """

    version: int
    prefix: bytes
    next_hop: IPAddress | None
    labels: tuple[int, ...]
    encapsulation: tuple[int, ...]
    source: RouteSource
    origin: RouteOrigin
    attributes: PathAttributes | None
    rank: tuple[int, ...]
    kind: RouteKind

    @property
    def network(self) -> IPNetwork:
        return make_network(self.prefix[1:], self.prefix[0], self.version)

    @property
    def prefix_text(self) -> str:
        return format_prefix(self.prefix[1:], self.prefix[0], self.version)

    @property
    def ident(self) -> tuple[Any, ...]:
        """Identity within one prefix of one VRF: a new entry with the same
        identity replaces the old one."""
        src = self.source
        o = self.origin
        if src is RouteSource.IMPORTED:
            assert isinstance(o, VpnPath)
            nlri = o.nlri
            return (1, nlri.key, nlri.path_id, self.next_hop)
        if src is RouteSource.LEAKED:
            assert isinstance(o, Leak)
            return (2, o.vrf, o.route.ident)
        return (0,)

    @property
    def endpoint(self) -> str | None:
        """The attached endpoint a local entry leads to, if any."""
        o = self.origin
        return o.name if isinstance(o, Endpoint) else None

    @property
    def leaked_from(self) -> str | None:
        o = self.origin
        return o.vrf if isinstance(o, Leak) else None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "prefix": self.prefix_text,
            "source": self.source.name.lower(),
            "kind": self.kind.value,
            "next_hop": str(self.next_hop) if self.next_hop is not None else None,
            "labels": list(self.labels),
            "encapsulation": [tunnel_name(t) for t in self.encapsulation],
        }
        o = self.origin
        if isinstance(o, Leak):
            d["leaked_from"] = o.vrf
            d["leaked_route"] = o.route.to_json()
        elif isinstance(o, VpnPath):
            d["vpn_route"] = str(o.nlri)
        elif isinstance(o, Endpoint):
            d["endpoint"] = o.name
        if self.attributes is not None:
            d["attributes"] = self.attributes.to_json()
        return d
