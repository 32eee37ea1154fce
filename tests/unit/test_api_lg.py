"""The web looking glass (``/lg/``) through the real app and a real Engine (dataplane none):
every page answers HTML with the agent's state, hostile names and descriptions are
escaped everywhere (text, attributes, URLs, SVG), the security headers forbid
scripts, unknown VRFs are a 404 page, and on the TCP listener the pages need the
token (bearer, or HTTP Basic with the token as password, which browsers can send).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import BearerAuth, create_app
from vpe.api.lg import Edge, Node, esc, graph_svg, peers_svg

EVIL = '<script>alert(1)</script>"\'&'

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[neighbors]]
address = "127.0.0.53"
remote_as = 65000
passive = true
description = "rr <b>one</b> & \\"two\\""
[[vrfs]]
name = "cfg"
route_targets = ["65000:1"]
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    await e.start()
    try:
        yield e
    finally:
        await e.stop()
        assert e.store is not None
        e.store.close()


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                                 base_url="http://vpe") as c:
        yield c


class _Checker(HTMLParser):
    """Collects tags, text, and fails on a tag that should never be there."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag not in ("script", "iframe", "object", "embed"), tag
        for k, _ in attrs:
            assert not k.startswith("on"), k
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(body: str) -> _Checker:
    c = _Checker()
    c.feed(body)
    c.close()
    return c


PAGES = ["/lg/", "/lg/neighbors", "/lg/vrfs", "/lg/vrfs/cfg", "/lg/fib", "/lg/counters"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_is_html_with_safe_headers(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    doc = parse(r.text)
    assert "nav" in doc.tags and "table" in doc.tags or "p" in doc.tags
    assert "router id 198.18.0.1, AS 65000" in "".join(doc.text)


async def test_overview_neighbors_and_picture(client: httpx.AsyncClient) -> None:
    r = await client.get("/lg/")
    text = "".join(parse(r.text).text)
    assert "127.0.0.53" in text and "0 of 1 sessions established" in text
    assert "<svg" in r.text and "BGP neighbors of this vPE" in text
    assert "rr <b>one</b>" in text  # the description, as text
    assert "<b>one</b>" not in r.text  # never as markup
    r = await client.get("/lg/neighbors")
    text = "".join(parse(r.text).text)
    for word in ("Msgs in", "Updates out", "127.0.0.53", "rr <b>one</b> & \"two\""):
        assert word in text, word


async def test_vrf_page_routes_and_ports(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/vpns", json={"name": "tenant2", "route_targets": ["65000:8"],
                                            "description": "tenant <i>x</i>"})
    assert r.status_code in (200, 201), r.text
    r = await client.post("/v1/ports", json={
        "name": "vm1", "ifname": "tap-vm1", "vpn": "blue", "mac": "02:00:00:00:00:01",
        "ips": ["192.0.2.10/24"], "import_rts": ["65000:9"], "export_rts": ["65000:9"]})
    assert r.status_code in (200, 201), r.text
    r = await client.get("/lg/vrfs")
    assert 'href="/lg/vrfs/blue"' in r.text and 'href="/lg/vrfs/cfg"' in r.text
    text = "".join(parse((await client.get("/lg/vrfs/blue")).text).text)
    assert "192.0.2.10/32" in text and "vm1" in text and "tap-vm1" in text and "65000:9" in text
    r = await client.get("/lg/vrfs")
    assert "tenant <i>x</i>" in "".join(parse(r.text).text) and "<i>" not in r.text


async def test_unknown_vrf_is_404_escaped(client: httpx.AsyncClient) -> None:
    r = await client.get("/lg/vrfs/" + "%3Cscript%3Ex")
    assert r.status_code == 404
    assert "no VRF named <script>x" in "".join(parse(r.text).text)
    assert "<script>x" not in r.text


async def test_bare_lg_redirects(client: httpx.AsyncClient) -> None:
    r = await client.get("/lg")
    assert r.status_code == 308 and r.headers["location"] == "/lg/"


async def test_no_forwarder_pages(client: httpx.AsyncClient) -> None:
    for path in ("/lg/fib", "/lg/counters"):
        assert "dataplane driver none" in (await client.get(path)).text


def test_esc_and_svg_escape_everything() -> None:
    assert "<" not in esc(EVIL) and '"' not in esc(EVIL) and "'" not in esc(EVIL)
    svg = graph_svg([Node("a", (EVIL,), "self"), Node(EVIL, ("b", EVIL))], [Edge("a", EVIL, EVIL, False)], EVIL)
    doc = parse(svg)
    assert doc.tags.count("svg") == 1 and "script" not in doc.tags
    assert EVIL in "".join(doc.text)
    assert graph_svg([], [], "x") == ""


def test_peers_svg_colours_by_state() -> None:
    s = {"router_id": "198.18.0.1", "local_as": 65000, "neighbors": [
        {"address": "198.18.0.2", "remote_as": 65000, "state": "Established",
         "prefixes": {"vpnv4": {"received": 3, "sent": 2}}},
        {"address": "198.18.0.3", "remote_as": 65001, "state": "Active", "prefixes": {}},
    ]}
    svg = peers_svg(s)
    assert svg.count("<line") == 2 and "3 in / 2 out" in svg
    assert 'stroke="#17803d"' in svg and 'stroke-dasharray' in svg


async def test_tcp_needs_token_bearer_or_basic(engine: Engine) -> None:
    app = BearerAuth(create_app(engine), "tok3n")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vpe") as c:
        r = await c.get("/lg/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
        assert (await c.get("/v1/vpns")).headers["www-authenticate"].startswith("Bearer ")
        assert (await c.get("/lg/", headers={"Authorization": "Bearer tok3n"})).status_code == 200
        basic = base64.b64encode(b"anyone:tok3n").decode()
        assert (await c.get("/lg/", headers={"Authorization": f"Basic {basic}"})).status_code == 200
        # never for the API: a browser would send it with a cross-site form POST too
        assert (await c.get("/v1/vpns", headers={"Authorization": f"Basic {basic}"})).status_code == 401
        assert (await c.post("/v1/bgp/neighbors/127.0.0.53/reset",
                             headers={"Authorization": f"Basic {basic}"})).status_code == 401
        assert (await c.post("/lg/", headers={"Authorization": f"Basic {basic}"})).status_code == 401
        for bad in (base64.b64encode(b"tok3n").decode(), base64.b64encode(b"x:wrong").decode(), "%%%"):
            assert (await c.get("/lg/", headers={"Authorization": f"Basic {bad}"})).status_code == 401
