"""Address family names on the command line: the short ones operators type.

``--family`` takes ``ipv4``, ``ipv6``, ``vpnv4``, ``vpnv6``, ``rtc``,
``ipv4-lu``, ``ipv6-lu``, ``mvpn``, ``mvpn6`` or a full name
(``ipv4-unicast``, ``ipv4-labeled-unicast``, ``ipv4-mcast-vpn``...); the
shell completes the short ones. The agent accepts the same names.
"""

from __future__ import annotations

from ..bgp.wire.constants import FAMILY_SHORT_NAMES, family_from_name

#: offered by shell completion, in this order
SHORT_NAMES: tuple[str, ...] = tuple(FAMILY_SHORT_NAMES)


def complete_family(incomplete: str) -> list[str]:
    """Shell completion of ``--family``."""
    return [n for n in SHORT_NAMES if n.startswith(incomplete.lower())]


def full_name(name: str) -> str:
    """The full name of ``name`` (ValueError naming it when unknown)."""
    return family_from_name(name).name
