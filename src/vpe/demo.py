"""`make demo`: bring up the demo lab and prove who can reach whom.

Three hosts and a route reflector, each host a network namespace running a
vpe agent and its userspace forwarder; two tenants sharing 192.0.2.0/24 and
2001:db8:1::/64, and a shared-services VPN both reach. The expected
connectivity follows from the route targets alone: VM A reaches VM B when
A's VRF imports a route target B's VRF exports and B's VRF imports one A's
exports (the answer must find its way back). The demo pings every pair over
IPv4 and IPv6, prints expected vs seen as a table, and exits non-zero if any
cell differs. The lab stays up for exploring until `make demo-down`.

Run: ``python -m vpe.demo [--topology FILE] [--keep-going]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from .lab import build
from .lab.layout import Lab
from .lab.topology import Topology, VmConfig, load_topology

console = Console()
CONVERGE_TIMEOUT = 90.0


def _rts(values: list[object]) -> set[str]:
    return {str(v) for v in values}


def vm_rts(t: Topology, vm: VmConfig) -> tuple[set[str], set[str]]:
    """(import RTs, export RTs) of the VRF a VM is attached to."""
    imp: set[str] = set()
    exp: set[str] = set()
    for name in vm.vpns:
        v = t.vpn(name)
        imp |= _rts(list(v.import_))
        exp |= _rts(list(v.export))
    return imp, exp


def expected(t: Topology, a: VmConfig, b: VmConfig) -> bool:
    ai, ae = vm_rts(t, a)
    bi, be = vm_rts(t, b)
    return bool(ai & be) and bool(bi & ae)


def _api(lab: Lab, host: str, path: str) -> object:
    sock = str(lab.node_dir(host) / "vpe.sock")
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=5) as c:
        r = c.get(f"http://vpe{path}")
        r.raise_for_status()
        return r.json()


def wait_converged(lab: Lab, t: Topology) -> float:
    """Until every VRF holds a route to every VM it should reach (bounded)."""
    start = time.monotonic()
    want: dict[str, set[str]] = {}
    for a in t.vms:
        for b in t.vms:
            if a is not b and expected(t, a, b):
                for addr in (b.ipv4, b.ipv6):
                    if addr is not None:
                        want.setdefault(a.host, set()).add(str(addr.ip))
    while True:
        missing = []
        for host, addrs in want.items():
            try:
                vrfs = _api(lab, host, "/v1/vpns")
            except (httpx.HTTPError, OSError):
                missing.append(f"{host}: agent API not up")
                continue
            have = set()
            for v in vrfs:  # type: ignore[attr-defined]
                for prefix in v.get("table", {}):
                    have.add(str(ipaddress.ip_network(prefix).network_address))
            lost = addrs - have
            if lost:
                missing.append(f"{host}: {len(lost)} routes")
        if not missing:
            return time.monotonic() - start
        if time.monotonic() - start > CONVERGE_TIMEOUT:
            raise RuntimeError(f"not converged after {CONVERGE_TIMEOUT:.0f} s: " + "; ".join(missing))
        time.sleep(0.5)


def ping(lab: Lab, src: VmConfig, dst_ip: str) -> bool:
    ns = lab.ns(src.name)
    cmd = ["ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", dst_ip]
    r = subprocess.run(cmd, capture_output=True, timeout=10)
    return r.returncode == 0


def matrix(lab: Lab, t: Topology) -> tuple[Table, int, int]:
    cells: dict[tuple[str, str, int], concurrent.futures.Future[bool]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for a in t.vms:
            for b in t.vms:
                if a is b:
                    continue
                for ver, addr in ((4, b.ipv4), (6, b.ipv6)):
                    if addr is not None and (ver == 4 and a.ipv4 or ver == 6 and a.ipv6):
                        cells[(a.name, b.name, ver)] = pool.submit(ping, lab, a, str(addr.ip))
    table = Table(title="connectivity: expected / seen (IPv4, IPv6)")
    table.add_column("from \\ to")
    for b in t.vms:
        table.add_column(f"{b.name}\n{b.ipv4.ip if b.ipv4 else ''}")
    bad = total = 0
    for a in t.vms:
        row = [f"{a.name} ({'+'.join(a.vpns)})"]
        for b in t.vms:
            if a is b:
                row.append("-")
                continue
            exp = expected(t, a, b)
            parts = []
            for ver in (4, 6):
                f = cells.get((a.name, b.name, ver))
                if f is None:
                    continue
                seen = f.result()
                total += 1
                ok = seen == exp
                bad += not ok
                mark = ("reach" if seen else "no") + f"{ver}"
                parts.append(f"[green]{mark}[/green]" if ok else f"[bold red]{mark}!({'reach' if exp else 'no'} expected)[/bold red]")
            row.append(" ".join(parts))
        table.add_row(*row)
    return table, bad, total


def main() -> None:
    ap = argparse.ArgumentParser(description="vpe demo: a lab and its connectivity matrix")
    ap.add_argument("--topology", type=Path, default=None)
    ap.add_argument("--prefix", default=None, help="namespace prefix (default: the topology's, 'demo')")
    args = ap.parse_args()
    path = args.topology or Path(str(resources.files("vpe.lab") / "examples" / "demo.yaml"))
    t = load_topology(path)
    lab = build.make_lab(t, args.prefix, None)
    console.print(f"[bold]vpe demo[/bold]: building lab {lab.prefix!r} from {path}")
    t0 = time.monotonic()
    build.up(lab)
    console.print(f"lab up in {time.monotonic() - t0:.1f} s; waiting for BGP to converge ...")
    try:
        conv = wait_converged(lab, t)
    except RuntimeError as e:
        console.print(f"[bold red]{e}[/bold red]")
        sys.exit(1)
    console.print(f"converged in {conv:.1f} s")
    table, bad, total = matrix(lab, t)
    console.print(table)
    summary = json.dumps({"cells": total, "unexpected": bad})
    console.print(
        f"""
Where to look next:
  vpe lab status --prefix {lab.prefix}
  vpe lab exec red1 -- ping -c 3 192.0.2.12
  vpe show bgp summary --socket {lab.node_dir('h1') / 'vpe.sock'}
  vpe show vrf --socket {lab.node_dir('h1') / 'vpe.sock'}
  vpe show fib --socket {lab.node_dir('h1') / 'vpe.sock'}
  vpe lab down --prefix {lab.prefix}   (what `make demo-down` runs: removes every namespace and process)
"""
    )
    if bad:
        console.print(f"[bold red]FAILED: {bad} of {total} cells differ from what the route targets say[/bold red] {summary}")
        sys.exit(1)
    console.print(f"[bold green]all {total} cells as expected[/bold green] {summary}")


if __name__ == "__main__":
    main()
