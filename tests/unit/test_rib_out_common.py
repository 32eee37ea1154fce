"""Shared fixtures for the Adj-RIB-Out tests: peers, routes, and a decoder of what was sent.

Every message Adj-RIB-Out produces is decoded with vpe's own UPDATE decoder
(:func:`sent_routes`), so the tests assert on wire contents, not on internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address

from vpe.bgp.wire.attributes import (
    AsPath,
    ExtendedCommunities,
    LocalPref,
    Med,
    Origin,
    OriginType,
    PathAttribute,
    PathAttributes,
)
from vpe.bgp.wire.constants import HEADER_LEN, VPNV4, Family, MessageType
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.nlri import VPNv4Prefix
from vpe.bgp.wire.update import Update, decode_update
from vpe.rib import PeerInfo, Rib
from vpe.rib.adj_rib_out import AdjRibOut, OutPeer

LOCAL_ASN = 65000
ROUTER_ID = IPv4Address("192.0.2.1")
CLUSTER_ID = IPv4Address("192.0.2.100")
NH_SELF = ip_address("192.0.2.1")


def peer(n: int, *, client: bool = False, asn: int = LOCAL_ASN) -> PeerInfo:
    """Peer number ``n``: address 127.0.0.n, router id 192.0.2.n."""
    return PeerInfo(
        ip_address(f"127.0.0.{n}"), IPv4Address(f"192.0.2.{n}"), asn, ibgp=asn == LOCAL_ASN, rr_client=client
    )


LOCAL = PeerInfo.local_origin(ROUTER_ID, LOCAL_ASN)


def ctx_for(info: PeerInfo, addpath: Iterable[Family] = (), asn4: bool = True) -> CodecContext:
    return CodecContext(asn4=asn4, addpath=frozenset(addpath), ibgp=info.ibgp)


def out_peer(
    info: PeerInfo,
    families: Iterable[Family] = (VPNV4,),
    *,
    addpath: dict[Family, int | str] | None = None,
    next_hop_self: object = NH_SELF,
    rtc: bool = False,
    asn4: bool = True,
) -> OutPeer:
    ap = dict(addpath or {})
    return OutPeer(
        info.address,
        info,
        frozenset(families),
        ctx_for(info, ap, asn4),
        ap,
        next_hop_self,  # type: ignore[arg-type]
        rtc,
    )


def attrs(
    *extra: PathAttribute,
    lp: int | None = 100,
    rts: Iterable[str] = ("target:65000:1",),
    path: Iterable[int] = (),
) -> PathAttributes:
    parts: list[PathAttribute] = [Origin(OriginType.IGP), AsPath.sequence(*path)]
    if lp is not None:
        parts.append(LocalPref(lp))
    rts = tuple(rts)
    if rts:
        parts.append(ExtendedCommunities.from_strs(rts))
    parts.extend(extra)
    return PathAttributes(parts)


def vpn(prefix: str, label: int = 100, rd: str = "65000:1") -> VPNv4Prefix:
    return VPNv4Prefix.from_str(f"{rd}:{prefix}", labels=(label,))


def med(v: int) -> Med:
    return Med(v)


def setup(**kw: object) -> tuple[Rib, AdjRibOut]:
    rib = Rib()
    aro = AdjRibOut(rib, local_asn=LOCAL_ASN, router_id=ROUTER_ID, cluster_id=CLUSTER_ID, **kw)  # type: ignore[arg-type]
    return rib, aro


@dataclass
class Sent:
    """What a list of messages says, decoded."""

    #: (family, str(nlri), path id) -> (attributes, next hop, labels)
    announced: dict[tuple[Family, str, int], tuple[PathAttributes, object, tuple[int, ...]]] = field(
        default_factory=dict
    )
    #: (family, str(nlri), path id) withdrawn
    withdrawn: set[tuple[Family, str, int]] = field(default_factory=set)
    #: End-of-RIB families, in order
    eor: list[Family] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)

    def prefixes(self, family: Family = VPNV4) -> set[str]:
        return {p for f, p, _ in self.announced if f == family}

    def withdrawn_prefixes(self, family: Family = VPNV4) -> set[str]:
        return {p for f, p, _ in self.withdrawn if f == family}

    def one(self, prefix: str, family: Family = VPNV4) -> tuple[PathAttributes, object, tuple[int, ...]]:
        hits = [v for (f, p, _), v in self.announced.items() if f == family and p == prefix]
        assert len(hits) == 1, (prefix, self.announced)
        return hits[0]


def sent_routes(msgs: Iterable[bytes], ctx: CodecContext) -> Sent:
    """Decode every message (as the receiving peer would, with ``ctx``)."""
    out = Sent()
    for m in msgs:
        assert isinstance(m, bytes)
        assert m[:16] == b"\xff" * 16 and m[18] == MessageType.UPDATE
        assert int.from_bytes(m[16:18], "big") == len(m) <= ctx.max_message_len
        u = decode_update(m[HEADER_LEN:], ctx)
        assert not u.errors, u.errors
        out.updates.append(u)
        eor = u.end_of_rib()
        if eor is not None:
            out.eor.append(eor)
            continue
        for fam, n in u.withdrawn_routes():
            out.withdrawn.add((fam, str(n), n.path_id))
        for fam, n, nh in u.announced():
            out.announced[(fam, str(n), n.path_id)] = (u.attributes, nh, tuple(getattr(n, "labels", ())))
    return out
