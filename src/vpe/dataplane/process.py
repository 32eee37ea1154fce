"""The forwarder process, for any driver: ``python -m vpe.dataplane.process``.

    python -m vpe.dataplane.process [--driver userspace] --underlay-if IF \\
        --underlay-ip IP [--underlay-ip IP6] --socket PATH \\
        [--listen-tcp HOST:PORT --key-file FILE] [--underlay-mtu N]

Builds the driver named by ``--driver`` from :mod:`vpe.dataplane.registry`,
serves the FIB channel for it (:class:`~vpe.dataplane.server.ChannelServer`)
and runs one selector loop for both until SIGTERM/SIGINT. The forwarder keeps
its tables when the control plane disconnects; the next one sends a full sync.
``--key-file`` names the channel key (at least 16 octets, mode 0600) every
control plane must prove it holds; ``--listen-tcp`` requires it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import selectors
import signal
import sys
from collections.abc import Callable

from . import registry
from .channel import load_key
from .liveness import Liveness
from .refusals import RefusalLog
from .server import ChannelServer

log = logging.getLogger("vpe.dataplane")


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _Loop:
    """The process's one selector loop; a signal ends it after the current turn."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        tick: Callable[[], None] = lambda: None,
        timeout: Callable[[], float] = lambda: 0.2,
    ) -> None:
        self.sel = selector
        self.stopping = False
        self._tick = tick
        self._timeout = timeout

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        while not self.stopping:
            self.turn(min(0.2, self._timeout()))
            self._tick()

    def turn(self, timeout: float = 0.2) -> None:
        """One round of ready handlers. A handler may unregister (and close) another
        one's socket that is ready in the same round (a batch removing a port whose
        frames are waiting): that one is skipped, its reader is gone."""
        sel = self.sel
        for key, _mask in sel.select(timeout=timeout):
            try:
                if sel.get_key(key.fileobj) is not key:
                    continue
            except (KeyError, ValueError):
                continue
            key.data(key.fileobj)


def main(argv: list[str] | None = None) -> int:
    forwarding = [n for n in registry.names() if registry.get(n).has_forwarder]
    ap = argparse.ArgumentParser(
        prog="python -m vpe.dataplane.process", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--driver", default="userspace", choices=forwarding, help="dataplane driver (registry)"
    )
    ap.add_argument(
        "--underlay-if", required=True, help="underlay interface (outer packets use it)"
    )
    ap.add_argument(
        "--underlay-ip",
        required=True,
        action="append",
        help="this host's underlay address (once per family)",
    )
    ap.add_argument("--socket", help="Unix socket path of the FIB channel")
    ap.add_argument("--listen-tcp", type=_hostport, help="also serve the FIB channel on HOST:PORT")
    ap.add_argument(
        "--key-file",
        help="channel key file: every control plane must prove it holds the key "
        "(required with --listen-tcp)",
    )
    ap.add_argument("--underlay-mtu", type=int, help="default: the MTU of --underlay-if")
    ap.add_argument(
        "--liveness",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="probe the remote forwarders every SECONDS and route around a silent one "
        "(docs/fast-reroute.md; 0: off)",
    )
    ap.add_argument("--liveness-multiplier", type=int, default=3, help="missed probes that mean down")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    if not args.socket and not args.listen_tcp:
        ap.error("one of --socket / --listen-tcp is required")
    if args.listen_tcp and not args.key_file:
        ap.error("--listen-tcp requires --key-file: the FIB channel over TCP must be authenticated")
    key = None
    if args.key_file:
        try:
            key = load_key(args.key_file)
        except ValueError as exc:
            ap.error(str(exc))
    try:
        ips = tuple(ipaddress.ip_address(a) for a in args.underlay_ip)
    except ValueError as exc:
        ap.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    options = registry.DriverOptions(args.underlay_if, ips, args.underlay_mtu)
    sel = selectors.DefaultSelector()
    try:
        driver = registry.get(args.driver).load()(options, sel)
    except (OSError, ValueError) as exc:
        print(f"vpe forwarder: cannot start the {args.driver} driver: {exc}", file=sys.stderr)
        return 2
    try:
        server = ChannelServer(
            driver,
            sel,
            socket_path=args.socket,
            listen_tcp=args.listen_tcp,
            driver_name=args.driver,
            key=key,
        )
    except OSError as exc:
        driver.close()
        print(f"vpe forwarder: cannot serve the FIB channel: {exc}", file=sys.stderr)
        return 2
    live: Liveness | None = None
    if args.liveness:
        try:
            live = Liveness(driver, sel, ips, args.liveness, args.liveness_multiplier)
        except (OSError, ValueError) as exc:
            server.close()
            driver.close()
            print(f"vpe forwarder: cannot start liveness probing: {exc}", file=sys.stderr)
            return 2

    refusals = RefusalLog(driver.counters)

    def tick() -> None:
        server.tick()
        refusals.tick()
        if live is not None:
            live.tick()

    loop = _Loop(sel, tick, live.timeout if live is not None else (lambda: 0.2))
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    log.info(
        "forwarding (%s driver): underlay %s %s",
        args.driver,
        args.underlay_if,
        ",".join(args.underlay_ip),
    )
    try:
        loop.run()
    finally:
        if live is not None:
            live.close()
        server.close()
        driver.close()
        sel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
