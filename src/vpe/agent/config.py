"""Agent configuration: a TOML file validated with pydantic.

An invalid file is refused at start with the file, the key and the reason,
one line per problem (``vpe.toml: vrfs.0.rd: ...``; :class:`ConfigError`,
exit 2), never a traceback. That covers the schema and the semantic checks
here (route targets and RDs of ``[[vrfs]]``, duplicate RDs, a leak onto
itself, a static route without next hop, ``api.tcp``, the socket path) and
the checks against the host done at start (:mod:`vpe.agent.preflight`).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..bgp.wire.constants import FAMILY_BY_NAME, Family, family_from_name
from ..dataplane import registry as dataplane_drivers
from ..dataplane.channel import load_key
from ..policy.book import PolicyBook
from ..policy.parse import parse_policy
from ..vpn.chains import ChainDef, ServiceDef, compile_chain
from ..vpn.errors import InvalidValue
from ..vpn.leaking import PrefixListEntry
from ..vpn.names import check_name, check_text
from ..vpn.rd_allocator import parse_rd
from ..vpn.route_target import parse_route_target

AddPathMode = Literal["receive", "send", "both"]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, key and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ip(value: str, what: str) -> str:
    """The address in its one canonical form: an IPv4-mapped IPv6 address
    (``::ffff:127.0.0.72``) is the IPv4 address it maps (``127.0.0.72``)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _vpn_check(check: object, value: object, field: str) -> object:
    """A :mod:`vpe.vpn` check inside a pydantic validator (pydantic names the key)."""
    try:
        return check(value, field)  # type: ignore[operator]
    except InvalidValue as e:
        raise ValueError(str(e).removeprefix(f"{field}: ")) from None


#: longest Unix socket path (sun_path is 108 octets with the terminating NUL)
UNIX_PATH_MAX = 107


def tcp_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); the host must be an IP address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, int(port)


def _check_families(names: list[str]) -> list[str]:
    """The full names of ``names`` (short names such as ``ipv4`` or ``mvpn`` are accepted)."""
    return [family_from_name(n).name for n in names]


class AddPathConfig(_Strict):
    """ADD-PATH (RFC 7911) per family: direction, and what to send."""

    family: str
    mode: AddPathMode = "both"
    #: what to send when sending: "best", "all", or a number N (best-N)
    send: Literal["best", "all"] | int = "all"

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        return _check_families([v])[0]


class NeighborConfig(_Strict):
    address: str
    remote_as: int | None = Field(default=None, ge=1, le=4294967295)
    port: int = Field(default=179, ge=1, le=65535)
    local_address: str | None = None
    passive: bool = False
    hold_time: int = Field(default=90, ge=0, le=65535)
    connect_retry: float = Field(default=5.0, gt=0, le=3600)
    families: list[str] = Field(default_factory=lambda: ["vpnv4", "vpnv6"])
    md5_password: str | None = Field(default=None, max_length=80)
    gtsm_hops: int | None = Field(default=None, ge=1, le=254)
    add_path: list[AddPathConfig] = Field(default_factory=list)
    route_reflector_client: bool = False
    graceful_restart: bool = True
    #: per-family limit of prefixes accepted from this neighbor (R13.4; counted in
    #: its Adj-RIB-In, every family on its own); None: no limit
    max_prefixes: int | None = Field(default=None, ge=1, le=2**32 - 1)
    #: past the limit: "teardown" (Cease / Maximum Number of Prefixes Reached,
    #: RFC 4486) or "warning" (log and report only)
    max_prefixes_action: Literal["teardown", "warning"] = "teardown"
    #: seconds a torn-down session stays down before it may come up again
    #: (0: until the agent restarts)
    max_prefixes_restart: float = Field(default=60.0, ge=0, le=86400)
    #: percent of the limit at which a warning is logged
    max_prefixes_threshold: int = Field(default=75, ge=1, le=100)
    description: str = ""
    #: names of ``[[policies]]`` applied to routes received from / sent to this neighbor
    import_policy: str | None = None
    export_policy: str | None = None
    #: times our own AS may appear in an AS_PATH received from this (eBGP) neighbor
    allowas_in: int = Field(default=0, ge=0, le=10)
    #: eBGP only: the TTL sent, for a neighbor that is not directly connected (RFC 4271
    #: eBGP sessions are sent with TTL 1 by default); not with ``gtsm_hops`` (TTL 255)
    ebgp_multihop: int | None = Field(default=None, ge=1, le=255)

    @model_validator(mode="after")
    def _multihop(self) -> NeighborConfig:
        if self.ebgp_multihop is not None and self.gtsm_hops is not None:
            raise ValueError(f"neighbor {self.address}: ebgp_multihop and gtsm_hops exclude each other "
                             "(GTSM sends with TTL 255 and checks the hops received)")
        return self

    @field_validator("description")
    @classmethod
    def _descr(cls, v: str) -> str:
        return str(_vpn_check(check_text, v, "description"))

    @field_validator("address", "local_address")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        return None if v is None else _check_ip(v, "address")

    @field_validator("families")
    @classmethod
    def _fams(cls, v: list[str]) -> list[str]:
        return _check_families(v)

    @field_validator("hold_time")
    @classmethod
    def _hold(cls, v: int) -> int:
        if v in (1, 2):
            raise ValueError("hold time must be 0 or at least 3 seconds (RFC 4271 section 4.2)")
        return v

    def family_set(self) -> frozenset[Family]:
        return frozenset(FAMILY_BY_NAME[f] for f in self.families)


#: the families a VRF's own neighbor (PE-CE BGP, Inter-AS option A) may carry
CE_FAMILIES = ("ipv4-unicast", "ipv6-unicast")


class VrfNeighborConfig(NeighborConfig):
    """A BGP neighbor of one VRF (PE-CE BGP; the other AS's ASBR in Inter-AS option A):
    IPv4/IPv6 unicast, its routes into the VRF, the VRF's routes to it (docs/inter-as.md)."""

    families: list[str] = Field(default_factory=lambda: list(CE_FAMILIES))
    graceful_restart: bool = False
    #: the next hop sent with IPv4 routes (default: this side's address of the session)
    next_hop: str | None = None
    #: the next hop sent with IPv6 routes (none: IPv6 routes go only over an IPv6 session)
    next_hop6: str | None = None
    #: how the session reaches the neighbor: "host", through this host's own network
    #: stack; or "port", through a port of the VRF (the neighbor sits behind it and peers
    #: with ``local_address``, a gateway address of the VRF; the forwarder carries the
    #: session, see vpe.agent.port_sessions and docs/inter-as.md)
    via: Literal["host", "port"] = "host"

    @model_validator(mode="after")
    def _via_port(self) -> VrfNeighborConfig:
        if self.via != "port":
            return self
        if self.local_address is None:
            raise ValueError(f"neighbor {self.address}: via = \"port\" needs local_address, the gateway "
                             "address of the VRF the neighbor peers with")
        if ipaddress.ip_address(self.local_address).version != ipaddress.ip_address(self.address).version:
            raise ValueError(f"neighbor {self.address}: local_address {self.local_address} is not of its "
                             "IP version")
        if self.local_address == self.address:
            raise ValueError(f"neighbor {self.address}: local_address is the neighbor's own address")
        if self.md5_password is not None:
            raise ValueError(f"neighbor {self.address}: md5_password cannot be used with via = \"port\" "
                             "(the forwarder rewrites the addresses TCP-MD5 signs)")
        return self

    @field_validator("families")
    @classmethod
    def _ce_fams(cls, v: list[str]) -> list[str]:
        v = _check_families(v)
        bad = [f for f in v if f not in CE_FAMILIES]
        if bad:
            raise ValueError(f"a VRF neighbor carries {' and '.join(CE_FAMILIES)} only, not {', '.join(bad)}")
        return v

    @field_validator("next_hop", "next_hop6")
    @classmethod
    def _nh_addr(cls, v: str | None) -> str | None:
        return None if v is None else _check_ip(v, "next hop")


class BgpConfig(_Strict):
    local_as: int = Field(ge=1, le=4294967295)
    router_id: str
    listen: list[str] = Field(default_factory=list)
    port: int = Field(default=179, ge=1, le=65535)
    cluster_id: str | None = None
    #: MinRouteAdvertisementInterval in seconds (0: advertise at once; changes
    #: are still batched per event-loop turn)
    mrai: float = Field(default=0.0, ge=0, le=600)
    #: RFC 8212: no route accepted from or sent to an eBGP neighbor without an
    #: import / export policy (false: eBGP neighbors without one take and get everything)
    ebgp_requires_policy: bool = True

    @field_validator("router_id", "cluster_id")
    @classmethod
    def _rid(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = _check_ip(v, "router id")
        if ipaddress.ip_address(v).version != 4 or v == "0.0.0.0":
            raise ValueError(f"{v!r} must be a non-zero IPv4 address")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        return [_check_ip(a, "listen address") for a in v]


class ApiConfig(_Strict):
    """The REST API's listeners: a Unix socket (mode 0600, or 0660 for ``socket_group``)
    and, optionally, TCP behind a bearer token, with TLS when a certificate is given."""

    socket: str = "/run/vpe/vpe.sock"
    #: group allowed to use the socket (mode 0660); unset: owner only (0600)
    socket_group: str | None = None
    tcp: str | None = None
    token: str | None = None
    #: PEM certificate (chain) and key of the TCP listener: HTTPS when set
    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("socket")
    @classmethod
    def _socket(cls, v: str) -> str:
        if not v or "\x00" in v:
            raise ValueError("not a usable path")
        n = len(v.encode())
        if n > UNIX_PATH_MAX:
            raise ValueError(f"{v!r} is {n} octets; a Unix socket path is at most {UNIX_PATH_MAX}")
        return v

    @field_validator("tcp")
    @classmethod
    def _tcp(cls, v: str | None) -> str | None:
        if v is not None:
            tcp_address(v)
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and (not v or not v.isascii() or not v.isprintable() or " " in v):
            raise ValueError("a bearer token is printable ASCII without spaces (it travels in a header)")
        return v

    @model_validator(mode="after")
    def _token_for_tcp(self) -> ApiConfig:
        if self.tcp and not self.token:
            raise ValueError("api.tcp is set but api.token is missing: a TCP API requires a bearer token")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("api.tls_cert and api.tls_key go together: give both or neither")
        if self.tls_cert is not None and not self.tcp:
            raise ValueError("api.tls_cert is set but api.tcp is not: TLS is for the TCP listener")
        return self


class BagpipeCompatConfig(_Strict):
    """bagpipe-bgp's REST API (attach_localport, detach_localport, ping, looking-glass) for
    networking-bagpipe's clients; no authentication, as bagpipe-bgp: keep it on loopback."""

    enabled: bool = False
    listen: str = "127.0.0.1:8082"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        tcp_address(v)
        return v


class StaticRouteConfig(_Strict):
    """A route originated in a VRF: a subnet/aggregate (``next_hop`` unset) or a static route."""

    prefix: str
    next_hop: str | None = None
    kind: Literal["subnet", "aggregate", "static", "host"] = "subnet"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v, strict=True))
        except ValueError as e:
            raise ValueError(f"prefix {v!r}: {e}") from None

    @field_validator("next_hop")
    @classmethod
    def _nh(cls, v: str | None) -> str | None:
        return None if v is None else _check_ip(v, "next hop")

    @model_validator(mode="after")
    def _static_needs_next_hop(self) -> StaticRouteConfig:
        if self.kind == "static" and self.next_hop is None:
            raise ValueError(f"route {self.prefix}: kind 'static' needs next_hop")
        return self


class AggregateConfig(_Strict):
    """An aggregate a VRF advertises (R10.3): this vPE's next hop, the VRF's aggregate label
    (an IP lookup in the VRF); ``summary_only`` withholds the local routes it covers."""

    prefix: str
    summary_only: bool = False

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v, strict=True))
        except ValueError as e:
            raise ValueError(f"prefix {v!r}: {e}") from None


class VrfServiceConfig(_Strict):
    """A service instance's VRF (docs/service-chains.md; bagpipe-bgp's attract-to-rt and
    readv-from-rt): ``attract`` prefixes and every VPN route carrying one of
    ``readv_from_rts`` are advertised via ``address`` with the VRF's export RTs."""

    address: str
    attract: list[str] = Field(default_factory=list)
    readv_from_rts: list[str] = Field(default_factory=list)
    readv_exclude: list[str] = Field(default_factory=list)

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str) -> str:
        return _check_ip(v, "service address")

    @field_validator("attract", "readv_exclude")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            try:
                out.append(str(ipaddress.ip_network(p, strict=True)))
            except ValueError as e:
                raise ValueError(f"prefix {p!r}: {e}") from None
        return out

    @field_validator("readv_from_rts")
    @classmethod
    def _rts(cls, v: list[str]) -> list[str]:
        for rt in v:
            _vpn_check(parse_route_target, rt, "route target")
        return v


class VrfConfig(_Strict):
    """A VPN instance (VRF) of this vPE; RTs in any of the three formats."""

    name: str
    rd: str = "auto"
    import_rts: list[str] = Field(default_factory=list)
    export_rts: list[str] = Field(default_factory=list)
    route_targets: list[str] = Field(default_factory=list)
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] = "per-vrf"
    multipath: int = Field(default=1, ge=1, le=512)
    #: how the forwarders spread flows over a multipath set (R12.2)
    ecmp: Literal["per-flow", "per-packet", "per-prefix"] = "per-flow"
    routes: list[StaticRouteConfig] = Field(default_factory=list)
    aggregates: list[AggregateConfig] = Field(default_factory=list)
    #: names of ``[[policies]]`` on what this VRF imports / exports (docs/policy.md)
    import_policy: str | None = None
    export_policy: str | None = None
    #: BGP neighbors of this VRF (PE-CE BGP, Inter-AS option A; docs/inter-as.md)
    neighbors: list[VrfNeighborConfig] = Field(default_factory=list)
    #: a service instance's VRF: attraction and re-advertisement (docs/service-chains.md)
    service: VrfServiceConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_vpn_check(check_name, v, "name"))

    @field_validator("rd")
    @classmethod
    def _rd(cls, v: str) -> str:
        if v != "auto":
            _vpn_check(parse_rd, v, "rd")
        return v

    @field_validator("import_rts", "export_rts", "route_targets")
    @classmethod
    def _rts(cls, v: list[str]) -> list[str]:
        for rt in v:
            _vpn_check(parse_route_target, rt, "route target")
        return v

    @model_validator(mode="after")
    def _some_rt(self) -> VrfConfig:
        if not (self.import_rts or self.export_rts or self.route_targets):
            raise ValueError(f"vrf {self.name!r} has no route target: give route_targets, "
                             "import_rts or export_rts (the API refuses such a VPN instance too)")
        return self


class LeakConfig(_Strict):
    """Route leaking between two VRFs of a tenant under a policy (R4.2)."""

    name: str
    source: str
    destination: str
    #: prefix-list entries "PREFIX [ge N] [le M]"; absent: every prefix
    prefixes: list[str] | None = None
    #: leak only entries carrying one of these RTs; absent: any
    route_targets: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_vpn_check(check_name, v, "name"))

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str] | None) -> list[str] | None:
        for p in v or ():
            try:
                PrefixListEntry.parse(p)
            except ValueError as e:
                raise ValueError(f"{p!r}: {e}") from None
        return v

    @field_validator("route_targets")
    @classmethod
    def _rts(cls, v: list[str] | None) -> list[str] | None:
        for rt in v or ():
            _vpn_check(parse_route_target, rt, "route target")
        return v

    @model_validator(mode="after")
    def _not_onto_itself(self) -> LeakConfig:
        if self.source == self.destination:
            raise ValueError(f"leak {self.name!r} has source and destination {self.source!r}: "
                             "a VRF cannot leak onto itself")
        return self


Encapsulation = Literal["mpls-in-udp", "mpls-in-gre"]
_DEFAULT_ENCAPS: tuple[Encapsulation, ...] = ("mpls-in-udp", "mpls-in-gre")


class ForwarderConfig(_Strict):
    """One of several forwarders this agent programs (R2.4), each a vPE of its own in the
    dataplane: its FIB channel and its underlay address (the next hop of its ports' routes)."""

    name: str
    fib_socket: str
    underlay_address: str
    fib_key_file: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_vpn_check(check_name, v, "name"))

    @field_validator("fib_socket")
    @classmethod
    def _fib(cls, v: str) -> str:
        return DataplaneConfig._fib(v)

    @field_validator("underlay_address")
    @classmethod
    def _ua(cls, v: str) -> str:
        return _check_ip(v, "underlay address")

    @field_validator("fib_key_file")
    @classmethod
    def _key_file(cls, v: str | None) -> str | None:
        if v is not None:
            load_key(v)
        return v

    @model_validator(mode="after")
    def _tcp_needs_key(self) -> ForwarderConfig:
        if self.fib_socket.startswith("tcp:") and self.fib_key_file is None:
            raise ValueError(f"forwarder {self.name!r}: fib_socket is a TCP address but fib_key_file is "
                             "missing: the FIB channel over TCP must be authenticated")
        return self


class DataplaneConfig(_Strict):
    """How this vPE forwards: ``none`` (a pure route reflector/controller) or a forwarder
    driver from the dataplane registry ("userspace", ...), programmed over the FIB channel."""

    driver: str = dataplane_drivers.NONE
    #: underlay address of this vPE: the next hop of exported routes (default: router id)
    underlay_address: str | None = None
    encapsulations: list[Encapsulation] = Field(default_factory=lambda: list(_DEFAULT_ENCAPS))
    #: FIB channel of the forwarder process: a Unix socket path, or
    #: "tcp:HOST:PORT" for a forwarder on another host (R2.4)
    fib_socket: str = "/run/vpe/fib.sock"
    #: the MAC every VM sees as its router: the same on every host (an anycast gateway
    #: MAC), so a VM that moves keeps a right ARP cache (R9.2, docs/mobility.md)
    gateway_mac: str = "02:00:5e:00:00:01"

    @field_validator("gateway_mac")
    @classmethod
    def _gw_mac(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", v):
            raise ValueError(f"{v!r} is not a MAC address (like 02:00:5e:00:00:01)")
        if int(v[:2], 16) & 1:
            raise ValueError(f"{v!r} is a multicast MAC; a gateway MAC must be unicast")
        return v.lower()

    #: file holding the FIB channel key (mode 0600, at least 16 octets; the
    #: forwarder's ``--key-file``): both ends prove they hold it. Required
    #: with a ``tcp:`` fib_socket.
    fib_key_file: str | None = None
    #: seconds between FIB channel keepalives; a forwarder silent for three
    #: intervals is taken for lost and resynchronised when it answers again
    fib_keepalive: float = Field(default=0.2, ge=0.05, le=10.0)
    #: where the agent sees VRF neighbors reached through ports (``via = "port"``): the
    #: first address is the agent's end, the others are mapped to the neighbors, on the
    #: forwarder's local interface (vpe.agent.port_sessions); addresses of no other use
    session_prefix: str = "169.254.179.0/24"
    session_prefix6: str = "fd00:0:0:179::/64"

    @field_validator("session_prefix", "session_prefix6")
    @classmethod
    def _session_prefix(cls, v: str, info: Any) -> str:
        version = 6 if info.field_name.endswith("6") else 4
        try:
            net = ipaddress.ip_network(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP prefix (like "
                             f"{'fd00:0:0:179::/64' if version == 6 else '169.254.179.0/24'})") from None
        if net.version != version:
            raise ValueError(f"{v} is not an IPv{version} prefix")
        if net.num_addresses < 4:
            raise ValueError(f"{v} is too small: it needs room for the agent and a neighbor")
        return str(net)

    #: several forwarders programmed by this agent (R2.4, docs/external-pe.md); when given,
    #: ``fib_socket`` is not used and ports name their forwarder (the first by default)
    forwarders: list[ForwarderConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _forwarders(self) -> DataplaneConfig:
        names = [f.name for f in self.forwarders]
        addrs = [ipaddress.ip_address(f.underlay_address) for f in self.forwarders]
        for what, vals in (("name", names), ("underlay_address", addrs)):
            dup = sorted({str(v) for v in vals if vals.count(v) > 1})  # type: ignore[arg-type]
            if dup:
                raise ValueError(f"forwarders: {what} {', '.join(dup)} given twice; each forwarder is a "
                                 "vPE of its own")
        if self.forwarders and self.driver == dataplane_drivers.NONE:
            raise ValueError("forwarders are listed but driver is 'none': name the forwarders' driver")
        return self

    @field_validator("fib_key_file")
    @classmethod
    def _key_file(cls, v: str | None) -> str | None:
        if v is not None:
            load_key(v)  # readable, private, long enough: else ValueError naming the file
        return v

    @model_validator(mode="after")
    def _tcp_needs_key(self) -> DataplaneConfig:
        if self.fib_socket.startswith("tcp:") and self.fib_key_file is None:
            raise ValueError(
                "fib_socket is a TCP address but fib_key_file is missing: the FIB channel "
                "over TCP must be authenticated"
            )
        return self

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str) -> str:
        try:
            dataplane_drivers.get(v)
        except dataplane_drivers.UnknownDriver as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("fib_socket")
    @classmethod
    def _fib(cls, v: str) -> str:
        if v.startswith("tcp:"):
            host, _, port = v[4:].rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{v!r}: expected tcp:HOST:PORT")
            _check_ip(host.strip("[]"), "fib_socket host")
        return v

    @field_validator("underlay_address")
    @classmethod
    def _ua(cls, v: str | None) -> str | None:
        return None if v is None else _check_ip(v, "underlay address")



def _unique_named(v: list[dict[str, Any]], section: str, noun: str,
                  parse: Callable[[dict[str, Any], str], Any]) -> list[dict[str, Any]]:
    """Check each table of ``[[section]]`` with ``parse`` (its error names the table) and
    that no two share a name."""
    names: set[str] = set()
    for i, d in enumerate(v):
        try:
            item = parse(d, f"{section}[{i}]")
        except ValueError as e:  # PolicyError is one too
            raise ValueError(str(e)) from None
        if item.name in names:
            raise ValueError(f"{section}[{i}].name: {item.name!r} names two {noun}")
        names.add(item.name)
    return v

class AgentConfig(_Strict):
    bgp: BgpConfig
    neighbors: list[NeighborConfig] = Field(default_factory=list)
    vrfs: list[VrfConfig] = Field(default_factory=list)
    leaks: list[LeakConfig] = Field(default_factory=list)
    api: ApiConfig = Field(default_factory=ApiConfig)
    bagpipe_compat: BagpipeCompatConfig = Field(default_factory=BagpipeCompatConfig)
    dataplane: DataplaneConfig = Field(default_factory=DataplaneConfig)
    state_dir: str = "/var/lib/vpe"
    #: routing policies (see docs/policy.md), named by neighbors' import_policy/export_policy
    policies: list[dict[str, Any]] = Field(default_factory=list)
    #: services and service chains (docs/service-chains.md)
    services: list[dict[str, Any]] = Field(default_factory=list)
    chains: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_named(v, "services", "services", ServiceDef.parse)

    @field_validator("chains")
    @classmethod
    def _chains(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_named(v, "chains", "chains", ChainDef.parse)

    @field_validator("policies")
    @classmethod
    def _policies(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_named(v, "policies", "policies", parse_policy)

    def policy_book(self) -> PolicyBook:
        """The configured policies and the neighbors' bindings, as a :class:`PolicyBook`."""
        book = PolicyBook()
        book.load(
            self.policies,
            [
                {"address": n.address, "import_policy": n.import_policy, "export_policy": n.export_policy}
                for n in [*self.neighbors, *(m for v in self.vrfs for m in v.neighbors)]
                if n.import_policy or n.export_policy
            ],
        )
        return book


def semantic_errors(cfg: AgentConfig) -> list[tuple[str, str]]:
    """(key, reason) of every cross-entry problem: duplicates, dangling leaks, shared RDs."""
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    in_vrf: set[tuple[str, str]] = set()
    for i, v in enumerate(cfg.vrfs):
        for j, vn in enumerate(v.neighbors):
            where = f"vrfs.{i}.neighbors.{j}"
            if vn.via == "port":  # an address of the VRF: VRFs may overlap, one VRF may not
                if (v.name, vn.address) in in_vrf:
                    out.append((f"{where}.address", f"neighbor {vn.address} is configured twice in VRF {v.name}"))
                in_vrf.add((v.name, vn.address))
                if cfg.dataplane.driver == "none" and not cfg.dataplane.forwarders:
                    out.append((f"{where}.via", f"neighbor {vn.address}: via = \"port\" needs a forwarder "
                                                "(dataplane.driver is \"none\")"))
            elif vn.address in seen or any(vn.address == m.address for m in cfg.neighbors):
                out.append((f"{where}.address", f"neighbor {vn.address} is configured twice "
                                                 "(one speaker serves every neighbor, VRF or not)"))
            if vn.via != "port":
                seen.setdefault(vn.address, -1)
            if vn.remote_as == cfg.bgp.local_as and vn.ebgp_multihop:
                out.append((f"{where}.ebgp_multihop", f"neighbor {vn.address} is iBGP: ebgp_multihop "
                                                      "applies to eBGP only"))
    seen = {k: v for k, v in seen.items() if v >= 0}
    for i, n in enumerate(cfg.neighbors):
        if n.address in seen:
            out.append((f"neighbors.{i}.address",
                        f"neighbor {n.address} is configured twice (also neighbors.{seen[n.address]})"))
        seen.setdefault(n.address, i)
        if n.remote_as == cfg.bgp.local_as:
            for key in ("ebgp_multihop", "allowas_in"):
                if getattr(n, key):
                    out.append((f"neighbors.{i}.{key}", f"neighbor {n.address} is iBGP (remote_as "
                                                         f"{n.remote_as} is our AS): {key} applies to eBGP only"))
    names: dict[str, int] = {}
    rds: dict[object, tuple[int, str]] = {}
    for i, v in enumerate(cfg.vrfs):
        if v.name in names:
            out.append((f"vrfs.{i}.name", f"vrf {v.name!r} is configured twice (also vrfs.{names[v.name]})"))
        names.setdefault(v.name, i)
        if v.rd != "auto":
            rd = parse_rd(v.rd)
            if rd in rds:
                j, other = rds[rd]
                out.append((f"vrfs.{i}.rd", f"RD {v.rd} of vrf {v.name!r} is also the RD of vrf {other!r} "
                                           f"(vrfs.{j}.rd); every VRF needs its own RD"))
            rds.setdefault(rd, (i, v.name))
    for i, leak in enumerate(cfg.leaks):
        for key, end in (("source", leak.source), ("destination", leak.destination)):
            if end not in names:
                out.append((f"leaks.{i}.{key}", f"leak {leak.name!r}: no vrf {end!r} in this configuration"))
    policies = {d["name"] for d in cfg.policies}
    users = [(f"neighbors.{i}", f"neighbor {n.address}", n.import_policy, n.export_policy)
             for i, n in enumerate(cfg.neighbors)]
    users += [(f"vrfs.{i}", f"vrf {v.name!r}", v.import_policy, v.export_policy) for i, v in enumerate(cfg.vrfs)]
    users += [(f"vrfs.{i}.neighbors.{j}", f"neighbor {n.address}", n.import_policy, n.export_policy)
              for i, v in enumerate(cfg.vrfs) for j, n in enumerate(v.neighbors)]
    for where, who, imp, exp in users:
        for key, ref in (("import_policy", imp), ("export_policy", exp)):
            if ref is not None and ref not in policies:
                out.append((f"{where}.{key}", f"{who} {key}: no policy named {ref!r} in this configuration"))
    vrfs = {v.name: (v.import_rts + v.route_targets, v.export_rts + v.route_targets) for v in cfg.vrfs}
    services = {d["name"]: ServiceDef.parse(d) for d in cfg.services}
    for i, d in enumerate(cfg.chains):
        try:
            compile_chain(ChainDef.parse(d, f"chains[{i}]"), services, vrfs)
        except ValueError as e:
            field, sep, why = str(e.args[0] if e.args else e).partition(": ")
            out.append((f"chains.{i}.{field}", why) if sep and " " not in field else (f"chains.{i}", str(e)))
    return out


def _format_errors(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, path: str = "<config>") -> AgentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(path, e)) from None
    problems = semantic_errors(cfg)
    if problems:
        raise ConfigError("\n".join(f"{path}: {key}: {why}" for key, why in problems))
    return cfg


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    return parse_config(text, str(p))
