"""The agent's composition: builds the router, the VPN bridge, the FIB link,
the durable operations and the read-only view, and starts and stops them.

No routing logic lives here; each part has its own home:

* :class:`~vpe.agent.router.Router` - BGP sessions -> RIB -> Adj-RIB-Out, MRAI;
* :class:`~vpe.agent.bridge.VpnBridge` - RIB <-> VPN service <-> FIB,
  attachments, RTC and I-PMSI origination;
* :class:`~vpe.agent.durable.DurableOps` - the API's VPN and port operations,
  persisted in the SQLite store;
* :class:`~vpe.agent.view.AgentView` - what the API, CLI and metrics read;
* the FIB link (:mod:`vpe.agent.fib`) to the forwarder, when a dataplane
  driver is configured.

The process around it (the API servers, signals) is :mod:`vpe.daemon`, at
the top of the house: the agent package never imports the API.
"""

from __future__ import annotations

import logging
import time
from ipaddress import IPv4Address, ip_address
from typing import Any

from ..bgp.speaker import Speaker
from ..bgp.wire.constants import IPV4_LABELED, IPV6_LABELED
from ..dataplane.channel import load_key
from ..dataplane.driver import NextHop
from ..policy import PolicyBook, PolicyError, Relabeler, RelabelKey, SwapChanges, parse_policy
from ..rib.adj_rib_out import AdjRibOut
from ..rib.rib import Rib
from ..vpn.chains import ChainDef, ServiceDef
from ..vpn.leaking import LeakPolicy
from ..vpn.service import VpnService
from .bridge import VpnBridge
from .chains import ChainBook
from .circuits import Circuits
from .config import AgentConfig
from .durable import DurableOps
from .fib import FibProgrammer
from .fib_many import ManyFibs
from .labeled_transport import LabeledTransport
from .pe_ce import VrfPeering
from .port_sessions import PortSessions
from .restart import GracefulRestartManager
from .router import Router
from .store import Store
from .view import AgentView

log = logging.getLogger("vpe.engine")


class Engine:
    """One agent's control plane, assembled from its parts."""

    def __init__(self, cfg: AgentConfig, store: Store | None = None) -> None:
        self.cfg = cfg
        # durable state (vpe.agent.store): its presence means this is a restart
        self.store = store
        saved = store.service_state() if store is not None else None
        dp = cfg.dataplane
        self.router_id = IPv4Address(cfg.bgp.router_id)
        first = dp.forwarders[0].underlay_address if dp.forwarders else None
        self.underlay = ip_address(dp.underlay_address or first or self.router_id)
        self.fib: FibProgrammer | ManyFibs | None = (
            FibProgrammer(dp.fib_socket, self.underlay, encap_order=dp.encapsulations,
                          key=load_key(dp.fib_key_file) if dp.fib_key_file else None,
                          keepalive=dp.fib_keepalive, gateway_mac=dp.gateway_mac)
            if dp.driver != "none" and not dp.forwarders
            else None
        )
        if dp.forwarders:  # one agent, several forwarders (R2.4)
            self.fib = ManyFibs({
                f.name: FibProgrammer(f.fib_socket, ip_address(f.underlay_address), encap_order=dp.encapsulations,
                                      key=load_key(f.fib_key_file) if f.fib_key_file else None,
                                      keepalive=dp.fib_keepalive, gateway_mac=dp.gateway_mac)
                for f in dp.forwarders})
        self.vpn = VpnService(self.router_id, next_hop=self.underlay, encapsulations=dp.encapsulations,
                              state=saved, now=time.monotonic(),
                              local_next_hops=self.fib.underlays() if isinstance(self.fib, ManyFibs) else ())
        if isinstance(self.fib, ManyFibs):
            self.vpn.exporter.endpoint_next_hop = self.fib.underlay_for
            self.fib.bum_label = self.vpn.vrf_label
        # VRF neighbors reached through a port of their VRF: the speaker, the policies and
        # the PE-CE peering see them at their mapped addresses (vpe.agent.port_sessions)
        self.port_sessions = PortSessions(dp.session_prefix, dp.session_prefix6, cfg.bgp.port)
        run = self.port_sessions.rewrite(cfg)
        self.router = Router(run, next_hop=self.underlay, restarting=saved is not None,
                             on_selection_done=self._selection_done,
                             policies=self._policy_book(run, store),
                             freebind=self.port_sessions.hosts(),
                             relabeler=Relabeler(self._hold_swap_label, self._release_swap_label),
                             on_swaps=self._swaps_changed)
        self.bridge = VpnBridge(self.router, self.vpn, self.fib, self.underlay)
        if isinstance(self.fib, ManyFibs):  # an I-PMSI route per forwarder: remotes copy to each
            self.bridge.pmsi.originators = self.fib.underlays
        # Inter-AS option C: our loopback as labeled unicast, remote loopbacks into the FIB
        self.transport = (LabeledTransport(self.router, self.vpn, self.fib, self.underlay)
                          if any({IPV4_LABELED, IPV6_LABELED} & n.family_set() for n in cfg.neighbors) else None)
        # PE-CE BGP (Inter-AS option A): the VRFs' own neighbors (the API may add some)
        self.pe_ce: VrfPeering | None = VrfPeering(run, self.router, self.bridge, self.vpn)
        if self.fib is not None:
            for x in self.port_sessions.local_sessions():
                self.fib.set_session(x)
        self._configure(cfg)
        self.ops = DurableOps(self.bridge, store, config_vrfs={v.name for v in cfg.vrfs})
        self.ops.port_sessions = self.port_sessions
        #: attachment circuits of signalled endpoints, when this vPE is an external PE (R2.2)
        self.circuits = Circuits(store)
        if store is not None and self.fib is not None:
            self.circuits.restore([str(d.get("ifname", "")) for d in store.ports().values()])
        self.chains = self.ops.chains = self._chains(cfg)
        self.view = AgentView(self.router, self.bridge, dp.driver, self.ops.specs,
                              neighbors={**{n.address: {"description": n.description} for n in cfg.neighbors},
                                         **self._vrf_neighbor_views(run)},
                              pe_ce=self.pe_ce, port_sessions=self.port_sessions)
        self.ops.restore()
        self.chains.restore()  # after the API's VPN instances: chains name them
        if self.transport is not None:  # after the restore, which frees the labels nobody claimed
            self.transport.start()

    @staticmethod
    def _vrf_neighbor_views(run: AgentConfig) -> dict[str, dict[str, Any]]:
        """The configuration file's descriptions of VRF neighbors (the view asks the port
        sessions for the rest: ``via``, ``vrf_address``)."""
        return {n.address: {"description": n.description} for v in run.vrfs for n in v.neighbors}

    @staticmethod
    def _policy_book(cfg: AgentConfig, store: Store | None) -> PolicyBook:
        """The configuration's policies and bindings, then those made through the API
        (a policy of the same name in the configuration file wins)."""
        book = cfg.policy_book()
        for name, spec in (store.policies() if store is not None else {}).items():
            if book.get(name) is not None:
                log.warning("policy %s from %s: the configuration file defines it too; using the "
                            "configuration", name, store.path if store else "")
                continue
            try:
                book.put(parse_policy(spec, f"policies[{name}]", name=name))
            except PolicyError as e:
                log.error("policy %s from the state database not restored: %s", name, e)
        return book

    # -- relabel (export policies): swap labels from the VPN label space, FIB swap entries --

    def _hold_swap_label(self, key: RelabelKey) -> int:
        return self.vpn.hold_swap_label(str(key.next_hop), key.label, time.monotonic())

    def _release_swap_label(self, key: RelabelKey) -> None:
        self.bridge.release_labels(self.vpn.release_swap_label(str(key.next_hop), key.label))

    def _swaps_changed(self, ch: SwapChanges) -> None:
        if self.fib is None:
            return
        for e in ch.removed:
            self.fib.remove_swap(e.local_label)
        for e in ch.added:
            self.fib.set_swap(e.local_label, NextHop.remote(e.next_hop, e.out_label, self.fib.encap_for(())))

    def _configure(self, cfg: AgentConfig) -> None:
        """The configuration file's VRFs, their static routes and the leak policies."""
        bridge, vpn = self.bridge, self.vpn
        for v in cfg.vrfs:
            bridge.apply(vpn.add_vrf(v.name, rd=v.rd, import_rts=v.import_rts, export_rts=v.export_rts,
                                     route_targets=v.route_targets, label_mode=v.label_mode,
                                     multipath=v.multipath, ecmp=v.ecmp))
            if v.import_policy or v.export_policy:
                book = self.router.policies
                bridge.apply(vpn.set_policies(
                    v.name,
                    book.get(v.import_policy) if v.import_policy else None,
                    book.get(v.export_policy) if v.export_policy else None,
                ))
            for r in v.routes:
                bridge.apply(vpn.add_local_route(v.name, r.prefix, kind=r.kind, next_hop=r.next_hop))
            if v.aggregates:
                bridge.apply(vpn.set_aggregates(v.name, [(a.prefix, a.summary_only) for a in v.aggregates]))
            if v.service is not None:
                bridge.set_service(v.name, v.service.address, attract=v.service.attract,
                                   readv_from_rts=v.service.readv_from_rts,
                                   readv_exclude=v.service.readv_exclude)
        for lk in cfg.leaks:
            bridge.apply(vpn.add_leak_policy(LeakPolicy(
                lk.name,
                lk.source,
                lk.destination,
                None if lk.prefixes is None else tuple(lk.prefixes),  # type: ignore[arg-type]
                None if lk.route_targets is None else tuple(lk.route_targets),  # type: ignore[arg-type]
            )))
        bridge.start()

    def _chains(self, cfg: AgentConfig) -> ChainBook:
        """The configuration file's services and chains (docs/service-chains.md)."""
        book = ChainBook(self.bridge, self.store)
        for d in cfg.services:
            book.put_service(ServiceDef.parse(d))
        for d in cfg.chains:
            c = ChainDef.parse(d)
            book.put_chain(c)
            book.configured.add(c.name)
        return book

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        if self.fib is not None and not self.router.gr.deferring:  # else when selection is done
            self.fib.start()
        await self.router.start()

    async def stop(self) -> None:
        await self.router.stop()
        if self.fib is not None:
            await self.fib.stop()

    async def leave(self) -> None:
        """Stop as a graceful restart expects: the sessions are cut when the loop ends
        (no NOTIFICATION), so peers keep our routes; the forwarder keeps its FIB."""
        self.router.gr.stop()
        if self.fib is not None:
            await self.fib.stop()

    def _selection_done(self) -> None:
        """Graceful restart's route selection is over: the forwarder gets a full sync."""
        if self.fib is not None:
            self.fib.start()

    # -- the parts, by name (for tests and tools that look inside) ------------------

    @property
    def speaker(self) -> Speaker:
        return self.router.speaker

    @property
    def rib(self) -> Rib:
        return self.router.rib

    @property
    def out(self) -> AdjRibOut:
        return self.router.out

    @property
    def gr(self) -> GracefulRestartManager:
        return self.router.gr

    def flush(self) -> None:
        self.router.flush()
