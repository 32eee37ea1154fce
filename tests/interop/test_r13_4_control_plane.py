"""R13.4, control-plane protection on live sessions: prefix limits against GoBGP,
GTSM against FRR's ``ttl-security hops``, RFC 7606 handling of each malformed
UPDATE class with a second (real) peer unaffected.

Why real peers: a prefix limit is only proven if a real implementation that
sends too many routes gets the Cease it should (and GoBGP reports receiving
it); GTSM only if vpe's TTL handling interoperates with another stack's; and
"other peers are not torn down" only if the other peer is a real daemon whose
own state says it stayed up. The malformed UPDATEs come from a scripted peer
(tests/scripted_peer.py), since no daemon sends broken messages on request.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
from daemons import FRR, GoBGP, Neighbor
from engine_peer import EngineNeighbor, engine_config, established, loc_rib, running_engine
from vpe_peer import call, until, until_daemon

from scripted_peer import ScriptedPeer, attr, update_body
from vpe.bgp.fsm import State
from vpe.bgp.wire.constants import VPNV4, ErrorCode

pytestmark = pytest.mark.interop

Spawn = Callable[..., Any]
VPE_RID = "198.18.34.1"


def _with(cfg: str, neighbor: str, *lines: str) -> str:
    """Add ``lines`` to the ``[[neighbors]]`` entry of ``neighbor`` in an engine config."""
    key = f'address = "{neighbor}"'
    assert key in cfg
    return cfg.replace(key, "\n".join([key, *lines]), 1)


def _gobgp_notifications_received(g: GoBGP, neighbor: str) -> int:
    data = g.cli_json("neighbor", neighbor)
    return int(data.get("state", {}).get("messages", {}).get("received", {}).get("notification", 0) or 0)


async def test_r13_4_prefix_limit_tears_down_gobgp_with_cease_6_1(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """GoBGP sends 5 VPNv4 routes to a vpe that allows 3: Cease / Maximum Number of
    Prefixes Reached (GoBGP counts the NOTIFICATION), the routes are gone from vpe,
    and after the restart time the session comes back (and is torn down again)."""
    me, ga = loopback(), loopback()
    gport = port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=65000, router_id="198.18.34.2",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    for i in range(5):
        await call(g.add_vpnv4, f"192.0.2.{i * 16}/28", "65000:34", "65000:34", 100 + i, "198.18.34.20")
    cfg = _with(engine_config(VPE_RID, [EngineNeighbor(ga, gport, me)]), ga,
                "max_prefixes = 3", "max_prefixes_restart = 3.0")
    async with running_engine(cfg) as engine:
        peer = engine.speaker.peers[ga]
        await until(lambda: peer.counters["prefix_limit_exceeded"] >= 1, 20, "the prefix limit")
        await until(lambda: not peer.established and not loc_rib(engine, VPNV4), 5,
                    "session down, GoBGP's routes withdrawn")
        assert peer.counters["notifications_out"] >= 1
        assert "maximum number of prefixes reached" in peer.last_error
        assert peer.to_json()["prefix_limit"]["exceeded"]["vpnv4"] == 4
        await until_daemon(lambda: _gobgp_notifications_received(g, me) >= 1, 10,
                           "GoBGP to count the NOTIFICATION it received")
        # held down, then back after the restart time: and over the limit again
        assert peer.state is State.IDLE
        ups = peer.counters["established_transitions"]
        await until(lambda: peer.counters["established_transitions"] > ups, 15,
                    "the session back after the restart time")
        await until(lambda: peer.counters["prefix_limit_exceeded"] >= 2, 15, "the limit again")


async def test_r13_4_prefix_limit_warning_only_keeps_gobgp(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    me, ga = loopback(), loopback()
    gport = port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=65000, router_id="198.18.34.3",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    for i in range(4):
        await call(g.add_vpnv4, f"198.51.100.{i * 16}/28", "65000:35", "65000:35", 200 + i, "198.18.34.21")
    cfg = _with(engine_config(VPE_RID, [EngineNeighbor(ga, gport, me)]), ga,
                "max_prefixes = 2", 'max_prefixes_action = "warning"')
    async with running_engine(cfg) as engine:
        peer = engine.speaker.peers[ga]
        await until(lambda: len(loc_rib(engine, VPNV4)) == 4, 20, "all four routes kept")
        await asyncio.sleep(1.0)
        assert peer.established and peer.counters["prefix_limit_exceeded"] == 1
        assert peer.counters["notifications_out"] == 0
        assert await call(g.established, me)


async def test_r13_4_gtsm_with_frr_ttl_security(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """FRR with ``ttl-security hops 1`` and vpe with ``gtsm_hops = 1`` establish; a
    speaker sending with TTL 64 gets nothing through to vpe (IP_MINTTL)."""
    me, fa, stray = loopback(), loopback(), loopback()
    fport, vport = port(), port()
    f: FRR = await call(spawn, FRR, address=fa, port=fport, local_as=65000, router_id="198.18.34.4",
                        neighbors=[Neighbor(me, 65000, vport, passive=True, families=("vpnv4",))],
                        extra_config=f" neighbor {me} ttl-security hops 1")
    # vpe connects (bgpd without zebra never connects out to a GTSM peer: no next-hop tracking)
    cfg = engine_config(VPE_RID, [EngineNeighbor(fa, fport, me),
                                  EngineNeighbor(stray, 179, me, passive=True)],
                        listen=[me], port=vport)
    cfg = _with(_with(cfg, fa, "gtsm_hops = 1"), stray, "gtsm_hops = 1")
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, fa), 30, "the GTSM session with FRR")
        assert await call(f.established, me)
        # TTL 64 (not 255): the kernel drops every segment of it on vpe's socket
        # (IP_MINTTL on the accepted connection): its OPEN never arrives
        sp = ScriptedPeer(stray, me, vport, ttl=64)
        await call(sp.connect, 3.0)
        await asyncio.sleep(2.0)
        sp.close()
        stray_peer = engine.speaker.peers[stray]
        assert stray_peer.counters["messages_in"] == 0
        assert stray_peer.state not in (State.OPENCONFIRM, State.ESTABLISHED)
        assert established(engine, fa)


def _vpn_nlri(host: int, label: int) -> bytes:
    return (bytes([120]) + (label << 4 | 1).to_bytes(3, "big") + struct.pack("!HHI", 0, 65000, 36)
            + bytes([203, 0, 113, host]))


def _vpn_update(*nlri: bytes, origin: bytes = b"\x00", extra: bytes = b"") -> bytes:
    nh = b"\x00" * 8 + bytes([198, 18, 34, 30])
    mp = struct.pack("!HBB", 1, 128, len(nh)) + nh + b"\x00" + b"".join(nlri)
    rt = b"\x00\x02" + struct.pack("!HI", 65000, 36)
    return update_body(attrs=attr(0x40, 1, origin) + attr(0x40, 2, b"") + attr(0x40, 5, struct.pack("!I", 100))
                       + extra + attr(0xC0, 16, rt) + attr(0x90, 14, mp))


async def test_r13_4_rfc7606_live_session_second_peer_unaffected(
    spawn: Spawn, loopback: Callable[[], str], port: Callable[[], int]
) -> None:
    """A scripted peer sends, over a real session, one UPDATE of each RFC 7606 class;
    GoBGP, the second peer, gets vpe's reflection of the outcome and stays up."""
    me, ga, sa = loopback(), loopback(), loopback()
    gport, vport = port(), port()
    g: GoBGP = await call(spawn, GoBGP, address=ga, port=gport, local_as=65000, router_id="198.18.34.5",
                          neighbors=[Neighbor(me, 65000, 179, passive=True, families=("vpnv4",))])
    cfg = engine_config(VPE_RID, [EngineNeighbor(ga, gport, me, rr_client=True),
                                  EngineNeighbor(sa, 179, me, passive=True, rr_client=True)],
                        listen=[me], port=vport)
    async with running_engine(cfg) as engine:
        await until(lambda: established(engine, ga), 20, "the session with GoBGP")
        gobgp_ups = engine.speaker.peers[ga].counters["established_transitions"]
        sp = ScriptedPeer(sa, me, vport)
        await call(sp.establish)
        scripted = engine.speaker.peers[sa]
        await call(sp.send_update, _vpn_update(_vpn_nlri(1, 301), _vpn_nlri(2, 302)))
        both = {"65000:36:203.0.113.1/32", "65000:36:203.0.113.2/32"}
        await until_daemon(lambda: both <= set(g.rib("vpnv4")), 10, "both routes reflected to GoBGP")

        # 1. treat-as-withdraw (ORIGIN value 7): route .1 is withdrawn, the session stays
        await call(sp.send_update, _vpn_update(_vpn_nlri(1, 301), origin=b"\x07"))
        await until(lambda: "65000:36:203.0.113.1/32" not in loc_rib(engine, VPNV4), 5,
                    "route .1 withdrawn (treat-as-withdraw)")
        await until_daemon(lambda: "65000:36:203.0.113.1/32" not in g.rib("vpnv4"), 10,
                           "the withdrawal reflected to GoBGP")
        assert await call(sp.still_open, 0.3) and scripted.established
        assert scripted.counters["treat_as_withdraw"] == 1

        # 2. attribute discard (ATOMIC_AGGREGATE with a length of 1): route .2 kept, without it
        await call(sp.send_update, _vpn_update(_vpn_nlri(2, 302), extra=attr(0x40, 6, b"\x00")))
        await asyncio.sleep(0.3)
        assert "65000:36:203.0.113.2/32" in loc_rib(engine, VPNV4)
        assert await call(sp.still_open, 0.3) and scripted.established

        # 3. session reset (attribute list longer than the UPDATE): NOTIFICATION 3/1
        bad = bytearray(_vpn_update(_vpn_nlri(3, 303)))
        bad[2:4] = (int.from_bytes(bad[2:4], "big") + 7).to_bytes(2, "big")
        await call(sp.send_update, bytes(bad))
        note = await call(sp.expect_notification)
        assert (note.code, note.subcode) == (ErrorCode.UPDATE_MESSAGE, 1)
        await until(lambda: not scripted.established and not loc_rib(engine, VPNV4), 5,
                    "the scripted peer's routes withdrawn")
        await until_daemon(lambda: not g.rib("vpnv4"), 10, "GoBGP sees them withdrawn")
        sp.close()

        # the second peer never noticed
        assert established(engine, ga) and await call(g.established, me)
        assert engine.speaker.peers[ga].counters["established_transitions"] == gobgp_ups
        assert engine.speaker.peers[ga].counters["notifications_out"] == 0
