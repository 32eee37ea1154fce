"""NOTIFICATION message (RFC 4271 section 4.5) with its human reason.

Besides (code, subcode, data) this knows two structured data forms:

* the shutdown communication of Cease / Administrative Shutdown (2) and
  Administrative Reset (4): a length octet and up to 255 octets of UTF-8
  (RFC 8203, RFC 9003);
* Cease / Hard Reset (9, RFC 8538), whose data is an inner
  (code, subcode, data) naming the real cause.

A malformed shutdown communication is never an error (RFC 9003 section 3:
log it, do not answer a NOTIFICATION with one): :attr:`communication` just
returns None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .constants import CeaseSubcode, ErrorCode, HeaderSubcode, MessageType
from .context import CodecContext
from .errors import BGPError

#: RFC 4271 section 6 (and later RFCs) names, code -> (name, {subcode: name})
_NAMES: dict[int, tuple[str, dict[int, str]]] = {
    1: (
        "Message Header Error",
        {1: "Connection Not Synchronized", 2: "Bad Message Length", 3: "Bad Message Type"},
    ),
    2: (
        "OPEN Message Error",
        {
            1: "Unsupported Version Number",
            2: "Bad Peer AS",
            3: "Bad BGP Identifier",
            4: "Unsupported Optional Parameter",
            5: "Authentication Failure (deprecated)",
            6: "Unacceptable Hold Time",
            7: "Unsupported Capability",
            11: "Role Mismatch",
        },
    ),
    3: (
        "UPDATE Message Error",
        {
            1: "Malformed Attribute List",
            2: "Unrecognized Well-known Attribute",
            3: "Missing Well-known Attribute",
            4: "Attribute Flags Error",
            5: "Attribute Length Error",
            6: "Invalid ORIGIN Attribute",
            7: "AS Routing Loop (deprecated)",
            8: "Invalid NEXT_HOP Attribute",
            9: "Optional Attribute Error",
            10: "Invalid Network Field",
            11: "Malformed AS_PATH",
        },
    ),
    4: ("Hold Timer Expired", {}),
    5: (
        "Finite State Machine Error",
        {
            1: "Receive Unexpected Message in OpenSent State",
            2: "Receive Unexpected Message in OpenConfirm State",
            3: "Receive Unexpected Message in Established State",
        },
    ),
    6: (
        "Cease",
        {
            1: "Maximum Number of Prefixes Reached",
            2: "Administrative Shutdown",
            3: "Peer De-configured",
            4: "Administrative Reset",
            5: "Connection Rejected",
            6: "Other Configuration Change",
            7: "Connection Collision Resolution",
            8: "Out of Resources",
            9: "Hard Reset",
            10: "BFD Down",
        },
    ),
    7: ("ROUTE-REFRESH Message Error", {1: "Invalid Message Length"}),
}

_COMMUNICATION_SUBCODES = (CeaseSubcode.ADMIN_SHUTDOWN, CeaseSubcode.ADMIN_RESET)
MAX_COMMUNICATION_LEN = 255  # RFC 9003


def error_name(code: int, subcode: int) -> str:
    """'OPEN Message Error / Bad Peer AS' style text for any (code, subcode)."""
    entry = _NAMES.get(code)
    if entry is None:
        return f"Unknown error code {code} / subcode {subcode}"
    name, subs = entry
    if subcode == 0:
        return name if not subs else f"{name} / Unspecific"
    return f"{name} / {subs.get(subcode, f'subcode {subcode}')}"


def _encode_communication(text: str) -> bytes:
    """Length octet + UTF-8, cut at a character boundary to fit 255 octets."""
    raw = text.encode("utf-8")
    if len(raw) > MAX_COMMUNICATION_LEN:
        raw = raw[:MAX_COMMUNICATION_LEN].decode("utf-8", "ignore").encode("utf-8")
    return bytes([len(raw)]) + raw


def _decode_communication(data: bytes) -> str | None:
    if not data:
        return None
    n = data[0]
    if 1 + n > len(data):
        return None
    try:
        return bytes(data[1 : 1 + n]).decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Notification:
    """A NOTIFICATION. ``detail`` is our own explanation (not on the wire).

    ``detail`` is set when we build a NOTIFICATION from an error we found,
    so logs and SessionDown can say exactly what was wrong; it does not
    take part in equality.
    """

    code: int
    subcode: int = 0
    data: bytes = b""
    detail: str = field(default="", compare=False)

    MSG_TYPE = MessageType.NOTIFICATION

    # -- construction -------------------------------------------------------

    @classmethod
    def from_error(cls, err: BGPError) -> Notification:
        return cls(err.code, err.subcode, err.data, err.reason)

    @classmethod
    def cease(cls, subcode: int, communication: str | None = None, detail: str = "") -> Notification:
        """A Cease; for subcodes 2 and 4 ``communication`` goes in the data (RFC 9003)."""
        data = b""
        if communication is not None:
            if subcode not in _COMMUNICATION_SUBCODES:
                raise ValueError(f"Cease subcode {subcode} carries no shutdown communication")
            data = _encode_communication(communication)
        return cls(ErrorCode.CEASE, subcode, data, detail)

    @classmethod
    def hard_reset(cls, inner: Notification) -> Notification:
        """Cease / Hard Reset wrapping the real cause (RFC 8538 section 3)."""
        return cls(
            ErrorCode.CEASE,
            CeaseSubcode.HARD_RESET,
            bytes((inner.code, inner.subcode)) + inner.data,
            inner.detail,
        )

    # -- queries ------------------------------------------------------------

    @property
    def name(self) -> str:
        return error_name(self.code, self.subcode)

    @property
    def inner(self) -> Notification | None:
        """For Cease / Hard Reset: the wrapped NOTIFICATION, else None."""
        if self.is_hard_reset and len(self.data) >= 2:
            return Notification(self.data[0], self.data[1], self.data[2:])
        return None

    @property
    def is_hard_reset(self) -> bool:
        return self.code == ErrorCode.CEASE and self.subcode == CeaseSubcode.HARD_RESET

    @property
    def communication(self) -> str | None:
        """The shutdown communication (RFC 9003), also inside a Hard Reset, or None."""
        n = self.inner or self
        if n.code == ErrorCode.CEASE and n.subcode in _COMMUNICATION_SUBCODES:
            return _decode_communication(n.data)
        return None

    @property
    def reason(self) -> str:
        """Human text: RFC name, then shutdown communication or wrapped cause, then detail."""
        text = self.name
        inner = self.inner
        if inner is not None:
            text += f" ({inner.name})"
        comm = self.communication
        if comm:
            text += f': "{comm}"'
        if self.detail:
            text += f": {self.detail}"
        return text

    # -- codec --------------------------------------------------------------

    @classmethod
    def decode(cls, body: bytes, ctx: CodecContext) -> Notification:
        if len(body) < 2:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.BAD_MESSAGE_LENGTH,
                (19 + len(body)).to_bytes(2, "big"),
                f"NOTIFICATION body of {len(body)} octets, at least 2 needed",
            )
        return cls(body[0], body[1], bytes(body[2:]))

    def encode(self, ctx: CodecContext) -> bytes:
        return bytes((self.code, self.subcode)) + self.data

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "code": self.code,
            "subcode": self.subcode,
            "name": self.name,
            "reason": self.reason,
        }
        if self.data:
            d["data"] = self.data.hex()
        comm = self.communication
        if comm is not None:
            d["communication"] = comm
        inner = self.inner
        if inner is not None:
            d["inner"] = inner.to_json()
        return d
