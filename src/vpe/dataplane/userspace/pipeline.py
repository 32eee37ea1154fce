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
the label selects a VRF (IP lookup, local delivery only) or a port (with an
ingress check: the inner source must be routed, in that VRF, via the vPE
that sent the packet).

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

from ..driver import (
    Batch,
    DriverError,
    IPAddress,
    LabelEntry,
    NextHop,
    Peer,
    Port,
    ReplicationList,
    Route,
    RouteKey,
    State,
)
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

_ALL4 = 0xFFFFFFFF
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))


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


Output = tuple[ToPort | ToUnderlay, bytes | bytearray]


class PortCounters:
    __slots__ = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops")

    def __init__(self) -> None:
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = self.drops = 0

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class VrfCounters:
    __slots__ = ("routed_local", "encapsulated", "decapsulated", "replicated", "drops")

    def __init__(self) -> None:
        self.routed_local = self.encapsulated = self.decapsulated = 0
        self.replicated = self.drops = 0

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _LocalAdj:
    __slots__ = ("port",)
    is_local = True

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
    )
    is_local = False

    def __init__(self, endpoint: IPAddress, label: int, encap: str, underlay_mtu: int) -> None:
        self.endpoint = str(endpoint)
        self.label = label
        self.encap = encap
        self.is_udp = encap == "mpls-in-udp"
        proto = P.IPPROTO_UDP if self.is_udp else P.IPPROTO_GRE
        self.out = ToUnderlay(self.endpoint, proto, endpoint.version)
        self.template = P.udp_encap_template(label) if self.is_udp else P.gre_encap_template(label)
        self.tlen = len(self.template)
        self.max_inner = underlay_mtu - P.tunnel_overhead(encap, endpoint.version == 6)
        #: label stack entry without its TTL (bottom of stack, TC 0): OR the TTL in
        self.label_word = (label << 12) | 0x100


class _PortRt:
    """A port compiled for the fast path: addresses as ints, headers prebuilt."""

    __slots__ = (
        "port",
        "name",
        "vrf",
        "out",
        "mac",
        "gw_mac",
        "eth_v4",
        "eth_v6",
        "pair_macs",
        "own4",
        "own6",
        "pairs4",
        "pairs6",
        "gw4",
        "gw6",
        "gw4_first",
        "gw6_first",
        "mtu",
        "counters",
    )

    def __init__(self, port: Port, counters: PortCounters) -> None:
        self.port = port
        self.name = port.name
        self.vrf = port.vrf
        self.out = ToPort(port.name)
        self.mac = P.mac_bytes(port.mac)
        self.gw_mac = P.mac_bytes(port.gateway_mac)
        self.eth_v4 = P.eth_header(self.mac, self.gw_mac, P.ETH_P_IP)
        self.eth_v6 = P.eth_header(self.mac, self.gw_mac, P.ETH_P_IPV6)
        self.pair_macs = frozenset(P.mac_bytes(p.mac) for p in port.allowed_pairs if p.mac)
        self.own4 = frozenset(int(i.ip) for i in port.ips if i.version == 4)
        self.own6 = frozenset(int(i.ip) for i in port.ips if i.version == 6)
        self.pairs4 = tuple(
            (
                int(p.prefix.network_address),
                int(p.prefix.netmask),
                P.mac_bytes(p.mac) if p.mac else self.mac,
            )
            for p in port.allowed_pairs
            if p.prefix.version == 4
        )
        self.pairs6 = tuple(
            (
                int(p.prefix.network_address),
                int(p.prefix.netmask),
                P.mac_bytes(p.mac) if p.mac else self.mac,
            )
            for p in port.allowed_pairs
            if p.prefix.version == 6
        )
        self.gw4 = frozenset(int(a) for a in port.gateway_ips if a.version == 4)
        self.gw6 = frozenset(int(a) for a in port.gateway_ips if a.version == 6)
        first4 = [a for a in port.gateway_ips if a.version == 4]
        first6 = [a for a in port.gateway_ips if a.version == 6 and not a.is_link_local]
        first6 = first6 or [a for a in port.gateway_ips if a.version == 6]
        self.gw4_first = first4[0].packed if first4 else None
        self.gw6_first = first6[0].packed if first6 else None
        self.mtu = port.mtu
        self.counters = counters

    def source_ok(
        self, src: int, mac: Any, pairs: tuple[tuple[int, int, bytes], ...], own: frozenset[int]
    ) -> bool:
        """R13.1: (source IP, source MAC) belongs to this port's endpoint or a pair."""
        if src in own and mac == self.mac:
            return True
        return any(src & mask == net and mac == pmac for net, mask, pmac in pairs)


class _VrfRt:
    __slots__ = ("name", "lpm4", "lpm6", "ports", "replication", "bcast4", "counters")

    def __init__(self, name: str, lpm: Any) -> None:
        self.name = name
        self.lpm4 = lpm(32)
        self.lpm6 = lpm(128)
        self.ports: tuple[str, ...] = ()
        self.replication: tuple[_TunnelAdj, ...] = ()
        self.bcast4: frozenset[int] = frozenset()
        self.counters = VrfCounters()


def _is_ll6(addr: int) -> bool:
    return addr >> 118 == 0x3FA


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

    # ----------------------------------------------------------------- programming

    def check(self, batch: Batch) -> None:
        """Raise :class:`DriverError` if ``batch`` cannot be applied; changes nothing."""
        for r in batch.add_routes:
            fam = r.prefix.version
            for nh in r.next_hops:
                self._check_nh(nh, f"route {r.vrf} {r.prefix}")
            if fam not in (4, 6):  # pragma: no cover - ipaddress guarantees it
                raise DriverError(f"route {r.vrf} {r.prefix}: unknown family")
        for rl in batch.set_replication:
            for nh in rl.members:
                self._check_nh(nh, f"replication list of {rl.vrf}")
        ifnames = {p.name: p.ifname for p in self.ports.values()}
        for name in batch.remove_ports:
            ifnames.pop(name, None)
        for p in batch.add_ports:
            ifnames[p.name] = p.ifname
        seen: dict[str, str] = {}
        for name, ifname in ifnames.items():
            if ifname in seen:
                raise DriverError(
                    f"port {name}: ifname {ifname!r} is already used by port {seen[ifname]}"
                )
            seen[ifname] = name

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
        for vrf in batch.remove_replication:
            self.replication.pop(vrf, None)
            touched.add(vrf)
        for peer in batch.remove_peers:
            self.peers.discard(peer)
        for port in batch.add_ports:
            old = self.ports.get(port.name)
            if old is not None:
                touched.add(old.vrf)
            self.ports[port.name] = port
            counters = self._port_counters.setdefault(port.name, PortCounters())
            self._prt[port.name] = _PortRt(port, counters)
            touched.add(port.vrf)
        for route in batch.add_routes:
            self._add_route(route)
        for entry in batch.add_labels:
            self.labels[entry.label] = entry
        for rl in batch.set_replication:
            self.replication[rl.vrf] = rl
            touched.add(rl.vrf)
        self.peers.update(p.endpoint for p in batch.add_peers)
        for vrf in touched:
            self._rebuild_vrf(vrf)
        self._rebuild_known()

    def full_sync(self, state: State) -> None:
        """Replace everything with ``state`` (atomic: checked before anything changes)."""
        batch = state.as_batch()
        saved = (
            self.ports,
            self.routes,
            self.labels,
            self.replication,
            self.peers,
            self._prt,
            self._vrfs,
            self._adj_cache,
            self._ep_refs,
            self._known,
        )
        self._reset()
        try:
            self.check(batch)
        except DriverError:
            (
                self.ports,
                self.routes,
                self.labels,
                self.replication,
                self.peers,
                self._prt,
                self._vrfs,
                self._adj_cache,
                self._ep_refs,
                self._known,
            ) = saved
            raise
        self.apply(batch)

    def state(self) -> State:
        return State(
            ports=tuple(self.ports.values()),
            routes=tuple(self.routes.values()),
            labels=tuple(self.labels.values()),
            replication=tuple(self.replication.values()),
            peers=tuple(Peer(p) for p in sorted(self.peers, key=str)),
        )

    def _vrf(self, name: str) -> _VrfRt:
        vrf = self._vrfs.get(name)
        if vrf is None:
            vrf = self._vrfs[name] = _VrfRt(name, self._lpm)
        return vrf

    def _adj(self, nh: NextHop) -> Any:
        if nh.port is not None:
            key: tuple[Any, ...] = ("port", nh.port)
        else:
            key = (nh.endpoint, nh.label, nh.encap)
        adj = self._adj_cache.get(key)
        if adj is None:
            if nh.port is not None:
                adj = _LocalAdj(nh.port)
            else:
                assert nh.endpoint is not None and nh.label is not None
                adj = _TunnelAdj(nh.endpoint, nh.label, nh.encap, self.underlay_mtu)
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
        entry = FibEntry(
            route,
            tuple(self._adj(nh) for nh in route.next_hops),
            ECMP_CODES[route.ecmp],
            prefix_hash(net, plen, bits),
        )
        (vrf.lpm4 if bits == 32 else vrf.lpm6).insert(net, plen, entry)
        for ep in entry.endpoints:
            self._ep_refs[ep] = self._ep_refs.get(ep, 0) + 1

    def _del_route(self, key: RouteKey) -> None:
        route = self.routes.pop(key, None)
        if route is None:
            return
        vrf = self._vrf(key.vrf)
        lpm = vrf.lpm4 if key.prefix.version == 4 else vrf.lpm6
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
        vrf.bcast4 = frozenset(
            int(i.network.broadcast_address)
            for p in members
            for i in p.ips
            if i.version == 4 and i.network.prefixlen < 31
        )
        rl = self.replication.get(name)
        vrf.replication = tuple(self._adj(m) for m in rl.members) if rl else ()

    def _rebuild_known(self) -> None:
        known = set(self._ep_refs)
        known.update(str(p) for p in self.peers)
        for rl in self.replication.values():
            known.update(str(m.endpoint) for m in rl.members)
        self._known = frozenset(known)

    # ------------------------------------------------------------------- counters

    def counters(self) -> dict[str, Any]:
        return {
            "ports": {n: c.to_json() for n, c in self._port_counters.items() if n in self.ports},
            "vrfs": {n: v.counters.to_json() for n, v in self._vrfs.items()},
            "drops": dict(self.drops),
            "underlay": dict(self.underlay),
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
            return self._port_ipv4(prt, frame, n)
        if etype == P.ETH_P_IPV6:
            return self._port_ipv6(prt, frame, n)
        if etype == P.ETH_P_ARP:
            return self._port_arp(prt, frame)
        return self._drop("ethertype", prt)

    def _port_arp(self, prt: _PortRt, frame: Any) -> list[Output]:
        try:
            op, sha, spa, _tha, tpa = P.parse_arp(frame)
        except P.PacketError as exc:
            return self._drop(exc.reason, prt)
        if op != 1:
            return self._drop("arp-not-request", prt)
        if sha != bytes(frame[6:12]):
            return self._drop("spoof-arp", prt)
        (spa_i,) = struct.unpack("!I", spa)
        if spa_i == 0:
            return self._drop("arp-probe", prt)
        if not prt.source_ok(spa_i, sha, prt.pairs4, prt.own4):
            return self._drop("spoof-arp", prt)
        (tpa_i,) = struct.unpack("!I", tpa)
        if tpa_i not in prt.gw4:
            if tpa_i in prt.own4 or any(tpa_i & m == net for net, m, _ in prt.pairs4):
                return self._drop("arp-self", prt)
            vrf = self._vrfs.get(prt.vrf)
            if vrf is None or vrf.lpm4.lookup(tpa_i) is None:
                return self._drop("arp-no-route", prt)
        out: list[Output] = []
        self._tx(prt, P.build_arp_reply_frame(prt.gw_mac, tpa, sha, spa), out)
        return out

    def _port_ipv4(self, prt: _PortRt, frame: Any, n: int) -> list[Output]:
        if n < P.ETH_LEN + P.IPV4_LEN:
            return self._drop("ipv4-short", prt)
        vihl = frame[14]
        hl = (vihl & 0x0F) * 4
        total = (frame[16] << 8) | frame[17]
        if vihl >> 4 != 4 or hl < P.IPV4_LEN or total < hl or n < P.ETH_LEN + total:
            return self._drop("ipv4-bad-header", prt)
        src, dst = _II.unpack_from(frame, 26)
        src_mac = frame[6:12]
        # The common case (the port's own address and MAC) without a call.
        if not (src in prt.own4 and src_mac == prt.mac) and not prt.source_ok(
            src, src_mac, prt.pairs4, prt.own4
        ):
            return self._drop("spoof-ip", prt)
        vrf = self._vrfs.get(prt.vrf)
        if vrf is None:
            return self._drop("no-vrf", prt)
        if dst in prt.gw4:
            return self._to_gateway4(prt, frame, hl, total)
        if dst == _ALL4 or dst >> 28 == 0xE or dst in vrf.bcast4:
            if frame[23] == P.IPPROTO_IGMP:
                return self._drop("igmp", prt, vrf)
            return self._replicate(prt, vrf, frame, total)
        ttl = frame[22]
        if ttl <= 1:
            return self._icmp4_error(
                prt, vrf, frame, total, P.ICMP_TIME_EXCEEDED, 0, b"\0" * 4, "ttl-expired"
            )
        entry = vrf.lpm4.lookup(dst)
        if entry is None:
            return self._icmp4_error(
                prt, vrf, frame, total, P.ICMP_UNREACH, P.ICMP_UNREACH_NET, b"\0" * 4, "no-route"
            )
        if entry.n == 1:
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
                if frame[20] & 0x40:
                    return self._icmp4_error(
                        prt,
                        vrf,
                        frame,
                        total,
                        P.ICMP_UNREACH,
                        P.ICMP_UNREACH_NEEDFRAG,
                        _H.pack(0) + _H.pack(op.mtu),
                        "too-big",
                    )
                return self._drop("too-big", prt, vrf)
            buf = bytearray(frame[: P.ETH_LEN + total])
            buf[0:14] = op.eth_v4
            P.ipv4_ttl_decrement(buf, 14)
            vrf.counters.routed_local += 1
            self._tx(op, buf, out)
            return out
        if total > adj.max_inner and frame[20] & 0x40:
            return self._icmp4_error(
                prt,
                vrf,
                frame,
                total,
                P.ICMP_UNREACH,
                P.ICMP_UNREACH_NEEDFRAG,
                _H.pack(0) + _H.pack(adj.max_inner),
                "too-big",
            )
        # Encapsulation header built in one pack (source port, length and
        # label TTL included), then the inner packet; TTL - 1 with the RFC 1624
        # checksum update in place (as ipv4_ttl_decrement, inlined).
        ttl -= 1
        if adj.is_udp:
            if fh < 0:
                # flow_hash(frame, 14), inlined: the same CRC-32 key.
                pa = pb = 0
                proto = frame[23]
                if (
                    proto in PORTED
                    and not (_H.unpack_from(frame, 20)[0] & 0x3FFF)
                    and total >= hl + 4
                ):
                    pa, pb = _HH.unpack_from(frame, P.ETH_LEN + hl)
                    if pa > pb:
                        pa, pb = pb, pa
                fh = crc32(
                    KEY4.pack(src, dst, proto, pa, pb)
                    if src < dst
                    else KEY4.pack(dst, src, proto, pa, pb)
                )
            buf = bytearray(
                _UDP_MPLS.pack(
                    P.FLOW_PORT_MIN + fh % P.FLOW_PORT_COUNT,
                    P.MPLS_UDP_PORT,
                    12 + total,
                    0,
                    adj.label_word | ttl,
                )
            )
            t = 20  # 12 octets of header + 8: the inner TTL
        else:
            buf = bytearray(_GRE_MPLS.pack(0, P.ETH_P_MPLS, adj.label_word | ttl))
            t = 16
        buf += frame[P.ETH_LEN : P.ETH_LEN + total]
        buf[t] = ttl
        check = ((buf[t + 2] << 8) | buf[t + 3]) + 0x0100
        check = (check + (check >= 0xFFFF)) & 0xFFFF
        buf[t + 2] = check >> 8
        buf[t + 3] = check & 0xFF
        vrf.counters.encapsulated += 1
        u = self.underlay
        u["tx_packets"] += 1
        u["tx_bytes"] += len(buf)
        out.append((adj.out, buf))
        return out

    def _to_gateway4(self, prt: _PortRt, frame: Any, hl: int, total: int) -> list[Output]:
        """Answer ICMP echo to a gateway address; anything else to it is dropped."""
        off = P.ETH_LEN + hl
        if frame[23] != P.IPPROTO_ICMP or total < hl + 8 or frame[off] != P.ICMP_ECHO:
            return self._drop("to-gateway", prt)
        src = bytes(frame[30:34])
        dst = bytes(frame[26:30])
        pkt = P.build_icmp4_packet(
            src,
            dst,
            P.ICMP_ECHO_REPLY,
            0,
            bytes(frame[off + 4 : off + 8]),
            frame[off + 8 : P.ETH_LEN + total],
        )
        out: list[Output] = []
        self._tx(prt, prt.eth_v4 + pkt, out)
        return out

    def _icmp4_error(
        self,
        prt: _PortRt,
        vrf: _VrfRt,
        frame: Any,
        total: int,
        icmp_type: int,
        code: int,
        rest: bytes,
        reason: str,
    ) -> list[Output]:
        """Drop the packet (counted by ``reason``) and return an ICMP error to the sender."""
        self._drop(reason, prt, vrf)
        gw = prt.gw4_first
        if gw is None:
            return []
        icmp_off = P.ETH_LEN + (frame[14] & 0x0F) * 4
        if (
            frame[23] == P.IPPROTO_ICMP
            and icmp_off < len(frame)
            and frame[icmp_off] in _ICMP4_ERRORS
        ):
            return []  # never an error about an error (RFC 1122 3.2.2)
        if P.ipv4_is_fragment(frame, P.ETH_LEN) and (_H.unpack_from(frame, 20)[0] & 0x1FFF):
            return []
        quote = frame[P.ETH_LEN : P.ETH_LEN + min(total, P.ICMP4_MAX_QUOTE)]
        pkt = P.build_icmp4_packet(gw, bytes(frame[26:30]), icmp_type, code, rest, quote)
        out: list[Output] = []
        self._tx(prt, prt.eth_v4 + pkt, out)
        return out

    def _port_ipv6(self, prt: _PortRt, frame: Any, n: int) -> list[Output]:
        if n < P.ETH_LEN + P.IPV6_LEN or frame[14] >> 4 != 6:
            return self._drop("ipv6-bad-header", prt)
        total = P.IPV6_LEN + ((frame[18] << 8) | frame[19])
        if n < P.ETH_LEN + total:
            return self._drop("ipv6-bad-header", prt)
        nh = frame[20]
        s_hi, s_lo, d_hi, d_lo = _QQQQ.unpack_from(frame, 22)
        src = (s_hi << 64) | s_lo
        dst = (d_hi << 64) | d_lo
        if nh == P.IPPROTO_ICMPV6 and total >= P.IPV6_LEN + 4:
            icmp_type = frame[54]
            if P.ND_ROUTER_SOLICIT <= icmp_type <= P.ND_REDIRECT or icmp_type in P.MLD_TYPES:
                return self._port_nd(prt, frame, total, src, icmp_type)
        if _is_ll6(src):
            return self._drop("ipv6-link-local", prt)
        if not prt.source_ok(src, frame[6:12], prt.pairs6, prt.own6):
            return self._drop("spoof-ip", prt)
        vrf = self._vrfs.get(prt.vrf)
        if vrf is None:
            return self._drop("no-vrf", prt)
        if dst in prt.gw6:
            return self._to_gateway6(prt, frame, total)
        if d_hi >> 56 == 0xFF:
            return self._replicate(prt, vrf, frame, total)
        hlim = frame[21]
        if hlim <= 1:
            return self._icmp6_error(
                prt, vrf, frame, total, P.ICMP6_TIME_EXCEEDED, 0, b"\0" * 4, "ttl-expired"
            )
        entry = vrf.lpm6.lookup(dst)
        if entry is None:
            return self._icmp6_error(
                prt, vrf, frame, total, P.ICMP6_UNREACH, 0, b"\0" * 4, "no-route"
            )
        adj, fh = entry.pick(frame, 14)
        out: list[Output] = []
        if adj.is_local:
            op = self._prt.get(adj.port)
            if op is None:
                return self._drop("port-down", prt, vrf)
            if total > op.mtu:
                return self._icmp6_error(
                    prt,
                    vrf,
                    frame,
                    total,
                    P.ICMP6_PACKET_TOO_BIG,
                    0,
                    struct.pack("!I", op.mtu),
                    "too-big",
                )
            buf = bytearray(frame[: P.ETH_LEN + total])
            buf[0:14] = op.eth_v6
            buf[21] = hlim - 1
            vrf.counters.routed_local += 1
            self._tx(op, buf, out)
            return out
        if total > adj.max_inner:
            return self._icmp6_error(
                prt,
                vrf,
                frame,
                total,
                P.ICMP6_PACKET_TOO_BIG,
                0,
                struct.pack("!I", adj.max_inner),
                "too-big",
            )
        t = adj.tlen
        buf = bytearray(adj.template)
        buf += frame[P.ETH_LEN : P.ETH_LEN + total]
        buf[t + 7] = hlim - 1
        buf[t - 1] = hlim - 1
        if adj.is_udp:
            if fh < 0:
                fh = flow_hash(buf, t)
            _H.pack_into(buf, 0, P.FLOW_PORT_MIN + fh % P.FLOW_PORT_COUNT)
            _H.pack_into(buf, 4, len(buf))
        vrf.counters.encapsulated += 1
        self._tx_under(adj, buf, out)
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
        if not _is_ll6(src) and not prt.source_ok(src, frame[6:12], prt.pairs6, prt.own6):
            return self._drop("spoof-ip", prt)
        t_hi, t_lo = _QQ.unpack_from(frame, 62)
        target = (t_hi << 64) | t_lo
        if target not in prt.gw6:
            if target in prt.own6 or any(target & m == net for net, m, _ in prt.pairs6):
                return self._drop("nd-self", prt)
            vrf = self._vrfs.get(prt.vrf)
            if _is_ll6(target) or vrf is None or vrf.lpm6.lookup(target) is None:
                return self._drop("nd-no-route", prt)
        target_b = bytes(frame[62:78])
        na = P.build_neighbor_advert(target_b, bytes(frame[22:38]), target_b, prt.gw_mac)
        out: list[Output] = []
        self._tx(prt, P.eth_header(bytes(frame[6:12]), prt.gw_mac, P.ETH_P_IPV6) + na, out)
        return out

    def _to_gateway6(self, prt: _PortRt, frame: Any, total: int) -> list[Output]:
        off = P.ETH_LEN + P.IPV6_LEN
        if frame[20] != P.IPPROTO_ICMPV6 or total < P.IPV6_LEN + 8 or frame[off] != P.ICMP6_ECHO:
            return self._drop("to-gateway", prt)
        src = bytes(frame[38:54])
        dst = bytes(frame[22:38])
        pkt = P.build_icmp6_packet(
            src,
            dst,
            P.ICMP6_ECHO_REPLY,
            0,
            bytes(frame[off + 4 : off + 8]),
            frame[off + 8 : P.ETH_LEN + total],
        )
        out: list[Output] = []
        self._tx(prt, prt.eth_v6 + pkt, out)
        return out

    def _icmp6_error(
        self,
        prt: _PortRt,
        vrf: _VrfRt,
        frame: Any,
        total: int,
        icmp_type: int,
        code: int,
        rest: bytes,
        reason: str,
    ) -> list[Output]:
        self._drop(reason, prt, vrf)
        gw = prt.gw6_first
        if gw is None:
            return []
        if frame[20] == P.IPPROTO_ICMPV6 and total > P.IPV6_LEN and frame[54] < 128:
            return []  # never an error about an error (RFC 4443 2.4(e))
        quote = frame[P.ETH_LEN : P.ETH_LEN + min(total, P.ICMP6_MAX_QUOTE)]
        pkt = P.build_icmp6_packet(gw, bytes(frame[22:38]), icmp_type, code, rest, quote)
        out: list[Output] = []
        self._tx(prt, prt.eth_v6 + pkt, out)
        return out

    def _replicate(self, prt: _PortRt, vrf: _VrfRt, frame: Any, total: int) -> list[Output]:
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
        v4 = frame[14] >> 4 == 4
        ttl = frame[22] if v4 else frame[21]
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
            return self._drop("mpls-label-stack")
        entry = self.labels.get(lse >> 12)
        if entry is None:
            return self._drop("unknown-label")
        n = len(data)
        if n < off + 1:
            return self._drop("inner-short")
        version = data[off] >> 4
        if version == 4:
            if n < off + P.IPV4_LEN:
                return self._drop("inner-short")
            total = (data[off + 2] << 8) | data[off + 3]
            if total < P.IPV4_LEN or n < off + total:
                return self._drop("inner-bad-header")
            src, dst = _II.unpack_from(data, off + 12)
            mcast = dst == _ALL4 or dst >> 28 == 0xE
        elif version == 6:
            if n < off + P.IPV6_LEN:
                return self._drop("inner-short")
            total = P.IPV6_LEN + ((data[off + 4] << 8) | data[off + 5])
            if n < off + total:
                return self._drop("inner-bad-header")
            s_hi, s_lo, d_hi, d_lo = _QQQQ.unpack_from(data, off + 8)
            src = (s_hi << 64) | s_lo
            dst = (d_hi << 64) | d_lo
            mcast = d_hi >> 56 == 0xFF
        else:
            return self._drop("inner-not-ip")
        if entry.kind == "port":
            prt = self._prt.get(entry.target)
            if prt is None:
                return self._drop("port-down")
            vrf = self._vrf(prt.vrf)
            lpm = vrf.lpm4 if version == 4 else vrf.lpm6
            fe = lpm.lookup(src)
            if fe is None or src_ep not in fe.endpoints:
                return self._drop("ingress-check", prt, vrf)
            vrf.counters.decapsulated += 1
            return self._deliver(prt, vrf, data, off, total, version, mcast, dst)
        vrf_rt = self._vrfs.get(entry.target)
        if vrf_rt is None:
            return self._drop("no-vrf")
        vrf_rt.counters.decapsulated += 1
        if mcast or (version == 4 and dst in vrf_rt.bcast4):
            out: list[Output] = []
            for name in vrf_rt.ports:
                out.extend(
                    self._deliver(self._prt[name], vrf_rt, data, off, total, version, True, dst)
                )
            return out
        lpm = vrf_rt.lpm4 if version == 4 else vrf_rt.lpm6
        fe = lpm.lookup(dst)
        if fe is None:
            return self._drop("no-route", None, vrf_rt)
        adj = fe.pick_local(data, off)
        if adj is None:
            return self._drop("no-local-route", None, vrf_rt)
        prt = self._prt.get(adj.port)
        if prt is None:
            return self._drop("port-down", None, vrf_rt)
        return self._deliver(prt, vrf_rt, data, off, total, version, False, dst)

    def _deliver(
        self,
        prt: _PortRt,
        vrf: _VrfRt,
        data: Any,
        off: int,
        total: int,
        version: int,
        mcast: bool,
        dst: int,
    ) -> list[Output]:
        """Hand a decapsulated inner packet to a local port (TTL - 1 unless flooded)."""
        if total > prt.mtu:
            return self._drop("too-big", prt, vrf)
        if version == 4:
            buf = bytearray(prt.eth_v4)
            buf += data[off : off + total]
            if mcast:
                if dst == _ALL4 or dst in vrf.bcast4:
                    buf[0:6] = P.BROADCAST_MAC
                else:
                    buf[0:6] = P.ipv4_multicast_mac(buf[30:34])
            else:
                ttl = buf[22]
                if ttl <= 1:
                    return self._drop("ttl-expired", prt, vrf)
                buf[22] = ttl - 1  # ipv4_ttl_decrement(buf, 14), inlined
                check = ((buf[24] << 8) | buf[25]) + 0x0100
                check = (check + (check >= 0xFFFF)) & 0xFFFF
                buf[24] = check >> 8
                buf[25] = check & 0xFF
        else:
            buf = bytearray(prt.eth_v6)
            buf += data[off : off + total]
            if mcast:
                buf[0:6] = P.ipv6_multicast_mac(buf[38:54])
            else:
                if buf[21] <= 1:
                    return self._drop("ttl-expired", prt, vrf)
                buf[21] -= 1
        out: list[Output] = []
        self._tx(prt, buf, out)
        return out
