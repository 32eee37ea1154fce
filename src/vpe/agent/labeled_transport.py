"""Labeled unicast (RFC 8277) as the transport of Inter-AS option C.

Two duties, both only when some neighbor has the ``ipv4-labeled-unicast`` or
``ipv6-labeled-unicast`` family:

* **our loopback**: the agent's underlay address (its VPN next hop) is
  originated as a /32 (IPv6: /128) labeled-unicast route of its family with a
  label of ours, so the
  ASBRs can carry it into the other AS. The label comes from the VPN label
  space (owner ``SwapLabel(our address, 3)``: "swap to implicit null toward
  ourselves", which is a pop) and the forwarder gets a ``pop`` entry for it:
  a packet arriving as [that label, VPN label, IP] loses the outer label and
  the VPN label decides, as for any other packet;
* **remote PE loopbacks**: the best labeled-unicast path of every host
  route (/32, /128; either family) becomes a FIB transport entry: VPN routes whose next hop is
  that address are sent to the labeled-unicast next hop (the ASBR) with two
  labels, the labeled-unicast label outside and the VPN label inside
  (:meth:`~vpe.agent.fib_resolver.FibResolver.set_transport`).

Only host routes count: a PE's next hop is one address, and a shorter
labeled-unicast prefix is not a PE loopback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from ..bgp.wire.attributes.as_path import AsPath
from ..bgp.wire.attributes.base import PathAttributes
from ..bgp.wire.attributes.origin import Origin, OriginType
from ..bgp.wire.constants import IPV4_LABELED, IPV6_LABELED, Family
from ..bgp.wire.nlri.labeled import IPv4LabeledPrefix, IPv6LabeledPrefix
from ..vpn.service import VpnService
from .fib import FibProgrammer
from .fib_many import ManyFibs
from .router import Router

log = logging.getLogger("vpe.transport")

IPAddress = IPv4Address | IPv6Address
_LOOPBACK_ATTRS = PathAttributes([Origin(OriginType.IGP), AsPath()])
#: the label a PE's loopback route would carry to mean "no label" (RFC 3032)
IMPLICIT_NULL = 3


class LabeledTransport:
    """Our loopback as a labeled-unicast route; remote loopbacks into the FIB."""

    def __init__(self, router: Router, vpn: VpnService, fib: FibProgrammer | ManyFibs | None, underlay: IPAddress) -> None:
        self.router = router
        self.vpn = vpn
        self.fib = fib
        self.underlay = underlay
        #: our loopback's label (None: not originated)
        self.label: int | None = None
        #: Loc-RIB key -> the remote PE address it resolves (for withdrawals)
        self._pe: dict[bytes, IPAddress] = {}
        #: remote PE -> (labeled-unicast next hop, label), as given to the FIB
        self.transport: dict[IPAddress, tuple[IPAddress, int]] = {}
        router.subscribe(self._changed)

    def start(self) -> None:
        """Originate our loopback (once the router runs; the label survives restarts)."""
        self.label = self.vpn.hold_swap_label(str(self.underlay), IMPLICIT_NULL)
        if self.fib is not None:
            self.fib.set_pop(self.label)
        if isinstance(self.underlay, IPv4Address):
            family, plen = IPV4_LABELED, 32
            nlri: IPv4LabeledPrefix | IPv6LabeledPrefix = IPv4LabeledPrefix.from_str(
                f"{self.underlay}/32", labels=(self.label,))
        else:
            family, plen = IPV6_LABELED, 128
            nlri = IPv6LabeledPrefix.from_str(f"{self.underlay}/128", labels=(self.label,))
        self.router.announce_local(family, _LOOPBACK_ATTRS, self.underlay, [nlri])
        log.info("labeled unicast: our loopback %s/%d with label %d", self.underlay, plen, self.label)

    def _changed(self, family: Family, keys: Sequence[bytes]) -> None:
        if family not in (IPV4_LABELED, IPV6_LABELED):
            return
        loc = self.router.rib.loc_rib(family)
        for key in keys:
            best = loc.best(key)
            pe: IPAddress | None = None
            got: tuple[IPAddress, int] | None = None
            if best is not None and not best.peer.local and best.next_hop is not None:
                net = best.nlri.prefix  # type: ignore[attr-defined]
                labels = getattr(best.nlri, "labels", ())
                if net.prefixlen == net.max_prefixlen and labels:
                    pe = net.network_address
                    got = (best.next_hop, labels[0])
            old = self._pe.pop(key, None)
            if old is not None and old != pe:
                self._set(old, None)
            if pe is not None and got is not None:
                self._pe[key] = pe
                self._set(pe, got)

    def _set(self, pe: IPAddress, via: tuple[IPAddress, int] | None) -> None:
        if via is None:
            if self.transport.pop(pe, None) is not None and self.fib is not None:
                self.fib.remove_transport(pe)
            return
        if self.transport.get(pe) == via:
            return
        self.transport[pe] = via
        log.info("labeled unicast: PE %s via %s label %d", pe, via[0], via[1])
        if self.fib is not None:
            self.fib.set_transport(pe, via[0], via[1])
