"""The web looking glass: read-only HTML pages under ``/lg/``, served by the agent.

Server-side rendered HTML with inline CSS and inline SVG: no JavaScript at
all, no build step, nothing fetched from elsewhere (the pages carry a
``Content-Security-Policy`` that forbids scripts and any other origin). The
pages read :class:`~vpe.agent.view.AgentView` only, the way the JSON API
does, and every value that reaches a page goes through :func:`esc`
(element text and attributes) or :func:`seg` (URL path segments): a peer's
description, a VRF name or a shutdown message can never become markup.

Pages: ``/lg/`` (overview and a picture of the peers), ``/lg/neighbors``,
``/lg/vrfs`` and ``/lg/vrfs/NAME`` (a VRF, its routes and ports),
``/lg/fib`` (what this agent programmed into its forwarder) and
``/lg/counters`` (the forwarder's packet counters, read now). They are
behind the API's own authentication: no credentials on the Unix socket
(``vpe lg`` serves them to a local browser from there), the bearer token on
TCP (a browser may give the token as the password of HTTP Basic
authentication: :class:`~vpe.api.auth.BearerAuth`).

:func:`peers_svg` and :func:`graph_svg` draw the pictures; ``vpe lg --lab``
uses the latter for the picture of a lab.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from ..agent.view import AgentView

#: headers of every page: no script, nothing from another origin, no framing, no sniffing
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: the pages in the navigation bar: (path, title)
PAGES = (("/lg/", "Overview"), ("/lg/neighbors", "Neighbors"), ("/lg/vrfs", "VRFs"), ("/lg/fib", "FIB"),
         ("/lg/counters", "Counters"))

#: VRFs listed on one page of ``/lg/vrfs`` (``?offset=`` for the next)
VRF_PAGE = 200
#: rows of one table at most (the rest is counted, not shown)
MAX_ROWS = 5000

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2433;background:#f7f8fa}
header{background:#1d2433;color:#fff;padding:.6em 1.2em}
header h1{font-size:1.2em;margin:0 0 .2em}
header p{margin:0;font-size:.9em;color:#c9d1e0}
nav a{color:#9fd0ff;margin-right:1.2em;text-decoration:none}
nav a.here{color:#fff;font-weight:bold}
main{padding:1em 1.2em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;font-size:.88em;margin-bottom:1em}
th,td{border:1px solid #d5d9e0;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17803d;font-weight:bold}.bad{color:#b42318;font-weight:bold}.mute{color:#667085}
.err{background:#fdecea;border:1px solid #f5c2bd;padding:.6em;margin:1em 0}
footer{color:#667085;font-size:.8em;padding:0 1.2em 1em}
svg text{font-family:system-ui,sans-serif}
"""


def esc(value: object) -> str:
    """Any value as HTML text (quotes escaped too, so it is safe in attributes)."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value), quote=True)
    if isinstance(value, dict):
        return escape(" ".join(f"{k}={v}" for k, v in value.items()), quote=True)
    return escape(str(value), quote=True)


def seg(value: str) -> str:
    """``value`` as one URL path segment (percent-encoded: it cannot change the path)."""
    return quote(value, safe="")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d{h:02d}h{m:02d}m" if d else f"{h:02d}:{m:02d}:{s:02d}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str | None = None,
          numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are HTML already (made with :func:`esc` or :func:`link`)."""
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>")
    n = 0
    for n, r in enumerate(rows, 1):
        if n > MAX_ROWS:
            continue
        out.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    if n == 0:
        out.append(f'<tr><td colspan="{len(headers)}" class="mute">none</td></tr>')
    out.append("</tbody></table>")
    if n > MAX_ROWS:
        out.append(f'<p class="mute">{n - MAX_ROWS} more rows not shown (the JSON API has them all)</p>')
    return "".join(out)


def link(path: str, text: object) -> str:
    return f'<a href="{esc(path)}">{esc(text)}</a>'


def state_html(state: str, admin_down: bool = False) -> str:
    if admin_down:
        return '<span class="bad">Admin-down</span>'
    return f'<span class="{"ok" if state == "Established" else "bad"}">{esc(state)}</span>'


def page(title: str, here: str, body: str, header: str = "") -> str:
    """A whole page: head, navigation, ``body`` (HTML), footer."""
    nav = "".join(f'<a href="{p}" class="here">{esc(t)}</a>' if p == here else f'<a href="{p}">{esc(t)}</a>'
                  for p, t in PAGES)
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>vpe looking glass: {esc(title)}</title><link rel="icon" href="data:,">'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>vpe looking glass: {esc(title)}</h1><p>{header}</p><nav>{nav}</nav></header>"
        f'<main id="main">{body}</main>'
        f"<footer>read-only; generated {esc(now)}</footer></body></html>"
    )


# -- pictures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A box of a picture: an id, lines of text (the first one bold), a kind for its colour."""

    id: str
    lines: tuple[str, ...]
    kind: str = "peer"


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    label: str = ""
    up: bool = True


_FILL = {"self": "#1d2433", "peer": "#ffffff", "rr": "#eef4ff", "host": "#ffffff", "vm": "#f3fbf5",
         "underlay": "#fff8e6"}


def graph_svg(nodes: Sequence[Node], edges: Sequence[Edge], title: str, width: int = 900) -> str:
    """A picture of ``nodes`` and ``edges``: the first node in the middle, the others on
    rings around it (the first ring for the nodes linked to it). Inline SVG, every text escaped."""
    if not nodes:
        return ""
    centre = nodes[0]
    linked = {e.b if e.a == centre.id else e.a for e in edges if centre.id in (e.a, e.b)}
    ring1 = [n for n in nodes[1:] if n.id in linked]
    ring2 = [n for n in nodes[1:] if n.id not in linked]
    r1 = 0 if not ring1 else max(170, 32 * len(ring1))
    r2 = r1 + 190 if ring2 else r1
    height = 2 * r2 + 160
    width = max(width, 2 * r2 + 260)
    cx, cy = width / 2, height / 2
    pos: dict[str, tuple[float, float]] = {centre.id: (cx, cy)}
    angle: dict[str, float] = {}
    for i, n in enumerate(ring1):
        angle[n.id] = -math.pi / 2 + 2 * math.pi * i / len(ring1)
    # the outer ring: each node beside the inner node it is linked to, the rest spread out
    children: dict[str, list[str]] = {}
    for n in ring2:
        parent = next((e.a if e.b == n.id else e.b for e in edges
                       if n.id in (e.a, e.b) and (e.b if e.a == n.id else e.a) in angle), None)
        children.setdefault(parent or "", []).append(n.id)
    spread = min(0.5, 2 * math.pi / max(1, len(ring2)))
    for parent, ids in children.items():
        for j, nid in enumerate(ids):
            if parent:
                angle[nid] = angle[parent] + (j - (len(ids) - 1) / 2) * spread
            else:
                angle[nid] = -math.pi / 2 + 0.3 + 2 * math.pi * j / len(ids)
    for n in ring1 + ring2:
        radius = r1 if n in ring1 else r2
        pos[n.id] = (cx + radius * math.cos(angle[n.id]), cy + radius * math.sin(angle[n.id]))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height:.0f}" '
           f'viewBox="0 0 {width} {height:.0f}"><title>{esc(title)}</title>'
           f'<rect width="100%" height="100%" fill="#ffffff" stroke="#d5d9e0"/>']
    for e in edges:
        if e.a not in pos or e.b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e.a], pos[e.b]
        colour = "#17803d" if e.up else "#b42318"
        dash = "" if e.up else ' stroke-dasharray="6 4"'
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        if e.label:
            out.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2 - 4:.1f}" font-size="11" '
                       f'text-anchor="middle" fill="{colour}">{esc(e.label)}</text>')
    for n in nodes:
        x, y = pos[n.id]
        w = max(110, 7 * max(len(line) for line in n.lines) + 16)
        h = 16 * len(n.lines) + 10
        fill = _FILL.get(n.kind, "#ffffff")
        ink = "#ffffff" if n.kind == "self" else "#1d2433"
        out.append(f'<g><rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w}" height="{h}" rx="6" '
                   f'fill="{fill}" stroke="#1d2433"/>')
        for i, line in enumerate(n.lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            ty = y - h / 2 + 19 + 16 * i
            out.append(f'<text x="{x:.1f}" y="{ty:.1f}" font-size="12" text-anchor="middle" fill="{ink}"'
                       f"{weight}>{esc(line)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def peers_svg(summary: Mapping[str, Any]) -> str:
    """This agent in the middle, its BGP neighbors around it, each line coloured by the session state."""
    me = Node("self", (f"this vPE {summary.get('router_id')}", f"AS {summary.get('local_as')}"), "self")
    nodes = [me]
    edges = []
    for n in summary.get("neighbors", []):
        addr = str(n.get("address"))
        state = "Admin-down" if n.get("admin_down") else str(n.get("state"))
        rcvd = sum(int(c.get("received") or 0) for c in (n.get("prefixes") or {}).values())
        sent = sum(int(c.get("sent") or 0) for c in (n.get("prefixes") or {}).values())
        lines = [addr, f"AS {n.get('remote_as') or 'any'}", state]
        if n.get("description"):
            lines.append(str(n["description"])[:40])
        kind = "rr" if n.get("route_reflector_client") else "peer"
        nodes.append(Node(addr, tuple(lines), kind))
        edges.append(Edge("self", addr, f"{rcvd} in / {sent} out", state == "Established"))
    return graph_svg(nodes, edges, "BGP neighbors of this vPE")


# -- the pages ---------------------------------------------------------------------------


def lg_router(view: AgentView, counters_timeout: float = 2.0) -> APIRouter:
    api = APIRouter(prefix="/lg", include_in_schema=False)

    def header() -> str:
        d = view.identity()
        return (f"router id {esc(d['router_id'])}, AS {esc(d['local_as'])}, dataplane driver "
                f"{esc(view.driver)}, {esc(len(view.peers))} neighbor(s), {esc(len(view.vrf_names()))} VRF(s)")

    def html(title: str, here: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(page(title, here, body, header()), status_code=status, headers=HEADERS)

    @api.get("", include_in_schema=False)
    async def bare() -> RedirectResponse:
        return RedirectResponse("/lg/", status_code=308, headers=HEADERS)

    @api.get("/", response_class=HTMLResponse)
    async def overview() -> HTMLResponse:
        s = {**view.identity(), "neighbors": view.summary(accepted=False)}  # no Adj-RIB-In walk
        up = sum(1 for n in s["neighbors"] if n["state"] == "Established")
        rows = [[link(f"/lg/neighbors#n-{n['address']}", n["address"]), esc(n["remote_as"] or "any"),
                 state_html(n["state"], n.get("admin_down", False)),
                 esc(duration(n["uptime"] if n["state"] == "Established" else n.get("downtime"))),
                 esc(n.get("description"))] for n in s["neighbors"]]
        fib = view.fib_json()
        fib_line = ("no forwarder (dataplane driver none)" if fib.get("driver") == "none" else
                    f"forwarder {fib.get('socket')}: "
                    + ("connected" if fib.get("connected") else "not connected")
                    + f", {len(fib.get('routes', []))} routes, {len(fib.get('ports', []))} ports programmed")
        body = (f"<h2>Peers</h2><p>{up} of {len(s['neighbors'])} sessions established.</p>"
                f'<figure id="peers">{peers_svg(s)}</figure>'
                + table(["Neighbor", "AS", "State", "Up/Down", "Description"], rows)
                + f"<h2>Forwarder</h2><p>{esc(fib_line)}</p>")
        return html("overview", "/lg/", body)

    @api.get("/neighbors", response_class=HTMLResponse)
    async def neighbors() -> HTMLResponse:
        s = view.bgp_summary()
        rows = []
        for n in s["neighbors"]:
            c = n.get("counters") or {}
            prefixes = "<br>".join(
                f"{esc(fam)}: {esc(p.get('received'))} received, {esc(p.get('accepted'))} accepted, "
                f"{esc(p.get('sent'))} sent" for fam, p in (n.get("prefixes") or {}).items())
            rows.append([
                f'<span id="n-{esc(n["address"])}">{esc(n["address"])}</span>', esc(n["remote_as"] or "any"),
                esc(n.get("peer_router_id")), state_html(n["state"], n.get("admin_down", False)),
                esc(duration(n["uptime"] if n["state"] == "Established" else n.get("downtime"))),
                esc(c.get("messages_in")), esc(c.get("messages_out")), esc(c.get("updates_in")),
                esc(c.get("updates_out")), prefixes or "-", esc(n.get("families")), esc(n.get("description")),
                esc(n.get("last_error")),
            ])
        body = table(["Neighbor", "AS", "Router id", "State", "Up/Down", "Msgs in", "Msgs out", "Updates in",
                      "Updates out", "Prefixes", "Families", "Description", "Last error"], rows,
                     numeric=(5, 6, 7, 8))
        counter_rows = [[esc(n["address"]), *(esc(v) for v in (n.get("counters") or {}).values())]
                        for n in s["neighbors"]]
        keys = next((list((n.get("counters") or {}).keys()) for n in s["neighbors"] if n.get("counters")), [])
        if keys:
            body += "<h2>Message counters</h2>" + table(
                ["Neighbor", *(k.replace("_", " ") for k in keys)], counter_rows,
                numeric=tuple(range(1, len(keys) + 1)))
        return html("neighbors", "/lg/neighbors", body)

    @api.get("/vrfs", response_class=HTMLResponse)
    async def vrfs(offset: int = 0) -> HTMLResponse:
        offset = max(0, offset)
        names = view.vrf_names(offset, VRF_PAGE + 1)
        rows = []
        for name in names[:VRF_PAGE]:
            d = view.vrf_brief(name)
            routes = d.get("routes") or {}
            rows.append([link(f"/lg/vrfs/{seg(name)}", name), esc(d.get("rd")), esc(d.get("import_rts")),
                         esc(d.get("export_rts")), esc(routes.get("ipv4", 0)), esc(routes.get("ipv6", 0)),
                         esc(d.get("ports")), esc(d.get("description"))])
        body = table(["VRF", "RD", "Import RTs", "Export RTs", "IPv4 routes", "IPv6 routes", "Ports",
                      "Description"], rows, numeric=(4, 5))
        if len(names) > VRF_PAGE:
            body += f'<p>{link(f"/lg/vrfs?offset={offset + VRF_PAGE}", "next VRFs")}</p>'
        return html("VRFs", "/lg/vrfs", body)

    @api.get("/vrfs/{name}", response_class=HTMLResponse)
    async def vrf(name: str) -> HTMLResponse:
        if not view.has_vrf(name):
            return html("no such VRF", "/lg/vrfs", f'<p class="err">no VRF named {esc(name)}</p>', 404)
        d = view.vrf_json(name)
        facts = table(["RD", "Import RTs", "Export RTs", "Label mode", "Multipath", "Import policy",
                       "Export policy", "Description"],
                      [[esc(d.get("rd")), esc(d.get("import_rts")), esc(d.get("export_rts")),
                        esc(d.get("label_mode")), esc(d.get("multipath")), esc(d.get("import_policy")),
                        esc(d.get("export_policy")), esc(d.get("description"))]])
        rows = []
        for prefix, entries in sorted((d.get("table") or {}).items()):
            for r in entries:
                rows.append([esc(prefix), esc(r.get("next_hop") or "local"), esc(r.get("labels")),
                             esc(r.get("source")), esc(r.get("endpoint") or r.get("port"))])
        ports = []
        for pname in d.get("ports") or []:
            a = view.port(pname)
            if a is not None:
                ports.append([esc(a.name), esc(a.ifname), esc(a.mac), esc(list(a.ips)), esc(a.state.value),
                              esc(a.direction), esc(a.description)])
        body = (facts + "<h2>Routes</h2>"
                + table(["Prefix", "Next hop", "Labels", "Source", "Endpoint"], rows)
                + "<h2>Ports</h2>"
                + table(["Port", "Interface", "MAC", "Addresses", "State", "Direction", "Description"], ports))
        return html(f"VRF {name}", "/lg/vrfs", body)

    @api.get("/fib", response_class=HTMLResponse)
    async def fib() -> HTMLResponse:
        d = view.fib_json()
        if d.get("driver") == "none":
            return html("FIB", "/lg/fib", "<p>No forwarder: this agent runs with dataplane driver none.</p>")
        link_rows = [[esc(k.replace("_", " ")), esc(d.get(k))] for k in (
            "socket", "connected", "authenticated", "uptime", "batches_sent", "syncs", "losses",
            "foreign_writes", "forwarder_restarts", "failed_ports", "last_error")]
        routes = []
        for r in d.get("routes", []):
            hops = "<br>".join(
                f"port {esc(h['port'])}" if h.get("port") else
                f"{esc(h.get('endpoint'))} label {esc(h.get('label'))} {esc(h.get('encap'))}"
                for h in r.get("next_hops", []))
            routes.append([esc(r.get("vrf")), esc(r.get("prefix")), hops or "-"])
        ports = [[esc(p.get("name")), esc(p.get("ifname")), esc(p.get("vrf")), esc(p.get("mac")),
                  esc(p.get("ips") or p.get("addresses"))] for p in d.get("ports", [])]
        labels = [[esc(e.get("label")), esc({k: v for k, v in e.items() if k != "label"})]
                  for e in d.get("labels", [])]
        body = ("<h2>FIB channel</h2>" + table(["", "value"], link_rows)
                + "<h2>Routes</h2>" + table(["VRF", "Prefix", "Next hops"], routes)
                + "<h2>Ports</h2>" + table(["Port", "Interface", "VRF", "MAC", "Addresses"], ports)
                + "<h2>Labels</h2>" + table(["Label", "Action"], labels))
        return html("FIB", "/lg/fib", body)

    @api.get("/counters", response_class=HTMLResponse)
    async def counters() -> HTMLResponse:
        fibp = view.fib
        if fibp is None:
            return html("counters", "/lg/counters",
                        "<p>No forwarder: this agent runs with dataplane driver none.</p>")
        try:
            d = await asyncio.wait_for(asyncio.to_thread(fibp.counters, counters_timeout), counters_timeout * 2)
        except Exception as e:  # any failure means: no counters from the forwarder now
            why = str(e) or type(e).__name__
            return html("counters", "/lg/counters",
                        f'<p class="err">the forwarder at {esc(fibp.socket_path)} did not answer: {esc(why)}</p>',
                        503)
        body = f"<p>forwarder {esc(fibp.socket_path)} (driver {esc(view.driver)})</p>"
        keys = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops")
        body += "<h2>Ports</h2>" + table(
            ["Port", "RX packets", "RX bytes", "TX packets", "TX bytes", "Drops"],
            [[esc(name), *(esc(c.get(k, 0)) for k in keys)] for name, c in sorted((d.get("ports") or {}).items())],
            numeric=(1, 2, 3, 4, 5))
        vrfs = d.get("vrfs") or {}
        actions = sorted({a for c in vrfs.values() for a in c})
        body += "<h2>VRFs</h2>" + table(
            ["VRF", *actions], [[esc(n), *(esc(c.get(a, 0)) for a in actions)] for n, c in sorted(vrfs.items())],
            numeric=tuple(range(1, len(actions) + 1)))
        body += "<h2>Drops</h2>" + table(["Reason", "Packets"],
                                         [[esc(k), esc(v)] for k, v in sorted((d.get("drops") or {}).items())],
                                         numeric=(1,))
        kernel = d.get("ebpf") or {}
        if kernel:
            rows = [[esc(k), esc(v)] for k, v in sorted((kernel.get("fast_path") or {}).items())]
            rows += [[esc(f"punted: {k}"), esc(v)] for k, v in sorted((kernel.get("punts") or {}).items())]
            body += "<h2>Kernel fast path (ebpf)</h2>" + table(["Counter", "Value"], rows, numeric=(1,))
        for section in ("underlay", "io_errors"):
            values = d.get(section) or {}
            if values:
                body += f"<h2>{esc(section.replace('_', ' ').capitalize())}</h2>" + table(
                    ["Counter", "Value"], [[esc(k), esc(v)] for k, v in sorted(values.items())], numeric=(1,))
        return html("counters", "/lg/counters", body)

    return api
