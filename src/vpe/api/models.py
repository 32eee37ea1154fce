"""The API's request models: what a client may send, validated with pydantic.

A model only validates and translates: :meth:`PortAttach.attachment` builds
the one :class:`~vpe.vpn.attachments.Attachment` value the rest of the agent
knows; nothing here holds state.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..vpn.attachments import Attachment, AttachmentState


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VpnCreate(_Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    rd: str = "auto"
    import_rts: list[str] = Field(default_factory=list)
    export_rts: list[str] = Field(default_factory=list)
    route_targets: list[str] = Field(default_factory=list, description="imported and exported")
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] = "per-vrf"
    multipath: int = Field(default=1, ge=1, le=64)
    description: str = Field(default="", max_length=256, description="free text (bagpipe: instance_description)")


class PortRelease(_Model):
    """``POST /v1/ports/{name}/release``: the VM left this host (docs/mobility.md)."""

    hold: float | None = Field(
        default=30.0, ge=0, le=86400,
        description="seconds the redirect (local repair) is kept once the withdrawal is sent; "
                    "null: until DELETE /v1/ports/{name}")


class VpnUpdate(_Model):
    rd: str | None = None
    import_rts: list[str] | None = None
    export_rts: list[str] | None = None
    label_mode: Literal["per-vrf", "per-prefix", "per-endpoint"] | None = None
    multipath: int | None = Field(default=None, ge=1, le=64)
    description: str | None = Field(default=None, max_length=256)


class PortAttach(_Model):
    """An endpoint to attach; mirrors bagpipe-bgp's attach_localport (see docs/api.md)."""

    name: str = Field(min_length=1, max_length=64, description="port id (bagpipe: local_port / port id)")
    ifname: str = Field(min_length=1, max_length=15, description="host-side interface of the VM")
    vpn: str = Field(min_length=1, description="VRF name (bagpipe: vpn_instance_id)")
    mac: str = Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", description="the VM's MAC")
    ips: list[str] = Field(min_length=1, max_length=64,
                           description="the VM's addresses with prefix length")
    gateways: list[str] = Field(default_factory=list, max_length=16,
                                description="gateway IPs the vPE answers for")
    allowed_pairs: list[str] = Field(default_factory=list, max_length=256,
                                     description="extra source prefixes")
    advertise: Literal["host", "subnet"] = "host"
    direction: Literal["both", "to-port", "from-port"] = Field(
        default="both",
        description="both / to-port: the addresses are routes of the VRF and advertised; "
                    "from-port: the port only sends, its addresses are neither routes nor advertised",
    )
    local_pref: int | None = Field(default=None, ge=0, le=0xFFFFFFFF,
                                   description="LOCAL_PREF of the port's exported routes (default 100)")
    description: str = Field(default="", max_length=256, description="free text about the port")
    state: Literal["active", "standby"] = Field(
        default="active",
        description="standby: prepare a move here (routes advertised with a higher mobility "
                    "sequence number, port not taken until POST /v1/ports/{name}/activate); "
                    "docs/mobility.md")
    sequence: int = Field(default=0, ge=0, le=0xFFFFFFFF,
                          description="mobility sequence number (0: chosen by the vPE)")
    vpn_type: str = Field(default="ipvpn", description="only 'ipvpn' (bagpipe: vpn_type)")
    import_rts: list[str] | None = Field(
        default=None, max_length=64,
        description="bagpipe: import_rt; creates the VPN instance if it does not exist, "
                    "else must equal its import RTs")
    export_rts: list[str] | None = Field(
        default=None, max_length=64,
        description="bagpipe: export_rt; creates the VPN instance if it does not exist, "
                    "else must equal its export RTs")
    vpn_description: str = Field(default="", max_length=256,
                                 description="description of a VPN instance created by this attach "
                                             "(bagpipe: instance_description)")

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
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                raise ValueError(f"{text!r} is not an address with prefix length") from None
            if iface.ip in seen:
                raise ValueError(f"address {iface.ip} is given twice")
            seen.add(iface.ip)
            out.append(str(iface))
        return out

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_address(g)) for g in v]
        except ValueError as e:
            raise ValueError(f"not an IP address: {e}") from None

    @field_validator("allowed_pairs")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(p, strict=False)) for p in v]
        except ValueError as e:
            raise ValueError(f"not an IP prefix: {e}") from None
