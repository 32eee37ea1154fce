"""The API's request models: what a client may send, validated with pydantic.

A model only validates and translates: :meth:`PortAttach.attachment` builds
the one :class:`~vpe.vpn.attachments.Attachment` value the rest of the agent
knows; nothing here holds state.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..vpn.attachments import Attachment, AttachmentState
from ..vpn.errors import InvalidValue
from ..vpn.names import check_ifname, check_name, check_text

#: most route targets one list of a request may hold (``import_rts``, ``export_rts``, ``route_targets``)
MAX_RTS = 256
#: most addresses of one port (``ips``), gateways, and allowed source prefixes
MAX_IPS = 64
MAX_GATEWAYS = 16
MAX_ALLOWED_PAIRS = 256


def _rule(check: Any, value: Any, field: str, *args: Any) -> Any:
    """Run a :mod:`vpe.vpn.names` check for pydantic (which names the field itself)."""
    try:
        return check(value, field, *args)
    except InvalidValue as e:
        raise ValueError(str(e).removeprefix(f"{field}: ")) from None


def _unicast_mac(v: str) -> str:
    first = int(v[:2], 16)
    if first & 1:
        raise ValueError(f"{v} is a multicast or broadcast MAC; a VM's MAC must be unicast")
    if int(v.replace(":", ""), 16) == 0:
        raise ValueError(f"{v} is the all-zeros MAC; a VM's MAC must be a unicast address")
    return v.lower()


#: shortest prefix a VM address may carry: with ``advertise: subnet`` the subnet becomes a VPN route
MIN_PREFIXLEN = {4: 8, 6: 16}


def _unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` cannot be a VM's (unicast) address, or None when it can."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return "the broadcast address"
        if ip in ipaddress.IPv4Network("240.0.0.0/4"):
            return "a reserved (class E) address"
        if ip in ipaddress.IPv4Network("0.0.0.0/8"):
            return "an address of 0.0.0.0/8 (this network)"
    elif ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address"
    return None


def vm_address(text: str) -> str:
    """A VM's address with prefix length: a unicast host address of its subnet, normalised."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an address with prefix length") from None
    why = _unicast(iface.ip)
    if why:
        raise ValueError(f"{text!r}: {iface.ip} is {why}; a VM address must be unicast")
    net = iface.network
    low = MIN_PREFIXLEN[iface.version]
    if net.prefixlen < low:
        raise ValueError(f"{text!r}: prefix length /{net.prefixlen} is shorter than /{low}; a VM's "
                         f"subnet is /{low} to /{iface.max_prefixlen}")
    if iface.version == 4 and net.prefixlen <= 30 and iface.ip in (net.network_address, net.broadcast_address):
        what = "network" if iface.ip == net.network_address else "broadcast"
        raise ValueError(f"{text!r}: {iface.ip} is the {what} address of {net}, not a host address")
    if iface.version == 6 and net.prefixlen <= 126 and iface.ip == net.network_address:
        raise ValueError(f"{text!r}: {iface.ip} is the subnet-router anycast address of {net}, "
                         "not a host address")
    return str(iface)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceVrf(_Model):
    """A service instance's VRF (bagpipe-bgp's attract-to-rt and readv-from-rt):
    ``attract`` prefixes and every route carrying one of ``readv_from_rts`` are
    advertised via ``address`` (the instance's port) with the VRF's export RTs."""

    address: str = Field(description="the service instance's address in the VRF (its port's)")
    attract: list[str] = Field(default_factory=list, max_length=MAX_RTS)
    readv_from_rts: list[str] = Field(default_factory=list, max_length=MAX_RTS)
    readv_exclude: list[str] = Field(default_factory=list, max_length=MAX_RTS)


class ServiceRoleModel(_Model):
    """A port attached as one side of a service instance in a chain (docs/service-chains.md)."""

    chain: str
    service: str
    side: Literal["inside", "outside"]
    pool: str | None = Field(default=None, description="NAT services: the pool slice this instance owns")

    @field_validator("chain", "service")
    @classmethod
    def _names(cls, v: str, info: ValidationInfo) -> str:
        return str(_rule(check_name, v, info.field_name or "name"))


class VpnCreate(_Model):
    name: str = Field(description="a name: 1..64 of A-Z a-z 0-9 _ . -, beginning with a letter or digit")
    rd: str = Field(default="auto", max_length=64)
    import_rts: list[str] = Field(default_factory=list, max_length=MAX_RTS)
    export_rts: list[str] = Field(default_factory=list, max_length=MAX_RTS)
    route_targets: list[str] = Field(default_factory=list, max_length=MAX_RTS, description="imported and exported")
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] = "per-vrf"
    multipath: int = Field(default=1, ge=1, le=64)
    description: str = Field(default="", description="free text, max 256 (bagpipe: instance_description)")
    service: ServiceVrf | None = Field(default=None, description="a service instance's VRF: attraction and "
                                       "re-advertisement (docs/service-chains.md)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_rule(check_name, v, "name"))

    @field_validator("description")
    @classmethod
    def _text(cls, v: str) -> str:
        return str(_rule(check_text, v, "description"))


class PortRelease(_Model):
    """``POST /v1/ports/{name}/release``: the VM left this host (docs/mobility.md)."""

    hold: float | None = Field(
        default=30.0, ge=0, le=86400,
        description="seconds the redirect (local repair) is kept once the withdrawal is sent; "
                    "null: until DELETE /v1/ports/{name}")


class VpnUpdate(_Model):
    rd: str | None = Field(default=None, max_length=64)
    import_rts: list[str] | None = Field(default=None, max_length=MAX_RTS)
    export_rts: list[str] | None = Field(default=None, max_length=MAX_RTS)
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] | None = None
    multipath: int | None = Field(default=None, ge=1, le=64)
    description: str | None = None
    service: ServiceVrf | None = None

    @field_validator("description")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else str(_rule(check_text, v, "description"))


class PortAttach(_Model):
    """An endpoint to attach; mirrors bagpipe-bgp's attach_localport (see docs/api.md)."""

    name: str = Field(description="port id (bagpipe: local_port / port id); the name rule")
    ifname: str = Field(description="host-side interface of the VM: 1..15 octets, the name rule's characters")
    vpn: str = Field(default="", description="VRF name (bagpipe: vpn_instance_id); "
                                             "not needed with a service role")
    mac: str = Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", description="the VM's unicast MAC")
    ips: list[str] = Field(min_length=1, max_length=MAX_IPS,
                           description="the VM's unicast addresses with prefix length")
    gateways: list[str] = Field(default_factory=list, max_length=MAX_GATEWAYS,
                                description="gateway IPs the vPE answers for")
    allowed_pairs: list[str] = Field(default_factory=list, max_length=MAX_ALLOWED_PAIRS,
                                     description="extra source prefixes")
    advertise: Literal["host", "subnet"] = "host"
    direction: Literal["both", "to-port", "from-port"] = Field(
        default="both",
        description="both / to-port: the addresses are routes of the VRF and advertised; "
                    "from-port: the port only sends, its addresses are neither routes nor advertised",
    )
    local_pref: int | None = Field(default=None, ge=0, le=0xFFFFFFFF,
                                   description="LOCAL_PREF of the port's exported routes (default 100)")
    description: str = Field(default="", description="free text about the port (max 256)")
    state: Literal["active", "standby"] = Field(
        default="active",
        description="standby: prepare a move here (routes advertised with a higher mobility "
                    "sequence number, port not taken until POST /v1/ports/{name}/activate); "
                    "docs/mobility.md")
    sequence: int = Field(default=0, ge=0, le=0xFFFFFFFF,
                          description="mobility sequence number (0: chosen by the vPE)")
    vpn_type: str = Field(default="ipvpn", max_length=16, description="only 'ipvpn' (bagpipe: vpn_type)")
    import_rts: list[str] | None = Field(
        default=None, max_length=MAX_RTS,
        description="bagpipe: import_rt; creates the VPN instance if it does not exist, "
                    "else must equal its import RTs")
    export_rts: list[str] | None = Field(
        default=None, max_length=MAX_RTS,
        description="bagpipe: export_rt; creates the VPN instance if it does not exist, "
                    "else must equal its export RTs")
    service: ServiceRoleModel | None = Field(
        default=None, description="attach as a service instance's inside/outside port in a chain; "
                                  "its VRF (CHAIN.PORT) is made from the chain (vpn is then ignored)")
    vpn_description: str = Field(default="",
                                 description="description of a VPN instance created by this attach "
                                             "(bagpipe: instance_description)")

    @field_validator("name")
    @classmethod
    def _names(cls, v: str, info: ValidationInfo) -> str:
        return str(_rule(check_name, v, info.field_name or "name"))

    @field_validator("vpn")
    @classmethod
    def _vpn(cls, v: str) -> str:
        return v if v == "" else str(_rule(check_name, v, "vpn"))

    @model_validator(mode="after")
    def _vpn_or_service(self) -> PortAttach:
        if not self.vpn and self.service is None:
            raise ValueError("vpn: missing; a port is attached to a VPN instance (or, with service, "
                             "as a service instance of a chain)")
        return self

    @field_validator("ifname")
    @classmethod
    def _ifname(cls, v: str) -> str:
        return str(_rule(check_ifname, v, "ifname"))

    @field_validator("description", "vpn_description")
    @classmethod
    def _texts(cls, v: str, info: ValidationInfo) -> str:
        return str(_rule(check_text, v, info.field_name or "description"))

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        return _unicast_mac(v)

    def attachment(self) -> Attachment:
        """The attachment this request asks for."""
        return Attachment(
            name=self.name, ifname=self.ifname, vrf=self.vpn, mac=self.mac.lower(),
            ips=tuple(self.ips), gateways=tuple(self.gateways),
            allowed_pairs=tuple(self.allowed_pairs), advertise=self.advertise,
            direction=self.direction, local_pref=self.local_pref, description=self.description,
            state=AttachmentState(self.state), sequence=self.sequence,
        )

    @field_validator("vpn_type")
    @classmethod
    def _vpn_type(cls, v: str) -> str:
        if v == "ipvpn":
            return v
        if v == "evpn":
            raise ValueError("evpn is not supported: vpe is a BGP/MPLS IP VPN (RFC 4364) PE, "
                             "it has no E-VPN (RFC 7432) instances; use 'ipvpn'")
        raise ValueError(f"unknown VPN type {v!r}: only 'ipvpn' is supported")

    def vpn_spec(self) -> dict[str, Any] | None:
        """The VPN instance to create (or check) with the port, when RTs were given."""
        if self.import_rts is None and self.export_rts is None:
            return None
        spec: dict[str, Any] = {"description": self.vpn_description}
        if self.import_rts is not None:
            spec["import_rts"] = self.import_rts
        if self.export_rts is not None:
            spec["export_rts"] = self.export_rts
        return spec

    @field_validator("ips")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        seen: set[Any] = set()
        out = []
        for text in v:
            iface = ipaddress.ip_interface(vm_address(text))
            if iface.ip in seen:
                raise ValueError(f"address {iface.ip} is given twice")
            seen.add(iface.ip)
            out.append(str(iface))
        return out

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        out = []
        for g in v:
            try:
                ip = ipaddress.ip_address(g)
            except ValueError as e:
                raise ValueError(f"not an IP address: {e}") from None
            why = _unicast(ip)
            if why and not ip.is_link_local:  # fe80::1 is the usual IPv6 gateway
                raise ValueError(f"{g!r} is {why}; a gateway must be a unicast address")
            out.append(str(ip))
        return out

    @field_validator("allowed_pairs")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(p, strict=False)) for p in v]
        except ValueError as e:
            raise ValueError(f"not an IP prefix: {e}") from None
