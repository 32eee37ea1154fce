"""``up``, ``down`` and ``status`` of a lab.

Layout of a lab with prefix ``P`` (see docs/lab.md for a picture):

* ``P-underlay``: bridge ``br0``; one port ``p-<node>`` per host (and the RR)
* ``P-<host>``: ``ul0`` (underlay address), and ``vm-<vm>`` per VM on it
  (no address: the forwarder owns these ports); runs ``vpe agent`` and,
  once it exists, the userspace forwarder
* ``P-rr``: the route reflector (``vpe agent`` or ``gobgpd``), on ``ul0``
* ``P-<vm>``: ``eth0`` with the VM's addresses and default routes

The state dir (default ``/run/vpe-lab/P``) holds ``lab.json`` (the topology
and every namespace the lab may have created; written *before* anything is
created so that ``down`` can clean a half-built lab), one directory per
host / RR with the agent TOML, pid files and logs, and ``attachments/``.

Which processes run on a host is pluggable (:data:`ProcessFactory`), and
so is how a VM is attached to its host's agent (:func:`attach_vm`, for now
recording intent only, until the attach API exists).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import netns, runner
from .runner import ProcessSpec
from .topology import DEFAULT_PREFIX, HostConfig, Topology, VmConfig, check_prefix

STATE_ROOT = Path(os.environ.get("VPE_LAB_ROOT", "/run/vpe-lab"))
STATE_FILE = "lab.json"
BRIDGE = "br0"
UNDERLAY_IF = "ul0"
VM_IF = "eth0"
AGENT_PORT = 179
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


# -- processes per host (pluggable) --------------------------------------------

ProcessFactory = Callable[[Lab, HostConfig], list[ProcessSpec]]


def _toml_str(v: str) -> str:
    return json.dumps(v)  # a JSON string is a valid TOML basic string


def _families(lab: Lab) -> str:
    return "[" + ", ".join(_toml_str(f) for f in lab.topology.families) + "]"


def agent_toml(lab: Lab, host: HostConfig) -> str:
    """The ``vpe agent`` configuration of one host (src/vpe/agent/config.py)."""
    t = lab.topology
    d = lab.node_dir(host.name)
    lines = [
        f"# vpe lab {lab.prefix}: host {host.name} (generated; edits are overwritten by `vpe lab up`)",
        f"dataplane = {_toml_str('userspace' if forwarder_available() else 'none')}",
        f"state_dir = {_toml_str(str(d / 'agent-state'))}",
        "",
        "[bgp]",
        f"local_as = {t.asn}",
        f"router_id = {_toml_str(str(host.address))}",
        f"listen = [{_toml_str(str(host.address))}]",
        f"port = {AGENT_PORT}",
        "",
        "[api]",
        f"socket = {_toml_str(str(d / 'vpe.sock'))}",
    ]
    if t.route_reflector is not None:
        peers = [(str(t.route_reflector.address), "route reflector")]
    else:  # full mesh among the hosts
        peers = [(str(h.address), f"host {h.name}") for h in t.hosts if h.name != host.name]
    for addr, desc in peers:
        lines += [
            "",
            "[[neighbors]]",
            f"address = {_toml_str(addr)}",
            f"remote_as = {t.asn}",
            f"port = {AGENT_PORT}",
            f"local_address = {_toml_str(str(host.address))}",
            f"families = {_families(lab)}",
            "connect_retry = 2.0",
            f"description = {_toml_str(desc)}",
        ]
    return "\n".join(lines) + "\n"


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


def _vpe_argv(*args: str) -> tuple[str, ...]:
    # the interpreter running the lab, so a venv install needs no PATH setup
    return (sys.executable, "-m", "vpe.cli.main", *args)


def forwarder_socket(lab: Lab, host: HostConfig) -> Path:
    """Where the host's forwarder serves its FIB channel (the agent connects there)."""
    return lab.node_dir(host.name) / "forwarder.sock"


def forwarder_argv(lab: Lab, host: HostConfig) -> tuple[str, ...]:
    """Command line of the userspace forwarder of ``host`` (src/vpe/dataplane/process.py).

    It forwards between the host's VM ports (opened as they are programmed
    over the FIB channel) and the underlay interface ``ul0``.
    """
    argv = [
        sys.executable, "-m", "vpe.dataplane.process",
        "--underlay-if", UNDERLAY_IF,
        "--underlay-ip", str(host.address),
    ]
    if host.address6 is not None:
        argv += ["--underlay-ip", str(host.address6)]
    argv += ["--socket", str(forwarder_socket(lab, host))]
    return tuple(argv)


def default_host_processes(lab: Lab, host: HostConfig) -> list[ProcessSpec]:
    """``vpe agent`` with its generated TOML, plus the forwarder when it exists."""
    d = lab.node_dir(host.name)
    cfg = d / "agent.toml"
    specs = [
        ProcessSpec(
            name="agent",
            argv=_vpe_argv("agent", "--config", str(cfg)),
            config_path=cfg,
            config=agent_toml(lab, host),
        )
    ]
    if forwarder_available():
        specs.append(ProcessSpec(name="forwarder", argv=forwarder_argv(lab, host)))
    return specs


def route_reflector_processes(lab: Lab) -> list[ProcessSpec]:
    rr = lab.topology.route_reflector
    if rr is None:
        return []
    d = lab.node_dir("rr")
    if rr.kind == "gobgp":
        gobgpd = shutil.which("gobgpd")
        if gobgpd is None:
            raise LabError("route_reflector.kind is gobgp but gobgpd is not installed (apt-get install gobgpd)")
        cfg = d / "gobgpd.toml"
        # the API port is on the RR namespace's own loopback
        argv = (gobgpd, "-f", str(cfg), "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-p")
        return [ProcessSpec(name="gobgpd", argv=argv, config_path=cfg, config=gobgp_toml(lab))]
    cfg = d / "agent.toml"
    return [
        ProcessSpec(
            name="agent",
            argv=_vpe_argv("agent", "--config", str(cfg)),
            config_path=cfg,
            config=rr_agent_toml(lab),
        )
    ]


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
        "vpns": [
            {
                "name": name,
                "tenant": t.tenant_of(name).name,
                "rd": t.effective_rd(name, vm.host),
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
    # record the plan first: a failure half-way still leaves `down` a full list
    _write_state(lab)
    t = lab.topology

    pruned = _prune(lab)
    created = [ns for ns in lab.namespaces() if netns.netns_add(ns)]
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
        attach(lab, vm)
        attached.append(vm.name)
    return UpResult(lab, created, pruned, started, attached)


def _prune(lab: Lab) -> list[str]:
    """Remove what an earlier ``up`` built for nodes the topology no longer has."""
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
    for ns in prefix_namespaces(lab.prefix):
        if ns not in wanted:
            runner.kill_namespace_processes(ns)
            if netns.netns_delete(ns):
                removed.append(ns)
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


def down(prefix: str, state_dir: Path | None = None) -> DownResult:
    """Stop every process and delete every namespace of the lab, then its state dir.

    Works from the state dir when there is one and from ``ip netns list``
    always, so a lab whose ``up`` failed half-way, or whose state dir is gone,
    is still removed. Running it twice is harmless.
    """
    check_prefix(prefix)
    why = netns.ip_available()
    if why is not None:
        raise LabError(f"cannot remove a lab here: {why}")
    sd = Path(state_dir) if state_dir else default_state_dir(prefix)
    st = _existing_state(sd)
    recorded = [str(n) for n in st.get("namespaces", [])] if st else []
    stopped: list[str] = []
    if sd.is_dir():
        for d in sorted(p for p in sd.iterdir() if p.is_dir()):
            for proc in runner.list_processes(d):
                if runner.stop(d, proc.name):
                    stopped.append(f"{d.name}/{proc.name}")
    namespaces = list(dict.fromkeys(recorded + prefix_namespaces(prefix)))
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
    return DownResult(stopped, killed, deleted)


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
