"""A new driver needs only a registry entry: the channel server and the agent's FIB
link program an in-memory test driver exactly as they program the userspace one."""

from __future__ import annotations

import asyncio
import os
import selectors
import tempfile
import threading
from collections.abc import Callable, Iterator
from ipaddress import ip_address

import pytest
from memory_driver import MemoryDriver

from vpe.agent.fib import FibProgrammer
from vpe.dataplane import registry
from vpe.dataplane.driver import NextHop
from vpe.dataplane.server import ChannelServer
from vpe.vpn import VpnService
from vpe.vpn.attachments import Attachment

UNDERLAY = "198.18.0.1"


class _Forwarder:
    """What ``python -m vpe.dataplane.process --driver memory`` runs, in a thread."""

    def __init__(self, name: str, path: str) -> None:
        self.sel = selectors.DefaultSelector()
        options = registry.DriverOptions("ul0", (ip_address(UNDERLAY),))
        self.driver = registry.get(name).load()(options, self.sel)
        self.server = ChannelServer(self.driver, self.sel, socket_path=path, driver_name=name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(timeout=0.05):
                key.data(key.fileobj)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()
        self.driver.close()
        self.sel.close()


@pytest.fixture
def memory_forwarder() -> Iterator[tuple[_Forwarder, str]]:
    registry.register("memory", "memory_driver:create_memory_driver")
    path = os.path.join(tempfile.mkdtemp(prefix="vpe-link-"), "fib.sock")
    fwd = _Forwarder("memory", path)
    try:
        yield fwd, path
    finally:
        fwd.close()
        registry.unregister("memory")


async def _until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _vm(name: str, ifname: str, ip: str) -> Attachment:
    return Attachment(name, ifname, "red", "02:00:00:00:00:0a", (ip,), ("192.0.2.1",))


async def test_agent_programs_a_registered_in_memory_driver(
    memory_forwarder: tuple[_Forwarder, str],
) -> None:
    fwd, path = memory_forwarder
    driver = fwd.driver
    assert isinstance(driver, MemoryDriver)
    vpn = VpnService(UNDERLAY, next_hop=UNDERLAY)
    vpn.add_vrf("red", import_rts=["65000:1"], export_rts=["65000:1"])
    fib = FibProgrammer(path, ip_address(UNDERLAY))
    # a port whose interface the driver cannot use, known before the first sync
    fib.add_port(_vm("vm0", "missing0", "192.0.2.9/24"))
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.vrf_changes(vpn.add_local_route("red", "192.0.2.10/32", endpoint="vm1").table_changes, vpn)
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        assert fib.link.server_driver == "memory"
        # the full sync left vm0 out (typed refusal), everything else is there
        assert "no interface 'missing0'" in fib.failed_ports["vm0"]
        assert {p.name for p in driver.held.ports} == {"vm1"}
        assert [str(r.prefix) for r in driver.held.routes] == ["192.0.2.10/32"]

        # a batch adding a bad port: refused, reported to the waiter, rest resynced
        before = driver.syncs
        fib.add_port(_vm("vm2", "missing2", "192.0.2.11/24"))
        refused = await fib.port_result("vm2")
        assert refused is not None and "no interface 'missing2'" in refused
        assert "vm2" in fib.failed_ports
        await _until(lambda: driver.syncs == before + 1, "the resync after the refusal")

        # a good port and a label swap go through as batches, in order
        syncs = driver.syncs
        fib.add_port(_vm("vm3", "tap3", "192.0.2.12/24"))
        fib.set_swap(5000, NextHop.remote("198.18.0.7", 7000))
        assert await fib.port_result("vm3") is None
        await _until(lambda: 5000 in {e.label for e in driver.held.labels}, "the swap entry")
        assert {p.name for p in driver.held.ports} == {"vm1", "vm3"} and driver.syncs == syncs

        counters = await asyncio.to_thread(fib.counters, 5.0)
        assert counters["batches"] == len(driver.batches) and counters["generation"] >= 3
        assert fib.to_json()["failed_ports"].keys() == {"vm0", "vm2"}

        # re-attaching the refused port (now with an interface) clears the refusal
        fib.add_port(_vm("vm2", "tap2", "192.0.2.11/24"))
        assert await fib.port_result("vm2") is None and "vm2" not in fib.failed_ports
        fib.remove_port("vm0")
        await _until(lambda: {p.name for p in driver.held.ports} == {"vm1", "vm2", "vm3"},
                     "the re-attached port")
    finally:
        await fib.stop()


async def test_link_resyncs_a_restarted_forwarder(memory_forwarder: tuple[_Forwarder, str]) -> None:
    fwd, path = memory_forwarder
    fib = FibProgrammer(path, ip_address(UNDERLAY))
    fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        fwd.close()  # the forwarder goes away, a new one comes up empty
        again = _Forwarder("memory", path)
        try:
            # the next batch finds the channel closed: reconnect, full sync
            fib.add_port(_vm("vm2", "tap2", "192.0.2.11/24"))
            await _until(lambda: {p.name for p in again.driver.state().ports} == {"vm1", "vm2"},
                         "the full state on the new forwarder")
            assert fib.connected and isinstance(again.driver, MemoryDriver)
            assert again.driver.syncs == 1
        finally:
            again.close()
    finally:
        await fib.stop()


async def test_r9_3_when_applied_waits_for_the_batches_before_it(
    memory_forwarder: tuple[_Forwarder, str],
) -> None:
    """A move's prepare is advertised only once the forwarder holds what was
    submitted before (make before break): ``when_applied`` runs its callback
    after those batches are acked, at once when nothing is pending or no
    forwarder is connected."""
    fwd, path = memory_forwarder
    driver = fwd.driver
    assert isinstance(driver, MemoryDriver)
    fib = FibProgrammer(path, ip_address(UNDERLAY))
    seen: list[tuple[str, set[str]]] = []
    fib.link.when_applied(lambda: seen.append(("offline", set())))
    assert seen == [("offline", set())]  # no forwarder: nothing to wait for
    fib.start()
    try:
        await _until(lambda: fib.connected, "the first sync")
        fib.add_port(_vm("vm1", "tap1", "192.0.2.10/24"))
        fib.add_port(_vm("vm2", "tap2", "192.0.2.11/24"))
        fib.link.when_applied(lambda: seen.append(("after", {p.name for p in driver.held.ports})))
        assert len(seen) == 1  # not yet: two batches ahead
        await _until(lambda: len(seen) == 2, "the callback")
        assert seen[1] == ("after", {"vm1", "vm2"})
        fib.link.when_applied(lambda: seen.append(("idle", set())))
        assert seen[2] == ("idle", set())  # nothing pending: at once
    finally:
        await fib.stop()
