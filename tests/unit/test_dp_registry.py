"""The driver registry and the typed errors of the FIB channel's acknowledgements."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from memory_driver import MemoryDriver
from test_dp_helpers import state

from vpe.agent.config import ConfigError, parse_config
from vpe.dataplane import registry
from vpe.dataplane.channel import (
    PROTOCOL_VERSION,
    Decoder,
    FibClient,
    ServerConnection,
    encode,
)
from vpe.dataplane.driver import Batch, Port, State
from vpe.dataplane.errors import (
    ChannelClosed,
    ChannelError,
    DriverError,
    DriverFailure,
    InvalidValue,
    PortUnavailable,
    ResourceExhausted,
    Unsupported,
    error_from_wire,
)

# ----------------------------------------------------------------------- registry


def test_builtin_drivers_and_lookup_errors_list_the_known_names() -> None:
    assert {"none", "userspace"} <= set(registry.names())
    assert not registry.get("none").has_forwarder
    assert registry.get("userspace").has_forwarder
    with pytest.raises(registry.UnknownDriver, match=r"'nope' \(known: .*none.*userspace"):
        registry.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("userspace", "x:y")
    with pytest.raises(ValueError, match="not 'module:attribute'"):
        registry.register("bad", "no_colon_here")
    with pytest.raises(ValueError, match="letters, digits"):
        registry.register("a b", "x:y")


def test_importing_the_registry_never_imports_a_driver() -> None:
    code = (
        "import sys, vpe.dataplane.registry as r, vpe.agent.config;"
        "r.names(); r.get('userspace');"
        "print(sorted(m for m in sys.modules if m.startswith('vpe.dataplane.userspace')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_userspace_entry_loads_its_factory_lazily() -> None:
    factory = registry.get("userspace").load()
    from vpe.dataplane.userspace.process import create_driver

    assert factory is create_driver
    with pytest.raises(registry.UnknownDriver, match="no forwarder"):
        registry.get("none").load()


_CONFIG = """
[bgp]
local_as = 65000
router_id = "192.0.2.1"
[dataplane]
driver = "{driver}"
"""


def test_config_validates_the_driver_against_the_registry() -> None:
    assert parse_config(_CONFIG.format(driver="userspace")).dataplane.driver == "userspace"
    with pytest.raises(ConfigError, match=r"dataplane.driver: unknown dataplane driver 'kernel'"):
        parse_config(_CONFIG.format(driver="kernel"))
    registry.register("memory-test", "memory_driver:create_memory_driver")
    try:
        assert parse_config(_CONFIG.format(driver="memory-test")).dataplane.driver == "memory-test"
    finally:
        registry.unregister("memory-test")
    with pytest.raises(ConfigError, match="known: ebpf, none, userspace"):
        parse_config(_CONFIG.format(driver="memory-test"))


# ---------------------------------------------------------------- typed errors


def test_errors_round_trip_through_the_wire_map_as_the_same_class() -> None:
    cases: list[DriverError] = [
        InvalidValue("route red 192.0.2.0/24: bad"),
        DriverError("plain"),
        PortUnavailable("port vm1: cannot open 'tap1': No such device", port="vm1", ifname="tap1"),
        Unsupported("no GRE here", feature="mpls-in-gre"),
        ResourceExhausted("label map full", resource="labels"),
        DriverFailure("[Errno 5] Input/output error"),
    ]
    for exc in cases:
        wire = exc.to_wire()
        assert wire["code"] == exc.code and wire["message"] == str(exc)
        back = error_from_wire(wire)
        assert type(back) is (InvalidValue if type(exc) is DriverError else type(exc))
        assert back.fields == exc.fields and str(back) == str(exc)
        assert isinstance(back, ChannelError) and isinstance(back, ValueError)
    pu = error_from_wire(cases[2].to_wire())
    assert isinstance(pu, PortUnavailable) and (pu.port, pu.ifname) == ("vm1", "tap1")
    assert cases[2].to_wire() == {
        "code": "port-unavailable",
        "port": "vm1",
        "ifname": "tap1",
        "message": "port vm1: cannot open 'tap1': No such device",
    }


def test_unknown_codes_and_legacy_text_decode_to_a_plain_driver_error() -> None:
    e = error_from_wire({"code": "quota", "message": "too many", "what": "x"})
    assert type(e) is DriverError and e.code == "quota" and e.fields == {"what": "x"}
    e = error_from_wire("version 1 text")
    assert type(e) is DriverError and str(e) == "version 1 text"
    e = error_from_wire({"code": "port-unavailable", "message": "no port field"})
    assert type(e) is DriverError and e.code == "port-unavailable"


class _Refusing:
    """A driver refusing every change with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def sync(self, st: State) -> None:
        raise self.error

    def apply(self, batch: Batch) -> None:
        raise self.error

    def counters(self) -> dict[str, Any]:
        return {}

    def state(self) -> State:
        return State()


def _conv(sc: ServerConnection, msg: dict[str, Any]) -> dict[str, Any]:
    (reply,) = Decoder().feed(sc.receive(encode(msg)))
    return reply


def test_server_acks_carry_code_and_fields() -> None:
    refusal = PortUnavailable("port vm9: cannot open 'tap9'", port="vm9", ifname="tap9")
    sc = ServerConnection(_Refusing(refusal), lambda: 7, driver="memory")
    hello = _conv(sc, {"type": "hello", "version": PROTOCOL_VERSION})
    assert hello["driver"] == "memory" and hello["version"] == PROTOCOL_VERSION == 3
    r = _conv(sc, {"type": "batch", "id": 1, "batch": {}})
    assert r["ok"] is False and r["generation"] == 7
    assert r["error"] == {
        "code": "port-unavailable",
        "port": "vm9",
        "ifname": "tap9",
        "message": "port vm9: cannot open 'tap9'",
    }
    sc = ServerConnection(_Refusing(OSError(5, "Input/output error")), lambda: 0)
    _conv(sc, {"type": "hello", "version": PROTOCOL_VERSION})
    r = _conv(sc, {"type": "sync", "id": 2, "state": {}})
    assert r["error"]["code"] == "driver-failure" and "Input/output" in r["error"]["message"]


def test_a_version_1_peer_is_refused_at_hello_with_readable_text() -> None:
    sc = ServerConnection(_Refusing(DriverError("x")), lambda: 0)
    r = _conv(sc, {"type": "hello", "version": 1})
    assert r["ok"] is False and sc.closed
    assert "version 1 not supported" in r["error"]["message"] and r["error"]["code"] == "protocol"


@pytest.fixture
def socket_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="vpe-reg-")
    yield os.path.join(d, "fib.sock")


def _serve_once(path: str, handler: Any, reply_version: int | None = None) -> threading.Thread:
    import socket

    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(path)
    lsn.listen(1)
    lsn.settimeout(5)

    def serve() -> None:
        with lsn:
            conn, _ = lsn.accept()
            sc = ServerConnection(handler, lambda: 0, driver="memory")
            with conn:
                while data := conn.recv(65536):
                    if reply_version is not None:  # an old forwarder: version 1 refusal text
                        conn.sendall(
                            encode(
                                {
                                    "type": "ack",
                                    "id": None,
                                    "ok": False,
                                    "error": f"protocol version 2 not supported, this "
                                    f"forwarder speaks {reply_version}",
                                }
                            )
                        )
                        return
                    conn.sendall(sc.receive(data))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_client_raises_the_typed_refusal(socket_path: str) -> None:
    refusal = PortUnavailable("port vm9: cannot open 'tap9'", port="vm9", ifname="tap9")
    t = _serve_once(socket_path, _Refusing(refusal))
    with FibClient.connect(socket_path, timeout=5) as c:
        assert c.server_driver == "memory"
        with pytest.raises(PortUnavailable) as info:
            c.apply(Batch(add_ports=(Port("vm9", "tap9", "red", "02:00:00:00:00:09"),)))
        assert info.value.port == "vm9" and info.value.ifname == "tap9"
        assert c.counters() == {}  # a refusal leaves the channel usable
    t.join(timeout=5)


def test_client_of_a_version_1_forwarder_gets_a_clear_closed_error(socket_path: str) -> None:
    t = _serve_once(socket_path, _Refusing(DriverError("x")), reply_version=1)
    with pytest.raises(ChannelClosed, match="version 2 not supported.*speaks 1"):
        FibClient.connect(socket_path, timeout=5)
    t.join(timeout=5)


def test_memory_driver_over_the_channel_keeps_what_it_was_told(socket_path: str) -> None:
    t = _serve_once(socket_path, MemoryDriver())
    with FibClient.connect(socket_path, timeout=5) as c:
        c.sync(state())
        assert {p.name for p in c.state().ports} == {"vm1", "vm2"}
    t.join(timeout=5)
