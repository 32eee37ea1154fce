"""Prometheus metrics of one agent, served at ``/metrics`` on the API.

Everything is read from the agent's view when scraped (a custom collector), so
there is no bookkeeping on the hot paths: sessions by state, UPDATEs in and
out per peer, Loc-RIB routes per family, routes per VRF and address family,
ports, the FIB channel. The forwarder's packet, byte and drop counters are
fetched from the forwarder over its FIB socket at scrape time, in a worker
thread and bounded (:data:`FORWARDER_TIMEOUT`); when it does not answer,
``vpe_forwarder_up`` is 0 and the scrape still succeeds.

FIB programming latency is a real histogram: the batch latencies the
:class:`~vpe.agent.fib.FibProgrammer` recorded since the previous scrape
are observed into it (it keeps the last 1000, so a scrape interval with
more batches than that under-counts the histogram, never the batch counter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..bgp.fsm import State

if TYPE_CHECKING:
    from .view import AgentView

#: seconds a scrape waits for the forwarder's counters
FORWARDER_TIMEOUT = 1.0
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AgentMetrics:
    """The registry of one agent (read through its view) and what a scrape needs to fill it."""

    def __init__(self, view: AgentView) -> None:
        self.view = view
        self.registry = CollectorRegistry(auto_describe=False)
        self.fib_latency = Histogram(
            "vpe_fib_programming_seconds",
            "Time to apply one FIB batch in the forwarder (sent to acknowledged).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batches_seen = 0
        self.forwarder: dict[str, Any] | None = None
        self.forwarder_error = ""
        self.registry.register(_AgentCollector(self))

    async def render(self) -> tuple[bytes, str]:
        """The exposition text (and its content type) of a scrape now."""
        self._observe_latencies()
        await self._fetch_forwarder()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _observe_latencies(self) -> None:
        fib = self.view.fib
        if fib is None:
            return
        new = fib.batches_sent - self._batches_seen
        self._batches_seen = fib.batches_sent
        if new <= 0:
            return
        for v in fib.latencies[-min(new, len(fib.latencies)):] if fib.latencies else ():
            self.fib_latency.observe(v)

    async def _fetch_forwarder(self) -> None:
        fib = self.view.fib
        self.forwarder = None
        if fib is None:
            return
        try:
            self.forwarder = await asyncio.wait_for(
                asyncio.to_thread(fib.counters, FORWARDER_TIMEOUT), FORWARDER_TIMEOUT * 2
            )
            self.forwarder_error = ""
        except Exception as e:  # any failure is "forwarder down" for this scrape
            self.forwarder_error = str(e) or type(e).__name__


class _AgentCollector(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        eng = self.m.view
        yield from _bgp(eng)
        yield from _tables(eng)
        yield from _fib(eng)
        yield from _forwarder(self.m.forwarder)


def _bgp(eng: AgentView) -> Iterator[Metric]:
    by_state = GaugeMetricFamily("vpe_bgp_sessions", "BGP sessions by FSM state.", labels=["state"])
    counts = {s.value: 0 for s in State}
    up = GaugeMetricFamily("vpe_bgp_session_established", "1 when the session is Established.",
                           labels=["peer"])
    upd_in = CounterMetricFamily("vpe_bgp_updates_received", "UPDATE messages received.", labels=["peer"])
    upd_out = CounterMetricFamily("vpe_bgp_updates_sent", "UPDATE messages sent.", labels=["peer"])
    msg_in = CounterMetricFamily("vpe_bgp_messages_received", "BGP messages received.", labels=["peer"])
    msg_out = CounterMetricFamily("vpe_bgp_messages_sent", "BGP messages sent.", labels=["peer"])
    notif = CounterMetricFamily("vpe_bgp_notifications", "NOTIFICATIONs by direction.",
                                labels=["peer", "direction"])
    flaps = CounterMetricFamily("vpe_bgp_established_transitions", "Times the session came up.",
                                labels=["peer"])
    for addr, p in eng.peers.items():
        counts[p.state.value] = counts.get(p.state.value, 0) + 1
        c = p.counters
        up.add_metric([addr], 1.0 if p.established else 0.0)
        upd_in.add_metric([addr], c.get("updates_in", 0))
        upd_out.add_metric([addr], c.get("updates_out", 0))
        msg_in.add_metric([addr], c.get("messages_in", 0))
        msg_out.add_metric([addr], c.get("messages_out", 0))
        notif.add_metric([addr, "received"], c.get("notifications_in", 0))
        notif.add_metric([addr, "sent"], c.get("notifications_out", 0))
        flaps.add_metric([addr], c.get("established_transitions", 0))
    for state, n in counts.items():
        by_state.add_metric([state], n)
    yield from (by_state, up, upd_in, upd_out, msg_in, msg_out, notif, flaps)
    gr = eng.gr
    if gr is not None:
        g = GaugeMetricFamily("vpe_graceful_restart_deferring",
                              "1 while route selection is deferred after a restart.")
        g.add_metric([], 1.0 if gr.deferring else 0.0)
        yield g


def _tables(eng: AgentView) -> Iterator[Metric]:
    loc = GaugeMetricFamily("vpe_rib_routes", "Destinations in the Loc-RIB per family.",
                            labels=["family"])
    for fam in eng.rib.families():
        loc.add_metric([fam.name], len(eng.rib.loc_rib(fam)))
    yield loc
    vrf = GaugeMetricFamily("vpe_vrf_routes", "Prefixes in a VRF's table.", labels=["vrf", "afi"])
    for name, v in sorted(eng.vpn.vrfs.items()):
        vrf.add_metric([name, "ipv4"], len(v.tables[4]))
        vrf.add_metric([name, "ipv6"], len(v.tables[6]))
    yield vrf
    ports = GaugeMetricFamily("vpe_ports", "Attached ports per VRF.", labels=["vrf"])
    per: dict[str, int] = {name: 0 for name in eng.vpn.vrfs}
    for a in eng.attachments.values():
        per[a.vrf] = per.get(a.vrf, 0) + 1
    for name, n in sorted(per.items()):
        ports.add_metric([name], n)
    yield ports


def _fib(eng: AgentView) -> Iterator[Metric]:
    info = GaugeMetricFamily("vpe_dataplane_driver_info", "The dataplane driver (always 1).",
                             labels=["driver"])
    info.add_metric([eng.driver], 1.0)
    yield info
    fib = eng.fib
    if fib is None:
        return
    g = GaugeMetricFamily("vpe_fib_connected",
                          "1 when the FIB channel to the forwarder is up, synchronised and "
                          "answering keepalives.")
    g.add_metric([], 1.0 if fib.connected else 0.0)
    yield g
    link = fib.link
    for name, help_, value in (
        ("vpe_fib_losses", "Times the FIB channel was lost after a full sync.", link.losses),
        ("vpe_fib_syncs", "Full syncs of the forwarder (one per channel session).", link.syncs),
        ("vpe_fib_foreign_writes",
         "Changes to the forwarder's tables made by another writer (then resynchronised).",
         link.foreign_writes),
        ("vpe_fib_forwarder_restarts", "Forwarder restarts seen on reconnect.",
         link.forwarder_restarts),
    ):
        c0 = CounterMetricFamily(name, help_)
        c0.add_metric([], value)
        yield c0
    fp = GaugeMetricFamily("vpe_fib_failed_ports", "Ports the forwarder refused (interface unusable).")
    fp.add_metric([], len(link.failed_ports))
    yield fp
    c = CounterMetricFamily("vpe_fib_batches", "FIB batches the forwarder acknowledged.")
    c.add_metric([], fib.batches_sent)
    yield c
    sizes = GaugeMetricFamily("vpe_fib_entries", "Entries the agent wants in the forwarder.",
                              labels=["table"])
    sizes.add_metric(["ports"], len(fib.ports))
    sizes.add_metric(["routes"], len(fib.routes))
    sizes.add_metric(["labels"], len(fib.labels))
    yield sizes


def _forwarder(data: dict[str, Any] | None) -> Iterator[Metric]:
    up = GaugeMetricFamily("vpe_forwarder_up", "1 when the forwarder answered this scrape.")
    up.add_metric([], 0.0 if data is None else 1.0)
    yield up
    if data is None:
        return
    pk = CounterMetricFamily("vpe_forwarder_port_packets", "Packets per port and direction.",
                             labels=["port", "direction"])
    by = CounterMetricFamily("vpe_forwarder_port_bytes", "Bytes per port and direction.",
                             labels=["port", "direction"])
    pd = CounterMetricFamily("vpe_forwarder_port_drops", "Packets dropped per port.", labels=["port"])
    for port, c in sorted((data.get("ports") or {}).items()):
        for d, key in (("rx", "rx"), ("tx", "tx")):
            pk.add_metric([port, d], _num(c.get(f"{key}_packets")))
            by.add_metric([port, d], _num(c.get(f"{key}_bytes")))
        pd.add_metric([port], _num(c.get("drops")))
    yield from (pk, by, pd)
    drops = CounterMetricFamily("vpe_forwarder_drops", "Packets dropped by reason.", labels=["reason"])
    for reason, n in sorted((data.get("drops") or {}).items()):
        drops.add_metric([str(reason)], _num(n))
    yield drops
    vrf = CounterMetricFamily("vpe_forwarder_vrf_packets", "Packets per VRF and action.",
                              labels=["vrf", "action"])
    for name, c in sorted((data.get("vrfs") or {}).items()):
        for action, n in sorted(c.items()):
            vrf.add_metric([name, action], _num(n))
    yield vrf
    ul = CounterMetricFamily("vpe_forwarder_underlay", "Underlay counters.", labels=["counter"])
    for k, n in sorted((data.get("underlay") or {}).items()):
        ul.add_metric([str(k)], _num(n))
    yield ul
    io = CounterMetricFamily("vpe_forwarder_io_errors", "Socket errors by kind.", labels=["kind"])
    for k, n in sorted((data.get("io_errors") or {}).items()):
        io.add_metric([str(k)], _num(n))
    yield io
    kernel = data.get("ebpf")
    if isinstance(kernel, dict):
        fp = CounterMetricFamily("vpe_forwarder_fast_path_packets",
                                 "Packets the kernel programs forwarded themselves (ebpf driver).",
                                 labels=["action"])
        for k, n in sorted((kernel.get("fast_path") or {}).items()):
            fp.add_metric([str(k)], _num(n))
        yield fp
        pu = CounterMetricFamily("vpe_forwarder_punts",
                                 "Frames the kernel programs left to the slow path, by reason.",
                                 labels=["reason"])
        for k, n in sorted((kernel.get("punts") or {}).items()):
            pu.add_metric([str(k)], _num(n))
        yield pu


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else 0.0
