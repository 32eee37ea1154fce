"""Attachments: an endpoint (a VM's interface) bound to a VRF, and its life cycle.

One :class:`Attachment` value is the only definition of what a port is:
the API translates its request into one, the store persists
:meth:`Attachment.to_json` and reads it back with
:meth:`Attachment.from_json`, the FIB resolver turns it into the driver's
port. :class:`AttachmentTable` is the pure state machine: each operation
returns an :class:`AttachmentOutcome` (what the VPN service did, plus the
forwarder intents), and the caller (the VPN bridge) applies it. Nothing here
touches a socket, a clock or the RIB.

States, with room for mobility (``issues show 10``)::

    attach(standby) --> STANDBY --activate--> ACTIVE --redirect--> REDIRECTING
    attach -----------------------------------^   \\                 |
                                                   `----detach-------+--> DETACHED

* STANDBY: pre-advertised on a destination host; routes are originated (with
  the attachment's sequence number) but the forwarder has no port yet.
* ACTIVE: routes originated, the forwarder owns the port.
* REDIRECTING: the endpoint moved to another host; its routes are withdrawn
  here and the forwarder re-tunnels what still arrives for it (local repair).
* DETACHED: gone; the table forgets it.

Each endpoint carries a sequence number, persisted with it: the mobility
sequence number its routes will carry (the highest claim to an address wins).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from ipaddress import ip_interface
from typing import Any, Literal

from .errors import AlreadyExists, NotFound, VpnError
from .events import VpnOutput
from .names import check_ifname, check_name, check_text
from .service import VpnService

Advertise = Literal["host", "subnet"]
Direction = Literal["both", "to-port", "from-port"]


class AttachmentState(enum.Enum):
    STANDBY = "standby"
    ACTIVE = "active"
    REDIRECTING = "redirecting"
    DETACHED = "detached"


#: the transitions the state machine allows (from -> to)
TRANSITIONS: dict[AttachmentState, frozenset[AttachmentState]] = {
    AttachmentState.STANDBY: frozenset({AttachmentState.ACTIVE, AttachmentState.DETACHED}),
    AttachmentState.ACTIVE: frozenset({AttachmentState.REDIRECTING, AttachmentState.DETACHED}),
    AttachmentState.REDIRECTING: frozenset({AttachmentState.DETACHED}),
    AttachmentState.DETACHED: frozenset(),
}


class InvalidTransition(VpnError):
    """The attachment is not in a state that allows the operation (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """An endpoint (VM interface) attached to a VRF of this vPE."""

    name: str
    ifname: str
    vrf: str
    mac: str
    ips: tuple[str, ...]
    gateways: tuple[str, ...] = ()
    allowed_pairs: tuple[str, ...] = ()
    #: "host": a /32 or /128 per address; "subnet": the address's subnet too
    advertise: Advertise = "host"
    #: "both" / "to-port": the addresses are routes of the VRF (reachable, advertised);
    #: "from-port": the port only sends: no route leads to it (docs/api.md)
    direction: Direction = "both"
    #: LOCAL_PREF of the exported routes (None: the default, 100)
    local_pref: int | None = None
    description: str = ""
    state: AttachmentState = AttachmentState.ACTIVE
    #: mobility sequence number of the endpoint (higher wins a contested address)
    sequence: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def originates(self) -> bool:
        """Do the port's addresses become routes of its VRF (and VPN routes)?"""
        return self.direction != "from-port" and self.state in (AttachmentState.ACTIVE,
                                                                 AttachmentState.STANDBY)

    @property
    def forwards(self) -> bool:
        """Does the forwarder own the port in this state?"""
        return self.state is AttachmentState.ACTIVE

    def originated(self) -> list[tuple[str, str]]:
        """(prefix, kind) of every route this attachment originates in its VRF: a
        host route per address, and with ``advertise: subnet`` the subnet too."""
        out: list[tuple[str, str]] = []
        for ip in self.ips if self.originates else ():
            iface = ip_interface(ip)
            out.append((f"{iface.ip}/{iface.max_prefixlen}", "host"))
            if self.advertise == "subnet" and iface.network.prefixlen < iface.max_prefixlen:
                out.append((str(iface.network), "subnet"))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ifname": self.ifname,
            "vrf": self.vrf,
            "mac": self.mac,
            "ips": list(self.ips),
            "gateways": list(self.gateways),
            "allowed_pairs": list(self.allowed_pairs),
            "advertise": self.advertise,
            "direction": self.direction,
            "local_pref": self.local_pref,
            "description": self.description,
            "state": self.state.value,
            "sequence": self.sequence,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attachment:
        """The attachment ``to_json`` wrote (older rows without state/sequence are active, 0)."""
        return cls(
            name=d["name"], ifname=d["ifname"], vrf=d["vrf"], mac=d["mac"],
            ips=tuple(d["ips"]), gateways=tuple(d.get("gateways", ())),
            allowed_pairs=tuple(d.get("allowed_pairs", ())),
            advertise=d.get("advertise", "host"),
            direction=d.get("direction", "both"),
            local_pref=d.get("local_pref"),
            description=d.get("description", ""),
            state=AttachmentState(d.get("state", "active")),
            sequence=int(d.get("sequence", 0)),
        )


@dataclass(frozen=True, slots=True)
class PortUp:
    """The forwarder must own the attachment's port."""

    attachment: Attachment


@dataclass(frozen=True, slots=True)
class PortDown:
    """The forwarder must let go of port ``name``."""

    name: str


FibIntent = PortUp | PortDown


@dataclass(slots=True)
class AttachmentOutcome:
    """What one operation produced: VPN service output, then forwarder intents."""

    attachment: Attachment
    vpn: VpnOutput = field(default_factory=VpnOutput)
    fib: list[FibIntent] = field(default_factory=list)


class AttachmentTable:
    """The attachments of one vPE and their state machine, over a :class:`VpnService`."""

    def __init__(self, vpn: VpnService) -> None:
        self.vpn = vpn
        self._by_name: dict[str, Attachment] = {}

    # -- reading ---------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Attachment]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Attachment | None:
        return self._by_name.get(name)

    def by_vrf(self, vrf: str) -> list[Attachment]:
        return [a for a in self._by_name.values() if a.vrf == vrf]

    def address_clash(self, a: Attachment) -> tuple[Attachment, set[str]] | None:
        """Another attachment of ``a``'s VRF holding one of ``a``'s addresses."""
        mine = {str(ip_interface(x).ip) for x in a.ips}
        for other in self._by_name.values():
            if other.vrf == a.vrf and other.name != a.name:
                clash = mine & {str(ip_interface(x).ip) for x in other.ips}
                if clash:
                    return other, clash
        return None

    # -- operations ----------------------------------------------------------------

    def attach(self, a: Attachment, now: float = 0.0) -> AttachmentOutcome:
        """Attach ``a`` (state ACTIVE, or STANDBY to pre-advertise): its routes are
        originated in its VRF; an active one's port goes to the forwarder."""
        check_name(a.name, "name")  # one rule for names, whoever asks (docs/api.md, Names)
        check_ifname(a.ifname, "ifname")
        check_text(a.description, "description")
        if a.name in self._by_name:
            raise AlreadyExists(f"name: port {a.name!r} is already attached")
        if a.state not in (AttachmentState.ACTIVE, AttachmentState.STANDBY):
            raise InvalidTransition(f"state: a port is attached as active or standby, not {a.state.value}")
        self.vpn.vrf(a.vrf)  # raises if unknown
        out = AttachmentOutcome(a)
        done: list[str] = []
        try:
            for prefix, kind in a.originated():
                endpoint = a.name if kind == "host" else None
                out.vpn.extend(self.vpn.add_local_route(a.vrf, prefix, kind=kind, endpoint=endpoint,
                                                        local_pref=a.local_pref, now=now))
                done.append(prefix)
        except Exception:
            for p in done:
                self.vpn.remove_local_route(a.vrf, p, now)
            raise
        if a.forwards:
            out.fib.append(PortUp(a))
        self._by_name[a.name] = a
        return out

    def activate(self, name: str) -> AttachmentOutcome:
        """STANDBY -> ACTIVE: the endpoint runs here now; the forwarder gets its port."""
        a = self._move(name, AttachmentState.ACTIVE)
        return AttachmentOutcome(a, fib=[PortUp(a)])

    def detach(self, name: str, now: float = 0.0) -> AttachmentOutcome:
        """Any state -> DETACHED: routes withdrawn, port removed, the attachment forgotten.

        A subnet route stays while another port of the VRF still advertises it.
        """
        a = self._by_name.get(name)
        if a is None:
            raise NotFound(f"no port {name!r}")
        del self._by_name[name]
        out = AttachmentOutcome(a)  # as it was: attaching it again undoes the detach
        kept = {p for o in self._by_name.values() if o.vrf == a.vrf
                for p, k in o.originated() if k == "subnet"}
        for prefix, kind in a.originated():
            if kind == "host" or prefix not in kept:
                out.vpn.extend(self.vpn.remove_local_route(a.vrf, prefix, now))
        if a.forwards:
            out.fib.append(PortDown(a.name))
        return out

    def _move(self, name: str, to: AttachmentState) -> Attachment:
        a = self._by_name.get(name)
        if a is None:
            raise NotFound(f"no port {name!r}")
        if to not in TRANSITIONS[a.state]:
            raise InvalidTransition(f"state: port {name!r} is {a.state.value}; it cannot become {to.value}")
        a = self._by_name[name] = replace(a, state=to)
        return a


__all__ = [
    "TRANSITIONS",
    "Attachment",
    "AttachmentOutcome",
    "AttachmentState",
    "AttachmentTable",
    "FibIntent",
    "InvalidTransition",
    "PortDown",
    "PortUp",
]
