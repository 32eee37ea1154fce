"""PMSI_TUNNEL (type 22, RFC 6514 section 5): how multi-destination traffic reaches a PE.

vpe uses ingress replication (tunnel type 6, RFC 6514 / RFC 7432 section 11.2):
the tunnel identifier is the unicast address of the advertising PE. Other
tunnel types keep their identifier as opaque octets.

The 3-octet label field is kept whole (``label_field``) because its meaning
depends on the service: an MPLS label in the high 20 bits for MPLS
encapsulations, a 24-bit VNI for VXLAN (RFC 8365 section 5.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length
from .base import PathAttribute, register

IPAddress = IPv4Address | IPv6Address

PMSI_FLAG_LEAF_INFO_REQUIRED = 0x01


class PmsiTunnelType(IntEnum):
    NO_TUNNEL_INFO = 0
    RSVP_TE_P2MP = 1
    MLDP_P2MP = 2
    PIM_SSM = 3
    PIM_SM = 4
    BIDIR_PIM = 5
    INGRESS_REPLICATION = 6
    MLDP_MP2MP = 7


@register
@dataclass(frozen=True, slots=True)
class PmsiTunnel(PathAttribute):
    """Optional transitive. A value shorter than 5 octets, or an ingress-replication
    identifier that is not 4 or 16 octets, is treat-as-withdraw."""

    CODE: ClassVar[int] = AttrCode.PMSI_TUNNEL
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "pmsi-tunnel"

    tunnel_type: int
    label_field: int
    tunnel_id: IPAddress | bytes
    #: PMSI flags octet (bit 0x01: Leaf Information Required); not the attribute flags
    tunnel_flags: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.label_field <= 0xFFFFFF:
            raise ValueError(f"PMSI label field {self.label_field} is outside 0..16777215")
        if not 0 <= self.tunnel_type <= 0xFF or not 0 <= self.tunnel_flags <= 0xFF:
            raise ValueError("PMSI tunnel type and flags are one octet each")
        tid = self.tunnel_id
        if self.tunnel_type == PmsiTunnelType.INGRESS_REPLICATION:
            if isinstance(tid, str | bytes):
                object.__setattr__(self, "tunnel_id", ip_address(tid))
        elif not isinstance(tid, bytes):
            object.__setattr__(self, "tunnel_id", ip_address(tid).packed)

    @classmethod
    def ingress_replication(
        cls,
        endpoint: IPAddress | str,
        *,
        label: int | None = None,
        vni: int | None = None,
        leaf_info_required: bool = False,
    ) -> PmsiTunnel:
        """Ingress replication towards ``endpoint``, with an MPLS ``label`` (20 bits,
        stored shifted, bottom-of-stack bit clear as RFC 6514 specifies) or a ``vni``."""
        if label is not None and vni is not None:
            raise ValueError("give an MPLS label or a VNI, not both")
        if label is not None:
            if not 0 <= label < 1 << 20:
                raise ValueError(f"MPLS label {label} is outside 0..1048575")
            field = label << 4
        else:
            field = vni or 0
        flags = PMSI_FLAG_LEAF_INFO_REQUIRED if leaf_info_required else 0
        return cls(PmsiTunnelType.INGRESS_REPLICATION, field, ip_address(endpoint), flags)

    @property
    def label(self) -> int:
        """The MPLS label in the high 20 bits of the label field."""
        return self.label_field >> 4

    @property
    def vni(self) -> int:
        """The label field read as a 24-bit VXLAN VNI (RFC 8365)."""
        return self.label_field

    @property
    def endpoint(self) -> IPAddress | None:
        tid = self.tunnel_id
        return tid if isinstance(tid, IPv4Address | IPv6Address) else None

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> PmsiTunnel:
        n = len(value)
        if n < 5:
            raise bad_length(cls.ON_ERROR, "PMSI_TUNNEL", n, "at least 5")
        flags = value[0]
        ttype = value[1]
        field = int.from_bytes(value[2:5], "big")
        tid_raw = bytes(value[5:])
        tid: IPAddress | bytes = tid_raw
        if ttype == PmsiTunnelType.INGRESS_REPLICATION:
            if len(tid_raw) == 4:
                tid = IPv4Address(tid_raw)
            elif len(tid_raw) == 16:
                tid = IPv6Address(tid_raw)
            else:
                raise bad_length(
                    cls.ON_ERROR,
                    "PMSI_TUNNEL ingress-replication tunnel identifier",
                    len(tid_raw),
                    "4 or 16",
                )
        return cls(ttype, field, tid, flags)

    def encode_value(self, ctx: CodecContext) -> bytes:
        tid = self.tunnel_id
        raw = tid if isinstance(tid, bytes) else tid.packed
        return (
            bytes((self.tunnel_flags, self.tunnel_type)) + self.label_field.to_bytes(3, "big") + raw
        )

    def to_json(self) -> Any:
        try:
            tname = PmsiTunnelType(self.tunnel_type).name.lower().replace("_", "-")
        except ValueError:
            tname = f"type-{self.tunnel_type}"
        tid = self.tunnel_id
        return {
            "flags": self.tunnel_flags,
            "tunnel_type": tname,
            "label": self.label,
            "label_field": self.label_field,
            "tunnel_id": tid.hex() if isinstance(tid, bytes) else str(tid),
        }
