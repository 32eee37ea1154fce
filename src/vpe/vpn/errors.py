"""Typed errors of the VPN layer: callers (the API) decide by type, never by message text.

Each is a subclass of the builtin the code raised before (``ValueError``,
``KeyError``), so existing ``except`` clauses keep working; the message
names the field first (``name: port 'vm1' is already attached``).
"""

from __future__ import annotations


class VpnError(ValueError):
    """A VPN-layer operation refused: a bad value or a state conflict (HTTP 422)."""


class AlreadyExists(VpnError):
    """The object to create exists already (HTTP 409)."""


class Conflict(VpnError):
    """The operation contradicts the current state (HTTP 409)."""


class NotFound(VpnError, KeyError):
    """No such VPN instance, port or route (HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


__all__ = ["AlreadyExists", "Conflict", "NotFound", "VpnError"]
