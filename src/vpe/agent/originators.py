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
from collections.abc import Callable
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
    """An RTC route for every import RT of every VRF (RFC 4684)."""

    def __init__(self, router: Router, vpn: VpnService, next_hop: IPAddress) -> None:
        self.router = router
        self.vpn = vpn
        self.next_hop = next_hop
        self._sent: dict[bytes, RouteTargetMembership] = {}

    def sync(self) -> None:
        rts: set[Any] = set()
        for v in self.vpn.vrfs.values():
            rts.update(v.import_rts)
        want = {r.key: r for r in local_rtc_routes(self.router.local_as, rts)}
        gone = [n for k, n in self._sent.items() if k not in want]
        new = [n for k, n in want.items() if k not in self._sent]
        if gone:
            self.router.withdraw_local(RTC, gone)
        if new:
            self.router.announce_local(RTC, _RTC_ATTRS, self.next_hop, new)
        self._sent = want


class PmsiOriginator:
    """One I-PMSI A-D route per exporting VRF; withdraws the stale ones.

    ``released(labels)`` is told the aggregate labels let go of, which may be
    reused only once the withdrawals are on the wire.
    """

    def __init__(self, router: Router, vpn: VpnService, next_hop: IPAddress,
                 released: Callable[[tuple[int, ...]], None]) -> None:
        self.router = router
        self.vpn = vpn
        self.next_hop = next_hop
        self._released = released
        self._sent: dict[str, tuple[Nlri, Any]] = {}  # VRF -> I-PMSI A-D route sent

    def sync(self) -> None:
        now = time.monotonic()
        want: dict[str, tuple[Nlri, Any]] = {}
        held_before = set(self._sent)
        for name, vrf in self.vpn.vrfs.items():
            if not vrf.export_rts:
                continue
            label = (self.vpn.hold_vrf_label(name, now) if name not in held_before
                     else self.vpn.vrf_label(name))
            assert label is not None
            want[name] = i_pmsi_route(vrf.rd, self.next_hop, label, vrf.export_rts,
                                      self.vpn.exporter.encapsulations)
        for name, (nlri, _attrs) in self._sent.items():
            new = want.get(name)
            if new is None or new[0] != nlri:
                self.router.withdraw_local(IPV4_MCAST_VPN, [nlri])
            if new is None and name in self.vpn.vrfs:
                self._released(self.vpn.release_vrf_label(name))
        for name, (nlri, attrs) in want.items():
            if self._sent.get(name) != (nlri, attrs):
                self.router.announce_local(IPV4_MCAST_VPN, attrs, self.next_hop, [nlri])
        self._sent = want
