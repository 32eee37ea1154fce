"""The agent's Engine against a real vpe speaker on loopback: export, import, MRAI, refresh.

Real TCP sessions on 127.0.0.x; the other side is vpe's standalone speaker,
whose Adj-RIB-In shows exactly what the engine sent.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from standalone_speaker import StandaloneSpeaker  # type: ignore[import-not-found]
from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.bgp.session import PeerSettings
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.extended_communities import ExtendedCommunities, RouteTarget
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


def _engine(port: int, mrai: float = 0.0) -> Engine:
    return Engine(
        parse_config(
            f"""
[bgp]
local_as = 65000
router_id = "198.18.0.31"
listen = ["127.0.0.31"]
port = {port}
mrai = {mrai}

[[neighbors]]
address = "127.0.0.32"
remote_as = 65000
passive = true
families = ["vpnv4"]

[[vrfs]]
name = "red"
route_targets = ["65000:7"]

[dataplane]
underlay_address = "198.18.0.31"
"""
        )
    )


def _peer(port: int) -> StandaloneSpeaker:
    sp = StandaloneSpeaker()
    sp.add_peer(
        PeerSettings(
            address="127.0.0.31", local_as=65000, remote_as=65000, router_id=IPv4Address("198.18.0.32"),
            port=port, local_address="127.0.0.32", families=frozenset({VPNV4}),
            connect_retry=1.0, connect_timeout=1.0,
        )
    )
    return sp


def test_engine_builds_from_config() -> None:
    eng = _engine(179)
    assert "red" in eng.vpn.vrfs
    assert eng.view.summary()[0]["state"] == "Idle"


async def test_export_import_and_refresh() -> None:
    port = _port()
    eng, peer = _engine(port), _peer(port)
    await eng.start()
    await peer.start()
    try:
        # a route of the peer with the VRF's RT is imported into the VRF
        attrs = PathAttributes(
            [Origin(0), AsPath.sequence(), LocalPref(100), ExtendedCommunities((RouteTarget.from_str("65000:7"),))]
        )
        peer.announce(VPNV4, [VPNv4Prefix.from_str("65000:7:203.0.113.0/24", labels=(500,))], attrs, "198.18.0.32")
        await _until(lambda: "203.0.113.0/24" in eng.view.vrf_json("red")["table"])
        entry = eng.view.vrf_json("red")["table"]["203.0.113.0/24"][0]
        assert entry["next_hop"] == "198.18.0.32" and entry["labels"] == [500]
        # a local route of the VRF is exported with RD, RT and a label
        eng.bridge.apply(eng.vpn.add_local_route("red", "192.0.2.0/24", kind="subnet"))
        await _until(lambda: len(peer.received("127.0.0.31", VPNV4)) == 1)
        r = peer.received("127.0.0.31", VPNV4)[0]
        assert str(r.nlri).endswith(":192.0.2.0/24") and r.nlri.labels
        assert str(r.next_hop) == "198.18.0.31"
        # soft inbound refresh: the peer resends, nothing is lost
        asked = eng.speaker.peers["127.0.0.32"].request_refresh()
        assert asked == [VPNV4]
        await asyncio.sleep(0.3)
        assert "203.0.113.0/24" in eng.view.vrf_json("red")["table"]
        assert eng.speaker.peers["127.0.0.32"].counters["established_transitions"] == 1
    finally:
        await peer.stop()
        await eng.stop()


async def test_mrai_coalesces_changes() -> None:
    """Two changes inside the interval reach the peer as one final state, after the interval."""
    port = _port()
    eng, peer = _engine(port, mrai=0.5), _peer(port)
    await eng.start()
    await peer.start()
    try:
        await _until(lambda: VPNV4 in peer.eor_received.get("127.0.0.31", set()))
        before = peer.peers["127.0.0.31"].counters["updates_in"]
        t0 = asyncio.get_running_loop().time()
        eng.bridge.apply(eng.vpn.add_local_route("red", "192.0.2.0/24", kind="subnet"))
        eng.bridge.apply(eng.vpn.remove_local_route("red", "192.0.2.0/24"))
        eng.bridge.apply(eng.vpn.add_local_route("red", "198.51.100.0/24", kind="subnet"))
        await _until(lambda: len(peer.received("127.0.0.31", VPNV4)) == 1)
        waited = asyncio.get_running_loop().time() - t0
        assert waited >= 0.4
        assert [str(r.nlri).split(":")[-1] for r in peer.received("127.0.0.31", VPNV4)] == ["198.51.100.0/24"]
        # one UPDATE carried the final state; 192.0.2.0/24 was never announced
        assert peer.peers["127.0.0.31"].counters["updates_in"] - before == 1
    finally:
        await peer.stop()
        await eng.stop()


async def test_label_released_only_after_its_withdrawal_is_sent_under_mrai() -> None:
    """With MRAI longer than the label hold-down, a released label must not start its
    hold-down (and so become reusable) before the withdrawal has left with the interval."""
    eng = _engine(_port(), mrai=600.0)  # bgp.mrai may be 600 s; the label hold-down is 60 s
    labels = eng.vpn.exporter.labels
    try:
        eng.bridge.add_vrf("blue", import_rts=["65000:8"], export_rts=["65000:8"], label_mode="per-prefix")
        held = set(eng.vpn.label_bindings())  # blue's aggregate label, held by its I-PMSI route
        eng.bridge.apply(eng.vpn.add_local_route("blue", "192.0.2.0/24", kind="subnet"))
        eng.flush()
        (label,) = set(eng.vpn.label_bindings()) - held  # the prefix's own label
        eng.bridge.apply(eng.vpn.remove_local_route("blue", "192.0.2.0/24"))
        eng.flush()
        # the withdrawal waits for the interval: the label is pending, not cooling down
        assert labels.state_of(label) == "pending"
        # a later allocation, even after the hold-down would have passed, takes another label
        assert labels.allocate(("vrf", "other"), time.monotonic() + 61.0) != label
        eng.router._flush_advertise()  # the interval ends: the withdrawal is on the wire
        assert labels.state_of(label) == "hold-down"
    finally:
        await eng.stop()
