"""The forwarder's local interface toward the control plane: PE-CE sessions through a port.

A VRF neighbor reached through a port of its VRF (``via = "port"``,
docs/inter-as.md) talks TCP to a gateway address of the VRF. The host has no
VRF devices, so the forwarder carries those segments between the port and a
TUN device (``vpe-local`` by default) in its own network namespace, on which
the control plane's stack sees each such neighbor at a *mapped* address of its
own: the pipeline rewrites the addresses (:class:`~vpe.dataplane.driver.LocalSession`),
this module owns the device, its addresses and one host route per mapped address.

The device is created with the first session and removed with the last one;
addresses and routes follow the sessions, so the control plane connects to
``mapped`` (port 179 of the peer) and accepts connections from it like from any
other neighbor.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import subprocess
from collections.abc import Iterable

from ..driver import IPAddress, LocalSession
from ..errors import DriverFailure

log = logging.getLogger("vpe.dataplane.local")

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
#: the local interface's name unless the forwarder is told another
DEFAULT_NAME = "vpe-local"
_TIMEOUT = 10.0


class LocalUnavailable(DriverFailure):
    """The local interface (or an address or route on it) could not be set up."""


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if r.returncode != 0:
        raise LocalUnavailable(f"local interface: ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")


def _plen(a: IPAddress) -> int:
    return 32 if a.version == 4 else 128


class LocalInterface:
    """The TUN device of one forwarder, with the addresses and routes its sessions need."""

    def __init__(self, name: str = DEFAULT_NAME, mtu: int = 1500) -> None:
        self.name = name
        self.mtu = mtu
        self.fd: int | None = None
        self.hosts: set[IPAddress] = set()
        self.routes: dict[IPAddress, IPAddress] = {}

    def sync(self, sessions: Iterable[LocalSession]) -> None:
        """Make the device (open or not), its addresses and its routes match ``sessions``."""
        want = {x.mapped: x.host for x in sessions}
        if want and self.fd is None:
            self._open()
        for mapped in [m for m, h in self.routes.items() if want.get(m) != h]:
            self._quiet("route", "del", f"{mapped}/{_plen(mapped)}", "dev", self.name)
            del self.routes[mapped]
        hosts = set(want.values())
        for h in self.hosts - hosts:
            self._quiet("addr", "del", f"{h}/{_plen(h)}", "dev", self.name)
        for h in sorted(hosts - self.hosts, key=str):
            # (IPv6: usable at once, no duplicate address detection on a point-to-point TUN)
            _ip("addr", "replace", f"{h}/{_plen(h)}", "dev", self.name, *(("nodad",) if h.version == 6 else ()))
        self.hosts = hosts
        for mapped, host in want.items():
            if mapped not in self.routes:
                _ip("route", "replace", f"{mapped}/{_plen(mapped)}", "dev", self.name, "src", str(host))
                self.routes[mapped] = host
        if not want and self.fd is not None:
            self.close()

    def _open(self) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            raise LocalUnavailable(f"local interface {self.name}: /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", self.name.encode(), _IFF_TUN | _IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            raise LocalUnavailable(f"local interface {self.name}: cannot create it: {exc.strerror}") from None
        self.fd = fd
        try:  # a namespace may disable IPv6 on new interfaces; IPv6 sessions need it here
            with open(f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6", "w") as f:
                f.write("0")
        except OSError:
            pass
        try:
            _ip("link", "set", "dev", self.name, "mtu", str(self.mtu), "up")
        except LocalUnavailable:
            self.close()
            raise
        log.info("local interface %s up (control-plane sessions through ports)", self.name)

    def _quiet(self, *args: str) -> None:
        try:
            _ip(*args)
        except (LocalUnavailable, OSError, subprocess.SubprocessError) as exc:
            log.warning("%s", exc)

    def read(self) -> bytes | None:
        """One packet the control plane wrote, or None when there is none now."""
        if self.fd is None:
            return None
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return None

    def write(self, data: bytes | bytearray) -> None:
        if self.fd is not None:
            os.write(self.fd, data)

    def close(self) -> None:
        """Close the device (the kernel removes it, its addresses and its routes)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            log.info("local interface %s removed", self.name)
        self.hosts.clear()
        self.routes.clear()
