"""The harness's MD5, route-reflector-client and ADD-PATH options really work on each daemon.

Why: docs/interop.md shows these config snippets as verified; this test is
the verification. GoBGP originates two paths for one prefix (ADD-PATH path
ids) toward a reflector (FRR or BIRD) over an MD5-protected session; the
reflector reflects both, with ADD-PATH send, to a second GoBGP client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemons import BIRD, FRR, GoBGP, Neighbor, wait_until

pytestmark = pytest.mark.interop

PASSWORD = "vpe-interop-md5"


@pytest.mark.parametrize("reflector", [FRR, BIRD], ids=["frr", "bird"])
def test_reflector_md5_addpath(
    reflector: type[FRR] | type[BIRD],
    spawn: Callable[..., Any],
    loopback: Callable[[], str],
    port: Callable[[], int],
) -> None:
    a_addr, rr_addr, b_addr = loopback(), loopback(), loopback()
    a_port, rr_port, b_port = port(), port(), port()
    fam = ("ipv4",)
    extra = {}
    if reflector is BIRD:
        # BIRD resolves iBGP next hops recursively; give it a route to them so the
        # reflected paths are usable (reachable) and exported.
        extra["extra_config"] = 'protocol static nh { ipv4; route 198.18.0.0/15 via "lo"; }'
    spawn(
        reflector,
        address=rr_addr,
        port=rr_port,
        local_as=65000,
        router_id="198.18.0.120",
        neighbors=[
            Neighbor(
                a_addr,
                65000,
                a_port,
                passive=True,
                families=fam,
                addpath_receive=True,
                md5_password=PASSWORD,
                rr_client=True,
            ),
            Neighbor(
                b_addr,
                65000,
                b_port,
                passive=True,
                families=fam,
                addpath_send=8,
                md5_password=PASSWORD,
                rr_client=True,
            ),
        ],
        **extra,
    )
    a = spawn(
        GoBGP,
        address=a_addr,
        port=a_port,
        local_as=65000,
        router_id="198.18.0.121",
        neighbors=[
            Neighbor(rr_addr, 65000, rr_port, families=fam, addpath_send=8, md5_password=PASSWORD)
        ],
    )
    b = spawn(
        GoBGP,
        address=b_addr,
        port=b_port,
        local_as=65000,
        router_id="198.18.0.122",
        neighbors=[
            Neighbor(
                rr_addr, 65000, rr_port, families=fam, addpath_receive=True, md5_password=PASSWORD
            )
        ],
    )
    a.wait_established(rr_addr)
    b.wait_established(rr_addr)
    a.add_route("ipv4", "198.51.100.0/24", "identifier", "1", "nexthop", "198.18.0.121")
    a.add_route("ipv4", "198.51.100.0/24", "identifier", "2", "nexthop", "198.18.0.123")

    def paths_at_b() -> list[Any] | None:
        paths = b.rib("ipv4").get("198.51.100.0/24", [])
        return paths if len(paths) >= 2 else None

    paths = wait_until(paths_at_b, 30, "both ADD-PATH paths reflected to the second client")
    next_hops = sorted(attr["nexthop"] for p in paths for attr in p["attrs"] if attr["type"] == 3)
    assert next_hops == ["198.18.0.121", "198.18.0.123"]
    # Reflected: ORIGINATOR_ID (type 9) and CLUSTER_LIST (type 10) were added.
    types = {attr["type"] for attr in paths[0]["attrs"]}
    assert {9, 10} <= types
