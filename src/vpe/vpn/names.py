"""One rule for every name an operator or orchestrator gives vpe, one for free text.

Names end up in URLs (``/v1/ports/{name}``), file names, log lines,
Prometheus labels and the forwarder's port table, so they are kept to
characters that mean nothing special anywhere:

* **name** (VPN instance, port, leak policy): 1 to 64 characters of ASCII
  letters, digits, ``_``, ``.`` and ``-``, beginning with a letter or a
  digit (so never ``.``, ``..`` or something that reads as an option);
* **ifname** (a Linux interface): the same characters, 1 to 15 *octets*
  (the kernel's IFNAMSIZ is 16 including the terminating NUL; the count is
  of UTF-8 octets, which the character rule makes equal to characters);
* **text** (descriptions): at most 256 characters, no control characters
  (C0, C1, DEL) and no Unicode format characters (bidirectional overrides
  such as U+202E, zero-width characters).

Every check raises :class:`~vpe.vpn.errors.InvalidValue` naming the field,
the value (printable: ``repr``) and the rule it broke.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidValue

NAME_MAX = 64
IFNAME_MAX_OCTETS = 15
TEXT_MAX = 256

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_RULE = (f"1 to {NAME_MAX} of A-Z a-z 0-9 _ . -, beginning with a letter or digit")
IFNAME_RULE = (f"1 to {IFNAME_MAX_OCTETS} octets of A-Z a-z 0-9 _ . -, beginning with a letter or digit")


def _bad_chars(value: str) -> str:
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))})
    return ", ".join(f"U+{ord(c):04X}" if not c.isprintable() or c == " " else repr(c) for c in bad)


def check_name(value: str, field: str = "name") -> str:
    """``value`` if it is a valid name, else :class:`InvalidValue` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidValue(f"{field}: a name must be a string")
    if not value:
        raise InvalidValue(f"{field}: empty; a name is {NAME_RULE}")
    if len(value) > NAME_MAX:
        raise InvalidValue(f"{field}: {len(value)} characters, at most {NAME_MAX} ({NAME_RULE})")
    if not _NAME.fullmatch(value):
        why = f"characters not allowed: {_bad_chars(value)}" if _bad_chars(value) else \
            "must begin with a letter or digit"
        raise InvalidValue(f"{field}: {value!r}: {why} (a name is {NAME_RULE})")
    return value


def check_ifname(value: str, field: str = "ifname") -> str:
    """``value`` if it is a usable Linux interface name (counted in octets)."""
    if not isinstance(value, str):
        raise InvalidValue(f"{field}: an interface name must be a string")
    octets = len(value.encode("utf-8", "surrogatepass"))
    if not value:
        raise InvalidValue(f"{field}: empty; an interface name is {IFNAME_RULE}")
    if octets > IFNAME_MAX_OCTETS:
        raise InvalidValue(f"{field}: {value!r} is {octets} octets in UTF-8, at most {IFNAME_MAX_OCTETS} "
                           f"(an interface name is {IFNAME_RULE})")
    if not _NAME.fullmatch(value):
        why = f"characters not allowed: {_bad_chars(value)}" if _bad_chars(value) else \
            "must begin with a letter or digit"
        raise InvalidValue(f"{field}: {value!r}: {why} (an interface name is {IFNAME_RULE})")
    return value


def check_text(value: str, field: str = "description", max_len: int = TEXT_MAX) -> str:
    """``value`` if it is acceptable free text: bounded, no control or format characters."""
    if not isinstance(value, str):
        raise InvalidValue(f"{field}: must be a string")
    if len(value) > max_len:
        raise InvalidValue(f"{field}: {len(value)} characters, at most {max_len}")
    for i, c in enumerate(value):
        cat = unicodedata.category(c)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn") and c != " ":
            kind = {"Cc": "a control character", "Cf": "a format character (e.g. a bidirectional override)",
                    "Cs": "a lone surrogate", "Co": "a private-use character",
                    "Cn": "an unassigned code point"}[cat]
            raise InvalidValue(f"{field}: character {i} is U+{ord(c):04X}, {kind}; not allowed in text")
    return value


__all__ = ["IFNAME_MAX_OCTETS", "IFNAME_RULE", "NAME_MAX", "NAME_RULE", "TEXT_MAX", "check_ifname",
           "check_name", "check_text"]
