"""Protocol-agnostic routing tables: Adj-RIB-In, Loc-RIB, best path, reflection.

Pure code: routes and times in, change events out. See :mod:`vpe.rib.rib`.
"""

from .adj_rib_in import AdjRibIn, route_key
from .decision import DecisionOptions, Rank, select
from .loc_rib import Destination, LocRib
from .path import STALE, Path, PathSource, PeerInfo
from .rib import Rib, RibChange

__all__ = [
    "STALE",
    "AdjRibIn",
    "DecisionOptions",
    "Destination",
    "LocRib",
    "Path",
    "PathSource",
    "PeerInfo",
    "Rank",
    "Rib",
    "RibChange",
    "route_key",
    "select",
]
