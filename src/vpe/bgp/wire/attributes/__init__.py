"""Path attributes; importing this package registers every known type."""

from .base import ATTRIBUTES, PathAttribute, PathAttributes, UnknownAttribute, register

__all__ = ["ATTRIBUTES", "PathAttribute", "PathAttributes", "UnknownAttribute", "register"]
