"""Typed errors of the codec.

The codec never lets any other exception escape on malformed input. Two kinds:

* :class:`BGPError` - fatal for the session; carries the NOTIFICATION
  (code, subcode, data) the speaker must send before closing.
* :class:`MalformedAttribute` - raised by one path attribute's decoder; the
  UPDATE decoder turns it into the RFC 7606 action it names (attribute discard,
  treat-as-withdraw, or session reset through :class:`BGPError`).
"""

from __future__ import annotations

from enum import IntEnum

from .constants import ErrorCode


class BGPError(Exception):
    """Fatal protocol error: send NOTIFICATION(code, subcode, data), then close."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = int(code)
        self.subcode = int(subcode)
        self.data = bytes(data)
        self.reason = reason or f"error {code}/{subcode}"
        super().__init__(self.describe())

    def describe(self) -> str:
        try:
            name = ErrorCode(self.code).name.lower().replace("_", " ")
        except ValueError:
            name = f"code {self.code}"
        text = f"{name} (subcode {self.subcode}): {self.reason}"
        if self.data:
            text += f" [data {self.data.hex()}]"
        return text


class UpdateAction(IntEnum):
    """RFC 7606 error handling approaches, ordered from mildest to strongest."""

    NONE = 0
    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    AFI_SAFI_DISABLE = 3
    SESSION_RESET = 4


class MalformedAttribute(Exception):
    """One path attribute is malformed; ``action`` says what RFC 7606 wants done.

    ``subcode`` and ``data`` are the UPDATE Message Error NOTIFICATION fields
    used if the action is a session reset.
    """

    def __init__(
        self, action: UpdateAction, subcode: int, reason: str, data: bytes = b""
    ) -> None:
        self.action = action
        self.subcode = int(subcode)
        self.reason = reason
        self.data = bytes(data)
        super().__init__(reason)


class NlriError(Exception):
    """The NLRI field of one family cannot be parsed (RFC 7606 section 5.3)."""
