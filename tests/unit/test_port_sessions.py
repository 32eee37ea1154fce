"""VRF neighbors reached through a port (``via = "port"``): configuration checks, the
mapped addresses (vpe.agent.port_sessions) and what the FIB and the speaker get."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vpe.agent.config import ConfigError, parse_config
from vpe.agent.engine import Engine
from vpe.agent.port_sessions import PortSessions, SessionPrefixFull
from vpe.bgp.transport import Listener

BASE = """
[bgp]
local_as = 65000
router_id = "198.18.0.1"
port = 1790

[dataplane]
driver = "userspace"
fib_socket = "/nonexistent/fib.sock"
session_prefix = "198.19.179.0/24"
session_prefix6 = "2001:db8:ffff:179::/64"
"""


def vrf(name: str, rt: str, *neighbors: str) -> str:
    return f'\n[[vrfs]]\nname = "{name}"\nroute_targets = ["{rt}"]\n' + "".join(
        f"  [[vrfs.neighbors]]\n  {n}\n" for n in neighbors)


CE = 'address = "192.0.2.2"\n  remote_as = 65001\n  via = "port"\n  local_address = "192.0.2.1"'


def test_two_vrfs_may_have_a_ce_at_the_same_address_each_gets_its_own_mapped_address() -> None:
    cfg = parse_config(BASE + vrf("red", "65000:1", CE) + vrf("blue", "65000:2", CE), "<t>")
    eng = Engine(cfg)
    peers = eng.router.speaker.peers
    assert set(peers) == {"198.19.179.2", "198.19.179.3"}
    assert eng.router.vrf_of == {"198.19.179.2": "red", "198.19.179.3": "blue"}
    s = peers["198.19.179.2"].settings
    assert s.local_address == "198.19.179.1" and s.port == 179 and s.remote_as == 65001
    # the routes sent to the CE carry our address in the VRF, not the mapped one
    assert eng.pe_ce is not None and eng.pe_ce.neighbors["198.19.179.2"].next_hop == "192.0.2.1"
    # the agent listens on its end of the sessions as well as where it was told
    assert "198.19.179.1" in eng.router.speaker.listen
    assert eng.fib is not None
    sessions = {(str(x.mapped), x.vrf, str(x.peer), str(x.local), str(x.host), x.listen_port)
                for x in eng.fib.state().sessions}
    assert sessions == {("198.19.179.2", "red", "192.0.2.2", "192.0.2.1", "198.19.179.1", 1790),
                        ("198.19.179.3", "blue", "192.0.2.2", "192.0.2.1", "198.19.179.1", 1790)}
    # the neighbor list names the VRF and the CE's address in it
    rows = {n["address"]: n for n in eng.view.summary()}
    assert rows["198.19.179.3"]["vrf"] == "blue" and rows["198.19.179.3"]["vrf_address"] == "192.0.2.2"
    assert rows["198.19.179.3"]["via"] == "port"


def test_mapping_is_stable_in_configuration_order_and_ipv6_uses_its_own_prefix() -> None:
    ce6 = 'address = "2001:db8:1::2"\n  remote_as = 65001\n  via = "port"\n  local_address = "2001:db8:1::1"'
    text = BASE + vrf("red", "65000:1", CE, ce6)
    a, b = Engine(parse_config(text, "<t>")), Engine(parse_config(text, "<t>"))
    assert set(a.router.speaker.peers) == set(b.router.speaker.peers) == {"198.19.179.2", "2001:db8:ffff:179::2"}
    assert a.pe_ce is not None and a.pe_ce.neighbors["2001:db8:ffff:179::2"].next_hop6 == "2001:db8:1::1"


@pytest.mark.parametrize(("neighbor", "words"), [
    ('address = "192.0.2.2"\n  remote_as = 65001\n  via = "port"', "needs local_address"),
    ('address = "192.0.2.2"\n  remote_as = 65001\n  via = "port"\n  local_address = "2001:db8::1"',
     "not of its IP version"),
    ('address = "192.0.2.2"\n  remote_as = 65001\n  via = "port"\n  local_address = "192.0.2.1"\n'
     '  md5_password = "x"', "md5_password cannot be used"),
    ('address = "192.0.2.2"\n  remote_as = 65001\n  via = "tunnel"\n  local_address = "192.0.2.1"', "via"),
])
def test_bad_port_neighbors_are_refused_by_name(neighbor: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(BASE + vrf("red", "65000:1", neighbor), "<t>")


def test_same_ce_twice_in_one_vrf_and_no_forwarder_are_refused() -> None:
    with pytest.raises(ConfigError, match="configured twice in VRF red"):
        parse_config(BASE + vrf("red", "65000:1", CE, CE), "<t>")
    no_dp = BASE.replace('driver = "userspace"', 'driver = "none"')
    with pytest.raises(ConfigError, match="needs a forwarder"):
        parse_config(no_dp + vrf("red", "65000:1", CE), "<t>")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("session_prefix", "2001:db8::/64", "not an IPv4 prefix"),
    ("session_prefix", "198.19.179.0/31", "too small"),
    ("session_prefix6", "nonsense", "not an IP prefix"),
])
def test_bad_session_prefixes_are_refused(key: str, value: str, words: str) -> None:
    text = BASE.replace(f'{key} = "', f'{key} = "{value}"  # "', 1)
    with pytest.raises(ConfigError, match=words):
        parse_config(text, "<t>")


def test_a_full_session_prefix_is_a_clear_error() -> None:
    cfg = parse_config(BASE + vrf("red", "65000:1", CE), "<t>")
    ps = PortSessions("198.19.179.0/30", "2001:db8:ffff:179::/126", 179)
    ps.map("red", cfg.vrfs[0].neighbors[0])
    with pytest.raises(SessionPrefixFull, match="no address left in the session prefix 198.19.179.0/30"):
        ps.map("blue", cfg.vrfs[0].neighbors[0])


def test_a_listener_binds_an_address_that_is_not_local_yet_with_freebind() -> None:
    async def go() -> None:
        async def on_accept(*_: object) -> None:
            return None

        lst = Listener("198.19.179.77", 0, on_accept, freebind=True)  # type: ignore[arg-type]
        try:
            await lst.start()
            assert lst.serving
        finally:
            await lst.close()
        plain = Listener("198.19.179.77", 0, on_accept)  # type: ignore[arg-type]
        with pytest.raises(OSError):
            await plain.start()

    try:
        socket.socket().close()
    except OSError:  # pragma: no cover
        pytest.skip("no sockets")
    asyncio.run(go())
