"""Routes this vPE originates on behalf of its VRFs, not of an endpoint.

* :class:`RtcOriginator`: one RT membership route (RFC 4684) per import RT
  of any VRF, so route reflectors send us only the VPN routes we import.
* :class:`PmsiOriginator`: one MCAST-VPN Intra-AS I-PMSI A-D route
  (RFC 6514) per exporting VRF, for ingress replication (R3.2); its label
  is the VRF's aggregate label, held while the route exists.

Each keeps what it has announced and, on :meth:`sync`, announces and
withdraws the difference through the router's local-path calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.attributes.simple import LocalPref
from ..bgp.wire.constants import IPV4_MCAST_VPN, RTC
from ..bgp.wire.nlri.base import Nlri
from ..bgp.wire.nlri.rtc import RouteTargetMembership
from ..rib.rtc import local_rtc_routes
from ..vpn.service import VpnService
from .mvpn import i_pmsi_route
from .router import Router

IPAddress = IPv4Address | IPv6Address

#: the attributes of the RTC routes this vPE originates (one shared, interned set)
_RTC_ATTRS = PathAttributes([Origin(OriginType.IGP), AsPath(), LocalPref(100)])


class RtcOriginator:
    """An RTC route for every import RT of every VRF (RFC 4684).

    Each route target is counted by the VRFs importing it: a VRF change
    (:meth:`vrf_changed`) costs the RTs of that VRF only, whatever the
    number of VRFs; a route goes out when its first importer comes and is
    withdrawn when its last one goes.
    """

    def __init__(self, router: Router, vpn: VpnService, next_hop: IPAddress) -> None:
        self.router = router
        self.vpn = vpn
        self.next_hop = next_hop
        self._by_vrf: dict[str, frozenset[bytes]] = {}  # VRF -> the RTs it counts in
        self._count: dict[bytes, int] = {}  # RT -> importing VRFs
        self._sent: dict[bytes, RouteTargetMembership] = {}  # RT -> route announced
        #: RTC routes built and announced or withdrawn so far (for tests of constant work)
        self.routes_built = 0

    def sync(self) -> None:
        """Every VRF (at start): the same as :meth:`vrf_changed` for each."""
        for name in set(self._by_vrf) | set(self.vpn.vrfs):
            self.vrf_changed(name)

    def vrf_changed(self, name: str) -> None:
        """VRF ``name`` came, went or changed its import RTs."""
        v = self.vpn.vrfs.get(name)
        new = frozenset(rt.encode() for rt in v.import_rts) if v is not None else frozenset()
        old = self._by_vrf.get(name, frozenset())
        if new == old:
            return
        if new:
            self._by_vrf[name] = new
        else:
            self._by_vrf.pop(name, None)
        count = self._count
        gone: list[RouteTargetMembership] = []
        for rt in old - new:
            n = count[rt] - 1
            if n:
                count[rt] = n
            else:
                del count[rt]
                gone.append(self._sent.pop(rt))
        fresh: list[bytes] = []
        for rt in sorted(new - old):
            n = count.get(rt, 0)
            count[rt] = n + 1
            if not n:
                fresh.append(rt)
        added = local_rtc_routes(self.router.local_as, fresh)
        for rt, r in zip(fresh, added, strict=True):
            self._sent[rt] = r
        self.routes_built += len(gone) + len(added)
        if gone:
            self.router.withdraw_local(RTC, gone)
        if added:
            self.router.announce_local(RTC, _RTC_ATTRS, self.next_hop, added)


class PmsiOriginator:
    """One I-PMSI A-D route per exporting VRF; withdraws the stale ones.

    ``released(labels)`` is told the aggregate labels let go of, which may be
    reused only once the withdrawals are on the wire. A VRF change
    (:meth:`vrf_changed`) rebuilds that VRF's route only. ``originators``
    (one agent, several forwarders: R2.4) gives the addresses to originate
    from - one route per forwarder, its underlay address as the originating
    router and tunnel endpoint, so remote vPEs send each forwarder its copy;
    unset, the one route carries ``next_hop``.
    """

    def __init__(self, router: Router, vpn: VpnService, next_hop: IPAddress,
                 released: Callable[[tuple[int, ...]], None]) -> None:
        self.router = router
        self.vpn = vpn
        self.next_hop = next_hop
        self._released = released
        self.originators: Callable[[], Iterable[IPAddress]] | None = None
        self._sent: dict[str, list[tuple[Nlri, Any]]] = {}  # VRF -> I-PMSI A-D routes sent
        #: I-PMSI routes built so far (for tests of constant work)
        self.routes_built = 0

    def sync(self) -> None:
        """Every VRF (at start): the same as :meth:`vrf_changed` for each."""
        for name in set(self._sent) | set(self.vpn.vrfs):
            self.vrf_changed(name)

    def vrf_changed(self, name: str) -> None:
        """VRF ``name`` came, went or changed its RD or export RTs."""
        vrf = self.vpn.vrfs.get(name)
        sent = self._sent.get(name)
        want: list[tuple[Nlri, Any]] = []
        if vrf is not None and vrf.export_rts:
            label = (self.vpn.hold_vrf_label(name, time.monotonic()) if sent is None
                     else self.vpn.vrf_label(name))
            assert label is not None
            for addr in self.originators() if self.originators is not None else (self.next_hop,):
                want.append(i_pmsi_route(vrf.rd, addr, label, vrf.export_rts,
                                         self.vpn.exporter.encapsulations))
                self.routes_built += 1
        if sent is not None:
            gone = [r[0] for r in sent if all(r[0] != w[0] for w in want)]
            if gone:
                self.router.withdraw_local(IPV4_MCAST_VPN, gone)
            if not want:
                del self._sent[name]
                if vrf is not None:
                    self._released(self.vpn.release_vrf_label(name))
        for w in want:
            if sent is None or w not in sent:
                self.router.announce_local(IPV4_MCAST_VPN, w[1], self.next_hop, [w[0]])
        if want:
            self._sent[name] = want
