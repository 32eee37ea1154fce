"""eBGP done right (issue 12): loop check with allowas_in, RFC 8212 default, TTL, next hop
self or unchanged by policy, AS_PATH prepend action."""

from __future__ import annotations

import logging
import socket
from ipaddress import IPv4Address, ip_address

import pytest
from test_policy_rib_out import NH, load, with_policy
from test_rib_out_common import LOCAL_ASN, NH_SELF, attrs, out_peer, peer, sent_routes, setup, vpn

from vpe.agent.config import ConfigError, parse_config
from vpe.bgp.speaker import ebgp_ttl
from vpe.bgp.transport import ttl_sockopt
from vpe.bgp.wire.attributes import AsPath
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.update import MpReach, Update
from vpe.policy import PolicyError, parse_policy
from vpe.policy.parse import policy_to_json
from vpe.rib import Rib
from vpe.rib import attrs as A
from vpe.rib.path import PeerInfo
from vpe.rib.reflection import inbound_loop

E1 = peer(7, asn=65001)


def ebgp_peer(allowas_in: int = 0) -> PeerInfo:
    return PeerInfo(ip_address("127.0.0.7"), IPv4Address("198.18.0.7"), 65001, ibgp=False,
                    allowas_in=allowas_in)


def path_attrs(path: str) -> object:
    return attrs(AsPath.from_str(path))


# -- inbound loop check ---------------------------------------------------------------------


def test_loop_check_counts_own_as_against_allowas_in() -> None:
    a = path_attrs(f"65001 {LOCAL_ASN} 65002")
    assert inbound_loop(a, None, None, LOCAL_ASN) == f"our AS {LOCAL_ASN} is in AS_PATH"  # type: ignore[arg-type]
    assert inbound_loop(a, None, None, LOCAL_ASN, allowas_in=1) is None  # type: ignore[arg-type]
    twice = path_attrs(f"65001 {LOCAL_ASN} {LOCAL_ASN}")
    why = inbound_loop(twice, None, None, LOCAL_ASN, allowas_in=1)  # type: ignore[arg-type]
    assert why == f"our AS {LOCAL_ASN} is in AS_PATH 2 times (allowas_in 1)"
    assert inbound_loop(twice, None, None, LOCAL_ASN, allowas_in=2) is None  # type: ignore[arg-type]


def test_rib_treats_own_as_as_withdraw_and_logs_peer_and_prefix(caplog: pytest.LogCaptureFixture) -> None:
    rib = Rib(local_asn=LOCAL_ASN)
    src = ebgp_peer()
    rib.announce(src, VPNV4, path_attrs("65001"), NH, [vpn("192.0.2.0/24")])
    assert rib.loc_rib(VPNV4).best(vpn("192.0.2.0/24").key) is not None  # type: ignore[union-attr]

    upd = Update(path_attrs(f"65001 {LOCAL_ASN}"), mp_reach=MpReach(VPNV4, NH, [vpn("192.0.2.0/24")]))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="vpe.rib"):
        rib.apply_update(src, upd)
    assert rib.loc_rib(VPNV4).best(vpn("192.0.2.0/24").key) is None  # type: ignore[union-attr]
    line = next(r.getMessage() for r in caplog.records if "treated as withdrawn" in r.getMessage())
    assert "127.0.0.7" in line and "192.0.2.0/24" in line and f"our AS {LOCAL_ASN}" in line
    # with allowas_in 1 the same UPDATE is accepted
    rib.apply_update(ebgp_peer(allowas_in=1), upd)
    assert rib.loc_rib(VPNV4).best(vpn("192.0.2.0/24").key) is not None  # type: ignore[union-attr]


# -- policy actions: prepend, next hop unchanged ------------------------------------------------


def test_as_path_prepend_action_parses_round_trips_and_applies() -> None:
    pol = parse_policy({"name": "pp", "terms": [{"set": {"as_path_prepend": [65000, 65000]}}]})
    assert policy_to_json(pol)["terms"][0]["set"] == {"as_path_prepend": [65000, 65000]}
    out, _ = pol.terms[0].actions.apply(path_attrs("65001 65002"), NH)  # type: ignore[arg-type]
    assert str(out[2]) == "65000 65000 65001 65002"
    out, _ = pol.terms[0].actions.apply(attrs(), NH)
    assert str(out[2]) == "65000 65000"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (65000, "as_path_prepend: 65000 is not a list of 1 to 16 AS numbers"),
        ([], "as_path_prepend: [] is not a list of 1 to 16 AS numbers"),
        ([65000, 0], "as_path_prepend[1]: 0 is not an AS number in 1..4294967295"),
        (["x"], "as_path_prepend[0]: 'x' is not an AS number"),
    ],
)
def test_as_path_prepend_errors_name_the_value(value: object, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy({"name": "pp", "terms": [{"set": {"as_path_prepend": value}}]})
    assert message in str(e.value)


def test_ebgp_vpn_next_hop_is_self_unless_policy_says_unchanged() -> None:
    rib, aro = setup()
    load(rib, "192.0.2.0/24")
    plain = with_policy(out_peer(E1), parse_policy({"name": "all"}))
    s = sent_routes(aro.peer_up(plain), plain.ctx)
    a, nh, labels = s.one("65000:1:192.0.2.0/24")
    assert nh == NH_SELF and str(a[2]) == f"{LOCAL_ASN}"
    keep = parse_policy({"name": "keep", "terms": [{"set": {"next_hop": "unchanged", "as_path_prepend": [65000]}}]})
    e2 = peer(8, asn=65002)
    p = with_policy(out_peer(e2), keep)
    s = sent_routes(aro.peer_up(p), p.ctx)
    a, nh, labels = s.one("65000:1:192.0.2.0/24")
    assert nh == NH and labels == (100,)  # option C: PE next hop and VPN label end to end
    assert str(a[2]) == f"{LOCAL_ASN} {LOCAL_ASN}"
    assert A.local_pref(a, default=-1) == -1


# -- TTL, configuration ---------------------------------------------------------------------------


def test_ebgp_ttl() -> None:
    assert ebgp_ttl(65000, 65001, None, None) == 1  # directly connected eBGP
    assert ebgp_ttl(65000, 65001, None, 4) == 4  # ebgp_multihop
    assert ebgp_ttl(65000, 65000, None, None) is None  # iBGP: system default
    assert ebgp_ttl(65000, 65001, 1, None) is None  # GTSM sets 255 itself
    assert ebgp_ttl(65000, None, None, None) is None


def test_ttl_sockopt_sets_ip_ttl() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        ttl_sockopt(s, 3)
        assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 3
        with pytest.raises(ValueError, match="TTL 0 is not in 1..255"):
            ttl_sockopt(s, 0)


BASE = """
[bgp]
local_as = 65000
router_id = "198.18.0.1"
"""


def test_config_ebgp_knobs_and_errors() -> None:
    cfg = parse_config(BASE + '[[neighbors]]\naddress = "127.0.0.2"\nremote_as = 65001\n'
                       "ebgp_multihop = 3\nallowas_in = 1\n")
    assert cfg.bgp.ebgp_requires_policy is True
    assert cfg.neighbors[0].ebgp_multihop == 3 and cfg.neighbors[0].allowas_in == 1
    with pytest.raises(ConfigError, match="ebgp_multihop and gtsm_hops exclude each other"):
        parse_config(BASE + '[[neighbors]]\naddress = "127.0.0.2"\nremote_as = 65001\n'
                     "ebgp_multihop = 3\ngtsm_hops = 1\n")
    with pytest.raises(ConfigError, match=r"neighbors.0.ebgp_multihop: neighbor 127.0.0.2 is iBGP"):
        parse_config(BASE + '[[neighbors]]\naddress = "127.0.0.2"\nremote_as = 65000\nebgp_multihop = 3\n')
    with pytest.raises(ConfigError, match=r"allowas_in: Input should be less than or equal to 10"):
        parse_config(BASE + '[[neighbors]]\naddress = "127.0.0.2"\nremote_as = 65001\nallowas_in = 11\n')


VRF = """
[[vrfs]]
name = "red"
route_targets = ["65000:9"]
  [[vrfs.neighbors]]
  address = "127.0.0.9"
  remote_as = 65001
"""


def test_vrf_neighbor_config_and_errors() -> None:
    cfg = parse_config(BASE + VRF)
    (n,) = cfg.vrfs[0].neighbors
    assert n.families == ["ipv4-unicast", "ipv6-unicast"] and n.graceful_restart is False
    with pytest.raises(ConfigError, match=r"vrfs.0.neighbors.0.families: a VRF neighbor carries "
                                          r"ipv4-unicast and ipv6-unicast only, not vpnv4"):
        parse_config(BASE + VRF + '  families = ["vpnv4"]\n')
    with pytest.raises(ConfigError, match=r"vrfs.0.neighbors.0.address: neighbor 127.0.0.9 is configured twice"):
        parse_config(BASE + '[[neighbors]]\naddress = "127.0.0.9"\nremote_as = 65000\n' + VRF)
    with pytest.raises(ConfigError, match=r"vrfs.0.neighbors.0.export_policy: neighbor 127.0.0.9 export_policy: "
                                          r"no policy named 'nope'"):
        parse_config(BASE + VRF + '  export_policy = "nope"\n')
    with pytest.raises(ConfigError, match=r"next_hop6: .*'2001:db8::zz'"):
        parse_config(BASE + VRF + '  next_hop6 = "2001:db8::zz"\n')
