"""Shared pieces of the vpe-against-a-real-daemon tests: a vpe speaker, attributes, polling.

Why a module: the GoBGP, FRR and BIRD tests all run a vpe speaker in the
test's own event loop next to a daemon started by the harness, and all
need the same three things -- a vpe speaker that keeps its own tables
(:class:`standalone_speaker.StandaloneSpeaker`) with one peer configured from a handful of knobs, the path attributes a PE sends
(route target plus the MPLS-in-UDP encapsulation community), and bounded
polling that never blocks the event loop the speaker runs in (daemon CLI
calls are blocking subprocesses, so they go to a worker thread). The steps
those tests take alike (vpe's routes for the both-ways scenario, relearning
after a reset from either side, the TCP-MD5 check) are here too, each
daemon passing in how it is probed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from ipaddress import IPv4Address
from typing import Any, TypeVar

import pytest
from daemons import Daemon

from standalone_speaker import Route, StandaloneSpeaker
from vpe.bgp.session import Peer, PeerSettings
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.extended_communities import (
    Encapsulation,
    ExtendedCommunities,
    RouteTarget,
)
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.constants import VPNV4, VPNV6, Family
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix, VPNv6Prefix

T = TypeVar("T")

LOCAL_AS = 65000
VPN_FAMILIES = frozenset({VPNV4, VPNV6})
EXT_COMMUNITIES = 16  # path attribute type code


def settings(
    peer: str,
    peer_port: int,
    me: str,
    router_id: str,
    *,
    passive: bool = False,
    families: Iterable[Family] = VPN_FAMILIES,
    md5: str | None = None,
    add_path: tuple[tuple[Family, int], ...] = (),
) -> PeerSettings:
    """One iBGP neighbor with short timers, so (re)connects happen within a test's budget."""
    return PeerSettings(
        address=peer,
        local_as=LOCAL_AS,
        remote_as=LOCAL_AS,
        router_id=IPv4Address(router_id),
        port=peer_port,
        local_address=me,
        passive=passive,
        families=frozenset(families),
        md5_password=md5,
        add_path=add_path,
        connect_retry=1.0,
        connect_timeout=1.0,
        graceful_restart_time=None,
    )


@contextlib.asynccontextmanager
async def running_speaker(
    me: str, listen_port: int, *peers: PeerSettings, listen: bool = True
) -> AsyncIterator[StandaloneSpeaker]:
    """A started vpe speaker (listening on ``me``:``listen_port`` if ``listen``), stopped on exit."""
    speaker = StandaloneSpeaker([me] if listen else [], listen_port)
    for p in peers:
        speaker.add_peer(p)
    await speaker.start()
    try:
        yield speaker
    finally:
        await speaker.stop()


def attrs(*rts: str, encap: bool = True) -> PathAttributes:
    """What a PE attaches to its VPN routes: ORIGIN, AS_PATH, LOCAL_PREF, RTs, MPLS-in-UDP encap."""
    ext: list[Any] = [RouteTarget.from_str(rt) for rt in rts]
    if encap:
        ext.append(Encapsulation.from_str("encap:mpls-in-udp"))
    return PathAttributes(
        [Origin(0), AsPath.sequence(), LocalPref(100), ExtendedCommunities(tuple(ext))]
    )


def ext_communities(route: Route) -> list[str]:
    """Text of every extended community on a received route (``target:65000:1``, ...)."""
    ec = route.attributes.get(EXT_COMMUNITIES)
    return [str(x) for x in ec.values] if ec is not None else []


def by_nlri(routes: Iterable[Route]) -> dict[str, Route]:
    """Routes keyed by ``RD:prefix`` text (one path per prefix expected)."""
    return {str(r.nlri): r for r in routes}


async def until(
    pred: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll a cheap in-process predicate while the speaker keeps running; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def until_daemon(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Poll a blocking daemon probe (CLI call) in a worker thread; errors count as "not yet"."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last: Exception | None = None
    while True:
        try:
            value = await asyncio.to_thread(probe)
        except Exception as exc:  # noqa: BLE001 - a CLI hiccup is retried until the deadline
            last, value = exc, None
        if value:
            return value
        if loop.time() > end:
            detail = f" (last error: {last})" if last else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking harness call (spawn, CLI) without stalling the speaker."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def family_names(peer: Peer) -> set[str]:
    """Families vpe negotiated with ``peer`` (empty when not Established)."""
    return {f.name for f in peer.negotiated.families} if peer.negotiated else set()


# --------------------------------------------------------------------------- scenario steps
# Steps the GoBGP, FRR and BIRD tests take alike; ``name`` is the daemon as messages show it.


def announce_both_ways_routes(sp: StandaloneSpeaker, nexthop4: str) -> VPNv4Prefix:
    """vpe's side of the routes-both-ways tests; returns the route withdrawn later.

    VPNv4 65000:2:198.51.100.0/24 (label 200) and 65000:2:198.51.100.128/25
    (label 201, the one returned) with RTs 65000:2 and 65000:4 via ``nexthop4``;
    VPNv6 65000:2:2001:db8:2::/48 (label 202) with RT 65000:2 via 2001:db8:ffff::2.
    All carry the MPLS-in-UDP encapsulation community.
    """
    keep4 = VPNv4Prefix.from_str("65000:2:198.51.100.0/24", labels=(200,))
    gone4 = VPNv4Prefix.from_str("65000:2:198.51.100.128/25", labels=(201,))
    keep6 = VPNv6Prefix.from_str("65000:2:2001:db8:2::/48", labels=(202,))
    sp.announce(VPNV4, [keep4, gone4], attrs("65000:2", "65000:4"), nexthop4)
    sp.announce(VPNV6, [keep6], attrs("65000:2"), "2001:db8:ffff::2")
    return gone4


async def relearned_after_daemon_reset(
    sp: StandaloneSpeaker, daemon: Daemon, name: str, how: str, vpe_routes_back: Callable[[], Any]
) -> None:
    """After ``daemon`` reset the session (``how``; vpe gets a NOTIFICATION), it comes back,
    vpe holds the daemon's one VPNv4 and its VPNv6 routes again, and ``vpe_routes_back``
    (a blocking probe of the daemon) sees vpe's routes again."""
    da = daemon.address
    peer = sp.peers[da]
    await until(
        lambda: peer.counters["established_transitions"] == 2,
        20,
        f"session re-established after {how}",
    )
    assert peer.counters["notifications_in"] >= 1
    await until(
        lambda: len(sp.received(da, VPNV4)) == 1 and sp.received(da, VPNV6),
        10,
        f"{name}'s routes back in vpe",
    )
    await until_daemon(vpe_routes_back, 10, f"vpe's routes back in {name}")


async def vpe_resets_session(
    sp: StandaloneSpeaker,
    daemon: Daemon,
    name: str,
    me: str,
    vpe_route: Callable[[], Any],
    back: str,
) -> None:
    """vpe stops its session to ``daemon`` (Cease) and starts it again.

    Meanwhile the daemon must see the session go down and drop vpe's route
    (``vpe_route``: a blocking probe, None once the route is gone) and vpe
    must hold none of the daemon's VPNv4 routes; ``back`` describes the
    session coming back, for the timeout message.
    """
    da = daemon.address
    peer = sp.peers[da]
    await peer.stop("interop reset")
    await until_daemon(
        lambda: not daemon.established(me), 10, f"{name} to see the session go down"
    )
    await until_daemon(lambda: vpe_route() is None, 10, "vpe's route gone from the daemon")
    assert sp.received(da, VPNV4) == []
    peer.start()
    await until(lambda: peer.established, 15, back)


async def md5_right_and_wrong(
    daemon: Daemon,
    good: str,
    bad: str,
    router_ids: tuple[str, str],
    password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TCP-MD5 against ``daemon``, which has ``good`` and ``bad`` as neighbors keyed with
    ``password``: vpe on ``good`` with that key gets a session; vpe on ``bad`` with another
    key gets none, its connect times out, and a log line names the daemon's address and port."""
    da, dport = daemon.address, daemon.port
    ok = settings(da, dport, good, router_ids[0], families=[VPNV4], md5=password)
    wrong = settings(da, dport, bad, router_ids[1], families=[VPNV4], md5="not-the-password")
    async with (
        running_speaker(good, 0, ok, listen=False) as sg,
        running_speaker(bad, 0, wrong, listen=False) as sw,
    ):
        await until(lambda: sg.peers[da].established, 15, "MD5 session with the right password")
        assert await call(daemon.established, good)
        pw = sw.peers[da]
        await until(
            lambda: "timed out" in pw.last_error, 10, "the wrong-password connect to time out"
        )
        assert not pw.established
        assert not await call(daemon.established, bad)
        assert f"connect to {da} port {dport}" in pw.last_error
        lines = [r.getMessage() for r in caplog.records]
        assert any(f"connect to {da} port {dport}" in m and "timed out" in m for m in lines), lines
