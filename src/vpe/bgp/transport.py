"""The socket layer under BGP sessions: TCP-MD5, GTSM, local binding, accept, back-pressure.

The protocol core (codec, FSM) is sans-IO; this module is the thin asyncio
glue that gives it a byte stream. It holds exactly the things a BGP speaker
needs from TCP on Linux and nothing else:

* :func:`md5_sockopt` - RFC 2385 TCP-MD5 signatures (``TCP_MD5SIG`` /
  ``TCP_MD5SIG_EXT``), still what most PE routers and route reflectors use
  to protect a session;
* :func:`gtsm_sockopt` - RFC 5082 Generalized TTL Security: send with TTL
  255 and have the kernel drop anything that arrives with less than
  ``256 - hops``, so a spoofer far away cannot reach the session at all;
* :func:`bind_local` - the per-peer local address (the update-source);
* :func:`open_connection` - an active open with all of the above prepared
  on the socket *before* ``connect()``, as the kernel requires;
* :class:`Listener` - a passive socket per local address:port that only
  hands over connections from configured neighbors;
* :class:`Backoff` - ConnectRetry delays that grow, cap and jitter;
* :class:`BoundedWriter` - a write side that blocks the producer instead of
  letting a slow peer grow our memory without bound.

Errors are precise: bad arguments raise :class:`ValueError` saying what is
wrong; a kernel refusal is re-raised as :class:`OSError` (same errno, so the
same subclass) with the peer or address named.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "BGP_PORT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HIGH_WATER",
    "TCP_MD5SIG_MAXKEYLEN",
    "AcceptCallback",
    "Backoff",
    "BoundedWriter",
    "Listener",
    "bind_local",
    "gtsm_sockopt",
    "ttl_sockopt",
    "md5_sockopt",
    "normalize_address",
    "open_connection",
    "pack_md5sig",
]

log = logging.getLogger(__name__)

BGP_PORT = 179
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_HIGH_WATER = 1 << 20  # 1 MiB

# Linux numbers that the socket module does not export (include/uapi/linux/tcp.h, in.h, in6.h).
TCP_MD5SIG = 14
TCP_MD5SIG_EXT = 32
TCP_MD5SIG_FLAG_PREFIX = 0x1
TCP_MD5SIG_FLAG_IFINDEX = 0x2
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21
IPV6_MINHOPCOUNT = 73
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MAX_TTL = 255

# struct tcp_md5sig: __kernel_sockaddr_storage (128), u8 flags, u8 prefixlen,
# u16 keylen, int ifindex, u8 key[80]; native byte order, no padding (216 octets).
_SOCKADDR_STORAGE_LEN = 128
_MD5SIG = struct.Struct("=128sBBHi80s")
_SA_FAMILY = struct.Struct("=H")  # sa_family_t is host order
_SIN_REST = struct.Struct("!H4s")  # port, address: network order
_SIN6_REST = struct.Struct("!HI16s")  # port, flowinfo, address: network order
_SCOPE_ID = struct.Struct("=I")  # sin6_scope_id is host order

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressLike = str | IPAddress


# --------------------------------------------------------------------------- addresses


def _parse_address(addr: AddressLike, what: str) -> IPAddress:
    """Parse an IP literal; host names are refused because a key or a bind needs one address."""
    if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
        ip: IPAddress = addr
    else:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"{what} {addr!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise ValueError(f"{what} {addr!s}: scoped IPv6 addresses are not supported")
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def normalize_address(addr: AddressLike) -> str:
    """Canonical text of an address, IPv4-mapped IPv6 folded to IPv4.

    Neighbor tables are keyed by this, so ``"::ffff:127.0.0.2"`` from a
    dual-stack accept and ``"127.0.0.2"`` from the config are the same peer.
    """
    return str(_parse_address(addr, "address"))


def _socket_family(sock: socket.socket, what: str) -> socket.AddressFamily:
    family = sock.family
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"{what}: unsupported socket family {family!r} (need AF_INET or AF_INET6)")
    return family


def _family_of(ip: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


def _sockaddr_storage(ip: IPAddress, sock_family: socket.AddressFamily) -> bytes:
    """A ``sockaddr_in`` / ``sockaddr_in6`` padded to 128 octets, port 0.

    An IPv4 peer on an AF_INET6 socket is written as IPv4-mapped IPv6, the
    form the kernel expects for dual-stack sockets.
    """
    if sock_family == socket.AF_INET:
        if ip.version != 4:
            raise ValueError(f"peer {ip} is IPv6 but the socket is AF_INET")
        raw = _SA_FAMILY.pack(socket.AF_INET) + _SIN_REST.pack(0, ip.packed)
    else:
        if ip.version == 4:
            ip = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed)
        raw = (
            _SA_FAMILY.pack(socket.AF_INET6) + _SIN6_REST.pack(0, 0, ip.packed) + _SCOPE_ID.pack(0)
        )
    return raw.ljust(_SOCKADDR_STORAGE_LEN, b"\x00")


# --------------------------------------------------------------------------- TCP-MD5


def _key_bytes(password: str | bytes) -> bytes:
    key = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    if not key:
        raise ValueError("TCP-MD5 password is empty; pass None to remove the key")
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(
            f"TCP-MD5 password is {len(key)} octets long; Linux allows at most {TCP_MD5SIG_MAXKEYLEN}"
        )
    return key


def pack_md5sig(
    peer_addr: AddressLike,
    password: str | bytes | None,
    sock_family: socket.AddressFamily,
    prefixlen: int | None = None,
    ifindex: int = 0,
) -> tuple[int, bytes]:
    """Build ``(optname, struct tcp_md5sig)`` for one peer; ``password=None`` means delete.

    Split from :func:`md5_sockopt` so the exact layout is testable without a
    kernel. ``TCP_MD5SIG_EXT`` is chosen only when a prefix length or an
    interface index asks for it, so plain keys work on old kernels too.
    """
    if sock_family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"TCP-MD5: unsupported socket family {sock_family!r}")
    ip = _parse_address(peer_addr, "TCP-MD5 peer")
    key = b"" if password is None else _key_bytes(password)
    flags = 0
    plen = 0
    if prefixlen is not None:
        max_len = 32 if ip.version == 4 else 128
        if not 0 <= prefixlen <= max_len:
            raise ValueError(f"TCP-MD5 prefix length {prefixlen} for {ip} is not in 0..{max_len}")
        flags |= TCP_MD5SIG_FLAG_PREFIX
        plen = prefixlen
    if ifindex:
        if ifindex < 0:
            raise ValueError(f"TCP-MD5 interface index {ifindex} is negative")
        flags |= TCP_MD5SIG_FLAG_IFINDEX
    optname = TCP_MD5SIG_EXT if flags else TCP_MD5SIG
    packed = _MD5SIG.pack(_sockaddr_storage(ip, sock_family), flags, plen, len(key), ifindex, key)
    return optname, packed


def md5_sockopt(
    sock: socket.socket,
    peer_addr: AddressLike,
    password: str | bytes | None,
    prefixlen: int | None = None,
    *,
    ifindex: int = 0,
) -> None:
    """Install (or with ``password=None`` remove) the TCP-MD5 key for ``peer_addr``.

    On a listening socket call it once per expected peer: the kernel then
    drops unsigned or wrongly signed SYNs from that address and accepts
    others as before. On a connecting socket call it before ``connect()``.
    """
    family = _socket_family(sock, f"TCP-MD5 for peer {peer_addr}")
    optname, packed = pack_md5sig(peer_addr, password, family, prefixlen, ifindex)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, optname, packed)
    except OSError as exc:
        action = "removing" if password is None else "setting"
        raise OSError(
            exc.errno, f"{action} TCP-MD5 key for peer {peer_addr} failed: {exc.strerror}"
        ) from exc


# --------------------------------------------------------------------------- GTSM


def gtsm_sockopt(sock: socket.socket, hops: int = 1) -> None:
    """RFC 5082: send with TTL 255, accept only TTL >= 256 - ``hops``.

    ``hops`` is the number of router hops to the peer (1 for a directly
    connected one). A dual-stack AF_INET6 socket gets the IPv4 options too,
    because IPv4-mapped traffic is checked against those.
    """
    if not 1 <= hops <= MAX_TTL:
        raise ValueError(f"GTSM hop count {hops} is not in 1..{MAX_TTL}")
    family = _socket_family(sock, "GTSM")
    min_ttl = MAX_TTL - hops + 1
    opts: list[tuple[int, int, int, str]] = []
    v6only = 0
    if family == socket.AF_INET6:
        opts += [
            (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, MAX_TTL, "IPV6_UNICAST_HOPS"),
            (socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, min_ttl, "IPV6_MINHOPCOUNT"),
        ]
        v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    if family == socket.AF_INET or not v6only:
        opts += [
            (socket.IPPROTO_IP, socket.IP_TTL, MAX_TTL, "IP_TTL"),
            (socket.IPPROTO_IP, IP_MINTTL, min_ttl, "IP_MINTTL"),
        ]
    for level, opt, value, name in opts:
        try:
            sock.setsockopt(level, opt, value)
        except OSError as exc:
            raise OSError(
                exc.errno, f"GTSM: setting {name}={value} failed: {exc.strerror}"
            ) from exc


def ttl_sockopt(sock: socket.socket, ttl: int) -> None:
    """Send with IP TTL (IPv6 hop limit) ``ttl``: 1 keeps a directly connected eBGP
    session from crossing a router, N allows N hops (``ebgp_multihop``)."""
    if not 1 <= ttl <= MAX_TTL:
        raise ValueError(f"TTL {ttl} is not in 1..{MAX_TTL}")
    family = _socket_family(sock, "TTL")
    opts: list[tuple[int, int, str]] = []
    if family == socket.AF_INET6:
        opts.append((socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS"))
        if not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            opts.append((socket.IPPROTO_IP, socket.IP_TTL, "IP_TTL"))
    else:
        opts.append((socket.IPPROTO_IP, socket.IP_TTL, "IP_TTL"))
    for level, opt, name in opts:
        try:
            sock.setsockopt(level, opt, ttl)
        except OSError as exc:
            raise OSError(exc.errno, f"setting {name}={ttl} failed: {exc.strerror}") from exc


TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28


def syn_ttl(conn: socket.socket) -> int | None:
    """The TTL (hop limit) of the SYN that opened ``conn``, accepted on a listener
    with TCP_SAVE_SYN; None when the kernel kept no SYN.

    Why: IP_MINTTL can only be set on an accepted socket once it is accepted,
    and the peer's first segments (its OPEN) may be queued before that; the
    SYN's TTL says whether the handshake itself came from within the GTSM
    radius, closing that gap (RFC 5082 section 3).
    """
    try:
        syn = conn.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, 512)
    except OSError:
        return None
    if len(syn) >= 20 and syn[0] >> 4 == 4:
        return syn[8]
    if len(syn) >= 40 and syn[0] >> 4 == 6:
        return syn[7]
    return None


# --------------------------------------------------------------------------- binding


def bind_local(sock: socket.socket, local_addr: AddressLike, port: int = 0) -> None:
    """Bind to the per-peer local address (the BGP update-source).

    With ``port=0`` the kernel is asked (``IP_BIND_ADDRESS_NO_PORT``) to pick
    the ephemeral port only at ``connect()``, so many sessions from one
    local address do not exhaust ports early.
    """
    family = _socket_family(sock, f"bind to {local_addr}")
    ip = _parse_address(local_addr, "local address")
    if _family_of(ip) != family:
        raise ValueError(
            f"local address {ip} is IPv{ip.version} but the socket is "
            f"{'AF_INET' if family == socket.AF_INET else 'AF_INET6'}"
        )
    if port == 0:
        with contextlib.suppress(OSError):  # an optimisation only; old kernels lack it
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    try:
        sock.bind((str(ip), port))
    except OSError as exc:
        raise OSError(exc.errno, f"bind to {ip} port {port} failed: {exc.strerror}") from exc


def _new_socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _set_nodelay(sock: socket.socket) -> None:
    # The session writes whole messages (and batches UPDATEs itself); Nagle
    # would only delay KEEPALIVEs and the last UPDATE of a burst.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------- active open


async def open_connection(
    peer: AddressLike,
    port: int = BGP_PORT,
    local_addr: AddressLike | None = None,
    md5: str | bytes | None = None,
    gtsm: int | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ttl: int | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``peer``:``port`` with MD5 / GTSM / local address set before ``connect()``.

    Raises :class:`TimeoutError` when nothing answers within ``timeout``
    seconds (what a TCP-MD5 or GTSM mismatch looks like: the peer's kernel
    drops the SYNs silently), :class:`OSError` subclasses such as
    :class:`ConnectionRefusedError` otherwise; every message names the peer.
    """
    ip = _parse_address(peer, "peer")
    where = f"{ip} port {port}" + (f" from {local_addr}" if local_addr is not None else "")
    sock = _new_socket(_family_of(ip))
    try:
        _set_nodelay(sock)
        if md5 is not None:
            md5_sockopt(sock, ip, md5)
        if gtsm is not None:
            gtsm_sockopt(sock, gtsm)
        elif ttl is not None:
            ttl_sockopt(sock, ttl)
        if local_addr is not None:
            bind_local(sock, local_addr)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (str(ip), port))
        except TimeoutError:
            msg = f"connect to {where} timed out after {timeout:g} s"
            log.warning("%s", msg)
            raise TimeoutError(errno.ETIMEDOUT, msg) from None
        except OSError as exc:
            msg = f"connect to {where} failed: {exc.strerror or exc}"
            log.warning("%s", msg)
            raise OSError(exc.errno, msg) from exc
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


# --------------------------------------------------------------------------- passive open

AcceptCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, str, str], Awaitable[None] | None
]
"""Called with (reader, writer, peer address, local address) for each accepted neighbor."""


class _PeerEntry:
    __slots__ = ("password", "prefixlen", "gtsm", "ttl")

    def __init__(self, password: str | bytes | None, prefixlen: int | None, gtsm: int | None,
                 ttl: int | None = None):
        self.password = password
        self.prefixlen = prefixlen
        self.gtsm = gtsm
        self.ttl = ttl


#: Linux socket options (not in the socket module): bind to an address not (yet) local
_IP_FREEBIND = 15
_IPV6_FREEBIND = 78


class Listener:
    """One listening socket on ``local_addr``:``port`` that accepts only configured neighbors.

    Peers are added and removed at runtime; each may carry a TCP-MD5 key
    (installed on the listening socket, so the kernel itself rejects bad
    SYNs) and a GTSM hop count (applied to the accepted socket). ``gtsm`` on
    the listener applies to every incoming SYN. Connections from addresses
    not configured are closed at once and logged.

    ``on_accept`` may be a plain function or a coroutine function; a
    coroutine runs as a task owned by the listener and is cancelled by
    :meth:`close`, so a long-lived session should start its own task.
    """

    def __init__(
        self,
        local_addr: AddressLike,
        port: int,
        on_accept: AcceptCallback,
        *,
        gtsm: int | None = None,
        backlog: int = 64,
        freebind: bool = False,
    ) -> None:
        self._ip = _parse_address(local_addr, "listen address")
        #: bind even before the address exists on this host (IP_FREEBIND): an address a
        #: forwarder puts on its local interface later (PE-CE sessions through ports)
        self._freebind = freebind
        self._port = port
        self._on_accept = on_accept
        self._gtsm = gtsm
        self._backlog = backlog
        self._peers: dict[str, _PeerEntry] = {}
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- configuration

    @property
    def local_address(self) -> str:
        return str(self._ip)

    @property
    def port(self) -> int:
        """The bound port (the real one once started, also when 0 was asked for)."""
        if self._sock is not None:
            return int(self._sock.getsockname()[1])
        return self._port

    @property
    def peers(self) -> frozenset[str]:
        return frozenset(self._peers)

    @property
    def serving(self) -> bool:
        return self._accept_task is not None and not self._accept_task.done()

    def add_peer(
        self,
        addr: AddressLike,
        password: str | bytes | None = None,
        *,
        prefixlen: int | None = None,
        gtsm: int | None = None,
        ttl: int | None = None,
    ) -> None:
        """Accept connections from ``addr``; replaces an earlier entry for the same peer.

        The key goes into the kernel first: if that fails nothing changes.
        """
        peer = normalize_address(addr)
        if ipaddress.ip_address(peer).version != self._ip.version:
            raise ValueError(
                f"peer {peer} is IPv{ipaddress.ip_address(peer).version} "
                f"but listener {self} is IPv{self._ip.version} only"
            )
        if gtsm is not None and not 1 <= gtsm <= MAX_TTL:
            raise ValueError(f"GTSM hop count {gtsm} for peer {peer} is not in 1..{MAX_TTL}")
        if ttl is not None and not 1 <= ttl <= MAX_TTL:
            raise ValueError(f"TTL {ttl} for peer {peer} is not in 1..{MAX_TTL}")
        old = self._peers.get(peer)
        if self._sock is not None:
            if password is not None:
                md5_sockopt(self._sock, peer, password, prefixlen)
            elif old is not None and old.password is not None:
                md5_sockopt(self._sock, peer, None, old.prefixlen)
        else:
            if password is not None:  # validate now, install at start()
                pack_md5sig(peer, password, _family_of(self._ip), prefixlen)
        self._peers[peer] = _PeerEntry(password, prefixlen, gtsm, ttl)

    def remove_peer(self, addr: AddressLike) -> None:
        """Stop accepting ``addr`` and drop its key; established connections are not touched."""
        peer = normalize_address(addr)
        entry = self._peers.pop(peer, None)
        if entry is None:
            raise KeyError(f"peer {peer} is not configured on listener {self}")
        if self._sock is not None and entry.password is not None:
            md5_sockopt(self._sock, peer, None, entry.prefixlen)

    # -- lifecycle

    async def start(self) -> None:
        if self._sock is not None:
            raise RuntimeError(f"listener {self} already started")
        family = _family_of(self._ip)
        sock = _new_socket(family)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per address family: "::" and "0.0.0.0" listeners coexist.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            for peer, entry in self._peers.items():
                if entry.password is not None:
                    md5_sockopt(sock, peer, entry.password, entry.prefixlen)
            if self._gtsm is not None:
                gtsm_sockopt(sock, self._gtsm)
            with contextlib.suppress(OSError):  # kernels before 4.2: IP_MINTTL alone
                sock.setsockopt(socket.IPPROTO_TCP, TCP_SAVE_SYN, 1)
            if self._freebind:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
            bind_local(sock, self._ip, self._port)
            sock.listen(self._backlog)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._accept_task = asyncio.create_task(self._accept_loop(), name=f"accept {self}")
        log.info("listening on %s", self)

    async def close(self) -> None:
        """Stop accepting, close the listening socket and cancel running accept callbacks."""
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __str__(self) -> str:
        host = f"[{self._ip}]" if self._ip.version == 6 else str(self._ip)
        return f"{host}:{self.port}"

    # -- accepting

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        pause = 0.05
        while True:
            try:
                conn, addr = await loop.sock_accept(self._sock)
            except OSError as exc:
                # EMFILE / ENOBUFS and friends: back off a little and keep serving.
                log.warning("accept on %s failed: %s; retrying in %.2f s", self, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05
            self._admit(conn, addr)

    def _admit(self, conn: socket.socket, addr: Any) -> None:
        peer = normalize_address(addr[0])
        entry = self._peers.get(peer)
        if entry is None:
            log.warning("connection from %s refused: no such neighbor", peer)
            conn.close()
            return
        try:
            local = normalize_address(conn.getsockname()[0])
            conn.setblocking(False)
            _set_nodelay(conn)
            if entry.gtsm is not None:
                gtsm_sockopt(conn, entry.gtsm)
                ttl = syn_ttl(conn)
                if ttl is not None and ttl < MAX_TTL - entry.gtsm + 1:
                    log.warning("connection from %s refused: GTSM, its SYN came with TTL %d, "
                                "at least %d needed", peer, ttl, MAX_TTL - entry.gtsm + 1)
                    conn.close()
                    return
            elif entry.ttl is not None:
                ttl_sockopt(conn, entry.ttl)
        except OSError as exc:
            log.warning("connection from %s dropped: %s", peer, exc)
            conn.close()
            return
        task = asyncio.create_task(self._hand_over(conn, peer, local), name=f"accept {peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, conn: socket.socket, peer: str, local: str) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except OSError as exc:
            log.warning("connection from %s dropped: %s", peer, exc)
            conn.close()
            return
        log.info("connection from %s accepted on %s", peer, local)
        try:
            result = self._on_accept(reader, writer, peer, local)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            writer.close()
            raise
        except Exception:
            log.exception("accept callback for %s failed; closing the connection", peer)
            writer.close()


# --------------------------------------------------------------------------- retry timing


class Backoff:
    """Connect-retry delays: ``base * factor**n`` capped at ``cap``, minus random jitter.

    Jitter follows RFC 4271 section 10: the delay is multiplied by a random
    factor in ``[1 - jitter, 1]`` (0.75..1 by default), so that many
    sessions dropped at once do not retry in lock-step. The ``rng`` is
    injected so tests and simulations are reproducible. Pure: it returns
    numbers, the caller sleeps.
    """

    __slots__ = ("base", "cap", "factor", "jitter", "_rng", "_attempts")

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 120.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0:
            raise ValueError(f"backoff base {base} must be positive")
        if cap < base:
            raise ValueError(f"backoff cap {cap} is below the base {base}")
        if factor < 1:
            raise ValueError(f"backoff factor {factor} must be at least 1")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff jitter {jitter} is not in [0, 1)")
        self.base = base
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays have been handed out since the last :meth:`reset`."""
        return self._attempts

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; advances the sequence."""
        delay = self.base
        # Grow step by step so huge attempt counts never overflow a float.
        for _ in range(min(self._attempts, 1024)):
            delay *= self.factor
            if delay >= self.cap:
                break
        delay = min(delay, self.cap)
        self._attempts += 1
        if self.jitter:
            delay *= self._rng.uniform(1.0 - self.jitter, 1.0)
        return delay

    def reset(self) -> None:
        """Start over at ``base``; call when a session reached Established."""
        self._attempts = 0


# --------------------------------------------------------------------------- back-pressure


class BoundedWriter:
    """A StreamWriter whose producer waits while the peer is slow.

    ``send`` never blocks; it appends to the transport's buffer. The
    producer calls ``await drain_if_needed()`` between messages: it returns
    at once while less than ``high_water`` octets are queued and otherwise
    waits until the transport has flushed down to ``low_water``. So the
    memory held for one peer stays near ``high_water`` plus one message,
    whatever the peer does.
    """

    __slots__ = ("_writer", "_transport", "high_water", "low_water", "bytes_sent")

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int | None = None,
    ) -> None:
        if high_water <= 0:
            raise ValueError(f"high-water mark {high_water} must be positive")
        low = high_water // 4 if low_water is None else low_water
        if not 0 <= low <= high_water:
            raise ValueError(f"low-water mark {low} is not in 0..{high_water}")
        self._writer = writer
        self._transport = writer.transport
        self.high_water = high_water
        self.low_water = low
        self.bytes_sent = 0
        self._transport.set_write_buffer_limits(high=high_water, low=low)

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer

    @property
    def bytes_queued(self) -> int:
        """Octets handed to the transport that the kernel has not taken yet."""
        return int(self._transport.get_write_buffer_size())

    def local_address(self) -> str | None:
        """This side's address of the connection (None when the socket has none)."""
        name = self._transport.get_extra_info("sockname")
        return normalize_address(name[0]) if name else None

    @property
    def must_wait(self) -> bool:
        return self.bytes_queued > self.high_water

    def send(self, data: bytes) -> None:
        """Queue ``data``; raises ConnectionResetError if the connection is already closing."""
        if self._transport.is_closing():
            raise ConnectionResetError("connection is closing; cannot send")
        self._writer.write(data)
        self.bytes_sent += len(data)

    async def drain_if_needed(self) -> None:
        """Wait while more than ``high_water`` octets are queued (until below ``low_water``)."""
        if self.bytes_queued > self.high_water:
            await self._writer.drain()
