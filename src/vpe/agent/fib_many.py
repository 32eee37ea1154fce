"""One agent, several forwarders (R2.4): a FIB programmer per forwarder behind one face.

``[[dataplane.forwarders]]`` names forwarders on several hosts, each with its
own FIB channel and its own underlay address. Each is a distinct vPE in the
dataplane: its own :class:`~vpe.agent.fib.FibProgrammer` (resolver + link),
resolving every VRF route relative to itself. A port is on one forwarder
(``Attachment.forwarder``, placed before it is attached); the routes of its
addresses are exported with that forwarder's underlay address as next hop
(``Exporter.endpoint_next_hop``), and every *other* forwarder reaches it
through a tunnel to that address with the exported label (the resolver's
``elsewhere``), exactly as it reaches a remote vPE. The BGP side stays one
speaker: one router id, one RIB, one session per peer, routes whose next hops
are the forwarders' underlay addresses.

:class:`ManyFibs` offers what the bridge, the view, the API and the metrics
use of a single :class:`FibProgrammer`: changes go to every forwarder (or to
the port's), the state shown and counted is the first forwarder's plus a
``forwarders`` map, and "connected" means every forwarder is.

Broadcast and multicast (R3.2) cross between the forwarders as between
vPEs: each forwarder's replication list of a VRF holds, besides the remote
vPEs of the VRF's imported I-PMSI routes, every *other* forwarder of the
agent with a port in that VRF (its underlay address, the VRF's aggregate
label: what the I-PMSI route of a vPE carries). A copy received on that
label is flooded to the receiver's own ports of the VRF only, never sent on,
and the members of a replication list are the forwarder's trusted tunnel
sources (R13.2), so the siblings accept each other's copies. Remote vPEs
send each forwarder its copy: the I-PMSI originator announces one route per
forwarder (``PmsiOriginator.originators``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from ..dataplane.driver import (
    Encap,
    LabelEntry,
    LocalSession,
    NextHop,
    Port,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
from .fib import FibProgrammer
from .fib_link import FibLink
from .fib_resolver import PortSpec

if TYPE_CHECKING:
    from ..vpn.chains import Classifier
    from ..vpn.events import VrfTableChange
    from ..vpn.service import VpnService

IPAddress = IPv4Address | IPv6Address


class UnknownForwarder(ValueError):
    """A port names a forwarder the agent does not program."""


class ManyFibs:
    """The FIB programmers of several forwarders, used as one (the first is the default)."""

    def __init__(self, fibs: dict[str, FibProgrammer]) -> None:
        if not fibs:
            raise ValueError("forwarders: at least one is needed")
        self.fibs = fibs
        self.default = next(iter(fibs))
        #: port name -> forwarder name
        self.placement: dict[str, str] = {}
        for fib in fibs.values():
            fib.resolver.elsewhere = self.underlay_for
        #: the label a forwarder floods a VRF's broadcast/multicast on (the VRF's aggregate
        #: label, ``VpnService.vrf_label``; None: the VRF has none, no copies between forwarders)
        self.bum_label: Callable[[str], int | None] | None = None
        #: VRF -> the remote vPEs its copies go to (the bridge's, from I-PMSI routes)
        self._remote_bum: dict[str, list[NextHop]] = {}
        #: port name -> (forwarder, VRF); VRF -> forwarder -> its ports of the VRF
        self._port_at: dict[str, tuple[str, str]] = {}
        self._vrf_ports: dict[str, dict[str, int]] = {}

    # -- placement -------------------------------------------------------------------

    def forwarder_of(self, a: PortSpec | Any) -> str:
        """The forwarder attachment ``a`` names ("" means the default); UnknownForwarder if none."""
        name = getattr(a, "forwarder", "") or self.default
        if name not in self.fibs:
            raise UnknownForwarder(
                f"forwarder: {name!r} is not a forwarder of this agent (known: {', '.join(self.fibs)})")
        return name

    def place(self, a: PortSpec | Any) -> None:
        """Port ``a`` is on its forwarder from now on (before its routes are exported)."""
        self.placement[a.name] = self.forwarder_of(a)

    def unplace(self, name: str) -> None:
        self.placement.pop(name, None)

    def underlay_for(self, endpoint: str) -> IPAddress | None:
        """The underlay address of the forwarder endpoint ``endpoint`` is on (None: unknown)."""
        fw = self.placement.get(endpoint)
        return self.fibs[fw].underlay if fw is not None else None

    def underlays(self) -> list[IPAddress]:
        return [f.underlay for f in self.fibs.values()]

    @property
    def primary(self) -> FibProgrammer:
        return self.fibs[self.default]

    # -- changes ---------------------------------------------------------------------

    def add_port(self, a: PortSpec) -> None:
        fw = self.placement.get(a.name) or self.forwarder_of(a)
        self.placement[a.name] = fw
        self.fibs[fw].add_port(a)
        if self._port_at.get(a.name) != (fw, a.vrf):
            self._count_port(a.name)
            self._port_at[a.name] = (fw, a.vrf)
            per = self._vrf_ports.setdefault(a.vrf, {})
            per[fw] = per.get(fw, 0) + 1
            if per[fw] == 1:  # a forwarder new in the VRF: the siblings send it copies
                self._replicate(a.vrf)

    def remove_port(self, name: str) -> None:
        fw = self.placement.get(name, self.default)
        self.fibs[fw].remove_port(name)
        self._count_port(name)

    def _count_port(self, name: str) -> None:
        """Port ``name`` no longer counts in its VRF; the VRF's lists follow when its
        forwarder had no other port there."""
        at = self._port_at.pop(name, None)
        if at is None:
            return
        fw, vrf = at
        per = self._vrf_ports[vrf]
        per[fw] -= 1
        if not per[fw]:
            del per[fw]
            if not per:
                del self._vrf_ports[vrf]
            self._replicate(vrf)

    def set_replication(self, vrf: str, members: Iterable[NextHop]) -> None:
        """The remote vPEs of ``vrf``'s broadcast/multicast (R3.2); each forwarder's list
        adds the agent's other forwarders with ports in ``vrf``."""
        hops = list(members)
        if hops:
            self._remote_bum[vrf] = hops
        else:
            self._remote_bum.pop(vrf, None)
        self._replicate(vrf)

    def _replicate(self, vrf: str) -> None:
        remote = self._remote_bum.get(vrf, [])
        label = self.bum_label(vrf) if self.bum_label is not None else None
        ours = set(self.underlays())  # never a remote member: copies between us are the siblings'
        for name, fib in self.fibs.items():
            siblings = [] if label is None else [
                NextHop.remote(self.fibs[o].underlay, label, fib.encap_for(()))
                for o in self._vrf_ports.get(vrf, ()) if o != name]
            fib.set_replication(vrf, [h for h in remote if h.endpoint not in ours] + siblings)

    def vrf_changes(self, changes: Iterable[VrfTableChange], vpn: VpnService) -> None:
        changes = list(changes)
        for fib in self.fibs.values():
            fib.vrf_changes(changes, vpn)

    def set_claims(self, key: Hashable, endpoints: Iterable[IPAddress]) -> None:
        """vPEs claiming a moving VM's address (docs/mobility.md): trusted tunnel
        sources on every forwarder (each one leaves out its own underlay)."""
        eps = list(endpoints)
        for fib in self.fibs.values():
            fib.set_claims(key, eps)

    def set_pop(self, label: int) -> None:
        for fib in self.fibs.values():
            fib.set_pop(label)

    def set_transport(self, pe: IPAddress, via: IPAddress, label: int) -> None:
        for fib in self.fibs.values():
            fib.set_transport(pe, via, label)

    def remove_transport(self, pe: IPAddress) -> None:
        for fib in self.fibs.values():
            fib.remove_transport(pe)

    def set_swap(self, label: int, next_hop: NextHop) -> None:
        for fib in self.fibs.values():
            fib.set_swap(label, next_hop)

    def remove_swap(self, label: int) -> None:
        for fib in self.fibs.values():
            fib.remove_swap(label)

    def set_redirect(self, name: str, vrf: str, classifier: Classifier, target: str) -> None:
        """A service chain's classifier redirect, on every forwarder (docs/service-chains.md)."""
        for fib in self.fibs.values():
            fib.set_redirect(name, vrf, classifier, target)

    def remove_redirect(self, name: str) -> None:
        for fib in self.fibs.values():
            fib.remove_redirect(name)

    def set_session(self, x: LocalSession) -> None:
        """VRF neighbors through ports are served by the first forwarder, whose local
        interface the agent reaches (docs/inter-as.md)."""
        self.primary.set_session(x)

    def remove_session(self, mapped: IPAddress) -> None:
        self.primary.remove_session(mapped)

    def encap_for(self, offered: tuple[int, ...]) -> Encap:
        return self.primary.encap_for(offered)

    # -- what is read (the first forwarder's, and each one's) -------------------------

    @property
    def underlay(self) -> IPAddress:
        return self.primary.underlay

    @property
    def ports(self) -> dict[str, Port]:
        return {k: v for f in self.fibs.values() for k, v in f.ports.items()}

    @property
    def routes(self) -> dict[RouteKey, Route]:
        return self.primary.routes

    @property
    def labels(self) -> dict[int, LabelEntry]:
        return self.primary.labels

    @property
    def replication(self) -> dict[str, ReplicationList]:
        return self.primary.replication

    def state(self) -> State:
        return self.primary.state()

    @property
    def link(self) -> FibLink:
        return self.primary.link

    @property
    def socket_path(self) -> str:
        return self.primary.socket_path

    @property
    def address(self) -> str | tuple[str, int]:
        return self.primary.address

    @property
    def connected(self) -> bool:
        return all(f.connected for f in self.fibs.values())

    @property
    def last_error(self) -> str:
        return "; ".join(f"{n}: {f.last_error}" for n, f in self.fibs.items() if f.last_error)

    @property
    def batches_sent(self) -> int:
        return sum(f.batches_sent for f in self.fibs.values())

    @property
    def latencies(self) -> list[float]:
        return [x for f in self.fibs.values() for x in f.latencies]

    @property
    def failed_ports(self) -> dict[str, str]:
        return {k: v for f in self.fibs.values() for k, v in f.failed_ports.items()}

    def start(self) -> None:
        for f in self.fibs.values():
            f.start()

    async def stop(self) -> None:
        for f in self.fibs.values():
            await f.stop()

    async def port_result(self, name: str, timeout: float = 5.0) -> str | None:
        return await self.fibs[self.placement.get(name, self.default)].port_result(name, timeout)

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first forwarder's counters, and every forwarder's under ``forwarders``."""
        each = {n: f.counters(timeout) for n, f in self.fibs.items()}
        return {**each[self.default], "forwarders": each}

    def to_json(self) -> dict[str, Any]:
        """The first forwarder's view (as with one forwarder), every one's under ``forwarders``."""
        each = {n: {**f.to_json(), "underlay": str(f.underlay)} for n, f in self.fibs.items()}
        return {**each[self.default], "connected": self.connected,
                "ports": [p.to_json() for p in self.ports.values()], "forwarders": each}
