"""``vpe lg``: the agent's web looking glass for a local browser.

A browser cannot open a Unix socket, and cannot send a bearer token; this
small HTTP server on 127.0.0.1 passes the browser's ``GET``/``HEAD`` of
``/lg/...`` to the agent (its Unix socket, or its TCP API with the token:
the same :class:`~vpe.cli.client.Target` as every other command) and the
answer back. It passes nothing else: no other path (the rest of the API,
which writes, stays out of a browser's reach), no other method, no request
header but ``Accept``, and only requests whose ``Host`` is this listener
(a page of another site cannot reach it through DNS rebinding).

With ``--lab PREFIX`` it also serves ``/lg/lab``: a picture of a lab built
by ``vpe lab up`` (underlay, route reflector, hosts with their sessions,
VMs with their VPNs), read from the lab's state file and each host's agent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from .client import Target, Unreachable

#: headers of the agent's answer passed to the browser
_PASS = ("content-type", "content-security-policy", "x-content-type-options", "referrer-policy",
         "cache-control", "location")


def make_server(target: Target, host: str, port: int,
                lab_page: Callable[[], tuple[int, str]] | None = None) -> ThreadingHTTPServer:
    """The proxy, bound (``port`` 0: any free port); serve it with ``serve_forever``."""
    client = target.client()  # one for the server's life: connections are reused (httpx pools are thread-safe)

    class Handler(BaseHTTPRequestHandler):
        server_version = "vpe-lg"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            return  # quiet: a browser's every request is not news

        def _plain(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _html(self, status: int, html: str) -> None:
            from ..api.lg import HEADERS

            body = html.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _host_ok(self) -> bool:
            bound = self.server.server_port  # type: ignore[attr-defined]
            allowed = {f"127.0.0.1:{bound}", f"localhost:{bound}", f"[::1]:{bound}"}
            return (self.headers.get("Host") or "") in allowed

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if not self._host_ok():
                self._plain(421, "vpe lg answers only requests for its own address (127.0.0.1)")
                return
            path = self.path
            if path in ("/", "/lg"):
                self.send_response(308)
                self.send_header("Location", "/lg/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not path.startswith("/lg/"):
                self._plain(404, "vpe lg serves the looking glass under /lg/ only")
                return
            if lab_page is not None and path.split("?")[0] == "/lg/lab":
                status, html = lab_page()
                self._html(status, html)
                return
            try:
                r = target.request(self.command, path, client,
                                   headers={"Accept": self.headers.get("Accept", "*/*")}, follow_redirects=False)
            except Unreachable as e:
                self._plain(502, str(e))
                return
            if r.status_code == 401:
                self._plain(502, target.unauthorized())
                return
            body = r.content
            self.send_response(r.status_code)
            for k in _PASS:
                if k in r.headers:
                    self.send_header(k, r.headers[k])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def _refuse(self) -> None:
            self._plain(405, "the looking glass is read-only: GET and HEAD only")

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except BaseException:
        client.close()
        raise
    server.client = client  # type: ignore[attr-defined]  # closed by close_server()
    return server


def close_server(server: ThreadingHTTPServer) -> None:
    server.server_close()
    client = getattr(server, "client", None)
    if client is not None:
        client.close()


class Background:
    """The proxy served from a thread (tests, and anyone embedding it)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="vpe-lg", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/lg/"

    def close(self) -> None:
        self.server.shutdown()
        close_server(self.server)
        self.thread.join(5)


# -- the picture of a lab -----------------------------------------------------------------


def lab_picture(state_dir: Path, timeout: float = 2.0) -> tuple[int, str]:
    """(status, page) of ``/lg/lab``: the lab in ``state_dir`` drawn from its state file,
    sessions as each host's agent reports them now."""
    from ..api.lg import Edge, Node, esc, graph_svg, page, table

    try:
        st = json.loads((state_dir / "lab.json").read_text())
        topo = st["topology"]
    except (OSError, ValueError, KeyError) as e:
        return 503, page("lab", "", f'<p class="err">no lab state in {esc(state_dir)}: {esc(e)}</p>')
    under = topo.get("underlay") or {}
    nodes = [Node("underlay", ("underlay", str(under.get("ipv4", ""))), "underlay")]
    edges: list[Edge] = []
    rows = []
    rr = topo.get("route_reflector")
    if rr:
        nodes.append(Node("rr", ("route reflector", str(rr.get("address", "")), str(rr.get("kind", ""))), "rr"))
        edges.append(Edge("underlay", "rr"))
    for h in topo.get("hosts", []):
        name = str(h.get("name"))
        sessions = _sessions(state_dir / name / "vpe.sock", timeout)
        up = sum(1 for s in sessions if s == "Established")
        state = f"{up}/{len(sessions)} sessions up" if sessions else "agent not answering"
        nodes.append(Node(name, (f"host {name}", str(h.get("address", "")), state), "host"))
        edges.append(Edge("underlay", name, "", bool(sessions) and up == len(sessions)))
        rows.append([esc(name), esc(h.get("address")), esc(h.get("driver") or topo.get("driver")), esc(state)])
    for vm in topo.get("vms", []):
        vname = str(vm.get("name"))
        nodes.append(Node(f"vm:{vname}", (f"VM {vname}", str(vm.get("ipv4") or vm.get("ipv6") or ""),
                                          "VPN " + ",".join(str(v) for v in vm.get("vpns", []))), "vm"))
        edges.append(Edge(str(vm.get("host")), f"vm:{vname}"))
    body = (f'<p>lab {esc(st.get("prefix"))}, AS {esc(topo.get("asn"))}</p>'
            f'<figure id="lab">{graph_svg(nodes, edges, "the lab: underlay, hosts and VMs", 1000)}</figure>'
            + table(["Host", "Underlay address", "Driver", "BGP"], rows))
    return 200, page(f"lab {st.get('prefix')}", "", body)


def _sessions(sock: Path, timeout: float) -> list[str]:
    """The states of the agent's sessions at ``sock`` ([] when it does not answer)."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://vpe",
                          timeout=timeout) as c:
            r = c.get("/v1/bgp/neighbors")
        return [str(n.get("state")) for n in r.json()] if r.status_code == 200 else []
    except (httpx.HTTPError, ValueError, OSError):
        return []
