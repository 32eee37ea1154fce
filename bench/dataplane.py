"""Benchmark: VM-to-VM forwarding through vpe's dataplane drivers vs plain Linux.

    sudo .venv/bin/python bench/dataplane.py [--driver ebpf|userspace|linux ...] \\
        [--runs 3] [--duration 5] [--offloads default|off] \\
        [--encap mpls-in-udp|mpls-in-gre] [--prefix benchdp] [--json FILE]

Two measurements, each the median of ``--runs`` runs, on set-ups of the same
shape (VM - host - underlay bridge - host - VM, all network namespaces), one
per ``--driver`` (default: all three, in one run; each vpe driver gets its
ratio to the Linux figures of the same run):

* **ebpf** / **userspace**: ``src/vpe/lab/examples/two-hosts.yaml`` built
  with ``vpe lab`` under its own prefix with that dataplane driver (agents,
  BGP, forwarders; both hosts restricted to the chosen encapsulation). The benchmark waits until each agent's
  ``/v1/vpns`` table holds the other VM's /32, then sends from blue1
  (192.0.2.11) to blue2 (192.0.2.12).
* **linux**: the same namespaces wired by hand, the hosts forwarding with
  the kernel (``ip_forward``, proxy ARP toward the VM, a static /32 route
  via the other host), no encapsulation: the ceiling of this machine.

Loads (all bounded in time by ``iperf3 -t`` and a process timeout, and in
address to the test-bed ranges):

* TCP throughput: ``iperf3 -c 192.0.2.12 -t D -J``, server in the other VM;
  receiver-side bits/s.
* UDP packet rate: ``iperf3 -u -l 64 -b RATE -t D``; packets per second
  delivered to the server (sent minus lost, over the receiver's interval)
  and the offered rate.

``--offloads default`` (the default) leaves the VMs' checksum/segmentation
offloads at a veth's defaults (on) for ebpf and linux; the userspace driver
always runs with them off (it needs complete frames, see docs/dataplane.md),
which the JSON records. ``--offloads off`` turns them off everywhere, so all
move MTU-sized packets and the ratio compares packet processing, not GSO.
For ebpf the kernel's BPF run-time statistics are on (``VPE_EBPF_STATS=1``)
and one extra UDP run reports the nanoseconds each program takes per packet.
Everything built is removed at the end, also on failure or Ctrl-C.
``--keep`` leaves the vpe lab up (for profiling the forwarders).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "src" / "vpe" / "lab" / "examples" / "two-hosts.yaml"
SRC_IP, DST_IP = "192.0.2.11", "192.0.2.12"
GATEWAY = "192.0.2.1"
UL1, UL2 = "198.18.0.11", "198.18.0.12"
IPERF_PORT = 5201
CONVERGE_TIMEOUT = 60.0


class BenchError(Exception):
    pass


# -- helpers -------------------------------------------------------------------------


def sh(*args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise BenchError(f"`{' '.join(args)}` failed: {r.stderr.strip() or r.stdout.strip()}")
    return r


def in_ns(
    ns: str, *args: str, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "iperf3": sh("iperf3", "--version", check=False).stdout.split("\n")[0].strip(),
    }


def wait_ping(ns: str, dst: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if in_ns(ns, "ping", "-c1", "-W1", dst, check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise BenchError(f"{dst} not reachable from {ns} within {timeout:.0f} s")


# -- measurements --------------------------------------------------------------------


def iperf(client_ns: str, server_ns: str, args: list[str], duration: int) -> dict[str, Any]:
    """One bounded iperf3 run (server in ``server_ns``, one test, then it exits)."""
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            server_ns,
            "iperf3",
            "-s",
            "-1",
            "-B",
            DST_IP,
            "-p",
            str(IPERF_PORT),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.4)
        r = in_ns(
            client_ns,
            "iperf3",
            "-c",
            DST_IP,
            "-p",
            str(IPERF_PORT),
            "-t",
            str(duration),
            "-J",
            *args,
            check=False,
            timeout=duration + 25,
        )
        try:
            data: dict[str, Any] = json.loads(r.stdout)
        except json.JSONDecodeError:
            raise BenchError(f"iperf3 {args}: no JSON output: {r.stderr.strip()[:300]}") from None
        if "error" in data:
            raise BenchError(f"iperf3 {args}: {data['error']}")
        return data
    finally:
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def tcp_run(client_ns: str, server_ns: str, duration: int) -> dict[str, float]:
    end = iperf(client_ns, server_ns, [], duration)["end"]
    return {
        "mbit_s": end["sum_received"]["bits_per_second"] / 1e6,
        "retransmits": float(end["sum_sent"].get("retransmits", 0)),
    }


def udp_run(client_ns: str, server_ns: str, duration: int, rate: str) -> dict[str, float]:
    end = iperf(client_ns, server_ns, ["-u", "-l", "64", "-b", rate], duration)["end"]
    sent, rcvd = end["sum_sent"], end["sum_received"]
    delivered = max(0, rcvd["packets"] - rcvd["lost_packets"])
    return {
        "offered_pps": sent["packets"] / max(sent["seconds"], 1e-9),
        "delivered_pps": delivered / max(rcvd["seconds"], 1e-9),
        "loss_percent": 100.0 * (1 - delivered / sent["packets"]) if sent["packets"] else 0.0,
    }


def measure(
    name: str,
    client_ns: str,
    server_ns: str,
    runs: int,
    duration: int,
    rate: str,
    hook: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    tcp: list[dict[str, float]] = []
    udp: list[dict[str, float]] = []
    for i in range(runs):
        tcp.append(tcp_run(client_ns, server_ns, duration))
        print(f"  {name} run {i + 1}/{runs}: tcp {tcp[-1]['mbit_s']:8.1f} Mbit/s", flush=True)
        if hook:
            hook("udp")
        udp.append(udp_run(client_ns, server_ns, duration, rate))
        print(
            f"  {name} run {i + 1}/{runs}: udp {udp[-1]['delivered_pps']:8.0f} pps delivered "
            f"of {udp[-1]['offered_pps']:.0f} offered",
            flush=True,
        )
    return {
        "tcp_mbit_s": statistics.median(r["mbit_s"] for r in tcp),
        "tcp_retransmits": statistics.median(r["retransmits"] for r in tcp),
        "udp64_delivered_pps": statistics.median(r["delivered_pps"] for r in udp),
        "udp64_offered_pps": statistics.median(r["offered_pps"] for r in udp),
        "udp64_loss_percent": statistics.median(r["loss_percent"] for r in udp),
        "runs": {"tcp": tcp, "udp": udp},
    }


def program_stats(lab: Any) -> dict[str, tuple[int, int]]:
    """(run_time_ns, run_cnt) of the port program on h1 and the underlay program on h2."""
    out = {}
    for host, prog in (("h1", "vpe_port"), ("h2", "vpe_underlay")):
        p = forwarder_counters(lab, host).get("ebpf", {}).get("programs", {}).get(prog, {})
        out[f"{host} {prog}"] = (int(p.get("run_time_ns", 0)), int(p.get("run_cnt", 0)))
    return out


def ns_per_packet(lab: Any, client_ns: str, server_ns: str, duration: int, rate: str) -> dict[str, Any]:
    """One more 64-octet UDP run: kernel BPF statistics of each program, per packet."""
    before = program_stats(lab)
    run = udp_run(client_ns, server_ns, duration, rate)
    after = program_stats(lab)
    res: dict[str, Any] = {"udp64_delivered_pps": run["delivered_pps"]}
    for k, (ns1, n1) in after.items():
        ns0, n0 = before[k]
        res[k] = {"packets": n1 - n0, "ns_per_packet": (ns1 - ns0) / (n1 - n0) if n1 > n0 else None}
    return res


# -- the vpe lab -------------------------------------------------------------------


@contextlib.contextmanager
def vpe_lab(prefix: str, encap: str, keep: bool, driver: str = "userspace",
            offloads: bool = False) -> Iterator[Any]:  # fmt: skip
    from vpe.lab import build
    from vpe.lab.topology import parse_topology

    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["prefix"] = prefix
    doc["driver"] = driver
    for h in doc["hosts"]:
        h["encapsulations"] = [encap]
    topo = parse_topology(yaml.safe_dump(doc), f"{EXAMPLE.name} (bench)")
    lab = build.make_lab(topo, prefix)
    build.down(prefix, lab.state_dir)  # a stale lab of an earlier, killed run
    try:
        build.up(lab)
        if offloads:
            for vm in ("blue1", "blue2"):
                in_ns(lab.ns(vm), sys.executable, "-m", "vpe.dataplane.userspace.offload", "--on", "eth0")
        yield lab
    finally:
        if keep:
            print(f"lab {prefix} kept: `vpe lab down --prefix {prefix}` removes it")
        else:
            build.down(prefix, lab.state_dir)


def wait_converged(lab: Any, timeout: float = CONVERGE_TIMEOUT) -> float:
    """Poll each agent's /v1/vpns until its VRF holds the other VM's /32."""
    t0 = time.monotonic()
    want = {"h1": f"{DST_IP}/32", "h2": f"{SRC_IP}/32"}
    pending = dict(want)
    last = ""
    while pending and time.monotonic() - t0 < timeout:
        for host, prefix in list(pending.items()):
            sock = str(lab.node_dir(host) / "vpe.sock")
            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=5) as c:
                    vpns = c.get("http://vpe/v1/vpns").json()
            except (httpx.HTTPError, OSError, ValueError) as e:
                last = f"{host}: {e}"
                continue
            if any(prefix in (v.get("table") or {}) for v in vpns):
                del pending[host]
        if pending:
            time.sleep(0.25)
    if pending:
        raise BenchError(f"no convergence in {timeout:.0f} s: missing {pending} {last}")
    return time.monotonic() - t0


def forwarder_pids(lab: Any) -> dict[str, int]:
    out = {}
    for host in ("h1", "h2"):
        with contextlib.suppress(OSError, ValueError):
            out[host] = int((lab.node_dir(host) / "forwarder.pid").read_text().strip())
    return out


def forwarder_counters(lab: Any, host: str) -> dict[str, Any]:
    from vpe.dataplane.channel import FibClient

    with FibClient.connect(str(lab.node_dir(host) / "forwarder.sock")) as fib:
        c: dict[str, Any] = fib.counters()
        return c


# -- the plain-Linux baseline -------------------------------------------------------


@contextlib.contextmanager
def linux_lab(prefix: str, offloads: bool = False) -> Iterator[dict[str, str]]:
    """VM - host - bridge - host - VM, kernel IP forwarding, static routes."""
    ns = {n: f"{prefix}-{n}" for n in ("vm1", "h1", "ul", "h2", "vm2")}
    try:
        for name in ns.values():
            sh("ip", "netns", "del", name, check=False)
            sh("ip", "netns", "add", name)
        sh("ip", "-n", ns["ul"], "link", "add", "br0", "type", "bridge", "stp_state", "0")
        sh("ip", "-n", ns["ul"], "link", "set", "br0", "up")
        sides = (("h1", "vm1", UL1, UL2, SRC_IP, DST_IP), ("h2", "vm2", UL2, UL1, DST_IP, SRC_IP))
        for host, vm, ul_me, ul_peer, vm_ip, peer_ip in sides:
            h, v = ns[host], ns[vm]
            sh(
                "ip",
                "-n",
                h,
                "link",
                "add",
                "ul0",
                "type",
                "veth",
                "peer",
                "name",
                f"p-{host}",
                "netns",
                ns["ul"],
            )
            sh("ip", "-n", ns["ul"], "link", "set", f"p-{host}", "master", "br0", "up")
            sh(
                "ip",
                "-n",
                h,
                "link",
                "add",
                "vm-port",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                v,
            )
            for n in (h, v):
                sh("ip", "-n", n, "link", "set", "lo", "up")
            in_ns(
                h,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            )
            sh("ip", "-n", h, "addr", "add", f"{ul_me}/24", "dev", "ul0")
            sh("ip", "-n", h, "link", "set", "ul0", "up")
            sh("ip", "-n", h, "addr", "add", f"{GATEWAY}/32", "dev", "vm-port")
            sh("ip", "-n", h, "link", "set", "vm-port", "up")
            in_ns(h, "sysctl", "-qw", "net.ipv4.conf.vm-port.proxy_arp=1")
            sh("ip", "-n", h, "route", "add", f"{vm_ip}/32", "dev", "vm-port")
            sh("ip", "-n", h, "route", "add", f"{peer_ip}/32", "via", ul_peer, "dev", "ul0")
            if not offloads:
                in_ns(v, sys.executable, "-m", "vpe.dataplane.userspace.offload", "eth0")
            sh("ip", "-n", v, "addr", "add", f"{vm_ip}/24", "dev", "eth0")
            sh("ip", "-n", v, "link", "set", "eth0", "up")
            sh("ip", "-n", v, "route", "add", "default", "via", GATEWAY, "dev", "eth0", "onlink")
        yield ns
    finally:
        for name in ns.values():
            sh("ip", "netns", "del", name, check=False)


# -- main ----------------------------------------------------------------------------


DRIVERS = ("ebpf", "userspace", "linux")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--driver", action="append", choices=DRIVERS,
        help="measure this set-up (repeatable; default: all three; linux is always measured "
             "when a vpe driver is, for the ratios)",
    )  # fmt: skip
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--duration", type=int, default=5, help="iperf3 -t seconds (1-30)")
    ap.add_argument("--encap", choices=("mpls-in-udp", "mpls-in-gre"), default="mpls-in-udp")
    ap.add_argument("--offloads", choices=("default", "off"), default="default",
                    help="the VMs' offloads (userspace: always off)")  # fmt: skip
    ap.add_argument("--udp-rate", default="1G", help="iperf3 -b for the 64-octet UDP test")
    ap.add_argument("--prefix", default="benchdp", help="vpe lab prefix (baseline: PREFIX + 'l')")
    ap.add_argument("--skip-vpe", action="store_true", help="no vpe driver (linux only)")
    ap.add_argument("--skip-linux", action="store_true", help="no baseline (no ratios)")
    ap.add_argument("--keep", action="store_true", help="leave the vpe lab up afterwards")
    ap.add_argument(
        "--profile", metavar="DIR", help="py-spy raw profiles of both forwarders under UDP load"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/dataplane.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.duration <= 30 or not 1 <= args.runs <= 20:
        ap.error("--duration 1-30, --runs 1-20")
    drivers = list(dict.fromkeys(args.driver or DRIVERS))
    if args.skip_vpe:
        drivers = [d for d in drivers if d == "linux"]
    if args.skip_linux:
        drivers = [d for d in drivers if d != "linux"]
    elif "linux" not in drivers and drivers:
        drivers.append("linux")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks remove the namespaces.
    signal.signal(signal.SIGTERM, _interrupt)

    info = machine()
    result: dict[str, Any] = {
        "machine": info,
        "encap": args.encap,
        "runs": args.runs,
        "duration_s": args.duration,
        "udp_rate": args.udp_rate,
        "offloads": args.offloads,
        "drivers": {},
    }
    print(
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), kernel {info['kernel']}, "
        f"Python {info['python']}, {info['iperf3']}",
        flush=True,
    )
    offloads_on = args.offloads == "default"
    for driver in drivers:
        if driver == "linux":
            with linux_lab(args.prefix + "l", offloads_on) as ns:
                wait_ping(ns["vm1"], DST_IP)
                print(f"linux baseline {args.prefix}l-* up", flush=True)
                res = measure("linux", ns["vm1"], ns["vm2"], args.runs, args.duration, args.udp_rate)
                res["vm_offloads"] = "on" if offloads_on else "off"
                result["drivers"]["linux"] = result["linux"] = res
            continue
        if driver == "ebpf":
            os.environ["VPE_EBPF_STATS"] = "1"
        on = offloads_on and driver != "userspace"
        with vpe_lab(args.prefix, args.encap, args.keep, driver, on) as lab:
            took = wait_converged(lab)
            print(
                f"vpe lab {args.prefix} ({driver}) up, BGP converged in {took:.1f} s ({args.encap})",
                flush=True,
            )
            wait_ping(lab.ns("blue1"), DST_IP)
            hook = None
            if args.profile:
                hook = _profiler(lab, Path(args.profile), args.duration)
            res = measure(
                driver, lab.ns("blue1"), lab.ns("blue2"), args.runs, args.duration, args.udp_rate, hook
            )
            res["vm_offloads"] = "on" if on else "off"
            if driver == "ebpf":
                res["bpf_stats"] = ns_per_packet(
                    lab, lab.ns("blue1"), lab.ns("blue2"), args.duration, args.udp_rate
                )
            c1, c2 = forwarder_counters(lab, "h1"), forwarder_counters(lab, "h2")
            res["forwarder_drops"] = {"h1": c1["drops"], "h2": c2["drops"]}
            res["forwarder_io_errors"] = {"h1": c1["io_errors"], "h2": c2["io_errors"]}
            if "ebpf" in c1:
                res["ebpf_punts"] = {"h1": c1["ebpf"]["punts"], "h2": c2["ebpf"]["punts"]}
            result["drivers"][driver] = res
            if driver == "userspace":
                result["vpe"] = res
        os.environ.pop("VPE_EBPF_STATS", None)
    _report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _profiler(lab: Any, out: Path, duration: int) -> Callable[[str], None]:
    """Before each UDP run: py-spy both forwarders for most of the run (background)."""
    out.mkdir(parents=True, exist_ok=True)
    spy = ROOT / ".venv" / "bin" / "py-spy"
    count = [0]

    def start(_what: str) -> None:
        count[0] += 1
        for host, pid in forwarder_pids(lab).items():
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(max(1, duration - 1)),
                    "-f",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(out / f"{host}-udp{count[0]}.raw"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    return start


def _report(r: dict[str, Any]) -> None:
    print()
    m = r["machine"]
    print(
        f"machine: {m['cpus']} CPUs, {m['cpu_model']}; encapsulation {r['encap']}; "
        f"median of {r['runs']} runs of {r['duration_s']} s; VM offloads {r['offloads']}"
    )
    print(
        f"{'driver':10s} {'TCP Mbit/s':>12s} {'UDP-64 pps':>12s} {'(offered)':>12s} "
        f"{'TCP/linux':>10s} {'UDP/linux':>10s}  offloads"
    )
    base = r["drivers"].get("linux")
    for name, x in r["drivers"].items():
        if base and name != "linux":
            x["tcp_ratio"] = x["tcp_mbit_s"] / base["tcp_mbit_s"]
            x["udp64_pps_ratio"] = x["udp64_delivered_pps"] / base["udp64_delivered_pps"]
        tr = f"{x['tcp_ratio']:10.3f}" if "tcp_ratio" in x else f"{'':10s}"
        ur = f"{x['udp64_pps_ratio']:10.3f}" if "udp64_pps_ratio" in x else f"{'':10s}"
        print(
            f"{name:10s} {x['tcp_mbit_s']:12.1f} {x['udp64_delivered_pps']:12.0f} "
            f"{x['udp64_offered_pps']:12.0f} {tr} {ur}  {x.get('vm_offloads', '')}"
        )
    if "userspace" in r["drivers"] and base:
        u = r["drivers"]["userspace"]
        r["ratio"] = {"tcp": u["tcp_ratio"], "udp64_pps": u["udp64_pps_ratio"]}
    e = r["drivers"].get("ebpf", {}).get("bpf_stats")
    if e:
        for k, v in e.items():
            if isinstance(v, dict) and v.get("ns_per_packet") is not None:
                print(f"ebpf {k}: {v['ns_per_packet']:.0f} ns per packet ({v['packets']} packets, 64-octet UDP)")


if __name__ == "__main__":
    from vpe.lab.layout import LabError
    from vpe.lab.netns import NetnsError

    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted; lab removed", file=sys.stderr)
        raise SystemExit(130) from None
    except (BenchError, LabError, NetnsError, subprocess.TimeoutExpired) as e:
        print(f"bench/dataplane.py: {e}", file=sys.stderr)
        raise SystemExit(1) from None
