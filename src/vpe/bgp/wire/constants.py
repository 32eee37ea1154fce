"""Numbers from the BGP RFCs: message types, families, attribute codes, errors."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE_LEN = 4096
MAX_EXTENDED_MESSAGE_LEN = 65535  # RFC 8654
AS_TRANS = 23456  # RFC 6793


class MessageType(IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class AFI(IntEnum):
    IPV4 = 1
    IPV6 = 2
    L2VPN = 25


class SAFI(IntEnum):
    UNICAST = 1
    MULTICAST = 2
    LABELED_UNICAST = 4  # RFC 8277
    MCAST_VPN = 5  # RFC 6514
    EVPN = 70
    VPN = 128  # RFC 4364 / 4659
    RTC = 132  # RFC 4684


class Family(NamedTuple):
    """An (AFI, SAFI) pair; a plain tuple so it hashes and compares fast."""

    afi: int
    safi: int

    @property
    def name(self) -> str:
        return FAMILY_NAMES.get(self, f"afi{self.afi}-safi{self.safi}")

    def __str__(self) -> str:
        return self.name


IPV4_UNICAST = Family(AFI.IPV4, SAFI.UNICAST)
IPV6_UNICAST = Family(AFI.IPV6, SAFI.UNICAST)
IPV4_LABELED = Family(AFI.IPV4, SAFI.LABELED_UNICAST)
IPV6_LABELED = Family(AFI.IPV6, SAFI.LABELED_UNICAST)
VPNV4 = Family(AFI.IPV4, SAFI.VPN)
VPNV6 = Family(AFI.IPV6, SAFI.VPN)
RTC = Family(AFI.IPV4, SAFI.RTC)
IPV4_MCAST_VPN = Family(AFI.IPV4, SAFI.MCAST_VPN)
IPV6_MCAST_VPN = Family(AFI.IPV6, SAFI.MCAST_VPN)

FAMILY_NAMES: dict[Family, str] = {
    IPV4_UNICAST: "ipv4-unicast",
    IPV6_UNICAST: "ipv6-unicast",
    IPV4_LABELED: "ipv4-labeled-unicast",
    IPV6_LABELED: "ipv6-labeled-unicast",
    VPNV4: "vpnv4",
    VPNV6: "vpnv6",
    RTC: "rtc",
    IPV4_MCAST_VPN: "ipv4-mcast-vpn",
    IPV6_MCAST_VPN: "ipv6-mcast-vpn",
}
FAMILY_BY_NAME: dict[str, Family] = {v: k for k, v in FAMILY_NAMES.items()}

#: the short names operators type (GoBGP's and FRR's habits), besides the names above
FAMILY_SHORT_NAMES: dict[str, Family] = {
    "ipv4": IPV4_UNICAST,
    "ipv6": IPV6_UNICAST,
    "ipv4-lu": IPV4_LABELED,
    "ipv6-lu": IPV6_LABELED,
    "vpnv4": VPNV4,
    "vpnv6": VPNV6,
    "rtc": RTC,
    "mvpn": IPV4_MCAST_VPN,
    "mvpn6": IPV6_MCAST_VPN,
}


def family_from_name(name: str) -> Family:
    """The family called ``name``: a short name (``ipv4``, ``vpnv4``, ``rtc``,
    ``ipv4-lu``, ``mvpn``...) or a full one (``ipv4-unicast``...), any case.
    ValueError names the unknown name and lists the known ones."""
    key = name.strip().lower()
    fam = FAMILY_SHORT_NAMES.get(key) or FAMILY_BY_NAME.get(key)
    if fam is None:
        known = sorted(set(FAMILY_SHORT_NAMES) | set(FAMILY_BY_NAME))
        raise ValueError(f"unknown family {name!r} (known: {', '.join(known)})")
    return fam


class AttrCode(IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    EXTENDED_COMMUNITIES = 16
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    PMSI_TUNNEL = 22
    TUNNEL_ENCAPSULATION = 23
    LARGE_COMMUNITY = 32


class AttrFlag:
    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


class ErrorCode(IntEnum):
    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH = 7  # RFC 7313


class HeaderSubcode(IntEnum):
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(IntEnum):
    UNSUPPORTED_VERSION = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7  # RFC 5492
    ROLE_MISMATCH = 11


class UpdateSubcode(IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(IntEnum):
    UNSPECIFIED = 0
    UNEXPECTED_IN_OPENSENT = 1
    UNEXPECTED_IN_OPENCONFIRM = 2
    UNEXPECTED_IN_ESTABLISHED = 3


class CeaseSubcode(IntEnum):
    MAX_PREFIXES = 1
    ADMIN_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMIN_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIG_CHANGE = 6
    CONNECTION_COLLISION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9  # RFC 8538
    BFD_DOWN = 10


class RouteRefreshSubcode(IntEnum):
    INVALID_MESSAGE_LENGTH = 1
