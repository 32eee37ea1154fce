"""The forwarder's log line for refused claims (R13.1, R13.3 mid-move)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from vpe.dataplane.refusals import RefusalLog


def test_logs_what_grew_by_reason_and_port_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    c: dict[str, Any] = {"drops": {}, "ports": {"forger": {"drops": 0}, "ok": {"drops": 0}}}
    r = RefusalLog(lambda: c, interval=1.0, clock=lambda: now[0])
    now[0] = 1.0
    assert r.tick() is None  # nothing refused yet
    c["drops"] = {"spoof-ip": 2, "spoof-arp": 1, "no-route": 5}
    c["ports"]["forger"]["drops"] = 3
    now[0] = 1.5
    assert r.tick() is None  # not an interval yet
    now[0] = 2.0
    with caplog.at_level(logging.WARNING, "vpe.dataplane.refusals"):
        line = r.tick()
    assert line == ("refused frames claiming addresses that are not their port's: spoof-ip +2, spoof-arp +1; "
                    "ports with drops: forger +3")
    assert line in caplog.text
    now[0] = 3.0
    assert r.tick() is None  # no new refusals: no line


def test_counters_failing_is_not_fatal() -> None:
    def boom() -> dict[str, Any]:
        raise OSError("gone")

    r = RefusalLog(boom, interval=0.0, clock=lambda: 5.0)
    assert r.tick() is None
