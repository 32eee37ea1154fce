"""Mobility: the sequence number a VM's routes carry, and how it orders claims.

A move (docs/mobility.md) is *prepare* (the destination attaches the port as
STANDBY and advertises its routes with a higher mobility sequence number),
*activate* (the destination owns the port) and *release* (the source
withdraws, and keeps a redirect toward the destination until its old route
is gone everywhere).

The sequence number travels as the RFC 7432 MAC Mobility extended community
(section 7.7) on the VPN-IPv4/IPv6 host route: vpe's documented equivalent
of the EVPN MAC/IP route's sequence. Absent means 0, and routes with 0
behave as before mobility (anycast addresses stay ECMP candidates).

How claims are ordered in a VRF (the rank of :func:`vpe.vpn.vrf.bgp_rank`):

* an active local attachment wins on its own host (the VM is here);
* among imported routes, the higher sequence wins before LOCAL_PREF and
  the rest; equal non-zero numbers: the lowest next hop (the claiming vPE's
  address, its identity in the VPN) wins, and only one path is used;
* a standby attachment's route (prepared, not active yet) and a
  redirecting one's (released, the VM gone) lose to every imported route,
  so this host forwards to where the VM runs;
* a stale advertisement (a lower number) therefore never wins back a VM.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv6Address

from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.extended_communities import ExtendedCommunities, MacMobility
from ..bgp.wire.constants import AttrCode
from .entries import RouteSource, VrfRoute

log = logging.getLogger("vpe.mobility")

#: the rank's first element for a local route that must not forward (standby,
#: redirecting): worse than imported and leaked entries
RANK_NOT_HERE = 3
#: the largest sequence number (the community's 32-bit field)
MAX_SEQUENCE = 0xFFFFFFFF


def sequence_of(attributes: PathAttributes | None) -> int:
    """The mobility sequence number of a path (0: none)."""
    if attributes is None:
        return 0
    ec = attributes.get(AttrCode.EXTENDED_COMMUNITIES)
    if ec is None:
        return 0
    assert isinstance(ec, ExtendedCommunities)
    for v in ec.values:
        if isinstance(v, MacMobility):
            return v.sequence
    return 0


def entry_sequence(e: VrfRoute) -> int:
    """The sequence of a VRF entry (imported: its path's; local: kept in its rank)."""
    return -e.rank[1] if len(e.rank) > 1 else 0


def check_contest(vrf: str, prefix: str, entries: tuple[VrfRoute, ...] | list[VrfRoute],
                  own: frozenset[IPv4Address | IPv6Address]) -> str | None:
    """Log what a claim on a host address means, when two hosts claim it.

    ``entries`` are the prefix's entries, best first. Returns the message
    logged (None: nothing to say): this vPE lost an equal-sequence contest
    (lowest next hop wins), the address moved away (a higher sequence than
    the local active one), or a stale claim was ignored.
    """
    local = next((e for e in entries if e.source is RouteSource.LOCAL and e.rank[0] == 0
                  and e.endpoint is not None), None)
    imported = [e for e in entries if e.source is RouteSource.IMPORTED and entry_sequence(e) > 0]
    if local is not None and imported:
        mine = entry_sequence(local)
        top = imported[0]
        seq = entry_sequence(top)
        nh = top.next_hop
        if seq > mine:
            msg = (f"VRF {vrf} {prefix}: vPE {nh} claims it with mobility sequence {seq} "
                   f"(ours {mine}): the VM moves there; release port {local.endpoint} here")
            log.info("%s", msg, extra={"vrf": vrf, "prefix": prefix})
            return msg
        if seq == mine and nh is not None and own and nh.packed < min(a.packed for a in own
                                                                       if a.version == nh.version):
            msg = (f"VRF {vrf} {prefix}: vPE {nh} claims it with the same mobility sequence {seq}; "
                   f"its address is lower, it wins elsewhere: this vPE lost the claim")
            log.warning("%s", msg, extra={"vrf": vrf, "prefix": prefix})
            return msg
        msg = (f"VRF {vrf} {prefix}: stale claim by vPE {nh} (mobility sequence {seq}, "
               f"ours {mine}) refused")
        log.warning("%s", msg, extra={"vrf": vrf, "prefix": prefix})
        return msg
    if len(imported) >= 2 and entry_sequence(imported[0]) == entry_sequence(imported[1]):
        a, b = imported[0], imported[1]
        msg = (f"VRF {vrf} {prefix}: vPEs {a.next_hop} and {b.next_hop} both claim it with "
               f"mobility sequence {entry_sequence(a)}; {a.next_hop} (lower address) wins")
        log.warning("%s", msg, extra={"vrf": vrf, "prefix": prefix})
        return msg
    return None


__all__ = ["MAX_SEQUENCE", "RANK_NOT_HERE", "check_contest", "entry_sequence", "sequence_of"]
