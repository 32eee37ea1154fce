"""The forwarder's socket layer in a throw-away network namespace (root only).

A veth pair stands for a VM port (``vmp`` owned by the forwarder, ``vm``
the VM's side) and another for the underlay (``ul0`` / ``ulp``). Checked, with
and without the PACKET_MMAP RX ring: an ARP request sent by the "VM" is
answered through the port socket, and a UDP packet to a remote route leaves
``ul0`` as MPLS-in-UDP through the connected send socket. And the ring itself:
frames in order, sizes, a frame larger than the ring slot flagged truncated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)

SCRIPT = r"""
import selectors, socket, struct, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from test_dp_helpers import arp_request, eth, udp4
from vpe.dataplane.driver import NextHop, Port, Route, State, LabelEntry
from vpe.dataplane.userspace.process import ForwarderProcess, open_port
from vpe.dataplane.userspace.ring import RxRing

VM_MAC = "02:00:00:00:00:0a"
GW_MAC = "02:00:5e:00:00:01"

def raw(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    s.settimeout(2.0)
    return s

def recv_until(s, pred, limit=50):
    for _ in range(limit):
        data = s.recv(65535)
        if pred(data):
            return data
    raise AssertionError("frame not seen")

# -- the ring alone
pio = open_port("vmp", 1500)
assert pio.ring is not None and pio.ring.frame_size == 2048
vm = raw("vm")
frames = [bytes.fromhex("ffffffffffff020000000001") + b"\x88\xb5" + bytes([i]) * (60 + i) for i in range(5)]
for f in frames:
    vm.send(f)
vm.send(bytes.fromhex("ffffffffffff020000000001") + b"\x88\xb5" + b"j" * 3000)
time.sleep(0.2)
# only our test frames (ethertype 0x88b5): the kernel may send its own (IPv6 DAD/MLD) meanwhile
got = [g for g in pio.ring.drain(64) if g[0][12:14] == b"\x88\xb5"]
assert [g[0] for g in got[:5]] == frames, got
assert got[5][2] and len(got[5][0]) < 3000  # truncated to the slot
assert [g for g in pio.ring.drain(64) if g[0][12:14] == b"\x88\xb5"] == []
pio.close()

# -- the forwarder process, ring and recv paths
for use_ring in (True, False):
    sock_path = tempfile.mktemp(suffix=".sock")
    fp = ForwarderProcess("ul0", ["198.18.0.1"], sock_path, 1500)
    fp.use_ring = use_ring
    fp.sync(State(
        ports=(Port("vm1", "vmp", "red", VM_MAC, ("192.0.2.10/24",), ("192.0.2.1",), (), GW_MAC),),
        routes=(Route("red", "192.0.2.10/32", (NextHop.local("vm1"),)),
                Route("red", "192.0.2.20/32", (NextHop.remote("198.18.0.2", 1002, "mpls-in-udp"),))),
        labels=(LabelEntry(1000, "vrf", "red"),),
    ))
    assert (fp.port_socks["vm1"].ring is not None) == use_ring
    ulp = raw("ulp")
    vm.send(arp_request(VM_MAC, "192.0.2.10", "192.0.2.1"))
    vm.send(eth(VM_MAC, udp4("192.0.2.10", "192.0.2.20", payload=b"hello")))
    end = time.monotonic() + 2
    while time.monotonic() < end and fp.forwarder.underlay["tx_packets"] < 1:
        for key, _ in fp.sel.select(timeout=0.1):
            key.data(key.fileobj)
    reply = recv_until(vm, lambda d: d[12:14] == b"\x08\x06" and d[20:22] == b"\x00\x02")
    assert reply[6:12] == bytes.fromhex(GW_MAC.replace(":", ""))
    outer = recv_until(ulp, lambda d: d[12:14] == b"\x08\x00" and d[23] == 17)
    ihl = (outer[14] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", outer, 14 + ihl)
    assert dport == 6635 and sport >= 49152, (sport, dport)
    assert struct.unpack_from("!I", outer, 14 + ihl + 8)[0] >> 12 == 1002
    assert outer.endswith(b"hello")
    assert ("198.18.0.2", 17) in fp._connected
    assert not fp.io_errors, fp.io_errors
    ulp.close()
    fp.close()
print("OK")
"""


def test_port_ring_and_forwarder_sockets_in_a_namespace() -> None:
    ns = f"dpring{uuid.uuid4().hex[:8]}"
    helpers = os.path.dirname(os.path.abspath(__file__))

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)

    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    try:
        # no IPv6 autoconfiguration chatter on the test links
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                       capture_output=True, timeout=10)
        ip("link", "add", "vmp", "type", "veth", "peer", "name", "vm")
        ip("link", "add", "ul0", "type", "veth", "peer", "name", "ulp")
        for dev in ("vmp", "vm"):  # room for a frame larger than a 1500-MTU ring slot
            ip("link", "set", dev, "mtu", "4000")
        for dev in ("lo", "vmp", "vm", "ul0", "ulp"):
            ip("link", "set", dev, "up")
        ip("addr", "add", "198.18.0.1/24", "dev", "ul0")
        # the remote vPE's MAC is static, so no ARP is needed on the underlay
        ip("neigh", "add", "198.18.0.2", "lladdr", "02:00:00:00:00:02", "dev", "ul0")
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT, helpers],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_port_socket_of_a_device_made_again_is_replaced() -> None:
    """An external PE's circuit deleted and made again under the same name (after a
    restart) has another ifindex: the forwarder reopens its port; a device simply gone
    keeps its socket (nothing to reopen yet)."""
    import socket as _socket

    from vpe.dataplane.userspace.process import PortIO, replaced

    lo = _socket.if_nametoindex("lo")
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        assert not replaced(PortIO("lo", 1500, s, None, True, lo))
        assert replaced(PortIO("lo", 1500, s, None, True, lo + 1000))
        assert not replaced(PortIO("gone-dev0", 1500, s, None, True, 7))
    finally:
        s.close()
