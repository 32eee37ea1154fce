"""VRF neighbors reached through a port of their VRF (``via = "port"``, docs/inter-as.md).

A CE (a VM announcing its routes, an appliance, the other AS's ASBR in Inter-AS
option A) sits behind a port of the VRF and peers with a gateway address of
the VRF (the neighbor's ``local_address``). This host has no VRF devices, so
the agent cannot open that TCP session in a VRF of its own stack. Instead the
forwarder holding the port carries the session's segments to and from a TUN
device it owns (vpe.dataplane.userspace.local), where the agent sees each such
neighbor at a *mapped* address of ``[dataplane] session_prefix`` (IPv6:
``session_prefix6``); the agent's own end of all of them is the prefix's first
address (the *host* address). The forwarder rewrites addresses and the BGP
port both ways (:class:`~vpe.dataplane.driver.LocalSession`).

:class:`PortSessions` allocates the mapped addresses (in configuration order,
so they are the same after a restart), turns each such neighbor into the
neighbor the speaker really talks to (address: the mapped one; local address:
the host one; the next hop sent: the neighbor's ``local_address`` in the VRF,
unless ``next_hop`` says otherwise) and lists the forwarder's sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from ..dataplane.driver import LocalSession
from .config import AgentConfig, VrfNeighborConfig

IPAddress = IPv4Address | IPv6Address


class SessionPrefixFull(ValueError):
    """No mapped address is left in the session prefix of that IP version."""


@dataclass(frozen=True, slots=True)
class PortNeighbor:
    """One VRF neighbor reached through a port: as configured, and as the speaker sees it."""

    vrf: str
    configured: VrfNeighborConfig
    session: VrfNeighborConfig

    @property
    def mapped(self) -> str:
        return self.session.address


class PortSessions:
    """Mapped addresses of the VRF neighbors reached through ports, and their sessions."""

    def __init__(self, prefix: str, prefix6: str, listen_port: int) -> None:
        nets: dict[int, IPv4Network | IPv6Network] = {4: ip_network(prefix), 6: ip_network(prefix6)}
        self._nets = nets
        self.listen_port = listen_port
        #: mapped address -> the neighbor
        self.neighbors: dict[str, PortNeighbor] = {}

    def host(self, version: int) -> IPAddress:
        """The agent's own end of every session of IP version ``version``."""
        return self._nets[version].network_address + 1

    def hosts(self) -> list[str]:
        """The host addresses in use (the agent listens on them)."""
        return sorted({str(self.host(ip_address(n.configured.address).version)) for n in self.neighbors.values()})

    def map(self, vrf: str, vn: VrfNeighborConfig) -> VrfNeighborConfig:
        """The neighbor the speaker talks to for ``vn`` of ``vrf`` (a new mapped address)."""
        version = ip_address(vn.address).version
        net = self._nets[version]
        taken = {ip_address(m) for m in self.neighbors}
        mapped = next((a for a in _hosts_from(net, 2) if a not in taken), None)  # lazily
        if mapped is None:
            raise SessionPrefixFull(f"VRF {vrf} neighbor {vn.address}: no address left in the session "
                                    f"prefix {net} (dataplane.session_prefix{'6' if version == 6 else ''})")
        session = vn.model_copy(update={
            "address": str(mapped),
            "local_address": str(self.host(version)),
            "via": "host",
            "next_hop": vn.next_hop if vn.next_hop is not None or version == 6 else vn.local_address,
            "next_hop6": vn.next_hop6 if vn.next_hop6 is not None or version == 4 else vn.local_address,
            "description": vn.description or f"VRF {vrf} neighbor {vn.address} through a port",
        })
        self.neighbors[str(mapped)] = PortNeighbor(vrf, vn, session)
        return session

    def unmap(self, mapped: str) -> PortNeighbor | None:
        return self.neighbors.pop(mapped, None)

    def find(self, vrf: str, address: str) -> PortNeighbor | None:
        """The neighbor of ``vrf`` at ``address`` in the VRF (None: none reached through a port)."""
        return next((n for n in self.neighbors.values()
                     if n.vrf == vrf and n.configured.address == address), None)

    def rewrite(self, cfg: AgentConfig) -> AgentConfig:
        """``cfg`` with every VRF neighbor reached through a port replaced by its session."""
        vrfs = [v.model_copy(update={"neighbors": [self.map(v.name, n) if n.via == "port" else n
                                                   for n in v.neighbors]})
                for v in cfg.vrfs]
        return cfg.model_copy(update={"vrfs": vrfs})

    def local_session(self, n: PortNeighbor) -> LocalSession:
        version = ip_address(n.mapped).version
        assert n.configured.local_address is not None  # checked by VrfNeighborConfig
        return LocalSession(n.vrf, ip_address(n.configured.address), ip_address(n.configured.local_address),
                            ip_address(n.mapped), self.host(version), self.listen_port)

    def local_sessions(self) -> list[LocalSession]:
        return [self.local_session(n) for n in self.neighbors.values()]


def _hosts_from(net: IPv4Network | IPv6Network, first: int) -> Iterator[IPAddress]:
    """Host addresses of ``net`` from offset ``first`` (at most 65,536 of them), one at a
    time: the first free one is all :meth:`PortSessions.map` needs."""
    last = min(net.num_addresses - 2 if net.version == 4 else net.num_addresses - 1, first + 65535)
    return (net.network_address + i for i in range(first, last + 1))
