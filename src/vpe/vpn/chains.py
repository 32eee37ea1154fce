"""Service chains compiled into VRFs, route targets, attraction and re-advertisement.

Pure: definitions in, a :class:`ChainPlan` out (docs/service-chains.md). A
chain says "VPN ``vpn``'s traffic to ``prefixes`` (or matching a
:class:`Classifier`) goes through ``services`` in order, then into VPN
``destination``". Nothing is configured per flow on the hosts that send the
traffic: every service instance's two ports ("inside", toward ``vpn``, and
"outside", toward ``destination``) get a VRF of their own, joined to their
neighbours in the chain by route targets (RFC 4364 section 4.3.5's chains
of VRFs):

* link *i* joins hop *i-1*'s outside with hop *i*'s inside (link 0: the
  client VPN with the first hop's inside; link *n*: the last hop's outside
  with the destination VPN). An inner link has two route targets from
  ``route_target_base``: *forward* (what the next hop's inside attracts) and
  *reverse* (what the previous hop's outside re-advertises);
* an inside VRF **attracts**: it advertises the chain's prefixes with the
  instance's next hop and label toward the previous link (the client VPN
  imports them, so remotes steer to the instance: bagpipe-bgp's
  ``attract-to-rt``), and imports the previous link's reverse routes (the
  way back);
* an outside VRF imports the next link's forward routes (the next hop's
  attraction, at the end the destination VPN's routes) and **re-advertises**
  what came over the previous link (the client VPN's routes, or what an
  earlier hop re-advertised) with its own next hop and label toward the next
  link (bagpipe-bgp's ``readv-from-rt``/``readv-to-rt``); a NAT hop's
  outside advertises its slice of the NAT pool instead (R12.4);
* with a classifier, the first hop attracts under a route target of its
  own, imported by a redirect VRF on the client VPN's hosts: traffic of
  ``vpn`` matching the classifier is looked up there (bagpipe-bgp's
  ``redirect-rts``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidValue, NotFound
from .names import NAME_MAX, check_name
from .route_target import parse_route_target, parse_route_targets

Side = Literal["inside", "outside"]
SIDES: tuple[Side, ...] = ("inside", "outside")
#: ECMP width of the chain's own VRFs (the VPN service's multipath limit)
CHAIN_MULTIPATH = 64
_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}


class ChainError(InvalidValue):
    """A chain or service definition that cannot be compiled (HTTP 422)."""


class UnknownChainPart(NotFound):
    """A chain names a VPN, a service or a chain that does not exist (HTTP 404)."""


def _prefix(value: Any, field_name: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except (ValueError, TypeError) as e:
        raise ChainError(f"{field_name}: {value!r} is not a prefix ({e})") from None


@dataclass(frozen=True, slots=True)
class Classifier:
    """Which traffic of the client VPN a chain takes (bagpipe-bgp's flow classifier):
    source and destination prefix, IP protocol, destination port range; an
    absent field matches everything."""

    source: str | None = None
    destination: str | None = None
    protocol: int | None = None
    ports: tuple[int, int] | None = None

    @classmethod
    def parse(cls, d: Mapping[str, Any], where: str = "classifier") -> Classifier:
        if not isinstance(d, Mapping):
            raise ChainError(f"{where}: expected a table with source, destination, protocol, ports")
        unknown = set(d) - {"source", "destination", "protocol", "ports"}
        if unknown:
            raise ChainError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             "(known: source, destination, protocol, ports)")
        src = _prefix(d["source"], f"{where}.source") if d.get("source") is not None else None
        dst = _prefix(d["destination"], f"{where}.destination") if d.get("destination") is not None else None
        if src and dst and ipaddress.ip_network(src).version != ipaddress.ip_network(dst).version:
            raise ChainError(f"{where}: source {src} and destination {dst} are of different IP versions")
        proto = d.get("protocol")
        if proto is not None:
            if isinstance(proto, str) and proto.lower() in _PROTOCOLS:
                proto = _PROTOCOLS[proto.lower()]
            if type(proto) is not int or not 0 <= proto <= 255:
                raise ChainError(f"{where}.protocol: {d['protocol']!r} is not tcp, udp, icmp, "
                                 "icmpv6, sctp or a number 0..255")
        ports = d.get("ports")
        rng: tuple[int, int] | None = None
        if ports is not None:
            if proto not in (6, 17, 132):
                raise ChainError(f"{where}.ports: a port range needs protocol tcp, udp or sctp")
            text = str(ports)
            lo, _, hi = text.partition("-")
            if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
                raise ChainError(f"{where}.ports: {ports!r} is not a port or a range LOW-HIGH")
            a, b = int(lo), int(hi or lo)
            if not 0 <= a <= b <= 65535:
                raise ChainError(f"{where}.ports: {ports!r} is not a range within 0..65535, low first")
            rng = (a, b)
        if src is None and dst is None and proto is None:
            raise ChainError(f"{where}: matches everything; give source, destination or protocol "
                             "(or use prefixes = [\"0.0.0.0/0\"])")
        return cls(src, dst, proto, rng)

    @property
    def version(self) -> int:
        p = self.destination or self.source
        return ipaddress.ip_network(p).version if p else 4

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination, "protocol": self.protocol,
                "ports": None if self.ports is None else f"{self.ports[0]}-{self.ports[1]}"}


@dataclass(frozen=True, slots=True)
class ServiceDef:
    """A service (its instances are ports attached with a service role). ``nat_pool``:
    the service rewrites source addresses into this pool; each instance owns a
    slice of it (given when its outside port is attached)."""

    name: str
    nat_pool: str | None = None

    @classmethod
    def parse(cls, d: Mapping[str, Any], where: str = "service") -> ServiceDef:
        unknown = set(d) - {"name", "nat_pool"}
        if unknown:
            raise ChainError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: name, nat_pool)")
        name = check_name(d.get("name"), f"{where}.name")  # type: ignore[arg-type]
        pool = _prefix(d["nat_pool"], f"{where}.nat_pool") if d.get("nat_pool") is not None else None
        return cls(name, pool)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "nat_pool": self.nat_pool}


@dataclass(frozen=True, slots=True)
class ChainDef:
    """VPN ``vpn``'s traffic to ``prefixes`` (or matching ``classifier``) goes through
    ``services`` in order before reaching VPN ``destination``."""

    name: str
    vpn: str
    destination: str
    services: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    classifier: Classifier | None = None
    #: "ASN:N": the route targets of the inner links are ASN:N, ASN:N+1, ...
    route_target_base: str | None = None

    @classmethod
    def parse(cls, d: Mapping[str, Any], where: str = "chain", name: str | None = None) -> ChainDef:
        known = {"name", "vpn", "destination", "services", "prefixes", "classifier", "route_target_base"}
        unknown = set(d) - known
        if unknown:
            raise ChainError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(known))})")
        nm = check_name(name if name is not None else d.get("name"), f"{where}.name")  # type: ignore[arg-type]
        for k in ("vpn", "destination"):
            if d.get(k) is None:
                raise ChainError(f"{where}.{k}: missing; a chain names the VPN its traffic comes from "
                                 "(vpn) and the VPN it goes to (destination)")
            check_name(d[k], f"{where}.{k}")
        services = d.get("services")
        if not isinstance(services, list | tuple) or not services:
            raise ChainError(f"{where}.services: chain {nm!r} has no service; a chain goes through "
                             "at least one")
        for i, s in enumerate(services):
            check_name(s, f"{where}.services[{i}]")
        prefixes = d.get("prefixes") or []
        if not isinstance(prefixes, list | tuple):
            raise ChainError(f"{where}.prefixes: expected a list of prefixes")
        pfx = tuple(_prefix(p, f"{where}.prefixes[{i}]") for i, p in enumerate(prefixes))
        cl = Classifier.parse(d["classifier"], f"{where}.classifier") if d.get("classifier") is not None else None
        if not pfx and cl is None:
            raise ChainError(f"{where}: chain {nm!r} steers nothing; give prefixes (e.g. [\"0.0.0.0/0\"]) "
                             "or a classifier")
        if pfx and cl is not None:
            raise ChainError(f"{where}: give prefixes or a classifier, not both (make two chains)")
        base = d.get("route_target_base")
        if base is not None:
            base = str(parse_route_target(base, f"{where}.route_target_base")).removeprefix("target:")
        return cls(nm, d["vpn"], d["destination"], tuple(services), pfx, cl, base)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "vpn": self.vpn, "destination": self.destination,
                "services": list(self.services), "prefixes": list(self.prefixes),
                "classifier": None if self.classifier is None else self.classifier.to_json(),
                "route_target_base": self.route_target_base}


@dataclass(frozen=True, slots=True)
class SidePlan:
    """The VRF of one side of one hop (every instance's port on that side gets one)."""

    import_rts: tuple[str, ...]
    export_rts: tuple[str, ...]
    attract: tuple[str, ...] = ()
    readv_from_rts: tuple[str, ...] = ()
    readv_exclude: tuple[str, ...] = ()
    #: the outside of a NAT hop: advertise the instance's pool slice (no readv)
    nat_pool: str | None = None


@dataclass(frozen=True, slots=True)
class HopPlan:
    service: str
    inside: SidePlan
    outside: SidePlan

    def side(self, side: Side) -> SidePlan:
        return self.inside if side == "inside" else self.outside


@dataclass(frozen=True, slots=True)
class RedirectPlan:
    """Classifier chains: on the client VPN's hosts, a VRF importing ``import_rts``;
    traffic of ``vpn`` matching ``classifier`` is looked up there."""

    vpn: str
    vrf: str
    classifier: Classifier
    import_rts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChainPlan:
    chain: ChainDef
    hops: tuple[HopPlan, ...]
    redirect: RedirectPlan | None = None
    inner_rts: tuple[str, ...] = field(default=())

    def hop(self, service: str) -> HopPlan:
        for h in self.hops:
            if h.service == service:
                return h
        raise UnknownChainPart(f"service: chain {self.chain.name!r} does not go through {service!r} "
                               f"(it goes through {', '.join(h.service for h in self.hops)})")

    def to_json(self) -> dict[str, Any]:
        d = self.chain.to_json()
        d["links"] = list(self.inner_rts)
        d["redirect_vrf"] = self.redirect.vrf if self.redirect is not None else None
        return d


def instance_vrf(chain: str, port: str) -> str:
    """The VRF of a service instance's port in ``chain``."""
    name = f"{chain}.{port}"
    if len(name) > NAME_MAX:
        raise ChainError(f"name: chain {chain!r} and port {port!r} make a VRF name of {len(name)} "
                         f"characters, at most {NAME_MAX}; use shorter names")
    return name


def redirect_vrf(chain: str) -> str:
    return instance_vrf(chain, "redirect")


def _rt_texts(rts: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted(str(rt).removeprefix("target:") for rt in rts))


def compile_chain(chain: ChainDef, services: Mapping[str, ServiceDef],
                  vpns: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> ChainPlan:
    """The VRF settings that realise ``chain``. ``vpns``: VPN name -> (import RTs,
    export RTs). Refuses unknown VPNs and services, loops and RT clashes."""
    where = f"chain {chain.name!r}"
    for k, v in (("vpn", chain.vpn), ("destination", chain.destination)):
        if v not in vpns:
            raise UnknownChainPart(f"{k}: {where}: no VPN {v!r}")
    if chain.vpn == chain.destination:
        raise ChainError(f"destination: {where} leads from VPN {chain.vpn!r} back into it: a loop")
    if not chain.services:
        raise ChainError(f"services: {where} has no service; a chain goes through at least one")
    seen: set[str] = set()
    for i, s in enumerate(chain.services):
        if s not in services:
            raise UnknownChainPart(f"services[{i}]: {where}: no service {s!r}")
        if s in seen:
            raise ChainError(f"services[{i}]: {where} goes through {s!r} twice: a loop "
                             "(use two services for two passes)")
        seen.add(s)
    c_imp = parse_route_targets(vpns[chain.vpn][0], "import_rts")
    c_exp = parse_route_targets(vpns[chain.vpn][1], "export_rts")
    d_imp = parse_route_targets(vpns[chain.destination][0], "import_rts")
    d_exp = parse_route_targets(vpns[chain.destination][1], "export_rts")
    if not c_exp or not d_exp:
        which = chain.vpn if not c_exp else chain.destination
        raise ChainError(f"{'vpn' if not c_exp else 'destination'}: VPN {which!r} exports nothing; "
                         f"{where} needs its route targets")
    if not c_imp and chain.classifier is None:
        raise ChainError(f"vpn: VPN {chain.vpn!r} imports nothing: {where} cannot attract its traffic")
    if not d_imp:
        raise ChainError(f"destination: VPN {chain.destination!r} imports nothing: {where}'s return "
                         "traffic could not come back")
    shared = (c_exp & d_imp) | (d_exp & c_imp)
    if shared:
        raise ChainError(f"destination: VPNs {chain.vpn!r} and {chain.destination!r} exchange routes "
                         f"directly (route target {', '.join(_rt_texts(shared))}): the chain would be "
                         "bypassed (a loop with the direct path)")
    n = len(chain.services)
    need = 2 * (n - 1) + (1 if chain.classifier is not None else 0)
    inner: list[str] = []
    if need:
        if chain.route_target_base is None:
            raise ChainError(f"route_target_base: {where} needs {need} route target(s) of its own "
                             "(more than one service, or a classifier): give route_target_base "
                             "such as \"65000:9000\"")
        asn, _, first = chain.route_target_base.rpartition(":")
        start = int(first)
        # RFC 4360: a 2-octet AS has a 4-octet number; an IPv4 address or a 4-octet AS a 2-octet one
        top = 0xFFFFFFFF if asn.isdigit() and int(asn) <= 0xFFFF else 0xFFFF
        if start + need - 1 > top:
            raise ChainError(f"route_target_base: {chain.route_target_base} leaves no room for "
                             f"{need} route targets")
        inner = [f"{asn}:{start + i}" for i in range(need)]
        clash = parse_route_targets(inner, "route_target_base") & (c_imp | c_exp | d_imp | d_exp)
        if clash:
            raise ChainError(f"route_target_base: {where}: its route target(s) {', '.join(_rt_texts(clash))} "
                             "are also the VPNs' own: pick a base no VPN uses")
    exclude: tuple[str, ...]
    redirect: RedirectPlan | None = None
    if chain.classifier is not None:
        cl = chain.classifier
        attract: tuple[str, ...] = (cl.destination or ("0.0.0.0/0" if cl.version == 4 else "::/0"),)
        redirect = RedirectPlan(chain.vpn, redirect_vrf(chain.name), cl, (inner[-1],))
        first_export: tuple[str, ...] = (inner[-1],)
    else:
        attract = chain.prefixes
        first_export = _rt_texts(c_imp)
    exclude = attract
    hops: list[HopPlan] = []
    prev_rev = _rt_texts(c_exp)  # what comes back over the previous link
    for i, s in enumerate(chain.services):
        last = i == n - 1
        fwd_in = first_export if i == 0 else (inner[2 * (i - 1)],)
        rev_in = prev_rev if i == 0 else (inner[2 * (i - 1) + 1],)
        fwd_out = _rt_texts(d_exp) if last else (inner[2 * i],)
        rev_out = _rt_texts(d_imp) if last else (inner[2 * i + 1],)
        inside = SidePlan(import_rts=rev_in, export_rts=fwd_in, attract=attract)
        pool = services[s].nat_pool
        outside = SidePlan(import_rts=fwd_out, export_rts=rev_out,
                           readv_from_rts=() if pool else rev_in,
                           readv_exclude=() if pool else exclude, nat_pool=pool)
        hops.append(HopPlan(s, inside, outside))
    return ChainPlan(chain, tuple(hops), redirect, tuple(inner))


def check_pool_slice(service: ServiceDef, slice_: str | None, where: str = "pool") -> str | None:
    """The pool slice an instance of ``service`` owns: required for a NAT service,
    inside its pool; refused for any other."""
    if service.nat_pool is None:
        if slice_ is not None:
            raise ChainError(f"{where}: service {service.name!r} has no nat_pool; only a NAT "
                             "service's instance owns a pool slice")
        return None
    if slice_ is None:
        raise ChainError(f"{where}: service {service.name!r} translates into {service.nat_pool}; "
                         "its outside port needs the slice of the pool it owns")
    net = ipaddress.ip_network(_prefix(slice_, where))
    pool = ipaddress.ip_network(service.nat_pool)
    if net.version != pool.version or not net.subnet_of(pool):  # type: ignore[arg-type]
        raise ChainError(f"{where}: {net} is not within service {service.name!r}'s pool {pool}")
    return str(net)


__all__ = [
    "CHAIN_MULTIPATH", "SIDES", "ChainDef", "ChainError", "ChainPlan", "Classifier", "HopPlan",
    "RedirectPlan", "ServiceDef", "Side", "SidePlan", "UnknownChainPart", "check_pool_slice",
    "compile_chain", "instance_vrf", "redirect_vrf",
]
