"""Relabel: local labels for routes re-advertised with next hop self (Inter-AS option B,
service-chain re-advertisement).

A router that re-advertises a labeled route with itself as next hop must
give it a label of its own and forward packets arriving with that label to
the original next hop with the original label: a label-swap entry
``local_label -> (next_hop, out_label)``. Routes with the same (next hop,
label) pair share one local label (per-next-hop-label allocation, what
option B ASBRs do), so the FIB holds one swap entry per pair, however many
prefixes use it.

:class:`Relabeler` counts references per pair. Holders are named
``(owner, item)`` (for Adj-RIB-Out: owner = an update group's family
state, item = (route key, path id)), so an owner that goes away releases
everything it held at once. Label allocation is the caller's
(``allocate(key) -> label``, ``release(key)``); the swap entries to add and
remove accumulate until :meth:`Relabeler.drain`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class RelabelKey:
    """What a local label stands for: routes via ``next_hop`` with label ``label``."""

    next_hop: IPAddress
    label: int


@dataclass(frozen=True, slots=True)
class SwapEntry:
    """FIB label swap: packets with ``local_label`` go to ``next_hop`` with ``out_label``."""

    local_label: int
    next_hop: IPAddress
    out_label: int


@dataclass(frozen=True, slots=True)
class SwapChanges:
    """Swap entries to install and to remove since the last :meth:`Relabeler.drain`."""

    added: tuple[SwapEntry, ...] = ()
    removed: tuple[SwapEntry, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class Relabeler:
    """Reference-counted local labels per (next hop, label); see the module docstring."""

    def __init__(self, allocate: Callable[[RelabelKey], int], release: Callable[[RelabelKey], None]) -> None:
        self._allocate = allocate
        self._release = release
        #: key -> (local label, reference count)
        self._labels: dict[RelabelKey, tuple[int, int]] = {}
        #: holder -> key it holds
        self._held: dict[tuple[Hashable, Hashable], RelabelKey] = {}
        #: owner -> its holders
        self._owners: dict[Hashable, set[tuple[Hashable, Hashable]]] = {}
        self._added: dict[SwapEntry, None] = {}
        self._removed: dict[SwapEntry, None] = {}

    def acquire(self, owner: Hashable, item: Hashable, next_hop: IPAddress, label: int) -> int:
        """The local label for (``next_hop``, ``label``), held by ``(owner, item)``.

        Idempotent per holder; a holder that held another pair releases it.
        """
        holder = (owner, item)
        key = RelabelKey(next_hop, label)
        old = self._held.get(holder)
        if old == key:
            return self._labels[key][0]
        if old is not None:
            self._drop(holder, old)
        got = self._labels.get(key)
        if got is None:
            local = self._allocate(key)
            self._labels[key] = (local, 1)
            self._note(True, SwapEntry(local, next_hop, label))
        else:
            local = got[0]
            self._labels[key] = (local, got[1] + 1)
        self._held[holder] = key
        self._owners.setdefault(owner, set()).add(holder)
        return local

    def release(self, owner: Hashable, item: Hashable) -> None:
        """``(owner, item)`` no longer uses its local label (no-op if it holds none)."""
        holder = (owner, item)
        key = self._held.get(holder)
        if key is not None:
            self._drop(holder, key)

    def release_owner(self, owner: Hashable) -> None:
        """Release everything ``owner`` holds."""
        for holder in list(self._owners.get(owner, ())):
            self._drop(holder, self._held[holder])

    def held(self, owner: Hashable) -> int:
        """How many holders ``owner`` has (for tests and show commands)."""
        return len(self._owners.get(owner, ()))

    def local_label(self, next_hop: IPAddress, label: int) -> int | None:
        got = self._labels.get(RelabelKey(next_hop, label))
        return None if got is None else got[0]

    def entries(self) -> list[SwapEntry]:
        """Every swap entry in use."""
        return [SwapEntry(v[0], k.next_hop, k.label) for k, v in self._labels.items()]

    def drain(self) -> SwapChanges:
        """The swap entries added and removed since the last drain (an add undone by a
        remove before the drain is neither)."""
        out = SwapChanges(tuple(self._added), tuple(self._removed))
        self._added = {}
        self._removed = {}
        return out

    def _drop(self, holder: tuple[Hashable, Hashable], key: RelabelKey) -> None:
        del self._held[holder]
        hs = self._owners.get(holder[0])
        if hs is not None:
            hs.discard(holder)
            if not hs:
                del self._owners[holder[0]]
        local, n = self._labels[key]
        if n > 1:
            self._labels[key] = (local, n - 1)
            return
        del self._labels[key]
        self._release(key)
        self._note(False, SwapEntry(local, key.next_hop, key.label))

    def _note(self, add: bool, e: SwapEntry) -> None:
        mine, other = (self._added, self._removed) if add else (self._removed, self._added)
        if e in other:
            del other[e]
        else:
            mine[e] = None
