"""The "ebpf" driver: tc programs forward in the kernel, the userspace pipeline does the rest.

Run as ``python -m vpe.dataplane.process --driver ebpf ...``; :func:`create_driver`
is its registry factory. What it owns:

* the BPF object (``vpe_tc.c``, compiled by :mod:`.build`), loaded by libbpf
  into this process: its maps are the FIB, written only from here, and they
  go away with the process;
* a tc filter (clsact ingress, direct-action) on every programmed port and on
  the underlay interface, removed again by :meth:`EbpfDriver.close` (with the
  clsact qdisc when the driver created it);
* the slow path: the userspace forwarder (:mod:`vpe.dataplane.userspace`)
  holding the same state. Frames the port program cannot handle arrive over
  a perf buffer and go through the userspace pipeline (ARP/ND, ICMP errors,
  replication, GRE, IPv6 underlay, ...); tunnel packets the underlay program
  leaves alone reach the userspace forwarder's UDP / GRE sockets as before.
  Its port sockets only send (AF_PACKET protocol 0): a port's frames are
  read by the kernel program, never twice.

``sync`` / ``apply`` are atomic: the userspace forwarder validates and takes
the change first, the whole FIB is compiled to map contents
(:func:`.maps.compile_tables`, which also checks the map sizes), then only
the differences are written; any refusal restores both.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import selectors
import socket
from typing import Any

from ..driver import Batch, Port, State
from ..errors import DriverError, DriverFailure, PortUnavailable
from ..registry import DriverOptions
from ..userspace.process import ForwarderProcess, PortIO, replaced
from . import build
from . import libbpf as B
from . import maps as M

log = logging.getLogger("vpe.dataplane.ebpf")

COUNTER_MAPS = ("port_ctrs", "vrf_ctrs", "drops", "punts", "ul_ctrs", "fast_ctrs")
PROGRAMS = ("vpe_port", "vpe_underlay")


def _send_only(ifname: str, mtu: int) -> PortIO:
    """An AF_PACKET socket that only sends on ``ifname`` (protocol 0: receives nothing)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, 0))
        sock.setblocking(False)
        ifindex = socket.if_nametoindex(ifname)
    except OSError:
        sock.close()
        raise
    return PortIO(ifname, mtu, sock, None, True, ifindex)


class SlowPath(ForwarderProcess):
    """The userspace forwarder as the eBPF driver's slow path: its ports only send."""

    def _open_ports(self, ports: list[Port]) -> dict[str, PortIO]:
        opened: dict[str, PortIO] = {}
        for p in ports:
            cur = self.port_socks.get(p.name)
            if cur is None or cur.ifname != p.ifname or cur.mtu != p.mtu or replaced(cur):
                try:
                    opened[p.name] = _send_only(p.ifname, p.mtu)
                except OSError as exc:
                    for pio in opened.values():
                        pio.close()
                    raise PortUnavailable.cannot_open(p.name, p.ifname, exc) from None
        return opened

    def _commit_ports(self, opened: dict[str, PortIO], keep: set[str]) -> None:
        self._senders.clear()
        for name in list(self.port_socks):
            if name not in keep or name in opened:
                self.port_socks.pop(name).close()
        self.port_socks.update(opened)

    def forward_frame(self, port: str, frame: bytes) -> None:
        """A frame punted by the port program: the userspace pipeline, then its sockets."""
        self._send(self.forwarder.from_port(port, frame))

    def count(self, what: str) -> None:
        self.io_errors[what] = self.io_errors.get(what, 0) + 1


def _ifindex(port: Port) -> int:
    try:
        return socket.if_nametoindex(port.ifname)
    except OSError:
        raise PortUnavailable(
            f"port {port.name}: no interface {port.ifname!r}", port=port.name, ifname=port.ifname
        ) from None


class EbpfDriver:
    """tc/eBPF fast path plus the userspace slow path, as one :class:`Driver`."""

    def __init__(
        self,
        underlay_if: str,
        underlay_ips: list[str],
        selector: selectors.BaseSelector,
        underlay_mtu: int | None = None,
        object_path: str | None = None,
    ) -> None:
        self.sel = selector
        self.underlay_if = underlay_if
        self.obj: B.BpfObject | None = None
        self.perf: B.PerfBuffer | None = None
        self._stats_fd: int | None = None
        #: ifindex -> whether this driver created its clsact qdisc
        self._attached: dict[int, bool] = {}
        self.slow = SlowPath(underlay_if, underlay_ips, underlay_mtu=underlay_mtu, selector=selector)
        try:
            self._load(object_path)
        except BaseException:
            self.close()
            raise
        self.ids = M.Ids()
        self.tables: M.Tables = {name: {} for name in M.FIB_MAPS}
        self.compiled = M.Compiled({}, {}, {})
        self._port_of: dict[int, str] = {}
        self.lost_punts = 0

    def _load(self, object_path: str | None) -> None:
        path = object_path or str(build.ensure_built())
        self.obj = B.BpfObject(path)
        self.maps = {n: self.obj.map(n) for n in (*M.FIB_MAPS, *COUNTER_MAPS, "cfg", "punt_events")}
        self.capacity = {n: self.maps[n].max_entries for n in M.FIB_MAPS}
        self.progs = {n: self.obj.program_fd(n) for n in PROGRAMS}
        self.ncpus = B.possible_cpus()
        if os.environ.get("VPE_EBPF_STATS") == "1":
            self._stats_fd = B.enable_run_stats()
        try:
            self.ul_ifindex = socket.if_nametoindex(self.underlay_if)
        except OSError:
            raise B.BpfError(f"underlay interface {self.underlay_if}", errno.ENODEV) from None
        src4 = next((a.packed for a in self.slow.forwarder.underlay_ips if a.version == 4), None)
        src6 = next((a.packed for a in self.slow.forwarder.underlay_ips if a.version == 6), None)
        self.maps["cfg"].update(
            M.U32.pack(0),
            M.CFG.pack(
                self.ul_ifindex,
                int(src4 is not None),
                int(src6 is not None),
                0,
                src4 or bytes(4),
                src6 or bytes(16),
            ),
        )
        self.perf = B.PerfBuffer(self.maps["punt_events"], self._on_punt, self._on_lost)
        self.sel.register(self.perf, selectors.EVENT_READ, self._consume)
        self._attached[self.ul_ifindex] = B.tc_attach(
            self.ul_ifindex, self.progs["vpe_underlay"], f"underlay {self.underlay_if}"
        )
        log.info(
            "ebpf driver: %s loaded, tc ingress on %s (ifindex %d)",
            path,
            self.underlay_if,
            self.ul_ifindex,
        )

    # ------------------------------------------------------------ Driver API

    def sync(self, state: State) -> None:
        before = self.slow.state()
        self.slow.sync(state)
        self._program(before)

    def apply(self, batch: Batch) -> None:
        if (batch.down_endpoints or batch.up_endpoints) and len(batch) == len(
            batch.down_endpoints
        ) + len(batch.up_endpoints):
            self._set_down(batch)
            return
        before = self.slow.state()
        self.slow.apply(batch)
        self._program(before)

    def _set_down(self, batch: Batch) -> None:
        """Endpoints declared dead / alive (R11.2): one map entry each, no recompilation."""
        self.slow.apply(batch)
        table = self.tables.setdefault("ep_down", {})
        m = self.maps["ep_down"]
        try:
            for ep in batch.up_endpoints:
                k = M.addr_key(0, ep)
                if k in table:
                    m.delete(k)
                    del table[k]
            for ep in batch.down_endpoints:
                k = M.addr_key(0, ep)
                m.update(k, M.ONE)
                table[k] = M.ONE
        except B.BpfError as exc:
            raise DriverFailure(f"ebpf map ep_down update failed: {exc}") from None

    def state(self) -> State:
        return self.slow.state()

    def _program(self, before: State) -> None:
        """Write the slow path's new state into the maps; on refusal restore ``before``."""
        try:
            ids = copy.deepcopy(self.ids)
            new = M.compile_tables(
                self.slow.state(),
                ids,
                _ifindex,
                self.slow.forwarder.underlay_mtu,
                self.capacity,
                self.slow.forwarder.underlay_ips,
            )
            old_tables = self.tables
            try:
                self._write(old_tables, new.tables)
            except B.BpfError as exc:
                with contextlib.suppress(B.BpfError):
                    self._write(new.tables, old_tables)
                raise DriverFailure(f"ebpf map update failed: {exc}") from None
            try:
                self._attach_ports(new)
            except PortUnavailable:
                with contextlib.suppress(B.BpfError):
                    self._write(new.tables, old_tables)
                raise
        except DriverError:
            self.slow.sync(before)
            raise
        self.tables = new.tables
        self.ids = ids
        self.compiled = new
        self._port_of = {i: n for n, i in new.ifindex.items()}

    def _write(self, old: M.Tables, new: M.Tables) -> None:
        for name in M.FIB_MAPS:
            m, o, n = self.maps[name], old.get(name, {}), new.get(name, {})
            for k, v in n.items():
                if o.get(k) != v:
                    m.update(k, v)
        for name in reversed(M.FIB_MAPS):
            m, o, n = self.maps[name], old.get(name, {}), new.get(name, {})
            for k in o:
                if k not in n:
                    m.delete(k)

    def _attach_ports(self, new: M.Compiled) -> None:
        want = set(new.ifindex.values())
        have = set(self._attached) - {self.ul_ifindex}
        done: list[int] = []
        for name, i in new.ifindex.items():
            if i in have:
                continue
            try:
                self._attached[i] = B.tc_attach(i, self.progs["vpe_port"], f"port {name}")
            except B.BpfError as exc:
                for j in done:
                    B.tc_detach(j, self._attached.pop(j))
                raise PortUnavailable(
                    f"port {name}: cannot attach the eBPF program: {exc.strerror}",
                    port=name,
                    ifname=next(p.ifname for p in self.slow.state().ports if p.name == name),
                ) from None
            done.append(i)
            self._zero_counter("port_ctrs", i)
        for i in have - want:
            B.tc_detach(i, self._attached.pop(i))
            with contextlib.suppress(B.BpfError):
                self.maps["port_ctrs"].delete(M.U32.pack(i))
        for vid in new.vrf_ids.values():
            self._zero_counter("vrf_ctrs", vid)

    def _zero_counter(self, name: str, key: int) -> None:
        m = self.maps[name]
        with contextlib.suppress(B.BpfError):  # EEXIST: it is counting already
            m.update(M.U32.pack(key), bytes(self._percpu_size(m)), B.BPF_NOEXIST)

    def _percpu_size(self, m: B.BpfMap) -> int:
        return ((m.value_size + 7) // 8) * 8 * self.ncpus

    def _percpu(self, name: str, key: int) -> list[int] | None:
        """A per-CPU counter entry, summed over the CPUs (u64 fields)."""
        m = self.maps[name]
        raw = m.lookup(M.U32.pack(key), self._percpu_size(m))
        if raw is None:
            return None
        stride = ((m.value_size + 7) // 8) * 8
        fields = m.value_size // 8
        sums = [0] * fields
        for c in range(self.ncpus):
            for f in range(fields):
                off = c * stride + 8 * f
                sums[f] += int.from_bytes(raw[off : off + 8], "little")
        return sums

    # ------------------------------------------------------------- counters

    def counters(self) -> dict[str, Any]:
        c = self.slow.counters()
        fast = {"routed_local": 0, "encapsulated": 0, "decapsulated": 0, "port_rx_packets": 0}
        for name, i in self.compiled.ifindex.items():
            k = self._percpu("port_ctrs", i)
            if k is None:
                continue
            pc = c["ports"].setdefault(
                name, {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "drops": 0}
            )
            for f, v in zip(("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops"), k, strict=True):
                pc[f] = pc.get(f, 0) + v
            fast["port_rx_packets"] += k[0]
        for vrf, vid in self.compiled.vrf_ids.items():
            k = self._percpu("vrf_ctrs", vid)
            if k is None:
                continue
            vc = c["vrfs"].setdefault(
                vrf,
                {"routed_local": 0, "encapsulated": 0, "decapsulated": 0, "replicated": 0, "drops": 0},
            )
            for f, v in zip(
                ("routed_local", "encapsulated", "decapsulated", "replicated", "drops", "redirected"),
                k,
                strict=True,
            ):
                vc[f] = vc.get(f, 0) + v
                if f in fast:
                    fast[f] += v
        for idx, reason in enumerate(M.DROP_REASONS):
            k = self._percpu("drops", idx)
            if k and k[0]:
                c["drops"][reason] = c["drops"].get(reason, 0) + k[0]
        k = self._percpu("ul_ctrs", 0)
        if k:
            for f, v in zip(("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"), k, strict=True):
                c["underlay"][f] = c["underlay"].get(f, 0) + v
        for idx, what in enumerate(M.FAST_COUNTERS):
            k = self._percpu("fast_ctrs", idx)
            fast[what] = k[0] if k else 0
        # swaps and re-tunnels, as the userspace pipeline counts them (both paths)
        c["swapped"] = c.get("swapped", 0) + fast["swapped"] + fast["retunnelled"]
        punts = {}
        for idx, reason in enumerate(M.PUNT_REASONS):
            k = self._percpu("punts", idx)
            if k and k[0]:
                punts[reason] = k[0]
        progs = {}
        for name, fd in self.progs.items():
            with contextlib.suppress(B.BpfError):
                ns, cnt = B.prog_run_stats(fd)
                progs[name] = {"run_cnt": cnt, "run_time_ns": ns}
        c["ebpf"] = {"fast_path": fast, "punts": punts, "lost_punts": self.lost_punts, "programs": progs}
        return c

    # ------------------------------------------------------------ slow path

    def _consume(self, _fileobj: object) -> None:
        if self.perf is not None:
            self.perf.consume()

    def _on_punt(self, raw: bytes) -> None:
        if len(raw) < M.PUNT_META.size:
            self.slow.count("punt-short")
            return
        ifindex, reason, length, _mtu = M.PUNT_META.unpack_from(raw)
        cap = M.PUNT_QUOTE if reason == M.P_TOO_BIG else M.PUNT_MAX
        frame = raw[M.PUNT_META.size : M.PUNT_META.size + min(length, cap)]
        name = self._port_of.get(ifindex)
        if name is None:
            self.slow.count("punt-unknown-port")
            return
        if len(frame) < length:
            if reason != M.P_TOO_BIG:
                self.slow.count("punt-truncated")
                return
            # too big: only the head is copied (the ICMP error quotes it); the
            # pipeline checks lengths, so it gets the frame at its full size
            frame += bytes(length - len(frame))
        self.slow.forward_frame(name, frame)

    def _on_lost(self, count: int) -> None:
        self.lost_punts += count

    # ---------------------------------------------------------------- close

    def close(self) -> None:
        """Detach every filter (and the qdiscs this driver created), free the maps."""
        for i, created in list(self._attached.items()):
            with contextlib.suppress(OSError):
                B.tc_detach(i, created)
        self._attached.clear()
        if self.perf is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.perf)
            self.perf.close()
            self.perf = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None
        if self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None
        self.slow.close()


def create_driver(options: DriverOptions, selector: selectors.BaseSelector) -> EbpfDriver:
    """The registry's factory of the "ebpf" driver."""
    try:
        return EbpfDriver(
            options.underlay_if,
            [str(a) for a in options.underlay_ips],
            selector,
            underlay_mtu=options.underlay_mtu,
        )
    except build.BuildError as exc:
        raise OSError(errno.ENOEXEC, str(exc)) from None
