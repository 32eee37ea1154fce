"""Service chains on one vPE: the definitions, their compiled plans, what they configure.

:class:`ChainBook` keeps the services and chains (from the configuration
file and ``PUT /v1/chains/NAME``), compiles each chain with
:func:`vpe.vpn.chains.compile_chain` against the VPN instances of this vPE,
and gives :class:`~vpe.agent.durable.DurableOps` what a port attached with a
service role needs (its VRF's route targets and service settings). For a
chain with a classifier it keeps the redirect VRF and the forwarder's
redirect entry on hosts that have the client VPN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import ip_interface
from typing import Any

from ..vpn.chains import (
    CHAIN_MULTIPATH,
    ChainDef,
    ChainError,
    ChainPlan,
    ServiceDef,
    Side,
    UnknownChainPart,
    check_pool_slice,
    compile_chain,
    instance_vrf,
)
from ..vpn.errors import InUse
from .bridge import VpnBridge
from .store import Store

log = logging.getLogger("vpe.agent.chains")


@dataclass(frozen=True, slots=True)
class ServiceRole:
    """A port attached as one side of an instance of ``service`` in ``chain``;
    ``pool``: the NAT pool slice the instance owns (outside of a NAT service)."""

    chain: str
    service: str
    side: Side
    pool: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"chain": self.chain, "service": self.service, "side": self.side, "pool": self.pool}


class ChainBook:
    """Services, chains and their plans; the VRFs a chain needs on this vPE."""

    def __init__(self, bridge: VpnBridge, store: Store | None = None) -> None:
        self.bridge = bridge
        #: where definitions made through the API are kept (:meth:`save`, :meth:`restore`)
        self.store = store
        self.services: dict[str, ServiceDef] = {}
        self.chains: dict[str, ChainDef] = {}
        self.plans: dict[str, ChainPlan] = {}
        #: chains defined in the configuration file (changed there, not through the API)
        self.configured: set[str] = set()

    # -- definitions ------------------------------------------------------------------

    def _vpns(self) -> Mapping[str, tuple[list[str], list[str]]]:
        vpn = self.bridge.vpn

        class _View(Mapping[str, tuple[list[str], list[str]]]):
            def __getitem__(self, name: str) -> tuple[list[str], list[str]]:
                v = vpn.vrf(name)
                return [str(r) for r in v.import_rts], [str(r) for r in v.export_rts]

            def __contains__(self, name: object) -> bool:
                return name in vpn.vrfs

            def __iter__(self) -> Iterator[str]:
                return iter(vpn.vrfs)

            def __len__(self) -> int:
                return len(vpn.vrfs)

        return _View()

    def put_service(self, s: ServiceDef) -> None:
        old = self.services.get(s.name)
        self.services[s.name] = s
        try:
            for name, c in self.chains.items():
                if s.name in c.services:
                    self.plans[name] = compile_chain(c, self.services, self._vpns())
        except ValueError:
            if old is None:
                del self.services[s.name]
            else:
                self.services[s.name] = old
            raise

    def delete_service(self, name: str) -> None:
        if name not in self.services:
            raise UnknownChainPart(f"no service {name!r}")
        users = sorted(c.name for c in self.chains.values() if name in c.services)
        if users:
            raise InUse(f"service {name!r} is in chain(s) {', '.join(users)}")
        del self.services[name]

    def put_chain(self, c: ChainDef) -> ChainPlan:
        """Compile and keep chain ``c`` (replacing one of the same name whose instance
        VRFs then follow the new plan only when re-attached)."""
        plan = compile_chain(c, self.services, self._vpns())
        old = self.plans.get(c.name)
        if old is not None and old.redirect is not None:
            self._drop_redirect(old)
        self.chains[c.name] = c
        self.plans[c.name] = plan
        if plan.redirect is not None:
            self._set_redirect(plan)
        log.info("chain %s: VPN %s -> %s -> VPN %s", c.name, c.vpn, " -> ".join(c.services), c.destination)
        return plan

    def delete_chain(self, name: str) -> None:
        plan = self.plan(name)
        users = self.instances(name)
        if users:
            raise InUse(f"chain {name!r} has service instance ports attached: {', '.join(users)}")
        if plan.redirect is not None:
            self._drop_redirect(plan)
        del self.chains[name]
        del self.plans[name]

    def plan(self, name: str) -> ChainPlan:
        p = self.plans.get(name)
        if p is None:
            raise UnknownChainPart(f"chain: no chain {name!r}")
        return p

    def instances(self, chain: str) -> list[str]:
        """Ports attached as instances of ``chain``'s services (their VRFs are ``chain.PORT``)."""
        prefix = chain + "."
        return sorted(a.name for a in self.bridge.attachments if a.vrf.startswith(prefix)
                      and a.vrf == instance_vrf(chain, a.name))

    # -- persistence of the API's definitions ------------------------------------------------

    def save(self, kind: str, name: str, spec: dict[str, Any] | None) -> None:
        """Keep (``spec``) or forget (None) a service or chain made through the API."""
        if self.store is None:
            return
        with self.store.transaction() as tx:
            if spec is None:
                tx.delete_chain_def(kind, name)
            else:
                tx.put_chain_def(kind, name, spec)

    def restore(self) -> None:
        """The services and chains made through the API, back after a restart (a
        definition of the configuration file of the same name wins)."""
        if self.store is None:
            return
        for name, d in self.store.chain_defs("service").items():
            if name not in self.services:
                try:
                    self.put_service(ServiceDef.parse({**d, "name": name}))
                except ValueError as e:
                    log.error("service %s from %s not restored: %s", name, self.store.path, e)
        for name, d in self.store.chain_defs("chain").items():
            if name not in self.configured:
                try:
                    self.put_chain(ChainDef.parse({k: v for k, v in d.items() if k != "name"}, name=name))
                except ValueError as e:
                    log.error("chain %s from %s not restored: %s", name, self.store.path, e)

    # -- redirect (classifier chains) ---------------------------------------------------

    def _set_redirect(self, plan: ChainPlan) -> None:
        r = plan.redirect
        assert r is not None
        vpn = self.bridge.vpn
        if r.vpn not in vpn.vrfs:
            return
        if r.vrf not in vpn.vrfs:
            self.bridge.add_vrf(r.vrf, rd="auto", import_rts=list(r.import_rts), multipath=CHAIN_MULTIPATH)
        fib = self.bridge.fib
        if fib is not None:
            fib.set_redirect(plan.chain.name, r.vpn, r.classifier, r.vrf)

    def vrf_added(self, name: str) -> None:
        """VPN instance ``name`` came (through the API): the classifier chains of that
        VPN get their redirect VRF and forwarder entry on this host now."""
        for plan in self.plans.values():
            if plan.redirect is not None and plan.redirect.vpn == name:
                self._set_redirect(plan)

    def _drop_redirect(self, plan: ChainPlan) -> None:
        r = plan.redirect
        assert r is not None
        fib = self.bridge.fib
        if fib is not None:
            fib.remove_redirect(plan.chain.name)
        if r.vrf in self.bridge.vpn.vrfs:
            self.bridge.remove_vrf(r.vrf)

    # -- service instances ------------------------------------------------------------------

    def instance_spec(self, role: ServiceRole, port: str, ips: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        """(VRF name, VPN spec with its ``service`` settings) of a port attached with ``role``."""
        plan = self.plan(role.chain)
        hop = plan.hop(role.service)
        side = hop.side(role.side)
        vrf = instance_vrf(role.chain, port)
        if role.side == "outside":
            pool = check_pool_slice(self.services[role.service], role.pool, "service.pool")
        elif role.pool is not None:
            raise ChainError("service.pool: a pool slice belongs to the outside port of a NAT instance")
        else:
            pool = None
        v4 = [str(ip_interface(x).ip) for x in ips if ip_interface(x).version == 4]
        v6 = [str(ip_interface(x).ip) for x in ips if ip_interface(x).version == 6]
        via = (v4 or v6)[0]
        attract = list(side.attract) if role.side == "inside" else ([pool] if pool else [])
        spec: dict[str, Any] = {
            "import_rts": list(side.import_rts),
            "export_rts": list(side.export_rts),
            "multipath": CHAIN_MULTIPATH,
            "description": f"chain {role.chain}: {role.side} of a {role.service} instance",
            "service": {
                "address": via,
                "attract": attract,
                "readv_from_rts": list(side.readv_from_rts),
                "readv_exclude": list(side.readv_exclude),
                "role": role.to_json(),
            },
        }
        return vrf, spec

    def describe(self, name: str) -> dict[str, Any]:
        plan = self.plan(name)
        d = plan.to_json()
        d["instances"] = self.instances(name)
        d["hops"] = [
            {"service": h.service,
             "inside": {"import_rts": list(h.inside.import_rts), "export_rts": list(h.inside.export_rts),
                        "attract": list(h.inside.attract)},
             "outside": {"import_rts": list(h.outside.import_rts), "export_rts": list(h.outside.export_rts),
                         "readv_from_rts": list(h.outside.readv_from_rts), "nat_pool": h.outside.nat_pool}}
            for h in plan.hops
        ]
        return d


__all__ = ["ChainBook", "ServiceRole"]
