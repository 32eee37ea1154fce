"""Path values: who sent a route (PeerInfo), what one UPDATE shares (PathSource), one route (Path).

Every route of one UPDATE shares its peer, its attribute set and its next
hop, so those live once in a :class:`PathSource`; a :class:`Path` is the pair
(NLRI, source) plus a flags word. The decision process ranks a source once
for all its routes.

The tables do not keep a Path object per route: an Adj-RIB-In maps each
route to its NLRI, and a Loc-RIB destination with a single path maps to that
path's source (see :mod:`vpe.rib.loc_rib`). A full table then costs two dict
entries per route and no per-route object for the garbage collector to walk,
which is what makes a million-route load fast in Python. Paths are made on
demand when read, so they compare by content: two Paths are equal when they
hold the same NLRI object and the same source object, i.e. the same route as
received. ``flags`` is a snapshot taken when the Path was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.nlri.base import Nlri

IPAddress = IPv4Address | IPv6Address

#: how an Adj-RIB-In indexes a route: the NLRI key alone when the path id is 0
#: (the common case: no tuple per route), ``(key, path_id)`` with add-path
#: (RFC 7911). The two forms never collide since bytes never equal a tuple.
RouteKey = bytes | tuple[bytes, int]


def route_key(key: bytes, path_id: int = 0) -> RouteKey:
    return (key, path_id) if path_id else key


def nlri_route_key(nlri: Nlri) -> RouteKey:
    pid = nlri.path_id
    return (nlri.key, pid) if pid else nlri.key


class ReceivedRoutes(Protocol):
    """What the Loc-RIB reads of the Adj-RIB-In a :class:`PathSource` belongs to
    (:class:`vpe.rib.adj_rib_in.AdjRibIn` has it). Named here, below both
    tables, so the Loc-RIB need not import the Adj-RIB-In that reads through it."""

    @property
    def routes(self) -> dict[RouteKey, Nlri]:
        """route key -> NLRI as last received"""
        ...

    @property
    def stale(self) -> set[RouteKey]:
        """route keys still stale since the last graceful restart"""
        ...

#: Path.flags bits.
STALE = 0x1  # kept across a graceful restart until re-announced or swept (RFC 4724)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the decision process and reflection need to know about a route's sender.

    ``local`` marks routes this speaker originates (VRF exports, aggregates);
    their ``address`` is conventionally 0.0.0.0 and ``asn`` our own AS.
    """

    address: IPAddress
    router_id: IPv4Address
    asn: int
    ibgp: bool
    rr_client: bool = False
    local: bool = False
    #: times our own AS may appear in a received AS_PATH (0: none, the RFC 4271 loop check)
    allowas_in: int = 0

    @classmethod
    def local_origin(cls, router_id: IPv4Address | str, asn: int) -> PeerInfo:
        """The pseudo-peer of locally originated routes."""
        return cls(IPv4Address(0), IPv4Address(router_id), asn, ibgp=False, local=True)

    @property
    def ebgp(self) -> bool:
        return not self.ibgp and not self.local


class PathSource:
    """The part of a path shared by every route of one UPDATE: peer, attributes, next hop.

    ``adj`` (the Adj-RIB-In holding the routes), ``rank`` and ``rank_owner``
    (the decision-process sort key, cached for the table that computed it)
    are bookkeeping of the tables, not part of the value.
    """

    __slots__ = ("peer", "attrs", "next_hop", "adj", "rank", "rank_owner")

    def __init__(
        self,
        peer: PeerInfo,
        attrs: PathAttributes,
        next_hop: IPAddress | None,
        adj: ReceivedRoutes | None = None,
    ) -> None:
        self.peer = peer
        self.attrs = attrs
        self.next_hop = next_hop
        self.adj = adj
        self.rank: Any = None
        self.rank_owner: object = None

    def same(self, other: PathSource) -> bool:
        """Same peer, attributes and next hop (content, not identity)."""
        return self is other or (
            self.attrs == other.attrs and self.next_hop == other.next_hop and self.peer == other.peer
        )

    def __repr__(self) -> str:
        return f"PathSource(peer={self.peer.address}, next_hop={self.next_hop}, attrs={self.attrs!r})"


class Path:
    """One route from one peer: (peer, nlri, attrs, next_hop, labels, flags)."""

    __slots__ = ("nlri", "source", "flags")

    def __init__(self, nlri: Nlri, source: PathSource, flags: int = 0) -> None:
        self.nlri = nlri
        self.source = source
        self.flags = flags

    @classmethod
    def make(
        cls,
        peer: PeerInfo,
        nlri: Nlri,
        attrs: PathAttributes,
        next_hop: IPAddress | None = None,
        flags: int = 0,
    ) -> Path:
        """A path with a source of its own (for tests and one-off routes)."""
        return cls(nlri, PathSource(peer, attrs, next_hop), flags)

    @property
    def peer(self) -> PeerInfo:
        return self.source.peer

    @property
    def attrs(self) -> PathAttributes:
        return self.source.attrs

    @property
    def next_hop(self) -> IPAddress | None:
        return self.source.next_hop

    @property
    def labels(self) -> tuple[int, ...]:
        """MPLS labels of the route (carried by labeled and VPN NLRI), else ()."""
        return tuple(getattr(self.nlri, "labels", ()) or ())

    @property
    def key(self) -> bytes:
        return self.nlri.key

    @property
    def path_id(self) -> int:
        return self.nlri.path_id

    @property
    def stale(self) -> bool:
        return bool(self.flags & STALE)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Path and self.nlri is other.nlri and self.source is other.source
        )

    def __hash__(self) -> int:
        return hash((id(self.nlri), id(self.source)))

    def same_route(self, other: Path) -> bool:
        """Same content (source content and NLRI including labels), flags aside."""
        return self.source.same(other.source) and same_nlri(self.nlri, other.nlri)

    def __repr__(self) -> str:
        stale = ", stale" if self.flags & STALE else ""
        return f"Path({self.nlri!r} from {self.source.peer.address} via {self.source.next_hop}{stale})"


_SLOTS: dict[type, tuple[str, ...]] = {}


def same_nlri(a: Nlri, b: Nlri) -> bool:
    """Equal NLRI values, every slot compared (labels too); fast for one class."""
    if a is b:
        return True
    cls = type(a)
    if type(b) is not cls:
        return False
    names = _SLOTS.get(cls)
    if names is None:
        names = _SLOTS[cls] = tuple(
            s for k in reversed(cls.__mro__) for s in getattr(k, "__slots__", ())
        )
    return all(getattr(a, s) == getattr(b, s) for s in names)
