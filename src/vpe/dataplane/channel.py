"""The FIB channel: how a control plane programs a forwarder process.

Framing: each message is a 4-octet big-endian length, then that many octets
of msgpack encoding one map with a ``"type"`` key (after authentication, the
msgpack is followed by a 16-octet tag, see below). Version
:data:`PROTOCOL_VERSION`; the full description is in docs/dataplane.md.

=========  ==============================  ===================================
client     request                         reply
=========  ==============================  ===================================
hello      ``{type, version, client,       ``hello {version, server, driver,
           nonce?, keepalive?}``           generation, instance, nonce?,
                                           proof?}`` or ``ack ok=false``
auth       ``{type, proof}``               ``ack {ok, generation}``
sync       ``{type, id, state}``           ``ack {id, ok, error, generation}``
batch      ``{type, id, batch}``           ``ack {id, ok, error, generation}``
ping       ``{type, id}``                  ``pong {id, generation, instance}``
counters   ``{type, id}``                  ``counters {id, counters}``
state      ``{type, id}``                  ``state {id, state}``
=========  ==============================  ===================================

``state`` and ``batch`` bodies are :meth:`State.to_json` / :meth:`Batch.to_json`.
A batch is applied entirely or not at all; a refused one is answered with
``ok=false`` and a structured ``error``: ``{"code", "message", ...fields}``
(for example ``{"code": "port-unavailable", "port": "vm1", "ifname":
"tap1", "message": ...}``, see :mod:`vpe.dataplane.errors`), which the
client raises again as the same typed exception. The forwarder keeps its
tables when the control plane goes away; a control plane that
(re)connects sends ``sync`` and the forwarder replaces everything.

``generation`` counts successful sync/batch operations since the forwarder
started and ``instance`` names the forwarder process (random at start), so a
client tells a restarted forwarder from one that still holds its
programming, and notices a change it did not make (another writer): every
ack and pong carries the generation, which moves by exactly one per change
the client itself made.

Authentication (mutual, HMAC-SHA256 over a pre-shared key, RFC 2104): the
client's hello carries a random 32-octet ``nonce``; the server answers with
its own ``nonce`` and ``proof = HMAC(key, "vpe-fib server" | nc | ns)``; the
client checks it, then sends ``auth {proof = HMAC(key, "vpe-fib client" |
ns | nc)}``. Neither proof can be replayed (fresh nonces from both sides) or
reflected (distinct labels). From then on every frame in each direction
carries ``HMAC(k_dir, seq | body)[:16]`` with a per-direction key derived
from both nonces and a 64-bit sequence number, so a connection cannot be
taken over or replayed after the handshake. A forwarder given a key
requires it of every connection; a TCP listener always requires one.
Nothing is encrypted: the FIB holds addresses and labels, not secrets; the
key never crosses the channel.

Liveness: the client sends ``ping`` whenever it has nothing else to send for
``keepalive`` seconds (announced in its hello); the pong is the forwarder's
keepalive. Each end gives up a connection silent for three intervals: the
client reconnects and resyncs, the forwarder drops it (keeping its FIB). A
connection that has not finished hello/auth within :data:`HANDSHAKE_TIMEOUT`
is dropped, and before authentication a message may hold at most
:data:`MAX_HANDSHAKE_MESSAGE` octets.

Version 3 (authentication, ping, instance) replaced version 2 (structured
errors), which replaced version 1 (error text); each end speaks one version
and a mismatch is refused at ``hello`` with a message every version can read.

:class:`ServerConnection` is the sans-IO server side (bytes in, bytes out);
:class:`FibClient` is the blocking client the agent uses.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

import msgpack

from .driver import Batch, Driver, State
from .errors import (
    AuthenticationFailed,
    ChannelClosed,
    ChannelError,
    DriverError,
    DriverFailure,
    error_from_wire,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AuthenticationFailed",
    "ChannelClosed",
    "ChannelError",
    "Decoder",
    "FibClient",
    "FrameMac",
    "Handler",
    "ServerConnection",
    "encode",
    "load_key",
]

PROTOCOL_VERSION = 3
MAX_MESSAGE = 64 * 1024 * 1024
#: the largest message accepted before the other end is authenticated
MAX_HANDSHAKE_MESSAGE = 4096
#: seconds a connection may take to finish hello (and auth)
HANDSHAKE_TIMEOUT = 5.0
#: octets of a channel key, at least
MIN_KEY = 16
NONCE = 32
TAG = 16
_LEN = struct.Struct("!I")
_SEQ = struct.Struct("!Q")


def load_key(path: str) -> bytes:
    """The channel key in file ``path`` (surrounding whitespace ignored).

    ValueError, naming the file and the reason, when it cannot be read, is
    shorter than :data:`MIN_KEY` octets, or can be read by group or others.
    """
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            key = f.read(4096).strip()
    except OSError as e:
        raise ValueError(f"channel key file {path!r}: cannot read: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"channel key file {path!r}: mode {stat.S_IMODE(mode):04o} lets group or others "
            "read it; chmod 600"
        )
    if len(key) < MIN_KEY:
        raise ValueError(f"channel key file {path!r}: {len(key)} octets, at least {MIN_KEY} needed")
    return key


def _proof(key: bytes, label: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(key, label + first + second, hashlib.sha256).digest()


class FrameMac:
    """Per-frame authentication after the handshake: a tag over (sequence, body).

    ``client`` says which end this is; each direction has its own key, so a
    frame cannot be reflected back to its sender, and its own sequence, so it
    cannot be replayed, dropped or reordered unnoticed.
    """

    def __init__(self, key: bytes, nonce_client: bytes, nonce_server: bytes, *, client: bool) -> None:
        c2s = _proof(key, b"vpe-fib mac client", nonce_client, nonce_server)
        s2c = _proof(key, b"vpe-fib mac server", nonce_client, nonce_server)
        self._send_key, self._recv_key = (c2s, s2c) if client else (s2c, c2s)
        self._send_seq = 0
        self._recv_seq = 0

    def seal(self, body: bytes) -> bytes:
        tag = hmac.new(self._send_key, _SEQ.pack(self._send_seq) + body, hashlib.sha256).digest()
        self._send_seq += 1
        return body + tag[:TAG]

    def open(self, frame: bytes) -> bytes:
        if len(frame) < TAG:
            raise AuthenticationFailed("message too short to carry its authentication tag")
        body, tag = frame[:-TAG], frame[-TAG:]
        want = hmac.new(self._recv_key, _SEQ.pack(self._recv_seq) + body, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, want[:TAG]):
            raise AuthenticationFailed(
                f"message {self._recv_seq} failed authentication (altered, replayed or injected)"
            )
        self._recv_seq += 1
        return body


def encode(msg: dict[str, Any], mac: FrameMac | None = None) -> bytes:
    body: bytes = msgpack.packb(msg, use_bin_type=True)
    if mac is not None:
        body = mac.seal(body)
    if len(body) > MAX_MESSAGE:
        raise ChannelClosed(f"message of {len(body)} octets exceeds {MAX_MESSAGE}")
    return _LEN.pack(len(body)) + body


class Decoder:
    """Reassembles length-prefixed messages from a byte stream.

    ``mac`` (set once the handshake is done) checks and strips each frame's
    tag; ``max_message`` bounds one message (small until the other end is
    authenticated). :meth:`pop` decodes one message at a time, so a change
    of ``mac`` between two messages applies from the next one on.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.mac: FrameMac | None = None
        self.max_message = max_message

    def push(self, data: bytes) -> None:
        self._buf += data

    def pop(self) -> dict[str, Any] | None:
        """The next complete message, or None (ChannelClosed: the stream is unusable)."""
        if len(self._buf) < 4:
            return None
        (n,) = _LEN.unpack_from(self._buf, 0)
        if n > self.max_message:
            raise ChannelClosed(f"message length {n} exceeds {self.max_message}")
        if len(self._buf) < 4 + n:
            return None
        body = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        if self.mac is not None:
            body = self.mac.open(body)
        try:
            msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ChannelClosed(f"undecodable message: {exc}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ChannelClosed(f"message is not a map with a 'type': {msg!r:.80}")
        return msg

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.push(data)
        out: list[dict[str, Any]] = []
        while (msg := self.pop()) is not None:
            out.append(msg)
        return out


#: what the server side drives (the name the channel used before drivers had one)
Handler = Driver


class ServerConnection:
    """One control-plane connection, sans-IO: ``receive(bytes) -> bytes to send``.

    ``closed`` turns true after a fatal protocol error (the reply explaining it
    is still returned so the peer learns why). ``key``: the channel key every
    client must prove it holds (None: no authentication, a Unix socket's file
    permissions guard it). ``instance`` names the forwarder process.
    :meth:`expired` says when the connection has been silent too long.
    """

    def __init__(
        self,
        handler: Driver,
        generation: Callable[[], int],
        name: str = "vpe-forwarder",
        driver: str = "userspace",
        *,
        key: bytes | None = None,
        instance: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handler = handler
        self._generation = generation
        self._name = name
        self._driver = driver
        self._key = key
        self._instance = instance
        self._clock = clock
        self._decoder = Decoder(MAX_HANDSHAKE_MESSAGE)
        self._mac: FrameMac | None = None
        self._nonces: tuple[bytes, bytes] | None = None
        self.hello_done = False
        self.authenticated = False
        self.closed = False
        self.opened = clock()
        self.last_heard = self.opened
        #: seconds of silence after which the client is taken for gone (from its hello)
        self.dead_after: float | None = None
        self.client = ""

    @property
    def ready(self) -> bool:
        """Hello (and authentication, when a key is set) done: requests are served."""
        return self.hello_done and (self._key is None or self.authenticated)

    def expired(self, now: float) -> str | None:
        """Why the connection should be dropped at ``now`` (None: it is fine)."""
        if not self.ready:
            if now - self.opened > HANDSHAKE_TIMEOUT:
                return f"no hello/authentication within {HANDSHAKE_TIMEOUT:g} s"
            return None
        if self.dead_after is not None and now - self.last_heard > self.dead_after:
            return f"control plane silent for {now - self.last_heard:.1f} s"
        return None

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        self.last_heard = self._clock()
        self._decoder.push(data)
        while not self.closed:
            try:
                msg = self._decoder.pop()
            except ChannelError as exc:
                self.closed = True
                out += self._send(
                    {"type": "ack", "id": None, "ok": False, "error": _protocol_error(str(exc))}
                )
                break
            if msg is None:
                break
            out += self._one(msg)
        self.last_heard = self._clock()
        return bytes(out)

    def _send(self, msg: dict[str, Any]) -> bytes:
        return encode(msg, self._mac)

    def _ack(self, mid: Any, error: dict[str, str] | None = None) -> bytes:
        return self._send(
            {
                "type": "ack",
                "id": mid,
                "ok": error is None,
                "error": error,
                "generation": self._generation(),
            }
        )

    def _refuse(self, mid: Any, message: str) -> bytes:
        self.closed = True
        return self._ack(mid, _protocol_error(message))

    def _hello(self, msg: dict[str, Any]) -> bytes:
        mid = msg.get("id")
        if msg.get("type") != "hello":
            return self._refuse(mid, f"expected hello first, got {msg['type']!r}")
        if msg.get("version") != PROTOCOL_VERSION:
            return self._refuse(
                mid,
                f"protocol version {msg.get('version')!r} not supported, "
                f"this forwarder speaks {PROTOCOL_VERSION}",
            )
        reply: dict[str, Any] = {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "server": self._name,
            "driver": self._driver,
            "generation": self._generation(),
            "instance": self._instance,
        }
        if self._key is not None:
            nonce_c = msg.get("nonce")
            if not isinstance(nonce_c, bytes) or len(nonce_c) != NONCE:
                return self._refuse(
                    mid,
                    "authentication required: this forwarder has a channel key and the "
                    "client offered none (set the same key on both ends)",
                )
            nonce_s = secrets.token_bytes(NONCE)
            self._nonces = (nonce_c, nonce_s)
            reply["nonce"] = nonce_s
            reply["proof"] = _proof(self._key, b"vpe-fib server", nonce_c, nonce_s)
        keepalive = msg.get("keepalive")
        if isinstance(keepalive, int | float) and 0 < keepalive <= 3600:
            self.dead_after = 3 * float(keepalive)
        self.client = str(msg.get("client") or "")[:64]
        self.hello_done = True
        if self._key is None:
            self._decoder.max_message = MAX_MESSAGE
        return self._send(reply)

    def _auth(self, msg: dict[str, Any]) -> bytes:
        mid = msg.get("id")
        if msg.get("type") != "auth":
            return self._refuse(mid, f"authentication required first, got {msg['type']!r}")
        assert self._key is not None and self._nonces is not None
        nonce_c, nonce_s = self._nonces
        want = _proof(self._key, b"vpe-fib client", nonce_s, nonce_c)
        proof = msg.get("proof")
        if not isinstance(proof, bytes) or not hmac.compare_digest(proof, want):
            return self._refuse(mid, "authentication failed: the client does not hold the channel key")
        self.authenticated = True
        reply = self._ack(mid)  # the last frame without a tag, both ways
        self._mac = FrameMac(self._key, nonce_c, nonce_s, client=False)
        self._decoder.mac = FrameMac(self._key, nonce_c, nonce_s, client=False)
        self._decoder.max_message = MAX_MESSAGE
        return reply

    def _one(self, msg: dict[str, Any]) -> bytes:
        if not self.hello_done:
            return self._hello(msg)
        if not self.ready:
            return self._auth(msg)
        kind = msg["type"]
        mid = msg.get("id")
        try:
            if kind == "sync":
                self._handler.sync(State.from_json(msg.get("state") or {}))
                return self._ack(mid)
            if kind == "batch":
                self._handler.apply(Batch.from_json(msg.get("batch") or {}))
                return self._ack(mid)
            if kind == "ping":
                return self._send(
                    {
                        "type": "pong",
                        "id": mid,
                        "generation": self._generation(),
                        "instance": self._instance,
                    }
                )
            if kind == "counters":
                return self._send({"type": "counters", "id": mid, "counters": self._handler.counters()})
            if kind == "state":
                return self._send(
                    {"type": "state", "id": mid, "state": self._handler.state().to_json()}
                )
        except DriverError as exc:
            return self._ack(mid, exc.to_wire())
        except OSError as exc:
            return self._ack(mid, DriverFailure(str(exc)).to_wire())
        return self._ack(mid, _protocol_error(f"unknown message type {kind!r}"))


def _protocol_error(message: str) -> dict[str, str]:
    """The ``error`` of an ack refusing a message itself (not its content)."""
    return {"code": "protocol", "message": message}


class FibClient:
    """Blocking client of the FIB channel (``FibClient.connect(path)``).

    ``server_generation`` follows every ack and pong; ``server_instance``
    names the forwarder process (from its hello).
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self.timeout = timeout
        self._sock.settimeout(timeout)
        self._decoder = Decoder()
        self._mac: FrameMac | None = None
        self._pending: list[dict[str, Any]] = []
        self._next_id = 1
        self.server_generation = 0
        #: the driver behind the forwarder, as its hello said
        self.server_driver = ""
        self.server_instance = ""
        #: whether this connection was mutually authenticated
        self.authenticated = False

    @classmethod
    def connect(
        cls,
        path: str | tuple[str, int],
        timeout: float = 10.0,
        *,
        key: bytes | None = None,
        keepalive: float | None = None,
        client: str = "vpe",
    ) -> FibClient:
        """Connect to a Unix socket path (or a (host, port) TCP address), say hello and,
        with ``key``, authenticate both ends (:class:`AuthenticationFailed` if the
        forwarder cannot prove it holds the key, or refuses ours). A TCP address
        requires a key. ``keepalive``: the interval this client promises to ping at."""
        if isinstance(path, tuple):
            if key is None:
                raise AuthenticationFailed(
                    f"refusing an unauthenticated FIB channel over TCP to {path[0]}:{path[1]}: "
                    "set a channel key"
                )
            sock = socket.create_connection(path, timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
        c = cls(sock, timeout)
        try:
            c._handshake(key, keepalive, client)
        except BaseException:
            c.close()
            raise
        return c

    def _handshake(self, key: bytes | None, keepalive: float | None, client: str) -> None:
        hello: dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION, "client": client}
        nonce_c = secrets.token_bytes(NONCE)
        if key is not None:
            hello["nonce"] = nonce_c
        if keepalive is not None:
            hello["keepalive"] = keepalive
        self._send(hello)
        reply = self._recv()
        if reply["type"] != "hello":
            text = _error_text(reply.get("error"))
            if "authentication" in text:
                raise AuthenticationFailed(f"forwarder refused hello: {text}")
            raise ChannelClosed(f"forwarder refused hello: {text}")
        self.server_generation = int(reply.get("generation") or 0)
        self.server_driver = str(reply.get("driver") or "")
        self.server_instance = str(reply.get("instance") or "")
        if key is None:
            return
        nonce_s, proof = reply.get("nonce"), reply.get("proof")
        if not isinstance(nonce_s, bytes) or len(nonce_s) != NONCE or not isinstance(proof, bytes):
            raise AuthenticationFailed(
                "forwarder did not authenticate itself (it has no channel key): refusing to "
                "program it"
            )
        if not hmac.compare_digest(proof, _proof(key, b"vpe-fib server", nonce_c, nonce_s)):
            raise AuthenticationFailed(
                "forwarder failed authentication: it does not hold this channel key"
            )
        self._send({"type": "auth", "proof": _proof(key, b"vpe-fib client", nonce_s, nonce_c)})
        ack = self._recv()
        if ack.get("type") != "ack" or not ack.get("ok"):
            raise AuthenticationFailed(f"forwarder refused authentication: {_error_text(ack.get('error'))}")
        # every later frame, both ways, carries its tag
        self._mac = FrameMac(key, nonce_c, nonce_s, client=True)
        self._decoder.mac = FrameMac(key, nonce_c, nonce_s, client=True)
        self.authenticated = True

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> FibClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg: dict[str, Any]) -> None:
        self._sock.sendall(encode(msg, self._mac))

    def _recv(self) -> dict[str, Any]:
        while not self._pending:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                raise ChannelClosed(f"forwarder did not answer within {self._sock.gettimeout():g} s") from None
            if not data:
                raise ChannelClosed("forwarder closed the channel")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def _request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        msg["id"] = mid = self._next_id
        self._next_id += 1
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        self._send(msg)
        reply = self._recv()
        if reply.get("id") != mid:
            raise ChannelClosed(f"reply id {reply.get('id')!r} does not match request {mid}")
        if reply["type"] in ("ack", "pong"):
            self.server_generation = int(reply.get("generation") or 0)
        if reply["type"] == "ack" and not reply.get("ok"):
            error = reply.get("error")
            if isinstance(error, dict) and error.get("code") == "protocol":
                raise ChannelClosed(_error_text(error))
            raise error_from_wire(error)
        return reply

    def sync(self, state: State) -> None:
        """Replace everything the forwarder holds with ``state``."""
        self._request({"type": "sync", "state": state.to_json()})

    def apply(self, batch: Batch) -> None:
        """Apply ``batch`` atomically; a refusal raises the driver's typed
        :class:`~vpe.dataplane.errors.DriverError`, a broken channel :class:`ChannelClosed`."""
        self._request({"type": "batch", "batch": batch.to_json()})

    def ping(self, timeout: float | None = None) -> int:
        """A keepalive round trip (ChannelClosed when no pong within ``timeout``);
        returns the forwarder's generation."""
        self._request({"type": "ping"}, timeout)
        return self.server_generation

    def counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = self._request({"type": "counters"})["counters"]
        return counters

    def state(self) -> State:
        return State.from_json(self._request({"type": "state"})["state"])


def _error_text(error: Any) -> str:
    """The message of an ack's ``error``: a version 2 map, or version 1 text."""
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    return str(error)
