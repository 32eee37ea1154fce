"""The VPN service layer: VRFs, route targets, import/export, labels, RDs, leaking.

Pure code (no sockets, no clock). :class:`VpnService` is the entry point;
see ``docs/vpn.md`` for the model and worked extranet / hub-and-spoke
examples. Inputs are :class:`VpnPathsChanged` batches from the RIB and
configuration calls; outputs are :class:`VpnOutput` values (VRF table
changes for the FIB, VPN routes for the speaker, labels to confirm).
"""

from .entries import (
    CONFIGURED,
    Configured,
    Endpoint,
    Leak,
    RouteKind,
    RouteOrigin,
    RouteSource,
    VrfRoute,
)
from .errors import (
    AlreadyExists,
    Conflict,
    Exhausted,
    InUse,
    InvalidValue,
    NotFound,
    UnknownLeakPolicy,
    UnknownLocalRoute,
    UnknownVrf,
    VpnError,
)
from .events import (
    ExportedRoute,
    PathIdent,
    VpnOutput,
    VpnPath,
    VpnPathsChanged,
    VrfTableChange,
    vpn_path_of,
)
from .exporter import Exporter, LocalRoute
from .importer import Importer
from .label_allocator import MAX_LABEL, MIN_LABEL, LabelAllocator, LabelSpaceExhausted
from .label_owners import (
    EndpointLabel,
    LabelOwner,
    PrefixLabel,
    VrfLabel,
    owner_from_json,
    owner_to_json,
)
from .leaking import Leaker, LeakPolicy, PrefixListEntry
from .rd_allocator import RdAllocator, parse_rd
from .route_target import (
    RouteTargetIndex,
    RouteTargets,
    format_route_targets,
    matches,
    parse_route_target,
    parse_route_targets,
    route_targets_of,
)
from .service import VpnService
from .vrf import LabelMode, Vrf, parse_label_mode, prefix_key

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Exhausted",
    "InUse",
    "InvalidValue",
    "NotFound",
    "UnknownLeakPolicy",
    "UnknownLocalRoute",
    "UnknownVrf",
    "VpnError",
    "CONFIGURED",
    "MAX_LABEL",
    "MIN_LABEL",
    "ExportedRoute",
    "Configured",
    "Endpoint",
    "EndpointLabel",
    "Exporter",
    "Importer",
    "LabelAllocator",
    "LabelMode",
    "LabelOwner",
    "LabelSpaceExhausted",
    "Leak",
    "LeakPolicy",
    "Leaker",
    "LocalRoute",
    "PathIdent",
    "PrefixLabel",
    "PrefixListEntry",
    "RdAllocator",
    "RouteKind",
    "RouteOrigin",
    "RouteSource",
    "RouteTargetIndex",
    "RouteTargets",
    "Vrf",
    "VrfLabel",
    "VrfRoute",
    "VpnOutput",
    "VpnPath",
    "VpnPathsChanged",
    "VpnService",
    "VrfTableChange",
    "format_route_targets",
    "owner_from_json",
    "owner_to_json",
    "matches",
    "parse_label_mode",
    "parse_rd",
    "parse_route_target",
    "parse_route_targets",
    "prefix_key",
    "route_targets_of",
    "vpn_path_of",
]
