"""A scripted BGP peer: real TCP, hand-made messages, blocking (run it in a thread).

Why not a daemon: the RFC 7606 and prefix-limit proofs need a peer that sends
exactly the octets a test chooses -- malformed UPDATEs included -- and reports
exactly what came back (the NOTIFICATION, its data). It speaks just enough
BGP for that: OPEN with the capabilities given, KEEPALIVEs, then whatever the
test sends; :meth:`ScriptedPeer.expect_notification` reads until a
NOTIFICATION or the close. Messages are built with vpe's own codec only where
the test wants well-formed ones; malformed ones are octets.
"""

from __future__ import annotations

import socket
import struct
import time
from ipaddress import IPv4Address

from vpe.bgp.wire.capabilities import FourOctetAS, Multiprotocol
from vpe.bgp.wire.constants import VPNV4, Family, MessageType
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.notification import Notification
from vpe.bgp.wire.open import Open

MARKER = b"\xff" * 16


def frame(msg_type: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), msg_type) + body


def update_body(withdrawn: bytes = b"", attrs: bytes = b"", nlri: bytes = b"") -> bytes:
    """An UPDATE body from its three raw parts (lengths computed, so they can be wrong only on purpose)."""
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri


def attr(flags: int, code: int, value: bytes) -> bytes:
    """One path attribute, extended length when the flags say so."""
    if flags & 0x10:
        return struct.pack("!BBH", flags, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def ipv4_prefixes(prefixes: list[str]) -> bytes:
    out = bytearray()
    for p in prefixes:
        net, _, plen = p.partition("/")
        n = int(plen)
        out.append(n)
        out += IPv4Address(net).packed[: (n + 7) // 8]
    return bytes(out)


class ScriptedPeer:
    """One BGP connection from ``local`` to a speaker listening on ``remote``:``port``."""

    def __init__(self, local: str, remote: str, port: int, *, asn: int = 65000,
                 router_id: str = "198.18.0.99", families: tuple[Family, ...] = (VPNV4,),
                 hold_time: int = 90, ttl: int | None = None) -> None:
        self.local, self.remote, self.port = local, remote, port
        self.asn, self.router_id, self.families, self.hold_time = asn, router_id, families, hold_time
        self.ttl = ttl
        self.sock: socket.socket | None = None
        self._buf = b""
        self.received: list[tuple[int, bytes]] = []

    # -- connection ------------------------------------------------------------------

    def connect(self, timeout: float = 10.0, *, open_body: bytes | None = None) -> None:
        """Connect (retrying while the speaker refuses) and send OPEN (``open_body``: raw)."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2.0)
            if self.ttl is not None:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.ttl)
            try:
                s.bind((self.local, 0))
                s.connect((self.remote, self.port))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock = s
        self._buf = b""
        if open_body is None:
            caps = [Multiprotocol(f.afi, f.safi) for f in self.families]
            op = Open.create(self.asn, self.hold_time, self.router_id, [*caps, FourOctetAS(self.asn)])
            open_body = op.encode(DEFAULT_CONTEXT)
        self.send(MessageType.OPEN, open_body)

    def establish(self, timeout: float = 10.0) -> None:
        """Connect, exchange OPENs and KEEPALIVEs: the session is Established on return."""
        deadline = time.monotonic() + timeout
        while True:
            self.connect(max(0.5, deadline - time.monotonic()))
            try:
                t, _ = self.recv(max(0.5, deadline - time.monotonic()))
                if t != MessageType.OPEN:
                    raise ConnectionError(f"expected OPEN, got type {t}")
                self.send(MessageType.KEEPALIVE, b"")
                while True:
                    t, body = self.recv(max(0.5, deadline - time.monotonic()))
                    if t == MessageType.KEEPALIVE:
                        return
                    if t == MessageType.NOTIFICATION:
                        raise ConnectionError(f"NOTIFICATION {body.hex()}")
            except (ConnectionError, OSError):
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- messages --------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def send(self, msg_type: int, body: bytes) -> None:
        self.send_raw(frame(msg_type, body))

    def send_update(self, body: bytes) -> None:
        self.send(MessageType.UPDATE, body)

    def recv(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next message (type, body); ConnectionError when the speaker closed."""
        assert self.sock is not None
        self.sock.settimeout(timeout)
        while True:
            if len(self._buf) >= 19:
                length, t = struct.unpack_from("!HB", self._buf, 16)
                if len(self._buf) >= length:
                    body, self._buf = self._buf[19:length], self._buf[length:]
                    self.received.append((t, body))
                    return t, body
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the speaker")
            self._buf += data

    def expect_notification(self, timeout: float = 5.0) -> Notification:
        """Read (answering nothing, skipping UPDATEs/KEEPALIVEs) until a NOTIFICATION."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no NOTIFICATION")
            t, body = self.recv(left)
            if t == MessageType.NOTIFICATION:
                return Notification.decode(body, DEFAULT_CONTEXT)

    def still_open(self, wait: float = 0.5) -> bool:
        """True when the speaker neither closed nor sent a NOTIFICATION within ``wait`` s."""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                t, _ = self.recv(max(0.01, deadline - time.monotonic()))
                if t == MessageType.NOTIFICATION:
                    return False
        except TimeoutError:
            return True
        except (ConnectionError, OSError):
            return False
        return True
