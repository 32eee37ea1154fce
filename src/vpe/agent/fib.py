"""The agent's side of the FIB channel: desired forwarder state, and getting it there.

The agent keeps the whole state it wants the forwarder to hold (ports,
routes, labels); every change updates it and queues a :class:`Batch`. A
background task owns the (blocking) :class:`FibClient`: it connects, sends a
full sync, then the queued batches in order. When the forwarder goes away
it reconnects with backoff and syncs everything again, so the forwarder's
state always converges to the agent's. Meanwhile the forwarder keeps
forwarding with what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from ..dataplane.channel import ChannelError, FibClient
from ..dataplane.driver import (
    AddressPair,
    Batch,
    Encap,
    LabelEntry,
    NextHop,
    Port,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
from ..vpn.entries import Endpoint, Leak, RouteKind, RouteSource
from ..vpn.label_owners import EndpointLabel, LabelOwner

if TYPE_CHECKING:
    from ..vpn.events import VrfTableChange
    from ..vpn.service import VpnService
    from .engine import Attachment

log = logging.getLogger("vpe.fib")

#: RFC 9012 tunnel type -> forwarder encapsulation name
_ENCAP_NAMES: dict[int, Encap] = {13: "mpls-in-udp", 11: "mpls-in-gre"}


_REFUSED_PORT = re.compile(r"port (\S+): cannot open")


def _refused_port(error: str) -> str | None:
    """The port a forwarder refusal names (``port NAME: cannot open ...``), if any."""
    m = _REFUSED_PORT.search(error)
    return m.group(1) if m else None


def fib_address(spec: str) -> str | tuple[str, int]:
    """``tcp:HOST:PORT`` (IPv6 as ``tcp:[addr]:port``) -> (host, port); anything else is a path."""
    if not spec.startswith("tcp:"):
        return spec
    host, _, port = spec[4:].rpartition(":")
    return host.strip("[]"), int(port)


class FibProgrammer:
    """Desired forwarder state plus the task that keeps the forwarder in step with it."""

    def __init__(self, socket_path: str, underlay: IPv4Address | IPv6Address,
                 encap_order: Iterable[Encap] = ("mpls-in-udp", "mpls-in-gre")) -> None:
        self.socket_path = socket_path
        self.underlay = underlay
        self.encap_order = tuple(encap_order)
        self.ports: dict[str, Port] = {}
        self.routes: dict[RouteKey, Route] = {}
        self.labels: dict[int, LabelEntry] = {}
        self.replication: dict[str, ReplicationList] = {}
        #: the VPN service of the last table change, to re-resolve what depends on ports
        self._vpn: VpnService | None = None
        #: table changes holding a local static route: their next hop resolves to a
        #: port (by the VM's address), which may be attached later
        self._statics: dict[RouteKey, VrfTableChange] = {}
        self._queue: list[tuple[Batch, str | None]] = []
        #: ports the forwarder refused (cannot open the interface): name -> why
        self.failed_ports: dict[str, str] = {}
        self._port_waiters: dict[str, asyncio.Future[str | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error = ""
        self.batches_sent = 0
        self.latencies: list[float] = []

    @property
    def address(self) -> str | tuple[str, int]:
        """Where the forwarder listens: a Unix socket path, or ``tcp:HOST:PORT``
        for a forwarder on another host (the control plane need not run where
        the forwarding happens, R2.4)."""
        return fib_address(self.socket_path)

    # -- state changes ---------------------------------------------------------

    async def port_result(self, name: str, timeout: float = 5.0) -> str | None:
        """Wait until the forwarder took port ``name`` (None) or refused it (the reason).

        Returns None at once when no forwarder is connected: it gets the port
        with the full sync when it (re)connects.
        """
        fut = self._port_waiters.get(name)
        if fut is None or not self.connected:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None

    def add_port(self, a: Attachment) -> None:
        port = Port(
            name=a.name,
            ifname=a.ifname,
            vrf=a.vrf,
            mac=a.mac,
            ips=tuple(a.ips),  # type: ignore[arg-type]
            gateway_ips=tuple(a.gateways),  # type: ignore[arg-type]
            allowed_pairs=tuple(AddressPair(p) for p in a.allowed_pairs),  # type: ignore[arg-type]
        )
        self.ports[a.name] = port
        self.failed_ports.pop(a.name, None)
        old = self._port_waiters.pop(a.name, None)
        if old is not None and not old.done():
            old.set_result(None)
        with contextlib.suppress(RuntimeError):  # no event loop (offline use): nobody waits
            self._port_waiters[a.name] = asyncio.get_running_loop().create_future()
        self._queue_batch(Batch(add_ports=(port,), **self._port_dependents()), port=a.name)

    def remove_port(self, name: str) -> None:
        self.failed_ports.pop(name, None)
        self._settle(name, None)
        if self.ports.pop(name, None) is not None:
            self._queue_batch(Batch(remove_ports=(name,), **self._port_dependents()))

    def _port_dependents(self) -> dict[str, Any]:
        """Static routes and per-endpoint labels name a VM by address: re-resolve them
        after the set of ports changed (the route may have come before the port)."""
        if self._vpn is None:
            return {}
        return self._changes(list(self._statics.values()), self._vpn)

    def set_replication(self, vrf: str, members: Iterable[NextHop]) -> None:
        """The remote vPEs that get a copy of ``vrf``'s broadcast/multicast (R3.2)."""
        hops = tuple(sorted(set(members), key=lambda h: (str(h.endpoint), h.label or 0, h.encap)))
        if not hops:
            if self.replication.pop(vrf, None) is not None:
                self._queue_batch(Batch(remove_replication=(vrf,)))
            return
        rl = ReplicationList(vrf, hops)
        if self.replication.get(vrf) != rl:
            self.replication[vrf] = rl
            self._queue_batch(Batch(set_replication=(rl,)))

    def vrf_changes(self, changes: Iterable[VrfTableChange], vpn: VpnService) -> None:
        self._vpn = vpn
        kw = self._changes(list(changes), vpn)
        if kw:
            self._queue_batch(Batch(**kw))

    def _changes(self, changes: list[VrfTableChange], vpn: VpnService) -> dict[str, Any]:
        bindings = vpn.label_bindings()
        add: list[Route] = []
        remove: list[RouteKey] = []
        for ch in changes:
            key = RouteKey(ch.vrf, ch.network)
            if any(r.source is RouteSource.LOCAL and r.kind is RouteKind.STATIC for r in ch.routes):
                self._statics[key] = ch
            else:
                self._statics.pop(key, None)
            hops = self._next_hops(ch, vpn, bindings)
            if hops:
                r = Route(ch.vrf, ch.network, tuple(hops[:512]))
                if self.routes.get(key) != r:
                    self.routes[key] = r
                    add.append(r)
            elif key in self.routes:
                del self.routes[key]
                remove.append(key)
        labels = self._label_table(bindings)
        add_l = [e for lab, e in labels.items() if self.labels.get(lab) != e]
        rem_l = [lab for lab in self.labels if lab not in labels]
        self.labels = labels
        if add or remove or add_l or rem_l:
            return {"add_routes": tuple(add), "remove_routes": tuple(remove),
                    "add_labels": tuple(add_l), "remove_labels": tuple(rem_l)}
        return {}

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
                   bindings: dict[int, LabelOwner]) -> list[NextHop]:
        hops: list[NextHop] = []
        for r in ch.routes:
            while isinstance(r.origin, Leak):  # leaked: forward as the source VRF's entry does
                r = r.origin.route
            if r.next_hop is None:
                if r.kind is RouteKind.HOST and isinstance(r.origin, Endpoint):
                    hops.append(NextHop.local(r.origin.name))
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
            hops.append(NextHop.remote(nh, r.labels[0], encap))
        return hops

    def _resolve_local(self, label: int, ch: VrfTableChange, vpn: VpnService,
                       bindings: dict[int, LabelOwner]) -> NextHop | None:
        owner = bindings.get(label)
        if owner is None:
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
        return None

    def encap_for(self, offered: tuple[int, ...]) -> Encap:
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
                port = self._port_for(owner.vrf, owner.endpoint)
                out[label] = LabelEntry(label, "port", port if port is not None else owner.endpoint)
            else:
                out[label] = LabelEntry(label, "vrf", owner.vrf)
        return out

    def state(self) -> State:
        return State(ports=tuple(self.ports.values()), routes=tuple(self.routes.values()),
                     labels=tuple(self.labels.values()), replication=tuple(self.replication.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "socket": self.socket_path,
            "connected": self.connected,
            "last_error": self.last_error,
            "batches_sent": self.batches_sent,
            "failed_ports": dict(self.failed_ports),
            "ports": [p.to_json() for p in self.ports.values()],
            "routes": [r.to_json() for r in self.routes.values()],
            "labels": [e.to_json() for e in self.labels.values()],
            "replication": [r.to_json() for r in self.replication.values()],
        }

    # -- the channel task -------------------------------------------------------

    def _queue_batch(self, batch: Batch, port: str | None = None) -> None:
        self._queue.append((batch, port))
        self._wake.set()

    def _settle(self, port: str | None, error: str | None) -> None:
        if port is None:
            return
        fut = self._port_waiters.pop(port, None)
        if fut is not None and not fut.done():
            fut.set_result(error)

    def _usable_state(self) -> State:
        st = self.state()
        if not self.failed_ports:
            return st
        return State(ports=tuple(p for p in st.ports if p.name not in self.failed_ports),
                     routes=st.routes, labels=st.labels, replication=st.replication)

    def _sync(self, client: FibClient) -> None:
        """Full sync; a port the forwarder cannot open is set aside (named in
        /v1/fib ``failed_ports``) so that one bad port never blocks the rest."""
        for _ in range(len(self.ports) + 1):
            try:
                client.sync(self._usable_state())
                return
            except ChannelError as e:
                bad = _refused_port(str(e))
                if bad is None or bad not in self.ports or bad in self.failed_ports:
                    raise
                self.failed_ports[bad] = str(e)
                log.error("forwarder refused port %s (%s): left out of the forwarder until re-attached", bad, e)
        client.sync(self._usable_state())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fib-channel")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                client = await asyncio.to_thread(FibClient.connect, self.address, 10.0)
            except (OSError, ChannelError) as e:
                if self.last_error != str(e):
                    log.warning("forwarder at %s not reachable: %s (retrying)", self.socket_path, e)
                self.last_error = str(e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            try:
                self._queue.clear()
                await asyncio.to_thread(self._sync, client)
                self.connected = True
                self.last_error = ""
                log.info("forwarder at %s synchronised: %d ports, %d routes, %d labels",
                         self.socket_path, len(self.ports), len(self.routes), len(self.labels))
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    while self._queue:
                        batch, port = self._queue.pop(0)
                        t = time.perf_counter()
                        try:
                            await asyncio.to_thread(client.apply, batch)
                            self._settle(port, None)
                        except ChannelError as e:
                            if "closed" in str(e):
                                raise
                            log.error("forwarder refused a batch (%s); resynchronising", e)
                            bad = _refused_port(str(e))
                            if bad is not None and bad in self.ports:
                                self.failed_ports[bad] = str(e)
                                self._settle(bad, str(e))
                            self._settle(port, str(e))
                            for _b, p in self._queue:
                                self._settle(p, None)
                            self._queue.clear()
                            await asyncio.to_thread(self._sync, client)
                        self.batches_sent += 1
                        self.latencies.append(time.perf_counter() - t)
                        del self.latencies[:-1000]
            except (OSError, ChannelError) as e:
                log.warning("forwarder channel lost: %s; reconnecting", e)
                self.last_error = str(e)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    client.close()

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        """The forwarder's counters, on a connection of its own (blocking: call it
        in a worker thread); ``timeout`` bounds the connect and each read."""
        with FibClient.connect(self.address, timeout) as c:
            return c.counters()

