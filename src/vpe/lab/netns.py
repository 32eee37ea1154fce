"""Namespaces, links, addresses, routes and sysctls, through iproute2's `ip`.

Why `ip` and not pyroute2: every operation here is one short command whose
failure message iproute2 already words well, the commands are what an
operator would type to reproduce a problem, and `ip -n NS` works on a
namespace without entering it from Python (pyroute2's netns support forks
helper processes and has changed its API between releases).

Every function is idempotent: it looks before it creates, so a second
``vpe lab up`` changes nothing. Links are always created *inside* a lab
namespace (``ip -n NS link add ... peer ... netns OTHER``), never in the
root namespace, so deleting the lab's namespaces removes every link too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
#: one `ip` call never takes long; a hung one is a bug worth an error
_TIMEOUT = 15.0


class NetnsError(Exception):
    """An `ip` (or sysctl) command failed; the message holds the command and its error."""


def ip_available() -> str | None:
    """None when `ip netns` can be used here, else why not (for skips and clear errors)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns list` cannot run: {e}"
    if r.returncode != 0:
        return f"`ip netns list` failed: {r.stderr.strip()}"
    return None


def run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command; :class:`NetnsError` with the command line and stderr on failure."""
    try:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{' '.join(args)}` did not finish in {_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise NetnsError(f"`{' '.join(args)}` cannot run: {e.strerror}") from None
    if check and r.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _json(args: Sequence[str]) -> Any:
    out = run(args).stdout.strip()
    return json.loads(out) if out else []


# -- namespaces --------------------------------------------------------------


def netns_list() -> list[str]:
    """Names of all named network namespaces on the machine."""
    return sorted(e["name"] for e in _json(["ip", "-j", "netns", "list"]))


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_inode(name: str) -> tuple[int, int] | None:
    """(device, inode) identifying the namespace, or None when it is gone."""
    try:
        st = os.stat(NETNS_DIR / name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def netns_add(name: str) -> bool:
    """Create the namespace with ``lo`` up; True when it was created now."""
    created = False
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
        created = True
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return created


def netns_delete(name: str) -> bool:
    """Delete the namespace (and with it every link inside); True when it existed."""
    if not netns_exists(name):
        return False
    run(["ip", "netns", "delete", name])
    return True


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is this one (`ip netns pids`)."""
    if not netns_exists(name):
        return []
    r = run(["ip", "netns", "pids", name], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


# -- links -------------------------------------------------------------------


def link_exists(ns: str, ifname: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", "dev", ifname], check=False).returncode == 0


def bridge_add(ns: str, name: str) -> None:
    """A Linux bridge without STP and forward delay (ports forward at once) and without
    multicast snooping (no querier on a lab segment, so snooping could starve IPv6 ND)."""
    if not link_exists(ns, name):
        run(["ip", "-n", ns, "link", "add", name, "type", "bridge",
             "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0"])
    run(["ip", "-n", ns, "link", "set", name, "up"])


def veth_add(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace; a half-made pair is replaced."""
    a, b = link_exists(ns_a, name_a), link_exists(ns_b, name_b)
    if a and b:
        return
    if a:
        run(["ip", "-n", ns_a, "link", "delete", name_a])
    if b:
        run(["ip", "-n", ns_b, "link", "delete", name_b])
    run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])


def link_set(ns: str, ifname: str, *, master: str | None = None, mac: str | None = None, up: bool = True) -> None:
    if mac is not None:
        cur = _json(["ip", "-j", "-n", ns, "link", "show", "dev", ifname])
        if not cur or cur[0].get("address", "").lower() != mac.lower():
            run(["ip", "-n", ns, "link", "set", "dev", ifname, "address", mac])
    if master is not None:
        run(["ip", "-n", ns, "link", "set", "dev", ifname, "master", master])
    if up:
        run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"])


# -- addresses and routes ----------------------------------------------------


def addresses(ns: str) -> dict[str, list[str]]:
    """Interface name -> its addresses as ``addr/len`` (link-local IPv6 left out)."""
    out: dict[str, list[str]] = {}
    for link in _json(["ip", "-j", "-n", ns, "addr", "show"]):
        addrs = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") != "link" and "local" in a
        ]
        out[link["ifname"]] = addrs
    return out


def addr_add(ns: str, ifname: str, cidr: str) -> None:
    """Add ``addr/len`` unless present; IPv6 without duplicate address detection."""
    have = addresses(ns).get(ifname, [])
    if cidr in have:
        return
    cmd = ["ip", "-n", ns, "addr", "add", cidr, "dev", ifname]
    if ":" in cidr:
        cmd.append("nodad")
    run(cmd)


def routes(ns: str, family: int = 4) -> list[dict[str, Any]]:
    return list(_json(["ip", "-j", f"-{family}", "-n", ns, "route", "show"]))


def default_route_set(ns: str, gateway: str, dev: str) -> None:
    """Point the default route at ``gateway`` via ``dev`` (on-link; unchanged when already so)."""
    family = 6 if ":" in gateway else 4
    for r in routes(ns, family):
        if r.get("dst") == "default" and r.get("gateway") == gateway and r.get("dev") == dev:
            return
    run(["ip", f"-{family}", "-n", ns, "route", "replace", "default", "via", gateway, "dev", dev, "onlink"])


# -- sysctls -----------------------------------------------------------------


def sysctl_set(ns: str, values: Mapping[str, str | int]) -> None:
    """Write sysctls inside the namespace (net.* are per namespace)."""
    if not values:
        return
    # interface names may contain '.', so use the '/' form of the keys
    args = [f"{k.replace('.', '/') if '/' not in k else k}={v}" for k, v in values.items()]
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *args])


def iface_key(family: str, ifname: str, leaf: str) -> str:
    """``net/ipv6/conf/<ifname>/<leaf>``: a sysctl key that survives dots in names."""
    return f"net/{family}/conf/{ifname}/{leaf}"
