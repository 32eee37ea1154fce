"""Forwarder liveness (R11.2): probes between two instances on loopback, a fake clock."""

from __future__ import annotations

import ipaddress
import selectors
import socket

import pytest

from vpe.dataplane.driver import Batch, NextHop, Route, State
from vpe.dataplane.liveness import Liveness


class _Driver:
    def __init__(self, routes: tuple[Route, ...] = ()) -> None:
        self.routes = routes
        self.down: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.batches: list[Batch] = []

    def state(self) -> State:
        return State(routes=self.routes, down_endpoints=tuple(self.down))

    def apply(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.down |= set(batch.down_endpoints)
        self.down -= set(batch.up_endpoints)


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pump(sel: selectors.BaseSelector, rounds: int = 20) -> None:
    for _ in range(rounds):
        for key, _m in sel.select(timeout=0.01):
            key.data(key.fileobj)


def test_r11_2_silent_endpoint_declared_down_in_one_batch_then_up_again() -> None:
    port = _port()
    now = [0.0]
    sel = selectors.DefaultSelector()
    a_ip, b_ip = ipaddress.ip_address("127.0.0.61"), ipaddress.ip_address("127.0.0.62")
    routes = tuple(Route("red", f"10.0.{i}.0/24", (NextHop.remote(b_ip, 100 + i),)) for i in range(50))
    da, db = _Driver(routes), _Driver()
    a = Liveness(da, sel, [a_ip], 0.1, 3, port, clock=lambda: now[0])
    b = Liveness(db, sel, [b_ip], 0.1, 3, port, clock=lambda: now[0])
    try:
        a.tick()
        _pump(sel)
        assert b_ip in a.last_reply and not da.batches  # answered: monitored, up
        b.close()  # b goes silent
        for _ in range(3):
            now[0] += 0.1
            a.tick()
            _pump(sel, 2)
        assert not da.batches
        now[0] += 0.1
        a.tick()
        # one operation for the 50 routes through b
        assert da.batches == [Batch(down_endpoints=(b_ip,))]
        # a full sync from the control plane forgets it: declared again at the refresh
        da.down.clear()
        now[0] += 1.0
        a.tick()
        assert da.down == {b_ip}
        b = Liveness(db, sel, [b_ip], 0.1, 3, port, clock=lambda: now[0])
        now[0] += 0.1
        a.tick()
        _pump(sel)
        assert da.batches[-1] == Batch(up_endpoints=(b_ip,)) and not da.down
    finally:
        a.close()
        b.close()
        sel.close()


def test_never_answering_endpoint_is_never_declared_down() -> None:
    now = [0.0]
    sel = selectors.DefaultSelector()
    d = _Driver((Route("red", "10.0.0.0/24", (NextHop.remote("127.0.0.63", 5),)),))
    a = Liveness(d, sel, [ipaddress.ip_address("127.0.0.64")], 0.1, 3, _port(), clock=lambda: now[0])
    try:
        for _ in range(10):
            a.tick()
            _pump(sel, 1)
            now[0] += 0.1
        assert not d.batches
    finally:
        a.close()
        sel.close()


def test_bad_settings_are_named() -> None:
    sel = selectors.DefaultSelector()
    with pytest.raises(ValueError, match=r"liveness interval: 0.0 s is not in 0.005..60"):
        Liveness(_Driver(), sel, [], 0.0)
    with pytest.raises(ValueError, match="liveness multiplier: 1 is not in 2..100"):
        Liveness(_Driver(), sel, [], 0.1, 1)
    sel.close()
