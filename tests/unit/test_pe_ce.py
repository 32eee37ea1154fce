"""PE-CE BGP (Inter-AS option A, vpe.agent.pe_ce): the VRF neighbors' routes.

A real Engine (no dataplane) with two neighbors in one VRF; their sessions are
stand-ins handed to the router's VRF peering as the speaker would. What the
neighbors are sent is decoded from the bytes the router would write.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, ip_address
from types import SimpleNamespace
from typing import Any

import pytest

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.next_hop import NextHop
from vpe.bgp.wire.attributes.origin import Origin, OriginType
from vpe.bgp.wire.constants import IPV4_UNICAST, AttrCode
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.nlri.prefix import IPv4Prefix
from vpe.bgp.wire.update import Update
from vpe.rib.path import PeerInfo

CE_A, CE_B = "127.0.0.21", "127.0.0.22"
PREFIX = "192.0.2.0/24"

CONFIG = f"""
[bgp]
local_as = 65000
router_id = "198.18.0.1"
ebgp_requires_policy = false

[[vrfs]]
name = "red"
route_targets = ["65000:9"]
  [[vrfs.neighbors]]
  address = "{CE_A}"
  remote_as = 65001
  [[vrfs.neighbors]]
  address = "{CE_B}"
  remote_as = 65002
"""


class Harness:
    def __init__(self, extra: str = "") -> None:
        self.eng = Engine(parse_config(CONFIG + extra, "<test>"))
        assert self.eng.pe_ce is not None
        self.ce = self.eng.pe_ce
        self.sent: dict[str, list[bytes]] = {}
        self.eng.router.send = lambda peer, msgs: self.sent.setdefault(peer.address, []).extend(msgs)  # type: ignore[method-assign]
        self.peers: dict[str, Any] = {}

    def up(self, addr: str, asn: int) -> None:
        peer = SimpleNamespace(address=addr, local_ip="127.0.0.1", tx_ctx=DEFAULT_CONTEXT,
                               negotiated=SimpleNamespace(families=frozenset({IPV4_UNICAST})),
                               settings=self.eng.router.speaker.peers[addr].settings)
        self.peers[addr] = (peer, PeerInfo(ip_address(addr), IPv4Address(addr), asn, ibgp=False))
        self.ce.session_up("red", peer, self.peers[addr][1])  # type: ignore[arg-type]

    def announce(self, addr: str, path: str, next_hop: str, *prefixes: str) -> None:
        attrs = PathAttributes([Origin(OriginType.IGP), AsPath.from_str(path), NextHop(IPv4Address(next_hop))])
        peer, info = self.peers[addr]
        self.ce.update_received("red", peer, info, Update(attrs, nlri=[IPv4Prefix.from_str(p) for p in prefixes]))

    def withdraw(self, addr: str, *prefixes: str) -> None:
        peer, info = self.peers[addr]
        self.ce.update_received("red", peer, info, Update(withdrawn=[IPv4Prefix.from_str(p) for p in prefixes]))

    def down(self, addr: str) -> None:
        self.ce.session_down("red", self.peers.pop(addr)[0])

    def vrf_next_hops(self, prefix: str = PREFIX) -> list[str]:
        return [str(r.next_hop) for r in self.eng.vpn.vrfs["red"].routes(prefix)]

    def exported_path(self, prefix: str = PREFIX) -> str | None:
        for r in self.eng.vpn.exporter.exported("red"):
            if str(r.nlri.prefix) == prefix:  # type: ignore[attr-defined]
                return str(r.attributes.get(int(AttrCode.AS_PATH)))
        return None

    def received(self, addr: str) -> dict[str, str | None]:
        """prefix -> AS_PATH text as the neighbor ends up with it (None: withdrawn)."""
        out: dict[str, str | None] = {}
        for raw in self.sent.get(addr, []):
            u = Update.decode(raw[19:], DEFAULT_CONTEXT) if raw[18] == 2 else None
            if u is None:
                continue
            for n in u.withdrawn:
                out[str(n.prefix)] = None  # type: ignore[attr-defined]
            for n in u.nlri:
                out[str(n.prefix)] = str(u.attributes.get(int(AttrCode.AS_PATH)))  # type: ignore[attr-defined]
        return out


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_second_neighbor_with_same_prefix_is_a_candidate_best_path_wins_and_falls_back(h: Harness) -> None:
    h.up(CE_A, 65001)
    h.up(CE_B, 65002)
    h.announce(CE_A, "65001", "192.0.2.1", PREFIX)
    assert h.vrf_next_hops() == ["192.0.2.1"]
    # a longer AS_PATH from B does not replace A's route
    h.announce(CE_B, "65002 65010", "192.0.2.2", PREFIX)
    assert h.vrf_next_hops() == ["192.0.2.1"]
    assert h.ce.learned[("red", PREFIX)] == CE_A
    # A withdraws: B's route takes over; B never gets its own route back, A gets it
    h.withdraw(CE_A, PREFIX)
    assert h.vrf_next_hops() == ["192.0.2.2"]
    assert h.received(CE_B).get(PREFIX) is None and h.received(CE_A).get(PREFIX) is not None
    # A again, as long as B's: the lower neighbor address (A) wins
    h.announce(CE_A, "65001 65010", "192.0.2.1", PREFIX)
    assert h.vrf_next_hops() == ["192.0.2.1"]
    assert h.received(CE_A).get(PREFIX) is None and h.received(CE_B).get(PREFIX) is not None
    # A's session drops: back to B; B's withdrawal: nothing left
    h.down(CE_A)
    assert h.vrf_next_hops() == ["192.0.2.2"]
    h.withdraw(CE_B, PREFIX)
    assert h.vrf_next_hops() == [] and h.ce.learned == {} and h.ce.candidates == {}


def test_a_neighbor_withdrawing_a_prefix_it_lost_leaves_the_winner(h: Harness) -> None:
    h.up(CE_A, 65001)
    h.up(CE_B, 65002)
    h.announce(CE_B, "65002", "192.0.2.2", PREFIX)
    h.announce(CE_A, "65001 65011 65012", "192.0.2.1", PREFIX)
    assert h.vrf_next_hops() == ["192.0.2.2"]
    h.withdraw(CE_A, PREFIX)
    h.down(CE_A)
    assert h.vrf_next_hops() == ["192.0.2.2"]


def test_the_neighbors_as_path_is_carried_into_the_vpn_route_and_to_other_neighbors(h: Harness) -> None:
    h.up(CE_A, 65001)
    h.up(CE_B, 65002)
    h.announce(CE_A, "65001 65020", "192.0.2.1", PREFIX)
    assert h.exported_path() == "65001 65020"
    # the other neighbor (eBGP) gets the real path with our AS in front
    assert h.received(CE_B)[PREFIX] == "65000 65001 65020"
    # a better path from B replaces it in the VPN route too, and A gets B's path
    h.announce(CE_B, "65002", "192.0.2.2", PREFIX)
    assert h.exported_path() == "65002"
    assert h.received(CE_A)[PREFIX] == "65000 65002"
    h.withdraw(CE_B, PREFIX)
    assert h.exported_path() == "65001 65020"
    # a new path alone (same next hop) reaches the VPN route and the other neighbor
    h.announce(CE_A, "65001 65021 65022", "192.0.2.1", PREFIX)
    assert h.exported_path() == "65001 65021 65022"
    assert h.received(CE_B)[PREFIX] == "65000 65001 65021 65022"


def test_a_local_route_without_a_path_is_exported_with_an_empty_as_path(h: Harness) -> None:
    from vpe.vpn.errors import InvalidValue

    h.eng.bridge.apply(h.eng.vpn.add_local_route("red", "198.51.100.0/24", kind="static",
                                                 next_hop="192.0.2.9"))
    assert h.exported_path("198.51.100.0/24") == ""
    with pytest.raises(InvalidValue, match=r"as_path: '65001' is not an AS_PATH"):
        h.eng.vpn.add_local_route("red", "198.51.100.0/24", kind="static", next_hop="192.0.2.9",
                                  as_path="65001")  # type: ignore[arg-type]


def test_vrf_neighbor_prefix_limit_warns_at_the_threshold_then_acts_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vpe.pe_ce")
    h = Harness("  max_prefixes = 4\n")  # CE_B's limit
    h.up(CE_B, 65002)
    peer = h.peers[CE_B][0]
    hits: list[tuple[str, int]] = []
    peer.prefix_limit_exceeded = lambda fam, count: hits.append((fam.name, count))
    h.announce(CE_B, "65002", "192.0.2.2", "198.51.100.0/26", "198.51.100.64/26")
    assert not any("limit" in r.getMessage() for r in caplog.records)
    h.announce(CE_B, "65002", "192.0.2.2", "198.51.100.128/26")
    warn = [r.getMessage() for r in caplog.records if "of the limit" in r.getMessage()]
    assert warn == [f"peer {CE_B} (vrf red): 3 ipv4-unicast prefixes, 75% of the limit of 4"]
    h.announce(CE_B, "65002", "192.0.2.2", "198.51.100.0/26", "198.51.100.192/26", "203.0.113.0/26")
    assert hits == [("ipv4-unicast", 5)]
    h.announce(CE_B, "65002", "192.0.2.2", "203.0.113.64/26")
    assert hits == [("ipv4-unicast", 5)]  # once per crossing
    # withdrawals bring the count down; the prefix limit counts each neighbor on its own
    h.withdraw(CE_B, "198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26", "198.51.100.192/26")
    assert h.ce.counts[CE_B] == {4: 2}
