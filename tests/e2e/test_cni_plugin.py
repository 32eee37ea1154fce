"""E2E: ``vpe-cni`` run exactly as a container runtime runs a CNI plugin.

The two-host lab (``src/vpe/lab/examples/two-hosts.yaml``, own prefix); a
"container" is a fresh network namespace. The plugin is found by its
``type`` in ``CNI_PATH`` (a directory holding ``vpe-cni``, then Debian's
``/usr/lib/cni`` with the reference ``host-local``), executed in h1's
namespace (where h1's agent and forwarder run) with the ``CNI_*``
environment and the network configuration on stdin:

* ADD attaches the container to the blue VPN with an address from
  host-local (192.0.2.40-49); the result is CNI 1.0 JSON; the container
  reaches blue2 on h2 and blue2 reaches it;
* CHECK (with ``prevResult``) passes;
* DEL detaches the port, deletes the veth and releases the address; a second
  DEL succeeds too;
* an ADD the agent refuses (an unknown VPN) is a CNI error object and leaves
  nothing behind (no veth, the address released);
* VERSION lists the versions spoken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_lab import E2E, RunningLab, new_prefix

from vpe.cni.spec import host_ifname, port_name
from vpe.lab import build
from vpe.lab.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
TWO_HOSTS = ROOT / "src" / "vpe" / "lab" / "examples" / "two-hosts.yaml"
DEBIAN_CNI = Path("/usr/lib/cni")

pytestmark = [
    *E2E,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (iputils-ping)"),
    pytest.mark.skipif(not (DEBIAN_CNI / "host-local").exists(),
                       reason="needs the reference host-local IPAM plugin in /usr/lib/cni (Debian's "
                              "containernetworking-plugins; make deps installs it)"),
]

BLUE2 = "192.0.2.12"


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    env_keep = os.environ.pop("VPE_LAB_FORWARDER", None)
    prefix = new_prefix("cn")
    running = RunningLab(build.make_lab(load_topology(TWO_HOSTS), prefix), prefix)
    try:
        build.up(running.lab)
        running.wait_converged()
        yield running
    finally:
        if env_keep is not None:
            os.environ["VPE_LAB_FORWARDER"] = env_keep
        running.teardown()


@pytest.fixture(scope="module")
def cni_path(lab: RunningLab) -> str:
    """A CNI_PATH as a runtime has one: vpe-cni's directory, then Debian's plugins."""
    d = lab.lab.state_dir / "cni-bin"
    d.mkdir(parents=True, exist_ok=True)
    installed = Path(sys.executable).parent / "vpe-cni"
    if installed.exists():  # the console script of the installed package
        (d / "vpe-cni").symlink_to(installed)
    else:  # a source checkout not installed again since vpe-cni was added
        (d / "vpe-cni").write_text(f"#!{sys.executable}\nfrom vpe.cni.plugin import main\nraise SystemExit(main())\n")
        (d / "vpe-cni").chmod(0o755)
    return f"{d}:{DEBIAN_CNI}"


def netconf(lab: RunningLab, vpn: str = "blue", **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0", "name": "blue-net", "type": "vpe-cni",
        "agent_socket": str(lab.lab.node_dir("h1") / "vpe.sock"), "vpn": vpn,
        "ipam": {"type": "host-local", "dataDir": str(lab.lab.state_dir / "cni-ipam"),
                 "ranges": [[{"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.40", "rangeEnd": "192.0.2.49",
                              "gateway": "192.0.2.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
        **extra,
    }


def runtime(lab: RunningLab, cni_path: str, command: str, conf: dict[str, Any], container: str,
            netns: str, ifname: str = "eth0") -> tuple[int, Any]:
    """What a runtime does: find the plugin named by ``type`` in CNI_PATH and exec it (in h1's
    namespace) with the CNI_* environment and the configuration on stdin."""
    plugin = next(Path(d, conf["type"]) for d in cni_path.split(":") if Path(d, conf["type"]).exists())
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container, CNI_NETNS=netns,
               CNI_IFNAME=ifname, CNI_ARGS="", CNI_PATH=cni_path)
    r = subprocess.run(["ip", "netns", "exec", lab.ns("h1"), str(plugin)], input=json.dumps(conf).encode(),
                       capture_output=True, env=env, timeout=60)
    out = r.stdout.decode().strip()
    return r.returncode, (json.loads(out) if out else None) if r.returncode == 0 or out else r.stderr.decode()


def ping_from(ns: str, dst: str, tries: int) -> bool:
    for _ in range(tries):
        if subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst],
                          capture_output=True, timeout=5).returncode == 0:
            return True
        time.sleep(0.3)
    return False


def host_links(lab: RunningLab) -> set[str]:
    out = lab.run("h1", "ip", "-j", "link", "show", check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def test_cni_add_check_del_with_host_local(lab: RunningLab, cni_path: str) -> None:
    code, ver = runtime(lab, cni_path, "VERSION", {"cniVersion": "1.0.0", "type": "vpe-cni"}, "", "")
    assert code == 0 and "1.0.0" in ver["supportedVersions"], ver

    ns = f"{lab.prefix}-ctr1"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    lab.extra_namespaces.append(ns)
    netns, cid = f"/var/run/netns/{ns}", "ctr1-" + lab.prefix
    conf = netconf(lab)

    t0 = time.monotonic()
    code, res = runtime(lab, cni_path, "ADD", conf, cid, netns)
    t_add = time.monotonic() - t0
    assert code == 0, res
    assert res["cniVersion"] == "1.0.0"
    assert res["ips"] == [{"address": "192.0.2.40/24", "gateway": "192.0.2.1", "interface": 1}]
    assert res["interfaces"][1]["name"] == "eth0" and res["interfaces"][1]["sandbox"] == netns
    host_if = res["interfaces"][0]["name"]
    lease = lab.lab.state_dir / "cni-ipam" / "blue-net" / "192.0.2.40"
    assert lease.read_text().startswith(cid)  # host-local's allocation, keyed by the container
    assert host_if == host_ifname(cid, "eth0") and host_if in host_links(lab)
    port = lab.api("h1", f"/v1/ports/{port_name(cid, 'eth0')}")
    assert port["vrf"] == "blue" and port["ips"] == ["192.0.2.40/24"] and port["ifname"] == host_if
    assert ping_from(ns, BLUE2, tries=40), "the container does not reach blue2 on h2"
    assert ping_from(lab.ns("blue2"), "192.0.2.40", tries=10), "blue2 does not reach the container"

    code, out = runtime(lab, cni_path, "CHECK", {**conf, "prevResult": res}, cid, netns)
    assert code == 0 and out is None, out

    t0 = time.monotonic()
    code, out = runtime(lab, cni_path, "DEL", {**conf, "prevResult": res}, cid, netns)
    t_del = time.monotonic() - t0
    assert code == 0 and out is None, out
    print(f"\nvpe-cni as a runtime runs it: ADD {t_add * 1000:.0f} ms, DEL {t_del * 1000:.0f} ms "
          "(host-local IPAM, veth, agent attach/detach)")
    assert host_if not in host_links(lab)
    assert port_name(cid, "eth0") not in [p["name"] for p in lab.api("h1", "/v1/ports")]
    assert not lease.exists()
    code, out = runtime(lab, cni_path, "DEL", conf, cid, netns)  # DEL is idempotent
    assert code == 0 and out is None, out
    code, out = runtime(lab, cni_path, "CHECK", {**conf, "prevResult": res}, cid, netns)
    assert code == 1 and out["code"] == 101 and "eth0" in out["msg"], out


def test_cni_add_refused_leaves_nothing(lab: RunningLab, cni_path: str) -> None:
    ns = f"{lab.prefix}-ctr2"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    lab.extra_namespaces.append(ns)
    before = host_links(lab)
    code, out = runtime(lab, cni_path, "ADD", netconf(lab, vpn="nosuchvpn"), "ctr2-" + lab.prefix, f"/var/run/netns/{ns}")
    assert code == 1 and out["code"] == 100 and "vpn: no VPN instance 'nosuchvpn'" in out["msg"], out
    assert host_links(lab) == before
    assert not list((lab.lab.state_dir / "cni-ipam" / "blue-net").glob("192.0.2.*"))
    code, out = runtime(lab, cni_path, "ADD", {**netconf(lab), "color": "red"}, "ctr2-" + lab.prefix,
                        f"/var/run/netns/{ns}")
    assert code == 1 and out["code"] == 2 and out["msg"].startswith("color: "), out
