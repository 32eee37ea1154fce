"""Typed dataplane errors, the same on both ends of the FIB channel.

A driver refuses a request by raising a :class:`DriverError` subclass; the
forwarder process sends it in the acknowledgement as a structured map
(:meth:`DriverError.to_wire`: ``{"code", "message", ...fields}``), and the
client raises the *same class* again from it (:func:`error_from_wire`). So
the agent reacts to what happened (``except PortUnavailable as e: e.port``)
whether the driver runs in-process or behind a socket, and never parses
message text.

:class:`ChannelError` is the root of everything the channel client raises:
:class:`ChannelClosed` when the connection or the protocol broke (reconnect
and resync), a :class:`DriverError` when the forwarder refused a request
(the forwarder is fine; the request was not).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChannelError(Exception):
    """The FIB channel failed, or the forwarder refused a request."""


class ChannelClosed(ChannelError):
    """The connection is gone or the peer broke the protocol: reconnect, then resync."""


class AuthenticationFailed(ChannelClosed):
    """The other end of the FIB channel could not prove it holds the channel key
    (or holds none while this end requires one): nothing was read or changed."""


class DriverError(ChannelError, ValueError):
    """A driver refused a value or request; the message names the field and the value.

    ``code`` says what kind of refusal it is (one class per code, see
    :data:`ERROR_CLASSES`); ``fields`` carries the values it is about, as
    strings, so they cross the channel unchanged.
    """

    code: ClassVar[str] = "invalid-value"

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = {k: str(v) for k, v in fields.items()}

    def to_wire(self) -> dict[str, str]:
        """The acknowledgement's ``error`` map: code, message, then the fields."""
        return {**self.fields, "code": self.code, "message": self.message}


class InvalidValue(DriverError):
    """A value in the request is malformed or inconsistent (the default refusal)."""


class PortUnavailable(DriverError):
    """The forwarder cannot use a port's interface (``port``, ``ifname``): absent, down, busy."""

    code = "port-unavailable"

    def __init__(self, message: str, *, port: str, ifname: str = "", **fields: str) -> None:
        super().__init__(message, port=port, ifname=ifname, **fields)

    @classmethod
    def cannot_open(cls, port: str, ifname: str, exc: OSError) -> PortUnavailable:
        """The refusal of a port whose interface could not be opened (every driver's wording)."""
        return cls(f"port {port}: cannot open {ifname!r}: {exc.strerror}", port=port, ifname=ifname)

    @property
    def port(self) -> str:
        return self.fields["port"]

    @property
    def ifname(self) -> str:
        return self.fields["ifname"]


class Unsupported(DriverError):
    """The driver does not implement what the request needs (``feature``)."""

    code = "unsupported"

    @property
    def feature(self) -> str:
        return self.fields.get("feature", "")


class ResourceExhausted(DriverError):
    """A table of the driver is full (``resource``): a kernel map, a label space..."""

    code = "resource-exhausted"

    @property
    def resource(self) -> str:
        return self.fields.get("resource", "")


class DriverFailure(DriverError):
    """The driver failed for a reason of its own (an OS error): the request may be retried."""

    code = "driver-failure"


#: code -> class; a code this end does not know decodes to a plain DriverError
ERROR_CLASSES: dict[str, type[DriverError]] = {
    c.code: c
    for c in (InvalidValue, PortUnavailable, Unsupported, ResourceExhausted, DriverFailure)
}


def error_from_wire(error: Any) -> DriverError:
    """The typed error an acknowledgement's ``error`` describes (a map, or legacy text)."""
    if not isinstance(error, dict):
        return DriverError(str(error))
    fields = {str(k): str(v) for k, v in error.items() if k not in ("code", "message")}
    code = str(error.get("code") or "invalid-value")
    message = str(error.get("message") or code)
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        exc = DriverError(message, **fields)
        exc.code = code  # type: ignore[misc]  # keep the unknown code visible
        return exc
    try:
        return cls(message, **fields)
    except TypeError:  # a required field is missing: still the right class of refusal
        exc = DriverError(message, **fields)
        exc.code = code  # type: ignore[misc]
        return exc
