"""The socket layer: TCP-MD5, GTSM, local binding, the listener, back-off and back-pressure.

Real sockets on 127.0.0.x only (Linux routes all of 127/8 to lo). Every
wait has a timeout, every loop a count, so nothing here can hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from vpe.bgp.transport import (
    IP_MINTTL,
    IPV6_MINHOPCOUNT,
    TCP_MD5SIG,
    TCP_MD5SIG_EXT,
    Backoff,
    BoundedWriter,
    Listener,
    bind_local,
    gtsm_sockopt,
    md5_sockopt,
    normalize_address,
    open_connection,
    pack_md5sig,
)

pytestmark = pytest.mark.timeout(5)

SERVER = "127.0.0.1"
SHORT = 1.0  # seconds to wait for a connection the kernel is expected to drop


@dataclass
class Accepted:
    """What the listener handed to its callback, one entry per connection."""

    queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, str, str]] = field(
        default_factory=asyncio.Queue
    )
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, local: str
    ) -> None:
        self.writers.append(writer)
        self.queue.put_nowait((reader, writer, peer, local))

    async def next(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, str]:
        return await asyncio.wait_for(self.queue.get(), SHORT)


ListenerFactory = Callable[..., Awaitable[tuple[Listener, Accepted]]]


@pytest.fixture
async def make_listener() -> AsyncIterator[ListenerFactory]:
    made: list[tuple[Listener, Accepted]] = []

    async def factory(
        peers: dict[str, str | None] | None = None, addr: str = SERVER, **kw: object
    ) -> tuple[Listener, Accepted]:
        accepted = Accepted()
        listener = Listener(addr, 0, accepted, **kw)  # type: ignore[arg-type]
        for peer, password in (peers or {}).items():
            listener.add_peer(peer, password)
        await listener.start()
        made.append((listener, accepted))
        return listener, accepted

    yield factory
    for listener, accepted in made:
        await listener.close()
        for w in accepted.writers:
            w.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), SHORT)


# --------------------------------------------------------------------------- struct layout


def test_md5sig_layout_ipv4() -> None:
    optname, raw = pack_md5sig("192.0.2.7", "secret", socket.AF_INET)
    assert optname == TCP_MD5SIG
    assert len(raw) == 216
    assert struct.unpack_from("=H", raw, 0)[0] == socket.AF_INET
    assert raw[2:4] == b"\x00\x00"  # port, network order
    assert raw[4:8] == bytes([192, 0, 2, 7])
    assert raw[8:128] == bytes(120)
    flags, prefixlen, keylen, ifindex = struct.unpack_from("=BBHi", raw, 128)
    assert (flags, prefixlen, keylen, ifindex) == (0, 0, 6, 0)
    assert raw[136:142] == b"secret"
    assert raw[142:] == bytes(74)


def test_md5sig_layout_ipv6_prefix() -> None:
    optname, raw = pack_md5sig("2001:db8::1", b"k" * 80, socket.AF_INET6, prefixlen=64)
    assert optname == TCP_MD5SIG_EXT
    assert struct.unpack_from("=H", raw, 0)[0] == socket.AF_INET6
    assert raw[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    assert struct.unpack_from("=BBH", raw, 128) == (1, 64, 80)
    assert raw[136:] == b"k" * 80


def test_md5sig_ipv4_peer_on_ipv6_socket_is_mapped() -> None:
    _, raw = pack_md5sig("198.51.100.1", "x", socket.AF_INET6)
    assert struct.unpack_from("=H", raw, 0)[0] == socket.AF_INET6
    assert raw[8:24] == bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 1])


def test_md5sig_delete_has_zero_keylen() -> None:
    _, raw = pack_md5sig("192.0.2.7", None, socket.AF_INET)
    assert struct.unpack_from("=H", raw, 130)[0] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password": "x" * 81}, "81 octets long; Linux allows at most 80"),
        ({"password": "é" * 41}, "82 octets long"),
        ({"password": ""}, "empty"),
        ({"peer_addr": "peer.example"}, "not an IPv4 or IPv6 address"),
        ({"prefixlen": 33}, "prefix length 33 for 192.0.2.7 is not in 0..32"),
        ({"peer_addr": "2001:db8::1"}, "is IPv6 but the socket is AF_INET"),
        ({"ifindex": -1}, "interface index -1"),
    ],
)
def test_md5sig_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "peer_addr": "192.0.2.7",
        "password": "secret",
        "sock_family": socket.AF_INET,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pack_md5sig(**args)  # type: ignore[arg-type]


def test_md5_sockopt_unsupported_family() -> None:
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        pytest.raises(ValueError, match="unsupported socket family"),
    ):
        md5_sockopt(sock, "192.0.2.7", "secret")


def test_md5_sockopt_kernel_accepts_and_errors_name_the_peer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        md5_sockopt(sock, "192.0.2.7", "secret")
        md5_sockopt(sock, "198.51.100.0", "secret", prefixlen=24)
        md5_sockopt(sock, "192.0.2.7", None)
        with pytest.raises(OSError, match="removing TCP-MD5 key for peer 192.0.2.7 failed"):
            md5_sockopt(sock, "192.0.2.7", None)  # already gone: ENOENT
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock6:
        md5_sockopt(sock6, "2001:db8::1", "secret")
        md5_sockopt(sock6, "2001:db8::", "secret", prefixlen=32)


def test_normalize_address_folds_mapped() -> None:
    assert normalize_address("::ffff:127.0.0.2") == "127.0.0.2"
    assert normalize_address("2001:DB8::0:1") == "2001:db8::1"


# --------------------------------------------------------------------------- TCP-MD5 on the wire


async def test_md5_matching_keys_connect_and_exchange(make_listener: ListenerFactory) -> None:
    listener, accepted = await make_listener({"127.0.0.2": "secret"})
    reader, writer = await open_connection(
        SERVER, listener.port, local_addr="127.0.0.2", md5="secret", timeout=SHORT
    )
    s_reader, s_writer, peer, local = await accepted.next()
    assert (peer, local) == ("127.0.0.2", SERVER)
    writer.write(b"ping")
    assert await asyncio.wait_for(s_reader.readexactly(4), SHORT) == b"ping"
    s_writer.write(b"pong")
    assert await asyncio.wait_for(reader.readexactly(4), SHORT) == b"pong"
    await _close(writer)


@pytest.mark.parametrize("client_key", ["wrong", None])
async def test_md5_mismatch_never_connects(
    make_listener: ListenerFactory, client_key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    listener, accepted = await make_listener({"127.0.0.2": "secret"})
    caplog.set_level(logging.WARNING, logger="vpe.bgp.transport")
    with pytest.raises(TimeoutError, match=f"connect to {SERVER} port {listener.port}"):
        await open_connection(
            SERVER, listener.port, local_addr="127.0.0.2", md5=client_key, timeout=SHORT
        )
    assert accepted.queue.empty()
    assert any(
        SERVER in r.getMessage() and "127.0.0.2" in r.getMessage() and "timed out" in r.getMessage()
        for r in caplog.records
    )


async def test_md5_key_only_binds_its_peer(make_listener: ListenerFactory) -> None:
    """A key for 127.0.0.2 does not affect an unsigned neighbor at 127.0.0.3."""
    listener, accepted = await make_listener({"127.0.0.2": "secret", "127.0.0.3": None})
    _, writer = await open_connection(SERVER, listener.port, local_addr="127.0.0.3", timeout=SHORT)
    assert (await accepted.next())[2] == "127.0.0.3"
    await _close(writer)


async def test_listener_keys_change_at_runtime(make_listener: ListenerFactory) -> None:
    listener, accepted = await make_listener()
    listener.add_peer("127.0.0.2", "first")
    _, w1 = await open_connection(
        SERVER, listener.port, local_addr="127.0.0.2", md5="first", timeout=SHORT
    )
    await accepted.next()
    await _close(w1)

    listener.add_peer("127.0.0.2", "second")  # rekey
    with pytest.raises(TimeoutError):
        await open_connection(
            SERVER, listener.port, local_addr="127.0.0.2", md5="first", timeout=SHORT / 2
        )
    _, w2 = await open_connection(
        SERVER, listener.port, local_addr="127.0.0.2", md5="second", timeout=SHORT
    )
    await accepted.next()
    await _close(w2)

    listener.add_peer("127.0.0.2", None)  # keep the peer, drop the key
    _, w3 = await open_connection(SERVER, listener.port, local_addr="127.0.0.2", timeout=SHORT)
    await accepted.next()
    await _close(w3)

    listener.remove_peer("127.0.0.2")
    assert listener.peers == frozenset()
    with pytest.raises(KeyError, match="127.0.0.2 is not configured"):
        listener.remove_peer("127.0.0.2")


# --------------------------------------------------------------------------- GTSM


def test_gtsm_options_read_back_ipv4() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        gtsm_sockopt(sock)
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 255
        gtsm_sockopt(sock, hops=3)
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 253


def test_gtsm_options_read_back_ipv6() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        gtsm_sockopt(sock, hops=2)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 255
        assert sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT) == 254
        # dual-stack: IPv4-mapped traffic is guarded too
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 254


@pytest.mark.parametrize("hops", [0, 256, -1])
def test_gtsm_rejects_bad_hops(hops: int) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ValueError, match=f"GTSM hop count {hops} is not in 1..255"),
    ):
        gtsm_sockopt(sock, hops)


async def test_gtsm_loopback_session_works(make_listener: ListenerFactory) -> None:
    listener, accepted = await make_listener(gtsm=1)
    listener.add_peer("127.0.0.2", gtsm=1)
    reader, writer = await open_connection(
        SERVER, listener.port, local_addr="127.0.0.2", gtsm=1, timeout=SHORT
    )
    s_reader, s_writer, _, _ = await accepted.next()
    server_sock = s_writer.get_extra_info("socket")
    assert server_sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 255
    assert server_sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
    client_sock = writer.get_extra_info("socket")
    assert client_sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
    writer.write(b"hello")
    assert await asyncio.wait_for(s_reader.readexactly(5), SHORT) == b"hello"
    s_writer.write(b"back")
    assert await asyncio.wait_for(reader.readexactly(4), SHORT) == b"back"
    await _close(writer)


async def test_gtsm_drops_low_ttl_syn(make_listener: ListenerFactory) -> None:
    """A SYN sent with TTL 254 never reaches a listener that demands 255."""
    listener, accepted = await make_listener({"127.0.0.2": None}, gtsm=1)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)
        bind_local(sock, "127.0.0.2")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_connect(sock, (SERVER, listener.port)), SHORT)
    assert accepted.queue.empty()


# --------------------------------------------------------------------------- listener and binding


async def test_listener_refuses_unknown_peer(
    make_listener: ListenerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    listener, accepted = await make_listener({"127.0.0.2": None})
    caplog.set_level(logging.WARNING, logger="vpe.bgp.transport")
    reader, writer = await open_connection(
        SERVER, listener.port, local_addr="127.0.0.9", timeout=SHORT
    )
    # The kernel completed the handshake; the listener closes at once.
    assert await asyncio.wait_for(reader.read(), SHORT) == b""
    await _close(writer)
    assert accepted.queue.empty()
    assert "connection from 127.0.0.9 refused: no such neighbor" in caplog.messages


async def test_local_address_seen_by_the_peer(make_listener: ListenerFactory) -> None:
    listener, accepted = await make_listener({"127.0.0.3": None})
    _, writer = await open_connection(SERVER, listener.port, local_addr="127.0.0.3", timeout=SHORT)
    assert writer.get_extra_info("sockname")[0] == "127.0.0.3"
    _, s_writer, peer, local = await accepted.next()
    assert peer == "127.0.0.3"
    assert s_writer.get_extra_info("socket").getpeername()[0] == "127.0.0.3"
    assert local == SERVER == s_writer.get_extra_info("sockname")[0]
    await _close(writer)


async def test_listener_async_callback_and_failure_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def on_accept(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, local: str
    ) -> None:
        calls.append(peer)
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, logger="vpe.bgp.transport")
    async with Listener(SERVER, 0, on_accept) as listener:
        listener.add_peer("127.0.0.2")
        reader, writer = await open_connection(
            SERVER, listener.port, local_addr="127.0.0.2", timeout=SHORT
        )
        # the failing callback's connection is closed, the listener keeps serving
        assert await asyncio.wait_for(reader.read(), SHORT) == b""
        await _close(writer)
        assert listener.serving
        _, writer2 = await open_connection(
            SERVER, listener.port, local_addr="127.0.0.2", timeout=SHORT
        )
        await _close(writer2)
    assert calls[0] == "127.0.0.2"
    assert any("accept callback for 127.0.0.2 failed" in m for m in caplog.messages)
    assert not listener.serving


async def test_listener_rejects_wrong_family_peer() -> None:
    listener = Listener("::1", 0, lambda *a: None)
    with pytest.raises(ValueError, match="peer 127.0.0.2 is IPv4 but listener"):
        listener.add_peer("127.0.0.2")
    with pytest.raises(ValueError, match="80"):
        Listener(SERVER, 0, lambda *a: None).add_peer("127.0.0.2", "x" * 81)


async def test_connect_refused_names_the_peer() -> None:
    # Find a free port by binding and closing; nothing listens there afterwards.
    with socket.socket() as probe:
        probe.bind((SERVER, 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError, match=f"connect to {SERVER} port {port}"):
        await open_connection(SERVER, port, local_addr="127.0.0.2", timeout=SHORT)


def test_bind_local_errors() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(ValueError, match="local address 2001:db8::1 is IPv6"):
            bind_local(sock, "2001:db8::1")
        with pytest.raises(OSError, match="bind to 198.18.0.1 port 0 failed"):
            bind_local(sock, "198.18.0.1")  # not configured on this host


# --------------------------------------------------------------------------- back-off


def test_backoff_seeded_sequence() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    got = [backoff.next_delay() for _ in range(8)]
    ref = random.Random(7)
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    assert got == [c * ref.uniform(0.75, 1.0) for c in ceilings]
    assert all(0.75 * c <= d <= c for d, c in zip(got, ceilings, strict=True))
    assert backoff.attempts == 8
    # the same seed gives the same schedule
    again = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    assert [again.next_delay() for _ in range(8)] == got
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() <= 1.0


def test_backoff_without_jitter_and_huge_attempts() -> None:
    backoff = Backoff(base=0.5, cap=10.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 10.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0}, "base 0 must be positive"),
        ({"base": 5, "cap": 1}, "cap 1 is below the base 5"),
        ({"factor": 0.5}, "factor 0.5"),
        ({"jitter": 1.0}, "jitter 1.0"),
    ],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- back-pressure


@pytest.mark.parametrize("high_water", [256 * 1024, 1 << 20])
async def test_slow_peer_blocks_producer(make_listener: ListenerFactory, high_water: int) -> None:
    listener, accepted = await make_listener({"127.0.0.2": None})
    _, writer = await open_connection(SERVER, listener.port, local_addr="127.0.0.2", timeout=SHORT)
    s_reader, _, _, _ = await accepted.next()  # the peer never reads (yet)
    out = BoundedWriter(writer, high_water=high_water)
    assert out.high_water == high_water and out.low_water == high_water // 4

    chunk = b"\x00" * 16384
    max_queued = 0
    blocked: asyncio.Task[None] | None = None
    for _ in range(4096):  # at most 64 MiB, far more than kernel buffers + high water
        out.send(chunk)
        max_queued = max(max_queued, out.bytes_queued)
        drain = asyncio.ensure_future(out.drain_if_needed())
        await asyncio.sleep(0)
        if not drain.done():
            done, _ = await asyncio.wait({drain}, timeout=0.2)
            if not done:
                blocked = drain
                break
        await drain
    assert blocked is not None, "producer was never blocked by a peer that does not read"
    # Memory held in user space is bounded by the high-water mark plus one message.
    assert high_water < out.bytes_queued <= high_water + len(chunk)
    assert max_queued <= high_water + len(chunk)
    # The kernel absorbed only its socket buffers, not the whole stream.
    assert out.bytes_sent - out.bytes_queued < 16 * 1024 * 1024

    # Once the peer reads, the producer is released.
    async def consume() -> None:
        remaining = out.bytes_sent
        while remaining:
            data = await s_reader.read(1 << 20)
            assert data
            remaining -= len(data)

    reading = asyncio.create_task(consume())
    await asyncio.wait_for(blocked, 2.0)
    assert out.bytes_queued <= out.low_water
    await asyncio.wait_for(reading, 2.0)
    await _close(writer)


async def test_bounded_writer_fast_path_and_closed(make_listener: ListenerFactory) -> None:
    listener, accepted = await make_listener({"127.0.0.2": None})
    _, writer = await open_connection(SERVER, listener.port, local_addr="127.0.0.2", timeout=SHORT)
    s_reader, _, _, _ = await accepted.next()
    out = BoundedWriter(writer)
    out.send(b"abc")
    await asyncio.wait_for(out.drain_if_needed(), SHORT)  # below the mark: returns at once
    assert await asyncio.wait_for(s_reader.readexactly(3), SHORT) == b"abc"
    assert out.bytes_queued == 0 and out.bytes_sent == 3
    writer.close()
    with pytest.raises(ConnectionResetError):
        out.send(b"more")
    with pytest.raises(ValueError, match="low-water mark"):
        BoundedWriter(writer, high_water=10, low_water=11)
