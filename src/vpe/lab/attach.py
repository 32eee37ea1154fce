"""Attaching VMs to their host's agent (pluggable; records intent for now)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .configs import vrf_name
from .layout import GATEWAY_MAC, VM_IF, Lab, LabError
from .topology import VmConfig

# -- VM attachment (pluggable) ----------------------------------------------------


def vm_record(lab: Lab, vm: VmConfig) -> dict[str, Any]:
    """Everything the attach call will need about one VM, as JSON."""
    t = lab.topology
    gw4, gw6 = vm.gateway_v4(), vm.gateway_v6()
    return {
        "vm": vm.name,
        "host": vm.host,
        "host_namespace": lab.ns(vm.host),
        "namespace": lab.ns(vm.name),
        "port": f"vm-{vm.name}",
        "vm_interface": VM_IF,
        "mac": lab.vm_mac(vm),
        "ipv4": None if vm.ipv4 is None else str(vm.ipv4),
        "gateway": None if gw4 is None else str(gw4),
        "ipv6": None if vm.ipv6 is None else str(vm.ipv6),
        "gateway6": None if gw6 is None else str(gw6),
        "allowed": [str(n) for n in vm.allowed],
        "agent_socket": str(lab.node_dir(vm.host) / "vpe.sock"),
        "vrf": vrf_name(vm),
        "vpns": [
            {
                "name": name,
                "tenant": t.tenant_of(name).name,
                "rd": t.vpn(name).rd or "auto",
                "import": t.vpn(name).import_,
                "export": t.vpn(name).export,
            }
            for name in vm.vpns
        ],
    }


def attach_vm(lab: Lab, vm: VmConfig) -> Path:
    """Attach ``vm`` to its host's agent through the agent's API, and record it.

    Waits (bounded) for the agent's API socket; an attachment that already
    exists with the same content is left alone, so ``up`` stays idempotent.
    The record in ``attachments/<vm>.json`` is what the demo and tests read.
    """
    rec = vm_record(lab, vm)
    _api_attach(rec)
    return _record(lab, vm, rec)


def record_vm(lab: Lab, vm: VmConfig) -> Path:
    """Record the attachment only: for ``up`` without processes, when no agent runs."""
    return _record(lab, vm, vm_record(lab, vm))


def port_body(rec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``POST /v1/ports`` body of a VM record (:func:`vm_record`), plus ``extra``
    fields (a move's ``state``/``sequence``)."""
    body = {
        "name": rec["vm"],
        "ifname": rec["port"],
        "vpn": rec["vrf"],
        "mac": rec["mac"],
        "ips": [a for a in (rec["ipv4"], rec["ipv6"]) if a],
        "gateways": [g for g in (rec["gateway"], rec["gateway6"]) if g],
        "allowed_pairs": rec.get("allowed", []),
    }
    body.update(extra)
    return body


def _api_attach(rec: dict[str, Any], timeout: float = 30.0) -> None:
    import time

    import httpx

    body = port_body(rec)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=rec["agent_socket"]), timeout=10) as c:
                r = c.post("http://vpe/v1/ports", json=body)
        except (httpx.TransportError, OSError) as e:
            last = str(e)
            time.sleep(0.2)
            continue
        if r.status_code == 201:
            return
        if r.status_code == 409:
            return  # already attached (idempotent up)
        raise LabError(f"attaching {rec['vm']} to {rec['host']}: {r.status_code} {r.text}")
    raise LabError(f"attaching {rec['vm']}: agent API {rec['agent_socket']} not reachable: {last}")


def _record(lab: Lab, vm: VmConfig, rec: dict[str, Any]) -> Path:
    d = lab.state_dir / "attachments"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{vm.name}.json"
    text = json.dumps(rec, indent=2) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return path
    path.write_text(text)
    return path


def link_records(lab: Lab) -> list[dict[str, Any]]:
    """The two ports of every VRF-to-VRF link (Inter-AS option A), as VM-like records:
    each end's endpoint is the other end (MAC: the other forwarder's gateway MAC), its
    gateway this end's address, and any source may cross it."""
    t = lab.topology
    out = []
    for ln in t.links:
        for mine, other in (ln.ends, ln.ends[::-1]):
            plen = mine.address.network.prefixlen
            out.append({
                "vm": f"ln-{ln.name}", "host": mine.host, "port": f"ln-{ln.name}",
                "mac": GATEWAY_MAC, "ipv4": f"{other.address.ip}/{plen}", "gateway": str(mine.address.ip),
                "ipv6": None, "gateway6": None, "allowed": ["0.0.0.0/0"],
                "agent_socket": str(lab.node_dir(mine.host) / "vpe.sock"), "vrf": ln.vpn,
            })
    return out


def attach_links(lab: Lab) -> None:
    """Attach both ports of every link to their hosts' agents."""
    for rec in link_records(lab):
        _api_attach(rec)


AttachHook = Callable[[Lab, VmConfig], object]
