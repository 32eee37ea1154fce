"""Issue 13 finding 9: per-peer prefix limits (``max_prefixes``) are enforced.

The agent's real Engine listens on loopback; a scripted peer sends more
prefixes than allowed over a real session. Tear-down sends Cease / Maximum
Number of Prefixes Reached (RFC 4486) with AFI, SAFI and the limit as data,
withdraws the peer's routes and keeps the session down for the restart time;
"warning" only reports. Every family counts on its own. The interop proofs
against GoBGP are in tests/interop/test_r13_4_control_plane.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address

import pytest

from scripted_peer import ScriptedPeer, attr, ipv4_prefixes, update_body
from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.bgp.fsm import State
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4, CeaseSubcode, ErrorCode, Family

ENGINE = "127.0.0.81"
PEER = "127.0.0.82"


def _port() -> int:
    with socket.socket() as s:
        s.bind((ENGINE, 0))
        return int(s.getsockname()[1])


def _config(port: int, **limit: object) -> str:
    extra = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in limit.items())
    return f"""
[bgp]
local_as = 65000
router_id = "198.18.0.81"
listen = ["{ENGINE}"]
port = {port}

[[neighbors]]
address = "{PEER}"
remote_as = 65000
passive = true
graceful_restart = false
families = ["ipv4-unicast", "vpnv4"]
{extra}

[dataplane]
driver = "none"
"""


async def _engine(toml: str) -> Engine:
    eng = Engine(parse_config(toml, "<test>"))
    await eng.start()
    return eng


async def _until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _ipv4_update(prefixes: list[str]) -> bytes:
    attrs = (attr(0x40, 1, b"\x00") + attr(0x40, 2, b"") + attr(0x40, 3, bytes([198, 18, 0, 82]))
             + attr(0x40, 5, struct.pack("!I", 100)))
    return update_body(attrs=attrs, nlri=ipv4_prefixes(prefixes))


def _vpnv4_update(hosts: range) -> bytes:
    nlri = bytearray()
    for h in hosts:
        # label 100 (bottom of stack), RD 0:65000:1, 203.0.113.h/32
        nlri += bytes([120]) + (100 << 4 | 1).to_bytes(3, "big") + struct.pack("!HHI", 0, 65000, 1)
        nlri += bytes([203, 0, 113, h])
    nh = b"\x00" * 8 + bytes([198, 18, 0, 82])
    mp = struct.pack("!HBB", 1, 128, len(nh)) + nh + b"\x00" + bytes(nlri)
    rt = b"\x00\x02" + struct.pack("!HI", 65000, 1)
    attrs = (attr(0x40, 1, b"\x00") + attr(0x40, 2, b"") + attr(0x40, 5, struct.pack("!I", 100))
             + attr(0xC0, 16, rt) + attr(0x90, 14, mp))
    return update_body(attrs=attrs)


@pytest.fixture
async def world() -> AsyncIterator[Callable[..., object]]:
    made: list[tuple[Engine, ScriptedPeer]] = []

    async def make(**limit: object) -> tuple[Engine, ScriptedPeer]:
        port = _port()
        eng = await _engine(_config(port, **limit))
        peer = ScriptedPeer(PEER, ENGINE, port, families=(IPV4_UNICAST, VPNV4))
        made.append((eng, peer))
        await asyncio.to_thread(peer.establish)
        await _until(lambda: eng.speaker.peers[PEER].established, "Established")
        return eng, peer

    yield make
    for eng, peer in made:
        peer.close()
        await eng.stop()


def _count(eng: Engine, fam: Family) -> int:
    adj = eng.rib.adj_rib_in(ip_address(PEER), fam)
    return 0 if adj is None else len(adj)


async def test_finding9_prefix_limit_tears_down_with_cease_6_1(world: Callable[..., object]) -> None:
    eng, peer = await world(max_prefixes=3, max_prefixes_restart=1.0)  # type: ignore[misc]
    await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.0/26", "192.0.2.64/26", "192.0.2.128/26"]))
    await _until(lambda: _count(eng, IPV4_UNICAST) == 3, "three routes (at the limit: fine)")
    assert await asyncio.to_thread(peer.still_open, 0.3)
    await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.192/26"]))
    note = await asyncio.to_thread(peer.expect_notification)
    assert (note.code, note.subcode) == (ErrorCode.CEASE, CeaseSubcode.MAX_PREFIXES)
    # RFC 4486 section 4: AFI (2), SAFI (1), the upper bound (4)
    assert note.data == struct.pack("!HBI", 1, 1, 3)
    p = eng.speaker.peers[PEER]
    await _until(lambda: not p.established and _count(eng, IPV4_UNICAST) == 0, "routes withdrawn")
    assert "maximum number of prefixes" in p.last_error
    assert p.to_json()["prefix_limit"]["exceeded"] == {"ipv4-unicast": 4}
    # held down: a new connection is refused until the restart time is over
    peer.close()
    assert p.state is State.IDLE
    await asyncio.sleep(0.3)
    assert p.state is State.IDLE
    await _until(lambda: p.state is State.ACTIVE, "the restart timer", timeout=3.0)
    await asyncio.to_thread(peer.establish)
    await _until(lambda: p.established, "Established again")


async def test_finding9_every_family_counts_on_its_own(world: Callable[..., object]) -> None:
    eng, peer = await world(max_prefixes=3, max_prefixes_restart=0)  # type: ignore[misc]
    await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.0/26", "192.0.2.64/26"]))
    await asyncio.to_thread(peer.send_update, _vpnv4_update(range(1, 4)))
    await _until(lambda: _count(eng, VPNV4) == 3 and _count(eng, IPV4_UNICAST) == 2, "routes")
    assert await asyncio.to_thread(peer.still_open, 0.3)
    await asyncio.to_thread(peer.send_update, _vpnv4_update(range(4, 5)))
    note = await asyncio.to_thread(peer.expect_notification)
    assert note.subcode == CeaseSubcode.MAX_PREFIXES and note.data == struct.pack("!HBI", 1, 128, 3)
    await _until(lambda: _count(eng, VPNV4) == 0, "VPN routes withdrawn")


async def test_finding9_warning_only_keeps_the_session(world: Callable[..., object]) -> None:
    eng, peer = await world(max_prefixes=2, max_prefixes_action="warning")  # type: ignore[misc]
    await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.0/26", "192.0.2.64/26", "192.0.2.128/26"]))
    await _until(lambda: _count(eng, IPV4_UNICAST) == 3, "all three routes kept")
    assert await asyncio.to_thread(peer.still_open, 0.5)
    p = eng.speaker.peers[PEER]
    assert p.established and p.counters["prefix_limit_exceeded"] == 1
    assert "warning only" in p.last_error


def _vrf_config(port: int) -> str:
    return f"""
[bgp]
local_as = 65000
router_id = "198.18.0.81"
listen = ["{ENGINE}"]
port = {port}
ebgp_requires_policy = false

[[vrfs]]
name = "red"
route_targets = ["65000:9"]
  [[vrfs.neighbors]]
  address = "{PEER}"
  remote_as = 65001
  passive = true
  max_prefixes = 2
  max_prefixes_restart = 0

[dataplane]
driver = "none"
"""


async def test_vrf_neighbor_prefix_limit_tears_down_with_cease_6_1_and_logs_peer_and_vrf(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vpe.pe_ce")
    port = _port()
    eng = await _engine(_vrf_config(port))
    peer = ScriptedPeer(PEER, ENGINE, port, asn=65001, families=(IPV4_UNICAST,))
    try:
        await asyncio.to_thread(peer.establish)
        p = eng.speaker.peers[PEER]
        await _until(lambda: p.established, "Established")
        red = eng.vpn.vrfs["red"]
        await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.0/26", "192.0.2.64/26"]))
        await _until(lambda: len(list(red.prefixes(4))) == 2, "two routes in the VRF (at the limit: fine)")
        assert await asyncio.to_thread(peer.still_open, 0.3)
        await asyncio.to_thread(peer.send_update, _ipv4_update(["192.0.2.128/26"]))
        note = await asyncio.to_thread(peer.expect_notification)
        assert (note.code, note.subcode) == (ErrorCode.CEASE, CeaseSubcode.MAX_PREFIXES)
        assert note.data == struct.pack("!HBI", 1, 1, 2)
        await _until(lambda: not p.established and not list(red.prefixes(4)), "the neighbor's routes gone")
        line = next(r.getMessage() for r in caplog.records if "over the limit" in r.getMessage())
        assert PEER in line and "vrf red" in line and "3 ipv4-unicast prefixes" in line
    finally:
        peer.close()
        await eng.stop()
