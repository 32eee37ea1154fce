"""``up``, ``down`` and ``status`` of a lab.

Layout of a lab with prefix ``P`` (see docs/lab.md for a picture):

* ``P-underlay``: bridge ``br0``; one port ``p-<node>`` per host (and the RR)
* ``P-<host>``: ``ul0`` (underlay address), and ``vm-<vm>`` per VM on it
  (no address: the forwarder owns these ports); runs ``vpe agent`` and,
  once it exists, the userspace forwarder
* ``P-rr``: the route reflector (``vpe agent`` or ``gobgpd``), on ``ul0``
* ``P-<vm>``: ``eth0`` with the VM's addresses and default routes

The state dir (default ``/run/vpe-lab/P``) holds ``lab.json`` (the topology,
the namespaces it plans, and ``owned``: every namespace this lab created,
with the namespace file's device and inode, written right after each one is
created so that ``down`` can clean a half-built lab), one directory per
host / RR with the agent TOML, pid files and logs, and ``attachments/``.

**A lab touches only what its own record lists.** ``up`` refuses to use a
namespace of a planned name that it did not create; ``up`` (pruning) and
``down`` delete only namespaces in ``owned`` whose inode still matches, and
kill only the processes in them and those of its pid files. A namespace
whose name merely starts with the prefix is never touched.

Which processes run on a host is pluggable
(:data:`~vpe.lab.processes.ProcessFactory`), and so is how a VM is attached
to its host's agent (:func:`~vpe.lab.attach.attach_vm`, for now recording
intent only, until the attach API exists). The names below are re-exported
so that ``build`` is the one module callers import.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns, runner
from .attach import AttachHook, attach_links, attach_vm, record_vm, vm_record
from .configs import (
    agent_toml,
    forwarder_available,
    forwarder_socket,
    gobgp_toml,
    host_vrfs,
    rr_agent_toml,
    vrf_name,
)
from .layout import (
    BRIDGE,
    STARTUP_GRACE,
    STATE_FILE,
    STATE_ROOT,
    UNDERLAY_IF,
    VM_IF,
    Lab,
    LabError,
    default_state_dir,
    make_lab,
)
from .processes import (
    ProcessFactory,
    default_host_processes,
    forwarder_argv,
    route_reflector_processes,
)
from .topology import LinkConfig, VmConfig, check_prefix

__all__ = [
    "AttachHook", "DownResult", "Lab", "LabError", "ProcessFactory", "STATE_ROOT", "UpResult",
    "agent_toml", "attach_vm", "default_host_processes", "default_state_dir", "down",
    "forwarder_argv", "forwarder_available", "forwarder_socket", "gobgp_toml", "host_vrfs",
    "known_prefixes", "make_lab", "prefix_namespaces", "resolve_namespace", "route_reflector_processes",
    "rr_agent_toml", "status", "up", "vm_record", "vrf_name",
]


# -- up ----------------------------------------------------------------------------

_NS_DEFAULTS = {
    # no duplicate address detection delays, no reverse-path filtering
    "net/ipv6/conf/all/accept_dad": 0,
    "net/ipv6/conf/default/accept_dad": 0,
    "net/ipv4/conf/all/rp_filter": 0,
    "net/ipv4/conf/default/rp_filter": 0,
}


def _iface_sysctls(ifname: str, *, ipv6: bool = True) -> dict[str, str | int]:
    out: dict[str, str | int] = {netns.iface_key("ipv4", ifname, "rp_filter"): 0}
    if ipv6:
        out[netns.iface_key("ipv6", ifname, "accept_dad")] = 0
    else:
        # a VM port belongs to the forwarder: the host kernel sends nothing on it
        out[netns.iface_key("ipv6", ifname, "disable_ipv6")] = 1
    return out


Owned = dict[str, tuple[int, int]]


def _owned(st: dict[str, Any] | None) -> Owned:
    """The namespaces a lab's record says it created: name -> (device, inode)."""
    out: Owned = {}
    raw = (st or {}).get("owned")
    if isinstance(raw, dict):
        for name, ident in raw.items():
            if isinstance(ident, list) and len(ident) == 2 and all(isinstance(x, int) for x in ident):
                out[str(name)] = (ident[0], ident[1])
    return out


def _ours(name: str, owned: Owned) -> bool:
    """Is ``name`` the very namespace this lab created (same name, same inode)?"""
    return name in owned and netns.netns_inode(name) == owned[name]


def own_namespace(lab: Lab, ns: str) -> None:
    """Record ``ns``, made outside ``up`` for this lab (a movable VM's cable), as the
    lab's own: ``down`` removes it with the rest."""
    ident = netns.netns_inode(ns)
    if ident is None:
        return
    owned = _owned(_existing_state(lab.state_dir))
    owned[ns] = ident
    _write_owned(lab, owned)


def _write_owned(lab: Lab, owned: Owned) -> None:
    _write_state(lab, {"owned": {k: list(v) for k, v in owned.items()}})


def _write_state(lab: Lab, extra: dict[str, Any] | None = None) -> None:
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    path = lab.state_dir / STATE_FILE
    data = {
        "prefix": lab.prefix,
        "state_dir": str(lab.state_dir),
        "namespaces": lab.namespaces(),
        "topology": lab.topology.model_dump(mode="json", by_alias=True),
    }
    if extra:
        data.update(extra)
    text = json.dumps(data, indent=2) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _attach_underlay(lab: Lab, name: str, a4: str, a6: str | None) -> None:
    t = lab.topology
    ns = lab.ns(name)
    port = f"p-{name}"
    netns.veth_add(ns, UNDERLAY_IF, lab.underlay_ns, port)
    netns.sysctl_set(ns, _iface_sysctls(UNDERLAY_IF))
    netns.sysctl_set(lab.underlay_ns, _iface_sysctls(port))
    netns.link_set(lab.underlay_ns, port, master=BRIDGE)
    netns.link_set(ns, UNDERLAY_IF)
    netns.addr_add(ns, UNDERLAY_IF, f"{a4}/{t.underlay.ipv4.prefixlen}")
    if a6 is not None:
        netns.addr_add(ns, UNDERLAY_IF, f"{a6}/{t.underlay.ipv6.prefixlen}")


def _wire_vm(lab: Lab, vm: VmConfig) -> None:
    host_ns, vm_ns = lab.ns(vm.host), lab.ns(vm.name)
    port = f"vm-{vm.name}"
    netns.veth_add(host_ns, port, vm_ns, VM_IF)
    netns.sysctl_set(host_ns, _iface_sysctls(port, ipv6=False))
    netns.sysctl_set(vm_ns, _iface_sysctls(VM_IF))
    netns.link_set(host_ns, port)
    netns.link_set(vm_ns, VM_IF, mac=lab.vm_mac(vm))
    # The VM's frames cross a userspace forwarder: they must leave the VM
    # complete (checksums filled in, no 64 KiB TSO/GSO super-frames).
    netns.run(["ip", "netns", "exec", vm_ns, sys.executable, "-m", "vpe.dataplane.userspace.offload", VM_IF])
    if vm.ipv4 is not None:
        netns.addr_add(vm_ns, VM_IF, str(vm.ipv4))
        gw = vm.gateway_v4()
        assert gw is not None
        netns.default_route_set(vm_ns, str(gw), VM_IF)
    if vm.ipv6 is not None:
        netns.addr_add(vm_ns, VM_IF, str(vm.ipv6))
        gw6 = vm.gateway_v6()
        assert gw6 is not None
        netns.default_route_set(vm_ns, str(gw6), VM_IF)


def _wire_link(lab: Lab, ln: LinkConfig) -> None:
    """A veth pair ``ln-<name>`` between the two hosts' namespaces (no addresses: each
    end is a port of its forwarder)."""
    (a, b), ifname = ln.ends, f"ln-{ln.name}"
    netns.veth_add(lab.ns(a.host), ifname, lab.ns(b.host), ifname)
    for end in ln.ends:
        netns.sysctl_set(lab.ns(end.host), _iface_sysctls(ifname, ipv6=False))
        netns.link_set(lab.ns(end.host), ifname)


@dataclass(frozen=True, slots=True)
class UpResult:
    lab: Lab
    created_namespaces: list[str]
    #: namespaces of nodes no longer in the topology, removed by this ``up``
    removed_namespaces: list[str]
    processes: list[runner.ProcessState]
    attachments: list[str]


def up(
    lab: Lab,
    *,
    processes: ProcessFactory = default_host_processes,
    attach: AttachHook = attach_vm,
    start_processes: bool = True,
) -> UpResult:
    """Build the lab; a second call with the same topology changes nothing.

    Raises :class:`LabError` (or :class:`~vpe.lab.netns.NetnsError`) on the
    first failure; whatever was built stays recorded in the state dir, so
    ``down`` removes it.
    """
    why = netns.ip_available()
    if why is not None:
        raise LabError(f"cannot build a lab here: {why}")
    other = _existing_state(lab.state_dir)
    if other is not None and other.get("prefix") not in (None, lab.prefix):
        raise LabError(f"{lab.state_dir} belongs to lab {other.get('prefix')!r}")
    owned = {k: v for k, v in _owned(other).items() if netns.netns_inode(k) == v}
    foreign = [ns for ns in lab.namespaces() if netns.netns_exists(ns) and ns not in owned]
    if foreign:
        raise LabError(
            f"namespace(s) {', '.join(foreign)} exist but were not created by lab {lab.prefix} (not in "
            f"{lab.state_dir / STATE_FILE}); refusing to use or remove them: pick another prefix or "
            "remove them yourself"
        )
    # record first: a failure half-way still leaves `down` the list of what was created
    _write_owned(lab, owned)
    t = lab.topology

    pruned = _prune(lab, owned)
    created = []
    for ns in lab.namespaces():
        if netns.netns_add(ns):
            created.append(ns)
            ident = netns.netns_inode(ns)
            if ident is not None:
                owned[ns] = ident
                _write_owned(lab, owned)
    for ns in lab.namespaces():
        netns.sysctl_set(ns, _NS_DEFAULTS)

    netns.bridge_add(lab.underlay_ns, BRIDGE)
    if t.route_reflector is not None:
        rr = t.route_reflector
        _attach_underlay(lab, "rr", str(rr.address), None if rr.address6 is None else str(rr.address6))
    for h in t.hosts:
        _attach_underlay(lab, h.name, str(h.address), None if h.address6 is None else str(h.address6))
    for vm in t.vms:
        _wire_vm(lab, vm)
    for ln in t.links:
        _wire_link(lab, ln)

    started: list[runner.ProcessState] = []
    if start_processes:
        rr_ns = lab.rr_ns
        if rr_ns is not None:
            for spec in route_reflector_processes(lab):
                started.append(runner.start(rr_ns, spec, lab.node_dir("rr")))
        for h in t.hosts:
            for spec in processes(lab, h):
                started.append(runner.start(lab.ns(h.name), spec, lab.node_dir(h.name)))
        _check_started(lab, started)

    attached = []
    for vm in t.vms:
        if start_processes:
            attach(lab, vm)
        else:
            record_vm(lab, vm)  # no agent runs to attach to: record the intent only
        attached.append(vm.name)
    if start_processes and t.links:
        attach_links(lab)
    return UpResult(lab, created, pruned, started, attached)


def _prune(lab: Lab, owned: Owned) -> list[str]:
    """Remove what an earlier ``up`` built for nodes the topology no longer has (only
    namespaces this lab created: ``owned``, updated in place)."""
    wanted = set(lab.namespaces())
    nodes = {h.name for h in lab.topology.hosts} | ({"rr"} if lab.rr_ns else set())
    if lab.state_dir.is_dir():
        for d in sorted(p for p in lab.state_dir.iterdir() if p.is_dir()):
            ours = any(d.glob("*.pid")) or any(d.glob("*.toml")) or any(d.glob("*.log"))
            if ours and d.name not in nodes:
                for proc in runner.list_processes(d):
                    runner.stop(d, proc.name)
                shutil.rmtree(d, ignore_errors=True)
        vms = {vm.name for vm in lab.topology.vms}
        for f in (lab.state_dir / "attachments").glob("*.json"):
            if f.stem not in vms:
                f.unlink()
    removed = []
    for ns in sorted(owned):
        if ns not in wanted:
            if _ours(ns, owned):
                runner.kill_namespace_processes(ns)
                if netns.netns_delete(ns):
                    removed.append(ns)
            del owned[ns]
            _write_owned(lab, owned)
    return removed


def _check_started(lab: Lab, started: list[runner.ProcessState]) -> None:
    """Fail ``up`` with the log tail of any process that died right away."""
    if not started:
        return
    deadline = time.monotonic() + STARTUP_GRACE
    while time.monotonic() < deadline:
        time.sleep(0.1)
    dead = []
    for p in started:
        cur = runner.state(Path(p.log).parent, p.name)
        if not cur.alive:
            dead.append(f"{p.name} in {p.ns} exited; last lines of {p.log}:\n{runner.log_tail(p.log)}")
    if dead:
        raise LabError("process(es) failed to start:\n" + "\n".join(dead))


# -- down --------------------------------------------------------------------------


def _existing_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prefix_namespaces(prefix: str) -> list[str]:
    """Namespaces named ``<prefix>-...`` (prefixes have no '-', so this is exact)."""
    check_prefix(prefix)
    return [n for n in netns.netns_list() if n.split("-", 1)[0] == prefix and "-" in n]


@dataclass(frozen=True, slots=True)
class DownResult:
    stopped: list[str]
    killed_pids: list[int]
    deleted_namespaces: list[str]
    #: recorded namespaces left alone: gone, or replaced by one the lab did not create
    left_alone: list[str] = field(default_factory=list)


def down(prefix: str, state_dir: Path | None = None) -> DownResult:
    """Stop the lab's processes and delete the namespaces it created, then its state dir.

    Works from the lab's record only (``lab.json``: the namespaces it created,
    with their inodes; the pid files), so a lab whose ``up`` failed half-way is
    still removed, and nothing else is touched: not a namespace whose name
    merely starts with the prefix, not one that replaced a lab namespace.
    Running it twice is harmless.
    """
    check_prefix(prefix)
    why = netns.ip_available()
    if why is not None:
        raise LabError(f"cannot remove a lab here: {why}")
    sd = Path(state_dir) if state_dir else default_state_dir(prefix)
    st = _existing_state(sd)
    owned = _owned(st)
    if st is not None and "owned" not in st:  # a record of an older vpe: its planned namespaces
        owned = {str(n): ident for n in st.get("namespaces", [])
                 if (ident := netns.netns_inode(str(n))) is not None}
    stopped: list[str] = []
    if sd.is_dir():
        for d in sorted(p for p in sd.iterdir() if p.is_dir()):
            for proc in runner.list_processes(d):
                if runner.stop(d, proc.name):
                    stopped.append(f"{d.name}/{proc.name}")
    namespaces = [ns for ns in owned if _ours(ns, owned)]
    left_alone = [ns for ns in owned if ns not in namespaces and netns.netns_exists(ns)]
    killed: list[int] = []
    for ns in namespaces:
        killed += runner.kill_namespace_processes(ns)
    deleted: list[str] = []
    errors: list[str] = []
    # VMs and hosts before the underlay: the reverse of creation
    for ns in reversed(namespaces):
        try:
            if netns.netns_delete(ns):
                deleted.append(ns)
        except netns.NetnsError as e:
            errors.append(str(e))
    if errors:
        raise LabError("some namespaces could not be deleted:\n" + "\n".join(errors))
    if sd.is_dir():
        shutil.rmtree(sd, ignore_errors=True)
    return DownResult(stopped, killed, deleted, left_alone)


# -- status ------------------------------------------------------------------------


def known_prefixes() -> list[str]:
    """Prefixes with a state dir under the state root, or with namespaces alive."""
    found = set()
    if STATE_ROOT.is_dir():
        found |= {p.name for p in STATE_ROOT.iterdir() if (p / STATE_FILE).exists()}
    with contextlib.suppress(netns.NetnsError):
        for n in netns.netns_list():
            head, sep, tail = n.partition("-")
            if sep and tail == "underlay":
                found.add(head)
    return sorted(found)


def status(prefix: str, state_dir: Path | None = None) -> dict[str, Any]:
    """What exists of the lab now: namespaces with addresses, processes and liveness."""
    check_prefix(prefix)
    sd = Path(state_dir) if state_dir else default_state_dir(prefix)
    st = _existing_state(sd)
    recorded = [str(n) for n in st.get("namespaces", [])] if st else []
    existing = set(prefix_namespaces(prefix))
    out: dict[str, Any] = {"prefix": prefix, "state_dir": str(sd), "state_file": st is not None}
    nss = []
    for ns in list(dict.fromkeys(recorded + sorted(existing))):
        entry: dict[str, Any] = {"name": ns, "exists": ns in existing}
        if ns in existing:
            try:
                entry["addresses"] = {k: v for k, v in netns.addresses(ns).items() if v}
            except netns.NetnsError as e:
                entry["error"] = str(e)
        nss.append(entry)
    out["namespaces"] = nss
    procs = []
    if sd.is_dir():
        for d in sorted(p for p in sd.iterdir() if p.is_dir()):
            procs += [dict(p.to_json(), node=d.name) for p in runner.list_processes(d)]
    out["processes"] = procs
    att = sd / "attachments"
    out["attachments"] = sorted(p.stem for p in att.glob("*.json")) if att.is_dir() else []
    return out


def resolve_namespace(prefix: str, name: str) -> str:
    """The namespace of node ``name`` (a VM, host, ``rr`` or ``underlay``) in lab ``prefix``."""
    for ns in (f"{prefix}-{name}", name):
        if ns.startswith(f"{prefix}-") and netns.netns_exists(ns):
            return ns
    raise LabError(f"lab {prefix!r} has no namespace for {name!r} (looked for {prefix}-{name})")
