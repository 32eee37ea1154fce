"""The RIB against a naive model: random announce/withdraw/restart sequences.

The model keeps a plain dict of routes and recomputes every destination's
best path and multipath set from scratch after each step; the RIB, with its
single-path shortcut, Destination objects and add-path keys, must agree on
the result and report exactly the destinations whose selection changed.
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import AsPath, LocalPref, Med, Origin, OriginType, PathAttributes
from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.nlri import VPNv4Prefix
from vpe.rib import DecisionOptions, Path, PathSource, PeerInfo, Rib
from vpe.rib.decision import select
from vpe.rib.loc_rib import LocRib

PEERS = [
    PeerInfo(ip_address(f"127.0.0.{i + 2}"), IPv4Address(f"192.0.2.{9 - i}"), 65000, ibgp=True)
    for i in range(3)
]
ATTRS = [
    PathAttributes([Origin(OriginType.IGP), AsPath.sequence(asn), LocalPref(lp), Med(med)])
    for lp in (100, 200)
    for med in (0, 5)
    for asn in (65001, 65002)  # two neighbour ASes: MED compared only within each
]
NHS = [ip_address("192.0.2.1"), ip_address("192.0.2.2"), ip_address("192.0.2.3")]
PREFIXES = ["198.51.100.0/24", "198.51.100.1/32", "203.0.113.0/24"]


#: IGP views: next hop -> cost (absent: unreachable); the "igp" step switches views
IGP = [
    {NHS[0]: 1, NHS[1]: 2},
    {NHS[0]: 2, NHS[1]: 1, NHS[2]: 1},
]


op = st.one_of(
    st.tuples(
        st.just("announce"),
        st.integers(0, 2),  # peer
        st.integers(0, 7),  # attrs
        st.integers(0, 2),  # next hop
        st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0, 0, 1, 2]), st.integers(16, 18)), max_size=4),
    ),
    st.tuples(st.just("withdraw"), st.integers(0, 2), st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0, 1, 2])), max_size=3)),
    st.tuples(st.just("stale"), st.integers(0, 2)),
    st.tuples(st.just("eor"), st.integers(0, 2)),
    st.tuples(st.just("down"), st.integers(0, 2)),
    st.tuples(st.just("expire"),),
    st.tuples(st.just("igp"),),
)


def summary(paths: tuple[Path, ...] | Path | None) -> Any:
    if paths is None:
        return None
    if isinstance(paths, Path):
        paths = (paths,)
    return tuple((str(p.peer.address), p.path_id, p.attrs, p.next_hop, p.labels) for p in paths)


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=25), st.sampled_from([1, 2, 3]), st.booleans())
def test_rib_matches_model(ops: list[tuple], max_paths: int, reuse: bool) -> None:
    """``reuse``: the same NLRI objects are sent by every peer and every time."""
    cache: dict[tuple[int, int, int], VPNv4Prefix] = {}

    def nlri(xi: int, pid: int, label: int) -> VPNv4Prefix:
        n = cache.get((xi, pid, label)) if reuse else None
        if n is None:
            n = cache[(xi, pid, label)] = VPNv4Prefix.from_str(f"65000:1:{PREFIXES[xi]}", (label,), pid)
        return n

    view = [0]
    options = DecisionOptions(max_paths=max_paths, igp_cost=lambda nh: IGP[view[0]].get(nh))
    rib = Rib(options)
    loc = rib.loc_rib(VPNV4)
    ref = LocRib(VPNV4, options)  # used only for its rank cache
    # model: (peer index, prefix index, path id) -> (attrs index, nh index, label, stale)
    model: dict[tuple[int, int, int], tuple[int, int, int, bool]] = {}
    marked: set[int] = set()

    def expected() -> dict[int, tuple[Any, Any]]:
        out = {}
        for x in range(len(PREFIXES)):
            cands = []
            for (pi, xi, pid), (ai, ni, label, _) in sorted(model.items()):
                if xi == x:
                    n = VPNv4Prefix.from_str(f"65000:1:{PREFIXES[x]}", (label,), pid)
                    cands.append(Path(n, PathSource(PEERS[pi], ATTRS[ai], NHS[ni])))
            best, mp = select(cands, ref.rank, max_paths)
            out[x] = (summary(best), summary(mp))
        return out

    before = expected()
    for o in ops:
        kind = o[0]
        reported: list[bytes] = []
        if kind == "announce":
            _, pi, ai, ni, routes = o
            nlris = []
            for xi, pid, label in routes:
                nlris.append(nlri(xi, pid, label))
                model[(pi, xi, pid)] = (ai, ni, label, False)
            reported = rib.announce(PEERS[pi], VPNV4, ATTRS[ai], NHS[ni], nlris)
        elif kind == "withdraw":
            _, pi, routes = o
            nlris = []
            for xi, pid in routes:
                nlris.append(nlri(xi, pid, 16))
                model.pop((pi, xi, pid), None)
            reported = rib.withdraw(PEERS[pi], VPNV4, nlris)
        elif kind == "stale":
            _, pi = o
            rib.mark_stale(PEERS[pi].address, deadline=10.0)
            for k, v in list(model.items()):
                if k[0] == pi:
                    model[k] = (*v[:3], True)
            marked.add(pi)
        elif kind == "eor":
            _, pi = o
            reported = rib.end_of_rib(PEERS[pi].address, VPNV4)
            for k, v in list(model.items()):
                if k[0] == pi and v[3]:
                    del model[k]
        elif kind == "down":
            _, pi = o
            for c in rib.peer_down(PEERS[pi].address):
                reported.extend(c.keys)
            for k in [k for k in model if k[0] == pi]:
                del model[k]
        elif kind == "igp":
            view[0] ^= 1
            for c in rib.reevaluate():
                reported.extend(c.keys)
        else:
            for c in rib.sweep_expired(10.0):
                reported.extend(c.keys)
            for k, v in list(model.items()):
                if v[3]:
                    del model[k]
        after = expected()
        keys = {x: VPNv4Prefix.from_str(f"65000:1:{PREFIXES[x]}").key for x in range(len(PREFIXES))}
        want = {keys[x] for x in after if after[x] != before[x]}
        repeated = kind == "announce" and len({r[:2] for r in o[4]}) < len(o[4])
        if repeated:
            # the same route twice in one UPDATE: intermediate states may be reported
            assert want <= set(reported), (o, reported, want)
        else:
            assert set(reported) == want, (o, reported, want)
        assert len(reported) == len(set(reported))
        for x, (best, mp) in after.items():
            assert summary(loc.best(keys[x])) == best
            assert summary(loc.multipath(keys[x])) == mp
            # every route of the model is a candidate, with its stale flag
            got = sorted(
                (str(p.peer.address), p.path_id, p.labels, p.stale) for p in loc.paths(keys[x])
            )
            exp = sorted(
                (str(PEERS[pi].address), pid, (label,), st_)
                for (pi, xi, pid), (_, _, label, st_) in model.items()
                if xi == x
            )
            assert got == exp
        for pi, p in enumerate(PEERS):
            adj = rib.adj_rib_in(p.address, VPNV4)
            n_model = sum(1 for k in model if k[0] == pi)
            assert (len(adj) if adj is not None else 0) == n_model
            if adj is not None:
                assert len(list(adj)) == n_model
        before = after
