"""A log line for frames refused for claiming an address or MAC that is not
their port's (anti-spoofing, R13.1; impersonation of a VM, also mid-move,
R13.3): the forwarder process looks at its driver's counters at most once per
interval and logs what grew, by reason and by port, so that an operator sees
who tried."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("vpe.dataplane.refusals")

#: the drop reasons of a claim refused at a port
REASONS = ("spoof-ip", "spoof-mac", "spoof-arp")


class RefusalLog:
    """Call :meth:`tick` from the process loop; it logs at most every ``interval`` s."""

    def __init__(self, counters: Callable[[], dict[str, Any]], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counters = counters
        self._interval = interval
        self._clock = clock
        self._next = clock() + interval
        self._drops: dict[str, int] = {}
        self._ports: dict[str, int] = {}

    def tick(self) -> str | None:
        """The line logged now, if any."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._interval
        try:
            c = self._counters()
        except Exception:  # counters are best effort here; the forwarder goes on
            return None
        drops = {r: int(c.get("drops", {}).get(r, 0)) for r in REASONS}
        ports = {name: int(p.get("drops", 0)) for name, p in c.get("ports", {}).items()}
        grew = {r: n - self._drops.get(r, 0) for r, n in drops.items() if n > self._drops.get(r, 0)}
        line = None
        if grew:
            by_port = {name: n - self._ports.get(name, 0) for name, n in ports.items() if n > self._ports.get(name, 0)}
            line = ("refused frames claiming addresses that are not their port's: "
                    + ", ".join(f"{r} +{n}" for r, n in grew.items())
                    + "; ports with drops: " + (", ".join(f"{p} +{n}" for p, n in sorted(by_port.items())) or "-"))
            log.warning("%s", line)
        self._drops, self._ports = drops, ports
        return line
