"""The FIB channel: framing, hello/version, sync/batch/counters, errors, client over a socket."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from typing import Any

import pytest
from test_dp_helpers import state

from vpe.dataplane.channel import (
    PROTOCOL_VERSION,
    ChannelError,
    Decoder,
    FibClient,
    ServerConnection,
    encode,
)
from vpe.dataplane.driver import Batch, NextHop, Route, State
from vpe.dataplane.errors import DriverError
from vpe.dataplane.userspace.pipeline import Forwarder


class _Handler:
    def __init__(self) -> None:
        self.fwd = Forwarder(["198.18.0.1", "2001:db8:ffff::1"])
        self.gen = 0

    def sync(self, st: State) -> None:
        self.fwd.full_sync(st)
        self.gen += 1

    def apply(self, batch: Batch) -> None:
        self.fwd.apply(batch)
        self.gen += 1

    def counters(self) -> dict[str, Any]:
        return self.fwd.counters()

    def state(self) -> State:
        return self.fwd.state()


def _conv(sc: ServerConnection, msg: dict[str, Any]) -> dict[str, Any]:
    replies = Decoder().feed(sc.receive(encode(msg)))
    assert len(replies) == 1
    return replies[0]


def test_decoder_reassembles_split_frames() -> None:
    wire = encode({"type": "a", "x": 1}) + encode({"type": "b", "blob": b"\0" * 1000})
    d = Decoder()
    got: list[dict[str, Any]] = []
    for i in range(0, len(wire), 7):
        got += d.feed(wire[i : i + 7])
    assert [m["type"] for m in got] == ["a", "b"] and got[1]["blob"] == b"\0" * 1000


def test_hello_required_and_version_checked() -> None:
    h = _Handler()
    sc = ServerConnection(h, lambda: h.gen)
    r = _conv(sc, {"type": "sync", "id": 1, "state": {}})
    assert r["ok"] is False and "hello" in r["error"]["message"] and sc.closed
    assert r["error"]["code"] == "protocol"
    sc = ServerConnection(h, lambda: h.gen)
    r = _conv(sc, {"type": "hello", "version": 99})
    assert r["ok"] is False and "version 99" in r["error"]["message"] and sc.closed
    sc = ServerConnection(h, lambda: h.gen)
    assert _conv(sc, {"type": "hello", "version": PROTOCOL_VERSION})["type"] == "hello"


def test_sync_batch_counters_and_error_text() -> None:
    h = _Handler()
    sc = ServerConnection(h, lambda: h.gen)
    _conv(sc, {"type": "hello", "version": PROTOCOL_VERSION})
    r = _conv(sc, {"type": "sync", "id": 1, "state": state().to_json()})
    assert r == {"type": "ack", "id": 1, "ok": True, "error": None, "generation": 1}
    bad = Batch(add_routes=(Route("red", "192.0.2.0/24", (NextHop.remote("198.18.0.2", 5),)),))
    body = bad.to_json()
    body["add_routes"][0]["next_hops"][0]["label"] = 1 << 21
    r = _conv(sc, {"type": "batch", "id": 2, "batch": body})
    assert r["ok"] is False and "2097152" in r["error"]["message"] and r["generation"] == 1
    assert r["error"]["code"] == "invalid-value"
    r = _conv(sc, {"type": "counters", "id": 3})
    assert r["type"] == "counters" and "vm1" in r["counters"]["ports"]
    r = _conv(sc, {"type": "nonsense", "id": 4})
    assert r["ok"] is False and "nonsense" in r["error"]["message"] and not sc.closed


def test_garbage_closes_with_a_reason() -> None:
    h = _Handler()
    sc = ServerConnection(h, lambda: h.gen)
    reply = Decoder().feed(sc.receive(b"\x00\x00\x00\x03\xc1\xc1\xc1"))
    assert reply[0]["ok"] is False and sc.closed


def test_fib_client_over_unix_socket_keeps_fib_across_reconnect() -> None:
    h = _Handler()
    path = os.path.join(tempfile.mkdtemp(prefix="vpe-ch-"), "fib.sock")
    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(path)
    lsn.listen(2)
    lsn.settimeout(5)

    def serve(n: int) -> None:
        for _ in range(n):
            conn, _ = lsn.accept()
            sc = ServerConnection(h, lambda: h.gen)
            with conn:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(sc.receive(data))

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    try:
        with FibClient.connect(path, timeout=5) as c:
            assert c.server_generation == 0
            c.sync(state())
            c.apply(Batch(remove_ports=("vm2",)))
            with pytest.raises(DriverError, match="IPv6 underlay|ifname") as refused:
                c.apply(
                    Batch(
                        add_ports=(
                            state().ports[0].__class__("vmx", "vp1", "red", "02:00:00:00:00:99"),
                        )
                    )
                )
            assert isinstance(refused.value, ChannelError) and refused.value.code == "invalid-value"
            assert c.counters()["ports"].keys() == {"vm1"}
        with FibClient.connect(path, timeout=5) as c:
            assert c.server_generation == 2  # tables kept while nobody was connected
            assert {p.name for p in c.state().ports} == {"vm1"}
    finally:
        t.join(timeout=5)
        lsn.close()
