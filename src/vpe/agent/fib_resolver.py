"""The FIB resolver: VPN service output -> the values every dataplane driver takes.

Pure: no asyncio, no sockets, no clock. It keeps the whole state the agent
wants a forwarder to hold (ports, routes with resolved next hops, label
entries, replication lists) and turns each change into the :class:`Batch`
that brings a forwarder from the previous state to the new one. Whatever
the driver behind the FIB channel (userspace, a kernel one), it is fed from
here; :class:`~vpe.agent.fib_link.FibLink` carries the batches.

Resolution, in short:

* a VRF route with a remote next hop becomes a tunnel next hop (endpoint,
  label, the encapsulation both ends support, in ``encap_order``);
* a route of a local endpoint (a VM's host route) becomes a port next hop,
  also when it is reached through a leak or as our own VPN route imported
  into another VRF (same-host extranet);
* a static route via a VM's address goes to that VM's port, once the port
  exists (ports re-resolve what depends on them);
* every allocated label becomes a label entry: IP lookup in a VRF, or
  delivery to a port (per-endpoint labels; IP lookup in the VRF while the
  endpoint is not here: a standby or released port, docs/mobility.md); swap entries (Inter-AS option
  B, policy re-label) are set explicitly with :meth:`FibResolver.set_swap`;
* a remote PE reached through a labeled-unicast route (Inter-AS option C,
  :meth:`FibResolver.set_transport`): the tunnel goes to that route's next hop
  (an ASBR) with two labels, the labeled-unicast label outside and the VPN
  label inside (one, when the labeled-unicast label is implicit null); our
  own loopback's labeled-unicast label is a "pop" entry (:meth:`FibResolver.set_pop`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..dataplane.driver import (
    AddressPair,
    Batch,
    EcmpMode,
    Encap,
    LabelEntry,
    LocalSession,
    NextHop,
    Peer,
    Port,
    Redirect,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
from ..vpn.entries import Endpoint, Leak, RouteKind, RouteSource
from ..vpn.label_owners import EndpointLabel, LabelOwner, SwapLabel
from ..vpn.mobility import RANK_NOT_HERE

if TYPE_CHECKING:
    from ..vpn.entries import VrfRoute
    from ..vpn.events import VrfTableChange
    from ..vpn.service import VpnService

#: RFC 9012 tunnel type -> forwarder encapsulation name
_ENCAP_NAMES: dict[int, Encap] = {13: "mpls-in-udp", 11: "mpls-in-gre"}
#: ECMP fan-out a route keeps (the driver's limit, R12.2)
_MAX_NEXT_HOPS = 512
#: the labeled-unicast label meaning "no label: pop at the hop before" (RFC 3032)
IMPLICIT_NULL = 3


class PortSpec(Protocol):
    """What the resolver reads of an attachment to make the forwarder's port."""

    @property
    def name(self) -> str: ...
    @property
    def ifname(self) -> str: ...
    @property
    def vrf(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def ips(self) -> Sequence[str]: ...
    @property
    def gateways(self) -> Sequence[str]: ...
    @property
    def allowed_pairs(self) -> Sequence[str]: ...


#: the gateway MAC every port sees unless configured (``[dataplane] gateway_mac``): the
#: same on every host (an anycast gateway MAC), so no MAC state moves with a VM (R9.2)
DEFAULT_GATEWAY_MAC = "02:00:5e:00:00:01"


def port_of(a: PortSpec, gateway_mac: str = DEFAULT_GATEWAY_MAC) -> Port:
    """The forwarder port of attachment ``a``."""
    return Port(
        gateway_mac=gateway_mac,
        name=a.name,
        ifname=a.ifname,
        vrf=a.vrf,
        mac=a.mac,
        ips=tuple(a.ips),  # type: ignore[arg-type]  # normalised by Port
        gateway_ips=tuple(a.gateways),  # type: ignore[arg-type]
        allowed_pairs=tuple(AddressPair(p) for p in a.allowed_pairs),  # type: ignore[arg-type]
    )


class FibResolver:
    """The desired forwarder state, and the batch each change makes of it."""

    def __init__(self, underlay: IPv4Address | IPv6Address,
                 encap_order: Iterable[Encap] = ("mpls-in-udp", "mpls-in-gre"),
                 gateway_mac: str = DEFAULT_GATEWAY_MAC) -> None:
        self.underlay = underlay
        self.gateway_mac = gateway_mac
        self.encap_order = tuple(encap_order)
        self.ports: dict[str, Port] = {}
        self.routes: dict[RouteKey, Route] = {}
        self.labels: dict[int, LabelEntry] = {}
        self.replication: dict[str, ReplicationList] = {}
        #: label swap entries set from outside the VPN service's bindings
        self.swaps: dict[int, LabelEntry] = {}
        #: flow classifier redirects (service chains), by name
        self.redirects: dict[str, Redirect] = {}
        #: the VPN service of the last table change, to re-resolve what depends on ports
        self._vpn: VpnService | None = None
        #: table changes holding a local static route: their next hop resolves to a
        #: port (by the VM's address), which may be attached later
        self._statics: dict[RouteKey, VrfTableChange] = {}
        #: VRF -> the aggregates it originates (R10.3): remote routes strictly inside one
        #: are ``transit`` (what arrives on the aggregate label for them is re-tunnelled)
        self._aggregates: dict[str, set[IPv4Network | IPv6Network]] = {}
        #: one agent, several forwarders (R2.4): the underlay address of the forwarder
        #: holding endpoint ``name`` (None: unknown); unset: every endpoint is here
        self.elsewhere: Callable[[str], IPv4Address | IPv6Address | None] | None = None

        #: vPEs claiming a moving VM's address with a mobility sequence number
        #: (docs/mobility.md): a prepared destination re-tunnels to the VM's
        #: current host, which has no route toward it perhaps, so they are
        #: trusted tunnel sources (R13.2) while they claim
        self._claims: dict[Hashable, frozenset[IPv4Address | IPv6Address]] = {}
        self._claim_refs: dict[IPv4Address | IPv6Address, int] = {}
        #: labeled-unicast transport (option C): remote PE address -> (next hop, label)
        self.transport: dict[IPv4Address | IPv6Address, tuple[IPv4Address | IPv6Address, int]] = {}
        #: the latest table change of every route with a remote next hop, and the routes
        #: per remote PE (a superset: checked against the latest change when used)
        self._remote: dict[RouteKey, VrfTableChange] = {}
        self._by_pe: dict[IPv4Address | IPv6Address, set[RouteKey]] = {}
        #: PE-CE sessions through ports (vpe.agent.port_sessions), by mapped address
        self.sessions: dict[IPv4Address | IPv6Address, LocalSession] = {}

    # -- changes -> batches ------------------------------------------------------

    def add_port(self, a: PortSpec) -> Batch:
        """Port ``a`` (new or changed), with what its presence re-resolves."""
        port = port_of(a, self.gateway_mac)
        self.ports[a.name] = port
        return Batch(add_ports=(port,), **self._port_dependents())

    def remove_port(self, name: str) -> Batch | None:
        """Port ``name`` gone (None when it was not there)."""
        if self.ports.pop(name, None) is None:
            return None
        return Batch(remove_ports=(name,), **self._port_dependents())

    def _port_dependents(self) -> dict[str, Any]:
        """Static routes and per-endpoint labels name a VM by address: re-resolve them
        after the set of ports changed (the route may have come before the port)."""
        if self._vpn is None:
            return {}
        return self._changes(list(self._statics.values()), self._vpn)

    def set_replication(self, vrf: str, members: Iterable[NextHop]) -> Batch | None:
        """The remote vPEs that get a copy of ``vrf``'s broadcast/multicast (R3.2)."""
        hops = tuple(sorted(set(members), key=lambda h: (str(h.endpoint), h.label or 0, h.encap)))
        if not hops:
            if self.replication.pop(vrf, None) is not None:
                return Batch(remove_replication=(vrf,))
            return None
        rl = ReplicationList(vrf, hops)
        if self.replication.get(vrf) == rl:
            return None
        self.replication[vrf] = rl
        return Batch(set_replication=(rl,))

    def set_swap(self, label: int, next_hop: NextHop) -> Batch | None:
        """Label ``label`` from the underlay leaves toward ``next_hop`` with its label."""
        entry = LabelEntry.swap(label, next_hop)
        self.swaps[label] = entry
        if self.labels.get(label) == entry:
            return None
        self.labels[label] = entry
        return Batch(add_labels=(entry,))

    def set_pop(self, label: int) -> Batch | None:
        """``label`` is our loopback's labeled-unicast label: popped, the label below decides."""
        entry = LabelEntry.pop(label)
        self.swaps[label] = entry
        if self.labels.get(label) == entry:
            return None
        self.labels[label] = entry
        return Batch(add_labels=(entry,))

    def set_transport(self, pe: IPv4Address | IPv6Address, via: IPv4Address | IPv6Address,
                      label: int) -> Batch | None:
        """Remote PE ``pe`` is reached through ``via`` with labeled-unicast label ``label``
        (Inter-AS option C): the routes toward ``pe`` are re-resolved."""
        if self.transport.get(pe) == (via, label):
            return None
        self.transport[pe] = (via, label)
        return self._reresolve(pe)

    def remove_transport(self, pe: IPv4Address | IPv6Address) -> Batch | None:
        """No labeled-unicast route to ``pe`` any more: its routes go to ``pe`` directly."""
        if self.transport.pop(pe, None) is None:
            return None
        return self._reresolve(pe)

    def _reresolve(self, pe: IPv4Address | IPv6Address) -> Batch | None:
        if self._vpn is None:
            return None
        keys = self._by_pe.get(pe, set())
        changes = [self._remote[k] for k in keys if k in self._remote]
        keys.intersection_update(self._remote)
        if not changes:
            return None
        kw = self._changes(changes, self._vpn)
        return Batch(**kw) if kw else None

    def set_session(self, x: LocalSession) -> Batch | None:
        """A VRF neighbor's session carried through a port (``x.mapped`` is its key)."""
        if self.sessions.get(x.mapped) == x:
            return None
        self.sessions[x.mapped] = x
        return Batch(add_sessions=(x,))

    def remove_session(self, mapped: IPv4Address | IPv6Address) -> Batch | None:
        if self.sessions.pop(mapped, None) is None:
            return None
        return Batch(remove_sessions=(mapped,))

    def set_redirect(self, r: Redirect) -> Batch | None:
        """Traffic of ``r.vrf`` matching ``r`` is looked up in ``r.target`` (service chains)."""
        if self.redirects.get(r.name) == r:
            return None
        self.redirects[r.name] = r
        return Batch(add_redirects=(r,))

    def remove_redirect(self, name: str) -> Batch | None:
        if self.redirects.pop(name, None) is None:
            return None
        return Batch(remove_redirects=(name,))

    def remove_swap(self, label: int) -> Batch | None:
        """Forget the swap entry of ``label`` (None when there was none)."""
        if self.swaps.pop(label, None) is None:
            return None
        self.labels.pop(label, None)
        return Batch(remove_labels=(label,))

    def vrf_changes(self, changes: Iterable[VrfTableChange], vpn: VpnService) -> Batch | None:
        """VRF table changes (and the label bindings of ``vpn`` now) as one batch."""
        self._vpn = vpn
        kw = self._changes(list(changes), vpn)
        return Batch(**kw) if kw else None

    def _changes(self, changes: list[VrfTableChange], vpn: VpnService) -> dict[str, Any]:
        bindings = vpn.label_bindings()
        add: list[Route] = []
        remove: list[RouteKey] = []
        aggs_changed: set[str] = set()
        for ch in changes:
            is_agg = any(r.source is RouteSource.LOCAL and r.kind is RouteKind.AGGREGATE for r in ch.routes)
            aggs = self._aggregates.setdefault(ch.vrf, set())
            if is_agg != (ch.network in aggs):
                (aggs.add if is_agg else aggs.discard)(ch.network)
                aggs_changed.add(ch.vrf)
        for ch in changes:
            key = RouteKey(ch.vrf, ch.network)
            pes: list[IPv4Address | IPv6Address] = []
            hops = self._next_hops(ch, vpn, bindings, pes=pes)
            if pes:
                self._remote[key] = ch
                for pe in pes:
                    self._by_pe.setdefault(pe, set()).add(key)
            else:
                self._remote.pop(key, None)
            if any(r.source is RouteSource.LOCAL and r.kind is RouteKind.STATIC for r in ch.routes) or (
                    not hops and any(r.source is RouteSource.IMPORTED and r.next_hop == self.underlay
                                     for r in ch.routes)):
                # resolved through a port by address (a static route; our own route imported
                # into another VRF, e.g. a service instance's attraction, that found no port
                # yet): the port may come later
                self._statics[key] = ch
            else:
                self._statics.pop(key, None)
            if hops:
                moved = ch.routes[-1].rank[0] == RANK_NOT_HERE and ch.routes[0].source is not RouteSource.LOCAL
                vrf = vpn.vrfs.get(ch.vrf)
                # the VRF's mode (R12.2), checked by the VPN service
                ecmp = cast(EcmpMode, vrf.ecmp if vrf is not None else "per-flow")
                # the pre-installed backup (R11.2): used once every next hop is down
                backup = tuple(
                    h for h in self._next_hops(ch, vpn, bindings, ch.backup) if h not in hops
                ) if ch.backup else ()
                r = Route(ch.vrf, ch.network, tuple(hops[:_MAX_NEXT_HOPS]), ecmp, moved, backup)
                r = replace(r, transit=self._transit(r))
                if self.routes.get(key) != r:
                    self.routes[key] = r
                    add.append(r)
            elif key in self.routes:
                del self.routes[key]
                remove.append(key)
        if aggs_changed:  # an aggregate came or went: the routes under it follow
            done = {r.key for r in add}
            for key, r in list(self.routes.items()):
                if key.vrf in aggs_changed and key not in done and r.transit != self._transit(r):
                    r = replace(r, transit=not r.transit)
                    self.routes[key] = r
                    add.append(r)
        labels = self._label_table(bindings)
        labels.update(self.swaps)  # set explicitly: they win over a binding of the same label
        add_l = [e for lab, e in labels.items() if self.labels.get(lab) != e]
        rem_l = [lab for lab in self.labels if lab not in labels]
        self.labels = labels
        if add or remove or add_l or rem_l:
            return {"add_routes": tuple(add), "remove_routes": tuple(remove),
                    "add_labels": tuple(add_l), "remove_labels": tuple(rem_l)}
        return {}

    def _endpoint_hop(self, name: str, labels: tuple[int, ...], encaps: tuple[int, ...]) -> NextHop | None:
        """The next hop to local endpoint ``name``: its port, or, when the agent programs
        several forwarders (R2.4) and the port is on another one, a tunnel to that
        forwarder with the label the route was exported with (None: no label to use)."""
        if self.elsewhere is not None and name not in self.ports:
            there = self.elsewhere(name)
            if there is not None and there != self.underlay:
                return NextHop.remote(there, labels[0], self.encap_for(encaps)) if labels else None
        return NextHop.local(name)

    def _transit(self, r: Route) -> bool:
        """Is ``r`` a remote route strictly inside an aggregate of its VRF (R10.3)?

        Only strictly longer routes: a packet that arrived on our aggregate label
        and is sent on lands, at the next vPE, on a prefix strictly longer than
        the one it was sent for here, so it cannot come back (no loops)."""
        if r.moved or all(h.is_local for h in r.next_hops):
            return False
        p = r.prefix
        return any(a.version == p.version and a.prefixlen < p.prefixlen and p.subnet_of(a)  # type: ignore[arg-type]
                   for a in self._aggregates.get(r.vrf, ()))

    def set_claims(self, key: Hashable, endpoints: Iterable[IPv4Address | IPv6Address]) -> Batch | None:
        """The vPEs whose path for destination ``key`` (any hashable: the bridge uses
        the VPN NLRI's) carries a mobility sequence number: trusted tunnel sources
        while they claim (see ``_claims``). A batch when the trusted set changed."""
        eps = frozenset(
            nh.ipv4_mapped if isinstance(nh, IPv6Address) and nh.ipv4_mapped is not None else nh
            for nh in endpoints
        ) - {self.underlay}
        old = self._claims.get(key, frozenset())
        if eps == old:
            return None
        peers: dict[IPv4Address | IPv6Address, int] = {}
        if eps:
            self._claims[key] = eps
        else:
            self._claims.pop(key, None)
        for ep in eps - old:
            self._claim_refs[ep] = self._claim_refs.get(ep, 0) + 1
            if self._claim_refs[ep] == 1:
                peers[ep] = peers.get(ep, 0) + 1
        for ep in old - eps:
            self._claim_refs[ep] -= 1
            if not self._claim_refs[ep]:
                del self._claim_refs[ep]
                peers[ep] = peers.get(ep, 0) - 1
        add_p = tuple(Peer(ep) for ep, d in peers.items() if d > 0)
        rem_p = tuple(ep for ep, d in peers.items() if d < 0)
        return Batch(add_peers=add_p, remove_peers=rem_p) if add_p or rem_p else None

    def _port_for(self, vrf: str, item: object) -> str | None:
        """The port an endpoint label / static next hop means: a port name, or the
        address of a VM attached to ``vrf``."""
        name = str(item)
        if name in self.ports:
            return name
        for p in self.ports.values():
            if p.vrf == vrf and any(str(i.ip) == name for i in p.ips):
                return p.name
        return None

    def _next_hops(self, ch: VrfTableChange, vpn: VpnService,
                   bindings: dict[int, LabelOwner],
                   routes: tuple[VrfRoute, ...] | None = None,
                   pes: list[IPv4Address | IPv6Address] | None = None) -> list[NextHop]:
        hops: list[NextHop] = []
        for r in ch.routes if routes is None else routes:
            if r.rank[0] == RANK_NOT_HERE:  # the marker of a moved endpoint (vpe.vpn.mobility)
                continue
            while isinstance(r.origin, Leak):  # leaked: forward as the source VRF's entry does
                r = r.origin.route
            if r.next_hop is None:
                if r.kind is RouteKind.HOST and isinstance(r.origin, Endpoint):
                    hop = self._endpoint_hop(r.origin.name, r.labels, r.encapsulation)
                    if hop is not None:
                        hops.append(hop)
                continue
            if r.source is RouteSource.LOCAL and r.kind is RouteKind.STATIC:
                # a static route of this VRF via one of its VMs (a routing VM):
                # deliver to that VM's port, never a tunnel to a tenant address
                port = self._port_for(ch.vrf, r.next_hop)
                if port is not None:
                    hops.append(NextHop.local(port))
                continue
            if not r.labels:
                continue
            nh = r.next_hop
            # VPN-IPv6 routes over an IPv4 underlay carry the IPv4 endpoint as
            # an IPv4-mapped IPv6 next hop (RFC 4659 section 3.2.1.1).
            if isinstance(nh, IPv6Address) and nh.ipv4_mapped is not None:
                nh = nh.ipv4_mapped
            if nh == self.underlay:
                # our own route imported into another VRF (same-host extranet)
                local = self._resolve_local(r.labels[0], ch, vpn, bindings)
                if local is not None:
                    hops.append(local)
                continue
            encap = self.encap_for(r.encapsulation)
            if pes is not None:
                pes.append(nh)
            via = self.transport.get(nh)
            if via is None:
                hops.append(NextHop.remote(nh, r.labels[0], encap))
            else:  # option C: to the ASBR, its labeled-unicast label above the VPN label
                outer = () if via[1] == IMPLICIT_NULL else (via[1],)
                hops.append(NextHop.remote(via[0], r.labels[0], encap, outer))
        return hops

    def _resolve_local(self, label: int, ch: VrfTableChange, vpn: VpnService,
                       bindings: dict[int, LabelOwner]) -> NextHop | None:
        owner = bindings.get(label)
        if owner is None or isinstance(owner, SwapLabel):
            return None
        if isinstance(owner, EndpointLabel):
            port = self._port_for(owner.vrf, owner.endpoint)
            return NextHop.local(port) if port is not None else None
        src_vrf = owner.vrf  # VrfLabel, PrefixLabel: the source VRF's own entry says where
        try:
            entries = vpn.vrf(src_vrf).active((ch.version, ch.prefix))
        except (ValueError, KeyError):
            return None
        for e in entries:
            if e.next_hop is None and e.kind is RouteKind.HOST and isinstance(e.origin, Endpoint):
                return NextHop.local(e.origin.name)
            if e.source is RouteSource.LOCAL and e.kind is RouteKind.STATIC and e.next_hop is not None:
                # a service instance on this host attracts the prefix (docs/service-chains.md)
                port = self._port_for(src_vrf, e.next_hop)
                return NextHop.local(port) if port is not None else None
        return None

    def encap_for(self, offered: tuple[int, ...]) -> Encap:
        """The encapsulation toward a route offering RFC 9012 tunnel types ``offered``."""
        names = [_ENCAP_NAMES[t] for t in offered if t in _ENCAP_NAMES]
        for pref in self.encap_order:
            if pref in names:
                return pref
        return self.encap_order[0]

    def _label_table(self, bindings: dict[int, LabelOwner]) -> dict[int, LabelEntry]:
        out: dict[int, LabelEntry] = {}
        for label, owner in bindings.items():
            if isinstance(owner, EndpointLabel):
                # a static route's endpoint label names the VM's address
                # (an endpoint not here - standby, released: docs/mobility.md - is looked up
                # in its VRF, whose route leads to where the VM runs: local repair)
                port = self._port_for(owner.vrf, owner.endpoint)
                out[label] = (LabelEntry(label, "port", port) if port is not None
                              else LabelEntry(label, "vrf", owner.vrf))
            elif not isinstance(owner, SwapLabel):  # swap entries come from set_swap
                out[label] = LabelEntry(label, "vrf", owner.vrf)
        return out

    def state(self) -> State:
        """Everything the forwarder should hold (what a full sync sends)."""
        return State(ports=tuple(self.ports.values()), routes=tuple(self.routes.values()),
                     labels=tuple(self.labels.values()), replication=tuple(self.replication.values()),
                     peers=tuple(Peer(ep) for ep in self._claim_refs),
                     redirects=tuple(self.redirects[n] for n in sorted(self.redirects)),
                     sessions=tuple(self.sessions[m] for m in sorted(self.sessions, key=str)))
