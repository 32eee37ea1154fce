"""R4.1-R4.4: tenants, VPNs per tenant, extranet and multi-VPN interfaces, with
real packets on shared hosts (labs/main.yaml).

* red and green are two tenants with the same 192.0.2.0/24 and 2001:db8:1::/64
  on the same hosts (red1/green1 on h1, red2/green2 on h2);
* acme has three VPNs: web <-> db allowed by their route targets, dev apart;
* ``shared`` (svc) is a service both red and green import, and that imports
  their "to services" RTs, while red and green never import each other;
* multi sits in VRF red_web: one interface, VPNs red and web.
"""

from __future__ import annotations

import json
import uuid

import pytest
from e2e_lab import E2E, RunningLab

pytestmark = [*E2E, pytest.mark.timeout(90)]


def _who_gets(lab: RunningLab, src: str, dst_ip: str, candidates: list[str], port: int, family: int = 4) -> set[str]:
    """Send 3 UDP datagrams from ``src`` to ``dst_ip``; the candidates that got them."""
    token = uuid.uuid4().hex[:10]
    ls = {vm: lab.listen(vm, port, family=family, count=10, timeout=10) for vm in candidates}
    try:
        lab.send_udp(src, dst_ip, port, token, count=3)
        got = {vm: json.loads(b.finish(settle=0.4 if i == 0 else 0) or "[]") for i, (vm, b) in enumerate(ls.items())}
    finally:
        for b in ls.values():
            b.kill()
    return {vm for vm, pkts in got.items() if any(p == token for p, _ in pkts)}


def _table(lab: RunningLab, host: str, vrf: str) -> dict[str, list[dict]]:
    return lab.api(host, f"/v1/vpns/{vrf}")["table"]


def test_r4_1_overlapping_tenants_isolated(main_lab: RunningLab) -> None:
    """R4.1: red and green use the same addresses on the same hosts. Traffic from
    red1 to 192.0.2.12 / 2001:db8:1::12 reaches red2 and never green2, and
    from green1 reaches green2 and never red2 (data plane). Each tenant's VRF
    holds only its own tenant's routes and the shared service's (control
    plane: RDs and RTs keep the identical prefixes apart), and an address
    only red uses (red4, red3) is unreachable from green."""
    lab = main_lab
    assert _who_gets(lab, "red1", "192.0.2.12", ["red2", "green2"], 4101) == {"red2"}
    assert _who_gets(lab, "green1", "192.0.2.12", ["red2", "green2"], 4102) == {"green2"}
    assert _who_gets(lab, "red1", "2001:db8:1::12", ["red2", "green2"], 4103, 6) == {"red2"}
    assert _who_gets(lab, "green1", "2001:db8:1::12", ["red2", "green2"], 4104, 6) == {"green2"}
    for ip in ("192.0.2.14", "192.0.2.13", "198.51.100.140", "2001:db8:1::13"):
        assert not lab.reaches("green1", ip, count=1), ip
    for ip in ("192.0.2.15", "2001:db8:1::15"):
        assert not lab.reaches("red1", ip, count=1), ip

    for host in ("h1", "h2"):
        for tenant, own_rt, other_rt in (("red", "target:65000:101", "target:65000:102"),
                                         ("green", "target:65000:102", "target:65000:101")):
            for prefix, entries in _table(lab, host, tenant).items():
                for e in entries:
                    rts = set((e.get("attributes") or {}).get("extended_communities", []))
                    assert other_rt not in rts, (host, tenant, prefix)
                    if e["source"] == "imported":
                        assert own_rt in rts or "target:65000:900" in rts, (host, tenant, prefix)
    # the same prefix, two VPN routes: different RDs
    rds = {r["rd"] for r in lab.api("h1", "/v1/bgp/routes?family=vpnv4")["routes"] if r.get("prefix") == "192.0.2.12/32"}
    assert len(rds) == 2


def test_r4_2_vpns_of_one_tenant_follow_policy(main_lab: RunningLab) -> None:
    """R4.2: tenant acme has VPNs web, db and dev. The route-target policy lets web
    and db reach each other and keeps dev apart from both: web1 <-> db1 works
    both ways; dev1 -> db1/web1 and db1/web1 -> dev1 get no route (ICMP net
    unreachable from their own vPE), and db's VRF never holds dev's prefix."""
    lab = main_lab
    assert lab.reaches("web1", lab.ip4("db1"))
    assert lab.reaches("db1", lab.ip4("web1"))
    for src, dst in (("dev1", "db1"), ("dev1", "web1"), ("db1", "dev1"), ("web1", "dev1")):
        r = lab.ping(src, lab.ip4(dst))
        assert r.returncode != 0, (src, dst)
        assert "Unreachable" in r.stdout, r.stdout
    assert "203.0.113.139/32" not in _table(lab, "h2", "db")
    assert "203.0.113.75/32" not in _table(lab, "h3", "dev")


def test_r4_3_extranet_shared_service(main_lab: RunningLab) -> None:
    """R4.3: svc (VPN shared, h3) is reached from red4 (tenant red, h1) and from
    green5 (tenant green, on svc's own host h3), IPv4 and IPv6, with their own
    distinct addresses; the service sees each tenant's real source address;
    yet red4 and green5 cannot reach each other."""
    lab = main_lab
    for vm in ("red4", "green5"):
        assert lab.reaches(vm, lab.ip4("svc")), vm
        assert lab.reaches(vm, lab.ip6("svc")), vm
    token = uuid.uuid4().hex[:8]
    b = lab.listen("svc", 4105, count=6, timeout=10)
    try:
        lab.send_udp("red4", lab.ip4("svc"), 4105, token, count=2)
        lab.send_udp("green5", lab.ip4("svc"), 4105, token, count=2)
        got = json.loads(b.finish() or "[]")
    finally:
        b.kill()
    assert sorted(src for p, src in got if p == token) == ["192.0.2.14", "192.0.2.14", "192.0.2.15", "192.0.2.15"]
    assert not lab.reaches("red4", lab.ip4("green5"), count=1)
    assert not lab.reaches("green5", lab.ip4("red4"), count=1)
    assert not lab.reaches("red4", lab.ip6("green5"), count=1)


def test_r4_4_one_interface_in_two_vpns(main_lab: RunningLab) -> None:
    """R4.4: multi has one interface (eth0), attached to one VRF (red_web) that is
    in VPNs red and web: it reaches red1 (red, h1) and web1 (web, h1) directly,
    with exactly two routed hops (its vPE and the remote one: reply TTL 62,
    no gateway VM between), and both reach it back. The two VPNs stay apart:
    red1 and web1 still cannot reach each other."""
    lab = main_lab
    links = json.loads(lab.run("multi", "ip", "-j", "link", "show", check=True).stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
    ports = {p["name"]: p for p in lab.api("h2", "/v1/ports")}
    assert ports["multi"]["vrf"] == "red_web"
    for dst in ("red1", "web1"):
        r = lab.ping("multi", lab.ip4(dst), count=2)
        assert r.returncode == 0 and "ttl=62" in r.stdout, r.stdout
        assert lab.reaches(dst, lab.ip4("multi"))
    assert not lab.reaches("red1", lab.ip4("web1"), count=1)
    assert not lab.reaches("web1", lab.ip4("red1"), count=1)
