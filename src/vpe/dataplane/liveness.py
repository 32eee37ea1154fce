"""Forwarder-to-forwarder liveness: a dead remote vPE is routed around in one FIB operation.

R11.2 (docs/fast-reroute.md). Every forwarder runs with ``--liveness
INTERVAL``: it answers probes on UDP port :data:`PORT` of its underlay
addresses, and it probes every remote endpoint its routes use, once per
interval. An endpoint that has answered once is *monitored*; when it misses
``multiplier`` intervals in a row it is declared down with one
``Batch(down_endpoints=(endpoint,))`` - one map entry in the eBPF driver, one
flag in the userspace one - and every route through it switches at once to
its other group members or its pre-installed backup. An answer declares it
up again. An endpoint that never answered (a PE without vpe's liveness, an
old forwarder) is never declared down: the control plane's withdrawals stay
the only signal for it.

The signal is the underlay path itself (what the tunnel uses), not the BGP
session: hosts usually peer with route reflectors, and a host whose underlay
link died keeps no session anybody else could see go down before its hold
timer expires.

Probe format (8 octets): ``b"VPL"``, a type octet (1 request, 2 reply), a
32-bit sequence number echoed back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable

from .driver import Batch, Driver, IPAddress

log = logging.getLogger("vpe.dataplane.liveness")

#: the UDP port probes go to (next to MPLS-in-UDP's 6635)
PORT = 6636
_PROBE = struct.Struct("!3sBI")
_MAGIC = b"VPL"
_REQUEST, _REPLY = 1, 2
#: how often the probed endpoints are re-read from the driver's state
REFRESH = 1.0


class Liveness:
    """Probe the remote endpoints of a driver's routes; declare the silent ones down."""

    def __init__(
        self,
        driver: Driver,
        selector: selectors.BaseSelector,
        underlay_ips: Iterable[IPAddress],
        interval: float = 0.1,
        multiplier: int = 3,
        port: int = PORT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.005 <= interval <= 60:
            raise ValueError(f"liveness interval: {interval!r} s is not in 0.005..60")
        if not 2 <= multiplier <= 100:
            raise ValueError(f"liveness multiplier: {multiplier!r} is not in 2..100")
        self.driver = driver
        self.sel = selector
        self.interval = interval
        self.multiplier = multiplier
        self.port = port
        self.clock = clock
        self.socks: dict[int, socket.socket] = {}
        for a in underlay_ips:
            fam = socket.AF_INET if a.version == 4 else socket.AF_INET6
            s = socket.socket(fam, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((str(a), port))
                s.setblocking(False)
            except OSError:
                s.close()
                self.close()
                raise
            self.socks[a.version] = s
            selector.register(s, selectors.EVENT_READ, self._readable)
        #: endpoint -> monotonic time of its last reply (monitored once it answered)
        self.last_reply: dict[IPAddress, float] = {}
        self.targets: tuple[IPAddress, ...] = ()
        self.down: set[IPAddress] = set()
        self.seq = 0
        self._next_probe = 0.0
        self._next_refresh = 0.0
        self.events: list[tuple[float, str, str]] = []

    # -- the loop's turns -------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds until the next probe is due (the selector's timeout)."""
        return max(0.0, self._next_probe - self.clock())

    def tick(self) -> None:
        now = self.clock()
        if now >= self._next_refresh:
            self._refresh()
            self._next_refresh = now + REFRESH
        if now < self._next_probe:
            return
        self._next_probe = now + self.interval
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        req = _PROBE.pack(_MAGIC, _REQUEST, self.seq)
        for ep in self.targets:
            s = self.socks.get(ep.version)
            if s is not None:
                with contextlib.suppress(OSError):  # unreachable now: the timer decides
                    s.sendto(req, (str(ep), self.port))
        dead = self.interval * self.multiplier
        newly = [
            ep
            for ep, t in self.last_reply.items()
            if ep not in self.down and now - t > dead and ep in self._target_set
        ]
        if newly:
            self._set(down=newly)

    def _refresh(self) -> None:
        st = self.driver.state()
        eps: set[IPAddress] = set()
        for r in st.routes:
            for nh in (*r.next_hops, *r.backup):
                if nh.endpoint is not None:
                    eps.add(nh.endpoint)
        self.targets = tuple(sorted(eps, key=lambda a: (a.version, a.packed)))
        self._target_set = frozenset(eps)
        for ep in list(self.last_reply):
            if ep not in eps:
                del self.last_reply[ep]
                self.down.discard(ep)
        # a full sync from the control plane forgets what was declared: declare it again
        lost = self.down - set(st.down_endpoints)
        if lost:
            self.driver.apply(Batch(down_endpoints=tuple(lost)))

    _target_set: frozenset[IPAddress] = frozenset()

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(256):  # bounded: the loop has other sockets
            try:
                data, addr = sock.recvfrom(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) != _PROBE.size:
                continue
            magic, kind, seq = _PROBE.unpack(data)
            if magic != _MAGIC:
                continue
            if kind == _REQUEST:
                with contextlib.suppress(OSError):
                    sock.sendto(_PROBE.pack(_MAGIC, _REPLY, seq), addr[:2])
            elif kind == _REPLY:
                try:
                    ep = ipaddress.ip_address(addr[0])
                except ValueError:
                    continue
                self.last_reply[ep] = self.clock()
                if ep in self.down:
                    self._set(up=[ep])

    def _set(self, down: Iterable[IPAddress] = (), up: Iterable[IPAddress] = ()) -> None:
        down, up = tuple(down), tuple(up)
        self.driver.apply(Batch(down_endpoints=down, up_endpoints=up))
        now = self.clock()
        for ep in down:
            self.down.add(ep)
            self.events.append((now, "down", str(ep)))
            log.warning("liveness: endpoint %s declared down (no answer for %.0f ms)",
                        ep, 1000 * self.interval * self.multiplier)
        for ep in up:
            self.down.discard(ep)
            self.events.append((now, "up", str(ep)))
            log.warning("liveness: endpoint %s is up again", ep)
        del self.events[:-100]

    def close(self) -> None:
        for s in self.socks.values():
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(s)
            s.close()
        self.socks.clear()
