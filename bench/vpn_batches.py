"""The VPNv4 table the RIB benchmarks load: decoded UPDATE contents, built before timing.

Why a module: ``rib_insert.py`` and ``rib_out.py`` must measure the same
table (same RDs, labels, next hops and attribute sets per batch) for their
numbers to be comparable, so both build it here.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from vpe.bgp.wire.attributes import (
    AsPath,
    ExtendedCommunities,
    LocalPref,
    Med,
    Origin,
    OriginType,
    PathAttributes,
    RouteTarget,
)
from vpe.bgp.wire.nlri.base import Nlri
from vpe.bgp.wire.nlri.vpn import VPNV4_CODEC

Batch = tuple[PathAttributes, IPv4Address, list[Nlri]]


def make_batches(n_routes: int, batch: int) -> list[Batch]:
    """Decoded UPDATE contents: /32s of 198.18.0.0/15 under RDs 65000:0..k, a label per route.

    The NLRI are decoded with the VPNv4 codec from wire octets; each batch
    has its own attribute set (its MED is the batch number).
    """
    base = int(IPv4Address("198.18.0.0"))
    rt = RouteTarget.from_str("65000:1")
    out: list[Batch] = []
    for start in range(0, n_routes, batch):
        wire = bytearray()
        for i in range(start, min(start + batch, n_routes)):
            rd = struct.pack("!HHI", 0, 65000, i >> 17)
            label = ((16 + (i & 0xFFFF)) << 4) | 1
            wire += bytes((24 + 64 + 32,)) + label.to_bytes(3, "big") + rd
            wire += struct.pack("!I", base + (i & 0x1FFFF))
        nlris = VPNV4_CODEC.decode(bytes(wire), False)
        b = start // batch
        attrs = PathAttributes(
            [Origin(OriginType.IGP), AsPath.sequence(), LocalPref(100), Med(b), ExtendedCommunities((rt,))]
        )
        out.append((attrs, IPv4Address(f"192.0.2.{1 + b % 200}"), nlris))
    return out
