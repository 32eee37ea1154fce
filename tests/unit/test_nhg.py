"""Consistent, identity-ordered member selection (vpe.dataplane.nhg, R12.2 / R12.3)."""

from __future__ import annotations

import ipaddress
import random

from vpe.dataplane import nhg
from vpe.dataplane.driver import Batch, NextHop, Port, Route
from vpe.dataplane.userspace.pipeline import Forwarder

_RND = random.Random(1)
FLOWS = [_RND.getrandbits(32) for _ in range(20000)]


def seeds_of(n: int, base: int = 0) -> list[int]:
    idents = [nhg.identity(NextHop.remote(f"198.18.1.{1 + i % 250}", 7000 + base + i)) for i in range(n)]
    return [nhg.seed(idents[i]) for i in nhg.order(idents)]


def owners(seeds: list[int], n: int) -> list[int]:
    """The owner of each of the first flows (fewer for big groups: the test stays quick)."""
    flows = FLOWS[: max(2000, 400000 // n)]
    return [seeds[nhg.rank2(seeds, fh)[0]] for fh in flows]


def test_fmix32_is_murmur3s_finaliser() -> None:
    assert nhg.fmix32(0) == 0
    assert nhg.fmix32(1) == 0x514E28B7


def test_r12_3_rank_is_by_identity_not_arrival_order() -> None:
    idents = [nhg.identity(NextHop.remote(f"198.18.1.{i}", 100 + i)) for i in range(1, 40)]
    shuffled = idents[:]
    random.Random(2).shuffle(shuffled)
    assert [idents[i] for i in nhg.order(idents)] == [shuffled[i] for i in nhg.order(shuffled)]


def test_r12_3_removing_one_of_n_moves_only_its_flows() -> None:
    for n in (8, 64, 512):
        seeds = seeds_of(n)
        before = owners(seeds, n)
        gone = seeds[n // 3]
        after = owners([s for s in seeds if s != gone], n)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert all(before[i] == gone for i in moved)
        assert len(moved) == before.count(gone)


def test_r12_3_adding_one_moves_about_one_in_n_plus_one_and_only_to_it() -> None:
    for n in (8, 64):
        seeds = seeds_of(n)
        new = seeds_of(1, base=900)[0]
        before, after = owners(seeds, n), owners(seeds + [new], n)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert all(after[i] == new for i in moved)
        assert abs(len(moved) / len(before) - 1 / (n + 1)) < 0.35 / (n + 1) + 0.005


def test_r12_2_spread_over_members() -> None:
    seeds = seeds_of(64)
    counts: dict[int, int] = {}
    for o in owners(seeds, 1):
        counts[o] = counts.get(o, 0) + 1
    mean = len(FLOWS) / 64
    assert len(counts) == 64 and max(counts.values()) < 1.5 * mean and min(counts.values()) > 0.5 * mean


def test_runner_up_is_where_the_flow_goes_once_the_winner_is_removed() -> None:
    seeds = seeds_of(16)
    for fh in FLOWS[:2000]:
        i1, i2 = nhg.rank2(seeds, fh)
        rest = [s for s in seeds if s != seeds[i1]]
        assert rest[nhg.rank2(rest, fh)[0]] == seeds[i2]


def test_r12_3_local_port_member_has_the_identity_remotes_see() -> None:
    """A host running an instance ranks it like the hosts that tunnel to it."""
    own = ipaddress.ip_address("198.18.0.1")
    local = nhg.identity(NextHop.local("svc1"), own, 5000)
    assert local == nhg.identity(NextHop.remote("198.18.0.1", 5000))
    assert nhg.identity(NextHop.local("svc1")) == b"port:svc1"


def test_r11_2_down_endpoint_is_one_operation_for_every_route() -> None:
    fwd = Forwarder(["198.18.0.1"], 1500)
    port = Port("a", "vpa", "red", "02:00:00:00:00:01", ips=("192.0.2.10/24",))
    primary, backup = NextHop.remote("198.18.0.2", 100), NextHop.remote("198.18.0.3", 200)
    routes = tuple(
        Route("red", f"10.{i // 256}.{i % 256}.0/24", (primary,), backup=(backup,)) for i in range(300)
    )
    fwd.apply(Batch(add_ports=(port,), add_routes=routes))
    down = Batch(down_endpoints=("198.18.0.2",))
    assert len(down) == 1
    fwd.apply(down)
    assert fwd.state().down_endpoints == (ipaddress.ip_address("198.18.0.2"),)
    assert Batch.from_json(down.to_json()) == down
