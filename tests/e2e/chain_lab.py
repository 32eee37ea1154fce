"""The service-chain lab of tests/e2e/test_r12_service_chains.py and bench/chain_rate.py.

``labs/chain.yaml`` plus what the chains need on every host (the VPNs they
name, the services, the chains ``web``, ``natc`` and ``udpc``) and service
instances: namespaces with IP forwarding and two ports attached with a
service role through the host's agent API (docs/service-chains.md).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
from e2e_lab import RunningLab, start_lab

from vpe.lab import netns

GW = "203.0.113.1"
SERVER = "198.51.100.10"
HOSTS = ("h1", "h2", "h3")
#: the VPNs every host needs for the chains (the chain names them); RTs as in chain.yaml
VPNS = {"red": "65000:301", "blue": "65000:302", "internet": "65000:310"}


def call(lab: RunningLab, host: str, method: str, path: str, body: Any = None) -> httpx.Response:
    sock = str(lab.lab.node_dir(host) / "vpe.sock")
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=10) as c:
        return c.request(method, f"http://vpe{path}", json=body)


def ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def add_instance(lab: RunningLab, host: str, name: str, chain: str, service: str, n: int,
                 client_net: str, pool: str | None = None, snat: str | None = None) -> None:
    """Namespace ``name`` on ``host``: in0 (inside, 203.0.113.<n>1) and out0 (outside,
    203.0.113.<n>2), IP forwarding on, back to ``client_net`` through in0 and
    everything else through out0; ``snat``: nftables SNAT on out0 to that range."""
    ns = lab.ns(name)
    netns.netns_add(ns)
    lab.extra_namespaces.append(ns)
    netns.sysctl_set(ns, {"net/ipv4/ip_forward": 1, "net/ipv4/conf/all/rp_filter": 0,
                          "net/ipv4/conf/default/rp_filter": 0, "net/ipv4/conf/all/send_redirects": 0})
    host_ns = lab.ns(host)
    for i, (side, ifn) in enumerate((("inside", "in0"), ("outside", "out0"))):
        port = f"s-{name}-{ifn[:-1]}"
        ip = f"203.0.113.{n * 10 + i + 1}"
        mac = f"02:5c:00:00:{n:02x}:{i + 1:02x}"
        netns.veth_add(host_ns, port, ns, ifn)
        netns.sysctl_set(host_ns, {netns.iface_key("ipv4", port, "rp_filter"): 0})
        netns.sysctl_set(ns, {netns.iface_key("ipv4", ifn, "rp_filter"): 0})
        netns.link_set(host_ns, port)
        netns.link_set(ns, ifn, mac=mac)
        lab.run(name, sys.executable, "-m", "vpe.dataplane.userspace.offload", ifn, check=True)
        netns.addr_add(ns, ifn, f"{ip}/32")
        role = {"chain": chain, "service": service, "side": side}
        if side == "outside" and pool is not None:
            role["pool"] = pool
        ok(call(lab, host, "POST", "/v1/ports", {
            "name": f"{name}-{side}", "ifname": port, "mac": mac, "ips": [f"{ip}/32"],
            "gateways": [GW], "service": role}))
    lab.run(name, "ip", "route", "add", client_net, "via", GW, "dev", "in0", "onlink", check=True)
    lab.run(name, "ip", "route", "add", "default", "via", GW, "dev", "out0", "onlink", check=True)
    if snat is not None:
        lab.run(name, "nft", "add table ip nat", check=True)
        lab.run(name, "nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }", check=True)
        lab.run(name, "nft", f"add rule ip nat post oifname out0 snat to {snat}", check=True)


def if_counts(lab: RunningLab, node: str) -> dict[str, int]:
    out = {}
    for ifn in ("in0", "out0"):
        for d in ("rx", "tx"):
            r = lab.run(node, "cat", f"/sys/class/net/{ifn}/statistics/{d}_packets", check=True)
            out[f"{ifn}.{d}"] = int(r.stdout)
    return out


def wait_for(pred: Any, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"not in {timeout} s: {what}")




def start_chain_lab(driver: str | None = None) -> RunningLab:
    """The chain lab, with its VPNs, services and chains on every host (no instances yet)."""
    lab = start_lab("chain", driver=driver)
    try:
        for h in HOSTS:
            have = {v["name"] for v in ok(call(lab, h, "GET", "/v1/vpns"))}
            for name, rt in VPNS.items():
                if name not in have:  # a chain names its VPNs: every host with an instance knows them
                    ok(call(lab, h, "POST", "/v1/vpns", {"name": name, "route_targets": [rt]}))
            for s in ({"name": "fw"}, {"name": "ids"}, {"name": "lb"}, {"name": "scrub"},
                      {"name": "nat", "nat_pool": "203.0.113.128/26"}):
                ok(call(lab, h, "PUT", f"/v1/services/{s['name']}", s))
            ok(call(lab, h, "PUT", "/v1/chains/web", {
                "vpn": "red", "destination": "internet", "services": ["fw", "ids", "lb"],
                "prefixes": ["198.51.100.0/24"], "route_target_base": "65000:9100"}))
            ok(call(lab, h, "PUT", "/v1/chains/natc", {
                "vpn": "blue", "destination": "internet", "services": ["nat"],
                "prefixes": ["198.51.100.0/24"]}))
            ok(call(lab, h, "PUT", "/v1/chains/udpc", {
                "vpn": "blue", "destination": "internet", "services": ["scrub"],
                "classifier": {"destination": "198.51.100.0/24", "protocol": "udp", "ports": "7000-7100"},
                "route_target_base": "65000:9200"}))
    except BaseException:
        lab.teardown()
        raise
    return lab


def three_service_chain(lab: RunningLab) -> None:
    """Chain ``web`` (red -> fw -> ids -> lb -> internet) with one instance of each
    service on each host: fw on h2, ids on h3, lb on h1."""
    add_instance(lab, "h2", "fw1", "web", "fw", 1, "192.0.2.0/24")
    add_instance(lab, "h3", "ids1", "web", "ids", 2, "192.0.2.0/24")
    add_instance(lab, "h1", "lb1", "web", "lb", 3, "192.0.2.0/24")
