"""The FIB channel: how a control plane programs a forwarder process.

Framing: each message is a 4-octet big-endian length, then that many octets
of msgpack encoding one map with a ``"type"`` key. Version
:data:`PROTOCOL_VERSION`; the full description is in docs/dataplane.md.

=========  ==============================  ===================================
client     request                         reply
=========  ==============================  ===================================
hello      ``{type, version, client}``     ``hello {version, server,
                                           generation}`` or ``ack ok=false``
sync       ``{type, id, state}``           ``ack {id, ok, error, generation}``
batch      ``{type, id, batch}``           ``ack {id, ok, error, generation}``
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
started, so a client can tell a restarted forwarder (generation 0) from one
that still holds its programming. The ``hello`` reply names the driver
behind the forwarder (``driver``: "userspace", ...).

Version 2 (structured errors) replaced version 1 (error text); each end
speaks one version and a mismatch is refused at ``hello`` with a message
both versions can read.

:class:`ServerConnection` is the sans-IO server side (bytes in, bytes out);
:class:`FibClient` is the blocking client the agent uses.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import msgpack

from .driver import Batch, Driver, State
from .errors import ChannelClosed, ChannelError, DriverError, DriverFailure, error_from_wire

__all__ = [
    "PROTOCOL_VERSION",
    "ChannelClosed",
    "ChannelError",
    "Decoder",
    "FibClient",
    "Handler",
    "ServerConnection",
    "encode",
]

PROTOCOL_VERSION = 2
MAX_MESSAGE = 64 * 1024 * 1024
_LEN = struct.Struct("!I")


def encode(msg: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_MESSAGE:
        raise ChannelClosed(f"message of {len(body)} octets exceeds {MAX_MESSAGE}")
    return _LEN.pack(len(body)) + body


class Decoder:
    """Reassembles length-prefixed messages from a byte stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf, 0)
            if n > MAX_MESSAGE:
                raise ChannelClosed(f"message length {n} exceeds {MAX_MESSAGE}")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            try:
                msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
            except Exception as exc:  # msgpack raises several unrelated types
                raise ChannelClosed(f"undecodable message: {exc}") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise ChannelClosed(f"message is not a map with a 'type': {msg!r:.80}")
            out.append(msg)
        return out


#: what the server side drives (the name the channel used before drivers had one)
Handler = Driver


class ServerConnection:
    """One control-plane connection, sans-IO: ``receive(bytes) -> bytes to send``.

    ``closed`` turns true after a fatal protocol error (the reply explaining it
    is still returned so the peer learns why).
    """

    def __init__(
        self,
        handler: Driver,
        generation: Callable[[], int],
        name: str = "vpe-forwarder",
        driver: str = "userspace",
    ) -> None:
        self._handler = handler
        self._generation = generation
        self._name = name
        self._driver = driver
        self._decoder = Decoder()
        self.hello_done = False
        self.closed = False

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        try:
            msgs = self._decoder.feed(data)
        except ChannelError as exc:
            self.closed = True
            return encode(
                {"type": "ack", "id": None, "ok": False, "error": _protocol_error(str(exc))}
            )
        for msg in msgs:
            out += self._one(msg)
            if self.closed:
                break
        return bytes(out)

    def _ack(self, mid: Any, error: dict[str, str] | None = None) -> bytes:
        return encode(
            {
                "type": "ack",
                "id": mid,
                "ok": error is None,
                "error": error,
                "generation": self._generation(),
            }
        )

    def _one(self, msg: dict[str, Any]) -> bytes:
        kind = msg["type"]
        mid = msg.get("id")
        if not self.hello_done:
            if kind != "hello":
                self.closed = True
                return self._ack(mid, _protocol_error(f"expected hello first, got {kind!r}"))
            if msg.get("version") != PROTOCOL_VERSION:
                self.closed = True
                return self._ack(
                    mid,
                    _protocol_error(
                        f"protocol version {msg.get('version')!r} not supported, "
                        f"this forwarder speaks {PROTOCOL_VERSION}"
                    ),
                )
            self.hello_done = True
            return encode(
                {
                    "type": "hello",
                    "version": PROTOCOL_VERSION,
                    "server": self._name,
                    "driver": self._driver,
                    "generation": self._generation(),
                }
            )
        try:
            if kind == "sync":
                self._handler.sync(State.from_json(msg.get("state") or {}))
                return self._ack(mid)
            if kind == "batch":
                self._handler.apply(Batch.from_json(msg.get("batch") or {}))
                return self._ack(mid)
            if kind == "counters":
                return encode({"type": "counters", "id": mid, "counters": self._handler.counters()})
            if kind == "state":
                return encode(
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
    """Blocking client of the FIB channel (``FibClient.connect(path)``)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._sock.settimeout(timeout)
        self._decoder = Decoder()
        self._pending: list[dict[str, Any]] = []
        self._next_id = 1
        self.server_generation = 0
        #: the driver behind the forwarder, as its hello said
        self.server_driver = ""

    @classmethod
    def connect(cls, path: str | tuple[str, int], timeout: float = 10.0) -> FibClient:
        """Connect to a Unix socket path (or a (host, port) TCP address) and say hello."""
        if isinstance(path, tuple):
            sock = socket.create_connection(path, timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
        client = cls(sock, timeout)
        try:
            client._send({"type": "hello", "version": PROTOCOL_VERSION, "client": "vpe"})
            reply = client._recv()
            if reply["type"] != "hello":
                raise ChannelClosed(f"forwarder refused hello: {_error_text(reply.get('error'))}")
            client.server_generation = int(reply.get("generation", 0))
            client.server_driver = str(reply.get("driver") or "")
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> FibClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg: dict[str, Any]) -> None:
        self._sock.sendall(encode(msg))

    def _recv(self) -> dict[str, Any]:
        while not self._pending:
            data = self._sock.recv(1 << 16)
            if not data:
                raise ChannelClosed("forwarder closed the channel")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        msg["id"] = mid = self._next_id
        self._next_id += 1
        self._send(msg)
        reply = self._recv()
        if reply.get("id") != mid:
            raise ChannelClosed(f"reply id {reply.get('id')!r} does not match request {mid}")
        if reply["type"] == "ack":
            self.server_generation = int(reply.get("generation") or 0)
            if not reply.get("ok"):
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
