"""``vpe vpn neighbor list|show|add|del VPN ...``: BGP neighbors of a VPN instance's VRF
(PE-CE BGP, Inter-AS option A) through ``/v1/vpns/{vpn}/neighbors``.

``add`` creates or replaces (the session restarts with the new settings). Its
options are the common fields of ``[[vrfs.neighbors]]``; ``--set KEY=VALUE``
gives any other field (VALUE read as JSON when it parses, else as text), so a
field the agent learns later needs no new option. ``--json`` prints the
agent's JSON unchanged.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import typer

from .output import cell, console, fail, human_duration, print_json, table

#: ``call(socket, method, path, body=None, **query)`` -> the decoded JSON
Call = Callable[..., Any]

EXIT_USAGE = 2


def _address(text: str) -> str:
    try:
        return quote(str(ipaddress.ip_address(text)), safe="")
    except ValueError:
        fail(f"address: {text!r} is not an IP address", EXIT_USAGE)


def _sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            fail(f"--set: {p!r} is not KEY=VALUE", EXIT_USAGE)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _prefixes(d: dict[str, Any]) -> str:
    return ", ".join(f"{fam.split('-')[0]} {c.get('received', 0)}/{c.get('sent', 0)}"
                     for fam, c in sorted((d.get("prefixes") or {}).items()))


def _print_one(d: dict[str, Any]) -> None:
    conf = d.get("config") or {}
    console.print(f"neighbor {d['address']}  VPN {d.get('vpn')}  AS {d.get('remote_as')}  ({d.get('source')})",
                  highlight=False, markup=False)
    up = d.get("uptime")
    console.print(f"  state {d.get('state')}" + (f", up {human_duration(up)}" if up is not None else "")
                  + (f", last error: {d['last_error']}" if d.get("last_error") else ""), highlight=False,
                  markup=False)
    if d.get("description"):
        console.print(f"  description: {d['description']}", highlight=False, markup=False)
    console.print(f"  policies: import {conf.get('import_policy') or '-'}, export {conf.get('export_policy') or '-'}",
                  highlight=False, markup=False)
    table(["Family", "Received", "Accepted", "Sent"],
          [[fam, c.get("received"), c.get("accepted"), c.get("sent")]
           for fam, c in sorted((d.get("prefixes") or {}).items())])


def register(vpn: typer.Typer, call: Call, seg: Callable[[str], str], socket_opt: Any, json_opt: Any) -> None:
    """Add ``vpe vpn neighbor ...`` to the ``vpn`` command group."""
    nbr = typer.Typer(help="BGP neighbors of a VPN instance (PE-CE BGP).", no_args_is_help=True)
    vpn.add_typer(nbr, name="neighbor")

    def base(name: str) -> str:
        return f"/v1/vpns/{seg(name)}/neighbors"

    @nbr.command("list")
    def nbr_list(vpn_name: str = typer.Argument(..., metavar="VPN"), socket: str = socket_opt,
                 as_json: bool = json_opt) -> None:
        """The VPN instance's neighbors: session state, uptime, prefixes received/sent."""
        data = call(socket, "GET", base(vpn_name))
        if as_json:
            print_json(data)
            return
        table(["Neighbor", "AS", "State", "Up/Down", "Prefixes rcvd/sent", "Source"],
              [[d["address"], d.get("remote_as"), d.get("state"),
                human_duration(d["uptime"] if d.get("uptime") is not None else d.get("downtime")),
                _prefixes(d), cell(d.get("source"))] for d in data])

    @nbr.command("show")
    def nbr_show(vpn_name: str = typer.Argument(..., metavar="VPN"), address: str = typer.Argument(...),
                 socket: str = socket_opt, as_json: bool = json_opt) -> None:
        d = call(socket, "GET", f"{base(vpn_name)}/{_address(address)}")
        print_json(d) if as_json else _print_one(d)

    @nbr.command("add")
    def nbr_add(
        vpn_name: str = typer.Argument(..., metavar="VPN"),
        address: str = typer.Argument(...),
        remote_as: int = typer.Option(None, "--remote-as"),
        port: int = typer.Option(None, "--port"),
        local_address: str = typer.Option(None, "--local-address"),
        passive: bool = typer.Option(None, "--passive/--active"),
        family: list[str] = typer.Option(None, "--family", help="ipv4-unicast, ipv6-unicast (repeat)"),
        import_policy: str = typer.Option(None, "--import-policy"),
        export_policy: str = typer.Option(None, "--export-policy"),
        next_hop: str = typer.Option(None, "--next-hop", help="next hop sent with IPv4 routes"),
        next_hop6: str = typer.Option(None, "--next-hop6", help="next hop sent with IPv6 routes"),
        description: str = typer.Option(None, "--description"),
        sets: list[str] = typer.Option(None, "--set", help="any other field: KEY=VALUE (repeat)"),
        socket: str = socket_opt,
        as_json: bool = json_opt,
    ) -> None:
        """Create or replace a neighbor (replacing restarts its session)."""
        body = {k: v for k, v in {
            "remote_as": remote_as, "port": port, "local_address": local_address, "passive": passive,
            "families": family or None, "import_policy": import_policy, "export_policy": export_policy,
            "next_hop": next_hop, "next_hop6": next_hop6, "description": description}.items() if v is not None}
        body.update(_sets(sets or []))
        d = call(socket, "PUT", f"{base(vpn_name)}/{_address(address)}", body)
        print_json(d) if as_json else _print_one(d)

    @nbr.command("del")
    def nbr_del(vpn_name: str = typer.Argument(..., metavar="VPN"), address: str = typer.Argument(...),
                socket: str = socket_opt) -> None:
        """Remove a neighbor: Cease / Peer De-configured, its routes leave the VRF."""
        call(socket, "DELETE", f"{base(vpn_name)}/{_address(address)}")
        console.print(f"deleted neighbor {address} of VPN instance {vpn_name}", highlight=False, markup=False)
