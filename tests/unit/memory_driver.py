"""A trivial in-memory dataplane driver: what a new driver must provide, and no more.

Registered by tests under a name of their own (``registry.register(name,
"memory_driver:create_memory_driver")``) to show that a driver is added
without touching the agent, the API or the FIB resolver.
"""

from __future__ import annotations

import selectors
from typing import Any

from vpe.dataplane.driver import Batch, State
from vpe.dataplane.errors import PortUnavailable
from vpe.dataplane.registry import DriverOptions


class MemoryDriver:
    """A trivial driver that only remembers what it was told (the registry test's driver)."""

    instances: list[MemoryDriver] = []

    def __init__(self) -> None:
        self.held = State()
        self.batches: list[Batch] = []
        self.syncs = 0
        self.closed = False
        MemoryDriver.instances.append(self)

    @staticmethod
    def _check_ports(batch: Batch) -> None:
        for p in batch.add_ports:
            if p.ifname.startswith("missing"):
                raise PortUnavailable(
                    f"port {p.name}: no interface {p.ifname!r}", port=p.name, ifname=p.ifname
                )

    def sync(self, st: State) -> None:
        self._check_ports(st.as_batch())
        self.held = st
        self.syncs += 1

    def apply(self, batch: Batch) -> None:
        self._check_ports(batch)
        self.batches.append(batch)
        ports = {p.name: p for p in self.held.ports}
        for name in batch.remove_ports:
            ports.pop(name, None)
        ports.update((p.name, p) for p in batch.add_ports)
        routes = {r.key: r for r in self.held.routes}
        for k in batch.remove_routes:
            routes.pop(k, None)
        routes.update((r.key, r) for r in batch.add_routes)
        labels = {e.label: e for e in self.held.labels}
        for lab in batch.remove_labels:
            labels.pop(lab, None)
        labels.update((e.label, e) for e in batch.add_labels)
        self.held = State(tuple(ports.values()), tuple(routes.values()), tuple(labels.values()))

    def counters(self) -> dict[str, Any]:
        return {"batches": len(self.batches)}

    def state(self) -> State:
        return self.held

    def close(self) -> None:
        self.closed = True


def create_memory_driver(options: DriverOptions, selector: selectors.BaseSelector) -> MemoryDriver:
    """The registry factory: a forwarder process would call it with its options."""
    return MemoryDriver()


