"""Agent configuration: a TOML file validated with pydantic.

An invalid file is refused at start with the file, the key and the reason
(:class:`ConfigError`), never a traceback.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..bgp.wire.constants import FAMILY_BY_NAME, Family, family_from_name
from ..dataplane import registry as dataplane_drivers
from ..policy.book import PolicyBook
from ..policy.errors import PolicyError
from ..policy.parse import parse_policy

AddPathMode = Literal["receive", "send", "both"]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, key and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IP address") from None


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
    max_prefixes: int | None = Field(default=None, ge=1)
    description: str = ""
    #: names of ``[[policies]]`` applied to routes received from / sent to this neighbor
    import_policy: str | None = None
    export_policy: str | None = None

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


class BgpConfig(_Strict):
    local_as: int = Field(ge=1, le=4294967295)
    router_id: str
    listen: list[str] = Field(default_factory=list)
    port: int = Field(default=179, ge=1, le=65535)
    cluster_id: str | None = None
    #: MinRouteAdvertisementInterval in seconds (0: advertise at once; changes
    #: are still batched per event-loop turn)
    mrai: float = Field(default=0.0, ge=0, le=600)

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
    socket: str = "/run/vpe/vpe.sock"
    tcp: str | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _token_for_tcp(self) -> ApiConfig:
        if self.tcp and not self.token:
            raise ValueError("api.tcp is set but api.token is missing: a TCP API requires a bearer token")
        return self


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


class VrfConfig(_Strict):
    """A VPN instance (VRF) of this vPE; RTs in any of the three formats."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    rd: str = "auto"
    import_rts: list[str] = Field(default_factory=list)
    export_rts: list[str] = Field(default_factory=list)
    route_targets: list[str] = Field(default_factory=list)
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] = "per-vrf"
    multipath: int = Field(default=1, ge=1, le=64)
    routes: list[StaticRouteConfig] = Field(default_factory=list)
    #: names of ``[[policies]]`` on what this VRF imports / exports (docs/policy.md)
    import_policy: str | None = None
    export_policy: str | None = None


class LeakConfig(_Strict):
    """Route leaking between two VRFs of a tenant under a policy (R4.2)."""

    name: str = Field(min_length=1, max_length=64)
    source: str
    destination: str
    #: prefix-list entries "PREFIX [ge N] [le M]"; absent: every prefix
    prefixes: list[str] | None = None
    #: leak only entries carrying one of these RTs; absent: any
    route_targets: list[str] | None = None


Encapsulation = Literal["mpls-in-udp", "mpls-in-gre"]
_DEFAULT_ENCAPS: tuple[Encapsulation, ...] = ("mpls-in-udp", "mpls-in-gre")


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


class AgentConfig(_Strict):
    bgp: BgpConfig
    neighbors: list[NeighborConfig] = Field(default_factory=list)
    vrfs: list[VrfConfig] = Field(default_factory=list)
    leaks: list[LeakConfig] = Field(default_factory=list)
    api: ApiConfig = Field(default_factory=ApiConfig)
    dataplane: DataplaneConfig = Field(default_factory=DataplaneConfig)
    state_dir: str = "/var/lib/vpe"
    #: routing policies (see docs/policy.md), named by neighbors' import_policy/export_policy
    policies: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("policies")
    @classmethod
    def _policies(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names: set[str] = set()
        for i, d in enumerate(v):
            try:
                p = parse_policy(d, f"policies[{i}]")
            except PolicyError as e:
                raise ValueError(str(e)) from None
            if p.name in names:
                raise ValueError(f"policies[{i}].name: {p.name!r} names two policies")
            names.add(p.name)
        return v

    @model_validator(mode="after")
    def _policy_references(self) -> AgentConfig:
        names = {d["name"] for d in self.policies}
        for n in self.neighbors:
            for key in ("import_policy", "export_policy"):
                ref = getattr(n, key)
                if ref is not None and ref not in names:
                    raise ValueError(f"neighbor {n.address} {key}: no policy named {ref!r} in this configuration")
        for v in self.vrfs:
            for key in ("import_policy", "export_policy"):
                ref = getattr(v, key)
                if ref is not None and ref not in names:
                    raise ValueError(f"vrf {v.name!r} {key}: no policy named {ref!r} in this configuration")
        return self

    def policy_book(self) -> PolicyBook:
        """The configured policies and the neighbors' bindings, as a :class:`PolicyBook`."""
        book = PolicyBook()
        book.load(
            self.policies,
            [
                {"address": n.address, "import_policy": n.import_policy, "export_policy": n.export_policy}
                for n in self.neighbors
                if n.import_policy or n.export_policy
            ],
        )
        return book

    @model_validator(mode="after")
    def _unique_neighbors(self) -> AgentConfig:
        seen: set[str] = set()
        for n in self.neighbors:
            if n.address in seen:
                raise ValueError(f"neighbor {n.address} is configured twice")
            seen.add(n.address)
        names: set[str] = set()
        for v in self.vrfs:
            if v.name in names:
                raise ValueError(f"vrf {v.name!r} is configured twice")
            names.add(v.name)
        for leak in self.leaks:
            for end in (leak.source, leak.destination):
                if end not in names:
                    raise ValueError(f"leak {leak.name!r}: no vrf {end!r} in this configuration")
        return self


def _format_errors(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, path: str = "<config>") -> AgentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(path, e)) from None


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    return parse_config(text, str(p))
