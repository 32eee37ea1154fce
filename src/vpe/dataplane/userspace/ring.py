"""PACKET_MMAP receive ring (TPACKET_V2) for the forwarder's AF_PACKET port sockets.

Python has no ``recvmmsg``; a ``recvfrom_into`` per frame costs a system
call and an address tuple. With a ring the kernel writes each received frame
into memory shared with the process and flips a status word; the forwarder
walks the ring and reads frames as ``memoryview`` slices, with no system
call while frames are waiting (``bench/dataplane.py`` measures the effect,
docs/dataplane.md "Performance").

TPACKET_V2 rather than V3: V3 hands over whole blocks, and a block is only
retired when full or when its timer (>= 1 ms) expires, which would add up to
a millisecond of latency per hop at low rates. V2 wakes the socket per frame
and lets a busy reader consume frames as soon as their status says so.

Frame layout (``struct tpacket2_hdr`` then ``struct sockaddr_ll``)::

    0  tp_status u32   4 tp_len u32   8 tp_snaplen u32   12 tp_mac u16
    14 tp_net u16 ...  32 sockaddr_ll (sll_pkttype at 32 + 10)
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

#: tp_len, tp_snaplen, tp_mac (native byte order, at offset 4 of a frame)
HDR = struct.Struct("=IIH")
#: offset of sll_pkttype inside a frame: TPACKET_ALIGN(sizeof(tpacket2_hdr)) + 10
PKTTYPE_OFF = 32 + 10
#: where the kernel puts the Ethernet header: TPACKET_ALIGN(52 + 16) - 14 = 66
MAC_OFF = 66
RELEASE = bytes(4)

#: ring memory per port (frames are a power of two, at least 2 KiB)
RING_BYTES = 4 << 20
BLOCK_MIN = 1 << 16


def frame_size_for(mtu: int) -> int:
    """Smallest power of two >= 2048 holding the kernel's header, a VLAN tag and an MTU frame."""
    need = MAC_OFF + 14 + 4 + mtu
    size = 2048
    while size < need:
        size <<= 1
    return size


class RxRing:
    """An RX ring mapped from ``sock``; ``frame(i)`` offsets are ``i * frame_size``.

    The block size is a multiple of the frame size (both powers of two), so
    frames are contiguous and frame ``i`` starts at ``i * frame_size``.
    """

    __slots__ = ("frame_size", "frames", "head", "map", "view")

    def __init__(self, sock: socket.socket, mtu: int = 1500, ring_bytes: int = RING_BYTES) -> None:
        fs = frame_size_for(mtu)
        block = max(fs, BLOCK_MIN)
        nblocks = max(1, ring_bytes // block)
        self.frame_size = fs
        self.frames = nblocks * (block // fs)
        self.head = 0
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        req = struct.pack("=IIII", block, nblocks, fs, self.frames)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.map = mmap.mmap(
            sock.fileno(), block * nblocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.view = memoryview(self.map)

    def drain(self, limit: int) -> list[tuple[bytes, int, bool]]:
        """(frame copy, sll_pkttype, truncated) of up to ``limit`` ready frames, released.

        A testing aid; the forwarder's hot loop does the same inline, without
        copies (``ForwarderProcess._ring_reader``).
        """
        out = []
        view, fs, n = self.view, self.frame_size, self.frames
        i = self.head
        for _ in range(limit):
            off = i * fs
            if not view[off] & TP_STATUS_USER:
                break
            length, snaplen, mac = HDR.unpack_from(view, off + 4)
            start = off + mac
            out.append(
                (bytes(view[start : start + snaplen]), view[off + PKTTYPE_OFF], snaplen < length)
            )
            view[off : off + 4] = RELEASE
            i = i + 1 if i + 1 < n else 0
        self.head = i
        return out

    def close(self) -> None:
        self.view.release()
        # A frame view still referenced somewhere keeps the mapping alive;
        # it is unmapped when that goes away.
        with contextlib.suppress(BufferError):
            self.map.close()
