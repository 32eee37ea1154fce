"""Graceful restart (RFC 4724) for the engine: both sides of it.

Restarting speaker (this agent, started again with state in its store):

* the OPEN carries the Graceful Restart capability with the Restart State
  (R) bit set and, per family, Forwarding State preserved (F): the
  forwarder is a separate process that kept forwarding while the agent was
  away (and without a forwarder there is no forwarding state to lose), so
  peers keep our routes (marked stale) and keep sending traffic to us;
* route selection is deferred (RFC 4724 section 4.1): the forwarder is
  resynchronised (FibProgrammer full sync) only once every peer sent its
  End-of-RIB, or the selection deferral timer ran out, so the full sync
  does not remove remote routes the peers have not re-sent yet;
* our own End-of-RIB is held back until then too, so a peer does not sweep
  routes we would re-advertise a moment later (a restarting route reflector
  has to re-learn its clients' routes first).

Receiving speaker (a peer with graceful restart goes away without a
NOTIFICATION): its paths are marked stale (:meth:`Rib.mark_stale`) instead
of flushed, and swept at its End-of-RIB or when its restart time (then the
stale-path time) passes; the timer lives here, the RIB stays pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address

from ..bgp.session import Peer, PeerSettings
from ..bgp.wire.capabilities import Capability, GracefulRestart
from ..bgp.wire.constants import Family
from ..bgp.wire.open import Open
from ..bgp.wire.update import end_of_rib
from ..rib.rib import Rib

log = logging.getLogger("vpe.restart")

#: RFC 4724 Selection_Deferral_Timer: longest wait for the peers' End-of-RIB after a restart
SELECTION_DEFERRAL = 60.0
#: how long stale paths survive once the restarted peer is back but has not sent End-of-RIB
STALE_PATH_TIME = 360.0


@dataclass(frozen=True, slots=True)
class GrPeerSettings(PeerSettings):
    """PeerSettings whose Graceful Restart capability carries the R and F bits."""

    restart_state: bool = False
    forwarding_state: bool = True

    def capabilities(self) -> tuple[Capability, ...]:
        # explicit base call: zero-argument super() breaks in slotted dataclasses
        caps = PeerSettings.capabilities(self)
        return tuple(self._flagged(c) if isinstance(c, GracefulRestart) else c for c in caps)

    def _flagged(self, c: GracefulRestart) -> GracefulRestart:
        return dataclasses.replace(
            c,
            restart_state=self.restart_state,
            families=tuple((f, self.forwarding_state) for f, _ in c.families),
        )


def restart_settings(settings: PeerSettings, *, restarting: bool) -> PeerSettings:
    """``settings`` advertising R (after a restart) and F (forwarding state kept)."""
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(PeerSettings)}
    return GrPeerSettings(**fields, restart_state=restarting, forwarding_state=True)


@dataclass(slots=True)
class _PeerGr:
    """What a peer's last OPEN said about graceful restart, and the notification counts then."""

    time: int
    families: frozenset[Family]
    restart_state: bool
    notifications: int


class GracefulRestartManager:
    """Graceful restart state: deferral after our restart, stale timers for peers.

    It reads the RIB it marks stale and is given callbacks for the rest:
    ``peers()`` (the speaker's peers by address), ``send(peer, messages)``,
    and ``complete()``, called once route selection is over (the router
    flushes, the composition root starts the forwarder's full sync).
    """

    def __init__(self, rib: Rib, *, peers: Callable[[], Mapping[str, Peer]],
                 send: Callable[[Peer, list[bytes]], None], complete: Callable[[], None],
                 restarting: bool) -> None:
        self.rib = rib
        self._peers_of = peers
        self._send = send
        self._complete_cb = complete
        self.restarting = restarting
        #: route selection (FIB sync, our End-of-RIB) is deferred until the peers' End-of-RIB
        self.deferring = restarting
        self._held_eor: dict[str, set[Family]] = {}
        self._eor_seen: dict[str, set[Family]] = {}
        self._peers: dict[str, _PeerGr] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._deferral: asyncio.TimerHandle | None = None
        self.deferral_started: float | None = None
        self.deferral_ended: float | None = None

    # -- life cycle -------------------------------------------------------------

    def started(self) -> None:
        """The speaker runs: arm the selection deferral timer (or finish at once)."""
        if not self.deferring:
            return
        self.deferral_started = time.monotonic()
        log.info(
            "restarted with saved state: graceful restart (R bit set), deferring route selection "
            "until End-of-RIB from every peer (at most %.0f s)", SELECTION_DEFERRAL,
        )
        loop = asyncio.get_running_loop()
        self._deferral = loop.call_later(SELECTION_DEFERRAL, self._deferral_expired)
        self._check_complete()

    def stop(self) -> None:
        for h in (self._timer, self._deferral):
            if h is not None:
                h.cancel()
        self._timer = self._deferral = None

    # -- restarting side -----------------------------------------------------------

    def hold_eor(self, peer: Peer, msgs: list[bytes]) -> list[bytes]:
        """While deferring, take the End-of-RIB markers out of a peer's initial table."""
        if not self.deferring or peer.negotiated is None:
            return msgs
        markers = {end_of_rib(f): f for f in peer.negotiated.families}
        held = self._held_eor.setdefault(peer.address, set())
        out = []
        for m in msgs:
            fam = markers.get(m)
            if fam is None:
                out.append(m)
            else:
                held.add(fam)
        return out

    def eor_received(self, peer: Peer, family: Family) -> None:
        self._eor_seen.setdefault(peer.address, set()).add(family)
        if self.deferring:
            self._check_complete()

    def _check_complete(self) -> None:
        waiting = []
        for addr, p in self._peers_of().items():
            n = p.negotiated
            if not p.established or n is None:
                waiting.append(addr)
                continue
            cap = n.peer_graceful_restart
            if cap is None or cap.restart_state:
                continue  # RFC 4724 4.1: not waited for
            if not n.families <= self._eor_seen.get(addr, set()):
                waiting.append(addr)
        if not waiting:
            self._complete("End-of-RIB received from every peer")

    def _deferral_expired(self) -> None:
        self._deferral = None
        if self.deferring:
            self._complete(f"selection deferral timer ({SELECTION_DEFERRAL:.0f} s) expired")

    def _complete(self, why: str) -> None:
        """Route selection is done: program the forwarder, send our End-of-RIB, clear R."""
        self.deferring = False
        self.deferral_ended = time.monotonic()
        if self._deferral is not None:
            self._deferral.cancel()
            self._deferral = None
        self._complete_cb()  # settle the RIB, then the forwarder's full sync of the converged state
        peers = self._peers_of()
        for addr, fams in self._held_eor.items():
            p = peers.get(addr)
            if p is not None and p.established and fams:
                self._send(p, [end_of_rib(f) for f in sorted(fams)])
        self._held_eor.clear()
        for p in peers.values():
            _clear_restart_bit(p)
        took = self.deferral_ended - (self.deferral_started or self.deferral_ended)
        log.info("graceful restart complete after %.1f s: %s; forwarder resynchronised", took, why)

    # -- receiving side -----------------------------------------------------------------

    def peer_up(self, peer: Peer) -> None:
        """Remember the peer's capability; end stale state the new OPEN does not cover."""
        n = peer.negotiated
        assert n is not None
        cap = n.peer_graceful_restart if n.local_graceful_restart is not None else None
        self._eor_seen[peer.address] = set()
        addr = ip_address(peer.address)
        rib = self.rib
        stale = [a.family for a in rib.adj_ribs_in(addr) if a.stale]
        if stale:
            keep = {f for f, fwd in cap.families if fwd} if cap is not None else set()
            drop = [f for f in stale if f not in keep]
            if drop:
                log.info("peer %s: back without forwarding state for %s: flushing its stale routes",
                         peer.address, ", ".join(f.name for f in drop))
                rib.peer_down(addr, drop)
            for f in stale:
                if f in keep:
                    rib.set_stale_deadline(addr, f, time.monotonic() + STALE_PATH_TIME)
            self._arm()
        if cap is None:
            self._peers.pop(peer.address, None)
            return
        self._peers[peer.address] = _PeerGr(
            time=cap.time,
            families=frozenset(f for f, _ in cap.families),
            restart_state=cap.restart_state,
            notifications=_notifications(peer),
        )

    def peer_down(self, peer: Peer, reason: str) -> bool:
        """True when the peer's routes were kept as stale (the caller must not flush them)."""
        gr = self._peers.pop(peer.address, None)
        if gr is None or gr.time == 0:
            return False
        if _notifications(peer) != gr.notifications:
            return False  # ended by a NOTIFICATION: no graceful restart (RFC 4724 without N bit)
        addr = ip_address(peer.address)
        rib = self.rib
        fams = {a.family for a in rib.adj_ribs_in(addr)}
        keep = fams & gr.families
        if fams - keep:
            rib.peer_down(addr, sorted(fams - keep))
        n = rib.mark_stale(addr, time.monotonic() + gr.time, keep)
        log.info(
            "peer %s: session lost (%s); graceful restart: keeping %d route(s) as stale for up to %d s",
            peer.address, reason, n, gr.time,
        )
        self._arm()
        return True

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.rib.next_stale_deadline()
        if deadline is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the caller sweeps itself
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        changes = self.rib.sweep_expired(time.monotonic())
        gone = sum(len(c.keys) for c in changes)
        if gone:
            log.info("graceful restart: swept %d stale destination(s) whose peer did not come back "
                     "in time", gone)
        self._arm()

    def to_json(self) -> dict[str, object]:
        return {
            "restarting": self.restarting,
            "deferring": self.deferring,
            "peers": {
                a: {"restart_time": g.time, "families": sorted(f.name for f in g.families)}
                for a, g in self._peers.items()
            },
        }


def _notifications(peer: Peer) -> int:
    c = peer.counters
    return c.get("notifications_in", 0) + c.get("notifications_out", 0)


def _clear_restart_bit(peer: Peer) -> None:
    """Later OPENs of this peer no longer claim a restart (the restart is over)."""
    s = peer.settings
    if not isinstance(s, GrPeerSettings) or not s.restart_state:
        return
    s2 = dataclasses.replace(s, restart_state=False)
    peer.settings = s2
    fsm = peer.fsm
    cfg = dataclasses.replace(fsm.config, capabilities=s2.capabilities())
    fsm.config = cfg
    fsm.local_open = Open.create(cfg.local_as, cfg.hold_time, cfg.router_id, cfg.capabilities)
