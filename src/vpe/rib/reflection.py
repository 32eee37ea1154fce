"""Route reflection (RFC 4456) and the iBGP split horizon, as pure functions.

Who may receive a path depends only on who sent it and who would receive it:

* a locally originated path, or one learned over eBGP, goes to every peer;
* a path learned over iBGP goes to eBGP peers; to iBGP peers only when we
  reflect: from a client to every iBGP peer, from a non-client to clients;
* never back to the peer it came from, nor to the router named in its
  ORIGINATOR_ID (which would drop it anyway, RFC 4456 8).

When a path is reflected, ORIGINATOR_ID is set (if absent) to the router id
of the peer it came from and our cluster id is prepended to CLUSTER_LIST.
Inbound, a path carrying our router id as ORIGINATOR_ID, or our cluster id in
its CLUSTER_LIST, is a reflection loop and must be ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.constants import AttrCode
from . import attrs as A
from .path import Path, PeerInfo


def may_advertise(
    source: PeerInfo,
    to: PeerInfo,
    *,
    route_reflector: bool = False,
    originator_id: IPv4Address | None = None,
) -> bool:
    """May a path learned from ``source`` be advertised to ``to``?"""
    if to.local:
        return False
    if not source.local and to.address == source.address:
        return False
    if originator_id is not None and to.ibgp and to.router_id == originator_id:
        return False
    if source.local or not source.ibgp:
        return True
    if not to.ibgp:
        return True
    if not route_reflector:
        return False
    return source.rr_client or to.rr_client


def advertise_targets(
    path: Path, peers: Iterable[PeerInfo], *, route_reflector: bool = False
) -> list[PeerInfo]:
    """The peers among ``peers`` that ``path`` may be advertised to."""
    src = path.peer
    oid = A.originator_id(path.attrs)
    return [p for p in peers if may_advertise(src, p, route_reflector=route_reflector, originator_id=oid)]


def is_reflection(source: PeerInfo, to: PeerInfo) -> bool:
    """True when sending ``source``'s path to ``to`` reflects it (iBGP to iBGP)."""
    return source.ibgp and not source.local and to.ibgp and not to.local


def reflected_attributes(
    attrs: PathAttributes, source: PeerInfo, cluster_id: IPv4Address
) -> PathAttributes:
    """``attrs`` as a reflector sends them on: ORIGINATOR_ID set if absent, cluster id prepended."""
    return A.with_cluster_id(A.with_originator_id(attrs, source.router_id), cluster_id)


def outbound_reflection_attributes(
    attrs: PathAttributes, source: PeerInfo, to: PeerInfo, cluster_id: IPv4Address
) -> PathAttributes:
    """The RR part of outbound attribute handling for one (source, receiver) pair.

    Reflected paths get :func:`reflected_attributes`; towards eBGP peers the
    AS-internal ORIGINATOR_ID and CLUSTER_LIST are removed. Everything else
    (next hop, AS_PATH prepend, LOCAL_PREF/MED) is Adj-RIB-Out's business.
    """
    if is_reflection(source, to):
        return reflected_attributes(attrs, source, cluster_id)
    if not to.ibgp and not to.local:
        codes = [c for c in (AttrCode.ORIGINATOR_ID, AttrCode.CLUSTER_LIST) if c in attrs]
        if codes:
            return attrs.without(*codes)
    return attrs


def inbound_loop(
    attrs: PathAttributes,
    router_id: IPv4Address | None,
    cluster_id: IPv4Address | None,
    local_asn: int | None = None,
    allowas_in: int = 0,
) -> str | None:
    """Why a received path must be ignored as a loop, or None if it need not.

    ORIGINATOR_ID equal to our ``router_id`` or our ``cluster_id`` in
    CLUSTER_LIST (RFC 4456 8); with ``local_asn`` (pass it for eBGP
    sessions) our AS in AS_PATH (RFC 4271 9.1.2), tolerated up to
    ``allowas_in`` times (the knob of the same name: hub-and-spoke across
    one AS, two sites of one customer AS behind different providers).
    """
    if router_id is not None and A.originator_id(attrs) == router_id:
        return f"ORIGINATOR_ID {router_id} is our router id"
    if cluster_id is not None and cluster_id in A.cluster_list(attrs):
        return f"our cluster id {cluster_id} is in CLUSTER_LIST"
    if local_asn is not None and A.as_path_contains(attrs, local_asn):
        if allowas_in <= 0:
            return f"our AS {local_asn} is in AS_PATH"
        n = A.as_path_count(attrs, local_asn)
        if n > allowas_in:
            return f"our AS {local_asn} is in AS_PATH {n} times (allowas_in {allowas_in})"
    return None
