"""Policies wired into the agent: import, a live export-policy change, relabel -> FIB swap.

Real TCP sessions on 127.0.0.x; the other side is vpe's standalone speaker,
whose Adj-RIB-In shows exactly what the engine sent.
"""

from __future__ import annotations

import asyncio
import socket
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
from vpe.policy import parse_policy

POLICIES = """
[[policies]]
name = "in"
  [[policies.terms]]
  match = { prefix = "203.0.113.128/25 le 32" }
  action = "reject"
  [[policies.terms]]
  match = { prefix = "203.0.113.0/25" }
  set = { local_pref = 300 }

[[policies]]
name = "out"
  [[policies.terms]]
  match = { prefix = "192.0.2.0/24" }
  set = { med = 5 }
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, f"not in time: {what}"
        await asyncio.sleep(0.02)


def _engine(port: int, neighbor: str, dataplane: str = "") -> Engine:
    return Engine(parse_config(f"""
[bgp]
local_as = 65000
router_id = "198.18.0.41"
listen = ["127.0.0.41"]
port = {port}

[[neighbors]]
address = "127.0.0.42"
remote_as = 65000
passive = true
families = ["vpnv4"]
{neighbor}

[[vrfs]]
name = "red"
route_targets = ["65000:7"]
{POLICIES}
[dataplane]
underlay_address = "198.18.0.41"
{dataplane}
"""))


def _peer(port: int) -> StandaloneSpeaker:
    sp = StandaloneSpeaker()
    sp.add_peer(PeerSettings(
        address="127.0.0.41", local_as=65000, remote_as=65000, router_id=IPv4Address("198.18.0.42"),
        port=port, local_address="127.0.0.42", families=frozenset({VPNV4}),
        connect_retry=1.0, connect_timeout=1.0,
    ))
    return sp


_ATTRS = PathAttributes([Origin(0), AsPath.sequence(), LocalPref(100),
                         ExtendedCommunities((RouteTarget.from_str("65000:7"),))])


async def test_import_policy_rejects_and_rewrites_and_export_policy_changes_live() -> None:
    port = _port()
    eng = _engine(port, 'import_policy = "in"\nexport_policy = "out"')
    peer = _peer(port)
    await eng.start()
    await peer.start()
    try:
        peer.announce(VPNV4, [VPNv4Prefix.from_str("65000:7:203.0.113.0/25", labels=(500,)),
                              VPNv4Prefix.from_str("65000:7:203.0.113.128/26", labels=(501,))],
                      _ATTRS, "198.18.0.42")
        await _until(lambda: "203.0.113.0/25" in eng.view.vrf_json("red")["table"], "the accepted route")
        rows = {r["prefix"]: r for r in eng.view.routes(VPNV4) if r["peer"] == "127.0.0.42"}
        assert set(rows) == {"203.0.113.0/25"}  # the /26 was rejected on import
        assert rows["203.0.113.0/25"]["attributes"]["local_pref"] == 300

        eng.bridge.apply(eng.vpn.add_local_route("red", "192.0.2.0/24", kind="subnet"))
        eng.bridge.apply(eng.vpn.add_local_route("red", "198.51.100.0/24", kind="subnet"))
        await _until(lambda: len(peer.received("127.0.0.41", VPNV4)) == 2, "both exports")
        sent = {str(r.nlri).split(":")[-1]: r for r in peer.received("127.0.0.41", VPNV4)}
        assert sent["192.0.2.0/24"].attributes.to_json().get("med") == 5
        assert "med" not in sent["198.51.100.0/24"].attributes.to_json()

        # replacing the export policy changes what the peer holds, on the same session
        eng.router.policies.put(parse_policy(
            {"name": "out", "terms": [{"match": {"prefix": "198.51.100.0/24"}, "action": "reject"}]}))
        await _until(lambda: len(peer.received("127.0.0.41", VPNV4)) == 1, "the withdrawal")
        (left,) = peer.received("127.0.0.41", VPNV4)
        assert str(left.nlri).endswith(":192.0.2.0/24") and "med" not in left.attributes.to_json()
        assert eng.speaker.peers["127.0.0.42"].counters["established_transitions"] == 1
    finally:
        await peer.stop()
        await eng.stop()


async def test_relabel_advertises_a_local_label_and_installs_the_swap_entry(tmp_path: object) -> None:
    port = _port()
    relabel = '\n[[policies]]\nname = "swap"\n  [[policies.terms]]\n  relabel = true\n'
    eng = _engine(port, 'export_policy = "swap"',
                  f'driver = "userspace"\nfib_socket = "{tmp_path}/none.sock"{relabel}')
    peer = _peer(port)
    await eng.start()
    await peer.start()
    try:
        eng.bridge.apply(eng.vpn.add_local_route("red", "192.0.2.0/24", kind="subnet"))
        await _until(lambda: len(peer.received("127.0.0.41", VPNV4)) == 1, "the export")
        (r,) = peer.received("127.0.0.41", VPNV4)
        (own,) = eng.vpn.label_bindings()  # the VRF's label, which the route carries in the RIB
        assert eng.fib is not None
        local = r.nlri.labels[0]
        assert local != own and local in eng.fib.resolver.swaps
        swap = eng.fib.resolver.swaps[local]
        assert swap.kind == "swap" and swap.next_hop is not None
        assert swap.next_hop.label == own and str(swap.next_hop.endpoint) == "198.18.0.41"
    finally:
        await peer.stop()
        await eng.stop()
