"""NLRI families; importing this package registers every known family codec."""

from .base import NLRI_CODECS, Nlri, NlriCodec, register_codec

__all__ = ["NLRI_CODECS", "Nlri", "NlriCodec", "register_codec"]
