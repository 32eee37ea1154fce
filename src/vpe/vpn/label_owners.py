"""What an MPLS label this vPE allocated means: its owner (RFC 4364 section 4.3.2).

A label is bound to one owner, and the owner is what the forwarder's MPLS
table is built from:

* :class:`VrfLabel` - "IP lookup in this VRF" (per-VRF label mode, and the
  aggregate label of aggregates, subnets and ingress replication);
* :class:`PrefixLabel` - one exported prefix of a VRF (per-prefix mode);
* :class:`SwapLabel` - swap to a label toward a next hop (a policy's relabel);
* :class:`EndpointLabel` - one attached endpoint of a VRF, or the in-VRF
  next hop of a static route (per-endpoint mode): the label alone picks the
  egress port.

They are values: frozen, hashable, compared by type and fields (a
``PrefixLabel`` never equals an ``EndpointLabel`` with the same strings).
The label state survives a restart as JSON (:func:`owner_to_json`,
:func:`owner_from_json`); older versions wrote positional lists
(``["vrf", name]``, ``["prefix", vrf, prefix]``, ``["endpoint", vrf, item]``),
which :func:`owner_from_json` still reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InvalidValue


@dataclass(frozen=True, slots=True)
class VrfLabel:
    """The VRF's aggregate label: an IP lookup in VRF ``vrf``."""

    vrf: str

    def to_json(self) -> dict[str, str]:
        return {"kind": "vrf", "vrf": self.vrf}


@dataclass(frozen=True, slots=True)
class PrefixLabel:
    """The label of one exported prefix (text form, ``192.0.2.0/24``) of ``vrf``."""

    vrf: str
    prefix: str

    def to_json(self) -> dict[str, str]:
        return {"kind": "prefix", "vrf": self.vrf, "prefix": self.prefix}


@dataclass(frozen=True, slots=True)
class EndpointLabel:
    """The label of one endpoint of ``vrf``: an attachment's name, or the address
    of a static route's in-VRF next hop."""

    vrf: str
    endpoint: str

    def to_json(self) -> dict[str, str]:
        return {"kind": "endpoint", "vrf": self.vrf, "endpoint": self.endpoint}


@dataclass(frozen=True, slots=True)
class SwapLabel:
    """A local label that swaps to ``label`` toward ``next_hop`` (an export policy's
    relabel, Inter-AS option B): a swap entry of the FIB, not a VRF lookup."""

    next_hop: str
    label: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": "swap", "next_hop": self.next_hop, "label": self.label}


LabelOwner = VrfLabel | PrefixLabel | EndpointLabel | SwapLabel

LABEL_OWNER_TYPES = (VrfLabel, PrefixLabel, EndpointLabel, SwapLabel)


def owner_to_json(owner: LabelOwner) -> dict[str, Any]:
    """The stored form: ``{"kind": "vrf" | "prefix" | "endpoint", "vrf": ..., ...}``."""
    return owner.to_json()


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"label owner {field}: {value!r} is not a string")
    return value


def owner_from_json(value: Any) -> LabelOwner:
    """A label owner from its stored form, the typed one or an older version's list.

    ``ValueError`` naming the value when it is neither.
    """
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind == "vrf":
            return VrfLabel(_text(value.get("vrf"), "vrf"))
        if kind == "prefix":
            return PrefixLabel(_text(value.get("vrf"), "vrf"), _text(value.get("prefix"), "prefix"))
        if kind == "endpoint":
            return EndpointLabel(_text(value.get("vrf"), "vrf"), _text(value.get("endpoint"), "endpoint"))
        if kind == "swap" and isinstance(value.get("label"), int):
            return SwapLabel(_text(value.get("next_hop"), "next_hop"), value["label"])
    elif isinstance(value, list | tuple) and value:
        kind = value[0]
        if kind == "vrf" and len(value) == 2:
            return VrfLabel(_text(value[1], "vrf"))
        if kind == "prefix" and len(value) == 3:
            return PrefixLabel(_text(value[1], "vrf"), _text(value[2], "prefix"))
        if kind == "endpoint" and len(value) == 3:
            return EndpointLabel(_text(value[1], "vrf"), _text(value[2], "endpoint"))
    raise InvalidValue(f"label owner: {value!r} is not a VRF, prefix, endpoint or swap label owner")
