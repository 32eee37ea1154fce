"""Why the VPN layer refused a request, as types (never a pattern on a message).

Every error is still the builtin its callers caught before - a
``ValueError``, and for the "no such thing" errors also a ``KeyError`` - so
``except ValueError`` keeps working; callers that want to tell the cases
apart (the API: 422, 409, 404) look at the class instead of the text:

==========================  =================================================
:class:`InvalidValue`       a value is malformed or out of range (422)
:class:`Conflict`           clashes with the current state (409)
:class:`AlreadyExists`      ... a named object of that kind exists
:class:`InUse`              ... the resource is held by someone else
:class:`NotFound`           names something that does not exist (404)
:class:`UnknownVrf`         ... no VRF of that name
:class:`UnknownLeakPolicy`  ... no leak policy of that name
:class:`UnknownLocalRoute`  ... the VRF has no such local route
:class:`Exhausted`          a pool (automatic RDs) has nothing left
==========================  =================================================

The message always names the field and the value first (``name: VRF 'red'
already exists``), as before.
"""

from __future__ import annotations


class VpnError(ValueError):
    """A request the VPN layer refused; the message names the field and the value."""

    # KeyError (a base of NotFound) would quote the message; every VpnError reads the same
    __str__ = BaseException.__str__


class InvalidValue(VpnError):
    """A value is malformed or out of range (an RT, RD, prefix, count, name...)."""


class Conflict(VpnError):
    """The request is well-formed but clashes with the current state."""


class AlreadyExists(Conflict):
    """An object of that kind and name exists already (VRF, leak policy)."""


class InUse(Conflict):
    """The resource asked for is held by someone else (an RD, an MPLS label)."""


class NotFound(VpnError, KeyError):
    """The request names something that does not exist."""


class UnknownVrf(NotFound):
    """No VRF of that name."""


class UnknownLeakPolicy(NotFound):
    """No leak policy of that name."""


class UnknownLocalRoute(NotFound):
    """The VRF has no local route for that prefix."""


class Exhausted(VpnError):
    """A pool this vPE allocates from (automatic RDs) has nothing left."""
