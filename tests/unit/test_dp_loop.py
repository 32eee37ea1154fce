"""The forwarder's selector loop survives a handler that removes another one's
socket while both are ready in the same round (a batch removing a port whose
frames are waiting: seen with 100 simultaneous moves, the forwarder died on
the removed port's released ring)."""

from __future__ import annotations

import selectors
import socket

from vpe.dataplane.process import _Loop


def test_a_socket_unregistered_in_the_same_round_is_skipped() -> None:
    sel = selectors.DefaultSelector()
    pairs = [socket.socketpair() for _ in range(2)]
    ran: list[int] = []

    def handler(i: int):  # noqa: ANN202
        def read(sock: socket.socket) -> None:
            ran.append(i)
            sock.recv(16)
            other = pairs[1 - i][0]
            sel.unregister(other)  # the other port goes, with its ring
            other.close()
        return read

    for i, (a, b) in enumerate(pairs):
        sel.register(a, selectors.EVENT_READ, handler(i))
        b.send(b"x")
    loop = _Loop(sel)
    loop.turn(timeout=1.0)
    assert len(ran) == 1  # the second ready socket was skipped, not called
    for a, b in pairs:
        a.close()
        b.close()
    sel.close()
