"""Shared pieces of the vpe-against-a-real-daemon tests: a vpe speaker, attributes, polling.

Why a module: the GoBGP, FRR and BIRD tests all run a vpe speaker in the
test's own event loop next to a daemon started by the harness, and all
need the same three things -- a :class:`~vpe.bgp.speaker.Speaker` with one
peer configured from a handful of knobs, the path attributes a PE sends
(route target plus the MPLS-in-UDP encapsulation community), and bounded
polling that never blocks the event loop the speaker runs in (daemon CLI
calls are blocking subprocesses, so they go to a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from ipaddress import IPv4Address
from typing import Any, TypeVar

from vpe.bgp.session import Peer, PeerSettings
from vpe.bgp.speaker import Route, Speaker
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
) -> AsyncIterator[Speaker]:
    """A started vpe speaker (listening on ``me``:``listen_port`` if ``listen``), stopped on exit."""
    speaker = Speaker([me] if listen else [], listen_port)
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
