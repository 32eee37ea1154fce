"""Small helpers shared by the attribute modules: RFC 7606 error construction.

Every attribute decoder reports a problem the same way, naming the attribute,
the field and the value, so that the UPDATE decoder can record one clear line.
"""

from __future__ import annotations

from ..constants import UpdateSubcode
from ..errors import MalformedAttribute, UpdateAction


def bad_length(
    action: UpdateAction, what: str, got: int, expected: str, data: bytes = b""
) -> MalformedAttribute:
    """A length error: ``what`` is ``got`` octets where ``expected`` was required."""
    return MalformedAttribute(
        action,
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
        f"{what} is {got} octets, expected {expected}",
        data,
    )


def malformed(
    action: UpdateAction,
    reason: str,
    subcode: int = UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
    data: bytes = b"",
) -> MalformedAttribute:
    return MalformedAttribute(action, subcode, reason, data)


def from_external_peer(
    section: str, subcode: int = UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR
) -> MalformedAttribute:
    """An iBGP-only attribute that came from an external peer: discarded (RFC 7606 ``section``)."""
    return malformed(
        UpdateAction.ATTRIBUTE_DISCARD,
        f"received from an external peer: discarded (RFC 7606 section {section})",
        subcode,
    )
