"""The lab topology: a short YAML file validated with pydantic.

A topology names hosts (each a network namespace on a shared underlay
bridge), an optional route reflector, tenants with their VPNs, and VMs (each
a namespace wired to one host). Every address is checked against the test
bed's ranges (docs/lab.md, TESTBED.md) so that a lab can never put a foreign
address on a wire; every mistake is refused with the key that holds it
(``vms[2].host: unknown host 'h9' ...``), never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..bgp.wire.constants import family_from_name
from ..bgp.wire.nlri.rd import RouteDistinguisher, parse_admin_pair
from ..dataplane import registry as dataplane_drivers

# -- the test bed's address plan ---------------------------------------------

UNDERLAY_V4 = IPv4Network("198.18.0.0/15")
UNDERLAY_V6 = IPv6Network("2001:db8:ffff::/48")
TENANT_V4 = (IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24"), IPv4Network("203.0.113.0/24"))
TENANT_V6 = IPv6Network("2001:db8::/32")  # minus UNDERLAY_V6
LINK_LOCAL_V6 = IPv6Network("fe80::/10")

#: namespace names are ``<prefix>-<name>``; a prefix has no '-' so that the
#: prefix of any lab namespace is the text before its first '-'
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
#: host and VM names: the VM's host-side veth is ``vm-<name>`` (15 octets max)
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
#: namespace suffixes the lab uses itself
RESERVED_NAMES = frozenset({"underlay", "rr"})

DEFAULT_PREFIX = "vpelab"


class TopologyError(Exception):
    """A topology that cannot be built; one line per problem, each naming its key."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid topology"] + [f"  {key}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


# -- address checks ----------------------------------------------------------


def _tenant_v4_ok(addr: IPv4Address) -> bool:
    return any(addr in n for n in TENANT_V4)


def _tenant_v6_ok(addr: IPv6Address) -> bool:
    return addr in TENANT_V6 and addr not in UNDERLAY_V6


_TENANT_TEXT = "192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24"
_TENANT6_TEXT = "2001:db8::/32 outside 2001:db8:ffff::/48"


def _parse(value: Any, kind: type, what: str) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    try:
        return kind(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {what}") from None


def underlay_v4(value: Any) -> IPv4Address:
    a: IPv4Address = _parse(value, IPv4Address, "IPv4 address")
    if a not in UNDERLAY_V4:
        raise ValueError(f"{a} is outside the underlay range {UNDERLAY_V4}")
    return a


def underlay_v6(value: Any) -> IPv6Address:
    a: IPv6Address = _parse(value, IPv6Address, "IPv6 address")
    if a not in UNDERLAY_V6:
        raise ValueError(f"{a} is outside the underlay range {UNDERLAY_V6}")
    return a


def _route_target(text: Any) -> str:
    """Normalise ``65000:1`` / ``target:65000:1`` / ``192.0.2.1:5`` to ``admin:number``."""
    if not isinstance(text, str):
        text = str(text)
    body = text.removeprefix("target:")
    kind, six = parse_admin_pair(body, "route target")
    if kind == 1:
        return f"{'.'.join(str(b) for b in six[:4])}:{int.from_bytes(six[4:], 'big')}"
    if kind == 0:
        return f"{int.from_bytes(six[:2], 'big')}:{int.from_bytes(six[2:], 'big')}"
    asn = int.from_bytes(six[:4], "big")
    return f"{asn}{'L' if asn <= 0xFFFF else ''}:{int.from_bytes(six[4:], 'big')}"


#: a route target in a list: each item checked on its own, so errors name the index
RouteTarget = Annotated[str, BeforeValidator(_route_target)]


# -- the model ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_node_name(v: str) -> str:
    if not NODE_NAME_RE.match(v):
        raise ValueError(
            f"{v!r} must be 1-12 characters: lower-case letters, digits, '-', starting with a letter"
        )
    if v in RESERVED_NAMES:
        raise ValueError(f"{v!r} is reserved by the lab ({', '.join(sorted(RESERVED_NAMES))})")
    return v


class UnderlayConfig(_Strict):
    """The shared L2 segment every host (and the route reflector) sits on."""

    ipv4: IPv4Network = IPv4Network("198.18.0.0/24")
    ipv6: IPv6Network = IPv6Network("2001:db8:ffff::/64")

    @field_validator("ipv4", mode="before")
    @classmethod
    def _v4(cls, v: Any) -> IPv4Network:
        n: IPv4Network = _parse(v, IPv4Network, "IPv4 network (address/length, host bits zero)")
        if not n.subnet_of(UNDERLAY_V4):
            raise ValueError(f"{n} is outside the underlay range {UNDERLAY_V4}")
        if n.prefixlen > 30:
            raise ValueError(f"{n} is too small for a shared segment (at most /30)")
        return n

    @field_validator("ipv6", mode="before")
    @classmethod
    def _v6(cls, v: Any) -> IPv6Network:
        n: IPv6Network = _parse(v, IPv6Network, "IPv6 network (address/length, host bits zero)")
        if not n.subnet_of(UNDERLAY_V6):
            raise ValueError(f"{n} is outside the underlay range {UNDERLAY_V6}")
        if n.prefixlen > 126:
            raise ValueError(f"{n} is too small for a shared segment (at most /126)")
        return n


def _check_driver(v: str | None) -> str | None:
    """A dataplane driver that runs a forwarder (registry names: userspace, ebpf, ...)."""
    if v is None:
        return v
    try:
        entry = dataplane_drivers.get(v)
    except dataplane_drivers.UnknownDriver as e:
        raise ValueError(str(e)) from None
    if not entry.has_forwarder:
        raise ValueError(f"driver {v!r} runs no forwarder; a lab host needs one")
    return v


class PeerConfig(_Strict):
    """A BGP session of a host with another host, with its own families and policies
    (an Inter-AS lab: labeled unicast to the ASBR, multihop VPN to the other AS)."""

    host: str
    #: None: the lab's families
    families: list[str] | None = None
    import_policy: str | None = None
    export_policy: str | None = None
    ebgp_multihop: int | None = Field(default=None, ge=1, le=255)
    #: this host reflects routes to and from that peer (RFC 4456): it is a route
    #: reflector of its AS and the peer (same AS, iBGP) its client
    route_reflector_client: bool = False

    @field_validator("families")
    @classmethod
    def _fams(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [family_from_name(f).name for f in v]


class HostConfig(_Strict):
    """A hypervisor: one namespace running ``vpe agent`` (and the forwarder)."""

    name: str
    address: IPv4Address
    address6: IPv6Address | None = None
    #: the forwarder's dataplane driver on this host (None: the lab's ``driver``)
    driver: str | None = None
    #: the forwarder's encapsulations, preferred first (agent ``[dataplane] encapsulations``);
    #: advertised as Encapsulation communities; None: the agent's default (both)
    encapsulations: list[Literal["mpls-in-udp", "mpls-in-gre"]] | None = Field(default=None, min_length=1)
    #: this host's AS (None: the lab's ``asn``): hosts in two ASes make an Inter-AS lab
    asn: int | None = Field(default=None, ge=1, le=4294967295)
    #: the hosts this one has BGP sessions with (None: the route reflector, or a full mesh);
    #: a peer in another AS is an eBGP neighbor (docs/inter-as.md)
    peers: list[str | PeerConfig] | None = None
    #: policies (``[[policies]]`` tables of the agent) and the ones every neighbor of this
    #: host uses on import / export
    policies: list[dict[str, Any]] = Field(default_factory=list)
    import_policy: str | None = None
    export_policy: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_node_name(v)

    @field_validator("address", mode="before")
    @classmethod
    def _a4(cls, v: Any) -> IPv4Address:
        return underlay_v4(v)

    @field_validator("address6", mode="before")
    @classmethod
    def _a6(cls, v: Any) -> IPv6Address | None:
        return None if v is None else underlay_v6(v)

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str | None) -> str | None:
        return _check_driver(v)


class RouteReflectorConfig(_Strict):
    """The route reflector every host peers with; in its own namespace ``<prefix>-rr``."""

    kind: Literal["vpe", "gobgp"] = "vpe"
    address: IPv4Address
    address6: IPv6Address | None = None

    @field_validator("address", mode="before")
    @classmethod
    def _a4(cls, v: Any) -> IPv4Address:
        return underlay_v4(v)

    @field_validator("address6", mode="before")
    @classmethod
    def _a6(cls, v: Any) -> IPv6Address | None:
        return None if v is None else underlay_v6(v)


class StaticRoute(_Strict):
    """A route a VPN's VRF originates toward one of its VMs (``via``): the VM routes
    for ``prefix`` (a hub VM in hub-and-spoke). Originated on the host of that VM."""

    prefix: IPv4Network | IPv6Network
    via: IPv4Address | IPv6Address

    @model_validator(mode="after")
    def _ranges(self) -> StaticRoute:
        net, via = self.prefix, self.via
        if net.version != via.version:
            raise ValueError(f"via {via} is not of the family of {net}")
        ok_net = (
            any(net.subnet_of(n) for n in TENANT_V4)
            if isinstance(net, IPv4Network)
            else net.subnet_of(TENANT_V6) and not net.overlaps(UNDERLAY_V6)
        )
        if not ok_net:
            raise ValueError(f"{net} is outside the tenant ranges")
        return self


class AggregateRoute(_Strict):
    """An aggregate a VPN's VRFs advertise (R10.3), on every host holding the VPN."""

    prefix: IPv4Network | IPv6Network
    summary_only: bool = False

    @model_validator(mode="after")
    def _ranges(self) -> AggregateRoute:
        net = self.prefix
        ok = (any(net.subnet_of(n) for n in TENANT_V4) if isinstance(net, IPv4Network)
              else net.subnet_of(TENANT_V6) and not net.overlaps(UNDERLAY_V6))
        if not ok:
            raise ValueError(f"{net} is outside the tenant ranges")
        return self


class VpnConfig(_Strict):
    """One VPN: the route targets a VRF joining it imports and exports."""

    name: str
    rd: str | None = None
    import_: list[RouteTarget] = Field(default_factory=list, alias="import")
    export: list[RouteTarget] = Field(default_factory=list)
    #: label allocation of the VRF (agent ``label_mode``); None: the agent's default (per-vrf)
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] | None = None
    routes: list[StaticRoute] = Field(default_factory=list)
    aggregates: list[AggregateRoute] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not LABEL_RE.match(v):
            raise ValueError(f"{v!r} must be 1-32 characters: letters, digits, '_', '.', '-'")
        return v

    @field_validator("rd")
    @classmethod
    def _rd(cls, v: str | None) -> str | None:
        return None if v is None else str(RouteDistinguisher.from_str(v))

    @field_validator("import_", "export", mode="before")
    @classmethod
    def _rts(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _some_rt(self) -> VpnConfig:
        if not self.import_ and not self.export:
            raise ValueError(f"VPN {self.name!r} needs at least one import or export route target")
        return self


class TenantConfig(_Strict):
    name: str
    vpns: list[VpnConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not LABEL_RE.match(v):
            raise ValueError(f"{v!r} must be 1-32 characters: letters, digits, '_', '.', '-'")
        return v


def _tenant_interface(v: Any, kind: Any, version: int, ok: Any, ranges: str) -> Any:
    """A VM address: ``kind`` (IPv4Interface / IPv6Interface) with an explicit
    prefix length, inside the tenant ranges of TESTBED.md."""
    if v is None:
        return None
    i = _parse(v, kind, f"IPv{version} address with prefix length")
    if "/" not in str(v):
        raise ValueError(f"{v!r} needs a prefix length, e.g. {v}/{24 if version == 4 else 64}")
    if not ok(i.ip):
        raise ValueError(f"{i.ip} is outside the tenant {ranges}")
    return i


class VmBgpConfig(_Strict):
    """A VM that speaks BGP with its VRF (PE-CE BGP through its port, docs/inter-as.md):
    its host's VRF gets it as an eBGP neighbor per address family the VM has, peering
    with the VM's gateway; the VM runs the BGP daemon (the lab does not start one)."""

    asn: int = Field(ge=1, le=4294967295)
    import_policy: str | None = None
    export_policy: str | None = None


class VmConfig(_Strict):
    """A VM: a namespace with ``eth0`` wired to its host's ``vm-<name>``."""

    name: str
    host: str
    vpns: list[str] = Field(min_length=1)
    ipv4: IPv4Interface | None = None
    gateway: IPv4Address | None = None
    ipv6: IPv6Interface | None = None
    gateway6: IPv6Address | None = None
    #: further source prefixes the VM may send from (a routing VM; R13.1 allowed pairs)
    allowed: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    #: the VM is a BGP neighbor of its VRF (it announces its own routes)
    bgp: VmBgpConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_node_name(v)

    @model_validator(mode="before")
    @classmethod
    def _vpn_alias(cls, data: Any) -> Any:
        # `vpn: red` is the common case; `vpns: [red, shared]` the general one
        if isinstance(data, dict) and "vpn" in data:
            if "vpns" in data:
                raise ValueError("give either 'vpn' or 'vpns', not both")
            data = dict(data)
            v = data.pop("vpn")
            data["vpns"] = v if isinstance(v, list) else [v]
        return data

    @field_validator("ipv4", mode="before")
    @classmethod
    def _v4(cls, v: Any) -> IPv4Interface | None:
        return _tenant_interface(v, IPv4Interface, 4, _tenant_v4_ok, f"ranges ({_TENANT_TEXT})")

    @field_validator("ipv6", mode="before")
    @classmethod
    def _v6(cls, v: Any) -> IPv6Interface | None:
        return _tenant_interface(v, IPv6Interface, 6, _tenant_v6_ok, f"range ({_TENANT6_TEXT})")

    @field_validator("allowed")
    @classmethod
    def _allowed(cls, v: list[IPv4Network | IPv6Network]) -> list[IPv4Network | IPv6Network]:
        for n in v:
            ok = (
                any(n.subnet_of(t) for t in TENANT_V4)
                if isinstance(n, IPv4Network)
                else n.subnet_of(TENANT_V6) and not n.overlaps(UNDERLAY_V6)
            )
            if not ok:
                raise ValueError(f"{n} is outside the tenant ranges")
        return v

    @field_validator("gateway", mode="before")
    @classmethod
    def _g4(cls, v: Any) -> IPv4Address | None:
        if v is None:
            return None
        a: IPv4Address = _parse(v, IPv4Address, "IPv4 address")
        if not _tenant_v4_ok(a):
            raise ValueError(f"{a} is outside the tenant ranges ({_TENANT_TEXT})")
        return a

    @field_validator("gateway6", mode="before")
    @classmethod
    def _g6(cls, v: Any) -> IPv6Address | None:
        if v is None:
            return None
        a: IPv6Address = _parse(v, IPv6Address, "IPv6 address")
        if not (_tenant_v6_ok(a) or a in LINK_LOCAL_V6):
            raise ValueError(f"{a} is outside the tenant range ({_TENANT6_TEXT}) and not link-local")
        return a

    @model_validator(mode="after")
    def _some_address(self) -> VmConfig:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError(f"vm {self.name!r} needs an ipv4 or ipv6 address")
        if self.gateway is not None and self.ipv4 is None:
            raise ValueError("gateway is set but ipv4 is not")
        if self.gateway6 is not None and self.ipv6 is None:
            raise ValueError("gateway6 is set but ipv6 is not")
        return self

    def gateway_v4(self) -> IPv4Address | None:
        """The IPv4 default gateway: the given one, else the subnet's first address."""
        if self.ipv4 is None:
            return None
        return self.gateway or self.ipv4.network.network_address + 1

    def gateway_v6(self) -> IPv6Address | None:
        """The IPv6 default gateway: the given one, else the subnet's ``::1``."""
        if self.ipv6 is None:
            return None
        return self.gateway6 or self.ipv6.network.network_address + 1


class LinkEnd(_Strict):
    """One end of a :class:`LinkConfig`: a port of ``host``'s VRF, with this end's address."""

    host: str
    #: this end's address (the gateway the other end peers with), with the link's prefix
    address: IPv4Interface

    @field_validator("address", mode="before")
    @classmethod
    def _a4(cls, v: Any) -> IPv4Interface:
        return _tenant_interface(v, IPv4Interface, 4, _tenant_v4_ok, f"ranges ({_TENANT_TEXT})")


class LinkConfig(_Strict):
    """A point-to-point link between ports of two hosts' VRFs of one VPN, each end's
    VRF peering with the other over BGP through it (PE-CE BGP, ``via = "port"``): two
    ASBRs back to back, Inter-AS option A (docs/inter-as.md). The link is a veth pair
    ``ln-<name>`` between the two host namespaces; each end is a port of its VRF whose
    endpoint is the other end (any source may cross it: it carries the other AS's traffic)."""

    name: str
    vpn: str
    ends: list[LinkEnd] = Field(min_length=2, max_length=2)
    #: the policies of the VRF neighbors over the link (None: the host's)
    import_policy: str | None = None
    export_policy: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = _check_node_name(v)
        if len(v) > 12:
            raise ValueError(f"link name {v!r} is longer than 12 characters (interface ln-{v})")
        return v

    @model_validator(mode="after")
    def _ends(self) -> LinkConfig:
        a, b = self.ends
        if a.host == b.host:
            raise ValueError(f"link {self.name}: both ends on host {a.host}")
        if a.address.network != b.address.network or a.address.ip == b.address.ip:
            raise ValueError(f"link {self.name}: {a.address} and {b.address} are not two addresses of one subnet")
        return self


class Topology(_Strict):
    """A whole lab. Cross-references are checked here, each problem with its key."""

    prefix: str | None = None
    asn: int = Field(default=65000, ge=1, le=4294967295)
    #: address families of the BGP sessions (agent names: vpnv4, vpnv6, rtc, ...)
    families: list[str] = Field(
        default_factory=lambda: ["vpnv4", "vpnv6", "ipv4-mcast-vpn"], min_length=1
    )
    underlay: UnderlayConfig = Field(default_factory=UnderlayConfig)
    #: the hosts' dataplane driver (a host's own ``driver`` wins)
    driver: str = "userspace"
    route_reflector: RouteReflectorConfig | None = None
    hosts: list[HostConfig] = Field(min_length=1)
    tenants: list[TenantConfig] = Field(default_factory=list)
    vms: list[VmConfig] = Field(default_factory=list)
    #: VRF-to-VRF links between hosts (Inter-AS option A)
    links: list[LinkConfig] = Field(default_factory=list)
    #: when set, each host's agent also serves its API on TCP at ``<host address>:<port>``
    #: (inside the host's namespace) with the lab's bearer token, in ``<state dir>/api.token``
    api_tcp_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None:
            check_prefix(v)
        return v

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str) -> str:
        _check_driver(v)
        return v

    def asn_of(self, host: HostConfig) -> int:
        """The AS of ``host``."""
        return host.asn or self.asn

    def driver_of(self, host: HostConfig) -> str:
        """The dataplane driver of ``host``'s forwarder."""
        return host.driver or self.driver

    def with_driver(self, driver: str) -> Topology:
        """This topology with every host on ``driver`` (``vpe lab up --driver``, the e2e suite)."""
        _check_driver(driver)
        hosts = [h.model_copy(update={"driver": None}) for h in self.hosts]
        return self.model_copy(update={"driver": driver, "hosts": hosts})

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        return [family_from_name(f).name for f in v]  # short names too; ValueError names an unknown one

    @model_validator(mode="after")
    def _references(self) -> Topology:
        problems = list(self._cross_problems())
        if problems:
            raise ValueError("\n".join(f"{k}: {m}" for k, m in problems))
        return self

    def _cross_problems(self) -> Iterable[tuple[str, str]]:
        ul = self.underlay
        seen_nodes: dict[str, str] = {}
        named = [("hosts", i, h.name) for i, h in enumerate(self.hosts)]
        named += [("vms", i, vm.name) for i, vm in enumerate(self.vms)]
        for kind, i, name in named:
            if name in seen_nodes:
                yield f"{kind}[{i}].name", f"duplicate name {name!r} (already {seen_nodes[name]})"
            else:
                seen_nodes[name] = f"{kind}[{i}]"

        used4: dict[IPv4Address, str] = {}
        used6: dict[IPv6Address, str] = {}
        underlay_nodes: list[tuple[str, IPv4Address, IPv6Address | None]] = [
            (f"hosts[{i}]", h.address, h.address6) for i, h in enumerate(self.hosts)
        ]
        if self.route_reflector is not None:
            rr = self.route_reflector
            underlay_nodes.append(("route_reflector", rr.address, rr.address6))
        for key, a4, a6 in underlay_nodes:
            if a4 not in ul.ipv4 or a4 in (ul.ipv4.network_address, ul.ipv4.broadcast_address):
                yield f"{key}.address", f"{a4} is not a usable address of underlay.ipv4 {ul.ipv4}"
            elif a4 in used4:
                yield f"{key}.address", f"{a4} is already used by {used4[a4]}"
            else:
                used4[a4] = key
            if a6 is None:
                continue
            if a6 not in ul.ipv6 or a6 == ul.ipv6.network_address:
                yield f"{key}.address6", f"{a6} is not a usable address of underlay.ipv6 {ul.ipv6}"
            elif a6 in used6:
                yield f"{key}.address6", f"{a6} is already used by {used6[a6]}"
            else:
                used6[a6] = key

        vpn_names: dict[str, str] = {}
        for t, tenant in enumerate(self.tenants):
            for v, vpn in enumerate(tenant.vpns):
                key = f"tenants[{t}].vpns[{v}].name"
                if vpn.name in vpn_names:
                    yield key, f"duplicate VPN name {vpn.name!r} (already {vpn_names[vpn.name]})"
                else:
                    vpn_names[vpn.name] = f"tenants[{t}].vpns[{v}]"

        host_names = [h.name for h in self.hosts]
        for i, h in enumerate(self.hosts):
            for j, p in enumerate(h.peers or ()):
                peer = p if isinstance(p, str) else p.host
                if peer not in host_names or peer == h.name:
                    yield f"hosts[{i}].peers[{j}]", f"{peer!r} is not another host of this lab"
        yield from self._peering_problems()
        for i, h in enumerate(self.hosts):
            policy_names = {str(p.get("name")) for p in h.policies}
            uses = [(f"hosts[{i}].{k}", getattr(h, k)) for k in ("import_policy", "export_policy")]
            uses += [(f"hosts[{i}].peers[{j}].{k}", getattr(p, k))
                     for j, p in enumerate(h.peers or ()) if isinstance(p, PeerConfig)
                     for k in ("import_policy", "export_policy")]
            for key, ref in uses:
                if ref is not None and ref not in policy_names:
                    known = ", ".join(sorted(policy_names)) or "none"
                    yield key, f"no policy named {ref!r} in hosts[{i}].policies ({known})"
        # (vpn, address) -> vm: the same address may appear in different VPNs
        # (overlapping tenants), never twice in one
        taken: dict[tuple[str, Any], str] = {}
        for i, vm in enumerate(self.vms):
            if vm.host not in host_names:
                yield f"vms[{i}].host", f"unknown host {vm.host!r} for vm {vm.name!r} (hosts: {', '.join(host_names)})"
            for j, name in enumerate(vm.vpns):
                if name not in vpn_names:
                    known = ", ".join(vpn_names) or "none defined under tenants"
                    yield f"vms[{i}].vpns[{j}]", f"unknown VPN {name!r} for vm {vm.name!r} (VPNs: {known})"
            if len(set(vm.vpns)) != len(vm.vpns):
                yield f"vms[{i}].vpns", f"a VPN is listed twice: {vm.vpns}"
            for fam, iface, gw, gw_key in (
                ("ipv4", vm.ipv4, vm.gateway_v4(), "gateway"),
                ("ipv6", vm.ipv6, vm.gateway_v6(), "gateway6"),
            ):
                if iface is None:
                    continue
                net = iface.network
                if iface.ip == net.network_address and net.num_addresses > 2:
                    yield f"vms[{i}].{fam}", f"{iface.ip} is the network address of {net}"
                if isinstance(iface, IPv4Interface) and net.num_addresses > 2 and iface.ip == net.broadcast_address:
                    yield f"vms[{i}].{fam}", f"{iface.ip} is the broadcast address of {net}"
                link_local = isinstance(gw, IPv6Address) and gw in LINK_LOCAL_V6
                if gw is not None and not link_local and gw not in net:
                    yield f"vms[{i}].{gw_key}", f"{gw} is not inside the vm's subnet {net}"
                elif gw == iface.ip:
                    how = "" if getattr(vm, gw_key) is not None else " (the default gateway is the subnet's first address; set one)"
                    yield f"vms[{i}].{gw_key}", f"{gw} is the vm's own address{how}"
                for name in vm.vpns:
                    other = taken.get((name, iface.ip))
                    if other is not None:
                        yield f"vms[{i}].{fam}", f"{iface.ip} is already used by vm {other!r} in VPN {name!r}"
                    else:
                        taken[(name, iface.ip)] = vm.name
        link_names: set[str] = set()
        for i, ln in enumerate(self.links):
            if ln.name in link_names:
                yield f"links[{i}].name", f"duplicate link name {ln.name!r}"
            link_names.add(ln.name)
            if ln.vpn not in vpn_names:
                yield f"links[{i}].vpn", f"unknown VPN {ln.vpn!r} for link {ln.name!r}"
            for j, end in enumerate(ln.ends):
                if end.host not in host_names:
                    yield f"links[{i}].ends[{j}].host", f"unknown host {end.host!r} for link {ln.name!r}"

    def links_on(self, host: str) -> list[tuple[LinkConfig, LinkEnd, LinkEnd]]:
        """The links with an end on ``host``: (link, this end, the other end)."""
        out = []
        for ln in self.links:
            a, b = ln.ends
            if a.host == host:
                out.append((ln, a, b))
            elif b.host == host:
                out.append((ln, b, a))
        return out

    def _peering_problems(self) -> Iterable[tuple[str, str]]:
        """Sessions given by ``peers``: both ends list each other (a BGP session needs a
        neighbor on each side), and a route reflector client is an iBGP peer whose own
        entry for the reflector does not claim the reverse."""
        by_name = {h.name: h for h in self.hosts}
        specs: dict[tuple[str, str], PeerConfig] = {}
        for h in self.hosts:
            for p in h.peers or ():
                given = p if isinstance(p, PeerConfig) else PeerConfig(host=p)
                if given.host in by_name and given.host != h.name:
                    specs[(h.name, given.host)] = given
        for i, h in enumerate(self.hosts):
            for j, p in enumerate(h.peers or ()):
                spec = specs.get((h.name, p if isinstance(p, str) else p.host))
                if spec is None:
                    continue
                other = by_name[spec.host]
                key = f"hosts[{i}].peers[{j}]"
                if other.peers is not None and (other.name, h.name) not in specs:
                    yield key, (f"host {other.name!r} does not list {h.name!r} in its peers "
                                "(a BGP session needs a neighbor at both ends)")
                mine, theirs = self.asn_of(h), self.asn_of(other)
                if spec.ebgp_multihop is not None and mine == theirs:
                    yield f"{key}.ebgp_multihop", (
                        f"{other.name!r} is in AS {mine} like {h.name!r}: ebgp_multihop applies to eBGP only")
                if not spec.route_reflector_client:
                    continue
                if mine != theirs:
                    yield f"{key}.route_reflector_client", (
                        f"{other.name!r} is in AS {theirs} and {h.name!r} in AS {mine}: a route "
                        "reflector's clients are iBGP peers of its own AS")
                back = specs.get((other.name, h.name))
                if back is not None and back.route_reflector_client:
                    yield f"{key}.route_reflector_client", (
                        f"{other.name!r} also has {h.name!r} as its route reflector client: only "
                        "the reflector's side of a session says so")

    # -- lookups ---------------------------------------------------------

    def host(self, name: str) -> HostConfig:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def vpns(self) -> list[tuple[TenantConfig, VpnConfig]]:
        return [(t, v) for t in self.tenants for v in t.vpns]

    def vpn(self, name: str) -> VpnConfig:
        for _, v in self.vpns():
            if v.name == name:
                return v
        raise KeyError(name)

    def tenant_of(self, vpn_name: str) -> TenantConfig:
        for t, v in self.vpns():
            if v.name == vpn_name:
                return t
        raise KeyError(vpn_name)

    def vms_on(self, host: str) -> list[VmConfig]:
        return [vm for vm in self.vms if vm.host == host]


# -- loading -----------------------------------------------------------------


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise ValueError(
            f"prefix {prefix!r} must be 1-12 characters: lower-case letters and digits, "
            "starting with a letter (no '-')"
        )
    return prefix


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_KEYED_LINE = re.compile(r"^[\w\[\].]+: ")


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for e in err.errors():
        # drop pydantic's union / function tags from the location
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        if not loc and _KEYED_LINE.match(msg):
            # the topology's cross-reference check: one "key: message" per line
            for line in msg.splitlines():
                key, _, rest = line.partition(": ")
                problems.append((key, rest))
            continue
        problems.append((_key(loc) or "(top level)", msg))
    return problems


def _yaml_loader() -> type:
    """PyYAML's safe loader without YAML 1.1 base-60 numbers.

    YAML 1.1 reads an unquoted ``65000:1`` as the integer 3900001; route
    targets and RDs are written exactly like that, so such scalars must stay
    strings (as YAML 1.2 says).
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    sexagesimal = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
    resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        resolvers[first] = [
            (tag, rx) if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
            else (tag, _without_base60(rx, sexagesimal))
            for tag, rx in entries
        ]
    _Loader.yaml_implicit_resolvers = resolvers
    return _Loader


def _without_base60(rx: re.Pattern[str], base60: re.Pattern[str]) -> re.Pattern[str]:
    class _Rx:
        """A resolver pattern that refuses base-60 text, else defers to PyYAML's."""

        def match(self, text: str) -> Any:
            return None if base60.match(text) else rx.match(text)

    return _Rx()  # type: ignore[return-value]


def parse_topology(text: str, source: str = "<topology>") -> Topology:
    """A validated :class:`Topology` from YAML text; :class:`TopologyError` otherwise."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency of the lab
        raise TopologyError(source, [("(file)", "PyYAML is not installed: pip install pyyaml")]) from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise TopologyError(source, [("(file)", f"not valid YAML: {e}")]) from None
    if not isinstance(data, dict):
        raise TopologyError(source, [("(top level)", "expected a mapping with 'hosts', 'tenants', 'vms'")])
    try:
        return Topology.model_validate(data)
    except ValidationError as e:
        raise TopologyError(source, _problems(e)) from None


def load_topology(path: str | Path) -> Topology:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TopologyError(str(p), [("(file)", f"cannot read: {e.strerror}")]) from None
    return parse_topology(text, str(p))
