"""NLRI families; importing this package registers every known family codec."""

from . import labeled, mcast_vpn, prefix, rtc, vpn
from .base import NLRI_CODECS, Nlri, NlriCodec, register_codec
from .labeled import IPv4LabeledPrefix, IPv6LabeledPrefix, LabeledNlri
from .mcast_vpn import IPv4McastVpnRoute, IPv6McastVpnRoute, McastVpnRoute
from .prefix import IPv4Prefix, IPv6Prefix
from .rd import RouteDistinguisher
from .rtc import RouteTargetMembership
from .vpn import VpnPrefix, VPNv4Prefix, VPNv6Prefix

__all__ = [
    "NLRI_CODECS",
    "IPv4LabeledPrefix",
    "IPv4McastVpnRoute",
    "IPv4Prefix",
    "IPv6LabeledPrefix",
    "IPv6McastVpnRoute",
    "IPv6Prefix",
    "LabeledNlri",
    "McastVpnRoute",
    "Nlri",
    "NlriCodec",
    "RouteDistinguisher",
    "RouteTargetMembership",
    "VPNv4Prefix",
    "VPNv6Prefix",
    "VpnPrefix",
    "labeled",
    "mcast_vpn",
    "prefix",
    "register_codec",
    "rtc",
    "vpn",
]
