"""Attachment circuits of an external PE (R2.2, docs/external-pe.md).

A host without a forwarder of its own reaches its external PE (a vpe on a
top-of-rack box) over plain Ethernet, one circuit per endpoint:

* ``vlan``: an 802.1Q VLAN on the link between them; on the PE the VLAN
  sub-interface ``<interface>.<vlan>`` of its interface toward the host;
* ``vxlan``: a VXLAN segment (VNI) between the host's address and the PE's
  (RFC 7348, UDP 4789), for hosts a routed access network separates from
  the PE, or kernels without 802.1Q devices; on the PE the VXLAN device
  ``vx<vni>`` over its interface toward the host, remote = the host.

The PE's forwarder takes the circuit's interface as the endpoint's port,
exactly like a VM's veth on an internal vPE (proxy ARP/ND, anti-spoofing,
first-hop routing). The switches in between see VLAN-tagged frames (or UDP
between two addresses) only: no VRF, no VPN route, no label.

:class:`Circuits` creates and removes those sub-interfaces with ``ip link``
in the agent's network namespace, which on an external PE is the
forwarder's (agent and forwarder run on the same box). Errors name the
field: ``interface`` (no such interface here), ``vlan`` (out of range),
the sub-interface name when it is longer than an interface name may be.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

log = logging.getLogger("vpe.agent.circuits")

#: Linux interface names are at most 15 octets (IFNAMSIZ - 1)
IFNAME_MAX = 15
_CIRCUIT = re.compile(r"^(?P<parent>[A-Za-z0-9_-]{1,13})\.(?P<vlan>[1-9][0-9]{0,3})$")
_VXLAN = re.compile(r"^vx(?P<vni>[1-9][0-9]{0,7})$")
#: VXLAN network identifiers are 24 bits
MAX_VNI = (1 << 24) - 1
_TIMEOUT = 10.0


def circuit_ifname(interface: str, vlan: int) -> str:
    """The PE's sub-interface of VLAN ``vlan`` on ``interface``; ValueError naming the field."""
    if type(vlan) is not int or not 1 <= vlan <= 4094:
        raise ValueError(f"vlan: {vlan!r} is not a VLAN id (1..4094)")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,15}", interface or ""):
        raise ValueError(f"interface: {interface!r} is not an interface name (1..15 of A-Z a-z 0-9 _ -)")
    name = f"{interface}.{vlan}"
    if len(name) > IFNAME_MAX:
        raise ValueError(f"interface: {name!r} (the circuit's sub-interface) is longer than "
                         f"{IFNAME_MAX} characters; use a shorter interface name")
    return name


def vxlan_ifname(vni: int) -> str:
    """The PE's VXLAN device of segment ``vni``; ValueError naming the field."""
    if type(vni) is not int or not 1 <= vni <= MAX_VNI:
        raise ValueError(f"vni: {vni!r} is not a VXLAN network identifier (1..{MAX_VNI})")
    return f"vx{vni}"


def parse_circuit(ifname: str) -> tuple[str, int] | None:
    """(interface, vlan) of a VLAN circuit's sub-interface name, ("vxlan", vni) of a VXLAN
    circuit's device, None for any other name."""
    v = _VXLAN.match(ifname)
    if v is not None and int(v["vni"]) <= MAX_VNI:
        return "vxlan", int(v["vni"])
    m = _CIRCUIT.match(ifname)
    if m is None or int(m["vlan"]) > 4094:
        return None
    return m["parent"], int(m["vlan"])


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_TIMEOUT, check=False)


class Circuits:
    """The VLAN sub-interfaces this PE created for signalled endpoints."""

    def __init__(self) -> None:
        #: sub-interface name -> (interface, vlan), created by us (removed with the endpoint)
        self.created: dict[str, tuple[str, int]] = {}

    @staticmethod
    def available() -> str | None:
        """Why circuits cannot be made here (None: they can)."""
        return None if shutil.which("ip") else "iproute2 (`ip`) is not installed on this PE"

    def exists(self, ifname: str) -> bool:
        return _ip("link", "show", "dev", ifname).returncode == 0

    def ensure(self, interface: str, vlan: int | None = None, *, vni: int | None = None,
               remote: str | None = None) -> tuple[str, bool]:
        """The circuit's interface (VLAN ``vlan`` on ``interface``, or VXLAN segment ``vni``
        toward ``remote`` over ``interface``), up; created when missing. (name, created now)."""
        if (vlan is None) == (vni is None):
            raise ValueError("vlan: give exactly one of vlan (an 802.1Q circuit) and vni (a VXLAN circuit)")
        if vni is not None:
            name = vxlan_ifname(vni)
            circuit_ifname(interface, 1)  # the interface name's rule
            if remote is None:
                raise ValueError("remote: a VXLAN circuit needs the host's address")
            cmd = ["link", "add", name, "type", "vxlan", "id", str(vni), "remote", remote, "dstport", "4789",
                   "dev", interface]
            what = f"VXLAN {vni} toward {remote} over {interface!r}"
        else:
            assert vlan is not None
            name = circuit_ifname(interface, vlan)
            cmd = ["link", "add", "link", interface, "name", name, "type", "vlan", "id", str(vlan)]
            what = f"VLAN {vlan} on {interface!r}"
        why = self.available()
        if why is not None:
            raise ValueError(f"interface: cannot make circuits: {why}")
        if self.exists(name):
            _ip("link", "set", "dev", name, "up")
            return name, False
        if not self.exists(interface):
            raise ValueError(f"interface: {interface!r} does not exist on this PE")
        r = _ip(*cmd)
        if r.returncode != 0:
            raise ValueError(f"interface: {what} could not be made: {r.stderr.strip() or r.stdout.strip()}")
        _ip("link", "set", "dev", name, "up")
        self.created[name] = (interface, vlan if vlan is not None else vni)  # type: ignore[assignment]
        log.info("circuit %s made (%s)", name, what)
        return name, True

    def release(self, ifname: str) -> None:
        """Remove ``ifname`` if this PE made it (others are the operator's)."""
        if self.created.pop(ifname, None) is not None:
            _ip("link", "del", "dev", ifname)
            log.info("circuit %s removed", ifname)

    def restore(self, ifnames: list[str]) -> int:
        """After a restart: the sub-interfaces of stored circuit ports again (their parents
        still there). The number made."""
        n = 0
        for ifname in ifnames:
            c = parse_circuit(ifname)  # (a VXLAN circuit is signalled again by its host)
            if c is None or c[0] == "vxlan" or self.exists(ifname) or not self.exists(c[0]):
                continue
            try:
                self.ensure(*c)
                n += 1
            except ValueError as e:
                log.error("circuit %s not restored: %s", ifname, e)
        return n
