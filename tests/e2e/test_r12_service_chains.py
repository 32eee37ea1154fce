"""R12.1, R12.4: service chains steered by routes, with real packets through namespaces.

The lab (``labs/chain.yaml``): red1 and blue1 (client VPNs red and blue) on
h1, the server web1 (VPN internet) on h3; red and blue exchange no routes
with internet. Service instances are namespaces with IP forwarding and two
ports (inside, outside), attached through each host's agent API with a
service role; the chains are put through ``PUT /v1/chains``. Nothing is
configured on h1, where the traffic starts, but the chain (per chain, not
per flow). Built once per dataplane driver.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from chain_lab import (
    SERVER,
    add_instance,
    call,
    if_counts,
    ok,
    start_chain_lab,
    three_service_chain,
    wait_for,
)
from e2e_lab import DRIVERS, E2E, RunningLab

pytestmark = [*E2E, pytest.mark.timeout(240)]

@pytest.fixture(scope="module", params=DRIVERS)
def chain_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    lab = start_chain_lab(request.param)
    try:
        yield lab
    finally:
        lab.teardown()


def received(r: Any) -> int:
    for line in r.stdout.splitlines():
        if " received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


def test_r12_1_three_service_chain_across_three_hosts(chain_lab: RunningLab) -> None:
    """R12.1: red's traffic to 198.51.100.0/24 goes through fw (h2), ids (h3) and lb (h1)
    before reaching VPN internet, and comes back the same way: each instance's
    inside and outside interfaces count every request and every reply, for
    pings from red1 to web1 and from web1 to red1. Red and internet share no
    route target: without the chain there is no path at all."""
    lab = chain_lab
    assert not lab.reaches("red1", SERVER, count=1)  # no chain instance yet: no route
    three_service_chain(lab)
    wait_for(lambda: lab.reaches("red1", SERVER, count=1), "red1 reaches web1 through the chain")
    # h1 holds no flow state: red's one route is the chain's attraction
    fib = {(r["vrf"], r["prefix"]) for r in lab.api("h1", "/v1/fib")["routes"]}
    assert ("red", "198.51.100.0/24") in fib and ("red", f"{SERVER}/32") not in fib
    names = ("fw1", "ids1", "lb1")
    before = {n: if_counts(lab, n) for n in names}
    assert received(lab.ping("red1", SERVER, count=5)) == 5
    mid = {n: if_counts(lab, n) for n in names}
    assert received(lab.ping("web1", lab.ip4("red1"), count=5)) == 5
    after = {n: if_counts(lab, n) for n in names}
    for n in names:
        fwd = {k: mid[n][k] - before[n][k] for k in mid[n]}
        rev = {k: after[n][k] - mid[n][k] for k in mid[n]}
        # red1 -> web1: requests in at the inside, out at the outside; replies the other way
        assert fwd["in0.rx"] >= 5 and fwd["out0.tx"] >= 5 and fwd["out0.rx"] >= 5 and fwd["in0.tx"] >= 5, (n, fwd)
        # web1 -> red1: requests in at the outside
        assert rev["out0.rx"] >= 5 and rev["in0.tx"] >= 5 and rev["in0.rx"] >= 5 and rev["out0.tx"] >= 5, (n, rev)


TCP_ECHO = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
s.settimeout(float(sys.argv[2]))
print("READY", flush=True)
c, peer = s.accept()
c.settimeout(10)
data = b""
while len(data) < 200000:
    d = c.recv(65536)
    if not d:
        break
    data += d
c.sendall(data[::-1])
c.close()
print(peer[0], len(data), flush=True)
"""

TCP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
data = bytes(range(256)) * 400
c.sendall(data)
c.shutdown(socket.SHUT_WR)
back = b""
while True:
    d = c.recv(65536)
    if not d:
        break
    back += d
print(len(back), back == data[::-1], flush=True)
"""


def tcp_session(lab: RunningLab, port: int) -> str:
    """A TCP session blue1 -> web1, data both ways; the address web1 saw."""
    srv = lab.start("web1", TCP_ECHO, str(port), "20")
    try:
        out = lab.py("blue1", TCP_CLIENT, SERVER, str(port), timeout=30).stdout.split()
        assert out == ["102400", "True"], out
        peer, n = srv.finish(settle=0, timeout=20).split()
    finally:
        srv.kill()
    assert n == "102400"
    return peer


def test_r12_4_nat_instances_own_pool_slices_and_steer_the_return(chain_lab: RunningLab) -> None:
    """R12.4: blue's traffic to VPN internet goes through a NAT instance (nftables SNAT
    into the instance's slice of 203.0.113.128/26); vpe advertises each slice from
    its instance into internet, so the server's answers come back through the
    instance that translated. A TCP session works both ways and the server sees
    a pool address of that instance's slice; with that instance gone, a new
    session takes the other one and shows the other slice."""
    if shutil.which("nft") is None:
        pytest.skip("the NAT instances run nftables: install the nftables package (make deps)")
    lab = chain_lab
    add_instance(lab, "h2", "nat1", "natc", "nat", 4, "192.0.2.0/24", pool="203.0.113.128/27",
                 snat="203.0.113.129-203.0.113.158")
    add_instance(lab, "h3", "nat2", "natc", "nat", 5, "192.0.2.0/24", pool="203.0.113.160/27",
                 snat="203.0.113.161-203.0.113.190")
    slices = {"nat1": ip_network("203.0.113.128/27"), "nat2": ip_network("203.0.113.160/27")}

    def pools_in_internet() -> bool:
        table = lab.api("h3", "/v1/vpns/internet")["table"]
        return all(str(s) in table for s in slices.values())

    wait_for(pools_in_internet, "both pool slices advertised into VPN internet")
    wait_for(lambda: lab.reaches("blue1", SERVER, count=1), "blue1 reaches web1 through a NAT instance")
    before = {n: if_counts(lab, n) for n in slices}
    peer = ip_address(tcp_session(lab, 5301))
    after = {n: if_counts(lab, n) for n in slices}
    used = next(n for n, s in slices.items() if peer in s)
    other = next(n for n in slices if n != used)
    d = {k: after[used][k] - before[used][k] for k in after[used]}
    assert d["in0.rx"] > 10 and d["out0.tx"] > 10 and d["out0.rx"] > 10 and d["in0.tx"] > 10, d
    assert ip_address(lab.ip4("blue1")) != peer  # the server never saw the client's own address
    # the instance that translated goes: the other one, with its own slice, takes over
    host = "h2" if used == "nat1" else "h3"
    ok(call(lab, host, "DELETE", f"/v1/ports/{used}-inside"))
    ok(call(lab, host, "DELETE", f"/v1/ports/{used}-outside"))
    wait_for(lambda: lab.reaches("blue1", SERVER, count=1), f"blue1 reaches web1 through {other}")
    peer2 = ip_address(tcp_session(lab, 5302))
    assert peer2 in slices[other], (peer2, other)


def test_r12_1_flow_classifier_steers_only_matching_traffic(chain_lab: RunningLab) -> None:
    """R12.1 with a flow classifier (bagpipe-bgp's redirect-rts): blue's UDP to
    198.51.100.0/24 ports 7000-7100 is looked up in the chain's redirect VRF on h1
    and goes through scrub1 (h2), untranslated; blue's other UDP to the same server
    keeps blue's own route (the NAT chain) and never touches scrub1."""
    lab = chain_lab
    add_instance(lab, "h2", "scrub1", "udpc", "scrub", 6, "192.0.2.0/24")

    def attracted() -> bool:
        fib = {(r["vrf"], r["prefix"]) for r in lab.api("h1", "/v1/fib")["routes"]}
        return ("udpc.redirect", "198.51.100.0/24") in fib

    wait_for(attracted, "scrub1's attraction in h1's redirect VRF")
    blue1 = lab.ip4("blue1")
    wait_for(lambda: f"{blue1}/32" in lab.api("h3", "/v1/vpns/internet")["table"],
             "blue1 re-advertised into internet by scrub1")
    before = if_counts(lab, "scrub1")
    lst = lab.listen("web1", 7001, count=3, timeout=8)
    lab.send_udp("blue1", SERVER, 7001, "steered", count=3)
    got = json.loads(lst.finish())
    mid = if_counts(lab, "scrub1")
    assert [src for _, src in got] == [blue1] * 3, got  # through scrub1: not translated
    assert mid["in0.rx"] - before["in0.rx"] >= 3 and mid["out0.tx"] - before["out0.tx"] >= 3
    if shutil.which("nft") is not None:  # the NAT chain of R12.4 carries the rest
        lst = lab.listen("web1", 8001, count=3, timeout=8)
        lab.send_udp("blue1", SERVER, 8001, "plain", count=3)
        got = json.loads(lst.finish())
        after = if_counts(lab, "scrub1")
        assert got and all(ip_address(src) in ip_network("203.0.113.128/26") for _, src in got), got
        assert after["in0.rx"] - mid["in0.rx"] < 3
    assert lab.counters("h1")["vrfs"]["blue"]["classified"] >= 3
