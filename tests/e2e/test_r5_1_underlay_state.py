"""R5.1: the transport keeps no per-VM/per-VPN state; underlay and overlay
address spaces are separate and overlay addresses are not routable in the
underlay."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from e2e_lab import (
    E2E,
    GATEWAY_MAC,
    RunningLab,
    in_underlay,
    mac_bytes,
    parse_frames,
    tunnel_packets,
)

pytestmark = [*E2E, pytest.mark.timeout(60)]

TENANT = [ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
LINK_LOCAL = ip_network("fe80::/10")
UNDERLAY6 = ip_network("2001:db8:ffff::/48")


def _is_tenant(net: Any) -> bool:
    if net.version == 6 and net.subnet_of(UNDERLAY6):
        return False
    return any(net.version == t.version and net.overlaps(t) for t in TENANT)


def _outer(f: bytes, ethertype: int) -> tuple[int, str, str] | None:
    if ethertype == 0x0800:
        return f[23], str(ip_address(f[26:30])), str(ip_address(f[30:34]))
    if ethertype == 0x86DD:
        return f[20], str(ip_address(f[22:38])), str(ip_address(f[38:54]))
    return None


def test_r5_1_underlay_sees_only_underlay_addresses(main_lab: RunningLab) -> None:
    """R5.1 (and R6.1): while VMs of two tenants exchange IPv4 and IPv6 traffic
    across all three hosts (unicast and broadcast), every frame on the
    underlay ports of h1 and h2 has underlay IP addresses (198.18.0.0/15,
    2001:db8:ffff::/48; link-local only for the underlay's own ND), is BGP,
    ARP/ND of underlay addresses, or MPLS-in-UDP/GRE; no tenant address is an
    outer address, no VM or gateway MAC appears in any Ethernet header, no
    VLAN tag is used."""
    lab = main_lab
    caps = {h: lab.capture("underlay", f"p-{h}", timeout=20) for h in ("h1", "h2")}
    try:
        for src, dst in (("red1", "red2"), ("green1", "green2"), ("red1", "red3"), ("red2", "redx")):
            assert lab.reaches(src, lab.ip4(dst), count=1)
            assert lab.reaches(src, lab.ip6(dst), count=1)
        lab.send_udp("red1", "255.255.255.255", 4201, "r5", count=1)
        frames = {h: parse_frames(c.finish()) for h, c in caps.items()}
    finally:
        for c in caps.values():
            c.kill()
    vm_macs = {mac_bytes(lab.mac(vm.name)) for vm in lab.topology.vms} | {mac_bytes(GATEWAY_MAC)}
    n_tunnel = 0
    for h, fs in frames.items():
        assert fs, f"nothing captured on p-{h}"
        for f in fs:
            assert f.data[0:6] not in vm_macs and f.data[6:12] not in vm_macs, "a VM/gateway MAC on the underlay"
            assert f.ethertype in (0x0800, 0x86DD, 0x0806), hex(f.ethertype)
            if f.ethertype == 0x0806:
                assert in_underlay(str(ip_address(f.data[28:32]))) and in_underlay(str(ip_address(f.data[38:42])))
                continue
            outer = _outer(f.data, f.ethertype)
            assert outer is not None
            proto, src, dst = outer
            for a in (src, dst):
                ok = in_underlay(a) or (ip_address(a) in LINK_LOCAL or ip_address(a).is_multicast) and proto == 58
                assert ok, f"outer address {a} (protocol {proto}) is not an underlay address"
                assert not any(ip_address(a) in n for n in TENANT if not in_underlay(a)), a
        tun = tunnel_packets(fs)
        n_tunnel += len(tun)
        for f in fs:
            outer = _outer(f.data, f.ethertype)
            if outer is None or outer[0] == 58:
                continue
            proto = outer[0]
            is_bgp = proto == 6 and 179 in (int.from_bytes(f.data[34:36], "big"), int.from_bytes(f.data[36:38], "big"))
            assert is_bgp or any(t.frame is f for t in tun), f"unexpected underlay packet {outer}"
    assert n_tunnel >= 16


def test_r5_1_no_overlay_state_or_routes_in_the_underlay(main_lab: RunningLab) -> None:
    """R5.1: the transport holds no per-VM state and cannot route overlay
    addresses: the underlay bridge learned only the hosts' underlay MACs (no
    VM MAC), the bridge namespace has no IP address or route at all, and the
    hosts' kernels have no route for any tenant range (``ip route get`` of a
    VM address fails in every host namespace)."""
    lab = main_lab
    fdb = json.loads(lab.run("underlay", "bridge", "-j", "fdb", "show", "br", "br0", check=True).stdout)
    vm_macs = {lab.mac(vm.name) for vm in lab.topology.vms} | {"02:00:5e:00:00:01"}
    assert not vm_macs & {e["mac"] for e in fdb}
    addrs = json.loads(lab.run("underlay", "ip", "-j", "addr", "show", check=True).stdout)
    assert all(ip_address(a["local"]).is_loopback or ip_address(a["local"]).is_link_local
               for link in addrs for a in link.get("addr_info", []))
    for host in ("h1", "h2", "h3"):
        for fam in ("-4", "-6"):
            routes = json.loads(lab.run(host, "ip", "-j", fam, "route", "show", "table", "all", check=True).stdout)
            for r in routes:
                try:
                    net = ip_network(r.get("dst", ""), strict=False)
                except ValueError:
                    continue  # "default" and friends: there is none toward tenants either
                assert not _is_tenant(net), (host, r)
        for vm in ("red2", "green5", "svc"):
            r = lab.run(host, "ip", "route", "get", lab.ip4(vm))
            assert r.returncode != 0, (host, vm, r.stdout)
