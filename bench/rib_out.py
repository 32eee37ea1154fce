"""Benchmark: Adj-RIB-Out for 1,000,000 VPNv4 destinations to 4 iBGP RR clients.

The routes come from one non-client iBGP peer (so they are reflected to
the clients: ORIGINATOR_ID and CLUSTER_LIST are added), in batches of 200
sharing an attribute set, as a full-table load looks. The four clients
have the same outbound policy, so they form one update group.

Two things are timed, each the median of ``--runs``:

* ``on_change``: the clients are up with an empty table, the routes are
  loaded into the RIB (not timed), then one :class:`RibChange` naming every
  destination is handed to :meth:`AdjRibOut.on_change`: diff, outbound
  attributes and encoding, once for the group;
* ``peer_up``: the table is loaded and the four clients come up one after
  the other (the first builds and encodes the group view, the others reuse
  it after checking split horizon).

With ``--sender-in-group`` the source is itself an RR client with the
clients' policy, so it is a fifth member of their update group (the
``bench/ingest.py --clients 4`` setup): every route must go to the four
others and not back to it (split horizon), and the timed ``on_change``
also checks that the sender gets nothing.

    .venv/bin/python bench/rib_out.py [--routes N] [--batch 200] [--runs 3] [--sender-in-group]
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Address, ip_address

from vpn_batches import Batch, make_batches

from vpe.bgp.wire.constants import VPNV4
from vpe.bgp.wire.context import CodecContext
from vpe.rib import PeerInfo, Rib, RibChange
from vpe.rib.adj_rib_out import AdjRibOut, OutPeer

SOURCE = PeerInfo(ip_address("127.0.0.9"), IPv4Address("192.0.2.9"), 65000, ibgp=True)
#: the source as an RR client: same outbound policy as CLIENTS, so a member of their group
SOURCE_CLIENT = PeerInfo(ip_address("127.0.0.9"), IPv4Address("192.0.2.9"), 65000, ibgp=True, rr_client=True)
CLIENTS = [
    PeerInfo(ip_address(f"127.0.0.{i}"), IPv4Address(f"192.0.2.{i}"), 65000, ibgp=True, rr_client=True)
    for i in range(2, 6)
]


def out_peers(sender_in_group: bool = False) -> list[OutPeer]:
    """The clients; with ``sender_in_group``, the sender first, then the clients."""
    ctx = CodecContext(asn4=True, ibgp=True)
    peers = [SOURCE_CLIENT, *CLIENTS] if sender_in_group else CLIENTS
    return [OutPeer(p.address, p, frozenset({VPNV4}), ctx) for p in peers]


def load(rib: Rib, batches: list[Batch], sender_in_group: bool = False) -> list[bytes]:
    source = SOURCE_CLIENT if sender_in_group else SOURCE
    keys: list[bytes] = []
    for attrs, nh, nlris in batches:
        keys.extend(rib.announce(source, VPNV4, attrs, nh, nlris))
    return keys


def run_on_change(batches: list[Batch], sender_in_group: bool = False) -> tuple[float, int, int]:
    rib = Rib()
    aro = AdjRibOut(rib, local_asn=65000, router_id=IPv4Address("192.0.2.1"))
    for p in out_peers(sender_in_group):
        aro.peer_up(p)
    change = RibChange(VPNV4, tuple(load(rib, batches, sender_in_group)))
    t0 = time.perf_counter()
    out = aro.on_change(change)
    dt = time.perf_counter() - t0
    msgs = out[CLIENTS[0].address]
    assert all(out[c.address][0] is msgs[0] for c in CLIENTS)
    if sender_in_group:
        assert len(aro.group_of(SOURCE_CLIENT.address)) == len(CLIENTS) + 1
        assert SOURCE_CLIENT.address not in out, "split horizon: nothing goes back to the sender"
        assert aro.sent(SOURCE_CLIENT.address, VPNV4) == 0
    assert aro.sent(CLIENTS[0].address, VPNV4) == len(change.keys)
    return dt, len(msgs), sum(map(len, msgs))


def run_peer_up(rib: Rib, sender_in_group: bool = False) -> float:
    aro = AdjRibOut(rib, local_asn=65000, router_id=IPv4Address("192.0.2.1"))
    t0 = time.perf_counter()
    for p in out_peers(sender_in_group):
        aro.peer_up(p)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--sender-in-group", action="store_true", help="the source is an RR client in the clients' update group"
    )
    args = ap.parse_args()
    sig: bool = args.sender_in_group
    batches = make_batches(args.routes, args.batch)
    times: list[float] = []
    n_msgs = n_bytes = 0
    for _ in range(args.runs):
        dt, n_msgs, n_bytes = run_on_change(batches, sig)
        times.append(dt)
    who = f"{len(CLIENTS)} RR clients + the sending client" if sig else f"{len(CLIENTS)} RR clients"
    print(
        f"on_change: {args.routes:,} VPNv4 destinations to {who} (one group): "
        f"median {statistics.median(times):.2f} s of {args.runs} "
        f"({', '.join(f'{t:.2f}' for t in times)}); {n_msgs:,} UPDATEs, {n_bytes / 1e6:.1f} MB per peer"
    )
    rib = Rib()
    load(rib, batches, sig)
    up = [run_peer_up(rib, sig) for _ in range(args.runs)]
    print(
        f"peer_up: {len(out_peers(sig))} peers, full table each: median {statistics.median(up):.2f} s "
        f"of {args.runs} ({', '.join(f'{t:.2f}' for t in up)})"
    )


if __name__ == "__main__":
    main()
