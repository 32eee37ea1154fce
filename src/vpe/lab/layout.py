"""Where a lab's pieces live: namespace names, interface names, the state dir.

A :class:`Lab` is a validated topology placed under a prefix. Names are
derived here only, so ``up``, ``down``, ``status`` and the tests agree on
them (see docs/lab.md for the picture).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .topology import DEFAULT_PREFIX, Topology, VmConfig, check_prefix

STATE_ROOT = Path(os.environ.get("VPE_LAB_ROOT", "/run/vpe-lab"))
STATE_FILE = "lab.json"
BRIDGE = "br0"
UNDERLAY_IF = "ul0"
VM_IF = "eth0"
AGENT_PORT = 179
#: the MAC every forwarder answers for its gateways (the agent's default
#: ``dataplane.gateway_mac``): a link's port sees the other forwarder behind it with it
GATEWAY_MAC = "02:00:5e:00:00:01"
#: where each host's agent sees VRF neighbors reached through ports (inside the host's
#: namespace only; ../shared/TESTBED.md's underlay ranges)
SESSION_PREFIX = "198.19.179.0/24"
SESSION_PREFIX6 = "2001:db8:ffff:179::/64"
#: how long ``up`` watches fresh processes for an immediate crash
STARTUP_GRACE = 0.7


class LabError(Exception):
    """``up``/``down``/``exec`` cannot do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Lab:
    """A topology placed under a prefix, with its state dir."""

    topology: Topology
    prefix: str
    state_dir: Path

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def underlay_ns(self) -> str:
        return self.ns("underlay")

    @property
    def rr_ns(self) -> str | None:
        return self.ns("rr") if self.topology.route_reflector is not None else None

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, underlay first (creation order)."""
        out = [self.underlay_ns]
        if self.rr_ns is not None:
            out.append(self.rr_ns)
        out += [self.ns(h.name) for h in self.topology.hosts]
        out += [self.ns(vm.name) for vm in self.topology.vms]
        return out

    def node_dir(self, name: str) -> Path:
        return self.state_dir / name

    def vm_mac(self, vm: VmConfig) -> str:
        """A stable, locally administered unicast MAC for the VM's ``eth0``."""
        h = hashlib.sha256(f"{self.prefix}/{vm.name}".encode()).digest()
        return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def default_state_dir(prefix: str) -> Path:
    return STATE_ROOT / prefix


def make_lab(topology: Topology, prefix: str | None = None, state_dir: Path | None = None) -> Lab:
    p = check_prefix(prefix or topology.prefix or DEFAULT_PREFIX)
    return Lab(topology, p, Path(state_dir) if state_dir else default_state_dir(p))
