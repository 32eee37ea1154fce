"""Configuration files the lab generates: host agents, the route reflector, gobgpd.

Each is plain TOML text, so ``up`` can compare it with what is on disk and
restart a process only when its configuration really changed. What a host
agent gets: BGP to the route reflector (or a full mesh), the data plane
(the forwarder's FIB socket when the forwarder runs), and one VRF per VPN
set of the VMs on that host.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .layout import AGENT_PORT, SESSION_PREFIX, SESSION_PREFIX6, Lab, LabError
from .topology import HostConfig, PeerConfig, VmConfig


def forwarder_available() -> bool:
    """Whether hosts run the userspace forwarder.

    ``VPE_LAB_FORWARDER``: ``auto`` (default) runs it once its module
    exists, ``off`` never (labs that test wiring or BGP only), ``on``
    always (an error when the module is missing).
    """
    mode = os.environ.get("VPE_LAB_FORWARDER", "auto").lower()
    if mode not in ("auto", "on", "off"):
        raise LabError(f"VPE_LAB_FORWARDER={mode!r}: expected auto, on or off")
    if mode == "off":
        return False
    try:
        found = importlib.util.find_spec("vpe.dataplane.process") is not None
    except (ImportError, ValueError):
        found = False
    if mode == "on" and not found:
        raise LabError("VPE_LAB_FORWARDER=on but the module vpe.dataplane.process does not exist")
    return found


def forwarder_socket(lab: Lab, host: HostConfig) -> Path:
    """Where the host's forwarder serves its FIB channel (the agent connects there)."""
    return lab.node_dir(host.name) / "forwarder.sock"


def _toml_str(v: str) -> str:
    return json.dumps(v)  # a JSON string is a valid TOML basic string


def _families(lab: Lab) -> str:
    return "[" + ", ".join(_toml_str(f) for f in lab.topology.families) + "]"


def api_token(lab: Lab) -> str:
    """The lab's API bearer token (``api_tcp_port``): made once, kept in ``<state dir>/api.token`` (0600)."""
    path = lab.state_dir / "api.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def agent_toml(lab: Lab, host: HostConfig) -> str:
    """The ``vpe agent`` configuration of one host (src/vpe/agent/config.py)."""
    t = lab.topology
    d = lab.node_dir(host.name)
    lines = [
        f"# vpe lab {lab.prefix}: host {host.name} (generated; edits are overwritten by `vpe lab up`)",
        f"state_dir = {_toml_str(str(d / 'agent-state'))}",
        "",
        "[bgp]",
        f"local_as = {t.asn_of(host)}",
        f"router_id = {_toml_str(str(host.address))}",
        f"listen = [{_toml_str(str(host.address))}]",
        f"port = {AGENT_PORT}",
        "",
        "[api]",
        f"socket = {_toml_str(str(d / 'vpe.sock'))}",
    ]
    if t.api_tcp_port is not None:
        lines += [f"tcp = {_toml_str(f'{host.address}:{t.api_tcp_port}')}",
                  f"token = {_toml_str(api_token(lab))}"]
    asn_of = {h.name: t.asn_of(h) for h in t.hosts}
    peers: list[tuple[str, str]]
    remote: dict[str, int] = {}
    per_peer: dict[str, PeerConfig] = {}
    if host.peers is not None:
        by_name = {h.name: h for h in t.hosts}
        specs = [p if isinstance(p, PeerConfig) else PeerConfig(host=p) for p in host.peers]
        peers = [(str(by_name[p.host].address), f"host {p.host}") for p in specs]
        remote = {str(by_name[p.host].address): asn_of[p.host] for p in specs}
        per_peer = {str(by_name[p.host].address): p for p in specs}
    elif t.route_reflector is not None:
        peers = [(str(t.route_reflector.address), "route reflector")]
    else:  # full mesh among the hosts
        peers = [(str(h.address), f"host {h.name}") for h in t.hosts if h.name != host.name]
    lines += [
        "",
        "[dataplane]",
        f"driver = {_toml_str(t.driver_of(host) if forwarder_available() else 'none')}",
        f"underlay_address = {_toml_str(str(host.address))}",
        f"fib_socket = {_toml_str(str(forwarder_socket(lab, host)))}",
        # VRF neighbors through ports: the agent's side of them, inside the host's namespace
        f"session_prefix = {_toml_str(SESSION_PREFIX)}",
        f"session_prefix6 = {_toml_str(SESSION_PREFIX6)}",
    ]
    if host.encapsulations:
        lines.append("encapsulations = [" + ", ".join(_toml_str(e) for e in host.encapsulations) + "]")
    for addr, desc in peers:
        spec = per_peer.get(addr)
        fams = _families(lab) if spec is None or spec.families is None else _toml_value(spec.families)
        lines += [
            "",
            "[[neighbors]]",
            f"address = {_toml_str(addr)}",
            f"remote_as = {remote.get(addr, t.asn_of(host))}",
            f"port = {AGENT_PORT}",
            f"local_address = {_toml_str(str(host.address))}",
            f"families = {fams}",
            "connect_retry = 2.0",
            f"description = {_toml_str(desc)}",
        ]
        for key in ("import_policy", "export_policy"):
            value = getattr(spec, key, None) or getattr(host, key)
            if value is not None:
                lines.append(f"{key} = {_toml_str(value)}")
        if spec is not None and spec.ebgp_multihop is not None:
            lines.append(f"ebgp_multihop = {spec.ebgp_multihop}")
        if spec is not None and spec.route_reflector_client:
            lines.append("route_reflector_client = true")
    for pol in host.policies:
        lines += ["", "[[policies]]", *(f"{k} = {_toml_value(v)}" for k, v in pol.items())]
    for vrf in host_vrfs(lab, host):
        lines += [
            "",
            "[[vrfs]]",
            f"name = {_toml_str(vrf['name'])}",
            f"rd = {_toml_str(vrf['rd'])}",
            "import_rts = [" + ", ".join(_toml_str(x) for x in vrf["import"]) + "]",
            "export_rts = [" + ", ".join(_toml_str(x) for x in vrf["export"]) + "]",
        ]
        if vrf["label_mode"]:
            lines.append(f"label_mode = {_toml_str(vrf['label_mode'])}")
        for prefix, via in vrf["routes"]:
            lines += [
                "[[vrfs.routes]]",
                f"prefix = {_toml_str(prefix)}",
                f"next_hop = {_toml_str(via)}",
                'kind = "static"',
            ]
        for prefix, summary_only in vrf.get("aggregates", ()):
            lines += [
                "[[vrfs.aggregates]]",
                f"prefix = {_toml_str(prefix)}",
                f"summary_only = {'true' if summary_only else 'false'}",
            ]
        for vm in t.vms_on(host.name):
            if vm.bgp is None or vrf_name(vm) != vrf["name"]:
                continue
            for iface, gw, fam in ((vm.ipv4, vm.gateway_v4(), "ipv4-unicast"),
                                   (vm.ipv6, vm.gateway_v6(), "ipv6-unicast")):
                if iface is not None:
                    lines += _port_neighbor(str(iface.ip), vm.bgp.asn, str(gw), fam, f"vm {vm.name}",
                                            vm.bgp, host)
        for ln, mine, other in t.links_on(host.name):
            if ln.vpn == vrf["name"]:
                lines += _port_neighbor(str(other.address.ip), t.asn_of(t.host(other.host)),
                                        str(mine.address.ip), "ipv4-unicast",
                                        f"link {ln.name} to {other.host}", ln, host)
    return "\n".join(lines) + "\n"


def _port_neighbor(address: str, asn: int, local: str, family: str, description: str,
                   spec: Any, host: HostConfig) -> list[str]:
    """A ``[[vrfs.neighbors]]`` table reached through a port (a VM speaking BGP, a link's
    far end); its policies are ``spec``'s, else the host's."""
    lines = [
        "[[vrfs.neighbors]]",
        f"address = {_toml_str(address)}",
        f"remote_as = {asn}",
        f"local_address = {_toml_str(local)}",
        'via = "port"',
        f"families = [{_toml_str(family)}]",
        "connect_retry = 2.0",
        f"description = {_toml_str(description)}",
    ]
    for key in ("import_policy", "export_policy"):
        value = getattr(spec, key) or getattr(host, key)
        if value is not None:
            lines.append(f"{key} = {_toml_str(value)}")
    return lines


def _toml_value(v: Any) -> str:
    """A TOML value from plain data (strings, numbers, booleans, lists, tables inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def vrf_name(vm: VmConfig) -> str:
    """The VRF a VM's port belongs to: its VPN, or ``a_b`` for a VM in VPNs a and b."""
    return "_".join(vm.vpns)


def host_vrfs(lab: Lab, host: HostConfig) -> list[dict[str, Any]]:
    """One VRF per distinct VPN set of the VMs on ``host``.

    A VM in several VPNs sits in one VRF that imports and exports the union
    of their route targets. The RD is the VPN's when it has one (and the VRF
    serves one VPN), else ``auto``: the agent picks a per-host RD. The label
    mode is the VPNs' when they agree. A VPN's static route is originated by
    the VRF that holds the VM it points at (``via``), so only on that host.
    """
    t = lab.topology
    out: dict[str, dict[str, Any]] = {}
    vms = t.vms_on(host.name)
    for vm in vms:
        name = vrf_name(vm)
        if name in out:
            continue
        vpns = [t.vpn(v) for v in vm.vpns]
        imp = list(dict.fromkeys(rt for v in vpns for rt in v.import_))
        exp = list(dict.fromkeys(rt for v in vpns for rt in v.export))
        rd = vpns[0].rd if len(vpns) == 1 and vpns[0].rd else "auto"
        modes = {v.label_mode for v in vpns}
        mode = modes.pop() if len(modes) == 1 else None
        in_vrf = {str(a.ip) for m in vms if vrf_name(m) == name for a in (m.ipv4, m.ipv6) if a is not None}
        routes = [(str(r.prefix), str(r.via)) for v in vpns for r in v.routes if str(r.via) in in_vrf]
        aggs = [(str(a.prefix), a.summary_only) for v in vpns for a in v.aggregates]
        out[name] = {"name": name, "rd": rd, "import": imp, "export": exp, "vpns": list(vm.vpns),
                     "label_mode": mode, "routes": routes, "aggregates": aggs}
    for ln, _mine, _other in t.links_on(host.name):  # a link's VRF: its VPN's
        if ln.vpn not in out:
            v = t.vpn(ln.vpn)
            out[ln.vpn] = {"name": ln.vpn, "rd": v.rd or "auto", "import": list(v.import_),
                           "export": list(v.export), "vpns": [ln.vpn], "label_mode": v.label_mode,
                           "routes": [], "aggregates": [(str(a.prefix), a.summary_only) for a in v.aggregates]}
    return list(out.values())


def rr_agent_toml(lab: Lab) -> str:
    """A ``vpe agent`` acting as route reflector: every host a passive RR client."""
    t = lab.topology
    rr = t.route_reflector
    assert rr is not None
    d = lab.node_dir("rr")
    lines = [
        f"# vpe lab {lab.prefix}: route reflector (generated)",
        f"state_dir = {_toml_str(str(d / 'agent-state'))}",
        "",
        "[bgp]",
        f"local_as = {t.asn}",
        f"router_id = {_toml_str(str(rr.address))}",
        f"cluster_id = {_toml_str(str(rr.address))}",
        f"listen = [{_toml_str(str(rr.address))}]",
        f"port = {AGENT_PORT}",
        "",
        "[api]",
        f"socket = {_toml_str(str(d / 'vpe.sock'))}",
    ]
    for h in t.hosts:
        lines += [
            "",
            "[[neighbors]]",
            f"address = {_toml_str(str(h.address))}",
            f"remote_as = {t.asn}",
            f"local_address = {_toml_str(str(rr.address))}",
            "passive = true",
            "route_reflector_client = true",
            f"families = {_families(lab)}",
            f"description = {_toml_str('host ' + h.name)}",
        ]
    return "\n".join(lines) + "\n"


_GOBGP_FAMILIES = {"vpnv4": "l3vpn-ipv4-unicast", "vpnv6": "l3vpn-ipv6-unicast", "rtc": "rtc",
                   "ipv4-unicast": "ipv4-unicast", "ipv6-unicast": "ipv6-unicast",
                   "ipv4-labeled-unicast": "ipv4-labelled-unicast",
                   "ipv6-labeled-unicast": "ipv6-labelled-unicast"}


def gobgp_toml(lab: Lab) -> str:
    """gobgpd as VPN route reflector for every host (TESTBED.md's recipe)."""
    t = lab.topology
    rr = t.route_reflector
    assert rr is not None
    a = str(rr.address)
    lines = [
        f"# vpe lab {lab.prefix}: gobgpd route reflector (generated)",
        "[global.config]",
        f"  as = {t.asn}",
        f"  router-id = {_toml_str(a)}",
        f"  port = {AGENT_PORT}",
        f"  local-address-list = [{_toml_str(a)}]",
    ]
    for h in t.hosts:
        lines += [
            "[[neighbors]]",
            "  [neighbors.config]",
            f"    neighbor-address = {_toml_str(str(h.address))}",
            f"    peer-as = {t.asn}",
            "  [neighbors.transport.config]",
            "    passive-mode = true",
            f"    local-address = {_toml_str(a)}",
            "  [neighbors.route-reflector.config]",
            "    route-reflector-client = true",
            f"    route-reflector-cluster-id = {_toml_str(a)}",
        ]
        for f in t.families:
            if f in _GOBGP_FAMILIES:
                lines += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f"      afi-safi-name = {_toml_str(_GOBGP_FAMILIES[f])}",
                ]
    return "\n".join(lines) + "\n"
