"""Moving a VM of a running lab from one host to another (docs/mobility.md).

A lab VM is a namespace whose ``eth0`` is a veth. To move it without
touching that namespace (its addresses, routes, neighbour cache and TCP
sessions stay as they are, as in a live migration) the VM is put behind a
*cable* namespace ``<prefix>-<vm>.c``, the lab's stand-in for a hypervisor's
switch::

    VM eth0 <-> vm0 [cable] to-<host> <-> vm-<vm> [host]

In the cable, what the VM sends (``vm0`` ingress) goes out of exactly one
uplink, and what any uplink receives goes to the VM (tc ``mirred``
redirects; no bridge, no MAC learning). The VM's carrier never drops, so the
kernel keeps its ARP/ND entries through a move.

:func:`move` drives the three API calls of a move, make-before-break at
every step:

1. plug an uplink to the destination host and *prepare* there
   (``POST /v1/ports`` with ``"state": "standby"``; the vPE picks the next
   mobility sequence number);
2. *activate* on the destination, then switch the VM's transmit side to the
   destination's uplink (one ``tc filter replace``);
3. *release* on the source, then unplug the source's uplink.

Until the unplug both hosts can deliver to the VM, so nothing in flight is
lost at the link; after it, the source's local repair carries what still
arrives there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from . import netns
from .attach import port_body, vm_record
from .build import own_namespace
from .layout import Lab, LabError
from .topology import VmConfig

#: the cable's end toward the VM
CABLE_VM_IF = "vm0"
#: a filter of our own on each clsact hook of the cable
_PREF = "1"


def cable_ns(lab: Lab, vm: str) -> str:
    """The cable namespace of VM ``vm`` (a '.' no node name has, so it never collides)."""
    return f"{lab.ns(vm)}.c"


def uplink(host: str) -> str:
    """The cable's interface toward ``host`` (host names are at most 12 octets)."""
    return f"to-{host}"


def port_ifname(vm: str) -> str:
    return f"vm-{vm}"


def _redirect(ns: str, dev: str, to: str) -> None:
    """Everything ``dev`` receives leaves through ``to`` (replacing any earlier choice)."""
    netns.run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "clsact"])
    # a fixed handle, so that a replace swaps the action in place (atomically)
    netns.run(["tc", "-n", ns, "filter", "replace", "dev", dev, "ingress", "pref", _PREF, "handle", "800::800",
               "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to])


def _port_sysctls(host_ns: str, ifname: str) -> None:
    # a VM port belongs to the forwarder: the host kernel sends nothing on it
    netns.sysctl_set(host_ns, {netns.iface_key("ipv6", ifname, "disable_ipv6"): 1,
                               netns.iface_key("ipv4", ifname, "rp_filter"): 0})


def is_movable(lab: Lab, vm: str) -> bool:
    return netns.netns_exists(cable_ns(lab, vm))


def make_movable(lab: Lab, vm: VmConfig) -> str:
    """Put a cable between ``vm`` and its host. Call it before the VM is attached (the
    host's port is re-created); a VM that already has its cable is left alone.
    Returns the cable namespace (recorded as the lab's: ``down`` removes it)."""
    cab = cable_ns(lab, vm.name)
    if netns.netns_exists(cab):
        return cab
    host_ns, port = lab.ns(vm.host), port_ifname(vm.name)
    netns.netns_add(cab)
    own_namespace(lab, cab)  # `vpe lab down` removes it
    netns.sysctl_set(cab, {"net/ipv6/conf/all/disable_ipv6": 1, "net/ipv6/conf/default/disable_ipv6": 1})
    # the VM's peer leaves the host for the cable, as vm0
    netns.run(["ip", "-n", host_ns, "link", "set", "dev", port, "down"])
    netns.run(["ip", "-n", host_ns, "link", "set", "dev", port, "netns", cab])
    netns.run(["ip", "-n", cab, "link", "set", "dev", port, "name", CABLE_VM_IF])
    netns.link_set(cab, CABLE_VM_IF)
    plug(lab, vm.name, vm.host)
    steer(lab, vm.name, vm.host)
    return cab


def plug(lab: Lab, vm: str, host: str) -> None:
    """A link from the VM's cable to ``host`` (its port ``vm-<vm>`` there): what the host
    sends on it reaches the VM; the VM's own frames do not go there until :func:`steer`."""
    cab, host_ns, port, up = cable_ns(lab, vm), lab.ns(host), port_ifname(vm), uplink(host)
    if not netns.link_exists(cab, up):
        if netns.link_exists(host_ns, port):
            raise LabError(f"host {host} already has a port {port}")
        netns.run(["ip", "-n", cab, "link", "add", up, "type", "veth", "peer", "name", port, "netns", host_ns])
    _port_sysctls(host_ns, port)
    netns.link_set(host_ns, port)
    netns.link_set(cab, up)
    _redirect(cab, up, CABLE_VM_IF)


def steer(lab: Lab, vm: str, host: str) -> None:
    """The VM's frames leave through the uplink to ``host`` from now on (one filter replace)."""
    _redirect(cable_ns(lab, vm), CABLE_VM_IF, uplink(host))


def unplug(lab: Lab, vm: str, host: str) -> None:
    """Remove the link to ``host`` (its port there goes with it)."""
    cab, up = cable_ns(lab, vm), uplink(host)
    if netns.link_exists(cab, up):
        netns.run(["ip", "-n", cab, "link", "delete", up])


def plugged(lab: Lab, vm: str) -> list[str]:
    """Hosts the VM's cable has a link to."""
    out = netns.run(["ip", "-j", "-n", cable_ns(lab, vm), "link", "show"]).stdout
    names = [ln["ifname"] for ln in json.loads(out or "[]")]
    return sorted(n[3:] for n in names if n.startswith("to-"))


# -- the API flow --------------------------------------------------------------------------


def _sock(lab: Lab, host: str) -> str:
    return str(lab.node_dir(host) / "vpe.sock")


def _post(lab: Lab, host: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=_sock(lab, host)), timeout=15) as c:
        r = c.post(f"http://vpe{path}", json=body)
    if r.status_code >= 300:
        raise LabError(f"{host}: POST {path}: {r.status_code} {r.text}")
    out: dict[str, Any] = r.json()
    return out


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move did, with monotonic times (``time.monotonic()``) of each step's end."""

    vm: str
    src: str
    dst: str
    sequence: int
    prepared: float
    #: the destination owns the port and the VM sends through it
    activated: float
    #: the source let go and its link is gone
    released: float


def prepare(lab: Lab, vm: VmConfig, dst: str, sequence: int = 0) -> dict[str, Any]:
    """Step 1: link to ``dst`` and the standby attachment there; the port as the API shows it."""
    plug(lab, vm.name, dst)
    body = port_body(vm_record(lab, vm), state="standby", sequence=sequence)
    return _post(lab, dst, "/v1/ports", body)


def activate(lab: Lab, vm: str, dst: str) -> dict[str, Any]:
    """Step 2: the destination takes the port, then the VM sends through it."""
    out = _post(lab, dst, f"/v1/ports/{vm}/activate", None)
    steer(lab, vm, dst)
    return out


def release(lab: Lab, vm: str, src: str, hold: float | None = 30.0) -> dict[str, Any]:
    """Step 3: the source lets go (its redirect lives ``hold`` s), then its link goes."""
    out = _post(lab, src, f"/v1/ports/{vm}/release", {"hold": hold})
    unplug(lab, vm, src)
    return out


def move(lab: Lab, vm: VmConfig, src: str, dst: str, *, hold: float | None = 30.0) -> MoveResult:
    """Move ``vm`` (a movable one, see :func:`make_movable`) from host ``src`` to ``dst``."""
    if src == dst:
        raise LabError(f"{vm.name}: source and destination are both {src}")
    p = prepare(lab, vm, dst)
    t1 = time.monotonic()
    activate(lab, vm.name, dst)
    t2 = time.monotonic()
    release(lab, vm.name, src, hold)
    t3 = time.monotonic()
    return MoveResult(vm.name, src, dst, int(p.get("sequence", 0)), t1, t2, t3)
