"""IANA "BGP Tunnel Encapsulation Attribute Tunnel Types" (RFC 9012 and others).

Shared by the Encapsulation extended community and the TUNNEL_ENCAPSULATION
attribute, which name the same tunnel types.
"""

from __future__ import annotations

from enum import IntEnum


class TunnelType(IntEnum):
    L2TPV3 = 1
    GRE = 2
    IP_IN_IP = 7
    VXLAN = 8
    NVGRE = 9
    MPLS = 10
    MPLS_IN_GRE = 11
    VXLAN_GPE = 12
    MPLS_IN_UDP = 13


TUNNEL_NAMES: dict[int, str] = {
    TunnelType.L2TPV3: "l2tpv3",
    TunnelType.GRE: "gre",
    TunnelType.IP_IN_IP: "ip-in-ip",
    TunnelType.VXLAN: "vxlan",
    TunnelType.NVGRE: "nvgre",
    TunnelType.MPLS: "mpls",
    TunnelType.MPLS_IN_GRE: "mpls-in-gre",
    TunnelType.VXLAN_GPE: "vxlan-gpe",
    TunnelType.MPLS_IN_UDP: "mpls-in-udp",
}
TUNNEL_BY_NAME: dict[str, int] = {v: k for k, v in TUNNEL_NAMES.items()}


def tunnel_name(t: int) -> str:
    return TUNNEL_NAMES.get(t, f"tunnel-{t}")


def parse_tunnel_type(text: str) -> int:
    """A tunnel name (``"mpls-in-udp"``) or a number."""
    t = text.strip().lower()
    if t in TUNNEL_BY_NAME:
        return TUNNEL_BY_NAME[t]
    if t.startswith("tunnel-"):
        t = t[7:]
    try:
        v = int(t, 0)
    except ValueError:
        raise ValueError(
            f"tunnel type {text!r}: expected one of {', '.join(TUNNEL_BY_NAME)} or a number"
        ) from None
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"tunnel type {v} is outside 0..65535")
    return v
