"""bagpipe-bgp's REST API on vpe: a drop-in for networking-bagpipe's clients.

An optional listener (``[bagpipe_compat]``, off by default, 127.0.0.1:8082
like bagpipe-bgp) serving what bagpipe-bgp's clients call:

* ``POST /attach_localport`` and ``POST /detach_localport``, translated into
  the same typed operations ``/v1/ports`` and ``/v1/vpns`` use
  (:class:`~vpe.agent.durable.DurableOps`, then the forwarder's verdict):
  no second implementation;
* ``GET /ping``: a number drawn when the listener starts; a client that sees
  it change knows the agent restarted and re-sends its attachments;
* ``GET /looking-glass/...``: the summary, the VPN instances (with their
  route targets and ports) and the BGP peers, in bagpipe-bgp's shapes.

The translation, field by field, is in docs/api.md ("bagpipe-bgp
compatibility listener"). bagpipe-bgp answers every refused request with a
400; so does this listener, the message naming the bagpipe field first
(``vpn_type: ...``, ``local_port.ovs: ...``); an object that does not
exist is a 404, a contradiction with the current state a 409, a state
database that cannot be written a 503.

bagpipe-bgp plugs one (MAC, IP) endpoint per call, and a Linux interface may
carry several (IPv4 and IPv6 of one Neutron port): here the endpoints of
one interface in one VPN instance are one vpe port, named after the
interface, whose address list grows with each attach and shrinks with each
detach. bagpipe-bgp updates a VPN instance's route targets with every
attach and stops an instance when its last endpoint goes: so does this
listener for the instances it created (one from the configuration file or
``/v1`` is never changed or removed by it). bagpipe-bgp's service chaining
fields, ``readvertise`` and ``attract_traffic`` without a flow classifier,
become the instance's ``service`` block (re-advertisement and attraction via
the port's address, docs/service-chains.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..agent.durable import check_spec, same_rts
from ..agent.engine import Engine
from ..agent.store import StoreError
from ..vpn.attachments import Attachment
from ..vpn.errors import InvalidValue
from ..vpn.names import check_ifname, check_name
from ..vpn.route_target import parse_route_targets
from .errors import REFUSED, http_error
from .limits import MAX_BODY, BodyGuard
from .models import PortAttach
from .ports import forwarder_verdict

log = logging.getLogger("vpe.api.bagpipe")

#: the state store's ``meta`` key of the VPN instances this listener created
OWNED_KEY = "bagpipe_owned"

#: the fields bagpipe-bgp's ``attach_localport`` takes (networking-bagpipe's API); also those
#: ``detach_localport`` accepts (clients send the attach body again)
ATTACH_FIELDS = frozenset({
    "vpn_instance_id", "vpn_type", "import_rt", "export_rt", "instance_description", "description",
    "local_port", "mac_address", "ip_address", "gateway_ip", "advertise_subnet", "local_pref",
    "direction", "readvertise", "attract_traffic", "lb_consistent_hash_order", "fallback", "vni",
    "linuxbr",
})

#: why each field vpe cannot honour is refused (when it is given a value that means something)
UNSUPPORTED = {
    "attract_traffic.redirect_rts": "a flow classifier redirect (bagpipe-bgp's FlowSpec redirect-to-VRF "
                                    "routes) is a service chain's classifier in vpe: use /v1/chains "
                                    "(docs/service-chains.md)",
    "attract_traffic.classifier": "a flow classifier redirect (bagpipe-bgp's FlowSpec redirect-to-VRF "
                                  "routes) is a service chain's classifier in vpe: use /v1/chains "
                                  "(docs/service-chains.md)",
    "lb_consistent_hash_order": "vpe neither sends nor honours the consistent-hash sort order "
                                "extended community",
    "fallback": "an OVS rewrite for VRF lookup misses; vpe's forwarder has no OVS bridge",
    "vni": "a VXLAN id belongs to E-VPN; vpe encapsulates in MPLS-in-UDP or MPLS-in-GRE",
    "linuxbr": "a Linux bridge belongs to an E-VPN attachment; vpe has no E-VPN",
    "local_port.ovs": "vpe's forwarder reads and writes the interface itself: there is no OVS "
                      "bridge to pre-plug into (use local_port.linuxif)",
    "local_port.evpn": "stitching an IP VPN to an E-VPN instance: vpe has no E-VPN",
}

#: vpe field of a PortAttach -> the bagpipe field a client sent
_BAGPIPE_NAME = {
    "name": "local_port", "ifname": "local_port.linuxif", "vpn": "vpn_instance_id",
    "mac": "mac_address", "ips": "ip_address", "gateways": "gateway_ip",
    "advertise": "advertise_subnet", "import_rts": "import_rt", "export_rts": "export_rt",
    "vpn_description": "instance_description", "readv-from-rts": "readvertise.from_rt",
    "service.readv_from_rts": "readvertise.from_rt", "attract": "attract_traffic.static_destination_prefixes",
}


class BagpipeRefused(Exception):
    """A request this listener refuses: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def _bad(field: str, why: str) -> BagpipeRefused:
    return BagpipeRefused(400, f"{field}: {why}")


@dataclass(frozen=True)
class Endpoint:
    """One bagpipe request, translated: the VPN instance, the interface, one endpoint."""

    vpn: str
    ifname: str
    mac: str
    ip: str | None
    gateway: str | None = None
    import_rts: tuple[str, ...] = ()
    export_rts: tuple[str, ...] = ()
    advertise: str = "host"
    direction: str = "both"
    local_pref: int | None = None
    description: str = ""
    vpn_description: str = ""
    #: re-advertisement (bagpipe ``readvertise``): routes with these RTs, via this port
    readv_from_rts: tuple[str, ...] = ()
    readv_to_rts: tuple[str, ...] = ()
    #: attraction (bagpipe ``attract_traffic`` without a classifier): these prefixes, via this port
    attract: tuple[str, ...] = ()
    attract_to_rts: tuple[str, ...] = ()

    def service(self) -> dict[str, Any] | None:
        """The VPN instance's service block (docs/service-chains.md) this endpoint asks for."""
        if not self.readv_from_rts and not self.attract:
            return None
        assert self.ip is not None
        return {"address": str(ipaddress.ip_interface(self.ip).ip), "attract": list(self.attract),
                "readv_from_rts": list(self.readv_from_rts), "readv_exclude": []}


def _service_key(svc: Mapping[str, Any] | None) -> Any:
    """A service block compared by content (RT spellings and order do not matter)."""
    if not svc:
        return None
    return (str(svc.get("address")), tuple(sorted(svc.get("attract") or ())),
            frozenset(parse_route_targets(list(svc.get("readv_from_rts") or ()), "readv_from_rts")),
            tuple(sorted(svc.get("readv_exclude") or ())))


def _parse_readvertise(v: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not _meaningful(v):
        return (), ()
    if not isinstance(v, dict):
        raise _bad("readvertise", "an object {\"from_rt\": [...], \"to_rt\": [...]}")
    extra = sorted(set(v) - {"from_rt", "to_rt"})
    if extra:
        raise _bad(f"readvertise.{extra[0]}", "not a key of bagpipe-bgp's readvertise (from_rt, to_rt)")
    frm, to = _rts(v, "from_rt", True, "readvertise."), _rts(v, "to_rt", True, "readvertise.")
    if not frm:
        raise _bad("readvertise.from_rt", "empty: the route targets whose routes are re-advertised")
    return frm, to


def _parse_attract(v: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not _meaningful(v):
        return (), ()
    if not isinstance(v, dict):
        raise _bad("attract_traffic", "an object (classifier, redirect_rts, to, static_destination_prefixes)")
    for key in ("redirect_rts", "classifier"):
        if _meaningful(v.get(key)):
            raise _bad(f"attract_traffic.{key}", UNSUPPORTED[f"attract_traffic.{key}"])
    extra = sorted(set(v) - {"redirect_rts", "classifier", "to", "attract_to_rts", "static_destination_prefixes"})
    if extra:
        raise _bad(f"attract_traffic.{extra[0]}", "not a key of bagpipe-bgp's attract_traffic")
    to_key = "to" if "to" in v else "attract_to_rts"
    to = _rts(v, to_key, False, "attract_traffic.")
    prefixes = v.get("static_destination_prefixes") or []
    if not isinstance(prefixes, list) or not prefixes:
        raise _bad("attract_traffic.static_destination_prefixes", "a non-empty list of prefixes to attract")
    out = []
    for i, p in enumerate(prefixes):
        try:
            out.append(str(ipaddress.ip_network(p, strict=True)))
        except (ValueError, TypeError) as e:
            raise _bad(f"attract_traffic.static_destination_prefixes[{i}]", f"{p!r} is not a prefix ({e})") from None
    return tuple(out), to


def _meaningful(v: Any) -> bool:
    """Does a value of an optional bagpipe field ask for something (null, 0, "", {} and [] do not)?"""
    if isinstance(v, dict):
        return any(_meaningful(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_meaningful(x) for x in v)
    return bool(v)


def _rts(body: Mapping[str, Any], field: str, required: bool, within: str = "") -> tuple[str, ...]:
    name = within + field
    if field not in body:
        if required:
            raise _bad(name, "missing (bagpipe-bgp requires it with every attach)")
        return ()
    v = body[field]
    if isinstance(v, str):  # bagpipe also takes "a:1, b:2"
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(name, "a list of route targets (or one comma-separated string)")
    out: list[str] = []
    for rt in v:
        if rt not in out:
            out.append(rt)
    try:
        parse_route_targets(out, name)
    except ValueError as e:
        raise BagpipeRefused(400, str(e)) from None
    return tuple(out)


def _text(v: Any) -> str:
    """bagpipe's free-form descriptions may be objects (the Neutron agent sends ``{"port": id}``)."""
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))


def parse_request(body: Any, *, attach: bool) -> Endpoint:
    """The endpoint a bagpipe ``attach_localport``/``detach_localport`` body names.

    :class:`BagpipeRefused` (400) naming the first field that is missing,
    malformed, unknown, or asks for something vpe cannot do.
    """
    if not isinstance(body, dict):
        raise BagpipeRefused(400, "body: a JSON object of local port details is required")
    unknown = sorted(set(body) - ATTACH_FIELDS)
    if unknown:
        raise _bad(unknown[0], "not a field of bagpipe-bgp's attach_localport/detach_localport")
    vpn_type = body.get("vpn_type")
    if vpn_type is None:
        raise _bad("vpn_type", "missing (ipvpn)")
    if vpn_type == "evpn":
        raise _bad("vpn_type", "evpn is not supported: vpe is a BGP/MPLS IP VPN (RFC 4364) PE and has "
                               "no E-VPN (RFC 7432) instances; use ipvpn")
    if vpn_type != "ipvpn":
        raise _bad("vpn_type", f"unknown VPN type {vpn_type!r}: only 'ipvpn' is supported")
    for field in ("vpn_instance_id", "mac_address", "local_port"):
        if body.get(field) in (None, ""):
            raise _bad(field, "missing")
    if attach:
        for field, why in UNSUPPORTED.items():
            if "." not in field and _meaningful(body.get(field)):
                raise _bad(field, why)
    lp = body["local_port"]
    if isinstance(lp, str):
        lp = {"linuxif": lp}
    if not isinstance(lp, dict):
        raise _bad("local_port", "an interface name or an object with 'linuxif'")
    for key in ("ovs", "evpn"):
        if key in lp and (attach or "linuxif" not in lp):
            raise _bad(f"local_port.{key}", UNSUPPORTED[f"local_port.{key}"])
    extra = sorted(set(lp) - {"linuxif", "ovs", "evpn"})
    if extra:
        raise _bad(f"local_port.{extra[0]}", "not a key of bagpipe-bgp's local_port (linuxif, ovs, evpn)")
    if "linuxif" not in lp:
        raise _bad("local_port.linuxif", "missing: vpe attaches a Linux interface")
    try:
        ifname = check_ifname(lp["linuxif"], "local_port.linuxif")
        vpn = check_name(body["vpn_instance_id"], "vpn_instance_id")
    except InvalidValue as e:
        raise BagpipeRefused(400, str(e)) from None
    mac = body["mac_address"]
    if not isinstance(mac, str):
        raise _bad("mac_address", "a MAC address string")
    ip = body.get("ip_address")
    if ip is not None:
        if not isinstance(ip, str):
            raise _bad("ip_address", "an address with prefix length, e.g. 192.0.2.10/24")
        if "/" not in ip:  # bagpipe: an address alone is a /32 (/128)
            try:
                ip = f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"
            except ValueError:
                raise _bad("ip_address", f"{ip!r} is not an IP address") from None
    elif attach:
        raise _bad("ip_address", "missing: vpe attaches endpoints by address (IP/prefix length)")
    if not attach:
        return Endpoint(vpn=vpn, ifname=ifname, mac=mac.lower(), ip=ip)
    adv = body.get("advertise_subnet", False)
    if not isinstance(adv, bool):
        raise _bad("advertise_subnet", "must be a boolean")
    direction = body.get("direction") or "both"
    if direction not in ("both", "to-port", "from-port"):
        raise _bad("direction", "one of both, to-port, from-port")
    lpref = body.get("local_pref")
    if lpref is not None and (isinstance(lpref, bool) or not isinstance(lpref, int)):
        raise _bad("local_pref", "an integer 0..4294967295")
    gw = body.get("gateway_ip")
    if gw is not None and not isinstance(gw, str):
        raise _bad("gateway_ip", "an IP address")
    export_rts = _rts(body, "export_rt", True)
    readv_from, readv_to = _parse_readvertise(body.get("readvertise"))
    attract, attract_to = _parse_attract(body.get("attract_traffic"))
    # vpe advertises what a service VRF re-advertises or attracts with the VRF's export RTs
    for field, to in (("readvertise.to_rt", readv_to), ("attract_traffic.to", attract_to)):
        if to and not same_rts(to, export_rts):
            raise _bad(field, f"{', '.join(to)}: vpe advertises re-advertised and attracted routes with the "
                              f"VPN instance's export route targets (export_rt: {', '.join(export_rts) or 'none'}); "
                              "give the same set")
    return Endpoint(
        vpn=vpn, ifname=ifname, mac=mac.lower(), ip=ip, gateway=gw or None,
        import_rts=_rts(body, "import_rt", True), export_rts=export_rts,
        advertise="subnet" if adv else "host", direction=direction, local_pref=lpref,
        description=_text(body.get("description")), vpn_description=_text(body.get("instance_description")),
        readv_from_rts=readv_from, readv_to_rts=readv_to, attract=attract, attract_to_rts=attract_to,
    )


def port_name(ifname: str, vpn: str) -> str:
    """The vpe port of interface ``ifname`` in VPN instance ``vpn``: the interface name
    when it is a valid port name, else a stable digest of both."""
    try:
        return check_name(ifname)
    except InvalidValue:
        return "bagpipe-" + hashlib.sha256(f"{vpn}\0{ifname}".encode()).hexdigest()[:16]


def merged(old: Attachment | None, ep: Endpoint, name: str) -> PortAttach:
    """The vpe port after adding endpoint ``ep`` to ``old`` (None: a new port).

    Addresses and gateways accumulate; an address given again with another
    prefix length replaces the old one; the per-port values (advertise,
    direction, local_pref, description) are the latest request's.
    :class:`BagpipeRefused` naming the bagpipe field for a value vpe refuses.
    """
    assert ep.ip is not None
    new_ip = ipaddress.ip_interface(ep.ip).ip
    ips = [i for i in (old.ips if old else ()) if ipaddress.ip_interface(i).ip != new_ip] + [ep.ip]
    gws = list(old.gateways if old else ())
    if ep.gateway and ep.gateway not in gws:
        gws.append(ep.gateway)
    body: dict[str, Any] = {
        "name": name, "ifname": ep.ifname, "vpn": ep.vpn, "mac": ep.mac, "ips": ips, "gateways": gws,
        "allowed_pairs": list(old.allowed_pairs) if old else [],
        "advertise": ep.advertise, "direction": ep.direction, "local_pref": ep.local_pref,
        "description": ep.description, "import_rts": list(ep.import_rts), "export_rts": list(ep.export_rts),
        "vpn_description": ep.vpn_description,
    }
    try:
        return PortAttach.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err.get("loc", ())]
        field = _BAGPIPE_NAME.get(loc[0], loc[0]) if loc else "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise _bad(field, msg) from None


def _same_port(a: Attachment, b: Attachment) -> bool:
    return a.to_json() == b.to_json()


class BagpipeCompat:
    """The listener's operations on one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.view = engine.view
        self.ops = engine.ops
        self.store = engine.store
        #: drawn at start: changes when the agent restarts (bagpipe's restart detection)
        self.sequence = secrets.randbits(62) + 1
        self.started = time.time()
        #: VPN instances this listener created: stopped (deleted) when their last port goes;
        #: kept in the state store (``meta``), so a restart does not forget them
        self.owned: set[str] = set()
        if self.store is not None:
            try:
                kept = self.store.meta(OWNED_KEY) or []
            except StoreError as e:
                log.error("bagpipe compatibility: %s", e)
                kept = []
            self.owned = {n for n in kept if isinstance(n, str) and self.view.has_vrf(n)}

    def _own(self, name: str, owned: bool) -> None:
        before = set(self.owned)
        (self.owned.add if owned else self.owned.discard)(name)
        if self.store is None or self.owned == before:
            return
        try:
            with self.store.transaction() as tx:
                tx.put_meta(OWNED_KEY, sorted(self.owned))
                tx.commit()
        except StoreError as e:  # the instance then outlives its last port after a restart
            log.error("bagpipe compatibility: cannot record VPN instance %s: %s", name, e)

    # -- attach / detach --------------------------------------------------------------

    def _port_of(self, ifname: str, vpn: str) -> Attachment | None:
        for a in self.view.attachments.values():
            if a.ifname == ifname:
                if a.vrf != vpn:
                    raise BagpipeRefused(
                        409, f"local_port: interface {ifname} is attached to VPN instance {a.vrf!r} "
                             f"(port {a.name!r}); vpe attaches an interface to one VPN instance: detach "
                             "it there first")
                return a
        return None

    def _sync_rts(self, ep: Endpoint) -> dict[str, Any]:
        """bagpipe-bgp sets a VPN instance's route targets with every attach; the
        previous values of what changed (to undo it if the attach fails)."""
        vpn = ep.vpn
        if not self.view.has_vrf(vpn):
            return {}
        cur = self.view.vrf_json(vpn)
        want = {"import_rts": list(ep.import_rts), "export_rts": list(ep.export_rts)}
        changes = {f: v for f, v in want.items() if not same_rts(v, cur[f])}
        if not changes:
            return {}
        if vpn in self.ops.config_vrfs:
            f = next(iter(changes))
            raise BagpipeRefused(409, f"{f.removesuffix('s')}: VPN instance {vpn!r} is defined in the "
                                      f"configuration file with {f} {', '.join(cur[f]) or 'none'}; "
                                      "change them there")
        self.ops.update_vpn(vpn, changes)
        return {f: cur[f] for f in changes}

    def _service_change(self, vpn: str, svc: dict[str, Any] | None) -> bool:
        """Must an existing VPN instance's service block change to ``svc``? (An attach without
        readvertise/attract_traffic leaves it as it is.) 409 for the configuration file's."""
        if svc is None or not self.view.has_vrf(vpn):
            return False
        have = (self.ops.specs.get(vpn) or {}).get("service")
        if _service_key(have) == _service_key(svc):
            return False
        if vpn in self.ops.config_vrfs:
            field = "readvertise" if svc["readv_from_rts"] else "attract_traffic"
            raise BagpipeRefused(409, f"{field}: VPN instance {vpn!r} is defined in the configuration file; "
                                      "give it its service block there ([[vrfs]] service)")
        return True

    async def attach(self, body: Any) -> dict[str, Any]:
        ep = parse_request(body, attach=True)
        old = self._port_of(ep.ifname, ep.vpn)
        if old is not None and old.mac != ep.mac:
            raise BagpipeRefused(409, f"mac_address: interface {ep.ifname} is attached with MAC {old.mac}, "
                                      f"not {ep.mac}")
        req = merged(old, ep, old.name if old else port_name(ep.ifname, ep.vpn))
        want = req.attachment()
        svc = ep.service()
        new_service = self._service_change(ep.vpn, svc)
        try:
            check_spec({"service": svc})
            undo_rts = self._sync_rts(ep)
            same = old is not None and _same_port(old, replace(want, state=old.state, sequence=old.sequence))
            if same and not new_service:
                return {"port": want.name, "changed": False}
            try:
                if same:
                    pass
                elif old is not None:
                    self.ops.detach(old.name)
                    try:
                        await self._attach(want, None)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            self.ops.attach(old)
                        raise
                else:
                    spec = req.vpn_spec()
                    if spec is not None and svc is not None:
                        spec["service"] = svc
                    if await self._attach(want, spec):
                        self._own(ep.vpn, True)
                        new_service = False
                if new_service:  # the last step: the instance re-advertises / attracts via this port
                    try:
                        self.ops.update_vpn(ep.vpn, {"service": svc})
                    except BaseException:
                        with contextlib.suppress(Exception):
                            if not same:
                                self.ops.detach(want.name)
                                if old is not None:
                                    self.ops.attach(old)
                        raise
            except BaseException:  # a refused attach changes nothing: the route targets go back
                if undo_rts:
                    with contextlib.suppress(Exception):
                        self.ops.update_vpn(ep.vpn, undo_rts)
                raise
        except REFUSED as e:
            raise _from_vpe(e) from None
        log.info("bagpipe attach: %s (%s, %s) in VPN instance %s as port %s", ep.ifname, ep.mac, ep.ip,
                 ep.vpn, want.name, extra={"vrf": ep.vpn, "port": want.name})
        return {"port": want.name, "changed": True}

    async def _attach(self, a: Attachment, spec: dict[str, Any] | None) -> bool:
        """Attach through DurableOps, then the forwarder's verdict (as POST /v1/ports)."""
        created = self.ops.attach(a, spec)
        refused = await forwarder_verdict(self.view, self.ops, a.name, a.vrf, created)
        if refused is not None:
            raise BagpipeRefused(400, f"local_port.linuxif: the forwarder refused interface {a.ifname}: "
                                      f"{refused}")
        return created

    async def detach(self, body: Any) -> dict[str, Any]:
        ep = parse_request(body, attach=False)
        if not self.view.has_vrf(ep.vpn):
            raise BagpipeRefused(404, f"vpn_instance_id: no VPN instance {ep.vpn!r}")
        a = self._port_of(ep.ifname, ep.vpn)
        if a is None:
            raise BagpipeRefused(404, f"local_port: interface {ep.ifname} is not attached to VPN instance "
                                      f"{ep.vpn!r}")
        if a.mac != ep.mac:
            raise BagpipeRefused(409, f"mac_address: interface {ep.ifname} is attached with MAC {a.mac}, "
                                      f"not {ep.mac}")
        rest = list(a.ips)
        if ep.ip is not None:
            gone = ipaddress.ip_interface(ep.ip).ip
            rest = [i for i in a.ips if ipaddress.ip_interface(i).ip != gone]
            if len(rest) == len(a.ips):
                raise BagpipeRefused(404, f"ip_address: {ep.ip} is not an endpoint of interface {ep.ifname} "
                                          f"in VPN instance {ep.vpn!r} (it has {', '.join(a.ips)})")
        try:
            self.ops.detach(a.name)
            if ep.ip is not None and rest:
                families = {ipaddress.ip_interface(i).version for i in rest}
                smaller = replace(a, ips=tuple(rest), gateways=tuple(
                    g for g in a.gateways if ipaddress.ip_address(g).version in families))
                try:
                    await self._attach(smaller, None)
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.ops.attach(a)
                    raise
                return {"port": a.name, "ips": rest}
            stopped = False
            if ep.vpn in self.owned and not self.view.vrf_json(ep.vpn)["ports"] \
                    and not self.ops.vrf_neighbors_of(ep.vpn):  # BGP neighbors keep it
                self.ops.delete_vpn(ep.vpn)
                self._own(ep.vpn, False)
                stopped = True
        except REFUSED as e:
            raise _from_vpe(e) from None
        log.info("bagpipe detach: %s from VPN instance %s%s", ep.ifname, ep.vpn,
                 " (instance stopped: no port left)" if stopped else "", extra={"vrf": ep.vpn, "port": a.name})
        return {"port": a.name, "ips": [], "vpn_instance_stopped": stopped}

    # -- looking glass -------------------------------------------------------------------

    def looking_glass(self, base: str, path: list[str]) -> Any:
        """bagpipe-bgp's looking-glass objects vpe has; None for a path it does not."""
        def ref(*p: str) -> dict[str, str]:
            return {"href": "/".join([base, *p])}

        match path:
            case []:
                return {k: ref(k) for k in ("summary", "bgp", "vpns", "config", "logs")}
            case ["summary"]:
                return self._lg_summary()
            case ["config"]:
                return {"API": {"host": "", "port": 0}, "vpe": True}
            case ["logs"]:
                return []
            case ["bgp"]:
                return {"peers": ref("bgp", "peers")}
            case ["bgp", "peers"]:
                return [{"id": n["address"], "state": n["state"], **ref("bgp", "peers", n["address"])}
                        for n in self.view.summary()]
            case ["bgp", "peers", addr]:
                return self.view.neighbor(addr)
            case ["vpns"]:
                return {"instances": ref("vpns", "instances")}
            case ["vpns", "instances"]:
                return [self._lg_instance_entry(n, ref("vpns", "instances", n)["href"])
                        for n in self.view.vrf_names()]
            case ["vpns", "instances", name, *rest] if self.view.has_vrf(name):
                d = self._lg_instance(name)
                for p in rest:
                    if not isinstance(d, dict) or p not in d:
                        return None
                    d = d[p]
                return d
        return None

    def _lg_summary(self) -> dict[str, Any]:
        peers = self.view.summary()
        routes: dict[str, int] = {}
        for n in peers:
            for fam, c in n.get("received", {}).items():
                routes[fam] = routes.get(fam, 0) + c
        return {
            "BGP_established_peers": sum(1 for n in peers if n.get("state") == "Established"),
            "route_counts": routes,
            "vpn_instances_count": len(self.view.vrf_names()),
            "warnings_and_errors": 0,
            "start_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "version": "vpe",
        }

    def _lg_instance_entry(self, name: str, href: str) -> dict[str, Any]:
        d = self.view.vrf_json(name)
        e = {"id": name, "name": name, "href": href}
        if d.get("description"):
            e["description"] = d["description"]
        return e

    def _lg_instance(self, name: str) -> dict[str, Any]:
        d = self.view.vrf_json(name)
        svc = (self.ops.specs.get(name) or {}).get("service") or {}
        ports: dict[str, list[dict[str, Any]]] = {}
        gateway = None
        plen = None
        for pname in d["ports"]:
            a = self.view.port(pname)
            if a is None:
                continue
            for ip in a.ips:
                ports.setdefault(a.ifname, []).append({
                    "mac_address": a.mac, "ip_address": ip, "local_pref": a.local_pref, "rd": d["rd"],
                    "description": a.description, "direction": a.direction, "port": a.name,
                })
            if a.gateways and gateway is None:
                gateway = a.gateways[0]
                plen = ipaddress.ip_interface(a.ips[0]).network.prefixlen
        return {
            "instance_type": "ipvpn",
            "external_instance_id": name,
            "description": d.get("description", ""),
            "route_targets": {"import": d["import_rts"], "export": d["export_rts"]},
            "rd": d["rd"],
            "gateway_ip": gateway,
            "subnet_prefix_length": plen,
            "ports": ports,
            "readvertise": ({"from": list(svc.get("readv_from_rts") or ()), "to": d["export_rts"]}
                            if svc.get("readv_from_rts") else {}),
            "attract_traffic": ({"to": d["export_rts"], "static_destination_prefixes": list(svc["attract"])}
                                if svc.get("attract") else {}),
        }


def _from_vpe(e: Exception) -> BagpipeRefused:
    """A refused vpe operation, as this listener answers it (422 -> 400, as bagpipe-bgp)."""
    if isinstance(e, BagpipeRefused):
        return e
    h = http_error(e)
    status = 400 if h.status_code == 422 else h.status_code
    text = str(h.detail)
    field, sep, rest = text.partition(": ")
    if sep and field in _BAGPIPE_NAME:  # name the field as the client sent it
        text = f"{_BAGPIPE_NAME[field]}: {rest}"
    return BagpipeRefused(status, text)


def _refusal(e: BagpipeRefused) -> JSONResponse:
    return JSONResponse({"detail": str(e)}, status_code=e.status)


def create_bagpipe_app(engine: Engine) -> FastAPI:
    """The compatibility listener's app (served by :mod:`vpe.daemon` when enabled)."""
    app = FastAPI(title="vpe: bagpipe-bgp compatibility", openapi_url=None, docs_url=None, redoc_url=None)
    compat = BagpipeCompat(engine)
    app.state.compat = compat

    async def _json(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            raise BagpipeRefused(400, "body: not JSON (no local port details received)") from None

    @app.get("/ping")
    async def ping() -> int:
        return compat.sequence

    @app.post("/attach_localport")
    async def attach(request: Request) -> Any:
        try:
            return await compat.attach(await _json(request))
        except BagpipeRefused as e:
            log.warning("bagpipe attach_localport refused: %s", e)
            return _refusal(e)

    @app.post("/detach_localport")
    async def detach(request: Request) -> Any:
        try:
            return await compat.detach(await _json(request))
        except BagpipeRefused as e:
            log.warning("bagpipe detach_localport refused: %s", e)
            return _refusal(e)

    @app.get("/looking-glass")
    @app.get("/looking-glass/{path:path}")
    async def looking_glass(request: Request, path: str = "") -> Any:
        base = f"{request.url.scheme}://{request.url.netloc}/looking-glass"
        parts = [p for p in path.split("/") if p]
        d = compat.looking_glass(base, parts)
        if d is None:
            raise HTTPException(404, f"no looking-glass object {'/'.join(parts)!r}")
        return d

    app.add_middleware(BodyGuard, max_body=MAX_BODY)
    return app


__all__ = ["BagpipeCompat", "BagpipeRefused", "Endpoint", "create_bagpipe_app", "merged", "parse_request",
           "port_name"]

