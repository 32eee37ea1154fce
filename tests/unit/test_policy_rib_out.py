"""Adj-RIB-Out with export policies: after the standard rewrites, per group, changed live."""

from __future__ import annotations

from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rib_out_common import (
    LOCAL_ASN,
    NH_SELF,
    ROUTER_ID,
    attrs,
    out_peer,
    peer,
    sent_routes,
    setup,
    vpn,
)
from test_rib_out_rtc import membership, rtm

from vpe.bgp.wire.attributes import Communities, LocalPref, Med
from vpe.bgp.wire.constants import IPV4_UNICAST, RTC, VPNV4
from vpe.bgp.wire.nlri import IPv4Prefix
from vpe.policy import Policy, Relabeler, RelabelKey, SwapEntry, parse_policy
from vpe.rib import RibChange
from vpe.rib import attrs as A
from vpe.rib.adj_rib_out import OutPeer

C1, C2, C3 = peer(2, client=True), peer(3, client=True), peer(4, client=True)
N1 = peer(5)
E1 = peer(7, asn=65001)
NH = ip_address("198.18.0.5")

REJECT_AND_LP = parse_policy(
    {
        "name": "to-frr",
        "terms": [
            {"name": "drop", "match": {"family": "vpnv4", "prefix": "192.0.2.0/24"}, "action": "reject"},
            {"name": "lp", "match": {"prefix": "198.51.100.0/24"}, "set": {"local_pref": 250}},
        ],
    }
)
ONLY_RT2 = parse_policy(
    {"name": "rt2", "default": "reject", "terms": [{"match": {"route_targets": "target:65000:2"}}]}
)
ROUTES = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")


def with_policy(p: OutPeer, policy: Policy | None) -> OutPeer:
    return OutPeer(p.address, p.info, p.families, p.ctx, p.addpath_send, p.next_hop_self, p.rtc, policy)


def load(rib: object, *prefixes: str, a: object = None, src: object = N1) -> tuple[bytes, ...]:
    return tuple(rib.announce(src, VPNV4, a or attrs(), NH, [vpn(x) for x in prefixes]))  # type: ignore[attr-defined]


def test_route_policy_rejects_and_sets_local_pref() -> None:
    rib, aro = setup()
    load(rib, *ROUTES)
    plain = out_peer(C1)
    pol = with_policy(out_peer(C2), REJECT_AND_LP)
    s_plain = sent_routes(aro.peer_up(plain), plain.ctx)
    s_pol = sent_routes(aro.peer_up(pol), pol.ctx)
    assert len(s_plain.prefixes()) == 3
    assert s_pol.prefixes() == {"65000:1:198.51.100.0/24", "65000:1:203.0.113.0/24"}
    assert A.local_pref(s_pol.one("65000:1:198.51.100.0/24")[0]) == 250
    assert A.local_pref(s_pol.one("65000:1:203.0.113.0/24")[0]) == 100
    # after the standard rewrites: the reflected route still got ORIGINATOR_ID / CLUSTER_LIST
    assert A.originator_id(s_pol.one("65000:1:198.51.100.0/24")[0]) == N1.router_id
    assert aro.group_of(C1.address) == (C1.address,)  # different policies, different groups
    assert aro.sent(C2.address, VPNV4) == 2


def test_equal_policies_share_a_group() -> None:
    rib, aro = setup()
    again = parse_policy({"name": "rt2", "default": "reject", "terms": [{"match": {"route_targets": "65000:2"}}]})
    assert again == ONLY_RT2 and again is not ONLY_RT2
    aro.peer_up(with_policy(out_peer(C1), ONLY_RT2))
    aro.peer_up(with_policy(out_peer(C2), again))
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address}


def test_attribute_policy_on_change() -> None:
    rib, aro = setup()
    p = with_policy(out_peer(C1), ONLY_RT2)
    aro.peer_up(p)
    keys = load(rib, "192.0.2.0/24") + load(rib, "198.51.100.0/24", a=attrs(rts=("target:65000:2",)))
    out = aro.on_change(RibChange(VPNV4, keys))
    assert sent_routes(out[C1.address], p.ctx).prefixes() == {"65000:1:198.51.100.0/24"}
    # the accepted route loses its RT2: now rejected, so withdrawn
    keys = load(rib, "198.51.100.0/24")
    s = sent_routes(aro.on_change(RibChange(VPNV4, keys))[C1.address], p.ctx)
    assert s.withdrawn_prefixes() == {"65000:1:198.51.100.0/24"} and not s.announced
    assert aro.sent(C1.address, VPNV4) == 0


def test_route_policy_on_change_follows_attributes() -> None:
    tagged = parse_policy(
        {
            "name": "t",
            "terms": [
                {"match": {"prefix": "192.0.2.0/24 le 32", "communities": "65000:666"}, "action": "reject"}
            ],
        }
    )
    rib, aro = setup()
    p = with_policy(out_peer(C1), tagged)
    aro.peer_up(p)
    keys = load(rib, "192.0.2.0/25", "198.51.100.0/24")
    assert len(sent_routes(aro.on_change(RibChange(VPNV4, keys))[C1.address], p.ctx).prefixes()) == 2
    keys = load(rib, "192.0.2.0/25", "198.51.100.0/24", a=attrs(Communities.from_strs(["65000:666"])))
    s = sent_routes(aro.on_change(RibChange(VPNV4, keys))[C1.address], p.ctx)
    assert s.withdrawn_prefixes() == {"65000:1:192.0.2.0/25"}
    assert s.prefixes() == {"65000:1:198.51.100.0/24"}  # re-announced: its communities changed


def test_ebgp_policy_sees_prepended_path() -> None:
    pol = parse_policy({"name": "e", "terms": [{"match": {"as_path": f"^{LOCAL_ASN}$"}, "set": {"med": 33}}]})
    rib, aro = setup()
    rib.announce(peer(9, client=True), VPNV4, attrs(), NH, [vpn("192.0.2.0/24")])
    p = with_policy(out_peer(E1), pol)
    s = sent_routes(aro.peer_up(p), p.ctx)
    a, nh, _ = s.one("65000:1:192.0.2.0/24")
    assert A.med(a) == 33 and nh == NH_SELF and A.local_pref(a, default=-1) == -1


def test_policy_next_hop_self_on_ibgp_is_router_id() -> None:
    pol = parse_policy({"name": "nhs", "terms": [{"set": {"next_hop": "self"}}]})
    rib, aro = setup()
    load(rib, "192.0.2.0/24")
    p = with_policy(out_peer(C1, next_hop_self=None), pol)
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert s.one("65000:1:192.0.2.0/24")[1] == ROUTER_ID


def test_add_path_group_with_route_policy() -> None:
    rib, aro = setup()
    load(rib, *ROUTES)
    load(rib, *ROUTES, src=peer(6))
    p = with_policy(out_peer(C1, addpath={VPNV4: "all"}), REJECT_AND_LP)
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert {(x, pid) for _, x, pid in s.announced} == {
        (f"65000:1:{r}", i) for r in ROUTES[1:] for i in (1, 2)
    }
    assert aro.sent(C1.address, VPNV4) == 4


def test_set_export_policy_sends_the_difference() -> None:
    rib, aro = setup()
    load(rib, *ROUTES)
    p = out_peer(C1)
    other = out_peer(C2)
    aro.peer_up(p)
    aro.peer_up(other)
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address}
    s = sent_routes(aro.set_export_policy(C1.address, REJECT_AND_LP), p.ctx)
    assert s.withdrawn_prefixes() == {"65000:1:192.0.2.0/24"}
    assert s.prefixes() == {"65000:1:198.51.100.0/24"}  # only the changed one
    assert A.local_pref(s.one("65000:1:198.51.100.0/24")[0]) == 250
    assert aro.group_of(C1.address) == (C1.address,) and aro.group_of(C2.address) == (C2.address,)
    assert aro.sent(C1.address, VPNV4) == 2
    assert aro.set_export_policy(C1.address, REJECT_AND_LP) == []  # same policy: nothing
    # later changes follow the new policy
    keys = load(rib, "192.0.2.0/24", "198.51.100.0/24", a=attrs(LocalPref(90), Med(5)))
    s = sent_routes(aro.on_change(RibChange(VPNV4, keys))[C1.address], p.ctx)
    assert s.prefixes() == {"65000:1:198.51.100.0/24"} and not s.withdrawn
    a = s.one("65000:1:198.51.100.0/24")[0]
    assert A.local_pref(a) == 250 and A.med(a) == 5
    # back to no policy: joins C2's group again, gets the rejected route and the real LOCAL_PREFs
    s = sent_routes(aro.set_export_policy(C1.address, None), p.ctx)
    assert s.prefixes() == {"65000:1:192.0.2.0/24", "65000:1:198.51.100.0/24"}
    assert A.local_pref(s.one("65000:1:198.51.100.0/24")[0]) == 90
    assert set(aro.group_of(C1.address)) == {C1.address, C2.address}
    assert aro.sent(C1.address, VPNV4) == 3
    assert aro.set_export_policy(ip_address("127.0.0.99"), None) == []


# -- relabel -------------------------------------------------------------------------------


class Labels:
    """A toy label allocator: 1000, 1001, ... (freed labels are not reused)."""

    def __init__(self) -> None:
        self.next = 1000
        self.live: dict[RelabelKey, int] = {}

    def allocate(self, key: RelabelKey) -> int:
        self.live[key] = self.next
        self.next += 1
        return self.live[key]

    def release(self, key: RelabelKey) -> None:
        del self.live[key]


RELABEL = parse_policy({"name": "optb", "terms": [{"match": {"family": "vpnv4"}, "relabel": True}]})


def test_relabel_sends_local_label_and_next_hop_self() -> None:
    labels = Labels()
    rib, aro = setup(relabeler=Relabeler(labels.allocate, labels.release))
    rl = aro.relabeler
    assert rl is not None
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("192.0.2.0/24", 16), vpn("198.51.100.0/24", 16)])
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("203.0.113.0/24", 17)])
    p = with_policy(out_peer(E1), RELABEL)
    s = sent_routes(aro.peer_up(p), p.ctx)
    got = {x: (nh, lab) for (_, x, _), (_, nh, lab) in s.announced.items()}
    assert got == {
        "65000:1:192.0.2.0/24": (NH_SELF, (1000,)),
        "65000:1:198.51.100.0/24": (NH_SELF, (1000,)),  # same (next hop, label): same local label
        "65000:1:203.0.113.0/24": (NH_SELF, (1001,)),
    }
    assert set(rl.drain().added) == {SwapEntry(1000, NH, 16), SwapEntry(1001, NH, 17)}
    # one of the two label-16 routes goes: the swap entry stays
    keys = rib.withdraw(N1, VPNV4, [vpn("192.0.2.0/24")])
    aro.on_change(RibChange(VPNV4, tuple(keys)))
    assert not rl.drain()
    # the other one gets a new label upstream: new local label, old swap entry removed
    keys = rib.announce(N1, VPNV4, attrs(), NH, [vpn("198.51.100.0/24", 18)])
    s = sent_routes(aro.on_change(RibChange(VPNV4, tuple(keys)))[E1.address], p.ctx)
    assert s.one("65000:1:198.51.100.0/24")[2] == (1002,)
    ch = rl.drain()
    assert ch.added == (SwapEntry(1002, NH, 18),) and ch.removed == (SwapEntry(1000, NH, 16),)
    # the peer goes: everything it held is released
    aro.peer_down(E1.address)
    assert set(rl.drain().removed) == {SwapEntry(1001, NH, 17), SwapEntry(1002, NH, 18)}
    assert labels.live == {}


def test_relabel_removed_by_policy_change() -> None:
    labels = Labels()
    rib, aro = setup(relabeler=Relabeler(labels.allocate, labels.release))
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("192.0.2.0/24", 16)])
    p = with_policy(out_peer(E1), RELABEL)
    aro.peer_up(p)
    s = sent_routes(aro.set_export_policy(E1.address, None), p.ctx)
    assert s.one("65000:1:192.0.2.0/24")[2] == (16,)
    assert labels.live == {}


def test_relabel_without_relabeler_is_ignored() -> None:
    rib, aro = setup()
    rib.announce(N1, VPNV4, attrs(), NH, [vpn("192.0.2.0/24", 16)])
    p = with_policy(out_peer(C1), RELABEL)
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert s.one("65000:1:192.0.2.0/24")[1:] == (NH, (16,))


# -- property: set_export_policy ends where a fresh session would -------------------------


POLICIES: list[Policy | None] = [
    None,
    REJECT_AND_LP,
    ONLY_RT2,
    parse_policy({"name": "med", "terms": [{"match": {"communities": "65000:5"}, "set": {"med": 9}}]}),
    parse_policy({"name": "rt", "terms": [{"set": {"route_targets": {"add": ["target:65000:9"]}}}]}),
]
PREFIXES = ("192.0.2.0/24", "192.0.2.128/25", "198.51.100.0/24", "203.0.113.0/24")


def _apply(table: dict[str, tuple[object, object, object]], msgs: list[bytes], ctx: object) -> None:
    s = sent_routes(msgs, ctx)  # type: ignore[arg-type]
    for _, x, _ in s.withdrawn:
        table.pop(x, None)
    for (_, x, _), v in s.announced.items():
        table[x] = v


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(PREFIXES), st.booleans(), st.booleans(), st.integers(50, 300)),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(0, len(POLICIES) - 1), min_size=1, max_size=5),
)
def test_set_export_policy_matches_a_fresh_peer(
    routes: list[tuple[str, bool, bool, int]], choices: list[int]
) -> None:
    rib, aro = setup()
    for prefix, rt2, comm, lp in routes:
        extra = [Communities.from_strs(["65000:5"])] if comm else []
        a = attrs(LocalPref(lp), *extra, rts=("target:65000:2",) if rt2 else ("target:65000:1",))
        rib.announce(N1, VPNV4, a, NH, [vpn(prefix)])
    p = out_peer(C1)
    aro.peer_up(out_peer(C2))  # a bystander in the no-policy group
    table: dict[str, tuple[object, object, object]] = {}
    _apply(table, aro.peer_up(p), p.ctx)
    for i in choices:
        _apply(table, aro.set_export_policy(C1.address, POLICIES[i]), p.ctx)
        fresh_peer = with_policy(out_peer(C3), POLICIES[i])
        fresh: dict[str, tuple[object, object, object]] = {}
        _apply(fresh, aro.peer_up(fresh_peer), fresh_peer.ctx)
        aro.peer_down(C3.address)
        assert table == fresh
        assert aro.sent(C1.address, VPNV4) == len(table)


def test_rtc_change_with_route_policy_keeps_other_families() -> None:
    """A peer whose group has a per-route policy changes RTC membership: its VPN routes are
    re-filtered and its IPv4 unicast routes (rebuilt in the new group, not copied) stay."""
    rib, aro = setup()
    rib.announce(N1, VPNV4, attrs(rts=("target:65000:1",)), NH, [vpn("203.0.113.0/24")])
    rib.announce(N1, IPV4_UNICAST, attrs(), NH, [IPv4Prefix.from_str("198.51.100.0/24")])
    p = with_policy(out_peer(C1, (VPNV4, IPV4_UNICAST, RTC), rtc=True), REJECT_AND_LP)
    s = sent_routes(aro.peer_up(p), p.ctx)
    assert s.prefixes(IPV4_UNICAST) == {"198.51.100.0/24"} and s.prefixes() == set()
    assert A.local_pref(s.one("198.51.100.0/24", IPV4_UNICAST)[0]) == 250
    s = sent_routes(membership(rib, aro, C1, rtm("target:65000:1")), p.ctx)
    assert s.prefixes() == {"65000:1:203.0.113.0/24"} and not s.withdrawn
    assert aro.sent(C1.address, IPV4_UNICAST) == 1 and aro.sent(C1.address, VPNV4) == 1
