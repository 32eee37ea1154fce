"""Turn off checksum and segmentation offloads on a VM's interface.

Why: a veth hands frames to the other side with checksums not yet computed
(CHECKSUM_PARTIAL) and TCP segments up to 64 KiB (TSO/GSO), trusting the
kernel on the far side to finish them. A userspace forwarder reading the
host side with AF_PACKET sees exactly those unfinished frames, forwards them
to another host, and the receiver drops them (bad TCP/UDP checksum, or a
packet larger than the tunnel MTU). So whoever creates a VM's veth runs
``disable_offloads("eth0")`` inside the VM's namespace (or
``python -m vpe.dataplane.userspace.offload eth0``), as ``ethtool -K eth0 tx off tso
off gso off`` would; ping works without it, TCP and UDP do not.
(``... offload --on eth0`` turns them back on, for the ebpf driver's benchmarks.)

Uses the legacy SIOCETHTOOL set commands (no ethtool binary needed).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import sys

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SSG = 0x19
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24


def _set(sock: socket.socket, ifname: str, cmd: int, value: int) -> None:
    data = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(data))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def disable_offloads(ifname: str) -> None:
    """tx checksum, scatter-gather, TSO and GSO off on ``ifname`` (this namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SSG, ETHTOOL_STXCSUM):
            _set(sock, ifname, cmd, 0)


def enable_offloads(ifname: str) -> None:
    """Back to a veth's defaults: tx checksum, scatter-gather, TSO and GSO on (a kernel
    fast path, such as the ebpf driver, forwards unfinished frames correctly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for cmd in (ETHTOOL_STXCSUM, ETHTOOL_SSG, ETHTOOL_STSO, ETHTOOL_SGSO):
            _set(sock, ifname, cmd, 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--on"]:
        for name in sys.argv[2:]:
            enable_offloads(name)
    else:
        for name in sys.argv[1:]:
            disable_offloads(name)
