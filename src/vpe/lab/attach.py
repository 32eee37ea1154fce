"""Attaching VMs to their host's agent (pluggable; records intent for now)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .configs import vrf_name
from .layout import VM_IF, Lab
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
    """Attach ``vm`` to its host's agent. For now: record the intent.

    The agent's attach API comes later; then this calls it (the record has
    the agent's socket, the port, MAC, addresses and VPNs). Until then the
    record in ``attachments/<vm>.json`` is what the demo and tests read.
    """
    d = lab.state_dir / "attachments"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{vm.name}.json"
    text = json.dumps(vm_record(lab, vm), indent=2) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return path
    path.write_text(text)
    return path


AttachHook = Callable[[Lab, VmConfig], object]
