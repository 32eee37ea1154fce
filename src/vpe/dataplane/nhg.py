"""Next-hop group member selection, the one function every driver implements.

R12.2 / R12.3 (service chains) and R11.2 (backup paths) need the forwarders
of all hosts to agree on which member of a group a flow goes to, and need a
membership change to move as few flows as possible. The rule:

* **Identity, not arrival order.** A member is known by its identity: a
  remote next hop by (endpoint, label); a local port by (this host's
  underlay address, the label it is advertised with) when a "port" label
  entry names it - so the host that runs an instance and the hosts that
  tunnel to it see the same identity - else by its port name. Its *seed* is
  the CRC-32 of that identity. Members are ranked by (seed, identity).
* **Rendezvous (highest random weight) hashing over flow buckets.** A flow's
  bucket is the low :data:`BUCKET_BITS` bits of its symmetric 5-tuple hash
  (:func:`vpe.dataplane.userspace.fib.flow_hash`, the same in both
  directions); each member's weight for the bucket is
  ``fmix32(seed ^ fmix32(bucket))`` (MurmurHash3's finaliser, a bijection,
  so two members never tie); the heaviest member wins. Removing a member
  moves exactly the buckets it won; adding one moves exactly the buckets it
  now wins (1/(N+1) of them on average); nothing else moves. The second
  heaviest member is where a bucket goes when the winner's endpoint is down,
  which is also where it stays once the control plane removes the winner:
  the fast reroute (docs/fast-reroute.md) and the converged state agree.
* Per-prefix mode uses the prefix hash as the bucket source, per-packet mode
  a round robin counter (weights are not used).

The userspace forwarder computes this per bucket and caches it; the eBPF
program (``vpe_tc.c``, ``pick_hrw``) runs the same loop over the seeds in a
map. ``tests/unit/test_nhg.py`` checks them against each other.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Sequence

from .driver import NextHop

BUCKET_BITS = 16
BUCKET_MASK = (1 << BUCKET_BITS) - 1
_M32 = 0xFFFFFFFF


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser (a bijection on 32-bit integers)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def identity(
    nh: NextHop,
    own: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    port_label: int | None = None,
) -> bytes:
    """The identity a member is ranked and hashed by (see the module docstring)."""
    if nh.port is not None:
        if own is not None and port_label is not None:
            return own.packed + port_label.to_bytes(3, "big")
        return b"port:" + nh.port.encode()
    assert nh.endpoint is not None and nh.label is not None
    return nh.endpoint.packed + nh.label.to_bytes(3, "big")


def seed(ident: bytes) -> int:
    return zlib.crc32(ident)


def order(idents: Sequence[bytes]) -> list[int]:
    """Positions of ``idents`` in rank order: by (seed, identity), never arrival order."""
    return sorted(range(len(idents)), key=lambda i: (seed(idents[i]), idents[i]))


def bucket_key(bucket: int) -> int:
    return fmix32(bucket & BUCKET_MASK)


def rank2(seeds: Sequence[int], fh: int) -> tuple[int, int]:
    """(winner, runner-up) positions in ``seeds`` for flow hash ``fh`` (runner-up -1 if n == 1)."""
    h = fmix32(fh & BUCKET_MASK)
    best = second = -1
    i1 = i2 = -1
    for i, s in enumerate(seeds):
        w = fmix32(s ^ h)
        if w > best:
            second, i2 = best, i1
            best, i1 = w, i
        elif w > second:
            second, i2 = w, i
    return i1, i2


def winner(seeds: Sequence[int], fh: int, alive: Sequence[bool] | None = None) -> int:
    """The heaviest member for ``fh`` among those alive (-1: none is)."""
    h = fmix32(fh & BUCKET_MASK)
    best = -1
    pick = -1
    for i, s in enumerate(seeds):
        if alive is not None and not alive[i]:
            continue
        w = fmix32(s ^ h)
        if w > best:
            best, pick = w, i
    return pick
