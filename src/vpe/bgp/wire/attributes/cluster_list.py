"""CLUSTER_LIST (type 10, RFC 4456): the reflection path, for loop detection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, ClassVar

from ..constants import AttrCode, AttrFlag
from ..context import CodecContext
from ..errors import UpdateAction
from ._common import bad_length, from_external_peer
from .base import PathAttribute, register


@register
@dataclass(frozen=True, slots=True)
class ClusterList(PathAttribute):
    """Optional non-transitive; from an eBGP peer discarded, bad length treat-as-withdraw
    (RFC 7606 section 7.10)."""

    CODE: ClassVar[int] = AttrCode.CLUSTER_LIST
    FLAGS: ClassVar[int] = AttrFlag.OPTIONAL
    ON_ERROR: ClassVar[UpdateAction] = UpdateAction.TREAT_AS_WITHDRAW
    NAME: ClassVar[str] = "cluster-list"

    ids: tuple[IPv4Address, ...]

    def __post_init__(self) -> None:
        ids = self.ids
        if not isinstance(ids, tuple) or not all(isinstance(i, IPv4Address) for i in ids):
            object.__setattr__(self, "ids", tuple(IPv4Address(i) for i in ids))

    @classmethod
    def from_strs(cls, ids: Iterable[str | IPv4Address]) -> ClusterList:
        return cls(tuple(IPv4Address(i) for i in ids))

    def prepend(self, cluster_id: IPv4Address | str) -> ClusterList:
        """The list a reflector sends on: its own cluster id first (RFC 4456 section 8)."""
        return ClusterList((IPv4Address(cluster_id), *self.ids))

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self.ids

    @classmethod
    def decode(cls, value: bytes, ctx: CodecContext) -> ClusterList:
        if not ctx.ibgp:
            raise from_external_peer("7.10")
        n = len(value)
        if n == 0 or n % 4:
            raise bad_length(cls.ON_ERROR, "CLUSTER_LIST", n, "a non-zero multiple of 4")
        return cls(tuple(IPv4Address(value[i : i + 4]) for i in range(0, n, 4)))

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b"".join(i.packed for i in self.ids)

    def to_json(self) -> Any:
        return [str(i) for i in self.ids]
