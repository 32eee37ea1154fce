"""Path attributes; importing this package registers every known type."""

from . import (
    aggregator,
    as_path,
    cluster_list,
    communities,
    extended_communities,
    large_community,
    next_hop,
    origin,
    pmsi_tunnel,
    simple,
    tunnel_encap,
)
from .aggregator import Aggregator, As4Aggregator
from .as_path import As4Path, AsPath, AsSegment, SegmentType, reconcile_as4, split_as4
from .base import ATTRIBUTES, PathAttribute, PathAttributes, UnknownAttribute, register
from .cluster_list import ClusterList
from .communities import Communities
from .extended_communities import (
    Color,
    Encapsulation,
    ExtendedCommunities,
    ExtendedCommunity,
    MacMobility,
    OpaqueExtendedCommunity,
    RouteOrigin,
    RouteTarget,
    parse_ext_community,
)
from .large_community import LargeCommunities
from .next_hop import NextHop
from .origin import Origin, OriginType
from .pmsi_tunnel import PmsiTunnel, PmsiTunnelType
from .simple import AtomicAggregate, LocalPref, Med, OriginatorId
from .tunnel_encap import Tunnel, TunnelEncapsulation
from .tunnel_types import TunnelType

__all__ = [
    "ATTRIBUTES",
    "Aggregator",
    "As4Aggregator",
    "As4Path",
    "AsPath",
    "AsSegment",
    "AtomicAggregate",
    "ClusterList",
    "Color",
    "Communities",
    "Encapsulation",
    "ExtendedCommunities",
    "ExtendedCommunity",
    "LargeCommunities",
    "LocalPref",
    "MacMobility",
    "Med",
    "NextHop",
    "OpaqueExtendedCommunity",
    "Origin",
    "OriginType",
    "OriginatorId",
    "PathAttribute",
    "PathAttributes",
    "PmsiTunnel",
    "PmsiTunnelType",
    "RouteOrigin",
    "RouteTarget",
    "SegmentType",
    "Tunnel",
    "TunnelEncapsulation",
    "TunnelType",
    "UnknownAttribute",
    "aggregator",
    "as_path",
    "cluster_list",
    "communities",
    "extended_communities",
    "large_community",
    "next_hop",
    "origin",
    "parse_ext_community",
    "pmsi_tunnel",
    "register",
    "reconcile_as4",
    "simple",
    "split_as4",
    "tunnel_encap",
]
