"""MPLS label allocation for VPN routes (RFC 4364 section 4.3.2, RFC 3032 label range).

Labels 0-15 are reserved (RFC 3032); the allocator hands out 16..2^20-1.
An *owner* is a hashable key saying what a label means; the VPN layer
uses the typed values of :mod:`vpe.vpn.label_owners` (:class:`VrfLabel`
for a per-VRF aggregate label, :class:`PrefixLabel` or
:class:`EndpointLabel` for the other modes). Those, strings, and tuples of
strings survive :meth:`dump` / :meth:`restore` as JSON.

A label must not mean something new while a remote PE may still send
traffic with it, so a released label goes through two gates before reuse:

1. *pending*: the caller has not yet confirmed that the withdrawal (or the
   replacing announcement) was sent - :meth:`confirm_withdrawn`;
2. *hold-down*: ``hold_down`` seconds from that confirmation (time is passed
   in; nothing here reads a clock).

Allocation is deterministic and O(1): fresh labels are taken in increasing
order first (so reuse happens as late as possible), then matured labels in
the order they matured. An owner that asks again while its old label is
still pending or held down gets that same label back (a flapping prefix
keeps its label - same meaning, no risk). :meth:`reserve` re-takes a
specific label, which is how a restarted agent keeps "the same labels where
possible".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .errors import Conflict, InUse, InvalidValue
from .label_owners import LABEL_OWNER_TYPES, owner_from_json

MIN_LABEL = 16
MAX_LABEL = (1 << 20) - 1

#: what the allocator accepts as an owner (the VPN layer passes :data:`~vpe.vpn.label_owners.LabelOwner` values)
Owner = Hashable


class LabelSpaceExhausted(RuntimeError):
    """Every label of the range is in use, pending or held down."""


def _owner_to_json(o: Owner) -> Any:
    if isinstance(o, LABEL_OWNER_TYPES):
        return o.to_json()
    return list(o) if isinstance(o, tuple) else o


def generic_owner_from_json(value: Any) -> Owner:
    """The default reader of stored owners: typed owners (JSON objects) as
    :data:`~vpe.vpn.label_owners.LabelOwner` values, lists as tuples, anything else as it is."""
    if isinstance(value, dict):
        return owner_from_json(value)
    return tuple(value) if isinstance(value, list) else value


class LabelAllocator:
    """Labels in ``[low, high]`` bound to owners, with withdraw-confirmed hold-down."""

    __slots__ = (
        "low",
        "high",
        "hold_down",
        "_next",
        "_by_owner",
        "_owner_of",
        "_pending",
        "_cooling",
        "_last_deadline",
        "_free",
        "_ahead",
        "_state",
        "_deadline",
        "_dirty",
        "_meta_dirty",
    )

    # label states in _state (absent: fresh, never used)
    _USED = 1
    _PENDING = 2
    _COOLING = 3
    _FREE = 4

    def __init__(self, hold_down: float = 60.0, low: int = MIN_LABEL, high: int = MAX_LABEL) -> None:
        if not MIN_LABEL <= low <= high <= MAX_LABEL:
            raise InvalidValue(
                f"label range {low}..{high}: must lie within {MIN_LABEL}..{MAX_LABEL} and low <= high"
            )
        if hold_down < 0:
            raise InvalidValue(f"hold-down: {hold_down} seconds is negative")
        self.low = low
        self.high = high
        self.hold_down = float(hold_down)
        self._next = low  # first never-used label
        self._by_owner: dict[Owner, int] = {}
        self._owner_of: dict[int, Owner] = {}  # used, pending and cooling labels
        self._pending: dict[int, None] = {}  # released, withdraw not yet confirmed
        self._cooling: deque[tuple[float, int]] = deque()  # (reusable at, label), sorted
        self._last_deadline = float("-inf")
        self._free: deque[int] = deque()  # matured; may hold stale entries (lazy delete)
        self._ahead: set[int] = set()  # labels >= _next taken by reserve()
        self._state: dict[int, int] = {}
        self._deadline: dict[int, float] = {}  # cooling and free labels: when they (were to) mature
        #: labels whose state changed since :meth:`take_changes`; the range or next label changed
        self._dirty: set[int] = set()
        self._meta_dirty = True

    # -- queries ------------------------------------------------------------

    def label_of(self, owner: Owner) -> int | None:
        """The label ``owner`` holds now (not one it released)."""
        lab = self._by_owner.get(owner)
        if lab is not None and self._state.get(lab) == self._USED:
            return lab
        return None

    def owner_of(self, label: int) -> Owner | None:
        """Who holds ``label`` (in use), else None."""
        if self._state.get(label) == self._USED:
            return self._owner_of[label]
        return None

    def in_use(self) -> dict[int, Owner]:
        return {lab: o for lab, o in self._owner_of.items() if self._state.get(lab) == self._USED}

    def state_of(self, label: int) -> str:
        """"used", "pending", "hold-down", "free" or "fresh" (for errors and tests)."""
        return {
            self._USED: "used",
            self._PENDING: "pending",
            self._COOLING: "hold-down",
            self._FREE: "free",
        }.get(self._state.get(label, 0), "fresh")

    # -- allocation ---------------------------------------------------------

    def allocate(self, owner: Owner, now: float = 0.0) -> int:
        """The label of ``owner``: its current one, its own released one, or a new one."""
        lab = self._by_owner.get(owner)
        if lab is not None:
            st = self._state.get(lab)
            if st == self._USED:
                return lab
            if st in (self._PENDING, self._COOLING) and self._owner_of.get(lab) == owner:
                self._pending.pop(lab, None)  # cooling entry is skipped lazily
                self._state[lab] = self._USED
                self._dirty.add(lab)
                return lab
        lab = self._take(now)
        self._bind(owner, lab)
        return lab

    def reserve(self, label: int, owner: Owner) -> int:
        """Take exactly ``label`` for ``owner`` (restart: same labels where possible).

        ``ValueError`` if the label is outside the range or held by someone else
        (in use, pending or in hold-down for another owner).
        """
        if type(label) is not int or not self.low <= label <= self.high:
            raise InvalidValue(f"label: {label!r} is outside {self.low}..{self.high}")
        st = self._state.get(label, 0)
        if st in (self._USED, self._PENDING, self._COOLING):
            if self._owner_of.get(label) == owner:
                if st != self._USED:
                    self._pending.pop(label, None)
                    self._state[label] = self._USED
                    self._by_owner[owner] = label
                    self._dirty.add(label)
                return label
            raise InUse(
                f"label: {label} is {self.state_of(label)} for {self._owner_of.get(label)!r}, "
                f"cannot reserve it for {owner!r}"
            )
        if owner in self._by_owner and self.label_of(owner) is not None:
            raise Conflict(f"label owner {owner!r} already holds label {self._by_owner[owner]}")
        if st == 0 and label >= self._next:
            if label == self._next:
                self._advance()
            else:
                self._ahead.add(label)
        # st == _FREE: its entry in _free is skipped lazily by _take
        self._bind(owner, label)
        return label

    def release(self, owner: Owner) -> int | None:
        """``owner`` no longer needs its label: it becomes pending; returns it."""
        lab = self.label_of(owner)
        if lab is None:
            return None
        self._state[lab] = self._PENDING
        self._pending[lab] = None
        self._dirty.add(lab)
        return lab

    def confirm_withdrawn(self, labels: Iterable[int], now: float) -> None:
        """The withdrawals of ``labels`` were sent at ``now``: start their hold-down."""
        for lab in labels:
            if self._state.get(lab) != self._PENDING:
                continue
            del self._pending[lab]
            deadline = max(now + self.hold_down, self._last_deadline)  # keep the deque sorted
            self._last_deadline = deadline
            self._state[lab] = self._COOLING
            self._cooling.append((deadline, lab))
            self._deadline[lab] = deadline
            self._dirty.add(lab)

    def pending(self) -> list[int]:
        """Released labels whose withdrawal is not yet confirmed."""
        return list(self._pending)

    # -- internals ----------------------------------------------------------

    def _bind(self, owner: Owner, lab: int) -> None:
        # a released label the owner held before keeps maturing; only the newest counts
        self._by_owner[owner] = lab
        prev = self._owner_of.get(lab)
        if prev is not None and prev != owner and self._by_owner.get(prev) == lab:
            del self._by_owner[prev]
        self._owner_of[lab] = owner
        self._state[lab] = self._USED
        self._deadline.pop(lab, None)
        self._dirty.add(lab)

    def _advance(self) -> None:
        n = self._next + 1
        ahead = self._ahead
        while n in ahead:
            ahead.discard(n)
            n += 1
        self._next = n
        self._meta_dirty = True

    def _mature(self, now: float) -> None:
        cooling = self._cooling
        while cooling and cooling[0][0] <= now:
            _, lab = cooling.popleft()
            if self._state.get(lab) != self._COOLING:
                continue  # revived by its owner meanwhile
            self._state[lab] = self._FREE
            self._dirty.add(lab)
            owner = self._owner_of.pop(lab, None)
            if owner is not None and self._by_owner.get(owner) == lab:
                del self._by_owner[owner]
            self._free.append(lab)

    def _take(self, now: float) -> int:
        if self._next <= self.high:
            lab = self._next
            self._advance()
            return lab
        self._mature(now)
        free = self._free
        while free:
            lab = free.popleft()
            if self._state.get(lab) == self._FREE:
                return lab
        raise LabelSpaceExhausted(
            f"no MPLS label left in {self.low}..{self.high}: {len(self._pending)} pending "
            f"withdrawal, {len(self._cooling)} in hold-down"
        )

    # -- persistence ----------------------------------------------------------

    def take_changes(self, now: float) -> tuple[dict[str, Any] | None, list[list[Any]]]:
        """What changed since the last call, as rows to store (and forget it):
        ``(space, rows)``. ``space`` is the range, hold-down and next fresh
        label if they changed (else None); each row is ``[label, state,
        owner, remaining]`` with state "used", "pending", "cooling" or
        "free", owner as JSON (None for a free label) and remaining the
        seconds from ``now`` until a cooling label matures (negative: when a
        free one did; None otherwise). Costs the changes, not the labels held.
        """
        self._mature(now)
        space = None
        if self._meta_dirty:
            space = {"low": self.low, "high": self.high, "hold_down": self.hold_down, "next": self._next}
        rows: list[list[Any]] = []
        names = {self._USED: "used", self._PENDING: "pending", self._COOLING: "cooling", self._FREE: "free"}
        for lab in sorted(self._dirty):
            st = self._state.get(lab, 0)
            if not st:
                continue
            d = self._deadline.get(lab)
            owner = None if st == self._FREE else _owner_to_json(self._owner_of[lab])
            rows.append([lab, names[st], owner, None if d is None else d - now])
        self._dirty.clear()
        self._meta_dirty = False
        return space, rows

    def changes_lost(self, space: dict[str, Any] | None, rows: Iterable[list[Any]]) -> None:
        """The changes :meth:`take_changes` returned were not stored: report them again."""
        if space is not None:
            self._meta_dirty = True
        self._dirty.update(int(r[0]) for r in rows)

    @classmethod
    def from_rows(
        cls,
        space: dict[str, Any],
        rows: Iterable[list[Any]],
        now: float,
        owner: Callable[[Any], Owner] = generic_owner_from_json,
    ) -> LabelAllocator:
        """The allocator stored as :meth:`take_changes` rows (``remaining`` counted from ``now``)."""
        state: dict[str, Any] = dict(space)
        state.update(used=[], pending=[], cooling=[], free=[])
        nxt = int(space.get("next", 0))
        ahead = []
        free: list[tuple[float, int]] = []
        try:
            for lab, st, o, remaining in rows:
                lab = int(lab)
                if lab >= nxt:
                    ahead.append(lab)
                if st in ("used", "pending"):
                    state[st].append([lab, o])
                elif st == "cooling":
                    state["cooling"].append([lab, o, float(remaining or 0.0)])
                elif st == "free":
                    free.append((float(remaining or 0.0), lab))
                else:
                    raise InvalidValue(f"label allocator state: label {lab} in unknown state {st!r}")
        except (TypeError, ValueError) as e:
            if isinstance(e, InvalidValue):
                raise
            raise InvalidValue(f"label allocator state: {e!r}") from None
        state["cooling"].sort(key=lambda c: (c[2], c[0]))
        state["free"] = [lab for _, lab in sorted(free)]
        state["ahead"] = ahead
        a = cls.restore(state, now, owner)
        for rem, lab in free:  # keep the maturing order across the next restart too
            a._deadline[lab] = now + rem
        a._dirty.clear()
        a._meta_dirty = False
        return a

    def dump(self, now: float) -> dict[str, Any]:
        """JSON-able state; hold-downs are stored as seconds remaining at ``now``."""
        self._mature(now)
        jowner = _owner_to_json
        st = self._state
        return {
            "low": self.low,
            "high": self.high,
            "hold_down": self.hold_down,
            "next": self._next,
            "ahead": sorted(self._ahead),
            "used": [[lab, jowner(o)] for lab, o in self._owner_of.items() if st.get(lab) == self._USED],
            "pending": [[lab, jowner(self._owner_of[lab])] for lab in self._pending],
            "cooling": [
                [lab, jowner(self._owner_of[lab]), max(0.0, d - now)]
                for d, lab in self._cooling
                if st.get(lab) == self._COOLING
            ],
            "free": [lab for lab in self._free if st.get(lab) == self._FREE],
        }

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        now: float,
        owner: Callable[[Any], Owner] = generic_owner_from_json,
    ) -> LabelAllocator:
        """The allocator :meth:`dump` described, hold-downs resumed from ``now``;
        ``owner`` reads a stored owner (the VPN service passes
        :func:`~vpe.vpn.label_owners.owner_from_json`, which also reads the
        positional lists older versions wrote).

        ``ValueError`` naming the field on a state that does not fit together.
        """
        try:
            a = cls(float(state["hold_down"]), int(state["low"]), int(state["high"]))
            a._next = int(state["next"])
            a._ahead = {int(x) for x in state["ahead"]}
            for lab, o in state["used"]:
                a._bind(owner(o), int(lab))
            for lab, o in state["pending"]:
                a._bind(owner(o), int(lab))
                a._state[int(lab)] = cls._PENDING
                a._pending[int(lab)] = None
            for lab, o, remaining in state["cooling"]:
                a._bind(owner(o), int(lab))
                a._state[int(lab)] = cls._COOLING
                d = max(now + float(remaining), a._last_deadline)
                a._last_deadline = d
                a._cooling.append((d, int(lab)))
            for lab in state["free"]:
                a._state[int(lab)] = cls._FREE
                a._free.append(int(lab))
            for d, lab in a._cooling:
                a._deadline[lab] = d
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidValue(f"label allocator state: {e!r}") from None
        if not a.low <= a._next <= a.high + 1:
            raise InvalidValue(f"label allocator state: next {a._next} outside {a.low}..{a.high + 1}")
        return a
