"""`vpe lab` end to end: real namespaces, veths, a bridge, processes, and a clean `down`.

Each lab gets a unique per-run prefix and is removed in teardown, also when
a test fails. Hosts run what `vpe lab up` runs by default: the agent, and
the userspace forwarder when its module exists (forwarding itself has its
own e2e tests; here it only has to start).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpe.lab import build, netns
from vpe.lab.runner import ProcessSpec
from vpe.lab.topology import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "vpe" / "lab" / "examples"
TWO_HOSTS = EXAMPLES / "two-hosts.yaml"

_why = netns.ip_available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(20),
    pytest.mark.skipif(_why is not None, reason=f"vpe lab needs root and `ip netns`: {_why}"),
]

ENV = dict(os.environ)
ENV.pop("VPE_LAB_FORWARDER", None)


def new_prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


def vpe(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "vpe.cli.main", *args], capture_output=True, text=True, env=ENV, timeout=18
    )
    if check and r.returncode != 0:
        raise AssertionError(f"vpe {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def lab_namespaces(prefix: str) -> list[str]:
    """Read straight from `ip netns list`, not through the code under test."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-"))


def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=10)


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"  # a zombie waits for its parent, it does not run


def teardown_lab(prefix: str) -> None:
    vpe("lab", "down", "--prefix", prefix, check=False)
    for ns in lab_namespaces(prefix):  # last resort, so a broken `down` never leaks
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    shutil.rmtree(build.STATE_ROOT / prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[str]:
    prefix = new_prefix()
    try:
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix)
        yield prefix
    finally:
        teardown_lab(prefix)


def snapshot(prefix: str) -> str:
    """Links, addresses and routes of every lab namespace, plus the process ids."""
    parts = []
    for ns in lab_namespaces(prefix):
        for cmd in (["-j", "link"], ["-j", "addr"], ["-j", "-4", "route"], ["-j", "-6", "route"]):
            data = json.loads(subprocess.run(["ip", "-n", ns, *cmd], capture_output=True, text=True).stdout or "[]")
            for entry in data:  # counters and timers move on their own
                entry.pop("stats64", None)
                for a in entry.get("addr_info", []):
                    a.pop("valid_life_time", None)
                    a.pop("preferred_life_time", None)
            parts.append(f"{ns} {cmd}: {json.dumps(data, sort_keys=True)}")
    st = json.loads(vpe("lab", "status", "--prefix", prefix, "--json").stdout)
    parts.append(json.dumps([(p["node"], p["name"], p["pid"], p["alive"]) for p in st["processes"]]))
    return "\n".join(parts)


def test_up_creates_namespaces_and_processes(two_hosts: str) -> None:
    p = two_hosts
    assert lab_namespaces(p) == sorted(f"{p}-{n}" for n in ("underlay", "h1", "h2", "blue1", "blue2"))
    st = json.loads(vpe("lab", "status", "--prefix", p, "--json").stdout)
    procs = {(pr["node"], pr["name"]): pr["alive"] for pr in st["processes"]}
    expected = {("h1", "agent"), ("h2", "agent")}
    if build.forwarder_available():
        expected |= {("h1", "forwarder"), ("h2", "forwarder")}
    assert set(procs) == expected
    assert all(procs.values()), st["processes"]
    # the host end of each VM port is named after the VM
    assert netns.link_exists(f"{p}-h1", "vm-blue1") and netns.link_exists(f"{p}-h2", "vm-blue2")
    assert sorted(st["attachments"]) == ["blue1", "blue2"]


@pytest.mark.skipif(shutil.which("ping") is None, reason="ping is missing: apt-get install iputils-ping")
def test_underlay_ping_between_hosts(two_hosts: str) -> None:
    p = two_hosts
    r = in_ns(f"{p}-h1", "ping", "-c", "1", "-W", "2", "198.18.0.12")
    assert r.returncode == 0, r.stdout + r.stderr
    r = in_ns(f"{p}-h2", "ping", "-6", "-c", "1", "-W", "2", "2001:db8:ffff::11")
    assert r.returncode == 0, r.stdout + r.stderr


def test_vm_namespaces_have_addresses_and_default_routes(two_hosts: str) -> None:
    p = two_hosts
    for vm, a4, a6, gw4, gw6 in (
        ("blue1", "192.0.2.11/24", "2001:db8:100::11/64", "192.0.2.1", "2001:db8:100::1"),
        ("blue2", "192.0.2.12/24", "2001:db8:100::12/64", "192.0.2.1", "2001:db8:100::1"),
    ):
        ns = f"{p}-{vm}"
        addrs = json.loads(subprocess.run(["ip", "-j", "-n", ns, "addr", "show", "dev", "eth0"],
                                          capture_output=True, text=True, check=True).stdout)
        have = {f"{a['local']}/{a['prefixlen']}" for a in addrs[0]["addr_info"]}
        assert {a4, a6} <= have
        # no address is left tentative (DAD is off)
        assert not any(a.get("tentative") for a in addrs[0]["addr_info"])
        for fam, gw in (("-4", gw4), ("-6", gw6)):
            routes = json.loads(subprocess.run(["ip", "-j", fam, "-n", ns, "route", "show", "default"],
                                               capture_output=True, text=True, check=True).stdout)
            assert [(r["gateway"], r["dev"]) for r in routes] == [(gw, "eth0")]


def test_exec_passes_the_exit_code_through(two_hosts: str) -> None:
    p = two_hosts
    assert vpe("lab", "exec", "--prefix", p, "blue1", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    r = vpe("lab", "exec", "--prefix", p, "blue1", "--", "ip", "-br", "addr", "show", "eth0")
    assert "192.0.2.11/24" in r.stdout
    assert vpe("lab", "exec", "--prefix", p, "h2", "--", "true").returncode == 0
    r = vpe("lab", "exec", "--prefix", p, "nosuchvm", "--", "true", check=False)
    assert r.returncode == 2 and "no namespace for 'nosuchvm'" in r.stderr


def test_up_twice_changes_nothing(two_hosts: str) -> None:
    before = snapshot(two_hosts)
    vpe("lab", "up", str(TWO_HOSTS), "--prefix", two_hosts)
    assert snapshot(two_hosts) == before


def test_down_leaves_nothing_and_is_idempotent() -> None:
    prefix = new_prefix()
    try:
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix)
        pids = [int(x.read_text()) for x in (build.STATE_ROOT / prefix).glob("*/*.pid")]
        assert len(pids) >= 2
        vpe("lab", "down", "--prefix", prefix)
        assert lab_namespaces(prefix) == []
        assert not (build.STATE_ROOT / prefix).exists()
        assert not [pid for pid in pids if running(pid)]
        r = vpe("lab", "down", "--prefix", prefix)  # again: nothing to do, still success
        assert "0 namespaces deleted" in r.stdout
    finally:
        teardown_lab(prefix)


def test_down_after_a_failed_half_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` dies while wiring VMs, with a stray process in a host: `down` still removes all."""
    prefix = new_prefix()
    stray: subprocess.Popen[bytes] | None = None
    lab = build.make_lab(load_topology(TWO_HOSTS), prefix)
    real_veth_add = netns.veth_add

    def failing_veth_add(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        if name_a.startswith("vm-"):
            raise netns.NetnsError("injected failure while wiring a VM")
        real_veth_add(ns_a, name_a, ns_b, name_b)

    monkeypatch.setattr(netns, "veth_add", failing_veth_add)
    try:
        with pytest.raises(netns.NetnsError, match="injected"):
            build.up(lab)
        assert f"{prefix}-h1" in lab_namespaces(prefix)
        stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-h1", "sleep", "30"])
        vpe("lab", "down", "--prefix", prefix)
        assert lab_namespaces(prefix) == []
        assert stray.wait(timeout=5) != 0  # killed by `down` (found through `ip netns pids`)
    finally:
        if stray is not None and stray.poll() is None:
            stray.kill()
            stray.wait(timeout=5)
        teardown_lab(prefix)


def test_down_after_processes_fail_to_start() -> None:
    prefix = new_prefix()
    lab = build.make_lab(load_topology(TWO_HOSTS), prefix)

    def broken(lab: build.Lab, host: object) -> list[ProcessSpec]:
        return [ProcessSpec(name="broken", argv=("sh", "-c", "echo cannot start; exit 3"))]

    try:
        with pytest.raises(build.LabError, match="cannot start"):
            build.up(lab, processes=broken)
        assert len(lab_namespaces(prefix)) == 5
        vpe("lab", "down", "--prefix", prefix)
        assert lab_namespaces(prefix) == []
        assert not (build.STATE_ROOT / prefix).exists()
    finally:
        teardown_lab(prefix)


def test_up_with_a_smaller_topology_removes_the_rest(tmp_path: Path) -> None:
    prefix = new_prefix()
    smaller = tmp_path / "one-vm.yaml"
    text = TWO_HOSTS.read_text()
    smaller.write_text(text[: text.index("  - name: blue2")])
    try:
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix, "--no-processes")
        assert f"{prefix}-blue2" in lab_namespaces(prefix)
        r = vpe("lab", "up", str(smaller), "--prefix", prefix, "--no-processes")
        assert "1 removed" in r.stdout
        assert f"{prefix}-blue2" not in lab_namespaces(prefix)
        assert not netns.link_exists(f"{prefix}-h2", "vm-blue2")
        st = json.loads(vpe("lab", "status", "--prefix", prefix, "--json").stdout)
        assert st["attachments"] == ["blue1"]
    finally:
        teardown_lab(prefix)


def _foreign_namespace(name: str) -> subprocess.Popen[bytes]:
    """A namespace the lab did not create, with a process of its own running in it."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    return subprocess.Popen(["ip", "netns", "exec", name, "sleep", "30"])


def _cleanup_foreign(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def test_up_and_down_leave_foreign_namespaces_alone() -> None:
    """Issue 13, finding 12: a namespace whose name merely starts with the lab's prefix is
    neither deleted nor has its processes killed, by `up` (pruning) or by `down`."""
    prefix = new_prefix()
    stranger = f"{prefix}-stranger"
    proc = _foreign_namespace(stranger)
    try:
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix, "--no-processes")
        assert stranger in lab_namespaces(prefix) and proc.poll() is None
        vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix, "--no-processes")
        assert stranger in lab_namespaces(prefix) and proc.poll() is None
        vpe("lab", "down", "--prefix", prefix)
        assert lab_namespaces(prefix) == [stranger] and proc.poll() is None
    finally:
        _cleanup_foreign(stranger, proc)
        teardown_lab(prefix)


def test_up_refuses_a_namespace_it_did_not_create() -> None:
    """A namespace of a planned name that the lab did not create: `up` refuses (exit 1, named)
    and neither it nor its process is touched, by `up` or by `down`."""
    prefix = new_prefix()
    taken = f"{prefix}-h1"
    proc = _foreign_namespace(taken)
    try:
        r = vpe("lab", "up", str(TWO_HOSTS), "--prefix", prefix, "--no-processes", check=False)
        assert r.returncode == 1 and taken in r.stderr and "not created by" in r.stderr, r.stderr
        assert proc.poll() is None
        vpe("lab", "down", "--prefix", prefix)
        assert taken in lab_namespaces(prefix) and proc.poll() is None
    finally:
        _cleanup_foreign(taken, proc)
        teardown_lab(prefix)


def test_down_removes_the_cables_of_movable_vms() -> None:
    from vpe.lab import move

    prefix = new_prefix()
    lab = build.make_lab(load_topology(TWO_HOSTS), prefix)
    try:
        build.up(lab, start_processes=False)
        vm = lab.topology.vms[0]
        cab = move.make_movable(lab, vm)
        assert cab in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        vpe("lab", "down", "--prefix", prefix)
        assert lab_namespaces(prefix) == []  # the cable (<prefix>-<vm>.c) went with the lab
    finally:
        teardown_lab(prefix)
