"""Per-VRF longest-prefix match and ECMP next-hop selection.

Two LPM tables share one small interface (``insert`` / ``remove`` /
``lookup`` / ``exact`` / ``__len__``), keyed by integers:

* :class:`DictLpm` - one ``dict`` per prefix length that holds routes, probed
  from the longest length down. A lookup costs one mask and one dict probe per
  *populated* length; tenant FIBs have few distinct lengths (host routes, the
  subnet, a default), so this is a handful of C-level operations.
* :class:`TrieLpm` - pytricia's C patricia trie, keyed by packed addresses.

``bench/dataplane_pipeline.py`` measures both. Neither wins everywhere: the
dict scheme is faster while few lengths are populated, the trie beyond that,
so :data:`DEFAULT_LPM` is :class:`AdaptiveLpm`, which switches between them
(numbers in docs/dataplane.md).

ECMP (R12.2): a :class:`FibEntry` spreads over up to 512 next hops per flow
(a 5-tuple hash that is the same for both directions of a flow, so forward
and reverse traffic of a session pick the same instance: R12.3, chosen by
rendezvous hashing over identity-ranked members, :mod:`vpe.dataplane.nhg`),
per packet (round robin) or per prefix (the prefix hash as the flow hash,
fixed at install time). The hash is CRC-32 of a canonical key: deterministic across
processes and hosts, unlike Python's salted ``hash()``.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

import pytricia

from ..nhg import BUCKET_MASK, rank2, winner
from .packets import IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP

V = TypeVar("V")

_II = struct.Struct("!II")
_HH = struct.Struct("!HH")
_KEY4 = struct.Struct("!IIBHH")
_PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP))
#: the IPv4 flow key and the protocols with ports (the pipeline inlines flow_hash)
KEY4 = _KEY4
PORTED = _PORTED


class Lpm(Protocol[V]):
    """What the pipeline needs from a longest-prefix-match table."""

    bits: int

    def insert(self, net: int, plen: int, value: V) -> None: ...
    def remove(self, net: int, plen: int) -> bool: ...
    def lookup(self, addr: int) -> V | None: ...
    def exact(self, net: int, plen: int) -> V | None: ...
    def __len__(self) -> int: ...


class DictLpm(Generic[V]):
    """Longest-prefix match as one dict per populated prefix length."""

    __slots__ = ("bits", "_tables", "_scan", "_count")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._tables: dict[int, dict[int, V]] = {}
        self._scan: tuple[tuple[int, dict[int, V]], ...] = ()
        self._count = 0

    def _mask(self, plen: int) -> int:
        full = (1 << self.bits) - 1
        return full ^ ((1 << (self.bits - plen)) - 1)

    def _rebuild(self) -> None:
        self._scan = tuple(
            (self._mask(plen), self._tables[plen]) for plen in sorted(self._tables, reverse=True)
        )

    def insert(self, net: int, plen: int, value: V) -> None:
        table = self._tables.get(plen)
        if table is None:
            table = self._tables[plen] = {}
            self._rebuild()
        key = net & self._mask(plen)
        if key not in table:
            self._count += 1
        table[key] = value

    def remove(self, net: int, plen: int) -> bool:
        table = self._tables.get(plen)
        if table is None or table.pop(net & self._mask(plen), None) is None:
            return False
        self._count -= 1
        if not table:
            del self._tables[plen]
            self._rebuild()
        return True

    def lookup(self, addr: int) -> V | None:
        for mask, table in self._scan:
            value = table.get(addr & mask)
            if value is not None:
                return value
        return None

    def exact(self, net: int, plen: int) -> V | None:
        table = self._tables.get(plen)
        return None if table is None else table.get(net & self._mask(plen))

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[tuple[int, int, V]]:
        for plen, table in self._tables.items():
            for net, value in table.items():
                yield net, plen, value


class TrieLpm(Generic[V]):
    """Longest-prefix match in pytricia's patricia trie (C extension)."""

    __slots__ = ("bits", "_trie", "_width")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._width = bits // 8
        self._trie: Any = pytricia.PyTricia(bits)

    def _key(self, net: int, plen: int) -> str:
        addr = ipaddress.IPv4Address(net) if self.bits == 32 else ipaddress.IPv6Address(net)
        return f"{addr}/{plen}"

    def insert(self, net: int, plen: int, value: V) -> None:
        self._trie.insert(self._key(net, plen), value)

    def remove(self, net: int, plen: int) -> bool:
        key = self._key(net, plen)
        if not self._trie.has_key(key):
            return False
        self._trie.delete(key)
        return True

    def lookup(self, addr: int) -> V | None:
        value: V | None = self._trie.get(addr.to_bytes(self._width, "big"))
        return value

    def lookup_packed(self, addr: bytes) -> V | None:
        value: V | None = self._trie.get(addr)
        return value

    def exact(self, net: int, plen: int) -> V | None:
        key = self._key(net, plen)
        if not self._trie.has_key(key):
            return None
        value: V = self._trie[key]
        return value

    def __len__(self) -> int:
        return len(self._trie)


class AdaptiveLpm(Generic[V]):
    """DictLpm while few prefix lengths are populated, pytricia beyond that.

    Measured (bench/dataplane_pipeline.py, docs/dataplane.md): with 3 lengths
    the dict scheme does ~1.4 M lookups/s against pytricia's ~0.85 M, but its
    cost grows with every populated length (25 lengths: ~0.15 M/s) while the
    trie's does not. Above :attr:`MAX_DICT_LENGTHS` lengths a trie mirror is
    kept and answers lookups; the dict stays the source of truth.
    """

    MAX_DICT_LENGTHS = 6
    __slots__ = ("bits", "_dict", "_trie", "lookup")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._dict: DictLpm[V] = DictLpm(bits)
        self._trie: TrieLpm[V] | None = None
        self.lookup: Any = self._dict.lookup

    def _adapt(self) -> None:
        many = len(self._dict._tables) > self.MAX_DICT_LENGTHS
        if many and self._trie is None:
            trie: TrieLpm[V] = TrieLpm(self.bits)
            for net, plen, value in self._dict.items():
                trie.insert(net, plen, value)
            self._trie = trie
            self.lookup = trie.lookup
        elif not many and self._trie is not None:
            self._trie = None
            self.lookup = self._dict.lookup

    def insert(self, net: int, plen: int, value: V) -> None:
        self._dict.insert(net, plen, value)
        if self._trie is not None:
            self._trie.insert(net & self._dict._mask(plen), plen, value)
        self._adapt()

    def remove(self, net: int, plen: int) -> bool:
        if not self._dict.remove(net, plen):
            return False
        if self._trie is not None:
            self._trie.remove(net & self._dict._mask(plen), plen)
        self._adapt()
        return True

    def exact(self, net: int, plen: int) -> V | None:
        return self._dict.exact(net, plen)

    def __len__(self) -> int:
        return len(self._dict)

    @property
    def uses_trie(self) -> bool:
        return self._trie is not None


#: The LPM the forwarder uses (chosen by measurement, see module docstring).
DEFAULT_LPM: type[AdaptiveLpm[Any]] = AdaptiveLpm


# ------------------------------------------------------------------------ hashing


def flow_hash(pkt: Any, off: int = 0) -> int:
    """Symmetric 5-tuple hash of the IP packet at ``off`` (either direction, same value).

    Addresses and ports are each put in canonical (smaller first) order; ports
    are left out for fragments and protocols without them, so all fragments
    of a datagram hash alike.
    """
    first = pkt[off]
    if first >> 4 == 4:
        hl = (first & 0x0F) * 4
        proto = pkt[off + 9]
        a, b = _II.unpack_from(pkt, off + 12)
        pa = pb = 0
        if (
            proto in _PORTED
            and not (_HH.unpack_from(pkt, off + 6)[0] & 0x3FFF)
            and len(pkt) >= off + hl + 4
        ):
            pa, pb = _HH.unpack_from(pkt, off + hl)
        if a > b:
            a, b = b, a
        if pa > pb:
            pa, pb = pb, pa
        return zlib.crc32(_KEY4.pack(a, b, proto, pa, pb))
    proto = pkt[off + 6]
    sa = bytes(pkt[off + 8 : off + 24])
    da = bytes(pkt[off + 24 : off + 40])
    pa = pb = 0
    if proto in _PORTED and len(pkt) >= off + 44:
        pa, pb = _HH.unpack_from(pkt, off + 40)
    if sa > da:
        sa, da = da, sa
    if pa > pb:
        pa, pb = pb, pa
    return zlib.crc32(sa + da + struct.pack("!BHH", proto, pa, pb))


def prefix_hash(net: int, plen: int, bits: int) -> int:
    return zlib.crc32(net.to_bytes(bits // 8, "big") + bytes((plen,)))


PER_FLOW = 0
PER_PACKET = 1
PER_PREFIX = 2
ECMP_CODES = {"per-flow": PER_FLOW, "per-packet": PER_PACKET, "per-prefix": PER_PREFIX}


class FibEntry:
    """A compiled route: next-hop adjacencies and the ECMP state to pick one.

    ``adjs`` are in rank order (:func:`vpe.dataplane.nhg.order`) and
    ``seeds`` are their identity seeds; per-flow and per-prefix choices are
    rendezvous hashing over flow buckets (:mod:`vpe.dataplane.nhg`), cached
    per bucket. An adjacency whose ``ep.down`` is set (its endpoint was
    declared dead, R11.2) is skipped: the bucket's runner-up takes it, then
    the heaviest live member, then the ``backup`` entry's choice.
    """

    __slots__ = (
        "route",
        "adjs",
        "seeds",
        "n",
        "mode",
        "rr",
        "prefix_pick",
        "local_adjs",
        "endpoints",
        "fast",
        "backup",
        "_cache",
    )

    def __init__(
        self,
        route: Any,
        adjs: tuple[Any, ...],
        mode: int,
        phash: int,
        seeds: tuple[int, ...] | None = None,
        backup: FibEntry | None = None,
    ) -> None:
        self.route = route
        self.adjs = adjs
        self.n = len(adjs)
        self.seeds = seeds if seeds is not None else tuple(range(self.n))
        self.mode = mode
        self.rr = 0
        self.backup = backup
        self.prefix_pick = rank2(self.seeds, phash) if self.n > 1 else (0, -1)
        self._cache: dict[int, tuple[int, int]] = {}
        #: one member, no backup: the pipeline takes ``adjs[0]`` without a call
        self.fast = self.n == 1 and backup is None
        self.local_adjs = tuple(a for a in adjs if getattr(a, "is_local", False))
        eps = {a.endpoint for a in adjs if not getattr(a, "is_local", False)}
        if backup is not None:
            eps |= backup.endpoints
        self.endpoints: frozenset[str] = frozenset(eps)

    def ranked(self, fh: int) -> tuple[int, int]:
        """(winner, runner-up) for flow hash ``fh`` (cached per bucket)."""
        b = fh & BUCKET_MASK
        r = self._cache.get(b)
        if r is None:
            r = self._cache[b] = rank2(self.seeds, b)
        return r

    def pick(self, pkt: Any, off: int) -> tuple[Any, int]:
        """(adjacency, flow hash or -1 when it was not needed to choose)."""
        n = self.n
        adjs = self.adjs
        mode = self.mode
        fh = -1
        if n == 1:
            i1, i2 = 0, -1
        elif mode == PER_FLOW:
            fh = flow_hash(pkt, off)
            i1, i2 = self.ranked(fh)
        elif mode == PER_PACKET:
            i1 = self.rr
            self.rr = i1 + 1 if i1 + 1 < n else 0
            i2 = self.rr
        else:
            i1, i2 = self.prefix_pick
        adj = adjs[i1]
        if not _down(adj):
            return adj, fh
        if i2 >= 0 and not _down(adjs[i2]):
            return adjs[i2], fh
        return self._fallback(pkt, off, fh, adj)

    def _fallback(self, pkt: Any, off: int, fh: int, first: Any) -> tuple[Any, int]:
        """Winner and runner-up are down: the heaviest live member, else the backup."""
        alive = [not _down(a) for a in self.adjs]
        if any(alive):
            if fh < 0 and self.mode == PER_FLOW:
                fh = flow_hash(pkt, off)
            key = fh if self.mode == PER_FLOW else self.rr
            return self.adjs[winner(self.seeds, key, alive)], fh
        if self.backup is not None:
            adj, bfh = self.backup.pick(pkt, off)
            if not _down(adj):
                return adj, bfh
        return first, fh  # nothing is alive: the primary's choice (nothing better)

    def pick_local(self, pkt: Any, off: int) -> Any | None:
        """A local adjacency for traffic that already crossed the underlay (R8.1)."""
        local = self.local_adjs
        if not local:
            return None
        if len(local) == 1:
            return local[0]
        return local[flow_hash(pkt, off) % len(local)]


def _down(adj: Any) -> bool:
    ep = getattr(adj, "ep", None)
    return ep is not None and ep.down
