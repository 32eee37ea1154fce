"""Adj-RIB-Out against a model: incremental updates end where a fresh full table does.

Random announcements and withdrawals from clients, non-clients, eBGP and
local origin, some carrying an ORIGINATOR_ID that names a receiver; peers
of every kind (best path, add-path all and best-2, eBGP; the clients among
them also sources, so split horizon varies inside their update groups)
receive the incremental messages, which are applied to a simulated
receiver table. After every step, that table must equal what a brand-new
Adj-RIB-Out sends the same peer in a full table (path ids aside, since
ours depend on history).
"""

from __future__ import annotations

from collections import Counter
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rib_out_common import LOCAL, OutPeer, attrs, med, out_peer, peer, sent_routes, setup, vpn

from vpe.bgp.wire.attributes import OriginatorId
from vpe.bgp.wire.constants import VPNV4
from vpe.rib import PeerInfo, RibChange

C1, C2, C3 = peer(2, client=True), peer(3, client=True), peer(4, client=True)
N1, N2 = peer(5), peer(6)
E1, E2 = peer(7, asn=65001), peer(8, asn=65002)
SOURCES = [C1, C2, N1, E1, LOCAL]
RECEIVERS: list[OutPeer] = [
    out_peer(C1),
    out_peer(C2),
    out_peer(C3, addpath={VPNV4: "all"}),
    out_peer(peer(9, client=True), addpath={VPNV4: 2}),
    out_peer(N2),
    out_peer(E2),
]
PREFIXES = [f"203.0.113.{i * 16}/28" for i in range(4)]
#: ORIGINATOR_IDs a path may arrive with: none, or a receiver's router id
ORIGINATORS = [None, C1.router_id, C2.router_id, C3.router_id]

Table = dict[tuple[str, int], tuple[object, object, object]]

step = st.tuples(
    st.sampled_from(SOURCES),
    st.sampled_from(PREFIXES),
    st.one_of(
        st.none(),
        st.tuples(st.integers(90, 110), st.integers(0, 2), st.integers(16, 18), st.sampled_from(ORIGINATORS)),
    ),
)


def source_attrs(src: PeerInfo, lp: int, m: int, oid: object = None) -> object:
    if src.ebgp:
        return attrs(med(m), path=(src.asn,), lp=None)
    extra = (OriginatorId(oid),) if oid is not None and not src.local else ()  # type: ignore[arg-type]
    return attrs(med(m), *extra, lp=None if src.local else lp)


def apply(table: Table, msgs: list[bytes], p: OutPeer) -> None:
    s = sent_routes(msgs, p.ctx)
    for u in s.updates:  # message order matters: replay one by one
        for _, n in u.withdrawn_routes():
            table.pop((str(n), n.path_id), None)
        for _, n, nh in u.announced():
            table[(str(n), n.path_id)] = (u.attributes, nh, tuple(getattr(n, "labels", ())))


def content(table: Table) -> Counter[tuple[object, ...]]:
    return Counter((k[0], *v) for k, v in table.items())


@settings(max_examples=60, deadline=None)
@given(st.lists(step, min_size=1, max_size=12))
def test_incremental_equals_full_table(steps: list[tuple[PeerInfo, str, tuple[int, int, int, object] | None]]) -> None:
    rib, aro = setup()
    tables: dict[object, Table] = {}
    for p in RECEIVERS:
        tables[p.address] = {}
        apply(tables[p.address], aro.peer_up(p), p)
    for src, prefix, what in steps:
        n_old = vpn(prefix)
        if what is None:
            rib.withdraw(src, VPNV4, [n_old])
        else:
            lp, m, label, oid = what
            nh = None if src.local else ip_address("198.51.100.1")
            rib.announce(src, VPNV4, source_attrs(src, lp, m, oid), nh, [vpn(prefix, label)])  # type: ignore[arg-type]
        out = aro.on_change(RibChange(VPNV4, (n_old.key,)))
        for p in RECEIVERS:
            apply(tables[p.address], out.get(p.address, []), p)
        _, fresh = setup()
        fresh.rib = rib
        for p in RECEIVERS:
            want: Table = {}
            apply(want, fresh.peer_up(p), p)
            assert content(tables[p.address]) == content(want), p.info
            assert aro.sent(p.address, VPNV4) == len(want)
