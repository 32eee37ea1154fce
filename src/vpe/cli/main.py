"""`vpe`: run the agent, and look at a running one.

Exit codes scripts can rely on: 0 success, 1 the agent refused the request,
2 bad usage or configuration, 3 the agent cannot be reached.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from ..agent.config import ConfigError, load_config
from ..lab.cli import lab_app

app = typer.Typer(help="vpe: a virtual Provider Edge for BGP/MPLS IP VPNs.", no_args_is_help=True)
show = typer.Typer(help="Look at the running agent.", no_args_is_help=True)
show_bgp = typer.Typer(help="BGP sessions and routes.", no_args_is_help=True)
app.add_typer(show, name="show")
app.add_typer(lab_app, name="lab")
show.add_typer(show_bgp, name="bgp")

DEFAULT_SOCKET = os.environ.get("VPE_SOCKET", "/run/vpe/vpe.sock")
console = Console()
err = Console(stderr=True)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def _setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


@app.command()
def agent(
    config: str = typer.Option(..., "--config", "-c", help="TOML configuration file"),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    log_json: bool = typer.Option(False, "--log-json", help="one JSON object per log line"),
) -> None:
    """Run the control plane (BGP speaker, API) in the foreground."""
    try:
        cfg = load_config(config)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    _setup_logging(log_level, log_json)
    from ..agent.daemon import main as run

    run(cfg)


def _get(socket: str, path: str, **params: Any) -> Any:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket), timeout=10.0) as c:
            r = c.get(f"http://vpe{path}", params={k: v for k, v in params.items() if v is not None})
    except (httpx.ConnectError, FileNotFoundError, httpx.TransportError) as e:
        err.print(f"error: cannot reach the vpe agent at {socket}: {e} (is `vpe agent` running?)")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        err.print(f"error: {detail}")
        raise typer.Exit(EXIT_REFUSED if r.status_code != 422 else EXIT_USAGE)
    return r.json()


SocketOpt = typer.Option(DEFAULT_SOCKET, "--socket", help="the agent's API socket (env VPE_SOCKET)")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


@show_bgp.command("summary")
def bgp_summary(socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    """One line per neighbor: state, uptime, prefixes received."""
    data = _get(socket, "/v1/bgp/neighbors")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    t = Table("Neighbor", "AS", "State", "Up (s)", "Families", "Received", "Last error")
    for n in data:
        rec = ", ".join(f"{k}={v}" for k, v in sorted(n.get("received", {}).items())) or "-"
        t.add_row(
            n["address"],
            str(n["remote_as"] or "any"),
            n["state"],
            "-" if n["uptime"] is None else f"{n['uptime']:.0f}",
            ", ".join(n["families"]) or "-",
            rec,
            n["last_error"] or "",
        )
    console.print(t)


@show_bgp.command("neighbors")
def bgp_neighbors(address: str = typer.Argument(None), socket: str = SocketOpt, as_json: bool = JsonOpt) -> None:
    """Everything known about one neighbor (or all)."""
    data = _get(socket, f"/v1/bgp/neighbors/{address}") if address else _get(socket, "/v1/bgp/neighbors")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for n in data if isinstance(data, list) else [data]:
        console.print(f"[bold]BGP neighbor {n['address']}[/bold] port {n['port']}, remote AS {n['remote_as']}")
        for key in ("state", "uptime", "peer_router_id", "hold_time", "families", "addpath_receive",
                    "addpath_send", "received", "counters", "last_error"):
            console.print(f"  {key.replace('_', ' ')}: {n.get(key)}", highlight=False)


@show_bgp.command("routes")
def bgp_routes(
    family: str = typer.Option("vpnv4", "--family", "-f"),
    peer: str = typer.Option(None, "--peer"),
    limit: int = typer.Option(1000, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    socket: str = SocketOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Routes of one family: received from neighbors and originated here."""
    data = _get(socket, "/v1/bgp/routes", family=family, peer=peer, limit=limit, offset=offset)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    t = Table("Route", "Labels", "Next hop", "From", "Attributes", title=f"{family}: {data['total']} routes")
    for r in data["routes"]:
        attrs = r.get("attributes", {})
        ext = attrs.get("extended-communities")
        t.add_row(
            (f"{r['rd']}:" if r.get("rd") else "") + str(r.get("prefix") or r.get("nlri") or "?"),
            ",".join(str(x) for x in r.get("labels", [])) or "-",
            str(r.get("next_hop")),
            r.get("peer") or "local",
            " ".join(str(x) for x in ext) if isinstance(ext, list) else "",
        )
    console.print(t)


if __name__ == "__main__":
    app()
