"""The userspace forwarding pipeline: pure code, bytes in, (where, bytes) out.

:class:`Forwarder` holds the programmed state (ports, per-VRF FIBs, labels,
replication lists, trusted peers) and turns one received frame or tunnel
payload into the frames/payloads to send. It does no I/O and reads no
clock, so every behaviour is testable with crafted bytes; the process
(:mod:`vpe.dataplane.userspace.process`) only moves bytes between sockets and here.

From a VM port (``from_port``):

* ARP requests and IPv6 Neighbor Solicitations for the gateway or for any
  address the VRF routes are answered with the port's gateway MAC (R3.3,
  R6.1): a proxy, never a bridge; no MAC learning, no flooding of ARP/ND.
* Anti-spoofing (R13.1, R13.3): source MAC and source IP must be the port's
  endpoint or one of its allowed address pairs, else a counted drop.
* Every IP packet is looked up in the port's VRF (R7.2); TTL/hop limit is
  decremented; ICMP/ICMPv6 errors come back for expiry, no route, and
  packets too big for the tunnel (MTU minus the encapsulation overhead).
* Local next hop: MACs rewritten (src gateway, dst endpoint). Remote next
  hop: label pushed, MPLS-in-UDP or MPLS-in-GRE toward the remote vPE (R7.1,
  R8.1), from a header template precomputed per next hop.
* Broadcast and multicast: one copy to each other local port of the VRF and
  one to each remote vPE in the VRF's replication list (R3.2).

From the underlay (``from_underlay``): only known vPEs are accepted (R13.2);
the label selects a VRF (IP lookup, local delivery; a destination that moved
to another vPE is re-tunnelled there, never back to the sender: local
repair, docs/mobility.md), a port (with an
ingress check: the inner source must be routed, in that VRF, via the vPE
that sent the packet), or a swap toward another vPE (the packet leaves
again with that vPE's label, inner TTL - 1: Inter-AS option B, re-label).

IPv4 and IPv6 are one pipeline: what differs (header layout, flow key,
ICMP, TTL checksum) is described by a :class:`_Family` object per family,
read as plain attributes on the fast path, so a feature is written once.

Payloads toward the underlay start at the UDP (resp. GRE) header: the
process hands them to a raw IP socket and the kernel adds the outer IP
header and routes it in the underlay.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Any
from zlib import crc32

from .. import nhg
from ..driver import (
    Batch,
    DriverError,
    IPAddress,
    LabelEntry,
    LocalSession,
    NextHop,
    Peer,
    Port,
    Redirect,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
from . import dhcp
from . import packets as P
from .fib import DEFAULT_LPM, ECMP_CODES, KEY4, PORTED, FibEntry, flow_hash, prefix_hash

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")
_II = struct.Struct("!II")
#: MPLS-in-UDP header (source port, 6635, length, checksum 0) + one label stack entry
_UDP_MPLS = struct.Struct("!HHHHI")
#: GRE header (no flags, protocol 0x8847) + one label stack entry
_GRE_MPLS = struct.Struct("!HHI")
_QQQQ = struct.Struct("!QQQQ")
_QQ = struct.Struct("!QQ")
_KEY6_TAIL = struct.Struct("!BHH")
#: octets before the inner packet: UDP (8) or GRE (4) header, then one label
_UDP_HDR = 12
_GRE_HDR = 8

_ALL4 = 0xFFFFFFFF
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
#: ``header()`` results meaning "too short" and "malformed" (in place of the total length)
_SHORT = -1
_BAD = -2


# ------------------------------------------------------------------ address families


class _Family:
    """What IPv4 and IPv6 differ in, as the pipeline sees them: one object per family.

    Offsets are from the start of the IP header. The pipeline is written once
    over these: plain attributes on the fast path (no call), small methods
    where the packet formats really differ (header parsing, flow key, ICMP).
    """

    __slots__ = ()
    version: int
    #: index of this family's slot in per-family tuples (0: IPv4, 1: IPv6)
    idx: int
    ethertype: int
    ttl_off: int
    proto_off: int
    src_off: int
    dst_off: int
    addr_len: int
    #: IPv4's header checksum must follow a TTL change (RFC 1624 update)
    checksum: bool
    #: ``dst >> group_shift == group_prefix``: a multicast destination
    group_shift: int
    group_prefix: int
    #: the limited broadcast address (-1: none, never equal to an address)
    broadcast: int
    #: a group-membership protocol never forwarded (IGMP; -1: none)
    membership_proto: int
    icmp_proto: int
    echo: int
    echo_reply: int
    time_exceeded: tuple[int, int]
    no_route: tuple[int, int]
    too_big: tuple[int, int]
    max_quote: int
    #: drop reasons of a malformed header received from a port: (short, bad)
    port_header_drops: tuple[str, str]
    #: prefix of the neighbor resolution drop reasons ("arp-...", "nd-...")
    neighbor: str
    #: what the fast path reads, unpacked at once into locals (an attribute read
    #: per use would cost more than the code it guards):
    #: (idx, group_shift, group_prefix, broadcast, TTL offset in a frame, checksum)
    fast: tuple[int, int, int, int, int, bool]

    def header(self, pkt: Any, off: int, n: int) -> tuple[int, int, int, int]:
        """(total length, header length, source, destination) of the packet at ``off``.

        A total of :data:`_SHORT` or :data:`_BAD` means the header is unusable.
        """
        raise NotImplementedError

    def flow_hash(self, pkt: Any, off: int, hl: int, total: int, src: int, dst: int) -> int:
        """:func:`~.fib.flow_hash` of the packet at ``off``, from what ``header`` parsed."""
        raise NotImplementedError

    def may_signal_too_big(self, pkt: Any, off: int) -> bool:
        """Whether a packet too big for its next hop gets an ICMP error (else: dropped/sent)."""
        raise NotImplementedError

    def no_error_about(self, pkt: Any, off: int, total: int) -> bool:
        """True for packets no ICMP error may be sent about (errors, later fragments)."""
        raise NotImplementedError

    def build_icmp(
        self, src: bytes, dst: bytes, icmp_type: int, code: int, rest: bytes, body: Any
    ) -> bytes:
        raise NotImplementedError

    def multicast_mac(self, pkt: Any, off: int) -> bytes:
        """The Ethernet group address of the packet's multicast destination."""
        raise NotImplementedError

    def is_link_local(self, addr: int) -> bool:
        return False


class _IPv4(_Family):
    __slots__ = ()
    version = 4
    idx = 0
    ethertype = P.ETH_P_IP
    ttl_off = 8
    proto_off = 9
    src_off = 12
    dst_off = 16
    addr_len = 4
    checksum = True
    group_shift = 28
    group_prefix = 0xE
    broadcast = _ALL4
    membership_proto = P.IPPROTO_IGMP
    icmp_proto = P.IPPROTO_ICMP
    echo = P.ICMP_ECHO
    echo_reply = P.ICMP_ECHO_REPLY
    time_exceeded = (P.ICMP_TIME_EXCEEDED, 0)
    no_route = (P.ICMP_UNREACH, P.ICMP_UNREACH_NET)
    too_big = (P.ICMP_UNREACH, P.ICMP_UNREACH_NEEDFRAG)
    max_quote = P.ICMP4_MAX_QUOTE
    port_header_drops = ("ipv4-short", "ipv4-bad-header")
    neighbor = "arp"
    fast = (0, 28, 0xE, _ALL4, 14 + 8, True)

    def header(self, pkt: Any, off: int, n: int) -> tuple[int, int, int, int]:
        # the pipeline inlines this in its two entry points (see _port_ip)
        if n < off + 20:
            return _SHORT, 0, 0, 0
        vihl = pkt[off]
        hl = (vihl & 0x0F) * 4
        total = (pkt[off + 2] << 8) | pkt[off + 3]
        if vihl >> 4 != 4 or hl < 20 or total < hl or n < off + total:
            return _BAD, 0, 0, 0
        src, dst = _II.unpack_from(pkt, off + 12)
        return total, hl, src, dst

    def flow_hash(self, pkt: Any, off: int, hl: int, total: int, src: int, dst: int) -> int:
        pa = pb = 0
        proto = pkt[off + 9]
        if proto in PORTED and not (_H.unpack_from(pkt, off + 6)[0] & 0x3FFF) and total >= hl + 4:
            pa, pb = _HH.unpack_from(pkt, off + hl)
            if pa > pb:
                pa, pb = pb, pa
        return crc32(
            KEY4.pack(src, dst, proto, pa, pb) if src < dst else KEY4.pack(dst, src, proto, pa, pb)
        )

    def may_signal_too_big(self, pkt: Any, off: int) -> bool:
        return bool(pkt[off + 6] & 0x40)  # DF

    def no_error_about(self, pkt: Any, off: int, total: int) -> bool:
        icmp_off = off + (pkt[off] & 0x0F) * 4
        if (
            pkt[off + 9] == P.IPPROTO_ICMP
            and icmp_off < len(pkt)
            and pkt[icmp_off] in _ICMP4_ERRORS
        ):
            return True  # never an error about an error (RFC 1122 3.2.2)
        return bool(P.ipv4_is_fragment(pkt, off) and (_H.unpack_from(pkt, off + 6)[0] & 0x1FFF))

    def build_icmp(
        self, src: bytes, dst: bytes, icmp_type: int, code: int, rest: bytes, body: Any
    ) -> bytes:
        return P.build_icmp4_packet(src, dst, icmp_type, code, rest, body)

    def multicast_mac(self, pkt: Any, off: int) -> bytes:
        return P.ipv4_multicast_mac(pkt[off + 16 : off + 20])


class _IPv6(_Family):
    __slots__ = ()
    version = 6
    idx = 1
    ethertype = P.ETH_P_IPV6
    ttl_off = 7
    proto_off = 6
    src_off = 8
    dst_off = 24
    addr_len = 16
    checksum = False
    group_shift = 120
    group_prefix = 0xFF
    broadcast = -1
    membership_proto = -1  # MLD is ICMPv6, taken apart with Neighbor Discovery
    icmp_proto = P.IPPROTO_ICMPV6
    echo = P.ICMP6_ECHO
    echo_reply = P.ICMP6_ECHO_REPLY
    time_exceeded = (P.ICMP6_TIME_EXCEEDED, 0)
    no_route = (P.ICMP6_UNREACH, 0)
    too_big = (P.ICMP6_PACKET_TOO_BIG, 0)
    max_quote = P.ICMP6_MAX_QUOTE
    port_header_drops = ("ipv6-bad-header", "ipv6-bad-header")
    neighbor = "nd"
    fast = (1, 120, 0xFF, -1, 14 + 7, False)

    def header(self, pkt: Any, off: int, n: int) -> tuple[int, int, int, int]:
        if n < off + P.IPV6_LEN:
            return _SHORT, 0, 0, 0
        total = P.IPV6_LEN + ((pkt[off + 4] << 8) | pkt[off + 5])
        if pkt[off] >> 4 != 6 or n < off + total:
            return _BAD, 0, 0, 0
        s_hi, s_lo, d_hi, d_lo = _QQQQ.unpack_from(pkt, off + 8)
        return total, P.IPV6_LEN, (s_hi << 64) | s_lo, (d_hi << 64) | d_lo

    def flow_hash(self, pkt: Any, off: int, hl: int, total: int, src: int, dst: int) -> int:
        proto = pkt[off + 6]
        pa = pb = 0
        if proto in PORTED and total >= P.IPV6_LEN + 4:
            pa, pb = _HH.unpack_from(pkt, off + P.IPV6_LEN)
            if pa > pb:
                pa, pb = pb, pa
        a = bytes(pkt[off + 8 : off + 24])
        b = bytes(pkt[off + 24 : off + 40])
        if a > b:
            a, b = b, a
        return crc32(a + b + _KEY6_TAIL.pack(proto, pa, pb))

    def may_signal_too_big(self, pkt: Any, off: int) -> bool:
        return True  # IPv6 routers never fragment (RFC 8200 5)

    def no_error_about(self, pkt: Any, off: int, total: int) -> bool:
        # never an error about an error (RFC 4443 2.4(e))
        return bool(pkt[off + 6] == P.IPPROTO_ICMPV6 and total > P.IPV6_LEN and pkt[off + 40] < 128)

    def build_icmp(
        self, src: bytes, dst: bytes, icmp_type: int, code: int, rest: bytes, body: Any
    ) -> bytes:
        return P.build_icmp6_packet(src, dst, icmp_type, code, rest, body)

    def multicast_mac(self, pkt: Any, off: int) -> bytes:
        return P.ipv6_multicast_mac(pkt[off + 24 : off + 40])

    def is_link_local(self, addr: int) -> bool:
        return _is_ll6(addr)


_V4 = _IPv4()
_V6 = _IPv6()
#: IP version nibble -> family (None: not IP)
_BY_VERSION: tuple[_Family | None, ...] = (None,) * 4 + (_V4, None, _V6) + (None,) * 9


def _is_ll6(addr: int) -> bool:
    return addr >> 118 == 0x3FA


class ToPort:
    """Send the frame out of local port ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ToPort({self.name!r})"


class ToUnderlay:
    """Send the payload (UDP or GRE header onward) to ``endpoint`` over IP ``proto``."""

    __slots__ = ("endpoint", "proto", "family")

    def __init__(self, endpoint: str, proto: int, family: int) -> None:
        self.endpoint = endpoint
        self.proto = proto
        self.family = family

    def __repr__(self) -> str:
        return f"ToUnderlay({self.endpoint!r}, proto={self.proto})"


class ToLocal:
    """Write the IP packet to the forwarder's local interface toward the control plane
    (a TUN device): a PE-CE session reached through a VRF's port (:class:`LocalSession`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ToLocal()"


#: the one local-interface target
TO_LOCAL = ToLocal()

Output = tuple[ToPort | ToUnderlay | ToLocal, bytes | bytearray]

#: the BGP port: a local session carries only TCP with it at one end (RFC 4271)
BGP_PORT = 179


class PortCounters:
    __slots__ = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops")

    def __init__(self) -> None:
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = self.drops = 0

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class VrfCounters:
    __slots__ = ("routed_local", "encapsulated", "decapsulated", "replicated", "redirected", "drops",
                 "classified")

    def __init__(self) -> None:
        self.routed_local = self.encapsulated = self.decapsulated = 0
        self.replicated = self.redirected = self.drops = 0
        #: packets a flow classifier sent to another VRF's lookup (service chains)
        self.classified = 0

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Endpoint:
    """Liveness of one remote vPE, shared by every adjacency toward it (R11.2)."""

    __slots__ = ("down",)

    def __init__(self) -> None:
        self.down = False


class _LocalAdj:
    __slots__ = ("port",)
    is_local = True
    ep = None

    def __init__(self, port: str) -> None:
        self.port = port


class _TunnelAdj:
    """A remote next hop with its precomputed encapsulation header."""

    __slots__ = (
        "endpoint",
        "label",
        "encap",
        "out",
        "template",
        "tlen",
        "is_udp",
        "max_inner",
        "label_word",
        "ep",
        "outer",
    )
    is_local = False

    def __init__(
        self, endpoint: IPAddress, label: int, encap: str, underlay_mtu: int, ep: _Endpoint,
        outer: tuple[int, ...] = (),
    ) -> None:
        self.ep = ep
        self.endpoint = str(endpoint)
        self.label = label
        self.encap = encap
        self.is_udp = encap == "mpls-in-udp"
        proto = P.IPPROTO_UDP if self.is_udp else P.IPPROTO_GRE
        self.out = ToUnderlay(self.endpoint, proto, endpoint.version)
        #: label stack entries pushed above ``label`` (outermost first), without their TTL
        self.outer = tuple(x << 12 for x in outer)
        template = P.udp_encap_template(label) if self.is_udp else P.gre_encap_template(label)
        if outer:  # the shim, then the outer entries (TTL 255), then the bottom one
            shim = 8 if self.is_udp else 4
            template = (template[:shim] + b"".join(P.mpls_entry(x, bos=False, ttl=255) for x in outer)
                        + template[shim:])
        self.template = template
        self.tlen = len(self.template)
        self.max_inner = underlay_mtu - P.tunnel_overhead(encap, endpoint.version == 6, 1 + len(outer))
        #: label stack entry without its TTL (bottom of stack, TC 0): OR the TTL in
        self.label_word = (label << 12) | 0x100


class _PortFamily:
    """One address family of a port, compiled: addresses as ints, Ethernet header prebuilt."""

    __slots__ = ("own", "pairs", "gw", "gw_first", "eth")

    def __init__(self, port: Port, fam: _Family, mac: bytes, gw_mac: bytes) -> None:
        v = fam.version
        self.eth = P.eth_header(mac, gw_mac, fam.ethertype)
        self.own = frozenset(int(i.ip) for i in port.ips if i.version == v)
        #: allowed address pairs: (network, netmask, MAC)
        self.pairs = tuple(
            (
                int(p.prefix.network_address),
                int(p.prefix.netmask),
                P.mac_bytes(p.mac) if p.mac else mac,
            )
            for p in port.allowed_pairs
            if p.prefix.version == v
        )
        self.gw = frozenset(int(a) for a in port.gateway_ips if a.version == v)
        gws = [a for a in port.gateway_ips if a.version == v]
        # ICMPv6 errors come from a global gateway address when there is one
        first = [a for a in gws if not (v == 6 and a.is_link_local)] or gws
        #: source address of the ICMP errors this port's endpoint gets
        self.gw_first = first[0].packed if first else None


class _PortRt:
    """A port compiled for the fast path; ``fams[family.idx]`` holds its per-family part."""

    __slots__ = (
        "port",
        "name",
        "vrf",
        "vrf_rt",
        "out",
        "mac",
        "gw_mac",
        "pair_macs",
        "fams",
        "v4",
        "v6",
        "mtu",
        "counters",
    )

    def __init__(self, port: Port, counters: PortCounters, vrf_rt: _VrfRt) -> None:
        self.port = port
        self.name = port.name
        self.vrf = port.vrf
        #: the port's VRF (compiled VRFs live as long as the forwarder's tables)
        self.vrf_rt = vrf_rt
        self.out = ToPort(port.name)
        self.mac = P.mac_bytes(port.mac)
        self.gw_mac = P.mac_bytes(port.gateway_mac)
        self.pair_macs = frozenset(P.mac_bytes(p.mac) for p in port.allowed_pairs if p.mac)
        self.v4 = _PortFamily(port, _V4, self.mac, self.gw_mac)
        self.v6 = _PortFamily(port, _V6, self.mac, self.gw_mac)
        self.fams = (self.v4, self.v6)
        self.mtu = port.mtu
        self.counters = counters

    def source_ok(self, src: int, mac: Any, pf: _PortFamily) -> bool:
        """R13.1: (source IP, source MAC) belongs to this port's endpoint or a pair."""
        if src in pf.own and mac == self.mac:
            return True
        return any(src & mask == net and mac == pmac for net, mask, pmac in pf.pairs)


class _VrfRt:
    """A VRF compiled: ``lpms`` and ``bcast`` are per family (``[family.idx]``)."""

    __slots__ = ("name", "lpms", "ports", "replication", "bcast", "counters", "redirects")

    def __init__(self, name: str, lpm: Any) -> None:
        self.name = name
        self.lpms = (lpm(32), lpm(128))
        self.ports: tuple[str, ...] = ()
        self.replication: tuple[_TunnelAdj, ...] = ()
        #: directed broadcast addresses of the VRF's IPv4 subnets (IPv6 has none)
        self.bcast: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
        self.counters = VrfCounters()
        #: flow classifiers (service chains): (family index, src lo, src hi, dst lo,
        #: dst hi, protocol or -1, port lo, port hi, target VRF), in name order
        self.redirects: tuple[tuple[Any, ...], ...] = ()


#: the Forwarder's tables, all replaced together by a full sync (and restored if it is refused)
_TABLES = ("ports", "routes", "labels", "replication", "peers", "_prt", "_vrfs", "_adj_cache",
           "_ep_refs", "_known", "_swaps", "redirects", "_eps", "_port_labels", "sessions",
           "_sess_in")


class Forwarder:
    """The forwarding state of one host and the packet pipeline over it."""

    def __init__(
        self,
        underlay_ips: Iterable[str | IPAddress] = (),
        underlay_mtu: int = 1500,
        lpm: Any = DEFAULT_LPM,
    ) -> None:
        self.underlay_ips = tuple(ipaddress.ip_address(str(a)) for a in underlay_ips)
        self.underlay_families = frozenset(a.version for a in self.underlay_ips)
        self.underlay_mtu = underlay_mtu
        self._lpm = lpm
        self._reset()
        self.drops: dict[str, int] = {}
        self.underlay = {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0}
        self._port_counters: dict[str, PortCounters] = {}
        #: packets that left again through a label swap entry
        self.swapped = 0
        #: packets to / from the control plane's local interface (PE-CE sessions)
        self.local_io = {"to_local": 0, "from_local": 0}

    def _reset(self) -> None:
        self.ports: dict[str, Port] = {}
        self.routes: dict[RouteKey, Route] = {}
        self.labels: dict[int, LabelEntry] = {}
        self.replication: dict[str, ReplicationList] = {}
        self.peers: set[IPAddress] = set()
        self._prt: dict[str, _PortRt] = {}
        self._vrfs: dict[str, _VrfRt] = {}
        self._adj_cache: dict[tuple[Any, ...], Any] = {}
        self._ep_refs: dict[str, int] = {}
        self._known: frozenset[str] = frozenset()
        #: label -> where a "swap" entry sends the packet
        self._swaps: dict[int, _TunnelAdj] = {}
        #: remote endpoint -> its liveness (down_endpoints flips one flag: R11.2)
        self._eps: dict[IPAddress, _Endpoint] = {}
        #: port name -> the label a "port" entry advertises it with (member identity)
        self._port_labels: dict[str, int] = {}
        #: flow classifier redirects by name (service chains)
        self.redirects: dict[str, Redirect] = {}
        #: control-plane sessions through a port, by mapped address, and by
        #: (VRF, address length, peer address as an integer) for what the port sends
        self.sessions: dict[IPAddress, LocalSession] = {}
        self._sess_in: dict[tuple[str, int, int], LocalSession] = {}

    # ----------------------------------------------------------------- programming

    def check(self, batch: Batch) -> None:
        """Raise :class:`DriverError` if ``batch`` cannot be applied; changes nothing."""
        for r in batch.add_routes:
            fam = r.prefix.version
            for nh in (*r.next_hops, *r.backup):
                self._check_nh(nh, f"route {r.vrf} {r.prefix}")
            if fam not in (4, 6):  # pragma: no cover - ipaddress guarantees it
                raise DriverError(f"route {r.vrf} {r.prefix}: unknown family")
        for rl in batch.set_replication:
            for nh in rl.members:
                self._check_nh(nh, f"replication list of {rl.vrf}")
        for e in batch.add_labels:
            if e.next_hop is not None:
                self._check_nh(e.next_hop, f"label entry {e.label}")
        ifnames = {p.name: p.ifname for p in self.ports.values()}
        for name in batch.remove_ports:
            ifnames.pop(name, None)
        for p in batch.add_ports:
            ifnames[p.name] = p.ifname
        sessions = self.sessions_after(batch)
        hosts = {x.host for x in sessions.values()}
        peers: dict[tuple[str, IPAddress], IPAddress] = {}
        for x in sessions.values():
            if x.mapped in hosts:
                raise DriverError(f"local session {x.mapped}: the mapped address is the host "
                                  "address of another session")
            other = peers.setdefault((x.vrf, x.peer), x.mapped)
            if other != x.mapped:
                raise DriverError(f"local session {x.mapped}: VRF {x.vrf} peer {x.peer} already "
                                  f"has session {other}")
        seen: dict[str, str] = {}
        for name, ifname in ifnames.items():
            if ifname in seen:
                raise DriverError(
                    f"port {name}: ifname {ifname!r} is already used by port {seen[ifname]}"
                )
            seen[ifname] = name

    def sessions_after(self, batch: Batch) -> dict[IPAddress, LocalSession]:
        """The local sessions as they will be once ``batch`` is applied, by mapped address."""
        sessions = dict(self.sessions)
        for m in batch.remove_sessions:
            sessions.pop(m, None)
        for x in batch.add_sessions:
            sessions[x.mapped] = x
        return sessions

    def _check_nh(self, nh: NextHop, where: str) -> None:
        if nh.endpoint is not None and nh.endpoint.version not in self.underlay_families:
            raise DriverError(
                f"{where}: next hop {nh.endpoint} needs an IPv{nh.endpoint.version} "
                f"underlay address, the forwarder has {[str(a) for a in self.underlay_ips]}"
            )

    def apply(self, batch: Batch) -> None:
        """Apply ``batch`` atomically: it is checked first, then applied in full."""
        self.check(batch)
        touched: set[str] = set()
        for name in batch.remove_ports:
            old = self.ports.pop(name, None)
            if old is not None:
                self._prt.pop(name, None)
                touched.add(old.vrf)
        for key in batch.remove_routes:
            self._del_route(key)
        for label in batch.remove_labels:
            self.labels.pop(label, None)
            self._swaps.pop(label, None)
        for vrf in batch.remove_replication:
            self.replication.pop(vrf, None)
            touched.add(vrf)
        for peer in batch.remove_peers:
            self.peers.discard(peer)
        for m in batch.remove_sessions:
            old_s = self.sessions.pop(m, None)
            if old_s is not None:
                self._sess_in.pop(_sess_key(old_s), None)
        for x in batch.add_sessions:
            old_s = self.sessions.pop(x.mapped, None)
            if old_s is not None:
                self._sess_in.pop(_sess_key(old_s), None)
            self.sessions[x.mapped] = x
            self._sess_in[_sess_key(x)] = x
        for rname in batch.remove_redirects:
            old_r = self.redirects.pop(rname, None)
            if old_r is not None:
                touched.add(old_r.vrf)
        for port in batch.add_ports:
            old = self.ports.get(port.name)
            if old is not None:
                touched.add(old.vrf)
            self.ports[port.name] = port
            counters = self._port_counters.setdefault(port.name, PortCounters())
            self._prt[port.name] = _PortRt(port, counters, self._vrf(port.vrf))
            touched.add(port.vrf)
        for entry in batch.add_labels:
            self.labels[entry.label] = entry
            if entry.next_hop is not None:
                self._swaps[entry.label] = self._adj(entry.next_hop)
            else:
                self._swaps.pop(entry.label, None)
        if batch.add_labels or batch.remove_labels:
            self._port_labels = {
                e.target: e.label for e in self.labels.values() if e.kind == "port"
            }
        for route in batch.add_routes:
            self._add_route(route)
        for ep in batch.up_endpoints:
            self._endpoint(ep).down = False
        for ep in batch.down_endpoints:
            self._endpoint(ep).down = True
        for rl in batch.set_replication:
            self.replication[rl.vrf] = rl
            touched.add(rl.vrf)
        self.peers.update(p.endpoint for p in batch.add_peers)
        for rd in batch.add_redirects:
            old_r = self.redirects.get(rd.name)
            if old_r is not None:
                touched.add(old_r.vrf)
            self.redirects[rd.name] = rd
            touched.add(rd.vrf)
        for vrf in touched:
            self._rebuild_vrf(vrf)
        self._rebuild_known()

    def full_sync(self, state: State) -> None:
        """Replace everything with ``state`` (atomic: checked before anything changes)."""
        batch = state.as_batch()
        saved = [getattr(self, name) for name in _TABLES]
        self._reset()
        try:
            self.check(batch)
        except DriverError:
            for name, value in zip(_TABLES, saved, strict=True):
                setattr(self, name, value)
            raise
        self.apply(batch)

    def state(self) -> State:
        return State(
            ports=tuple(self.ports.values()),
            routes=tuple(self.routes.values()),
            labels=tuple(self.labels.values()),
            replication=tuple(self.replication.values()),
            peers=tuple(Peer(p) for p in sorted(self.peers, key=str)),
            down_endpoints=tuple(sorted((a for a, e in self._eps.items() if e.down), key=str)),
            redirects=tuple(self.redirects[n] for n in sorted(self.redirects)),
            sessions=tuple(self.sessions[m] for m in sorted(self.sessions, key=str)),
        )

    def _endpoint(self, addr: IPAddress) -> _Endpoint:
        ep = self._eps.get(addr)
        if ep is None:
            ep = self._eps[addr] = _Endpoint()
        return ep

    def _vrf(self, name: str) -> _VrfRt:
        vrf = self._vrfs.get(name)
        if vrf is None:
            vrf = self._vrfs[name] = _VrfRt(name, self._lpm)
        return vrf

    def _adj(self, nh: NextHop) -> Any:
        if nh.port is not None:
            key: tuple[Any, ...] = ("port", nh.port)
        else:
            key = (nh.endpoint, nh.label, nh.encap, nh.outer)
        adj = self._adj_cache.get(key)
        if adj is None:
            if nh.port is not None:
                adj = _LocalAdj(nh.port)
            else:
                assert nh.endpoint is not None and nh.label is not None
                adj = _TunnelAdj(
                    nh.endpoint, nh.label, nh.encap, self.underlay_mtu,
                    self._endpoint(nh.endpoint), nh.outer,
                )
            self._adj_cache[key] = adj
        return adj

    def _add_route(self, route: Route) -> None:
        key = route.key
        if key in self.routes:
            self._del_route(key)
        self.routes[key] = route
        vrf = self._vrf(route.vrf)
        net = int(route.prefix.network_address)
        plen = route.prefix.prefixlen
        bits = route.prefix.max_prefixlen
        phash = prefix_hash(net, plen, bits)
        mode = ECMP_CODES[route.ecmp]
        backup = self._entry(route, route.backup, mode, phash, None) if route.backup else None
        entry = self._entry(route, route.next_hops, mode, phash, backup)
        vrf.lpms[0 if bits == 32 else 1].insert(net, plen, entry)
        for ep in entry.endpoints:
            self._ep_refs[ep] = self._ep_refs.get(ep, 0) + 1

    def _entry(
        self,
        route: Route,
        nhs: tuple[NextHop, ...],
        mode: int,
        phash: int,
        backup: FibEntry | None,
    ) -> FibEntry:
        """The members of ``nhs`` in rank order with their seeds (:mod:`vpe.dataplane.nhg`)."""
        if len(nhs) == 1:
            return FibEntry(route, (self._adj(nhs[0]),), mode, phash, (0,), backup)
        own = self.underlay_ips[0] if self.underlay_ips else None
        port_labels = self._port_labels
        idents = [nhg.identity(nh, own, port_labels.get(nh.port or "")) for nh in nhs]
        ranked = nhg.order(idents)
        return FibEntry(
            route,
            tuple(self._adj(nhs[i]) for i in ranked),
            mode,
            phash,
            tuple(nhg.seed(idents[i]) for i in ranked),
            backup,
        )

    def _del_route(self, key: RouteKey) -> None:
        route = self.routes.pop(key, None)
        if route is None:
            return
        vrf = self._vrf(key.vrf)
        lpm = vrf.lpms[0 if key.prefix.version == 4 else 1]
        net = int(key.prefix.network_address)
        entry = lpm.exact(net, key.prefix.prefixlen)
        lpm.remove(net, key.prefix.prefixlen)
        if entry is not None:
            for ep in entry.endpoints:
                left = self._ep_refs.get(ep, 0) - 1
                if left > 0:
                    self._ep_refs[ep] = left
                else:
                    self._ep_refs.pop(ep, None)

    def _rebuild_vrf(self, name: str) -> None:
        vrf = self._vrf(name)
        members = [p for p in self.ports.values() if p.vrf == name]
        vrf.ports = tuple(p.name for p in members)
        bcast4 = frozenset(
            int(i.network.broadcast_address)
            for p in members
            for i in p.ips
            if i.version == 4 and i.network.prefixlen < 31
        )
        vrf.bcast = (bcast4, frozenset())
        rl = self.replication.get(name)
        vrf.replication = tuple(self._adj(m) for m in rl.members) if rl else ()
        vrf.redirects = tuple(c for _, r in sorted(self.redirects.items()) if r.vrf == name
                              for c in self._compile_redirect(r))

    def _compile_redirect(self, r: Redirect) -> list[tuple[Any, ...]]:
        """One matcher per IP family the classifier applies to (both without a prefix)."""
        versions = (r.version,) if r.version is not None else (4, 6)
        return [self._matcher(r, 0 if v == 4 else 1) for v in versions]

    def _matcher(self, r: Redirect, idx: int) -> tuple[Any, ...]:
        bits = 32 if idx == 0 else 128

        def span(net: Any) -> tuple[int, int]:
            if net is None:
                return 0, (1 << bits) - 1
            return int(net.network_address), int(net.broadcast_address)

        slo, shi = span(r.source)
        dlo, dhi = span(r.destination)
        plo, phi = r.ports if r.ports is not None else (0, 65535)
        return (idx, slo, shi, dlo, dhi, -1 if r.protocol is None else r.protocol, plo, phi,
                r.ports is not None, self._vrf(r.target))

    def _rebuild_known(self) -> None:
        known = set(self._ep_refs)
        known.update(str(p) for p in self.peers)
        for rl in self.replication.values():
            known.update(str(m.endpoint) for m in rl.members)
        # a swap entry's next hop sends the return traffic (Inter-AS option B)
        known.update(adj.endpoint for adj in self._swaps.values())
        self._known = frozenset(known)

    # ------------------------------------------------------------------- counters

    def counters(self) -> dict[str, Any]:
        return {
            "ports": {n: c.to_json() for n, c in self._port_counters.items() if n in self.ports},
            "vrfs": {n: v.counters.to_json() for n, v in self._vrfs.items()},
            "drops": dict(self.drops),
            "underlay": dict(self.underlay),
            "swapped": self.swapped,
            "local_sessions": dict(self.local_io),
        }

    def _drop(
        self, reason: str, prt: _PortRt | None = None, vrf: _VrfRt | None = None
    ) -> list[Output]:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if prt is not None:
            prt.counters.drops += 1
        if vrf is not None:
            vrf.counters.drops += 1
        return []

    @staticmethod
    def _tx(prt: _PortRt, buf: bytes | bytearray, out: list[Output]) -> None:
        c = prt.counters
        c.tx_packets += 1
        c.tx_bytes += len(buf)
        out.append((prt.out, buf))

    def _tx_under(self, adj: _TunnelAdj, buf: bytearray, out: list[Output]) -> None:
        u = self.underlay
        u["tx_packets"] += 1
        u["tx_bytes"] += len(buf)
        out.append((adj.out, buf))

    # --------------------------------------------------------------- from a port

    def from_port(self, port: str, frame: bytes | bytearray | memoryview) -> list[Output]:
        """Process one Ethernet frame received on local port ``port``."""
        prt = self._prt.get(port)
        if prt is None:
            return self._drop("unknown-port")
        n = len(frame)
        c = prt.counters
        c.rx_packets += 1
        c.rx_bytes += n
        if n < P.ETH_LEN:
            return self._drop("runt", prt)
        src_mac = frame[6:12]
        if src_mac != prt.mac and bytes(src_mac) not in prt.pair_macs:
            return self._drop("spoof-mac", prt)
        etype = (frame[12] << 8) | frame[13]
        if etype == P.ETH_P_IP:
            return self._port_ip(prt, prt.v4, _V4, frame, n, src_mac)
        if etype == P.ETH_P_IPV6:
            return self._port_ip(prt, prt.v6, _V6, frame, n, src_mac)
        if etype == P.ETH_P_ARP:
            return self._port_arp(prt, frame)
        return self._drop("ethertype", prt)

    def _neighbor_refused(self, prt: _PortRt, pf: _PortFamily, fam: _Family, target: int) -> str:
        """ARP / Neighbor Discovery (R3.3, R6.1): "" when the gateway MAC answers for
        ``target`` (a gateway address, or any address the VRF routes), else the drop reason."""
        if target in pf.gw:
            return ""
        if target in pf.own or any(target & m == net for net, m, _ in pf.pairs):
            return f"{fam.neighbor}-self"
        vrf = self._vrfs.get(prt.vrf)
        if fam.is_link_local(target) or vrf is None or vrf.lpms[fam.idx].lookup(target) is None:
            return f"{fam.neighbor}-no-route"
        return ""

    def _port_arp(self, prt: _PortRt, frame: Any) -> list[Output]:
        try:
            op, sha, spa, _tha, tpa = P.parse_arp(frame)
        except P.PacketError as exc:
            return self._drop(exc.reason, prt)
        if op != 1:
            return self._drop("arp-not-request", prt)
        if sha != bytes(frame[6:12]):
            return self._drop("spoof-arp", prt)
        (spa_i,) = _I.unpack(spa)
        if spa_i == 0:
            return self._drop("arp-probe", prt)
        if not prt.source_ok(spa_i, sha, prt.v4):
            return self._drop("spoof-arp", prt)
        refused = self._neighbor_refused(prt, prt.v4, _V4, _I.unpack(tpa)[0])
        if refused:
            return self._drop(refused, prt)
        out: list[Output] = []
        self._tx(prt, P.build_arp_reply_frame(prt.gw_mac, tpa, sha, spa), out)
        return out

    def _port_nd(
        self, prt: _PortRt, frame: Any, total: int, src: int, icmp_type: int
    ) -> list[Output]:
        """Neighbor Discovery from a VM: answer NS for the gateway or routed targets."""
        if icmp_type != P.ND_NEIGHBOR_SOLICIT:
            return self._drop("nd-ignored" if icmp_type not in P.MLD_TYPES else "mld", prt)
        if frame[21] != 255 or frame[55] != 0 or total < P.IPV6_LEN + 24:
            return self._drop("nd-invalid", prt)
        if src == 0:
            return self._drop("nd-dad", prt)
        if not _is_ll6(src) and not prt.source_ok(src, frame[6:12], prt.v6):
            return self._drop("spoof-ip", prt)
        t_hi, t_lo = _QQ.unpack_from(frame, 62)
        refused = self._neighbor_refused(prt, prt.v6, _V6, (t_hi << 64) | t_lo)
        if refused:
            return self._drop(refused, prt)
        target_b = bytes(frame[62:78])
        na = P.build_neighbor_advert(target_b, bytes(frame[22:38]), target_b, prt.gw_mac)
        out: list[Output] = []
        self._tx(prt, P.eth_header(bytes(frame[6:12]), prt.gw_mac, P.ETH_P_IPV6) + na, out)
        return out

    def _dhcp(self, prt: _PortRt, frame: Any, hl: int) -> list[Output]:
        """DHCPv4 from the VM (R9.1): the answer leases the port's own address."""
        try:
            reply = dhcp.answer(frame, hl, prt.mac, prt.gw_mac,
                                dhcp.lease_of(prt.port.ips, prt.port.gateway_ips))
        except dhcp.DhcpRefused as exc:
            return self._drop(exc.reason, prt)
        out: list[Output] = []
        self._tx(prt, reply, out)
        return out

    def _port_ip(
        self, prt: _PortRt, pf: _PortFamily, fam: _Family, frame: Any, n: int, src_mac: Any
    ) -> list[Output]:
        """An IPv4 or IPv6 packet from a VM: checks, then routed in the port's VRF (R7.2)."""
        if fam is _V4:  # _IPv4.header, inlined: the encapsulation fast path
            if n < 34:
                return self._drop("ipv4-short", prt)
            vihl = frame[14]
            hl = (vihl & 0x0F) * 4
            total = (frame[16] << 8) | frame[17]
            if vihl >> 4 != 4 or hl < 20 or total < hl or n < 14 + total:
                return self._drop("ipv4-bad-header", prt)
            src, dst = _II.unpack_from(frame, 26)
        else:
            total, hl, src, dst = fam.header(frame, 14, n)
            if total < 0:
                return self._drop(fam.port_header_drops[total == _BAD], prt)
        idx, gshift, gprefix, bcast, ttl_at, csum = fam.fast
        if idx:
            # Neighbor Discovery and MLD are answered or dropped here, never routed
            if frame[20] == P.IPPROTO_ICMPV6 and total >= P.IPV6_LEN + 4:
                icmp_type = frame[54]
                if P.ND_ROUTER_SOLICIT <= icmp_type <= P.ND_REDIRECT or icmp_type in P.MLD_TYPES:
                    return self._port_nd(prt, frame, total, src, icmp_type)
            if _is_ll6(src):
                return self._drop("ipv6-link-local", prt)
        elif frame[23] == P.IPPROTO_UDP and dhcp.is_dhcp_request(frame, hl):
            return self._dhcp(prt, frame, hl)  # from 0.0.0.0 before it has its lease (R9.1)
        # The common case (the port's own address and MAC) without a call.
        if not (src in pf.own and src_mac == prt.mac) and not prt.source_ok(src, src_mac, pf):
            return self._drop("spoof-ip", prt)
        vrf = prt.vrf_rt
        if dst in pf.gw:
            return self._to_gateway(prt, pf, fam, frame, hl, total)
        if dst >> gshift == gprefix or dst == bcast or dst in vrf.bcast[idx]:
            if frame[14 + fam.proto_off] == fam.membership_proto:
                return self._drop("igmp", prt, vrf)
            return self._replicate(prt, vrf, fam, frame, total)
        ttl = frame[ttl_at]
        if ttl <= 1:
            return self._icmp_error(
                prt, pf, fam, vrf, frame, total, fam.time_exceeded, 0, "ttl-expired"
            )
        if vrf.redirects:
            vrf = self._classify(vrf, idx, frame, hl, src, dst)
        entry = vrf.lpms[idx].lookup(dst)
        if entry is None:
            return self._icmp_error(prt, pf, fam, vrf, frame, total, fam.no_route, 0, "no-route")
        if entry.fast:
            adj = entry.adjs[0]
            fh = -1
        else:
            adj, fh = entry.pick(frame, 14)
        out: list[Output] = []
        if adj.is_local:
            op = self._prt.get(adj.port)
            if op is None:
                return self._drop("port-down", prt, vrf)
            if total > op.mtu:
                if fam.may_signal_too_big(frame, 14):
                    return self._icmp_error(
                        prt, pf, fam, vrf, frame, total, fam.too_big, op.mtu, "too-big"
                    )
                return self._drop("too-big", prt, vrf)
            buf = bytearray(frame[: 14 + total])
            buf[0:14] = op.fams[idx].eth
            buf[ttl_at] = ttl - 1
            if csum:  # RFC 1624 incremental update of the IPv4 header checksum
                check = ((buf[24] << 8) | buf[25]) + 0x0100
                check = (check + (check >= 0xFFFF)) & 0xFFFF
                buf[24] = check >> 8
                buf[25] = check & 0xFF
            vrf.counters.routed_local += 1
            self._tx(op, buf, out)
            return out
        if total > adj.max_inner and fam.may_signal_too_big(frame, 14):
            return self._icmp_error(
                prt, pf, fam, vrf, frame, total, fam.too_big, adj.max_inner, "too-big"
            )
        if adj.is_udp and fh < 0:
            fh = fam.flow_hash(frame, 14, hl, total, src, dst)
        vrf.counters.encapsulated += 1
        buf = _encapsulate(adj, frame, 14, total, ttl - 1, fh, ttl_at - 14, csum)
        u = self.underlay
        u["tx_packets"] += 1
        u["tx_bytes"] += len(buf)
        out.append((adj.out, buf))
        return out

    @staticmethod
    def _classify(vrf: _VrfRt, idx: int, frame: Any, hl: int, src: int, dst: int) -> _VrfRt:
        """The VRF a packet from a port is looked up in: the target of the first
        matching flow classifier (service chains), else the port's own."""
        proto = frame[23] if idx == 0 else frame[20]
        off = 14 + hl
        dport = -1
        # a later IPv4 fragment has no transport header: no port matches it
        later_fragment = idx == 0 and bool((frame[20] & 0x1F) | frame[21])
        if proto in (6, 17, 132) and len(frame) >= off + 4 and not later_fragment:
            dport = (frame[off + 2] << 8) | frame[off + 3]
        for fi, slo, shi, dlo, dhi, p, plo, phi, need_port, target in vrf.redirects:
            if fi != idx or not slo <= src <= shi or not dlo <= dst <= dhi:
                continue
            if p >= 0 and p != proto:
                continue
            if need_port and not plo <= dport <= phi:
                continue
            vrf.counters.classified += 1
            return target
        return vrf

    def _to_gateway(
        self, prt: _PortRt, pf: _PortFamily, fam: _Family, frame: Any, hl: int, total: int
    ) -> list[Output]:
        """Answer ICMP echo to a gateway address; a PE-CE session's TCP segment goes to
        the control plane (:meth:`_to_local`); anything else to it is dropped."""
        ip = P.ETH_LEN
        off = ip + hl
        if self._sess_in and frame[ip + fam.proto_off] == P.IPPROTO_TCP:
            return self._to_local(prt, fam, frame, hl, total)
        if frame[ip + fam.proto_off] != fam.icmp_proto or total < hl + 8 or frame[off] != fam.echo:
            return self._drop("to-gateway", prt)
        alen = fam.addr_len
        src = bytes(frame[ip + fam.dst_off : ip + fam.dst_off + alen])
        dst = bytes(frame[ip + fam.src_off : ip + fam.src_off + alen])
        pkt = fam.build_icmp(
            src,
            dst,
            fam.echo_reply,
            0,
            bytes(frame[off + 4 : off + 8]),
            frame[off + 8 : ip + total],
        )
        out: list[Output] = []
        self._tx(prt, pf.eth + pkt, out)
        return out

    def _to_local(self, prt: _PortRt, fam: _Family, frame: Any, hl: int, total: int) -> list[Output]:
        """A TCP segment from a port to a gateway address: a :class:`LocalSession`'s (the
        VRF's, from its peer, to its local address, port 179 at one end) is written to the
        local interface from the mapped address to the control plane's; else dropped."""
        ip = P.ETH_LEN
        alen = fam.addr_len
        if total < hl + 20:
            return self._drop("to-gateway", prt)
        src = int.from_bytes(frame[ip + fam.src_off : ip + fam.src_off + alen], "big")
        x = self._sess_in.get((prt.port.vrf, alen, src))
        if x is None or bytes(frame[ip + fam.dst_off : ip + fam.dst_off + alen]) != x.local.packed:
            return self._drop("to-gateway", prt)
        sport, dport = _HH.unpack_from(frame, ip + hl)
        if BGP_PORT not in (sport, dport):
            return self._drop("to-gateway", prt)
        if dport == BGP_PORT:
            dport = x.listen_port
        pkt = _readdress(fam, frame[ip : ip + total], hl, x.mapped.packed, x.host.packed, sport, dport)
        self.local_io["to_local"] += 1
        return [(TO_LOCAL, pkt)]

    def from_local(self, packet: bytes | bytearray | memoryview) -> list[Output]:
        """An IP packet the control plane wrote to the local interface: a segment of a
        :class:`LocalSession` (to its mapped address) leaves into its VRF as from the
        session's local address to its peer, out of the port that holds the peer."""
        n = len(packet)
        version = packet[0] >> 4 if n else 0
        if version == 4 and n >= 20:
            fam: _Family = _V4
            hl = (packet[0] & 0x0F) * 4
            total = (packet[2] << 8) | packet[3]
        elif version == 6 and n >= P.IPV6_LEN:
            fam = _V6
            hl = P.IPV6_LEN
            total = P.IPV6_LEN + ((packet[4] << 8) | packet[5])
        else:
            return self._drop("local-bad-header")
        if hl < 20 or total > n or total < hl + 20 or packet[fam.proto_off] != P.IPPROTO_TCP:
            return self._drop("local-not-tcp")
        alen = fam.addr_len
        x = self.sessions.get(ipaddress.ip_address(bytes(packet[fam.dst_off : fam.dst_off + alen])))
        if x is None or x.peer.version != version:
            return self._drop("local-no-session")
        sport, dport = _HH.unpack_from(packet, hl)
        if sport == x.listen_port:
            sport = BGP_PORT
        vrf = self._vrfs.get(x.vrf)
        entry = None if vrf is None else vrf.lpms[fam.idx].lookup(int(x.peer))
        if entry is None:
            return self._drop("local-no-route", None, vrf)
        pkt = _readdress(fam, packet[:total], hl, x.local.packed, x.peer.packed, sport, dport)
        adj = entry.adjs[0] if entry.fast else entry.pick(bytes(P.ETH_LEN) + pkt, P.ETH_LEN)[0]
        op = self._prt.get(adj.port) if adj.is_local else None
        if op is None:  # the peer sits behind a port of this forwarder, or nowhere
            return self._drop("local-not-on-port", None, vrf)
        self.local_io["from_local"] += 1
        out: list[Output] = []
        self._tx(op, op.fams[fam.idx].eth + pkt, out)
        return out

    def _icmp_error(
        self,
        prt: _PortRt,
        pf: _PortFamily,
        fam: _Family,
        vrf: _VrfRt,
        frame: Any,
        total: int,
        kind: tuple[int, int],
        mtu: int,
        reason: str,
    ) -> list[Output]:
        """Drop the packet (counted by ``reason``) and return an ICMP error to the sender.

        ``mtu`` is the next-hop MTU of a too-big error (0 otherwise): ICMP
        fragmentation-needed and ICMPv6 packet-too-big both carry it in the
        low bits of their 4 octets after the checksum.
        """
        self._drop(reason, prt, vrf)
        gw = pf.gw_first
        if gw is None or fam.no_error_about(frame, P.ETH_LEN, total):
            return []
        ip = P.ETH_LEN
        quote = frame[ip : ip + min(total, fam.max_quote)]
        sender = bytes(frame[ip + fam.src_off : ip + fam.src_off + fam.addr_len])
        pkt = fam.build_icmp(gw, sender, kind[0], kind[1], _I.pack(mtu), quote)
        out: list[Output] = []
        self._tx(prt, pf.eth + pkt, out)
        return out

    def _replicate(
        self, prt: _PortRt, vrf: _VrfRt, fam: _Family, frame: Any, total: int
    ) -> list[Output]:
        """Broadcast/multicast from a VM: each other local port, each remote vPE once (R3.2)."""
        out: list[Output] = []
        end = P.ETH_LEN + total
        for name in vrf.ports:
            if name == prt.name:
                continue
            op = self._prt[name]
            buf = bytearray(frame[:end])
            buf[6:12] = op.gw_mac
            self._tx(op, buf, out)
        ttl = frame[P.ETH_LEN + fam.ttl_off]
        fh = -1
        for adj in vrf.replication:
            t = adj.tlen
            buf = bytearray(adj.template)
            buf += frame[P.ETH_LEN : end]
            buf[t - 1] = ttl
            if adj.is_udp:
                if fh < 0:
                    fh = flow_hash(buf, t)
                _H.pack_into(buf, 0, P.FLOW_PORT_MIN + fh % P.FLOW_PORT_COUNT)
                _H.pack_into(buf, 4, len(buf))
            self._tx_under(adj, buf, out)
        vrf.counters.replicated += 1
        return out

    # ------------------------------------------------------------ from the underlay

    def from_underlay_ip(self, packet: bytes | bytearray | memoryview) -> list[Output]:
        """A whole outer IPv4/IPv6 packet (as a raw socket or a capture delivers it)."""
        try:
            src, encap, off = P.parse_underlay_ip(packet)
        except P.PacketError as exc:
            return self._drop(exc.reason)
        addr = str(ipaddress.ip_address(src))
        mv = memoryview(packet)[off:]
        if encap == "mpls-in-udp":
            return self.from_underlay(mv, addr, "mpls-in-udp")
        return self.from_underlay(mv, addr, "mpls-in-gre")

    def from_underlay(
        self, data: bytes | bytearray | memoryview, src_underlay_ip: str, encap: str = "mpls-in-udp"
    ) -> list[Output]:
        """Decapsulate one tunnel payload from ``src_underlay_ip``.

        ``data`` starts at the MPLS label stack for "mpls-in-udp" (what a UDP
        socket on port 6635 returns) and at the GRE header for "mpls-in-gre".
        """
        u = self.underlay
        u["rx_packets"] += 1
        u["rx_bytes"] += len(data)
        src_ep = src_underlay_ip
        if src_ep not in self._known:
            try:
                src_ep = str(ipaddress.ip_address(src_underlay_ip))
            except ValueError:
                return self._drop("underlay-unknown-source")
            if src_ep not in self._known:
                return self._drop("underlay-unknown-source")
        off = 0
        if encap == "mpls-in-gre":
            try:
                proto, off = P.parse_gre(data, 0)
            except P.PacketError as exc:
                return self._drop(exc.reason)
            if proto != P.ETH_P_MPLS:
                return self._drop("gre-not-mpls")
        if len(data) < off + P.MPLS_LEN:
            return self._drop("mpls-short")
        (lse,) = _I.unpack_from(data, off)  # parse_mpls, inlined
        off += P.MPLS_LEN
        if not lse & 0x100:
            popped = self._label_stack(data, off, lse)
            if isinstance(popped, list):
                return popped
            off, lse = popped
        entry = self.labels.get(lse >> 12)
        if entry is None:
            return self._drop("unknown-label")
        n = len(data)
        if n < off + 1:
            return self._drop("inner-short")
        fam = _BY_VERSION[data[off] >> 4]
        if fam is None:
            return self._drop("inner-not-ip")
        if fam is _V4:  # _IPv4.header, inlined
            if n < off + 20:
                return self._drop("inner-short")
            vihl = data[off]
            hl = (vihl & 0x0F) * 4
            total = (data[off + 2] << 8) | data[off + 3]
            if hl < 20 or total < hl or n < off + total:
                return self._drop("inner-bad-header")
            src, dst = _II.unpack_from(data, off + 12)
        else:
            total, hl, src, dst = fam.header(data, off, n)
            if total < 0:
                return self._drop("inner-short" if total == _SHORT else "inner-bad-header")
        idx, gshift, gprefix, bcast, _ttl_at, _csum = fam.fast
        mcast = dst >> gshift == gprefix or dst == bcast
        kind = entry.kind
        if kind == "port":
            prt = self._prt.get(entry.target)
            if prt is None:
                return self._drop("port-down")
            vrf = prt.vrf_rt
            fe = vrf.lpms[idx].lookup(src)
            if fe is None or src_ep not in fe.endpoints:
                return self._drop("ingress-check", prt, vrf)
            vrf.counters.decapsulated += 1
            return self._deliver(prt, vrf, fam, data, off, total, mcast, dst)
        if kind == "swap":
            return self._swap(self._swaps[entry.label], fam, data, off, total, hl, src, dst)
        vrf_rt = self._vrfs.get(entry.target)
        if vrf_rt is None:
            return self._drop("no-vrf")
        vrf_rt.counters.decapsulated += 1
        if mcast or dst in vrf_rt.bcast[idx]:
            out: list[Output] = []
            for name in vrf_rt.ports:
                out.extend(self._deliver(self._prt[name], vrf_rt, fam, data, off, total, True, dst))
            return out
        fe = vrf_rt.lpms[idx].lookup(dst)
        if fe is None:
            return self._drop("no-route", None, vrf_rt)
        adj = fe.pick_local(data, off)
        if adj is None:
            return self._redirect(fe, vrf_rt, fam, data, off, total, hl, src, dst, src_ep)
        prt = self._prt.get(adj.port)
        if prt is None:
            return self._drop("port-down", None, vrf_rt)
        return self._deliver(prt, vrf_rt, fam, data, off, total, False, dst)

    def _label_stack(self, data: Any, off: int, lse: int) -> list[Output] | tuple[int, int]:
        """A label stack deeper than one (Inter-AS option C): labels of ours ("pop", our
        loopback's labeled-unicast label) are removed until the bottom one, which decides
        as usual; a "swap" label on top (a transit labeled-unicast hop) is swapped and
        the rest of the stack travels on toward its next hop (label TTL - 1)."""
        while not lse & 0x100:
            entry = self.labels.get(lse >> 12)
            if entry is None:
                return self._drop("unknown-label")
            if entry.kind == "swap":
                return self._swap_stack(self._swaps[entry.label], data, off, lse & 0xFF)
            if entry.kind != "pop":
                return self._drop("mpls-label-stack")
            if len(data) < off + P.MPLS_LEN:
                return self._drop("mpls-short")
            (lse,) = _I.unpack_from(data, off)
            off += P.MPLS_LEN
        return off, lse  # the bottom entry (and where the inner packet starts): as usual

    def _swap_stack(self, adj: _TunnelAdj, data: Any, off: int, ttl: int) -> list[Output]:
        """Swap the top label for ``adj``'s and send the rest of the stack (at ``off``) on."""
        if ttl <= 1:
            return self._drop("ttl-expired")
        rest = data[off:]
        self.swapped += 1
        stack = b"".join(_I.pack(w | (ttl - 1)) for w in adj.outer) + _I.pack((adj.label << 12) | (ttl - 1))
        if adj.is_udp:
            buf = bytearray(_H.pack(P.FLOW_PORT_MIN + (hash(bytes(rest[:64])) % P.FLOW_PORT_COUNT)))
            buf += _H.pack(P.MPLS_UDP_PORT) + _H.pack(8 + len(stack) + len(rest)) + _H.pack(0)
        else:
            buf = bytearray(_H.pack(0) + _H.pack(P.ETH_P_MPLS))
        buf += stack
        buf += rest
        out: list[Output] = []
        self._tx_under(adj, buf, out)
        return out

    def _redirect(
        self,
        fe: FibEntry,
        vrf_rt: _VrfRt,
        fam: _Family,
        data: Any,
        off: int,
        total: int,
        hl: int,
        src: int,
        dst: int,
        src_ep: str,
    ) -> list[Output]:
        """Local repair (R9.3, docs/mobility.md): the destination moved away (released
        here, or prepared here and not active yet), and the VRF's route for it leads
        to another vPE: the packet leaves again toward it (inner TTL - 1), never
        back to the vPE it came from (that would be a loop). The same for a destination
        covered by an aggregate this vPE advertises (R10.3, ``route.transit``): the control
        plane flags only remote routes strictly longer than the aggregate, so each such hop
        lands on a strictly longer prefix and the packet is re-tunnelled at most once per
        prefix length, in practice once (docs/vpn.md, aggregation)."""
        if not (fe.route.moved or fe.route.transit):  # plain transit: the underlay is crossed once (R8.1)
            return self._drop("no-local-route", None, vrf_rt)
        adj, _fh = fe.pick(data, off)
        if adj.is_local:  # (a local adjacency would have been picked already)
            return self._drop("no-local-route", None, vrf_rt)
        if adj.endpoint == src_ep:
            return self._drop("redirect-loop", None, vrf_rt)
        vrf_rt.counters.redirected += 1
        return self._swap(adj, fam, data, off, total, hl, src, dst)

    def _swap(
        self,
        adj: _TunnelAdj,
        fam: _Family,
        data: Any,
        off: int,
        total: int,
        hl: int,
        src: int,
        dst: int,
    ) -> list[Output]:
        """Label swap: the inner packet leaves again toward ``adj`` with its label (TTL - 1)."""
        ttl = data[off + fam.ttl_off]
        if ttl <= 1:
            return self._drop("ttl-expired")
        if total > adj.max_inner and fam.may_signal_too_big(data, off):
            return self._drop("too-big")
        fh = fam.flow_hash(data, off, hl, total, src, dst) if adj.is_udp else -1
        self.swapped += 1
        out: list[Output] = []
        buf = _encapsulate(adj, data, off, total, ttl - 1, fh, fam.ttl_off, fam.checksum)
        self._tx_under(adj, buf, out)
        return out

    def _deliver(
        self,
        prt: _PortRt,
        vrf: _VrfRt,
        fam: _Family,
        data: Any,
        off: int,
        total: int,
        mcast: bool,
        dst: int,
    ) -> list[Output]:
        """Hand a decapsulated inner packet to a local port (TTL - 1 unless flooded)."""
        if total > prt.mtu:
            return self._drop("too-big", prt, vrf)
        idx, _gshift, _gprefix, bcast, t, csum = fam.fast
        buf = bytearray(prt.fams[idx].eth)
        buf += data[off : off + total]
        if mcast:
            if dst == bcast or dst in vrf.bcast[idx]:
                buf[0:6] = P.BROADCAST_MAC
            else:
                buf[0:6] = fam.multicast_mac(buf, 14)
        else:
            ttl = buf[t]
            if ttl <= 1:
                return self._drop("ttl-expired", prt, vrf)
            buf[t] = ttl - 1
            if csum:  # RFC 1624, as ipv4_ttl_decrement
                check = ((buf[24] << 8) | buf[25]) + 0x0100
                check = (check + (check >= 0xFFFF)) & 0xFFFF
                buf[24] = check >> 8
                buf[25] = check & 0xFF
        out: list[Output] = []
        self._tx(prt, buf, out)
        return out


def _sess_key(x: LocalSession) -> tuple[str, int, int]:
    return (x.vrf, len(x.peer.packed), int(x.peer))


def _readdress(fam: _Family, packet: Any, hl: int, src: bytes, dst: bytes, sport: int,
               dport: int) -> bytearray:
    """``packet`` (an IP packet carrying TCP) with new addresses and ports, its IPv4
    header checksum and its TCP checksum computed anew (a few BGP segments a second:
    simple beats incremental here)."""
    pkt = bytearray(packet)
    alen = fam.addr_len
    pkt[fam.src_off : fam.src_off + alen] = src
    pkt[fam.dst_off : fam.dst_off + alen] = dst
    _HH.pack_into(pkt, hl, sport, dport)
    pkt[hl + 16 : hl + 18] = b"\0\0"
    seg = len(pkt) - hl
    if fam.version == 4:
        pkt[10:12] = b"\0\0"
        _H.pack_into(pkt, 10, P.checksum(pkt[:hl]))
        pseudo = P.pseudo_sum_v4(src, dst, P.IPPROTO_TCP, seg)
    else:
        pseudo = P.pseudo_sum_v6(src, dst, P.IPPROTO_TCP, seg)
    total = pseudo + P.ones_sum(bytes(pkt[hl:]))
    _H.pack_into(pkt, hl + 16, P.finish_checksum(total) or 0xFFFF)
    return pkt


def _encapsulate(
    adj: _TunnelAdj,
    pkt: Any,
    off: int,
    total: int,
    ttl: int,
    fh: int,
    ttl_off: int,
    checksum: bool,
) -> bytearray:
    """The tunnel payload toward ``adj``: header and label (TTL ``ttl``), then the inner
    packet at ``off`` with its TTL / hop limit (at ``ttl_off`` in it) set to ``ttl``,
    and (``checksum``, IPv4) the header checksum updated (R7.1, R8.1).

    The header is built in one pack (source port from the flow hash ``fh``,
    length and label TTL included); the IPv4 checksum follows the TTL change
    incrementally (RFC 1624), as ``ipv4_ttl_decrement`` does.
    """
    if adj.outer:
        return _encapsulate_stack(adj, pkt, off, total, ttl, fh, ttl_off, checksum)
    if adj.is_udp:
        buf = bytearray(
            _UDP_MPLS.pack(
                P.FLOW_PORT_MIN + fh % P.FLOW_PORT_COUNT,
                P.MPLS_UDP_PORT,
                _UDP_HDR + total,
                0,
                adj.label_word | ttl,
            )
        )
        t = _UDP_HDR + ttl_off
    else:
        buf = bytearray(_GRE_MPLS.pack(0, P.ETH_P_MPLS, adj.label_word | ttl))
        t = _GRE_HDR + ttl_off
    buf += pkt[off : off + total]
    buf[t] = ttl
    if checksum:
        check = ((buf[t + 2] << 8) | buf[t + 3]) + 0x0100
        check = (check + (check >= 0xFFFF)) & 0xFFFF
        buf[t + 2] = check >> 8
        buf[t + 3] = check & 0xFF
    return buf


def _encapsulate_stack(
    adj: _TunnelAdj, pkt: Any, off: int, total: int, ttl: int, fh: int, ttl_off: int, checksum: bool
) -> bytearray:
    """:func:`_encapsulate` for a next hop with outer labels (Inter-AS option C): the
    shim, the outer entries, the bottom entry (all with TTL ``ttl``), the inner packet."""
    stack = b"".join(_I.pack(w | ttl) for w in adj.outer) + _I.pack(adj.label_word | ttl)
    if adj.is_udp:
        buf = bytearray(_H.pack(P.FLOW_PORT_MIN + fh % P.FLOW_PORT_COUNT) + _H.pack(P.MPLS_UDP_PORT)
                        + _H.pack(8 + len(stack) + total) + _H.pack(0))
    else:
        buf = bytearray(_H.pack(0) + _H.pack(P.ETH_P_MPLS))
    t = len(buf) + len(stack) + ttl_off
    buf += stack
    buf += pkt[off : off + total]
    buf[t] = ttl
    if checksum:
        check = ((buf[t + 2] << 8) | buf[t + 3]) + 0x0100
        check = (check + (check >= 0xFFFF)) & 0xFFFF
        buf[t + 2] = check >> 8
        buf[t + 3] = check & 0xFF
    return buf
