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
  the attachment's sequence number) but the forwarder has no port yet, and
  this host forwards what arrives for the VM to where it still runs.
* ACTIVE: routes originated, the forwarder owns the port.
* REDIRECTING: the endpoint moved to another host (*release*); its routes are
  withdrawn here but their labels stay bound, and the forwarder re-tunnels
  what still arrives for it toward its new host (local repair).
* DETACHED: gone; the table forgets it.

Each endpoint carries a sequence number, persisted with it: the mobility
sequence number its routes carry (:mod:`vpe.vpn.mobility`; the highest
claim to an address wins). A standby attach without one takes the highest
number another vPE claims for its addresses plus one; one given must be
higher than that. An active attach of an address another vPE holds with a
sequence number (a moving VM) is refused unless its own number is higher:
such a claim would be a stale or forged one (R13.3). The move as a whole is
in docs/mobility.md.
"""

from __future__ import annotations

import bisect
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


class StaleClaim(InvalidTransition):
    """An attach claims an address another vPE holds with an equal or higher
    mobility sequence number (HTTP 409)."""


_MODE = {"active": "active", "standby": "standby", "redirecting": "redirect", "detached": "redirect"}


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
    #: the forwarder the port is on, when one agent programs several (R2.4); "": the
    #: agent's only (or first) forwarder
    forwarder: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def originates(self) -> bool:
        """Do the port's addresses become routes of its VRF (and VPN routes)?"""
        return self.direction != "from-port" and self.state is not AttachmentState.DETACHED

    @property
    def route_mode(self) -> str:
        """The mode of its host routes (:class:`~vpe.vpn.exporter.LocalRoute`)."""
        return _MODE[self.state.value]

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
            **({"forwarder": self.forwarder} if self.forwarder else {}),
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
            forwarder=str(d.get("forwarder", "")),
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


def _addresses(a: Attachment) -> set[str]:
    return {str(ip_interface(x).ip) for x in a.ips}


class AttachmentTable:
    """The attachments of one vPE and their state machine, over a :class:`VpnService`."""

    def __init__(self, vpn: VpnService) -> None:
        self.vpn = vpn
        self._by_name: dict[str, Attachment] = {}
        #: VRF -> names of its attachments (in attach order); every name, sorted (pages)
        self._in_vrf: dict[str, dict[str, None]] = {}
        self._sorted: list[str] = []
        #: (VRF, address) -> the attachments holding it (two while mobility contests it)
        self._holders: dict[tuple[str, str], dict[str, None]] = {}

    def _add(self, a: Attachment) -> None:
        self._by_name[a.name] = a
        self._in_vrf.setdefault(a.vrf, {})[a.name] = None
        bisect.insort(self._sorted, a.name)
        for ip in _addresses(a):
            self._holders.setdefault((a.vrf, ip), {})[a.name] = None

    def _remove(self, a: Attachment) -> None:
        del self._by_name[a.name]
        names = self._in_vrf[a.vrf]
        del names[a.name]
        if not names:
            del self._in_vrf[a.vrf]
        i = bisect.bisect_left(self._sorted, a.name)
        del self._sorted[i]
        for ip in _addresses(a):
            held = self._holders[(a.vrf, ip)]
            held.pop(a.name, None)
            if not held:
                del self._holders[(a.vrf, ip)]

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
        """The attachments of ``vrf`` (in attach order; costs those only)."""
        return [self._by_name[n] for n in self._in_vrf.get(vrf, ())]

    def page(self, offset: int, limit: int) -> list[Attachment]:
        """Attachments by name, ``limit`` from ``offset`` (costs the page, not the total)."""
        return [self._by_name[n] for n in self._sorted[offset : offset + limit]]

    def address_clash(self, a: Attachment) -> tuple[Attachment, set[str]] | None:
        """Another attachment of ``a``'s VRF holding one of ``a``'s addresses."""
        mine = _addresses(a)
        others: dict[str, set[str]] = {}
        for ip in mine:
            for name in self._holders.get((a.vrf, ip), ()):
                if name != a.name:
                    others.setdefault(name, set()).add(ip)
        if not others:
            return None
        order = self._in_vrf[a.vrf]  # the first attached of them, as a walk in order finds it
        name = min(others, key=list(order).index) if len(others) > 1 else next(iter(others))
        return self._by_name[name], others[name]

    # -- operations ----------------------------------------------------------------

    def claims(self, a: Attachment) -> tuple[int, str, str]:
        """The highest mobility sequence another vPE claims for one of ``a``'s
        addresses: (sequence, address, that vPE), sequence 0 when none does."""
        best = (0, "", "")
        for prefix, kind in a.originated() if a.direction != "from-port" else ():
            if kind != "host":
                continue
            seq, nh = self.vpn.highest_sequence(a.vrf, prefix)
            if nh is not None and seq > best[0]:
                best = (seq, prefix.split("/")[0], str(nh))
        return best

    def sequence_for(self, a: Attachment) -> Attachment:
        """``a`` with the sequence number its attach must carry (see the module
        docstring); :class:`StaleClaim` if the one it names is not high enough."""
        seq, addr, holder = self.claims(a)
        if a.state is AttachmentState.STANDBY:
            if a.sequence == 0:
                return replace(a, sequence=seq + 1)
            if a.sequence <= seq:
                raise StaleClaim(f"sequence: {a.sequence} is not higher than {seq}, the mobility sequence "
                                 f"vPE {holder} claims {addr} with in VPN {a.vrf!r}")
            return a
        if seq > 0 and a.sequence <= seq:
            raise StaleClaim(f"ips: {addr} is held by vPE {holder} with mobility sequence {seq} "
                             f"(a moving VM) in VPN {a.vrf!r}; attach it here as standby to move it, "
                             f"or give a higher sequence")
        return a

    def attach(self, a: Attachment, now: float = 0.0, restoring: bool = False) -> AttachmentOutcome:
        """Attach ``a`` (state ACTIVE, or STANDBY to pre-advertise): its routes are
        originated in its VRF; an active one's port goes to the forwarder.
        The caller has chosen its sequence number (:meth:`sequence_for`).
        ``restoring``: a REDIRECTING attachment read back from the store is allowed."""
        check_name(a.name, "name")  # one rule for names, whoever asks (docs/api.md, Names)
        check_ifname(a.ifname, "ifname")
        check_text(a.description, "description")
        if a.name in self._by_name:
            raise AlreadyExists(f"name: port {a.name!r} is already attached")
        allowed = (AttachmentState.ACTIVE, AttachmentState.STANDBY, AttachmentState.REDIRECTING)
        if a.state not in allowed[: 3 if restoring else 2]:
            raise InvalidTransition(f"state: a port is attached as active or standby, not {a.state.value}")
        self.vpn.vrf(a.vrf)  # raises if unknown
        out = AttachmentOutcome(a)
        done: list[str] = []
        try:
            for prefix, kind in a.originated():
                endpoint = a.name if kind == "host" else None
                host = kind == "host"
                out.vpn.extend(self.vpn.add_local_route(
                    a.vrf, prefix, kind=kind, endpoint=endpoint, local_pref=a.local_pref, now=now,
                    sequence=a.sequence if host else 0, mode=a.route_mode if host else "active"))
                done.append(prefix)
        except Exception:
            for p in done:
                self.vpn.remove_local_route(a.vrf, p, now)
            raise
        if a.forwards:
            out.fib.append(PortUp(a))
        self._add(a)
        return out

    def activate(self, name: str, now: float = 0.0) -> AttachmentOutcome:
        """STANDBY -> ACTIVE: the endpoint runs here now; its routes forward here
        (same labels, same sequence: nothing new is advertised) and the forwarder
        gets its port."""
        a = self._move(name, AttachmentState.ACTIVE)
        out = AttachmentOutcome(a, vpn=self._reoriginate(a, now))
        out.fib.append(PortUp(a))
        return out

    def release(self, name: str, now: float = 0.0) -> AttachmentOutcome:
        """ACTIVE -> REDIRECTING: the endpoint left for another host. Its host routes
        are withdrawn but keep their labels, so what still arrives for it is looked
        up in the VRF and re-tunnelled to the new host; the forwarder lets go of
        the port (nothing from or to the VM is accepted here any more)."""
        a = self._move(name, AttachmentState.REDIRECTING)
        out = AttachmentOutcome(a, vpn=self._reoriginate(a, now))
        out.fib.append(PortDown(a.name))
        return out

    def _reoriginate(self, a: Attachment, now: float) -> VpnOutput:
        out = VpnOutput()
        for prefix, kind in a.originated():
            if kind == "host":
                out.extend(self.vpn.add_local_route(a.vrf, prefix, kind=kind, endpoint=a.name,
                                                    local_pref=a.local_pref, now=now,
                                                    sequence=a.sequence, mode=a.route_mode))
        return out

    def detach(self, name: str, now: float = 0.0) -> AttachmentOutcome:
        """Any state -> DETACHED: routes withdrawn, port removed, the attachment forgotten.

        A subnet route stays while another port of the VRF still advertises it.
        """
        a = self._by_name.get(name)
        if a is None:
            raise NotFound(f"no port {name!r}")
        self._remove(a)
        out = AttachmentOutcome(a)  # as it was: attaching it again undoes the detach
        kept = {p for o in self.by_vrf(a.vrf) for p, k in o.originated() if k == "subnet"}
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
    "StaleClaim",
]
