"""The agent's FIB programmer: the pure resolver and the channel link, together.

:class:`FibProgrammer` is what the rest of the agent calls: each change goes
to the :class:`~vpe.agent.fib_resolver.FibResolver` (VPN output -> desired
state -> a batch) and the batch to the :class:`~vpe.agent.fib_link.FibLink`
(the task that gets it to the forwarder, in order, resyncing on reconnect).
Neither half knows which dataplane driver runs behind the FIB channel.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import TYPE_CHECKING, Any

from ..dataplane.driver import (
    Encap,
    LabelEntry,
    LocalSession,
    NextHop,
    Port,
    Redirect,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
from .fib_link import KEEPALIVE, FibLink, fib_address
from .fib_resolver import DEFAULT_GATEWAY_MAC, FibResolver, PortSpec

if TYPE_CHECKING:
    from ..vpn.chains import Classifier
    from ..vpn.events import VrfTableChange
    from ..vpn.service import VpnService

__all__ = ["FibProgrammer", "PortSpec", "fib_address"]


class FibProgrammer:
    """Desired forwarder state plus the task that keeps the forwarder in step with it."""

    def __init__(self, socket_path: str, underlay: IPv4Address | IPv6Address,
                 encap_order: Iterable[Encap] = ("mpls-in-udp", "mpls-in-gre"), *,
                 key: bytes | None = None, keepalive: float = KEEPALIVE,
                 gateway_mac: str = DEFAULT_GATEWAY_MAC) -> None:
        self.resolver = FibResolver(underlay, encap_order, gateway_mac)
        self.link = FibLink(socket_path, self.resolver.state, key=key, keepalive=keepalive)

    # -- the desired state (the resolver's) ----------------------------------------

    @property
    def underlay(self) -> IPv4Address | IPv6Address:
        return self.resolver.underlay

    @property
    def ports(self) -> dict[str, Port]:
        return self.resolver.ports

    @property
    def routes(self) -> dict[RouteKey, Route]:
        return self.resolver.routes

    @property
    def labels(self) -> dict[int, LabelEntry]:
        return self.resolver.labels

    @property
    def replication(self) -> dict[str, ReplicationList]:
        return self.resolver.replication

    def state(self) -> State:
        return self.resolver.state()

    def encap_for(self, offered: tuple[int, ...]) -> Encap:
        return self.resolver.encap_for(offered)

    # -- changes ---------------------------------------------------------------------

    def add_port(self, a: PortSpec) -> None:
        self.link.expect_port(a.name)
        self.link.submit(self.resolver.add_port(a), port=a.name)

    def remove_port(self, name: str) -> None:
        self.link.forget_port(name)
        self.link.submit(self.resolver.remove_port(name))

    def set_replication(self, vrf: str, members: Iterable[NextHop]) -> None:
        """The remote vPEs that get a copy of ``vrf``'s broadcast/multicast (R3.2)."""
        self.link.submit(self.resolver.set_replication(vrf, members))

    def set_claims(self, key: Hashable, endpoints: Iterable[IPv4Address | IPv6Address]) -> None:
        """vPEs claiming a moving VM's address (docs/mobility.md): trusted tunnel sources."""
        self.link.submit(self.resolver.set_claims(key, endpoints))

    def vrf_changes(self, changes: Iterable[VrfTableChange], vpn: VpnService) -> None:
        self.link.submit(self.resolver.vrf_changes(changes, vpn))

    def set_swap(self, label: int, next_hop: NextHop) -> None:
        """Label swap (Inter-AS option B, policy re-label): ``label`` from the
        underlay leaves toward ``next_hop`` with its label."""
        self.link.submit(self.resolver.set_swap(label, next_hop))

    def set_pop(self, label: int) -> None:
        """Our loopback's labeled-unicast label (Inter-AS option C): popped on receive."""
        self.link.submit(self.resolver.set_pop(label))

    def set_transport(self, pe: IPv4Address | IPv6Address, via: IPv4Address | IPv6Address, label: int) -> None:
        """Remote PE ``pe`` via ``via`` with labeled-unicast label ``label`` (option C)."""
        self.link.submit(self.resolver.set_transport(pe, via, label))

    def remove_transport(self, pe: IPv4Address | IPv6Address) -> None:
        self.link.submit(self.resolver.remove_transport(pe))

    def remove_swap(self, label: int) -> None:
        self.link.submit(self.resolver.remove_swap(label))

    def set_redirect(self, name: str, vrf: str, classifier: Classifier, target: str) -> None:
        """Traffic of ``vrf`` matching ``classifier`` is looked up in ``target`` (service
        chains, docs/service-chains.md)."""
        src, dst = classifier.source, classifier.destination
        if src is None and dst is None:  # the chain attracts one family's default route: that family
            dst = "0.0.0.0/0" if classifier.version == 4 else "::/0"
        self.link.submit(self.resolver.set_redirect(Redirect(
            name, vrf, target, None if src is None else ip_network(src),
            None if dst is None else ip_network(dst), classifier.protocol, classifier.ports)))

    def remove_redirect(self, name: str) -> None:
        self.link.submit(self.resolver.remove_redirect(name))

    def set_session(self, x: LocalSession) -> None:
        """A VRF neighbor's session carried through a port (vpe.agent.port_sessions)."""
        self.link.submit(self.resolver.set_session(x))

    def remove_session(self, mapped: IPv4Address | IPv6Address) -> None:
        self.link.submit(self.resolver.remove_session(mapped))

    # -- the link ---------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return self.link.socket_path

    @property
    def address(self) -> str | tuple[str, int]:
        return self.link.address

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def last_error(self) -> str:
        return self.link.last_error

    @property
    def batches_sent(self) -> int:
        return self.link.batches_sent

    @property
    def latencies(self) -> list[float]:
        return self.link.latencies

    @property
    def failed_ports(self) -> dict[str, str]:
        return self.link.failed_ports

    def start(self) -> None:
        self.link.start()

    async def stop(self) -> None:
        await self.link.stop()

    async def port_result(self, name: str, timeout: float = 5.0) -> str | None:
        return await self.link.port_result(name, timeout)

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.link.counters(timeout)

    def to_json(self) -> dict[str, Any]:
        st = self.resolver
        return {
            **self.link.to_json(),
            "ports": [p.to_json() for p in st.ports.values()],
            "routes": [r.to_json() for r in st.routes.values()],
            "labels": [e.to_json() for e in st.labels.values()],
            "replication": [r.to_json() for r in st.replication.values()],
        }
