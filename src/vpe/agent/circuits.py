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

The circuits this PE made, and how (interface, VLAN or VNI and remote), are
kept in the state store (``meta`` key ``circuits``): after a restart every
stored port's circuit is made again before the ports are restored - taken
as it is when its device is still there, created when it is gone - and is
still this PE's to remove when its endpoint is withdrawn.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from .store import StoreError

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("vpe.agent.circuits")

#: Linux interface names are at most 15 octets (IFNAMSIZ - 1)
IFNAME_MAX = 15
_CIRCUIT = re.compile(r"^(?P<parent>[A-Za-z0-9_-]{1,13})\.(?P<vlan>[1-9][0-9]{0,3})$")
_VXLAN = re.compile(r"^vx(?P<vni>[1-9][0-9]{0,7})$")
#: VXLAN network identifiers are 24 bits
MAX_VNI = (1 << 24) - 1
_TIMEOUT = 10.0
#: the state store's ``meta`` key of the circuits this PE made
META_KEY = "circuits"


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
    """The circuit interfaces (VLAN sub-interfaces, VXLAN devices) this PE made for
    signalled endpoints."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        #: interface name -> how it was made ({"interface", "vlan"} or {"interface", "vni",
        #: "remote"}): made by us, removed with the endpoint; kept in the state store
        self.created: dict[str, dict[str, Any]] = {}
        self._restoring = False

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
        spec: dict[str, Any]
        if vni is not None:
            name = vxlan_ifname(vni)
            circuit_ifname(interface, 1)  # the interface name's rule
            if remote is None:
                raise ValueError("remote: a VXLAN circuit needs the host's address")
            cmd = ["link", "add", name, "type", "vxlan", "id", str(vni), "remote", remote, "dstport", "4789",
                   "dev", interface]
            what = f"VXLAN {vni} toward {remote} over {interface!r}"
            spec = {"interface": interface, "vni": vni, "remote": remote}
        else:
            assert vlan is not None
            name = circuit_ifname(interface, vlan)
            cmd = ["link", "add", "link", interface, "name", name, "type", "vlan", "id", str(vlan)]
            what = f"VLAN {vlan} on {interface!r}"
            spec = {"interface": interface, "vlan": vlan}
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
        self.created[name] = spec
        self._save()
        log.info("circuit %s made (%s)", name, what)
        return name, True

    def release(self, ifname: str) -> None:
        """Remove ``ifname`` if this PE made it (others are the operator's)."""
        if self.created.pop(ifname, None) is not None:
            _ip("link", "del", "dev", ifname)
            self._save()
            log.info("circuit %s removed", ifname)

    def _save(self) -> None:
        if self.store is None or self._restoring:
            return
        try:
            with self.store.transaction() as tx:
                tx.put_meta(META_KEY, self.created)
        except StoreError as e:  # then a restart does not make the circuit again
            log.error("circuits: cannot record the circuits made: %s", e)

    def _saved(self) -> dict[str, Any]:
        if self.store is None:
            return {}
        try:
            kept = self.store.meta(META_KEY)
        except StoreError as e:
            log.error("circuits: %s", e)
            return {}
        return kept if isinstance(kept, dict) else {}

    def restore(self, ifnames: list[str]) -> int:
        """After a restart: the circuit interfaces of the stored ports (``ifnames``) again,
        before the ports are restored. One still there is taken as it is, one gone is
        made again (a VXLAN circuit from how it was made, as stored; a VLAN one on its
        parent interface). The number made."""
        saved = self._saved()
        n = 0
        self._restoring = True
        try:
            for ifname in ifnames:
                c = parse_circuit(ifname)
                if c is None:
                    continue
                spec = saved.get(ifname)
                if not isinstance(spec, dict):
                    spec = None
                if c[0] == "vxlan":
                    if spec is None or spec.get("vni") != c[1]:
                        log.warning("circuit %s: how it was made is not stored; made again when its host "
                                    "signals the endpoint again", ifname)
                        continue
                    args: tuple[Any, ...] = (str(spec.get("interface")),)
                    kw: dict[str, Any] = {"vni": c[1], "remote": spec.get("remote")}
                else:
                    if spec is None and self.exists(ifname):
                        continue  # not made by us (a state from before circuits were stored)
                    args, kw = (c[0], c[1]), {}
                try:
                    name, made = self.ensure(*args, **kw)
                except ValueError as e:
                    log.error("circuit %s not restored: %s", ifname, e)
                    continue
                n += made
                if spec is not None:
                    self.created[name] = spec
                if made or spec is not None:
                    log.info("circuit %s restored (%s)", name, "made again" if made else "still there")
            for ifname in set(saved) - set(ifnames):  # made, but its port never stored (a crash
                if parse_circuit(ifname) is not None and self.exists(ifname):  # in between): ours to remove
                    _ip("link", "del", "dev", ifname)
                    log.info("circuit %s removed: no stored port uses it", ifname)
        finally:
            self._restoring = False
        if self.created != saved:
            self._save()
        return n
