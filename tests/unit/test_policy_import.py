"""import_updates: a received UPDATE filtered and rewritten into the UPDATEs the RIB applies."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from test_rib_out_common import LOCAL_ASN, attrs, peer, vpn

from vpe.bgp.wire.attributes import LocalPref, NextHop, PathAttributes
from vpe.bgp.wire.constants import IPV4_UNICAST, VPNV4
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.errors import UpdateAction
from vpe.bgp.wire.nlri import IPv4Prefix
from vpe.bgp.wire.update import MpReach, MpUnreach, Update, decode_update, encode_update_body
from vpe.policy import import_updates, parse_policy
from vpe.rib import Rib

NH = ip_address("198.18.0.5")
SRC = peer(9)

REJECT_ONE = parse_policy(
    {
        "name": "in",
        "terms": [
            {"name": "drop", "match": {"prefix": "192.0.2.0/24"}, "action": "reject"},
            {"name": "lp", "match": {"prefix": "198.51.100.0/24 le 32"}, "set": {"local_pref": 250}},
        ],
    }
)


def vpn_update(*prefixes: str, a: PathAttributes | None = None) -> Update:
    return Update(a or attrs(), mp_reach=MpReach(VPNV4, NH, [vpn(p) for p in prefixes]))


def test_no_policy_and_special_updates_pass_through() -> None:
    u = vpn_update("192.0.2.0/24")
    assert import_updates(None, u) == [u]
    eor = Update(PathAttributes(), mp_unreach=MpUnreach(VPNV4, []))
    assert import_updates(REJECT_ONE, eor) == [eor]
    taw = vpn_update("192.0.2.0/24")
    taw.action = UpdateAction.TREAT_AS_WITHDRAW
    assert import_updates(REJECT_ONE, taw) == [taw]
    wd = Update(PathAttributes(), mp_unreach=MpUnreach(VPNV4, [vpn("192.0.2.0/24")]))
    assert import_updates(REJECT_ONE, wd) == [wd]


def test_rejected_become_withdrawals_modified_grouped() -> None:
    u = vpn_update("192.0.2.0/24", "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24")
    u.mp_unreach = MpUnreach(VPNV4, [vpn("203.0.113.128/25")])
    out = import_updates(REJECT_ONE, u)
    assert [x.mp_unreach is not None for x in out] == [True, False, False]
    assert {str(n) for n in out[0].mp_unreach.nlri} == {"65000:1:203.0.113.128/25", "65000:1:192.0.2.0/24"}  # type: ignore[union-attr]
    by_lp = {x.attributes.get(5).value: x for x in out[1:]}
    assert {str(n) for n in by_lp[250].mp_reach.nlri} == {"65000:1:198.51.100.0/25", "65000:1:198.51.100.128/25"}  # type: ignore[union-attr]
    assert [str(n) for n in by_lp[100].mp_reach.nlri] == ["65000:1:203.0.113.0/24"]  # type: ignore[union-attr]
    assert by_lp[100].attributes is u.attributes  # untouched routes keep the interned set
    assert all(x.mp_reach.next_hop == NH for x in out[1:])  # type: ignore[union-attr]
    ctx = CodecContext(asn4=True, ibgp=True)
    for x in out:  # every output encodes and decodes as a real UPDATE
        assert decode_update(encode_update_body(x, ctx), ctx).errors == ()


def test_ipv4_unicast_next_hop_attribute() -> None:
    p = parse_policy({"name": "nh", "terms": [{"set": {"next_hop": "198.18.0.9"}}]})
    a = attrs(NextHop(IPv4Address("198.18.0.5")))
    u = Update(a, nlri=[IPv4Prefix.from_str("192.0.2.0/24")])
    (out,) = import_updates(p, u)
    assert out.nlri and out.mp_reach is None
    assert list(out.announced()) == [(IPV4_UNICAST, u.nlri[0], ip_address("198.18.0.9"))]


def test_attribute_only_policy_rejects_whole_update() -> None:
    p = parse_policy({"name": "rt", "default": "reject", "terms": [{"match": {"route_targets": "65000:9"}}]})
    (out,) = import_updates(p, vpn_update("192.0.2.0/24", "198.51.100.0/24"))
    assert out.mp_reach is None and len(out.mp_unreach.nlri) == 2  # type: ignore[union-attr]


def test_with_rib_accepted_then_rejected_is_removed() -> None:
    rib = Rib(local_asn=LOCAL_ASN, router_id=IPv4Address("192.0.2.1"))
    u = vpn_update("192.0.2.0/24", "198.51.100.0/24")
    for x in import_updates(None, u):
        rib.apply_update(SRC, x)
    loc = rib.loc_rib(VPNV4)
    assert loc.best(vpn("192.0.2.0/24").key) is not None
    # the policy now rejects 192.0.2.0/24: the same UPDATE again removes it
    for x in import_updates(REJECT_ONE, u):
        rib.apply_update(SRC, x)
    assert loc.best(vpn("192.0.2.0/24").key) is None
    best = loc.best(vpn("198.51.100.0/24").key)
    assert best is not None and best.attrs.get(5) == LocalPref(250)
