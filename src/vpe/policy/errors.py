"""The one error type of the policy package: a bad policy, naming the field path and value."""

from __future__ import annotations

from typing import Any


class PolicyError(ValueError):
    """A policy (or policy binding) that cannot be used.

    ``path`` names the field as written (``policies[0].terms[1].match.prefix``),
    ``value`` the offending value and ``reason`` what is wrong with it; the
    message is ``"<path>: <value!r> <reason>"``, ready for a config error or
    an API 422.
    """

    def __init__(self, path: str, value: Any, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(f"{path}: {value!r} {reason}")


class PolicyNotFound(LookupError):
    """A policy name that names no policy (an unknown name in a binding, or a delete)."""

    def __init__(self, name: str, where: str = "") -> None:
        self.name = name
        self.where = where
        super().__init__(f"{where + ': ' if where else ''}no policy named {name!r}")


class PolicyInUse(Exception):
    """A policy cannot be deleted while a neighbor uses it; ``users`` says who and how."""

    def __init__(self, name: str, users: list[tuple[str, str]]) -> None:
        self.name = name
        self.users = users
        who = ", ".join(f"neighbor {n} ({d}_policy)" for n, d in users)
        super().__init__(f"policy {name!r} is in use by {who}")
