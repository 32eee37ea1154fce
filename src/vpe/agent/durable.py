"""The API's VPN and port operations, applied to the VPN bridge and the store together.

Each operation is all-or-nothing across the two:

* the store rows are written inside an open transaction first;
* then the bridge applies the change; if it refuses (``ValueError``), the
  transaction is rolled back: the store is unchanged;
* then the transaction commits; if that fails (disk full, I/O error), the
  bridge change is undone step by step (``undo`` list): the bridge is as
  before, and the caller gets :class:`~vpe.agent.store.StoreError`.

Values are checked before anything is applied, so the bridge refuses only
what cannot be known beforehand (an RD another VRF holds). Without a store
(tests, ``state_dir`` unused) the same code runs without the transaction.

At start, :meth:`DurableOps.restore` replays what the store holds: VPN
instances created through the API (a VRF of the same name in the config
file wins), then the attachments, reusing the labels and RDs saved with
them (:class:`~vpe.vpn.service.VpnService` ``state=``), then the BGP neighbors
of VRFs made through the API (their sessions start with the speaker).

VRF neighbors (``/v1/vpns/{vpn}/neighbors``): a PUT or DELETE writes its row
and commits first, then changes the live sessions (which cannot refuse what
was checked before); a neighbor of the configuration file is read-only. A VPN
instance with neighbors is not deleted (409) unless ``force`` is given, which
removes its neighbors first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

from ..vpn.attachments import Attachment
from ..vpn.errors import Conflict, NotFound
from ..vpn.rd_allocator import parse_rd
from ..vpn.route_target import parse_route_targets
from ..vpn.vrf import parse_label_mode, prefix_key
from .bridge import VpnBridge
from .chains import ChainBook, ServiceRole
from .config import VrfNeighborConfig
from .port_sessions import PortSessions
from .store import Store, StoreError, Transaction

log = logging.getLogger("vpe.agent.state")

Undo = list[Callable[[], object]]

#: names of VPN instances created through the API (as ``POST /v1/vpns`` checks them)
_VPN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _addr_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def _rt_texts(*lists: Any) -> list[str]:
    out: list[str] = []
    for lst in lists:
        for rt in lst or ():
            if rt not in out:
                out.append(rt)
    return out


def normalise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A VPN spec as stored: ``route_targets`` folded into import and export."""
    both = spec.get("route_targets") or []
    return {
        "rd": spec.get("rd") or "auto",
        "import_rts": _rt_texts(spec.get("import_rts"), both),
        "export_rts": _rt_texts(spec.get("export_rts"), both),
        "label_mode": spec.get("label_mode", "per-vrf"),
        "multipath": int(spec.get("multipath", 1)),
        "ecmp": str(spec.get("ecmp") or "per-flow"),
        "description": str(spec.get("description") or ""),
        "aggregates": [{"prefix": str(a["prefix"]), "summary_only": bool(a.get("summary_only", False))}
                       for a in spec.get("aggregates") or ()],
        **({"service": dict(spec["service"])} if spec.get("service") else {}),
    }


def vrf_args(spec: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Engine.add_vrf`` in a stored spec (the
    description is the API's, the VPN service does not know it)."""
    return {k: v for k, v in spec.items() if k not in ("description", "service")}


def service_args(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments of ``VpnBridge.set_service`` in a stored spec (None: a plain VRF)."""
    svc = spec.get("service")
    if not svc:
        return None
    return {"via": svc["address"], "attract": list(svc.get("attract") or ()),
            "readv_from_rts": list(svc.get("readv_from_rts") or ()),
            "readv_exclude": list(svc.get("readv_exclude") or ())}


def check_service(svc: Any) -> None:
    """``ValueError`` naming the field for a VRF's ``service`` block the VPN service would refuse."""
    if svc is None:
        return
    if not isinstance(svc, dict):
        raise ValueError("service: expected an object with address, attract, readv_from_rts, readv_exclude")
    unknown = set(svc) - {"address", "attract", "readv_from_rts", "readv_exclude", "role"}
    if unknown:
        raise ValueError(f"service: unknown key(s) {', '.join(sorted(unknown))}")
    if not svc.get("address"):
        raise ValueError("service.address: missing; the instance's address in the VRF (its port's)")
    import ipaddress

    try:
        ipaddress.ip_address(svc["address"])
    except ValueError:
        raise ValueError(f"service.address: {svc['address']!r} is not an IP address") from None
    for f in ("attract", "readv_exclude"):
        for i, p in enumerate(svc.get(f) or ()):
            try:
                ipaddress.ip_network(p, strict=True)
            except (ValueError, TypeError) as e:
                raise ValueError(f"service.{f}[{i}]: {p!r} is not a prefix ({e})") from None
    parse_route_targets(list(svc.get("readv_from_rts") or ()), "service.readv_from_rts")


def same_rts(given: Any, current: Any) -> bool:
    """Do two lists of route-target texts name the same set (``65000:1`` == ``target:65000:1``)?"""
    return parse_route_targets(list(given or ()), "route_targets") == \
        parse_route_targets(list(current or ()), "route_targets")


def check_spec(spec: dict[str, Any]) -> None:
    """``ValueError`` naming the field for a value the VPN service would refuse."""
    if "rd" in spec and spec["rd"] not in (None, "auto"):
        parse_rd(spec["rd"], "rd")
    for f in ("import_rts", "export_rts", "route_targets"):
        if spec.get(f) is not None:
            parse_route_targets(spec[f], f)
    if spec.get("label_mode") is not None:
        parse_label_mode(spec["label_mode"])
    check_service(spec.get("service"))
    mp = spec.get("multipath")
    if mp is not None and (type(mp) is not int or not 1 <= mp <= 512):
        raise ValueError(f"multipath: {mp!r} is not a path count in 1..512")
    ecmp = spec.get("ecmp")
    if ecmp is not None and ecmp not in ("per-flow", "per-packet", "per-prefix"):
        raise ValueError(f"ecmp: {ecmp!r} is not one of per-flow, per-packet, per-prefix")
    seen: set[tuple[int, bytes]] = set()
    for a in spec.get("aggregates") or ():
        k = prefix_key(a["prefix"], "aggregates prefix")
        if k in seen:
            raise ValueError(f"aggregates: {a['prefix']} is given twice")
        seen.add(k)


def _row_key(vpn: str, vn: VrfNeighborConfig) -> str:
    """The stored row of a VRF neighbor: its address; for one reached through a port (an
    address of its VRF, which another VRF may use too) ``address%vpn``."""
    return f"{vn.address}%{vpn}" if vn.via == "port" else vn.address


class DurableOps:
    """VPN and port operations of one VPN bridge, persisted in ``store`` (if any)."""

    def __init__(self, bridge: VpnBridge, store: Store | None, config_vrfs: Iterable[str] = ()) -> None:
        self.bridge = bridge
        self.store = store
        #: VPN instances of the configuration file (changed there, not through the API)
        self.config_vrfs = set(config_vrfs)
        #: specs of API-created VPN instances, as stored
        self.specs: dict[str, dict[str, Any]] = {}
        #: services and chains (set by the engine)
        self.chains: ChainBook | None = None
        #: VRF neighbors of the configuration file (read-only through the API)
        self.config_neighbors = set(bridge.router.vrf_of)
        #: VRF neighbors made through the API: address -> VPN instance
        self.api_neighbors: dict[str, str] = {}
        #: mapped addresses of VRF neighbors reached through ports (set by the engine)
        self.port_sessions: PortSessions | None = None
        self._neighbor_lock = asyncio.Lock()

    # -- the atomic frame ---------------------------------------------------------

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[tuple[Transaction | None, Undo]]:
        undo: Undo = []
        try:
            if self.store is None:
                yield None, undo
                return
            with self.store.transaction() as tx:
                yield tx, undo
                self._write_state(tx)
                tx.commit()
        except BaseException:
            for fn in reversed(undo):
                try:
                    fn()
                except Exception:  # keep undoing the rest; say what could not be undone
                    log.exception("undoing a failed operation: a step failed")
            raise

    def _write_state(self, tx: Transaction) -> None:
        """The label/RD rows changed since the last write, inside ``tx``; if the
        transaction does not commit, they are reported again next time."""
        vpn = self.bridge.vpn
        changes = vpn.take_state_changes(time.monotonic())
        tx.on_rollback(lambda: vpn.state_changes_lost(changes))
        tx.put_service_changes(changes)

    def save_state(self) -> None:
        """Write the VPN service's changed label/RD rows now (after start-up)."""
        if self.store is None:
            return
        with self.store.transaction() as tx:
            self._write_state(tx)

    # -- VPN instances -----------------------------------------------------------------

    def create_vpn(self, name: str, spec: dict[str, Any]) -> None:
        eng = self.bridge
        if name in eng.vpn.vrfs:
            raise Conflict(f"name: VPN instance {name!r} already exists")
        check_spec(spec)
        stored = normalise_spec(spec)
        with self._atomic() as (tx, undo):
            if tx is not None:
                tx.put_vpn(name, stored)
            eng.add_vrf(name, **vrf_args(stored))
            undo.append(lambda: eng.remove_vrf(name))
            svc = service_args(stored)
            if svc is not None:
                eng.set_service(name, **svc)
        self.specs[name] = stored
        if self.chains is not None:
            self.chains.vrf_added(name)
        log.info("VPN instance %s created (rd %s)", name, eng.vpn.vrf(name).rd, extra={"vrf": name})

    def update_vpn(self, name: str, changes: dict[str, Any]) -> None:
        eng = self.bridge
        if name not in eng.vpn.vrfs:
            raise NotFound(f"no VPN instance {name!r}")
        if name in self.config_vrfs:
            raise Conflict(
                f"VPN instance {name!r} is defined in the configuration file: change it there"
            )
        check_spec(changes)
        old = self._spec_of(name)
        new = dict(old)
        new.update({k: v for k, v in changes.items() if v is not None})
        vrf = eng.vpn.vrf(name)
        old_rd, old_auto = str(vrf.rd), vrf.rd_auto
        with self._atomic() as (tx, undo):
            if tx is not None:
                tx.put_vpn(name, new)
            if "rd" in changes:  # the one step that can be refused (RD held by another VRF)
                eng.update_vrf(name, rd=new["rd"])
                undo.append(lambda: self._restore_rd(name, old_rd, old_auto))
            rest = {k: new[k] for k in ("import_rts", "export_rts", "label_mode", "multipath", "ecmp")
                    if k in changes}
            if rest:
                undo.append(lambda: eng.update_vrf(name, **{k: old[k] for k in rest}))
                eng.update_vrf(name, **rest)
            if "aggregates" in changes:  # R10.3
                new["aggregates"] = normalise_spec(new)["aggregates"]
                eng.set_aggregates(name, [(a["prefix"], a["summary_only"]) for a in new["aggregates"]])
                undo.append(lambda: eng.set_aggregates(
                    name, [(a["prefix"], a["summary_only"]) for a in old.get("aggregates", ())]))
            if "service" in changes:
                self._set_service(name, new)
                undo.append(lambda: self._set_service(name, old))
        self.specs[name] = new
        log.info("VPN instance %s changed: %s", name, ", ".join(sorted(changes)), extra={"vrf": name})

    def _set_service(self, name: str, spec: dict[str, Any]) -> None:
        svc = service_args(spec)
        if svc is not None:
            self.bridge.set_service(name, **svc)
        elif name in self.bridge.vpn.services:
            self.bridge.apply(self.bridge.vpn.clear_service(name))

    def _spec_of(self, name: str) -> dict[str, Any]:
        if name in self.specs:
            return self.specs[name]
        d = self.bridge.vpn.vrf(name).to_json()
        if d.get("rd_auto"):
            d["rd"] = "auto"
        return normalise_spec(d)

    def _restore_rd(self, name: str, rd: str, auto: bool) -> None:
        eng = self.bridge
        if auto:  # the allocator hands the same automatic RD back when it is preferred
            eng.vpn.rds.release(name)
            eng.vpn.rds.restore({name: rd})
            eng.update_vrf(name, rd="auto")
        else:
            eng.update_vrf(name, rd=rd)

    def delete_vpn(self, name: str, *, force: bool = False) -> list[str]:
        """Delete a VPN instance (and, with ``force``, detach its ports first)."""
        eng = self.bridge
        if name not in eng.vpn.vrfs:
            raise NotFound(f"no VPN instance {name!r}")
        if name in self.config_vrfs:
            raise Conflict(
                f"VPN instance {name!r} is defined in the configuration file: remove it there"
            )
        ports = [a.name for a in eng.attachments.by_vrf(name)]
        if ports and not force:
            raise Conflict(f"VPN instance {name!r} has attached ports: {', '.join(ports)}")
        nbrs = self.vrf_neighbors_of(name)
        if nbrs:  # the API's DELETE with force removes them first (delete_vpn_and_neighbors)
            raise Conflict(f"VPN instance {name!r} has BGP neighbors: {', '.join(nbrs)} (delete them "
                           f"first: DELETE /v1/vpns/{name}/neighbors/ADDRESS, or delete with force)")
        spec = self._spec_of(name)
        vrf = eng.vpn.vrf(name)
        rd, auto = str(vrf.rd), vrf.rd_auto
        with self._atomic() as (tx, undo):
            for p in ports:
                if tx is not None:
                    tx.delete_port(p)
                undo.append(partial(eng.attach, eng.detach(p)))
            if tx is not None:
                tx.delete_vpn(name)
            eng.remove_vrf(name)
            undo.append(lambda: self._readd(name, spec, rd, auto))
        self.specs.pop(name, None)
        log.info("VPN instance %s deleted%s", name,
                 f" with its ports {', '.join(ports)}" if ports else "", extra={"vrf": name})
        return ports

    async def delete_vpn_and_neighbors(self, name: str, *, force: bool = False) -> list[str]:
        """:meth:`delete_vpn`; with ``force`` its BGP neighbors are removed first (as by
        :meth:`delete_vrf_neighbor`), then its ports detached and the VPN instance deleted."""
        eng = self.bridge
        if name not in eng.vpn.vrfs:
            raise NotFound(f"no VPN instance {name!r}")
        if name in self.config_vrfs:
            raise Conflict(f"VPN instance {name!r} is defined in the configuration file: remove it there")
        if force:
            for address in self.vrf_neighbors_of(name):
                await self.delete_vrf_neighbor(name, address)
        return self.delete_vpn(name, force=force)

    def _readd(self, name: str, spec: dict[str, Any], rd: str, auto: bool) -> None:
        if auto:
            self.bridge.vpn.rds.restore({name: rd})
        self.bridge.add_vrf(name, **vrf_args(spec))
        svc = service_args(spec)
        if svc is not None:
            self.bridge.set_service(name, **svc)

    # -- ports -----------------------------------------------------------------------------

    def attach(self, a: Attachment, vpn_spec: dict[str, Any] | None = None) -> bool:
        """Attach a port; True when its VPN instance was created for it.

        ``vpn_spec`` (bagpipe-bgp's ``import_rt``/``export_rt`` given at attach
        time): a VPN instance of that name that does not exist is created with
        it, in the same transaction as the port; one that exists must already
        have these route targets (409 otherwise: a port attach never changes
        what other ports of the VPN import or export; use PATCH /v1/vpns).
        """
        eng = self.bridge
        if a.name in eng.attachments:
            raise Conflict(f"name: port {a.name!r} is already attached")
        create = a.vrf not in eng.vpn.vrfs
        if create and vpn_spec is None:
            raise ValueError(f"vpn: no VPN instance {a.vrf!r} (create it first, or give "
                             "import_rts/export_rts to create it with the port)")
        if create and not _VPN_NAME.fullmatch(a.vrf):
            raise ValueError(f"vpn: {a.vrf!r} is not a valid name for a new VPN instance "
                             "(1 to 64 of A-Z a-z 0-9 _ . -)")
        stored: dict[str, Any] = {}
        if vpn_spec is not None:
            check_spec(vpn_spec)
            stored = normalise_spec(vpn_spec)
            if create and not stored["import_rts"] and not stored["export_rts"]:
                raise ValueError(f"import_rts: VPN instance {a.vrf!r} does not exist; creating it "
                                 "needs at least one import or export route target")
            if not create:
                cur = eng.vpn.vrf(a.vrf)
                for f, have in (("import_rts", cur.import_rts), ("export_rts", cur.export_rts)):
                    if f in vpn_spec and not same_rts(vpn_spec[f], [str(rt) for rt in have]):
                        raise Conflict(
                            f"{f}: VPN instance {a.vrf!r} exists with {f} "
                            f"{', '.join(sorted(str(rt) for rt in have)) or 'none'}; change them with "
                            f"PATCH /v1/vpns/{a.vrf}, not with a port attach"
                        )
        found = eng.attachments.address_clash(a)
        if found is not None:
            other, clash = found
            raise Conflict(f"ips: {', '.join(sorted(clash))} already used by port "
                           f"{other.name!r} in VPN instance {a.vrf!r}")
        with self._atomic() as (tx, undo):
            if create:
                if tx is not None:
                    tx.put_vpn(a.vrf, stored)
                eng.add_vrf(a.vrf, **vrf_args(stored))
                undo.append(lambda: eng.remove_vrf(a.vrf))
                svc = service_args(stored)
                if svc is not None:
                    eng.set_service(a.vrf, **svc)
            done = eng.attach(a)  # as attached (its sequence number given)
            undo.append(lambda: eng.detach(a.name))
            if tx is not None:
                tx.put_port(done.name, done.vrf, done.to_json())
        if create:
            self.specs[a.vrf] = stored
            if self.chains is not None:
                self.chains.vrf_added(a.vrf)
            log.info("VPN instance %s created for port %s (rd %s)", a.vrf, a.name,
                     eng.vpn.vrf(a.vrf).rd, extra={"vrf": a.vrf, "port": a.name})
        log.info("port %s attached to VRF %s (%s)", a.name, a.vrf, ", ".join(a.ips),
                 extra={"vrf": a.vrf, "port": a.name, "prefix": list(a.ips)})
        return create

    def attach_service(self, a: Attachment, role: ServiceRole) -> Attachment:
        """Attach port ``a`` as one side of a service instance (docs/service-chains.md):
        its VRF (``CHAIN.PORT``) is created from the chain's plan, with the
        instance's attraction or re-advertisement; the port may send for any
        source (it forwards others' traffic). Returns the attachment as made."""
        if self.chains is None:
            raise NotFound("chain: this vPE has no service chains")
        vrf, spec = self.chains.instance_spec(role, a.name, a.ips)
        if vrf in self.bridge.vpn.vrfs:
            raise Conflict(f"name: VPN instance {vrf!r} of port {a.name!r} already exists")
        anywhere = tuple(p for p in ("0.0.0.0/0", "::/0") if p not in a.allowed_pairs)
        a = replace(a, vrf=vrf, allowed_pairs=(*a.allowed_pairs, *anywhere))
        self.attach(a, spec)
        return a

    def detach(self, name: str) -> Attachment:
        eng = self.bridge
        if name not in eng.attachments:
            raise NotFound(f"no port {name!r}")
        with self._atomic() as (tx, undo):
            if tx is not None:
                tx.delete_port(name)
            a = eng.detach(name)
            undo.append(lambda: eng.attach(a))
        log.info("port %s detached from VRF %s", name, a.vrf, extra={"vrf": a.vrf, "port": name})
        role = (self.specs.get(a.vrf, {}).get("service") or {}).get("role")
        if role and not eng.attachments.by_vrf(a.vrf) and not self.vrf_neighbors_of(a.vrf):
            # a service instance's own VRF goes with it
            self.delete_vpn(a.vrf)
        return a

    # -- mobility (docs/mobility.md) ------------------------------------------------------

    def _move(self, name: str, step: Callable[[str], Attachment]) -> tuple[Attachment, Attachment]:
        """One state transition of port ``name`` (``step``: the bridge's), persisted;
        undone if the store refuses. Returns the attachment before and after."""
        a = self.bridge.attachments.get(name)
        if a is None:
            raise NotFound(f"no port {name!r}")
        with self._atomic() as (tx, undo):
            done = step(name)
            undo.append(lambda: self._put_back(a))
            if tx is not None:
                tx.put_port(done.name, done.vrf, done.to_json())
        return a, done

    def activate(self, name: str) -> Attachment:
        """STANDBY -> ACTIVE, persisted."""
        a, done = self._move(name, self.bridge.activate)
        log.info("port %s activated in VRF %s (mobility sequence %d)", name, a.vrf, a.sequence,
                 extra={"vrf": a.vrf, "port": name})
        return done

    def release(self, name: str, hold: float | None = None) -> Attachment:
        """ACTIVE -> REDIRECTING, persisted: the VM left. Once the withdrawal is on
        the wire, the redirect is forgotten after ``hold`` seconds (None: kept
        until the port is deleted)."""
        a, done = self._move(name, self.bridge.release)
        log.info("port %s released in VRF %s: its routes are withdrawn, what still arrives for "
                 "it is re-tunnelled (redirect kept %s)", name, a.vrf,
                 "until deleted" if hold is None else f"{hold:g} s after the withdrawal",
                 extra={"vrf": a.vrf, "port": name})
        if hold is not None:
            self.bridge.router.after_advertised(lambda: self._forget_later(name, done, hold))
        return done

    def _forget_later(self, name: str, a: Attachment, hold: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(hold, self._forget, name, a)

    def _forget(self, name: str, a: Attachment) -> None:
        """The redirect of a released port has served its time (if it is still that one)."""
        if self.bridge.attachments.get(name) != a:
            return
        try:
            self.detach(name)
        except Exception:
            log.exception("forgetting the redirect of port %s", name)

    def _put_back(self, a: Attachment) -> None:
        """Undo a state change: the attachment as it was."""
        eng = self.bridge
        if a.name in eng.attachments:
            eng.detach(a.name)
        eng.attach(a)

    # -- VRF neighbors (PE-CE BGP, docs/api.md) ------------------------------------------

    def vrf_neighbors_of(self, vpn: str) -> list[str]:
        """Addresses of the BGP neighbors of VPN instance ``vpn`` (configuration file and API)."""
        return sorted((a for a, v in self.bridge.router.vrf_of.items() if v == vpn), key=_addr_key)

    def session_address(self, vpn: str, address: str) -> str:
        """The speaker's address of ``vpn``'s neighbor at ``address``: for one reached through
        a port (its address in the VRF), the mapped one; else ``address`` itself."""
        pn = self.port_sessions.find(vpn, address) if self.port_sessions is not None else None
        return pn.mapped if pn is not None else address

    def _check_neighbor(self, vpn: str, vn: VrfNeighborConfig) -> None:
        """Refuse what cannot become a neighbor of ``vpn`` (the model has checked the values)."""
        router = self.bridge.router
        if vpn not in self.bridge.vpn.vrfs:
            raise NotFound(f"no VPN instance {vpn!r}")
        addr = vn.address
        if vn.via == "port":  # an address of the VRF: another VRF may have a CE at it too
            if self.port_sessions is None or self.bridge.fib is None:
                raise ValueError('via: "port" needs a forwarder (this agent has dataplane.driver "none")')
            addr = self.session_address(vpn, addr)
        if addr in self.config_neighbors:
            raise Conflict(f"address: neighbor {addr} is defined in the configuration file: change it there")
        other = router.vrf_of.get(addr)
        if other is not None and other != vpn:
            raise Conflict(f"address: {addr} is already a neighbor of VPN instance {other!r}")
        if other is None and addr in router.peers and vn.via != "port":
            raise Conflict(f"address: {addr} is already a neighbor of the global table "
                           "(one speaker serves every neighbor, VRF or not)")
        if vn.remote_as == router.local_as and vn.ebgp_multihop:
            raise ValueError(f"ebgp_multihop: neighbor {addr} is iBGP (remote_as {vn.remote_as} is our AS): "
                             "ebgp_multihop applies to eBGP only")
        for key in ("import_policy", "export_policy"):
            name = getattr(vn, key)
            if name is not None and router.policies.get(name) is None:
                raise ValueError(f"{key}: no policy named {name!r} (create it with PUT /v1/policies/{name})")

    async def put_vrf_neighbor(self, vpn: str, vn: VrfNeighborConfig) -> bool:
        """Create or replace a BGP neighbor of VPN instance ``vpn``, stored; True when created.
        Replacing is delete + add: the session restarts with the new settings."""
        async with self._neighbor_lock:
            self._check_neighbor(vpn, vn)
            router = self.bridge.router
            key = _row_key(vpn, vn)
            # the neighbor this one replaces: at this address of the VPN, either kind
            pn = self.port_sessions.find(vpn, vn.address) if self.port_sessions is not None else None
            old_sa = pn.mapped if pn is not None else (vn.address if router.vrf_of.get(vn.address) == vpn else None)
            old_key = f"{vn.address}%{vpn}" if pn is not None else vn.address
            old = old_sa is not None
            if self.store is not None:  # nothing is applied before the row is committed
                with self.store.transaction() as tx:
                    if old and old_key != key:
                        tx.delete_vrf_neighbor(old_key)
                    tx.put_vrf_neighbor(key, vpn, vn.model_dump(mode="json"))
            if old_sa is not None:
                await self._remove_session(old_sa)
            try:
                self._add_neighbor(vpn, vn)
            except (ValueError, OSError) as e:  # the kernel refused (an MD5 key): no row, no session
                await self._drop_neighbor(vpn, vn)
                raise ValueError(f"address: neighbor {vn.address} could not be added: {e}") from None
        log.info("VPN instance %s: BGP neighbor %s (AS %s) %s", vpn, vn.address, vn.remote_as,
                 "replaced" if old else "added", extra={"vrf": vpn, "peer": vn.address})
        return not old

    def _add_neighbor(self, vpn: str, vn: VrfNeighborConfig) -> None:
        router = self.bridge.router
        if vn.via == "port":  # the speaker talks to a mapped address; the forwarder carries it
            assert self.port_sessions is not None and self.bridge.fib is not None
            vn = self.port_sessions.map(vpn, vn)
            pn = self.port_sessions.neighbors[vn.address]
            self.bridge.fib.set_session(self.port_sessions.local_session(pn))
            router.speaker.listen_also(str(vn.local_address))
        router.policies.bind(vn.address, vn.import_policy, vn.export_policy)
        router.add_vrf_neighbor(vpn, vn)
        self.api_neighbors[vn.address] = vpn

    async def _remove_session(self, address: str) -> None:
        """The session to speaker address ``address`` gone (Cease / Peer De-configured), with
        its policy binding and, for a neighbor reached through a port, its mapping."""
        router = self.bridge.router
        self.api_neighbors.pop(address, None)
        if address in router.vrf_of:
            await router.remove_vrf_neighbor(address)
        elif address in router.peers:
            await router.speaker.remove_peer(address)
        router.policies.unbind(address)
        gone = self.port_sessions.unmap(address) if self.port_sessions is not None else None
        if gone is not None and self.bridge.fib is not None:
            self.bridge.fib.remove_session(ipaddress.ip_address(address))

    async def _drop_neighbor(self, vpn: str, vn: VrfNeighborConfig) -> None:
        """Undo a neighbor half added: its row, its session, its policy binding."""
        with contextlib.suppress(StoreError):
            if self.store is not None:
                with self.store.transaction() as tx:
                    tx.delete_vrf_neighbor(_row_key(vpn, vn))
        await self._remove_session(self.session_address(vpn, vn.address) if vn.via == "port" else vn.address)

    async def delete_vrf_neighbor(self, vpn: str, address: str) -> None:
        """Remove a BGP neighbor of ``vpn``: Cease / Peer De-configured, its routes leave the VRF."""
        async with self._neighbor_lock:
            router = self.bridge.router
            if vpn not in self.bridge.vpn.vrfs:
                raise NotFound(f"no VPN instance {vpn!r}")
            sa = self.session_address(vpn, address)
            if router.vrf_of.get(sa) != vpn:
                raise NotFound(f"no neighbor {address} in VPN instance {vpn!r}")
            if sa in self.config_neighbors:
                raise Conflict(f"address: neighbor {address} is defined in the configuration file: "
                               "remove it there")
            if self.store is not None:
                with self.store.transaction() as tx:
                    pn = self.port_sessions.neighbors.get(sa) if self.port_sessions is not None else None
                    tx.delete_vrf_neighbor(f"{pn.configured.address}%{vpn}" if pn is not None else address)
            await self._remove_session(sa)
        try:  # labels the neighbor's routes held
            self.save_state()
        except StoreError as e:
            log.error("%s", e)
        log.info("VPN instance %s: BGP neighbor %s removed", vpn, address, extra={"vrf": vpn, "peer": address})

    def _restore_neighbors(self) -> int:
        assert self.store is not None
        n = 0
        for address, d in self.store.vrf_neighbors().items():
            try:
                vpn = str(d["vpn"])
                vn = VrfNeighborConfig.model_validate(d["neighbor"])
                if _row_key(vpn, vn) != address:
                    raise ValueError(f"its address {vn.address} is not its key")
                self._check_neighbor(vpn, vn)
                if self.session_address(vpn, vn.address) in self.bridge.router.vrf_of:
                    raise ValueError(f"it is already a neighbor of VPN instance {vpn!r}")
                self._add_neighbor(vpn, vn)
            except (KeyError, ValueError, TypeError, LookupError) as e:
                log.error("BGP neighbor %s from %s not restored: %s", address, self.store.path,
                          str(e).replace("\n", "; "), extra={"peer": address})
                continue
            n += 1
        return n

    # -- start-up --------------------------------------------------------------------------

    def restore(self) -> dict[str, int]:
        """Replay the store into the bridge (after the config-file VRFs). Counts restored."""
        if self.store is None:
            return {"vpns": 0, "ports": 0, "neighbors": 0}
        eng = self.bridge
        nv = npt = 0
        for name, spec in self.store.vpns().items():
            if name in self.config_vrfs:
                log.warning("VPN instance %s from %s: the configuration file defines it too; "
                            "using the configuration", name, self.store.path, extra={"vrf": name})
                continue
            try:
                stored = normalise_spec(spec)
                eng.add_vrf(name, **vrf_args(stored))
                svc = service_args(stored)
                if svc is not None:
                    eng.set_service(name, **svc)
            except (ValueError, TypeError) as e:
                log.error("VPN instance %s from %s not restored: %s", name, self.store.path, e,
                          extra={"vrf": name})
                continue
            self.specs[name] = stored
            nv += 1
        for name, d in self.store.ports().items():
            try:
                a = Attachment.from_json(d)
                if a.vrf not in eng.vpn.vrfs:
                    raise ValueError(f"its VPN instance {a.vrf!r} no longer exists")
                eng.attach(a)
            except (KeyError, ValueError, TypeError) as e:
                log.error("port %s from %s not restored: %s", name, self.store.path, e,
                          extra={"port": name})
                continue
            npt += 1
        nn = self._restore_neighbors()
        eng.vpn.rds.drop_preferred()  # RDs of VRFs not restored: their rows go
        released = eng.vpn.release_unclaimed_labels()
        if released:
            # never announced by this run, but peers may hold stale routes with them
            eng.vpn.labels_withdrawn(released, time.monotonic())
        log.info("restored %d VPN instance(s), %d port(s) and %d VRF neighbor(s) from %s "
                 "(%d unclaimed label(s) released)", nv, npt, nn, self.store.path, len(released))
        try:
            self.save_state()
        except StoreError as e:
            log.error("%s", e)
        return {"vpns": nv, "ports": npt, "neighbors": nn}


__all__ = ["Conflict", "DurableOps", "NotFound", "StoreError", "check_spec", "normalise_spec", "same_rts",
           "vrf_args"]
