"""Ingress replication for VPN broadcast and multicast (R3.2), signalled in BGP.

Every VRF of a vPE originates one IPv4 MCAST-VPN Intra-AS I-PMSI A-D route
(RFC 6514 section 4.1: RD + originating router) carrying the VRF's export
route targets and a PMSI Tunnel attribute of type ingress replication
(RFC 6514 section 5, type 6) whose tunnel identifier is the vPE's underlay
address and whose label is the VRF's aggregate label ("IP lookup in this
VRF"). A vPE importing such a route into a VRF (the usual RT match of RFC
4364 4.3.1) adds the originator to that VRF's replication list: each VPN
broadcast or multicast packet gets one tunnelled copy per member, so the
underlay needs no IP multicast. The receiving vPE floods the copy to its
local ports of the VRF only.

One route per VRF serves both IPv4 and IPv6 C-multicast: the forwarder
floods by VRF, not by group (no C-multicast routing, no S-PMSI). The
Encapsulation extended communities of the local forwarder ride along, so the
sender picks a tunnel type the receiver accepts, exactly as for unicast.

Pure code: values in, values out; the engine does the RIB and FIB calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    ExtendedCommunity,
)
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.attributes.pmsi_tunnel import PmsiTunnel, PmsiTunnelType
from ..bgp.wire.attributes.simple import LocalPref
from ..bgp.wire.constants import AttrCode
from ..bgp.wire.nlri.mcast_vpn import INTRA_AS_I_PMSI_AD, IPv4McastVpnRoute
from ..bgp.wire.nlri.rd import RouteDistinguisher
from ..dataplane.driver import Encap, NextHop
from ..rib.path import Path
from ..vpn.route_target import RouteTargets, matches, route_targets_of

IPAddress = IPv4Address | IPv6Address


def i_pmsi_route(
    rd: RouteDistinguisher,
    originator: IPAddress,
    label: int,
    export_rts: RouteTargets,
    encapsulations: Iterable[int],
    local_pref: int = 100,
) -> tuple[IPv4McastVpnRoute, PathAttributes]:
    """The Intra-AS I-PMSI A-D route of one VRF and its attributes."""
    nlri = IPv4McastVpnRoute.intra_as_i_pmsi_ad(rd, originator)
    values: list[ExtendedCommunity] = sorted(export_rts, key=lambda rt: rt.encode())
    values.extend(Encapsulation(t) for t in encapsulations)
    attrs = PathAttributes(
        (
            Origin(OriginType.IGP),
            AsPath(),
            LocalPref(local_pref),
            ExtendedCommunities(tuple(values)),
            PmsiTunnel.ingress_replication(originator, label=label),
        )
    )
    return nlri, attrs


def _encapsulations(attrs: PathAttributes) -> tuple[int, ...]:
    ec = attrs.get(AttrCode.EXTENDED_COMMUNITIES)
    if not isinstance(ec, ExtendedCommunities):
        return ()
    return tuple(e.tunnel_type for e in ec.values if isinstance(e, Encapsulation))


def replication_member(path: Path, encap_for: Callable[[tuple[int, ...]], Encap]) -> NextHop | None:
    """The remote next hop an I-PMSI A-D path with ingress replication stands for."""
    nlri = path.nlri
    if not isinstance(nlri, IPv4McastVpnRoute) or nlri.route_type != INTRA_AS_I_PMSI_AD:
        return None
    pmsi = path.attrs.get(AttrCode.PMSI_TUNNEL)
    if not isinstance(pmsi, PmsiTunnel) or pmsi.tunnel_type != PmsiTunnelType.INGRESS_REPLICATION:
        return None
    endpoint = pmsi.endpoint
    label = pmsi.label
    if endpoint is None or label < 16:
        return None
    if isinstance(endpoint, IPv6Address) and endpoint.ipv4_mapped is not None:
        endpoint = endpoint.ipv4_mapped
    return NextHop.remote(endpoint, label, encap_for(_encapsulations(path.attrs)))


def replication_lists(
    paths: Iterable[Path],
    vrf_imports: dict[str, RouteTargets],
    own: Iterable[IPAddress],
    encap_for: Callable[[tuple[int, ...]], Encap],
) -> dict[str, list[NextHop]]:
    """VRF name -> the remote vPEs its broadcast/multicast is replicated to.

    ``paths``: the I-PMSI A-D routes known (best per destination);
    ``own``: this vPE's addresses (its own routes are never members).
    """
    mine = set(own)
    out: dict[str, list[NextHop]] = {name: [] for name in vrf_imports}
    for p in paths:
        if p.peer.local:
            continue
        member = replication_member(p, encap_for)
        if member is None or member.endpoint in mine:
            continue
        rts = route_targets_of(p.attrs)
        for name, imports in vrf_imports.items():
            if matches(imports, rts):
                out[name].append(member)
    return out
