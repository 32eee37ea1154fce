"""The driver interface: what a control plane programs into a forwarder.

Everything here is a plain frozen value (``slots=True``): ports, next hops,
routes, label entries, replication lists, peers, and a :class:`Batch` of
changes. The same values drive the userspace forwarder in-process
(:class:`vpe.dataplane.userspace.pipeline.Forwarder`) and cross the FIB
channel (:mod:`vpe.dataplane.channel`) as JSON-shaped dicts (``to_json`` /
``from_json``), so every driver takes exactly the same input: :class:`Driver`
is the one protocol they implement.

Strings are accepted wherever an address, prefix or MAC is expected and are
normalised once here, at the boundary: a bad value raises
:class:`DriverError` naming the field and the value, never a bare
``ValueError`` from deep inside the forwarder.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .errors import DriverError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

Encap = Literal["mpls-in-udp", "mpls-in-gre"]
EcmpMode = Literal["per-flow", "per-packet", "per-prefix"]
ENCAPS: tuple[str, ...] = ("mpls-in-udp", "mpls-in-gre")
ECMP_MODES: tuple[str, ...] = ("per-flow", "per-packet", "per-prefix")

#: ECMP fan-out the forwarder accepts for one route (R12.2: "hundreds").
MAX_NEXT_HOPS = 512
#: Labels 0-15 are reserved (RFC 3032); a forwarder never allocates them.
MIN_LABEL = 16
MAX_LABEL = (1 << 20) - 1
#: labels a next hop may push above its own (Inter-AS option C needs one)
MAX_OUTER_LABELS = 2

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _mac(value: object, what: str) -> str:
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise DriverError(f"{what}: {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return value.lower()


def _addr(value: object, what: str) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise DriverError(f"{what}: {value!r} is not an IP address") from None


def _net(value: object, what: str) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise DriverError(f"{what}: {value!r} is not a prefix ({exc})") from None


def _iface(value: object, what: str) -> IPInterface:
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return value
    try:
        return ipaddress.ip_interface(str(value))
    except ValueError:
        raise DriverError(f"{what}: {value!r} is not an address/prefix-length") from None


def _label(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LABEL:
        raise DriverError(f"{what}: {value!r} is not an MPLS label (0..{MAX_LABEL})")
    return value


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class AddressPair:
    """An allowed address pair (R13.1): extra source prefix (and MAC) a VM may use.

    ``mac`` None means "the port's own MAC". Used for VIPs (keepalived) and
    appliances that route traffic of other hosts (service chains).
    """

    prefix: IPNetwork
    mac: str | None = None

    def __post_init__(self) -> None:
        _set(self, "prefix", _net(self.prefix, "allowed address pair prefix"))
        if self.mac is not None:
            _set(self, "mac", _mac(self.mac, "allowed address pair mac"))

    def to_json(self) -> dict[str, Any]:
        return {"prefix": str(self.prefix), "mac": self.mac}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AddressPair:
        return cls(d["prefix"], d.get("mac"))


@dataclass(frozen=True, slots=True)
class Port:
    """A VM interface attached to a VRF: the host side ``ifname`` of its veth.

    ``mac`` and ``ips`` are the endpoint's (the VM's) own; ``gateway_ips`` are
    the first-hop router addresses the forwarder answers for, with
    ``gateway_mac`` (a stable per-port MAC the VM sees as its router).
    """

    name: str
    ifname: str
    vrf: str
    mac: str
    ips: tuple[IPInterface, ...] = ()
    gateway_ips: tuple[IPAddress, ...] = ()
    allowed_pairs: tuple[AddressPair, ...] = ()
    gateway_mac: str = "02:00:5e:00:00:01"
    mtu: int = 1500

    def __post_init__(self) -> None:
        for f in ("name", "ifname", "vrf"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v:
                raise DriverError(f"port {f}: {v!r} must be a non-empty string")
        if len(self.ifname) > 15:
            raise DriverError(f"port ifname: {self.ifname!r} is longer than 15 characters")
        _set(self, "mac", _mac(self.mac, f"port {self.name} mac"))
        _set(self, "gateway_mac", _mac(self.gateway_mac, f"port {self.name} gateway_mac"))
        _set(self, "ips", tuple(_iface(i, f"port {self.name} ips") for i in self.ips))
        _set(
            self,
            "gateway_ips",
            tuple(_addr(i, f"port {self.name} gateway_ips") for i in self.gateway_ips),
        )
        pairs = tuple(
            p
            if isinstance(p, AddressPair)
            else AddressPair(*p)
            if isinstance(p, tuple)
            else AddressPair(p)
            for p in self.allowed_pairs
        )
        _set(self, "allowed_pairs", pairs)
        if not isinstance(self.mtu, int) or not 576 <= self.mtu <= 65535:
            raise DriverError(f"port {self.name} mtu: {self.mtu!r} is not in 576..65535")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ifname": self.ifname,
            "vrf": self.vrf,
            "mac": self.mac,
            "ips": [str(i) for i in self.ips],
            "gateway_ips": [str(i) for i in self.gateway_ips],
            "allowed_pairs": [p.to_json() for p in self.allowed_pairs],
            "gateway_mac": self.gateway_mac,
            "mtu": self.mtu,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Port:
        return cls(
            name=d["name"],
            ifname=d["ifname"],
            vrf=d["vrf"],
            mac=d["mac"],
            ips=tuple(d.get("ips", ())),
            gateway_ips=tuple(d.get("gateway_ips", ())),
            allowed_pairs=tuple(AddressPair.from_json(p) for p in d.get("allowed_pairs", ())),
            gateway_mac=d.get("gateway_mac", "02:00:5e:00:00:01"),
            mtu=d.get("mtu", 1500),
        )


@dataclass(frozen=True, slots=True)
class NextHop:
    """Either a local port (``port``) or a remote tunnel (``endpoint`` + ``label``).

    ``endpoint`` is the remote vPE's underlay address (IPv4 or IPv6); the
    label is the one that vPE advertised; ``encap`` the encapsulation it
    signalled (R7.1). ``outer``: labels pushed above ``label``, outermost first
    (Inter-AS option C: the labeled-unicast label of the remote PE's loopback,
    ``endpoint`` then being the ASBR that advertised it); ``label`` stays the
    bottom of the stack.
    """

    port: str | None = None
    endpoint: IPAddress | None = None
    label: int | None = None
    encap: Encap = "mpls-in-udp"
    outer: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.port is None) == (self.endpoint is None):
            raise DriverError(
                f"next hop: exactly one of port / endpoint must be set "
                f"(port={self.port!r}, endpoint={self.endpoint!r})"
            )
        if self.endpoint is not None:
            _set(self, "endpoint", _addr(self.endpoint, "next hop endpoint"))
            if self.label is None:
                raise DriverError(f"next hop to {self.endpoint}: a remote next hop needs a label")
            _label(self.label, f"next hop to {self.endpoint} label")
            if self.encap not in ENCAPS:
                raise DriverError(
                    f"next hop to {self.endpoint} encap: {self.encap!r} not in {ENCAPS}"
                )
            outer = tuple(self.outer)
            _set(self, "outer", outer)
            if len(outer) > MAX_OUTER_LABELS:
                raise DriverError(f"next hop to {self.endpoint}: {len(outer)} outer labels, "
                                  f"at most {MAX_OUTER_LABELS}")
            for x in outer:
                _label(x, f"next hop to {self.endpoint} outer label")
        elif self.outer:
            raise DriverError(f"next hop to port {self.port}: only a remote next hop has outer labels")

    @classmethod
    def local(cls, port: str) -> NextHop:
        return cls(port=port)

    @classmethod
    def remote(cls, endpoint: str | IPAddress, label: int, encap: Encap = "mpls-in-udp",
               outer: tuple[int, ...] = ()) -> NextHop:
        return cls(endpoint=_addr(endpoint, "next hop endpoint"), label=label, encap=encap, outer=outer)

    @property
    def is_local(self) -> bool:
        return self.port is not None

    def to_json(self) -> dict[str, Any]:
        if self.port is not None:
            return {"port": self.port}
        d: dict[str, Any] = {"endpoint": str(self.endpoint), "label": self.label, "encap": self.encap}
        if self.outer:
            d["outer"] = list(self.outer)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NextHop:
        if "port" in d and d["port"] is not None:
            return cls(port=d["port"])
        outer = d.get("outer") or ()
        if not isinstance(outer, list | tuple):
            raise DriverError(f"next hop outer: {outer!r} is not a list of labels")
        return cls(
            endpoint=d.get("endpoint"), label=d.get("label"), encap=d.get("encap", "mpls-in-udp"),
            outer=tuple(outer),
        )


@dataclass(frozen=True, slots=True)
class RouteKey:
    """Identity of a route in a forwarder: (VRF, prefix)."""

    vrf: str
    prefix: IPNetwork

    def __post_init__(self) -> None:
        _set(self, "prefix", _net(self.prefix, f"route in {self.vrf} prefix"))

    def to_json(self) -> dict[str, Any]:
        return {"vrf": self.vrf, "prefix": str(self.prefix)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RouteKey:
        return cls(d["vrf"], d["prefix"])


@dataclass(frozen=True, slots=True)
class Route:
    """A FIB entry: prefix in a VRF, 1..512 next hops, and how to spread over them."""

    vrf: str
    prefix: IPNetwork
    next_hops: tuple[NextHop, ...]
    ecmp: EcmpMode = "per-flow"
    #: the destination moved away from this host (a released or standby port,
    #: docs/mobility.md): what arrives for it from the underlay is re-tunnelled
    #: to these next hops (local repair) instead of being dropped as transit (R8.1)
    moved: bool = False
    #: pre-installed backup paths (R11.2, docs/fast-reroute.md): used, with the
    #: same consistent selection, once every ``next_hops`` endpoint is down
    backup: tuple[NextHop, ...] = ()
    #: covered by an aggregate this vPE advertises (R10.3): what arrives on the aggregate
    #: label for it is re-tunnelled once to these next hops (never back to the sender)
    transit: bool = False

    def __post_init__(self) -> None:
        _set(self, "prefix", _net(self.prefix, f"route in {self.vrf} prefix"))
        nhs = tuple(self.next_hops)
        _set(self, "next_hops", nhs)
        if not nhs:
            raise DriverError(f"route {self.vrf} {self.prefix}: needs at least one next hop")
        if len(nhs) > MAX_NEXT_HOPS:
            raise DriverError(
                f"route {self.vrf} {self.prefix}: {len(nhs)} next hops, at most {MAX_NEXT_HOPS}"
            )
        if self.ecmp not in ECMP_MODES:
            raise DriverError(
                f"route {self.vrf} {self.prefix} ecmp: {self.ecmp!r} not in {ECMP_MODES}"
            )
        backup = tuple(self.backup)
        _set(self, "backup", backup)
        if len(backup) > MAX_NEXT_HOPS:
            raise DriverError(
                f"route {self.vrf} {self.prefix}: {len(backup)} backup next hops, "
                f"at most {MAX_NEXT_HOPS}"
            )

    @property
    def key(self) -> RouteKey:
        return RouteKey(self.vrf, self.prefix)

    def to_json(self) -> dict[str, Any]:
        return {
            "vrf": self.vrf,
            "prefix": str(self.prefix),
            "next_hops": [n.to_json() for n in self.next_hops],
            "ecmp": self.ecmp,
            **({"moved": True} if self.moved else {}),
            **({"backup": [n.to_json() for n in self.backup]} if self.backup else {}),
            **({"transit": True} if self.transit else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Route:
        return cls(
            d["vrf"],
            d["prefix"],
            tuple(NextHop.from_json(n) for n in d["next_hops"]),
            d.get("ecmp", "per-flow"),
            bool(d.get("moved", False)),
            tuple(NextHop.from_json(n) for n in d.get("backup", ())),
            bool(d.get("transit", False)),
        )


LabelKind = Literal["vrf", "port", "swap", "pop"]
LABEL_KINDS: tuple[str, ...] = ("vrf", "port", "swap", "pop")


@dataclass(frozen=True, slots=True)
class LabelEntry:
    """What a locally allocated label means on decapsulation.

    ``kind`` "vrf": IP lookup of the inner packet in VRF ``target`` (aggregate
    label, R10.3); "port": hand the inner packet to port ``target`` directly;
    "swap": no lookup at all, re-encapsulate toward the remote ``next_hop``
    with its label (an ASBR's Inter-AS option B, a policy re-label): the
    label is swapped, the inner TTL decremented (with labels below it, only
    the top one is swapped and the rest of the stack travels on: a transit
    labeled-unicast hop); "pop": the label of our own loopback (labeled
    unicast, Inter-AS option C): removed, the next label of the stack decides.
    """

    label: int
    kind: LabelKind
    target: str = ""
    next_hop: NextHop | None = None

    def __post_init__(self) -> None:
        _label(self.label, "label entry label")
        if self.label < MIN_LABEL:
            raise DriverError(f"label entry: label {self.label} is reserved (0..15)")
        if self.kind not in LABEL_KINDS:
            raise DriverError(f"label entry {self.label} kind: {self.kind!r} not in {LABEL_KINDS}")
        if self.kind == "swap":
            if self.next_hop is None or self.next_hop.is_local:
                raise DriverError(
                    f"label entry {self.label}: a swap entry needs a remote next hop "
                    f"(endpoint, label), got {self.next_hop!r}"
                )
        else:
            if not self.target and self.kind != "pop":
                raise DriverError(f"label entry {self.label} ({self.kind}): target is empty")
            if self.next_hop is not None:
                raise DriverError(
                    f"label entry {self.label} ({self.kind}): only a swap entry has a next hop"
                )

    @classmethod
    def pop(cls, label: int) -> LabelEntry:
        """``label`` (above another one) is ours: pop it, the next label decides."""
        return cls(label, "pop")

    @classmethod
    def swap(cls, label: int, next_hop: NextHop) -> LabelEntry:
        """``label`` arriving from the underlay leaves toward ``next_hop`` with its label."""
        return cls(label, "swap", "", next_hop)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "kind": self.kind, "target": self.target}
        if self.next_hop is not None:
            d["next_hop"] = self.next_hop.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabelEntry:
        nh = d.get("next_hop")
        return cls(
            d["label"], d["kind"], d.get("target", ""), None if nh is None else NextHop.from_json(nh)
        )


@dataclass(frozen=True, slots=True)
class ReplicationList:
    """Ingress replication (R3.2): remote vPEs that get one copy of VRF broadcast."""

    vrf: str
    members: tuple[NextHop, ...]

    def __post_init__(self) -> None:
        nhs = tuple(self.members)
        _set(self, "members", nhs)
        for m in nhs:
            if m.is_local:
                raise DriverError(
                    f"replication list of {self.vrf}: member {m.port!r} is not remote"
                )

    def to_json(self) -> dict[str, Any]:
        return {"vrf": self.vrf, "members": [m.to_json() for m in self.members]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReplicationList:
        return cls(d["vrf"], tuple(NextHop.from_json(m) for m in d["members"]))


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote vPE whose underlay address may send us tunnelled traffic (R13.2).

    Endpoints named by routes and replication lists are trusted implicitly;
    a Peer entry adds one that we have no route toward (one-way traffic).
    """

    endpoint: IPAddress

    def __post_init__(self) -> None:
        _set(self, "endpoint", _addr(self.endpoint, "peer endpoint"))

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": str(self.endpoint)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Peer:
        return cls(d["endpoint"])


@dataclass(frozen=True, slots=True)
class Redirect:
    """Traffic a local port sends into VRF ``vrf`` that matches the classifier is looked
    up in VRF ``target`` instead (service chains' flow classifier, bagpipe-bgp's
    ``redirect-rts``). An absent field matches everything; ``ports`` is a
    destination port range (TCP, UDP, SCTP)."""

    name: str
    vrf: str
    target: str
    source: IPNetwork | None = None
    destination: IPNetwork | None = None
    protocol: int | None = None
    ports: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.source is not None:
            _set(self, "source", _net(self.source, f"redirect {self.name} source"))
        if self.destination is not None:
            _set(self, "destination", _net(self.destination, f"redirect {self.name} destination"))
        if (self.source is not None and self.destination is not None
                and self.source.version != self.destination.version):
            raise DriverError(f"redirect {self.name}: source and destination of different IP versions")
        if self.protocol is not None and (type(self.protocol) is not int or not 0 <= self.protocol <= 255):
            raise DriverError(f"redirect {self.name} protocol: {self.protocol!r} is not 0..255")
        if self.ports is not None:
            lo, hi = self.ports
            if type(lo) is not int or type(hi) is not int or not 0 <= lo <= hi <= 65535:
                raise DriverError(f"redirect {self.name} ports: {self.ports!r} is not a range in 0..65535")
            _set(self, "ports", (lo, hi))
        if self.vrf == self.target:
            raise DriverError(f"redirect {self.name}: VRF {self.vrf} redirected onto itself")

    @property
    def version(self) -> int | None:
        p = self.destination or self.source
        return p.version if p is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "vrf": self.vrf, "target": self.target,
                "source": None if self.source is None else str(self.source),
                "destination": None if self.destination is None else str(self.destination),
                "protocol": self.protocol, "ports": None if self.ports is None else list(self.ports)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Redirect:
        ports = d.get("ports")
        return cls(d["name"], d["vrf"], d["target"], d.get("source"), d.get("destination"),
                   d.get("protocol"), None if ports is None else (ports[0], ports[1]))


@dataclass(frozen=True, slots=True)
class LocalSession:
    """A TCP session between the control plane and a host behind a VRF's port (PE-CE BGP
    reached through the VRF: the CE peers with ``local``, a gateway address of the VRF).

    The forwarder has one local interface toward the control plane's stack (a TUN
    device, address ``host``). A TCP segment a port of ``vrf`` sends from ``peer`` to
    ``local`` with port 179 at either end is written there as from ``mapped`` to
    ``host`` (destination port 179 becomes ``listen_port``, where the control plane
    listens); what the control plane sends to ``mapped`` leaves into the VRF as from
    ``local`` to ``peer`` (source port ``listen_port`` becomes 179), routed like any
    packet of the VRF. ``mapped`` is unique per forwarder: it is the session's key.
    """

    vrf: str
    peer: IPAddress
    local: IPAddress
    mapped: IPAddress
    host: IPAddress
    listen_port: int = 179

    def __post_init__(self) -> None:
        for f in ("peer", "local", "mapped", "host"):
            _set(self, f, _addr(getattr(self, f), f"local session {f}"))
        if len({self.peer.version, self.local.version, self.mapped.version, self.host.version}) != 1:
            raise DriverError(f"local session {self.mapped}: peer {self.peer}, local {self.local}, "
                              f"mapped and host {self.host} must be of one IP version")
        if self.mapped == self.host:
            raise DriverError(f"local session {self.mapped}: mapped and host are one address")
        if type(self.listen_port) is not int or not 1 <= self.listen_port <= 65535:
            raise DriverError(f"local session {self.mapped}: listen_port {self.listen_port!r} "
                              "is not 1..65535")

    def to_json(self) -> dict[str, Any]:
        return {"vrf": self.vrf, "peer": str(self.peer), "local": str(self.local),
                "mapped": str(self.mapped), "host": str(self.host), "listen_port": self.listen_port}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LocalSession:
        return cls(d["vrf"], d["peer"], d["local"], d["mapped"], d["host"], d.get("listen_port", 179))


@dataclass(frozen=True, slots=True)
class Batch:
    """A set of changes applied atomically: all of it, or (on error) none of it.

    Removals are applied before additions, so "remove X, add X" in one batch
    replaces X. Adding an existing key replaces it too. Removing an absent key
    is not an error (the control plane may be resyncing).
    """

    add_ports: tuple[Port, ...] = ()
    remove_ports: tuple[str, ...] = ()
    add_routes: tuple[Route, ...] = ()
    remove_routes: tuple[RouteKey, ...] = ()
    add_labels: tuple[LabelEntry, ...] = ()
    remove_labels: tuple[int, ...] = ()
    set_replication: tuple[ReplicationList, ...] = ()
    remove_replication: tuple[str, ...] = ()
    add_peers: tuple[Peer, ...] = ()
    remove_peers: tuple[IPAddress, ...] = field(default=())
    #: remote vPEs declared dead / alive again (R11.2): one entry switches every
    #: route through that endpoint to its other members or its backup
    down_endpoints: tuple[IPAddress, ...] = ()
    up_endpoints: tuple[IPAddress, ...] = ()
    add_redirects: tuple[Redirect, ...] = ()
    remove_redirects: tuple[str, ...] = ()
    #: control-plane sessions through a VRF's port (:class:`LocalSession`), removed by ``mapped``
    add_sessions: tuple[LocalSession, ...] = ()
    remove_sessions: tuple[IPAddress, ...] = ()

    def __post_init__(self) -> None:
        for f in self.__dataclass_fields__:
            _set(self, f, tuple(getattr(self, f)))
        _set(self, "remove_sessions", tuple(_addr(p, "remove session") for p in self.remove_sessions))
        _set(
            self,
            "remove_routes",
            tuple(k if isinstance(k, RouteKey) else RouteKey(*k) for k in self.remove_routes),
        )
        _set(self, "remove_peers", tuple(_addr(p, "remove peer") for p in self.remove_peers))
        _set(self, "down_endpoints", tuple(_addr(p, "down endpoint") for p in self.down_endpoints))
        _set(self, "up_endpoints", tuple(_addr(p, "up endpoint") for p in self.up_endpoints))

    def __len__(self) -> int:
        return sum(len(getattr(self, f)) for f in self.__dataclass_fields__)

    def to_json(self) -> dict[str, Any]:
        return {
            "add_ports": [p.to_json() for p in self.add_ports],
            "remove_ports": list(self.remove_ports),
            "add_routes": [r.to_json() for r in self.add_routes],
            "remove_routes": [k.to_json() for k in self.remove_routes],
            "add_labels": [e.to_json() for e in self.add_labels],
            "remove_labels": list(self.remove_labels),
            "set_replication": [r.to_json() for r in self.set_replication],
            "remove_replication": list(self.remove_replication),
            "add_peers": [p.to_json() for p in self.add_peers],
            "remove_peers": [str(p) for p in self.remove_peers],
            **({"down_endpoints": [str(p) for p in self.down_endpoints]} if self.down_endpoints else {}),
            **({"up_endpoints": [str(p) for p in self.up_endpoints]} if self.up_endpoints else {}),
            "add_redirects": [r.to_json() for r in self.add_redirects],
            "remove_redirects": list(self.remove_redirects),
            **({"add_sessions": [x.to_json() for x in self.add_sessions]} if self.add_sessions else {}),
            **({"remove_sessions": [str(p) for p in self.remove_sessions]} if self.remove_sessions else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Batch:
        try:
            return cls(
                add_ports=tuple(Port.from_json(p) for p in d.get("add_ports", ())),
                remove_ports=tuple(d.get("remove_ports", ())),
                add_routes=tuple(Route.from_json(r) for r in d.get("add_routes", ())),
                remove_routes=tuple(RouteKey.from_json(k) for k in d.get("remove_routes", ())),
                add_labels=tuple(LabelEntry.from_json(e) for e in d.get("add_labels", ())),
                remove_labels=tuple(d.get("remove_labels", ())),
                set_replication=tuple(
                    ReplicationList.from_json(r) for r in d.get("set_replication", ())
                ),
                remove_replication=tuple(d.get("remove_replication", ())),
                add_peers=tuple(Peer.from_json(p) for p in d.get("add_peers", ())),
                remove_peers=tuple(d.get("remove_peers", ())),
                down_endpoints=tuple(d.get("down_endpoints", ())),
                up_endpoints=tuple(d.get("up_endpoints", ())),
                add_redirects=tuple(Redirect.from_json(r) for r in d.get("add_redirects", ())),
                remove_redirects=tuple(d.get("remove_redirects", ())),
                add_sessions=tuple(LocalSession.from_json(x) for x in d.get("add_sessions", ())),
                remove_sessions=tuple(d.get("remove_sessions", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DriverError(f"batch: malformed ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True, slots=True)
class State:
    """Everything a forwarder holds; ``full_sync(state)`` replaces all of it."""

    ports: tuple[Port, ...] = ()
    routes: tuple[Route, ...] = ()
    labels: tuple[LabelEntry, ...] = ()
    replication: tuple[ReplicationList, ...] = ()
    peers: tuple[Peer, ...] = ()
    #: remote vPEs declared down (R11.2)
    down_endpoints: tuple[IPAddress, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    sessions: tuple[LocalSession, ...] = ()

    def __post_init__(self) -> None:
        for f in self.__dataclass_fields__:
            _set(self, f, tuple(getattr(self, f)))
        _set(self, "down_endpoints", tuple(_addr(p, "down endpoint") for p in self.down_endpoints))

    def as_batch(self) -> Batch:
        return Batch(
            add_ports=self.ports,
            add_routes=self.routes,
            add_labels=self.labels,
            set_replication=self.replication,
            add_peers=self.peers,
            down_endpoints=self.down_endpoints,
            add_redirects=self.redirects,
            add_sessions=self.sessions,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ports": [p.to_json() for p in self.ports],
            "routes": [r.to_json() for r in self.routes],
            "labels": [e.to_json() for e in self.labels],
            "replication": [r.to_json() for r in self.replication],
            "peers": [p.to_json() for p in self.peers],
            **({"down_endpoints": [str(p) for p in self.down_endpoints]} if self.down_endpoints else {}),
            "redirects": [r.to_json() for r in self.redirects],
            **({"sessions": [x.to_json() for x in self.sessions]} if self.sessions else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        try:
            return cls(
                ports=tuple(Port.from_json(p) for p in d.get("ports", ())),
                routes=tuple(Route.from_json(r) for r in d.get("routes", ())),
                labels=tuple(LabelEntry.from_json(e) for e in d.get("labels", ())),
                replication=tuple(ReplicationList.from_json(r) for r in d.get("replication", ())),
                peers=tuple(Peer.from_json(p) for p in d.get("peers", ())),
                down_endpoints=tuple(d.get("down_endpoints", ())),
                redirects=tuple(Redirect.from_json(r) for r in d.get("redirects", ())),
                sessions=tuple(LocalSession.from_json(x) for x in d.get("sessions", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DriverError(f"state: malformed ({type(exc).__name__}: {exc})") from None


class Driver(Protocol):
    """What every forwarding driver implements (userspace, a kernel one, a test double).

    The FIB channel server drives it (:class:`vpe.dataplane.channel.ServerConnection`);
    the forwarder process builds it by name from :mod:`vpe.dataplane.registry`.
    ``sync`` and ``apply`` are atomic: they raise a
    :class:`~vpe.dataplane.errors.DriverError` subclass and change nothing,
    or succeed in full.
    """

    def sync(self, state: State) -> None:
        """Replace everything the driver holds with ``state``."""
        ...

    def apply(self, batch: Batch) -> None:
        """Apply ``batch``: all of it, or (on error) none of it."""
        ...

    def counters(self) -> dict[str, Any]:
        """Packet counters: per port, per VRF, drops by reason, underlay (JSON-shaped)."""
        ...

    def state(self) -> State:
        """Everything the driver holds now (what a full sync would recreate)."""
        ...
