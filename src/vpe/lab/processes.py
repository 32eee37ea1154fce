"""Which processes run where: the pluggable per-host process list.

A :data:`ProcessFactory` is a function ``(lab, host) -> [ProcessSpec]``;
``vpe lab up`` uses :func:`default_host_processes` unless given another
(the e2e tests use that to inject failures; a later driver may add its own
daemons). The route reflector's process follows its ``kind``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable

from .configs import agent_toml, forwarder_available, forwarder_socket, gobgp_toml, rr_agent_toml
from .layout import UNDERLAY_IF, Lab, LabError
from .runner import ProcessSpec
from .topology import HostConfig

ProcessFactory = Callable[[Lab, HostConfig], list[ProcessSpec]]


def _vpe_argv(*args: str) -> tuple[str, ...]:
    # the interpreter running the lab, so a venv install needs no PATH setup
    return (sys.executable, "-m", "vpe.cli.main", *args)


def forwarder_argv(lab: Lab, host: HostConfig) -> tuple[str, ...]:
    """Command line of the forwarder of ``host`` (src/vpe/dataplane/process.py), with the
    host's dataplane driver (``driver`` in the topology: userspace, ebpf).

    It forwards between the host's VM ports (opened as they are programmed
    over the FIB channel) and the underlay interface ``ul0``.
    """
    argv = [
        sys.executable, "-m", "vpe.dataplane.process",
        "--driver", lab.topology.driver_of(host),
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
