"""``vpe show bgp ...`` (the looking glass) and ``vpe bgp ...`` (session actions).

Every command takes ``--json`` and then prints the agent's JSON unchanged
(snake_case keys, the schema in docs/cli.md). Without it, tables go
through :mod:`vpe.cli.output`: whole values, plain columns when piped.
Commands reach the agent through the ``call`` function the main module
registers them with (one HTTP client, one error policy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import typer

from .families import complete_family, full_name
from .output import cell, console, fail, human_duration, print_json, table

#: ``call(socket, method, path, body=None, **query)`` -> the decoded JSON
Call = Callable[..., Any]

EXIT_USAGE = 2


def _family_opt(default: str = "vpnv4") -> Any:
    return typer.Option(default, "--family", "-f", autocompletion=complete_family,
                        help="ipv4, ipv6, vpnv4, vpnv6, rtc, ipv4-lu, ipv6-lu, mvpn, mvpn6 (or a full name)")


def _family(name: str) -> str:
    try:
        return full_name(name)
    except ValueError as e:
        fail(f"--family: {e}", EXIT_USAGE)


def _address(text: str) -> str:
    """A neighbor address, checked here so that a typo is a usage error naming it."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        fail(f"neighbor: {text!r} is not an IP address", EXIT_USAGE)


def _rts(attrs: dict[str, Any]) -> str:
    ext = attrs.get("extended_communities") or []
    return ",".join(str(x) for x in ext) if isinstance(ext, list) else cell(ext)


def _as_path(attrs: dict[str, Any]) -> str:
    segs = attrs.get("as_path")
    if not segs:
        return ""
    out = []
    for s in segs:
        asns = " ".join(str(a) for a in s.get("asns", []))
        out.append(f"{{{asns}}}" if s.get("type") == "as-set" else asns)
    return " ".join(out)


def _route_rows(routes: list[dict[str, Any]], with_peer: bool = True) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in routes:
        a = r.get("attributes") or {}
        row: list[object] = ["*>" if r.get("best") else "*", r["route"], r.get("next_hop") or "-",
                             r.get("labels") or "-"]
        if with_peer:
            row.append(r.get("peer") or "-")
        row += [a.get("local_pref", "-"), a.get("med", "-"), _as_path(a) or "-", _rts(a) or "-"]
        rows.append(row)
    return rows


def _route_headers(with_peer: bool = True) -> list[str]:
    h = ["", "Route", "Next hop", "Labels"]
    if with_peer:
        h.append("From")
    return [*h, "LocPrf", "MED", "AS path", "Ext communities"]


def _prefix_cell(prefixes: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{fam} {c['received']}/{cell(c['accepted'])}/{c['sent']}" for fam, c in prefixes.items())


def register(show_bgp: typer.Typer, app: typer.Typer, call: Call, socket_opt: Any, json_opt: Any) -> None:
    """Add the looking-glass commands to ``show_bgp`` and the ``bgp`` action group to ``app``."""

    def get(socket: str, path: str, **params: Any) -> Any:
        return call(socket, "GET", path, **params)

    @show_bgp.command("summary")
    def summary(socket: str = socket_opt, as_json: bool = json_opt) -> None:
        """Local AS and router id, then one line per neighbor: AS, messages, up/down time, state,
        prefixes received/accepted/sent per family."""
        data = get(socket, "/v1/bgp/summary")
        if as_json:
            print_json(data)
            return
        console.print(f"BGP router identifier {data['router_id']}, local AS number {data['local_as']}",
                      markup=False)
        rows = []
        for n in data["neighbors"]:
            up = n["uptime"] if n["state"] == "Established" else n.get("downtime")
            state = "Admin-down" if n.get("admin_down") else n["state"]
            rows.append([n["address"], n["remote_as"] or "any", n["counters"]["messages_in"],
                         n["counters"]["messages_out"], human_duration(up), state,
                         _prefix_cell(n["prefixes"]), n.get("description") or "-"])
        table(["Neighbor", "AS", "MsgRcvd", "MsgSent", "Up/Down", "State",
               "Prefixes (rcvd/accepted/sent)", "Description"], rows)

    @show_bgp.command("neighbors")
    def neighbors(address: str = typer.Argument(None, help="one neighbor (default: all)"),
                  socket: str = socket_opt, as_json: bool = json_opt) -> None:
        """Everything known about one neighbor (or all): configuration, session, counters, prefixes."""
        data = get(socket, f"/v1/bgp/neighbors/{_address(address)}") if address else \
            get(socket, "/v1/bgp/neighbors", accepted="true")
        if as_json:
            print_json(data)
            return
        for n in data if isinstance(data, list) else [data]:
            _print_neighbor(n)

    def _adj(kind: str, address: str, family: str, socket: str, as_json: bool) -> None:
        fam = _family(family)
        data = get(socket, f"/v1/bgp/neighbors/{_address(address)}/{kind}", family=fam)
        if as_json:
            print_json(data)
            return
        what = "received from" if kind == "received-routes" else "advertised to"
        table(_route_headers(with_peer=False), _route_rows(data["routes"], with_peer=False),
              title=f"{fam}: {data['total']} routes {what} {data['neighbor']}")

    @show_bgp.command("received-routes")
    def received_routes(address: str = typer.Argument(..., help="neighbor address"),
                        family: str = _family_opt(), socket: str = socket_opt,
                        as_json: bool = json_opt) -> None:
        """The neighbor's Adj-RIB-In: what it sent us (after import policy); *> marks our best path."""
        _adj("received-routes", address, family, socket, as_json)

    @show_bgp.command("advertised-routes")
    def advertised_routes(address: str = typer.Argument(..., help="neighbor address"),
                          family: str = _family_opt(), socket: str = socket_opt,
                          as_json: bool = json_opt) -> None:
        """The neighbor's Adj-RIB-Out: what we sent it, attributes and next hop as sent."""
        _adj("advertised-routes", address, family, socket, as_json)

    @show_bgp.command("routes")
    def routes(
        family: str = _family_opt(),
        peer: str = typer.Option(None, "--peer", help="only paths from this neighbor ('local': ours)"),
        limit: int = typer.Option(1000, "--limit"),
        offset: int = typer.Option(0, "--offset"),
        socket: str = socket_opt,
        as_json: bool = json_opt,
    ) -> None:
        """Routes of one family (Loc-RIB): received from neighbors and originated here; *> marks the best."""
        fam = _family(family)
        if peer is not None and peer != "local":
            peer = _address(peer)
        data = get(socket, "/v1/bgp/routes", family=fam, peer=peer, limit=limit, offset=offset)
        if as_json:
            print_json(data)
            return
        table(_route_headers(), _route_rows(data["routes"]), title=f"{fam}: {data['total']} routes")

    @show_bgp.command("route")
    def route(
        prefix: str = typer.Argument(..., help="a prefix (exact) or an address (longest match)"),
        rd: str = typer.Option(None, "--rd", help="only this route distinguisher"),
        family: str = _family_opt(),
        socket: str = socket_opt,
        as_json: bool = json_opt,
    ) -> None:
        """One destination: every path, the best one marked and the decision step that chose it."""
        fam = _family(family)
        data = get(socket, "/v1/bgp/lookup", family=fam, prefix=prefix, rd=rd)
        if as_json:
            print_json(data)
            return
        if not data["destinations"]:
            fail(f"no {fam} route matches {prefix}" + (f" with RD {rd}" if rd else ""), 1)
        for d in data["destinations"]:
            reason = d.get("best_reason")
            why = f"{reason['text']} [{reason['step']}]" if reason else "no eligible path"
            console.print(f"{fam} {d['route']}: {len(d['paths'])} paths, best: {why}", markup=False)
            table(_route_headers(), _route_rows(d["paths"]))

    bgp = typer.Typer(help="BGP session actions: soft reset, hard reset, shutdown, enable.",
                      no_args_is_help=True)
    app.add_typer(bgp, name="bgp")

    def _act(socket: str, address: str, action: str, as_json: bool, body: Any = None, **q: Any) -> Any:
        d = call(socket, "POST", f"/v1/bgp/neighbors/{_address(address)}/{action}", body, **q)
        if as_json:
            print_json(d)
        return d

    @bgp.command("soft-reset")
    def soft_reset(
        address: str = typer.Argument(..., help="neighbor address"),
        direction: str = typer.Option("both", "--direction", "-d",
                                      help="in: ROUTE-REFRESH to the neighbor; out: resend our routes; both"),
        socket: str = socket_opt, as_json: bool = json_opt,
    ) -> None:
        """Soft reset without dropping the session: inbound asks the neighbor to send
        its routes again (ROUTE-REFRESH), outbound sends it ours again."""
        if direction not in ("in", "out", "both"):
            fail(f"--direction: {direction!r} is not one of in, out, both", EXIT_USAGE)
        d = _act(socket, address, "refresh", as_json, direction=direction)
        if not as_json:
            parts = []
            if "refreshed" in d:
                parts.append(f"ROUTE-REFRESH sent for {', '.join(d['refreshed']) or 'no family'}")
            if "resent" in d:
                parts.append(f"routes sent again for {', '.join(d['resent']) or 'no family'}")
            console.print(f"neighbor {d['neighbor']}: " + "; ".join(parts), markup=False)

    @bgp.command("reset")
    def hard_reset(address: str = typer.Argument(..., help="neighbor address"),
                   socket: str = socket_opt, as_json: bool = json_opt) -> None:
        """Hard reset: close the session (Cease / Administrative Reset), flush its routes, start again."""
        d = _act(socket, address, "reset", as_json)
        if not as_json:
            console.print(f"neighbor {d['neighbor']}: session reset", markup=False)

    @bgp.command("shutdown")
    def shutdown(address: str = typer.Argument(..., help="neighbor address"),
                 message: str = typer.Option(None, "--message", "-m",
                                             help="shutdown communication for the peer's operator (RFC 9003)"),
                 socket: str = socket_opt, as_json: bool = json_opt) -> None:
        """Administrative shutdown: Cease to the neighbor; it stays down until `vpe bgp enable`."""
        d = _act(socket, address, "shutdown", as_json, {"communication": message})
        if not as_json:
            console.print(f"neighbor {d['neighbor']}: shut down", markup=False)

    @bgp.command("enable")
    def enable(address: str = typer.Argument(..., help="neighbor address"),
               socket: str = socket_opt, as_json: bool = json_opt) -> None:
        """Bring a shut-down neighbor back: the session starts again."""
        d = _act(socket, address, "enable", as_json)
        if not as_json:
            console.print(f"neighbor {d['neighbor']}: enabled", markup=False)


def _print_neighbor(n: dict[str, Any]) -> None:
    p = console.print
    desc = f", {n['description']}" if n.get("description") else ""
    p(f"BGP neighbor {n['address']} port {n['port']}, remote AS {n['remote_as'] or 'any'}{desc}", markup=False)
    state = n["state"] + (" (administratively shut down)" if n.get("admin_down") else "")
    if n["state"] == "Established":
        state += f", up for {human_duration(n['uptime'])}"
    elif n.get("downtime") is not None:
        state += f", down for {human_duration(n['downtime'])}"
    p(f"  state: {state}", markup=False)
    p(f"  peer router id: {n.get('peer_router_id') or '-'}, hold time: {n['hold_time']}", markup=False)
    p(f"  configured families: {cell(n.get('configured_families'))}", markup=False)
    p(f"  negotiated families: {cell(n.get('families'))}", markup=False)
    p(f"  add-path receive: {cell(n.get('addpath_receive'))}, send: {cell(n.get('addpath_send'))}",
      markup=False)
    p(f"  passive: {cell(n.get('passive'))}, route reflector client: {cell(n.get('route_reflector_client'))}",
      markup=False)
    pl = n.get("prefix_limit")
    if pl:
        hit = ", ".join(f"{k} {v}" for k, v in pl["exceeded"].items())
        held = f", held down for {human_duration(pl['held_down_for'])}" if pl.get("held_down_for") else ""
        p(f"  prefix limit: {pl['limit']} per family, action {pl['action']}, restart after {pl['restart']:g} s"
          + (f", exceeded: {hit}" if hit else "") + held, markup=False)
    else:
        p("  prefix limit: none", markup=False)
    c = n.get("counters") or {}
    p("  messages: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()), markup=False)
    for fam, pc in (n.get("prefixes") or {}).items():
        p(f"  {fam}: received {pc['received']}, accepted {pc['accepted']}, sent {pc['sent']}", markup=False)
    if n.get("last_error"):
        p(f"  last error: {n['last_error']}", markup=False)
