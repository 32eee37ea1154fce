"""Issue 13, findings 2, 3 and 4: the FIB channel authenticates both ends on TCP,
notices another writer, detects a lost or restarted forwarder within a second
(keepalives both ways) and backs off with jitter when a forwarder keeps refusing.

Real sockets, a real channel server on its own selector thread, the agent's
real :class:`~vpe.agent.fib.FibProgrammer`; only the driver is in memory.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from memory_driver import MemoryDriver

from vpe.agent.fib import FibProgrammer
from vpe.agent.fib_link import BACKOFF_CAP, backoff
from vpe.dataplane import channel
from vpe.dataplane.channel import PROTOCOL_VERSION, Decoder, FibClient, ServerConnection, encode
from vpe.dataplane.driver import Batch, State
from vpe.dataplane.errors import AuthenticationFailed, DriverFailure
from vpe.dataplane.server import ChannelServer
from vpe.vpn.attachments import Attachment

UNDERLAY = "198.18.0.1"
KEY = b"k" * 32
#: loopback addresses of this file (TESTBED: 127.0.0.0/8 for processes on one machine)
TCP_HOST = "127.0.0.91"


class _Fwd:
    """A forwarder: channel server + driver on a selector loop in a thread, with
    ``pause()`` to make it stop answering without closing anything."""

    def __init__(self, driver: object, path: str | None = None, *,
                 tcp: tuple[str, int] | None = None, key: bytes | None = None) -> None:
        self.sel = selectors.DefaultSelector()
        self.driver = driver
        self.server = ChannelServer(driver, self.sel, socket_path=path, listen_tcp=tcp,  # type: ignore[arg-type]
                                    driver_name="memory", key=key)
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def tcp_port(self) -> int:
        return int(self.server.listeners[-1].getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            for k, _ in self.sel.select(timeout=0.02):
                k.data(k.fileobj)
            self.server.tick()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()
        self.sel.close()


@pytest.fixture
def sock_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vpe-fibsec-") as d:
        yield os.path.join(d, "fib.sock")


@pytest.fixture
def forwarders() -> Iterator[Callable[..., _Fwd]]:
    made: list[_Fwd] = []

    def make(*args: object, **kw: object) -> _Fwd:
        f = _Fwd(*args, **kw)  # type: ignore[arg-type]
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


async def _until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def _vm(name: str, ifname: str, ip: str) -> Attachment:
    return Attachment(name, ifname, "red", "02:00:00:00:00:0a", (ip,), ("192.0.2.1",))


def _ports(driver: MemoryDriver) -> set[str]:
    return {p.name for p in driver.held.ports}


# -- finding 2: mutual authentication, integrity, another writer ------------------------


def test_finding2_tcp_channel_needs_the_key_on_both_ends(forwarders: Callable[..., _Fwd]) -> None:
    # no TCP listener without a key
    with pytest.raises(ValueError, match="must be authenticated"):
        ChannelServer(MemoryDriver(), selectors.DefaultSelector(), listen_tcp=(TCP_HOST, 0))
    driver = MemoryDriver()
    driver.held = State(ports=())
    fwd = forwarders(driver, tcp=(TCP_HOST, 0), key=KEY)
    addr = (TCP_HOST, fwd.tcp_port)
    # the client refuses to speak unauthenticated TCP at all
    with pytest.raises(AuthenticationFailed, match="unauthenticated"):
        FibClient.connect(addr, 2.0)
    # a raw client without the key reads nothing and changes nothing
    with socket.create_connection(addr, 2.0) as s:
        s.sendall(encode({"type": "hello", "version": PROTOCOL_VERSION, "client": "intruder"}))
        s.sendall(encode({"type": "sync", "id": 1, "state": {}}))
        reply = Decoder().feed(s.recv(65536))[0]
        assert reply["ok"] is False and "authentication required" in reply["error"]["message"]
        assert s.recv(65536) == b""  # and the forwarder hung up
    # the wrong key: refused by the forwarder's proof check on the client (server proves first)
    with pytest.raises(AuthenticationFailed, match="does not hold this channel key"):
        FibClient.connect(addr, 2.0, key=b"x" * 32)
    assert driver.syncs == 0
    # the right key: both ends proven, requests served
    with FibClient.connect(addr, 2.0, key=KEY) as c:
        assert c.authenticated and c.server_driver == "memory"
        c.sync(State())
        assert c.state() == State()
    assert driver.syncs == 1


def test_finding2_client_refuses_a_forwarder_without_the_key(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    forwarders(MemoryDriver(), sock_path)  # an impostor: no key
    with pytest.raises(AuthenticationFailed, match="did not authenticate itself"):
        FibClient.connect(sock_path, 2.0, key=KEY)


def test_finding2_client_with_a_wrong_proof_is_refused_by_the_forwarder() -> None:
    driver = MemoryDriver()
    sc = ServerConnection(driver, lambda: 0, key=KEY)  # type: ignore[arg-type]
    nonce = os.urandom(channel.NONCE)
    hello = Decoder().feed(sc.receive(encode({"type": "hello", "version": PROTOCOL_VERSION,
                                              "nonce": nonce})))[0]
    assert hello["type"] == "hello" and len(hello["proof"]) == 32
    # replaying the server's own proof (reflection) does not work: the labels differ
    r = Decoder().feed(sc.receive(encode({"type": "auth", "proof": hello["proof"]})))[0]
    assert r["ok"] is False and "authentication failed" in r["error"]["message"] and sc.closed


def test_finding2_frames_are_authenticated_after_the_handshake() -> None:
    c2s = channel.FrameMac(KEY, b"c" * 32, b"s" * 32, client=True)
    s2c = channel.FrameMac(KEY, b"c" * 32, b"s" * 32, client=False)
    frame = encode({"type": "sync", "id": 1, "state": {}}, c2s)
    d = Decoder()
    d.mac = s2c
    tampered = bytearray(frame)
    tampered[8] ^= 1
    with pytest.raises(AuthenticationFailed, match="failed authentication"):
        d.feed(bytes(tampered))
    # a replayed frame fails too (sequence numbers)
    d2 = Decoder()
    d2.mac = channel.FrameMac(KEY, b"c" * 32, b"s" * 32, client=False)
    assert d2.feed(frame)[0]["type"] == "sync"
    with pytest.raises(AuthenticationFailed):
        d2.feed(frame)


def test_finding2_key_file_must_be_private_and_long(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(KEY + b"\n")
    f.chmod(0o644)
    with pytest.raises(ValueError, match="group or others"):
        channel.load_key(str(f))
    f.chmod(0o600)
    assert channel.load_key(str(f)) == KEY
    f.write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 16"):
        channel.load_key(str(f))


async def test_finding2_another_writer_is_detected_and_undone(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    driver = MemoryDriver()
    forwarders(driver, sock_path, key=KEY)
    fib = FibProgrammer(sock_path, ip_address(UNDERLAY), key=KEY)
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        assert fib.link.authenticated and fib.link.to_json()["authenticated"] is True
        # someone else (holding the key) empties the forwarder
        with FibClient.connect(sock_path, 2.0, key=KEY) as other:
            other.sync(State())
        assert _ports(driver) == set()
        took = await _until(lambda: _ports(driver) == {"vm1"}, "the resync after the foreign write")
        assert took < 1.0, f"another writer's change undone after {took:.2f} s"
        assert fib.link.foreign_writes == 1 and "another writer" in fib.link.last_error
        assert fib.connected
    finally:
        await fib.stop()


# -- finding 3: a lost or restarted forwarder is noticed and resynced within a second -----


async def test_finding3_restarted_forwarder_is_resynced_within_a_second(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    first = forwarders(MemoryDriver(), sock_path)
    fib = FibProgrammer(sock_path, ip_address(UNDERLAY))
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        await asyncio.sleep(1.1)  # a channel that has been up a while
        instance = fib.link.server_instance
        first.close()
        again = MemoryDriver()
        forwarders(again, sock_path)
        # no batch is sent: the keepalives alone must find the new, empty forwarder
        took = await _until(lambda: _ports(again) == {"vm1"}, "the full state on the new forwarder")
        assert took < 1.0, f"restarted forwarder resynced after {took:.2f} s"
        assert fib.connected and fib.link.server_instance != instance
        assert fib.link.forwarder_restarts == 1 and fib.link.losses == 1
    finally:
        await fib.stop()


async def test_finding3_silent_forwarder_reported_down_within_a_second(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    driver = MemoryDriver()
    fwd = forwarders(driver, sock_path)
    fib = FibProgrammer(sock_path, ip_address(UNDERLAY))
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        await asyncio.sleep(1.1)
        fwd.paused.set()  # hung: the socket stays open, nothing answers
        took = await _until(lambda: not fib.connected, "the link to report the forwarder lost")
        assert took < 1.0, f"a silent forwarder was still 'connected' after {took:.2f} s"
        assert "did not answer" in fib.link.last_error and fib.to_json()["connected"] is False
        fwd.paused.clear()  # it recovers: resynced (its tables were kept, synced anyway)
        syncs = driver.syncs
        await _until(lambda: fib.connected and driver.syncs > syncs, "the resync")
    finally:
        await fib.stop()


def test_finding3_forwarder_drops_a_silent_control_plane() -> None:
    now = [100.0]
    sc = ServerConnection(MemoryDriver(), lambda: 0, clock=lambda: now[0])  # type: ignore[arg-type]
    sc.receive(encode({"type": "hello", "version": PROTOCOL_VERSION, "keepalive": 0.2}))
    now[0] += 0.5
    assert sc.expired(now[0]) is None
    now[0] += 0.2
    why = sc.expired(now[0])
    assert why is not None and "silent" in why
    # a connection that never says hello is dropped too
    idle = ServerConnection(MemoryDriver(), lambda: 0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert idle.expired(now[0] + channel.HANDSHAKE_TIMEOUT + 1) is not None


# -- finding 4: one bad port, a refusing forwarder ------------------------------------------


class _Refusing(MemoryDriver):
    """A forwarder that refuses every full sync for a reason of its own."""

    def sync(self, st: State) -> None:
        self.syncs += 1
        raise DriverFailure("disk on fire")

    def apply(self, batch: Batch) -> None:
        raise DriverFailure("disk on fire")


async def test_finding4_a_refusing_forwarder_is_retried_with_backoff(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    driver = _Refusing()
    forwarders(driver, sock_path)
    fib = FibProgrammer(sock_path, ip_address(UNDERLAY))
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.start()
    try:
        await asyncio.sleep(2.0)
        # 0.05, 0.1, 0.2, 0.4, 0.8 s (jittered down to half): at most ~8 attempts in 2 s
        assert 2 <= driver.syncs <= 10, f"{driver.syncs} full syncs in 2 s"
        assert not fib.connected and "disk on fire" in fib.last_error
    finally:
        await fib.stop()


def test_finding4_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    assert backoff(0) == 0.0  # the first retry after a loss is immediate
    lows = [backoff(n, lambda: 0.0) for n in range(1, 12)]
    highs = [backoff(n, lambda: 1.0) for n in range(1, 12)]
    assert highs[:4] == [0.05, 0.1, 0.2, 0.4] and highs[-1] == BACKOFF_CAP
    assert all(lo == hi / 2 for lo, hi in zip(lows, highs, strict=True))
    assert len({round(backoff(5), 6) for _ in range(20)}) > 1  # jitter


async def test_finding4_port_named_with_a_space_and_no_interface_blocks_nothing(
    sock_path: str, forwarders: Callable[..., _Fwd]
) -> None:
    driver = MemoryDriver()
    forwarders(driver, sock_path)
    fib = FibProgrammer(sock_path, ip_address(UNDERLAY))
    fib.add_port(_vm("vm 1", "missing 0", "192.0.2.9/24"))  # the finding's port
    fib.add_port(_vm("vm2", "tap2", "192.0.2.10/24"))
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        assert _ports(driver) == {"vm2"}
        assert list(fib.failed_ports) == ["vm 1"] and "missing 0" in fib.failed_ports["vm 1"]
        syncs = driver.syncs
        await asyncio.sleep(0.5)  # stays up: no reconnect loop, no further full sync
        assert fib.connected and driver.syncs == syncs and fib.link.losses == 0
        fib.add_port(_vm("vm3", "tap3", "192.0.2.11/24"))
        assert await fib.port_result("vm3") is None and _ports(driver) == {"vm2", "vm3"}
    finally:
        await fib.stop()
