"""The FIB as eBPF map contents: a pure compilation of a driver :class:`State`.

:func:`compile_tables` turns the forwarder's whole state into the exact
bytes of every key and value of the FIB maps of ``vpe_tc.c`` (the struct
layouts below mirror the C ones, little-endian as on the host, addresses in
network order). The driver writes the difference between two compilations,
so a batch is validated and compiled completely before the first map write.

Numeric ids (VRFs, next hops, next-hop groups) are allocated by
:class:`Ids`, which keeps them stable from one compilation to the next: a
route whose next hops did not change keeps its value, and is not rewritten.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import nhg as G
from ..driver import MAX_NEXT_HOPS, MAX_OUTER_LABELS, IPAddress, NextHop, Port, Route, State
from ..errors import ResourceExhausted

# ------------------------------------------------------------- C layouts

CFG = struct.Struct("<IIII4s16s")
PORT = struct.Struct("<II6s6sI")
U32 = struct.Struct("<I")
SRC4_KEY = struct.Struct("<II4s")
SRC6_KEY = struct.Struct("<II16s")
SRC_VAL = struct.Struct("<6sH")
ADDR_KEY = struct.Struct("<II16s")
RT4_KEY = struct.Struct("<II4s")
RT6_KEY = struct.Struct("<II16s")
RT_VAL = struct.Struct("<IIII")
NHG_VAL = struct.Struct("<IIII")
MEMBER_KEY = struct.Struct("<II")
SEEDS_VAL = struct.Struct(f"<{MAX_NEXT_HOPS}I")
NH_VAL = struct.Struct("<IIII16sIII")
LABEL_VAL = struct.Struct("<IIII")
CTR6 = struct.Struct("<6Q")
CTR4 = struct.Struct("<4Q")
PUNT_META = struct.Struct("<IIII")
ONE = b"\x01"

PORT_F_PUNT_ALL = 1
NH_LOCAL, NH_UDP4, NH_UDP6, NH_GRE4, NH_GRE6 = 1, 2, 3, 4, 5
#: labels a next hop pushes above its own (Inter-AS option C), at most: the tc program's MAX_OUTER
MAX_OUTER = MAX_OUTER_LABELS
LBL_VRF, LBL_PORT, LBL_SWAP, LBL_POP = 1, 2, 3, 4
#: rt_val flags: a remote route covered by one of our aggregates (R10.3, re-tunnelled once)
RT_F_TRANSIT = 1
ECMP = {"per-flow": 0, "per-packet": 1, "per-prefix": 2}
LOCAL_IDX = 0x80000000

#: drop reasons of the programs, by index (the names the userspace pipeline uses)
DROP_REASONS = (
    "spoof-ip",
    "unknown-port",
    "underlay-unknown-source",
    "unknown-label",
    "ingress-check",
    "redirect-failed",
)
#: why a frame went to the slow path, by index
PUNT_REASONS = (
    "not-ip",
    "source-mac",
    "header",
    "neighbor-discovery",
    "link-local",
    "source-pair",
    "to-gateway",
    "broadcast-multicast",
    "ttl-expiring",
    "no-route",
    "too-big",
    "next-hop",
    "underlay-neighbor",
    "copy-failed",
    "fragment",
    "nested-encapsulation",
    "dhcp",
)
P_TOO_BIG = PUNT_REASONS.index("too-big")
#: label stack work of the programs, by index (counters "ebpf" / "fast_path")
FAST_COUNTERS = ("swapped", "retunnelled", "popped", "pushed")
#: octets of a punted frame the programs copy at most (too-big: the ICMP quote)
PUNT_MAX = 16384
PUNT_QUOTE = 1400

#: the FIB maps, in the order additions are written (deletions: reversed), so a
#: route never points at a next hop that is not there yet
FIB_MAPS = (
    "nhs",
    "members",
    "seeds",
    "nhgs",
    "group_eps",
    "ports",
    "src4",
    "src6",
    "gws",
    "bcasts",
    "peers",
    "labels",
    "routes4",
    "routes6",
    "ep_down",
)

Tables = dict[str, dict[bytes, bytes]]


def _addr16(a: IPAddress) -> bytes:
    return a.packed.ljust(16, b"\0")


def addr_key(ident: int, a: IPAddress) -> bytes:
    return ADDR_KEY.pack(ident, a.version, _addr16(a))


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def prefix_hash(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """The per-prefix mode's flow hash: the userspace FIB's ``fib.prefix_hash``."""
    raw = int(net.network_address).to_bytes(net.max_prefixlen // 8, "big")
    return zlib.crc32(raw + bytes((net.prefixlen,)))


def ranked(
    nhs: tuple[NextHop, ...], own: IPAddress | None, port_labels: dict[str, int]
) -> tuple[list[NextHop], list[int]]:
    """``nhs`` in rank order and their seeds (:mod:`vpe.dataplane.nhg`)."""
    if len(nhs) == 1:
        return [nhs[0]], [0]
    idents = [G.identity(nh, own, port_labels.get(nh.port or "")) for nh in nhs]
    order = G.order(idents)
    return [nhs[i] for i in order], [G.seed(idents[i]) for i in order]


def tunnel_overhead(encap: str, v6: bool, labels: int = 1) -> int:
    return (40 if v6 else 20) + (8 if encap == "mpls-in-udp" else 4) + 4 * labels


@dataclass
class Ids:
    """Stable numeric ids for VRF names, next hops and next-hop groups."""

    vrfs: dict[str, int] = field(default_factory=dict)
    nhs: dict[tuple[object, ...], int] = field(default_factory=dict)
    nhgs: dict[tuple[object, ...], int] = field(default_factory=dict)

    def vrf(self, name: str) -> int:
        v = self.vrfs.get(name)
        if v is None:
            v = self.vrfs[name] = len(self.vrfs) + 1
        return v

    @staticmethod
    def _take(table: dict[tuple[object, ...], int], key: tuple[object, ...]) -> int:
        v = table.get(key)
        if v is None:
            v = table[key] = max(table.values(), default=0) + 1
        return v

    def retain(self, nhs: Iterable[tuple[object, ...]], nhgs: Iterable[tuple[object, ...]]) -> None:
        """Forget the next hops and groups no longer used (ids may then be reused)."""
        keep_nh, keep_g = set(nhs), set(nhgs)
        self.nhs = {k: v for k, v in self.nhs.items() if k in keep_nh}
        self.nhgs = {k: v for k, v in self.nhgs.items() if k in keep_g}


@dataclass(frozen=True)
class Compiled:
    tables: Tables
    #: port name -> ifindex, and back
    ifindex: dict[str, int]
    #: VRF name -> id
    vrf_ids: dict[str, int]


def _nh_key(nh: NextHop) -> tuple[object, ...]:
    if nh.port is not None:
        return ("port", nh.port)
    return (str(nh.endpoint), nh.label, nh.encap, nh.outer)


def compile_tables(
    state: State,
    ids: Ids,
    ifindex_of: Callable[[Port], int],
    underlay_mtu: int,
    capacity: dict[str, int] | None = None,
    underlay_ips: tuple[IPAddress, ...] = (),
) -> Compiled:
    """Every FIB map's contents for ``state``.

    ``ifindex_of`` resolves a port's interface (it raises
    :class:`~vpe.dataplane.errors.PortUnavailable` for one that is not
    there); ``capacity`` (map name -> max entries) turns a table that would
    not fit into :class:`~vpe.dataplane.errors.ResourceExhausted` before
    anything is written.
    """
    t: Tables = {name: {} for name in FIB_MAPS}
    ifx: dict[str, int] = {}
    for p in state.ports:
        ifx[p.name] = ifindex_of(p)
    vrf_ids = {p.vrf: ids.vrf(p.vrf) for p in state.ports}
    for r in state.routes:
        vrf_ids.setdefault(r.vrf, ids.vrf(r.vrf))
    for e in state.labels:
        if e.kind == "vrf":
            vrf_ids.setdefault(e.target, ids.vrf(e.target))

    classified = {r.vrf for r in state.redirects}
    # ports, their source addresses (R13.1), gateway addresses, directed broadcasts
    for p in state.ports:
        i = ifx[p.name]
        pmac = mac(p.mac)
        # a VRF with flow classifiers (service chains): its ports' traffic takes the
        # userspace pipeline, which classifies (the tc program does not)
        flags = PORT_F_PUNT_ALL if p.vrf in classified else 0
        t["ports"][U32.pack(i)] = PORT.pack(vrf_ids[p.vrf], flags, pmac, mac(p.gateway_mac), p.mtu)
        # pairs first: an own address (a host prefix, the port's MAC) wins over them
        for pair in p.allowed_pairs:
            net = pair.prefix
            v = SRC_VAL.pack(mac(pair.mac) if pair.mac else pmac, 0)
            if net.version == 4:
                t["src4"][SRC4_KEY.pack(32 + net.prefixlen, i, net.network_address.packed)] = v
            else:
                t["src6"][SRC6_KEY.pack(32 + net.prefixlen, i, net.network_address.packed)] = v
        for ipi in p.ips:
            v = SRC_VAL.pack(pmac, 0)
            if ipi.version == 4:
                t["src4"][SRC4_KEY.pack(64, i, ipi.ip.packed)] = v
                if ipi.network.prefixlen < 31:
                    b = ipi.network.broadcast_address
                    t["bcasts"][addr_key(vrf_ids[p.vrf], b)] = ONE
            else:
                t["src6"][SRC6_KEY.pack(160, i, ipi.ip.packed)] = v
        for gw in p.gateway_ips:
            t["gws"][addr_key(i, gw)] = ONE

    # next hops, groups, routes
    nh_keys: list[tuple[object, ...]] = []
    g_keys: list[tuple[object, ...]] = []

    def nh_id(nh: NextHop) -> int:
        k = _nh_key(nh)
        n = ids._take(ids.nhs, k)
        if n not in seen_nh:
            seen_nh.add(n)
            nh_keys.append(k)
            if nh.port is not None:
                val = NH_VAL.pack(NH_LOCAL, ifx.get(nh.port, 0), 0, 0, b"\0" * 16, 0, 0, 0)
            else:
                assert nh.endpoint is not None and nh.label is not None
                v6 = nh.endpoint.version == 6
                if nh.encap == "mpls-in-udp":
                    kind = NH_UDP6 if v6 else NH_UDP4
                else:
                    kind = NH_GRE6 if v6 else NH_GRE4
                # outer labels (option C): pushed above the label, outermost first
                outer = [x << 12 for x in nh.outer] + [0] * (MAX_OUTER - len(nh.outer))
                max_inner = underlay_mtu - tunnel_overhead(nh.encap, v6, 1 + len(nh.outer))
                val = NH_VAL.pack(
                    kind, 0, (nh.label << 12) | 0x100, max_inner, _addr16(nh.endpoint),
                    len(nh.outer), *outer,
                )
            t["nhs"][U32.pack(n)] = val
        return n

    seen_nh: set[int] = set()
    seen_g: set[int] = set()
    own = underlay_ips[0] if underlay_ips else None
    port_labels = {e.target: e.label for e in state.labels if e.kind == "port"}

    def group(r: Route, nhs: tuple[NextHop, ...], backup: int) -> int:
        order, seeds = ranked(nhs, own, port_labels)
        members = [nh_id(nh) for nh in order]
        gkey: tuple[object, ...] = (r.ecmp, tuple(members), backup)
        g = ids._take(ids.nhgs, gkey)
        if g not in seen_g:
            seen_g.add(g)
            g_keys.append(gkey)
            local = [m for m, nh in zip(members, order, strict=True) if nh.is_local]
            t["nhgs"][U32.pack(g)] = NHG_VAL.pack(len(members), ECMP[r.ecmp], len(local), backup)
            for idx, m in enumerate(members):
                t["members"][MEMBER_KEY.pack(g, idx)] = U32.pack(m)
            for idx, m in enumerate(local):
                t["members"][MEMBER_KEY.pack(g, idx | LOCAL_IDX)] = U32.pack(m)
            if len(members) > 1:
                t["seeds"][U32.pack(g)] = SEEDS_VAL.pack(
                    *seeds, *([0] * (MAX_NEXT_HOPS - len(seeds)))
                )
            for nh in (*nhs, *r.backup):
                if nh.endpoint is not None:
                    t["group_eps"][addr_key(g, nh.endpoint)] = ONE
        return g

    for r in state.routes:
        g = group(r, r.next_hops, group(r, r.backup, 0) if r.backup else 0)
        vid = vrf_ids[r.vrf]
        net = r.prefix
        val = RT_VAL.pack(g, prefix_hash(net), 0, RT_F_TRANSIT if r.transit else 0)
        if net.version == 4:
            t["routes4"][RT4_KEY.pack(32 + net.prefixlen, vid, net.network_address.packed)] = val
        else:
            t["routes6"][RT6_KEY.pack(32 + net.prefixlen, vid, net.network_address.packed)] = val

    # labels, and the vPEs allowed to send us tunnelled traffic (R13.2)
    peers: set[IPAddress] = {p.endpoint for p in state.peers}
    for r in state.routes:
        peers.update(nh.endpoint for nh in (*r.next_hops, *r.backup) if nh.endpoint is not None)
    for rl in state.replication:
        peers.update(m.endpoint for m in rl.members if m.endpoint is not None)
    for e in state.labels:
        if e.kind == "vrf":
            val = LABEL_VAL.pack(LBL_VRF, vrf_ids[e.target], 0, 0)
        elif e.kind == "port":
            port = next((p for p in state.ports if p.name == e.target), None)
            if port is None:  # left to the slow path, which drops it ("port-down")
                t["labels"][U32.pack(e.label)] = LABEL_VAL.pack(LBL_SWAP, 0, 0, 0)
                continue
            val = LABEL_VAL.pack(LBL_PORT, vrf_ids[port.vrf], ifx[port.name], 0)
        elif e.kind == "pop":  # our loopback's labeled-unicast label: the next label decides
            val = LABEL_VAL.pack(LBL_POP, 0, 0, 0)
        else:
            assert e.next_hop is not None and e.next_hop.endpoint is not None
            peers.add(e.next_hop.endpoint)
            # the program swaps it in place only above other labels (a transit labeled-unicast
            # hop); a bottom-of-stack swap (option B) takes the userspace path
            val = LABEL_VAL.pack(LBL_SWAP, 0, 0, nh_id(e.next_hop))
        t["labels"][U32.pack(e.label)] = val
    ids.retain(nh_keys, g_keys)
    for ep in peers:
        t["peers"][addr_key(0, ep)] = ONE
    for ep in state.down_endpoints:
        t["ep_down"][addr_key(0, ep)] = ONE

    if capacity:
        for name, entries in t.items():
            cap = capacity.get(name)
            if cap is not None and len(entries) > cap:
                raise ResourceExhausted(
                    f"ebpf map {name}: {len(entries)} entries needed, it holds {cap}",
                    resource=f"ebpf map {name}",
                )
    return Compiled(t, ifx, vrf_ids)
