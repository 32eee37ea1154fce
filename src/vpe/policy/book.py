"""PolicyBook: the named policies of an agent and which neighbor uses which.

Pure state with change notification: the config file and the API write
here; the router subscribes and is told, per neighbor and direction,
which policy now applies (so an export change becomes
``AdjRibOut.set_export_policy`` and an import change a route refresh),
without the book knowing about either.

Neighbors are named by their address text (``"192.0.2.7"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Literal

from .errors import PolicyError, PolicyInUse, PolicyNotFound
from .parse import check_name, parse_policy, policy_to_json
from .policy import Policy

Direction = Literal["import", "export"]
_DIRECTIONS: tuple[Direction, Direction] = ("import", "export")


@dataclass(frozen=True, slots=True)
class Binding:
    """The policy names one neighbor uses (None: no policy in that direction)."""

    import_policy: str | None = None
    export_policy: str | None = None

    def name(self, direction: Direction) -> str | None:
        return self.import_policy if direction == "import" else self.export_policy


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """Neighbor ``neighbor``'s ``direction`` policy is now ``policy`` (None: none)."""

    neighbor: str
    direction: Direction
    policy: Policy | None


Listener = Callable[[list[PolicyChange]], None]


def _neighbor(address: str) -> str:
    try:
        return str(ip_address(address))
    except ValueError:
        raise PolicyError("neighbor", address, "is not an IP address") from None


class PolicyBook:
    """Named policies plus neighbor bindings; listeners hear of every effective change."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}
        self._bindings: dict[str, Binding] = {}
        self._listeners: list[Listener] = []

    # -- reads -------------------------------------------------------------------

    def get(self, name: str) -> Policy | None:
        return self._policies.get(name)

    def names(self) -> list[str]:
        return sorted(self._policies)

    def policies(self) -> list[Policy]:
        return [self._policies[n] for n in self.names()]

    def binding(self, neighbor: str) -> Binding:
        return self._bindings.get(_neighbor(neighbor), Binding())

    def import_policy(self, neighbor: str) -> Policy | None:
        return self._resolve(neighbor, "import")

    def export_policy(self, neighbor: str) -> Policy | None:
        return self._resolve(neighbor, "export")

    def users(self, name: str) -> list[tuple[str, Direction]]:
        """(neighbor, direction) pairs using policy ``name``."""
        return [
            (n, d) for n, b in sorted(self._bindings.items()) for d in _DIRECTIONS if b.name(d) == name
        ]

    def _resolve(self, neighbor: str, direction: Direction) -> Policy | None:
        name = self.binding(neighbor).name(direction)
        return None if name is None else self._policies.get(name)

    # -- writes ----------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """``listener`` gets the list of effective changes after each write (never an empty list)."""
        self._listeners.append(listener)

    def put(self, policy: Policy) -> list[PolicyChange]:
        """Create or replace ``policy``; neighbors using it are told (if it really changed)."""
        check_name(policy.name, "name")
        old = self._policies.get(policy.name)
        self._policies[policy.name] = policy
        if old == policy:
            return []
        changes = [PolicyChange(n, d, policy) for n, d in self.users(policy.name)]
        self._notify(changes)
        return changes

    def delete(self, name: str) -> None:
        """Remove policy ``name``: :class:`PolicyNotFound`, or :class:`PolicyInUse` while bound."""
        if name not in self._policies:
            raise PolicyNotFound(name)
        users = self.users(name)
        if users:
            raise PolicyInUse(name, [(n, str(d)) for n, d in users])
        del self._policies[name]

    def bind(self, neighbor: str, import_policy: str | None = None, export_policy: str | None = None) -> list[PolicyChange]:
        """Set ``neighbor``'s policies (None: none); unknown names raise :class:`PolicyNotFound`."""
        key = _neighbor(neighbor)
        for d, name in (("import", import_policy), ("export", export_policy)):
            if name is not None and name not in self._policies:
                raise PolicyNotFound(name, f"neighbor {key} {d}_policy")
        old = self._bindings.get(key, Binding())
        new = Binding(import_policy, export_policy)
        if new == Binding():
            self._bindings.pop(key, None)
        else:
            self._bindings[key] = new
        changes = [
            PolicyChange(key, d, None if new.name(d) is None else self._policies[new.name(d)])  # type: ignore[index]
            for d in _DIRECTIONS
            if old.name(d) != new.name(d)
        ]
        self._notify(changes)
        return changes

    def unbind(self, neighbor: str) -> list[PolicyChange]:
        return self.bind(neighbor, None, None)

    def _notify(self, changes: list[PolicyChange]) -> None:
        if changes:
            for f in list(self._listeners):
                f(changes)

    # -- persistence -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "policies": [policy_to_json(p) for p in self.policies()],
            "neighbors": [
                {"address": n, **({"import_policy": b.import_policy} if b.import_policy else {}),
                 **({"export_policy": b.export_policy} if b.export_policy else {})}
                for n, b in sorted(self._bindings.items())
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyBook:
        """Inverse of :meth:`to_json`; :class:`PolicyError` / :class:`PolicyNotFound` on bad data."""
        book = cls()
        book.load(data.get("policies", []), data.get("neighbors", []))
        return book

    def load(self, policies: Iterable[Any], neighbors: Iterable[Mapping[str, Any]] = ()) -> None:
        """Add policies (plain data, as in ``[[policies]]``) and bindings, without notifying."""
        listeners, self._listeners = self._listeners, []
        try:
            for i, p in enumerate(policies):
                pol = parse_policy(p, f"policies[{i}]")
                if pol.name in self._policies:
                    raise PolicyError(f"policies[{i}].name", pol.name, "names two policies")
                self._policies[pol.name] = pol
            for n in neighbors:
                self.bind(n["address"], n.get("import_policy"), n.get("export_policy"))
        finally:
            self._listeners = listeners
