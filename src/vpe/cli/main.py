"""`vpe`: run the agent, and look at a running one.

Exit codes scripts can rely on (also in ``vpe --help``): 0 success; 1 the
agent refused the request (an HTTP 4xx other than 422: unknown object,
conflict) or failed it (5xx); 2 bad usage, an invalid value (HTTP 422, the
field named) or a bad configuration; 3 the agent cannot be reached (the
socket is named).

Names given on the command line are checked with the agent's own name rule
(:mod:`vpe.vpn.names`) before anything is sent (exit 2), and every path
segment is percent-encoded: a name never changes which URL is called. No
command ends in a traceback: an unexpected failure is one ``error:`` line
and exit 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any
from urllib.parse import quote

import typer
from rich.table import Table

from .. import __version__
from ..agent.config import ConfigError, load_config
from ..lab.cli import lab_app
from ..vpn.errors import InvalidValue
from ..vpn.names import check_name
from . import bgp as bgp_cli
from . import vrf_neighbors as vrf_neighbors_cli
from .client import Target, TargetError, Unreachable, make_target
from .output import console as plain_console
from .output import fail

#: shown at the end of ``vpe --help`` (blank lines: one paragraph per code)
EPILOG = """Exit codes:

0 success.

1 refused by the agent (HTTP 4xx other than 422: unknown VPN instance or port, already exists, conflict) or failed by it (5xx, e.g. forwarder unreachable).

2 usage error, invalid value (HTTP 422; the message names the field) or bad configuration file.

3 the agent cannot be reached (the message names the socket or URL and why: refused, TLS verification, timeout).

A remote agent: `vpe --api https://HOST:PORT --token-file FILE [--ca CA.pem] COMMAND` (or env VPE_API, VPE_TOKEN, VPE_CA); a refused token is exit 1."""

app = typer.Typer(help="vpe: a virtual Provider Edge for BGP/MPLS IP VPNs.", no_args_is_help=True,
                  epilog=EPILOG, pretty_exceptions_enable=False)
show = typer.Typer(help="Look at the running agent.", no_args_is_help=True)
show_bgp = typer.Typer(help="BGP sessions and routes.", no_args_is_help=True)
app.add_typer(show, name="show")
app.add_typer(lab_app, name="lab")
show.add_typer(show_bgp, name="bgp")

DEFAULT_SOCKET = os.environ.get("VPE_SOCKET", "/run/vpe/vpe.sock")
console = plain_console

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


#: ``extra=`` keys a log call may set that become fields of a JSON log line
_LOG_FIELDS = ("peer", "vrf", "prefix", "port", "family")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; ``peer``/``vrf``/``prefix``/``port`` fields when the call gave them."""

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in _LOG_FIELDS:
            v = record.__dict__.get(k)
            if v is not None:
                d[k] = v if isinstance(v, str | int | float | bool | list) else str(v)
        if "peer" not in d and isinstance(record.args, tuple) and record.args and \
                str(record.msg).startswith("peer %s"):
            d["peer"] = str(record.args[0])  # the sessions' "peer %s: ..." lines
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, default=str)


#: syslog priority of each level: the ``<N>`` prefix journald reads from a service's stderr
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class _JournalFormatter(logging.Formatter):
    """For stderr connected to the journal: no timestamp (journald stamps each line) and
    the level as a ``<N>`` syslog prefix, so ``journalctl -p warning`` filters by it."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # every line of a multi-line message (a traceback) is its own journal entry: prefix each
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def under_journal(stream: Any = None) -> bool:
    """Is ``stream`` (stderr) the journal's stream (systemd sets ``JOURNAL_STREAM=dev:inode``)?"""
    want = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = want.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def _setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    elif under_journal():
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


#: the configuration ``vpe agent`` reads without ``--config`` (env VPE_CONFIG)
DEFAULT_CONFIG = "/etc/vpe/agent.toml"


@app.command()
def agent(
    config: str = typer.Option(DEFAULT_CONFIG, "--config", "-c", envvar="VPE_CONFIG", show_envvar=False,
                               help="TOML configuration file (env VPE_CONFIG)"),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    log_json: bool = typer.Option(False, "--log-json", help="one JSON object per log line"),
    withdraw_on_exit: bool = typer.Option(
        False, "--withdraw-on-exit",
        help="on SIGTERM/SIGINT send a Cease to every peer (default: leave as for a graceful restart)"),
) -> None:
    """Run the control plane (BGP speaker, API) in the foreground.

    Without ``state_dir`` in the configuration, the state is kept in
    /var/lib/vpe/<router id>-<hash of the configuration's path> (docs/operations.md)."""
    from ..agent.statedir import resolve_state_dir

    try:
        loaded = load_config(config)
    except ConfigError as e:
        fail(e, EXIT_USAGE)
    _setup_logging(log_level, log_json)
    try:
        cfg = resolve_state_dir(loaded, config)
    except ConfigError as e:
        fail(e, EXIT_USAGE)
    from ..daemon import main as run

    run(cfg, withdraw_on_exit=withdraw_on_exit, source=config)


def _seg(value: str, what: str = "name") -> str:
    """One URL path segment: a name checked by the agent's rule, percent-encoded."""
    try:
        check_name(value, what)
    except InvalidValue as e:
        fail(e, EXIT_USAGE)
    return quote(value, safe="")


#: the agent over TCP when ``--api``/``VPE_API`` is given (set by the callback), else None
_remote: list[Target] = []


def target(socket: str) -> Target:
    """Where this invocation's requests go: the ``--api`` target, or the Unix socket ``socket``."""
    return _remote[0] if _remote else Target(socket=socket)


def _call(socket: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
    t = target(socket)
    try:
        r = t.request(method, path, json=body, params={k: v for k, v in params.items() if v is not None})
    except Unreachable as e:
        fail(e, EXIT_UNREACHABLE)
    except TargetError as e:
        fail(e, EXIT_USAGE)
    socket = t.where
    if r.status_code == 401 and t.url is not None:
        fail(t.unauthorized(), EXIT_REFUSED)
    if r.status_code >= 400:  # 422 -> 2 (usage/validation); other 4xx and 5xx -> 1
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # pydantic validation errors
            detail = "; ".join(
                f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        fail(detail, EXIT_REFUSED if r.status_code != 422 else EXIT_USAGE)
    try:
        return r.json() if r.content else None
    except ValueError:
        fail(f"the agent at {socket} answered {method} {path} with something that is not JSON", EXIT_REFUSED)


def _get(socket: str, path: str, **params: Any) -> Any:
    return _call(socket, "GET", path, **params)


SocketOpt = typer.Option(DEFAULT_SOCKET, "--socket", help="the agent's API socket (env VPE_SOCKET)")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")

bgp_cli.register(show_bgp, app, _call, SocketOpt, JsonOpt)


def _version(value: bool) -> None:
    if value:
        print(f"vpe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
    api: str = typer.Option(None, "--api", envvar="VPE_API", show_envvar=False,
                            help="reach the agent over TCP: http(s)://HOST:PORT, its api.tcp (env VPE_API); "
                                 "default: the Unix socket"),
    token_file: str = typer.Option(None, "--token-file", help="file holding the agent's api.token "
                                                             "(or the token itself in env VPE_TOKEN)"),
    ca: str = typer.Option(None, "--ca", envvar="VPE_CA", show_envvar=False,
                           help="CA certificate(s) that verify an https:// agent (env VPE_CA; default: "
                                "the system's)"),
) -> None:
    """vpe: a virtual Provider Edge for BGP/MPLS IP VPNs."""
    _remote.clear()
    try:
        t = make_target(DEFAULT_SOCKET, api, token_file, os.environ.get("VPE_TOKEN"), ca)
    except TargetError as e:
        fail(e, EXIT_USAGE)
    if t.url is not None:
        _remote.append(t)


vpn = typer.Typer(help="VPN instances (VRFs) of this vPE.", no_args_is_help=True)
app.add_typer(vpn, name="vpn")


def _print_vrf(d: dict[str, Any]) -> None:
    console.print(f"[bold]VRF {d['name']}[/bold]  rd {d.get('rd')}  label mode {d.get('label_mode')}",
                  highlight=False)
    console.print(f"  import RTs: {', '.join(d.get('import_rts', [])) or '-'}", highlight=False)
    console.print(f"  export RTs: {', '.join(d.get('export_rts', [])) or '-'}", highlight=False)
    console.print(f"  ports: {', '.join(d.get('ports', [])) or '-'}", highlight=False)
    if d.get("description"):
        console.print(f"  description: {d['description']}", highlight=False, markup=False)
    t = Table("Prefix", "Next hop", "Labels", "Source")
    for prefix, routes in sorted(d.get("table", {}).items()):
        for r in routes:
            t.add_row(prefix, str(r.get("next_hop") or "local"),
                      ",".join(str(x) for x in r.get("labels", [])) or "-", str(r.get("source")))
    console.print(t)


@vpn.command("create")
def vpn_create(
    name: str,
    rt: list[str] = typer.Option([], "--rt", help="route target imported and exported (repeat)"),
    import_rt: list[str] = typer.Option([], "--import-rt"),
    export_rt: list[str] = typer.Option([], "--export-rt"),
    rd: str = typer.Option("auto", "--rd"),
    label_mode: str = typer.Option("per-vrf", "--label-mode"),
    description: str = typer.Option("", "--description"),
    socket: str = SocketOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a VPN instance."""
    d = _call(socket, "POST", "/v1/vpns", {"name": name, "rd": rd, "route_targets": rt,
                                           "import_rts": import_rt, "export_rts": export_rt,
                                           "label_mode": label_mode, "description": description})
    print(json.dumps(d, indent=2)) if as_json else _print_vrf(d)


@vpn.command("update")
def vpn_update(
    name: str,
    rd: str = typer.Option(None, "--rd"),
    import_rt: list[str] = typer.Option(None, "--import-rt", help="the new import RTs (repeat; replaces them)"),
    export_rt: list[str] = typer.Option(None, "--export-rt", help="the new export RTs (repeat; replaces them)"),
    label_mode: str = typer.Option(None, "--label-mode"),
    multipath: int = typer.Option(None, "--multipath"),
    ecmp: str = typer.Option(None, "--ecmp", help="per-flow, per-packet or per-prefix"),
    description: str = typer.Option(None, "--description"),
    socket: str = SocketOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Change a VPN instance: only the options given change."""
    body = {k: v for k, v in {"rd": rd, "import_rts": import_rt or None, "export_rts": export_rt or None,
                              "label_mode": label_mode, "multipath": multipath, "ecmp": ecmp,
                              "description": description}.items() if v is not None}
    if not body:
        fail("nothing to change: give at least one of --rd, --import-rt, --export-rt, --label-mode, "
             "--multipath, --description", EXIT_USAGE)
    d = _call(socket, "PATCH", f"/v1/vpns/{_seg(name)}", body)
    print(json.dumps(d, indent=2)) if as_json else _print_vrf(d)


@vpn.command("list")
def vpn_list(socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    data = _get(socket, "/v1/vpns")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    t = Table("Name", "RD", "Import RTs", "Export RTs", "Routes", "Ports")
    for d in data:
        t.add_row(d["name"], str(d.get("rd")), ", ".join(d.get("import_rts", [])),
                  ", ".join(d.get("export_rts", [])), str(len(d.get("table", {}))),
                  ", ".join(d.get("ports", [])))
    console.print(t)


@vpn.command("show")
def vpn_show(name: str, socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    d = _get(socket, f"/v1/vpns/{_seg(name)}")
    print(json.dumps(d, indent=2)) if as_json else _print_vrf(d)


vrf_neighbors_cli.register(vpn, _call, _seg, SocketOpt, JsonOpt)


@vpn.command("delete")
def vpn_delete(name: str, force: bool = typer.Option(False, "--force"), socket: str = SocketOpt) -> None:
    _call(socket, "DELETE", f"/v1/vpns/{_seg(name)}", force=str(force).lower())
    console.print(f"deleted VPN instance {name}")


@show.command("vrf")
def show_vrf(name: str = typer.Argument(None), socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    """A VRF's RTs and table (or all VRFs)."""
    data = _get(socket, f"/v1/vpns/{_seg(name)}") if name else _get(socket, "/v1/vpns")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for d in data if isinstance(data, list) else [data]:
        _print_vrf(d)


@show.command("fib")
def show_fib(socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    """The forwarder state as programmed by this agent."""
    d = _get(socket, "/v1/fib")
    if as_json or d.get("driver") == "none":
        print(json.dumps(d, indent=2))
        return
    console.print(f"forwarder {d['socket']} (driver {d.get('driver', '?')}): "
                  f"connected={d['connected']} batches={d['batches_sent']}")
    t = Table("VRF", "Prefix", "Next hops")
    for r in d["routes"]:
        hops = "; ".join(
            f"port {h['port']}" if h.get("port") else f"{h['endpoint']} label {h['label']} {h['encap']}"
            for h in r["next_hops"]
        )
        t.add_row(r["vrf"], r["prefix"], hops)
    console.print(t)


@show.command("counters")
def show_counters(socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    """The forwarder's packet counters: per port, per VRF, drops by reason, underlay."""
    d = _get(socket, "/v1/counters")
    if as_json:
        print(json.dumps(d, indent=2))
        return
    if d.get("driver") == "none":
        console.print("no forwarder: the agent runs with dataplane driver none")
        return
    console.print(f"forwarder {d.get('socket')} (driver {d.get('driver', '?')})", highlight=False)
    pt = Table("Port", "RX packets", "RX bytes", "TX packets", "TX bytes", "Drops", title="Ports")
    for name, c in sorted((d.get("ports") or {}).items()):
        pt.add_row(name, *(str(c.get(k, 0)) for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                                                      "drops")))
    console.print(pt)
    vrfs = d.get("vrfs") or {}
    actions = sorted({a for c in vrfs.values() for a in c})
    vt = Table("VRF", *actions, title="VRFs")
    for name, c in sorted(vrfs.items()):
        vt.add_row(name, *(str(c.get(a, 0)) for a in actions))
    console.print(vt)
    dt = Table("Reason", "Packets", title="Drops")
    for reason, n in sorted((d.get("drops") or {}).items()):
        dt.add_row(str(reason), str(n))
    console.print(dt)
    kernel = d.get("ebpf") or {}
    if kernel:
        kt = Table("Counter", "Value", title="Kernel fast path (ebpf)")
        for k, n in sorted((kernel.get("fast_path") or {}).items()):
            kt.add_row(str(k), str(n))
        for k, n in sorted((kernel.get("punts") or {}).items()):
            kt.add_row(f"punted: {k}", str(n))
        console.print(kt)
    for section in ("underlay", "io_errors"):
        values = d.get(section) or {}
        if values:
            ut = Table("Counter", "Value", title=section.replace("_", " ").capitalize())
            for k, n in sorted(values.items()):
                ut.add_row(str(k), str(n))
            console.print(ut)


@app.command("attach")
def attach(
    name: str,
    vpn_name: str = typer.Option(..., "--vpn"),
    ifname: str = typer.Option(..., "--ifname"),
    mac: str = typer.Option(..., "--mac"),
    ip: list[str] = typer.Option(..., "--ip", help="address/prefix-length (repeat)"),
    gateway: list[str] = typer.Option([], "--gateway"),
    allowed: list[str] = typer.Option([], "--allowed-pair"),
    advertise: str = typer.Option("host", "--advertise", help="host or subnet"),
    direction: str = typer.Option("both", "--direction", help="both, to-port or from-port"),
    local_pref: int | None = typer.Option(None, "--local-pref", help="LOCAL_PREF of the port's routes"),
    description: str = typer.Option("", "--description"),
    import_rt: list[str] = typer.Option(
        [], "--import-rt", help="create the VPN instance with these RTs if missing (repeat)"),
    export_rt: list[str] = typer.Option([], "--export-rt", help="as --import-rt, exported"),
    socket: str = SocketOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Attach an endpoint (VM interface) to a VPN instance."""
    body: dict[str, Any] = {
        "name": name, "vpn": vpn_name, "ifname": ifname, "mac": mac, "ips": ip, "gateways": gateway,
        "allowed_pairs": allowed, "advertise": advertise, "direction": direction,
        "local_pref": local_pref, "description": description,
    }
    if import_rt:
        body["import_rts"] = import_rt
    if export_rt:
        body["export_rts"] = export_rt
    d = _call(socket, "POST", "/v1/ports", body)
    if as_json:
        print(json.dumps(d, indent=2))
        return
    created = " (VPN instance created)" if d.get("vpn_created") else ""
    console.print(f"attached {name} to {vpn_name}{created}", highlight=False)


@app.command("detach")
def detach(name: str, socket: str = SocketOpt) -> None:
    """Detach an endpoint."""
    _call(socket, "DELETE", f"/v1/ports/{_seg(name)}")
    console.print(f"detached {name}")


@app.command("lg")
def lg(
    port: int = typer.Option(8099, "--port", "-p", help="local port (0: any free one)"),
    lab: str = typer.Option(None, "--lab", help="also draw this lab (a `vpe lab up` prefix) at /lg/lab"),
    lab_state_dir: str = typer.Option(None, "--lab-state-dir", help="the lab's state directory "
                                                                     "(default: the prefix's)"),
    socket: str = SocketOpt,
) -> None:
    """Serve the agent's web looking glass to a local browser at http://127.0.0.1:PORT/lg/.

    Passes GET /lg/... to the agent (its Unix socket, or --api with the token) and nothing else."""
    from pathlib import Path

    from . import lg as lg_proxy

    t = target(socket)
    if not 0 <= port < 65536:
        fail(f"--port: {port} is not a TCP port", EXIT_USAGE)
    lab_page = None
    if lab or lab_state_dir:
        from ..lab.layout import default_state_dir
        from ..lab.topology import check_prefix

        try:
            sd = Path(lab_state_dir) if lab_state_dir else default_state_dir(check_prefix(lab))
        except ValueError as e:
            fail(f"--lab: {e}", EXIT_USAGE)
        if not (sd / "lab.json").is_file():
            fail(f"--lab: no lab state in {sd} (is the lab up? `vpe lab status`)", EXIT_USAGE)
        if not _remote and socket == DEFAULT_SOCKET and lab:
            # the lab's first host's agent, unless a socket was named
            hosts = json.loads((sd / "lab.json").read_text()).get("topology", {}).get("hosts", [])
            if hosts:
                t = Target(socket=str(sd / str(hosts[0]["name"]) / "vpe.sock"))
        lab_page = lambda: lg_proxy.lab_picture(sd)  # noqa: E731
    try:
        server = lg_proxy.make_server(t, "127.0.0.1", port, lab_page)
    except TargetError as e:
        fail(e, EXIT_USAGE)
    except OSError as e:
        fail(f"--port: cannot listen on 127.0.0.1:{port}: {e.strerror or e}", EXIT_USAGE)
    url = f"http://127.0.0.1:{server.server_port}/lg/"
    print(f"looking glass of the agent at {t.where}: {url}" + (f" (the lab: {url}lab)" if lab_page else "")
          + "; Ctrl-C stops", flush=True)
    import signal as _signal

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    _signal.signal(_signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        lg_proxy.close_server(server)


def main() -> None:
    """The ``vpe`` command: :data:`app`, with any unexpected failure as one line and exit 1."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:  # never a traceback to the user
        print(f"error: {type(e).__name__}: {e} (please report this as a bug of vpe)", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None


if __name__ == "__main__":
    main()
