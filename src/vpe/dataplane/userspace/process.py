"""The userspace driver: AF_PACKET and raw IP sockets around the pure pipeline.

Run as ``python -m vpe.dataplane.process --driver userspace ...`` (the
default driver); :func:`create_driver` is its registry factory.

* one AF_PACKET socket per port, on the host side of the VM's veth, opened
  and closed as ports are programmed (promiscuous: frames addressed to the
  gateway MAC are not the veth's own);
* per underlay address family: a UDP socket bound to ``IP:6635`` receiving
  MPLS-in-UDP, a raw IP socket of protocol 47 for GRE (both directions), and
  a raw UDP socket used only to send (so the source port can carry the flow
  entropy of RFC 7510; a one-instruction BPF filter keeps it from queueing
  copies of received UDP). The kernel adds outer IP headers and routes in
  the underlay, bound to ``--underlay-if``;
* a selector loop, single-threaded: packets and the FIB channel
  (:mod:`vpe.dataplane.server`) share it, so a batch is applied between two
  packets, never during one.

The forwarder keeps forwarding with its tables when the control plane
disconnects; the next control plane sends a full sync.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import selectors
import socket
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..driver import Batch, LocalSession, Port, State
from ..errors import PortUnavailable
from ..registry import DriverOptions
from ..server import ChannelServer
from . import packets as P
from .local import LocalInterface
from .pipeline import Forwarder, Output, ToLocal, ToPort, ToUnderlay
from .ring import HDR as RING_HDR
from .ring import PKTTYPE_OFF, RELEASE, TP_STATUS_USER, RxRing

log = logging.getLogger("vpe.dataplane")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
PMTUDISC_DONT = 0
#: Packets read from one socket before the loop looks at the others (fairness).
BURST = 64
RCVBUF = 4 * 1024 * 1024
#: Connected send sockets kept per (remote vPE, protocol); beyond: one shared sendto socket.
MAX_CONNECTED = 256

Send = Callable[[Any], object]


def _drop_all_filter(sock: socket.socket) -> None:
    """Attach classic BPF ``ret #0``: the socket never queues a received packet."""
    insn = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))
    prog = struct.pack("HL", 1, ctypes.addressof(insn))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def open_port_socket(ifname: str) -> socket.socket:
    """AF_PACKET socket on ``ifname``: every frame in, our own transmissions not looped."""
    return open_port(ifname).sock


class PortIO:
    """The AF_PACKET socket of one port and, when the kernel allows it, its RX ring."""

    __slots__ = ("ifname", "mtu", "sock", "ring", "ignores_outgoing", "ifindex")

    def __init__(
        self, ifname: str, mtu: int, sock: socket.socket, ring: RxRing | None, ignores: bool,
        ifindex: int = 0,
    ) -> None:
        self.ifname = ifname
        #: the interface the socket is bound to (a device deleted and made again under the
        #: same name - an external PE's circuit after a restart - has another one)
        self.ifindex = ifindex
        self.mtu = mtu
        self.sock = sock
        self.ring = ring
        self.ignores_outgoing = ignores

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


def replaced(pio: PortIO) -> bool:
    """Is another device now under ``pio``'s interface name (deleted and made again)?
    (A device simply gone keeps its socket: nothing to reopen yet.)"""
    try:
        return socket.if_nametoindex(pio.ifname) != pio.ifindex
    except OSError:
        return False


def open_port(ifname: str, mtu: int = 1500, use_ring: bool = True) -> PortIO:
    """Open ``ifname`` (promiscuous, all protocols) with an RX ring sized for ``mtu``."""
    ifindex = socket.if_nametoindex(ifname)
    # Protocol 0 at creation, ETH_P_ALL at bind: no frames of other interfaces
    # arrive in between.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    ring: RxRing | None = None
    ignores = False
    try:
        # The ring must exist before bind starts the capture; a kernel without
        # PACKET_MMAP (or without memory for it) leaves the socket on recv_into.
        if use_ring:
            try:
                ring = RxRing(sock, mtu)
            except OSError as exc:
                log.warning("%s: no PACKET_RX_RING (%s), reading with recv", ifname, exc.strerror)
        sock.bind((ifname, ETH_P_ALL))
        # Kernels < 4.20 lack the option: outgoing frames are then skipped by pkttype.
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            ignores = True
        except OSError:
            pass
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
    except OSError:
        if ring is not None:
            ring.close()
        sock.close()
        raise
    return PortIO(ifname, mtu, sock, ring, ignores, ifindex)


class UnderlayIO:
    """The sockets of one underlay address family."""

    def __init__(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ifname: str) -> None:
        self.ip = ip
        fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        self.family = fam
        addr = str(ip)
        dev = ifname.encode()
        self.sockets: list[socket.socket] = []
        try:
            self.udp_rx = self._new(fam, socket.SOCK_DGRAM, 0)
            if ip.version == 6:
                self.udp_rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.udp_rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.udp_rx.bind((addr, P.MPLS_UDP_PORT))
            self.udp_tx = self._new(fam, socket.SOCK_RAW, socket.IPPROTO_UDP)
            self.udp_tx.bind((addr, 0))
            _drop_all_filter(self.udp_tx)
            self.gre = self._new(fam, socket.SOCK_RAW, P.IPPROTO_GRE)
            self.gre.bind((addr, 0))
            for s in (self.udp_tx, self.gre):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev)
                if ip.version == 4:
                    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
            if ip.version == 6:
                # The kernel fills the UDP checksum (mandatory over IPv6) at offset 6.
                self.udp_tx.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
        except OSError:
            self.close()
            raise
        self._dev = dev

    def connected(self, endpoint: str, proto: int) -> socket.socket:
        """A send-only raw socket connected to ``endpoint``: ``send`` with no address to parse
        and the route cached in the socket (the kernel's ``sk_dst_cache``)."""
        s = socket.socket(self.family, socket.SOCK_RAW, proto)
        try:
            s.bind((str(self.ip), 0))
            # Raw sockets get a copy of every matching packet received: drop them all.
            _drop_all_filter(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._dev)
            if self.ip.version == 4:
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
                if proto == P.IPPROTO_UDP:
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
            s.setblocking(False)
            s.connect((endpoint, 0))
        except OSError:
            s.close()
            raise
        return s

    def _new(self, fam: int, kind: int, proto: int) -> socket.socket:
        s = socket.socket(fam, kind, proto)
        self.sockets.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setblocking(False)
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()


class ForwarderProcess:
    """The userspace driver: owns the packet sockets and the pipeline of one forwarder.

    Its sockets are registered on ``selector`` (its own by default, ``sel``);
    with ``socket_path`` / ``listen_tcp`` it also serves the FIB channel
    there (a :class:`~vpe.dataplane.server.ChannelServer`), which is how
    tests run a whole forwarder in one object.
    """

    def __init__(
        self,
        underlay_if: str,
        underlay_ips: list[str],
        socket_path: str | None = None,
        underlay_mtu: int | None = None,
        listen_tcp: tuple[str, int] | None = None,
        selector: selectors.BaseSelector | None = None,
        key: bytes | None = None,
    ) -> None:
        ips = [ipaddress.ip_address(a) for a in underlay_ips]
        if len({a.version for a in ips}) != len(ips):
            raise ValueError("at most one --underlay-ip per address family")
        if underlay_mtu is None:
            try:
                underlay_mtu = int(Path(f"/sys/class/net/{underlay_if}/mtu").read_text())
            except (OSError, ValueError):
                underlay_mtu = 1500
        self.forwarder = Forwarder(ips, underlay_mtu)
        self.io_errors: dict[str, int] = {}
        self._own_selector = selector is None
        self.sel = selector if selector is not None else selectors.DefaultSelector()
        self._stop = False
        self._buf = bytearray(65536 + 128)
        self._view = memoryview(self._buf)
        self.port_socks: dict[str, PortIO] = {}
        self.underlay: dict[int, UnderlayIO] = {}
        self._tx: dict[tuple[int, int], socket.socket] = {}
        #: (endpoint, proto) -> connected send socket
        self._connected: dict[tuple[str, int], socket.socket] = {}
        #: pipeline output target (ToPort / ToUnderlay, by identity) -> send function;
        #: emptied whenever ports or routes change
        self._senders: dict[object, Send] = {}
        self.use_ring = True
        #: the TUN device toward the control plane (PE-CE sessions through ports)
        self.local = LocalInterface()
        self._local_fd: int | None = None
        for ip in ips:
            u = UnderlayIO(ip, underlay_if)
            self.underlay[ip.version] = u
            self._tx[(ip.version, P.IPPROTO_UDP)] = u.udp_tx
            self._tx[(ip.version, P.IPPROTO_GRE)] = u.gre
            self.sel.register(
                u.udp_rx, selectors.EVENT_READ, self._underlay_reader("mpls-in-udp", False)
            )
            # IPv4 raw sockets deliver the IP header, IPv6 ones do not.
            self.sel.register(
                u.gre, selectors.EVENT_READ, self._underlay_reader("mpls-in-gre", ip.version == 4)
            )
        self.server: ChannelServer | None = None
        if socket_path or listen_tcp:
            self.server = ChannelServer(
                self, self.sel, socket_path=socket_path, listen_tcp=listen_tcp, key=key
            )

    @property
    def generation(self) -> int:
        """Successful sync/batch operations over this forwarder's own channel server."""
        return self.server.generation if self.server is not None else 0

    # ------------------------------------------------------- channel handler API

    def _open_ports(self, ports: list[Port]) -> dict[str, PortIO]:
        """Open sockets for ports that are new or changed ifname/MTU, all or none."""
        opened: dict[str, PortIO] = {}
        try:
            for p in ports:
                cur = self.port_socks.get(p.name)
                if cur is None or cur.ifname != p.ifname or cur.mtu != p.mtu or replaced(cur):
                    opened[p.name] = open_port(p.ifname, p.mtu, self.use_ring)
        except OSError as exc:
            for pio in opened.values():
                pio.close()
            raise PortUnavailable.cannot_open(p.name, p.ifname, exc) from None
        return opened

    def _commit_ports(self, opened: dict[str, PortIO], keep: set[str]) -> None:
        self._senders.clear()
        for name in list(self.port_socks):
            if name not in keep or name in opened:
                pio = self.port_socks.pop(name)
                self.sel.unregister(pio.sock)
                pio.close()
        for name, pio in opened.items():
            self.port_socks[name] = pio
            reader = self._ring_reader(name, pio) if pio.ring else self._port_reader(name, pio)
            self.sel.register(pio.sock, selectors.EVENT_READ, reader)

    def _sync_local(self, sessions: Iterable[LocalSession]) -> None:
        """The local interface as ``sessions`` (those after the request) need it: set up
        before the forwarder changes, so a failure refuses the request."""
        self.local.sync(sessions)
        if self.local.fd != self._local_fd:
            if self._local_fd is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(self._local_fd)
            if self.local.fd is not None:
                self.sel.register(self.local.fd, selectors.EVENT_READ, self._local_reader)
            self._local_fd = self.local.fd

    def _local_reader(self, _fd: object) -> None:
        """Segments the control plane sends to PE-CE neighbors (a bounded number per turn)."""
        for _ in range(64):
            pkt = self.local.read()
            if pkt is None:
                return
            self._send(self.forwarder.from_local(pkt))

    def sync(self, state: State) -> None:
        opened = self._open_ports(list(state.ports))
        try:
            self._sync_local(state.sessions)
            self.forwarder.full_sync(state)
        except ValueError:  # a DriverError: nothing changed
            for pio in opened.values():
                pio.close()
            raise
        self._commit_ports(opened, {p.name for p in state.ports})
        log.info(
            "full sync: %d ports, %d routes, %d labels",
            len(state.ports),
            len(state.routes),
            len(state.labels),
        )

    def apply(self, batch: Batch) -> None:
        self.forwarder.check(batch)
        opened = self._open_ports(list(batch.add_ports))
        if batch.add_sessions or batch.remove_sessions:
            try:
                self._sync_local(self.forwarder.sessions_after(batch).values())
            except ValueError:
                for pio in opened.values():
                    pio.close()
                raise
        self.forwarder.apply(batch)
        self._commit_ports(opened, set(self.forwarder.ports))

    def counters(self) -> dict[str, Any]:
        c = self.forwarder.counters()
        c["io_errors"] = dict(self.io_errors)
        return c

    def state(self) -> State:
        return self.forwarder.state()

    # ------------------------------------------------------------------ I/O

    # The readers below are the hot path: locals instead of attribute look-ups,
    # and each output goes to a send function cached per output target
    # (``_sender``), so a packet costs one pipeline call and one send.

    def _ring_reader(self, name: str, pio: PortIO) -> Callable[[socket.socket], None]:
        """Frames of a port with an RX ring: read in place, no system call per frame."""
        from_port = self.forwarder.from_port
        senders = self._senders
        sender = self._sender
        ring = pio.ring
        assert ring is not None
        view, fs, nframes = ring.view, ring.frame_size, ring.frames
        unpack = RING_HDR.unpack_from
        check_outgoing = not pio.ignores_outgoing
        errors = self.io_errors

        def read(_sock: socket.socket) -> None:
            i = ring.head
            for _ in range(BURST):
                off = i * fs
                if not view[off] & TP_STATUS_USER:
                    break
                length, snaplen, mac = unpack(view, off + 4)
                if snaplen < length:
                    errors["rx-truncated"] = errors.get("rx-truncated", 0) + 1
                elif not (check_outgoing and view[off + PKTTYPE_OFF] == PACKET_OUTGOING):
                    start = off + mac
                    for where, data in from_port(name, view[start : start + snaplen]):
                        send = senders.get(where)
                        if send is None:
                            send = sender(where)
                        try:
                            send(data)
                        except OSError as exc:
                            self._io_error(exc)
                # Outputs are fresh buffers (the pipeline copies), so the slot
                # can go back to the kernel at once.
                view[off : off + 4] = RELEASE
                i = i + 1 if i + 1 < nframes else 0
            ring.head = i

        return read

    def _port_reader(self, name: str, pio: PortIO) -> Callable[[socket.socket], None]:
        """Frames of a port without a ring: one ``recv_into`` per frame."""
        from_port = self.forwarder.from_port
        senders = self._senders
        sender = self._sender
        view = self._view
        buf = self._buf
        ignores = pio.ignores_outgoing

        def read(sock: socket.socket) -> None:
            for _ in range(BURST):
                try:
                    if ignores:
                        n = sock.recv_into(buf)
                    else:
                        n, addr = sock.recvfrom_into(buf)
                        if addr[2] == PACKET_OUTGOING:
                            continue
                except BlockingIOError:
                    return
                except OSError as exc:
                    self._io_error(exc)
                    return
                for where, data in from_port(name, view[:n]):
                    send = senders.get(where)
                    if send is None:
                        send = sender(where)
                    try:
                        send(data)
                    except OSError as exc:
                        self._io_error(exc)

        return read

    def _underlay_reader(self, encap: str, ip_header: bool) -> Callable[[socket.socket], None]:
        """Tunnel payloads from the UDP socket or (``ip_header``: IPv4 raw GRE) with it."""
        from_underlay = self.forwarder.from_underlay
        senders = self._senders
        sender = self._sender
        view = self._view
        buf = self._buf

        def read(sock: socket.socket) -> None:
            for _ in range(BURST):
                try:
                    n, addr = sock.recvfrom_into(buf)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self._io_error(exc)
                    return
                off = (buf[0] & 0x0F) * 4 if ip_header and n else 0
                for where, data in from_underlay(view[off:n], addr[0], encap):
                    send = senders.get(where)
                    if send is None:
                        send = sender(where)
                    try:
                        send(data)
                    except OSError as exc:
                        self._io_error(exc)

        return read

    def _sender(self, where: ToPort | ToUnderlay | ToLocal) -> Send:
        """Resolve (and cache) how to send to ``where``."""
        send: Send
        if isinstance(where, ToLocal):
            send = self.local.write
        elif isinstance(where, ToPort):
            pio = self.port_socks.get(where.name)
            send = self._count("port-not-open") if pio is None else pio.sock.send
        else:
            send = self._underlay_send(where)
        self._senders[where] = send
        return send

    def _underlay_send(self, where: ToUnderlay) -> Send:
        key = (where.endpoint, where.proto)
        s = self._connected.get(key)
        if s is not None:
            return s.send
        u = self.underlay.get(where.family)
        if u is None:
            return self._count("no-underlay")
        if len(self._connected) < MAX_CONNECTED:
            try:
                s = self._connected[key] = u.connected(where.endpoint, where.proto)
                return s.send
            except OSError as exc:
                self._io_error(exc)
        shared = self._tx[(where.family, where.proto)]
        dest = (where.endpoint, 0)
        return lambda data: shared.sendto(data, dest)

    def _count(self, what: str) -> Send:
        def send(_data: Any) -> None:
            self.io_errors[what] = self.io_errors.get(what, 0) + 1

        return send

    def _send(self, outs: list[Output]) -> None:
        for where, data in outs:
            send = self._senders.get(where) or self._sender(where)
            try:
                send(data)
            except OSError as exc:
                self._io_error(exc)

    def _io_error(self, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.io_errors[name] = self.io_errors.get(name, 0) + 1

    def stop(self, *_: object) -> None:
        self._stop = True

    def run(self) -> None:
        sel = self.sel
        while not self._stop:
            for key, _mask in sel.select(timeout=0.2):
                try:  # skip a socket an earlier handler of this round unregistered (a removed port)
                    if sel.get_key(key.fileobj) is not key:
                        continue
                except (KeyError, ValueError):
                    continue
                key.data(key.fileobj)
            if self.server is not None:
                self.server.tick()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for pio in self.port_socks.values():
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(pio.sock)
            pio.close()
        self.port_socks.clear()
        for s in self._connected.values():
            s.close()
        if self._local_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self._local_fd)
            self._local_fd = None
        self.local.close()
        for u in self.underlay.values():
            for s in (u.udp_rx, u.gre):
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(s)
            u.close()
        if self._own_selector:
            self.sel.close()


def create_driver(options: DriverOptions, selector: selectors.BaseSelector) -> ForwarderProcess:
    """The registry's factory of the "userspace" driver."""
    return ForwarderProcess(
        options.underlay_if,
        [str(a) for a in options.underlay_ips],
        underlay_mtu=options.underlay_mtu,
        selector=selector,
    )
