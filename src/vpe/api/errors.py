"""How a refused operation becomes an HTTP error: by the error's type, never its text.

404: no such object (:class:`~vpe.vpn.errors.NotFound`); 409: it exists
already or contradicts the current state (:class:`~vpe.vpn.errors.AlreadyExists`,
:class:`~vpe.vpn.errors.Conflict`, an attachment state that does not allow
the operation); 503: the state database cannot be written; 422: any other
refused value (the message names the field first).
"""

from __future__ import annotations

from fastapi import HTTPException

from ..agent.store import StoreError
from ..vpn.attachments import InvalidTransition
from ..vpn.errors import AlreadyExists, Conflict, NotFound, VpnError

#: what an operation may raise for bad input or state (anything else is a bug: 500)
REFUSED = (ValueError, KeyError, StoreError)


def http_error(e: Exception) -> HTTPException:
    """The HTTP error of a refused operation."""
    # a plain KeyError quotes its message; a VpnError's text is as written (it may end in a quote)
    text = str(e) if isinstance(e, VpnError) else str(e).strip("'\"")
    if isinstance(e, NotFound):
        return HTTPException(404, text)
    if isinstance(e, StoreError):
        return HTTPException(503, f"state database: {e}")
    if isinstance(e, AlreadyExists | Conflict | InvalidTransition):
        return HTTPException(409, text)
    return HTTPException(422, text)
