"""Shared pieces of the Engine-against-real-daemons tests: config text, a running Engine, views.

Why a module: the route reflector, RT constraint, VPN topology, aggregate and
ADD-PATH tests all run vpe's whole agent core -- :class:`~vpe.agent.engine.Engine`
(speaker + RIB + Adj-RIB-Out + VPN service) -- in the test's event loop, built
from the same TOML the agent reads, next to daemons started by the harness.
They need the config written from a few knobs, the Engine started and always
stopped, and small read-outs of its state (Adj-RIB-In counts, Loc-RIB rows,
VRF tables) and of the daemons' JSON (GoBGP's paths, FRR's paths).
The Engine connects to every daemon (the daemons are passive): vpe retries
every second, while GoBGP as the connecting side waits 5 s or more.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from daemons import FRR, GoBGP

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.bgp.wire.constants import Family

LOCAL_AS = 65000


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class EngineNeighbor:
    """One ``[[neighbors]]`` entry of the agent config (iBGP, active, short retry)."""

    address: str
    port: int
    local_address: str
    families: Sequence[str] = ("vpnv4",)
    passive: bool = False
    rr_client: bool = False
    add_path: Sequence[dict[str, Any]] = ()
    #: None: iBGP (our AS); another AS makes the session eBGP
    remote_as: int | None = None
    import_policy: str | None = None
    export_policy: str | None = None
    #: further keys of the entry (``ebgp_multihop``, ``allowas_in``...)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineVrf:
    """One ``[[vrfs]]`` entry; ``routes`` are ``(prefix, kind)`` pairs."""

    name: str
    rd: str
    import_rts: Sequence[str] = ()
    export_rts: Sequence[str] = ()
    routes: Sequence[tuple[str, str]] = field(default_factory=tuple)
    #: ``(prefix, summary_only)`` pairs: the VRF's ``aggregates`` (R10.3)
    aggregates: Sequence[tuple[str, bool]] = field(default_factory=tuple)


def _toml(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists, inline tables) from a Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def engine_config(
    router_id: str,
    neighbors: Iterable[EngineNeighbor],
    vrfs: Iterable[EngineVrf] = (),
    *,
    cluster_id: str | None = None,
    listen: Sequence[str] = (),
    port: int = 179,
    underlay: str | None = None,
    extra: str = "",
) -> str:
    """The agent's TOML for one Engine: ``[bgp]``, neighbors, VRFs, ``[dataplane] driver = "none"``.

    Graceful restart is off so that a session going down withdraws at once,
    and the connect retry is 1 s so sessions come up within a test's budget.
    """
    out = [
        "[bgp]",
        f"local_as = {LOCAL_AS}",
        f"router_id = {_toml(router_id)}",
        f"listen = {_toml(list(listen))}",
        f"port = {port}",
    ]
    if cluster_id:
        out.append(f"cluster_id = {_toml(cluster_id)}")
    for n in neighbors:
        out += [
            "",
            "[[neighbors]]",
            f"address = {_toml(n.address)}",
            f"port = {n.port}",
            f"local_address = {_toml(n.local_address)}",
            f"remote_as = {n.remote_as or LOCAL_AS}",
            f"passive = {_toml(n.passive)}",
            "connect_retry = 1.0",
            "graceful_restart = false",
            f"families = {_toml(list(n.families))}",
            f"route_reflector_client = {_toml(n.rr_client)}",
        ]
        if n.add_path:
            out.append(f"add_path = {_toml(list(n.add_path))}")
        for key, value in (("import_policy", n.import_policy), ("export_policy", n.export_policy),
                           *n.extra.items()):
            if value is not None:
                out.append(f"{key} = {_toml(value)}")
    for v in vrfs:
        out += [
            "",
            "[[vrfs]]",
            f"name = {_toml(v.name)}",
            f"rd = {_toml(v.rd)}",
            f"import_rts = {_toml(list(v.import_rts))}",
            f"export_rts = {_toml(list(v.export_rts))}",
            "routes = " + _toml([{"prefix": p, "kind": k} for p, k in v.routes]),
        ]
        if v.aggregates:
            out.append("aggregates = " + _toml([{"prefix": p, "summary_only": s} for p, s in v.aggregates]))
    if extra:
        out += ["", extra]
    out += ["", "[dataplane]", 'driver = "none"']
    if underlay:
        out.append(f"underlay_address = {_toml(underlay)}")
    return "\n".join(out) + "\n"


@contextlib.asynccontextmanager
async def running_engine(toml: str) -> AsyncIterator[Engine]:
    """An Engine built from ``toml`` (parsed like the agent's file), started, stopped on exit."""
    engine = Engine(parse_config(toml, "<interop>"))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


# --------------------------------------------------------------------------- Engine views


def established(engine: Engine, *addresses: str) -> bool:
    """Are the Engine's sessions to all ``addresses`` Established?"""
    return all(engine.speaker.peers[a].established for a in addresses)


def adj_in_count(engine: Engine, peer: str, family: Family) -> int:
    """How many routes of ``family`` the Engine's Adj-RIB-In from ``peer`` holds."""
    adj = engine.rib.adj_rib_in(ip_address(peer), family)
    return 0 if adj is None else len(adj)


def summary_of(engine: Engine, peer: str) -> dict[str, Any]:
    """The Engine's looking-glass summary row of ``peer``."""
    return next(row for row in engine.view.summary() if row["address"] == peer)


def loc_rib(
    engine: Engine, family: Family, peer: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The Engine's Loc-RIB rows (``Engine.routes``) keyed by ``RD:prefix``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in engine.view.routes(family, peer):
        out.setdefault(f"{row['rd']}:{row['prefix']}", []).append(row)
    return out


def vrf_table(engine: Engine, name: str) -> dict[str, list[dict[str, Any]]]:
    """A VRF's table as the API shows it: prefix -> routes (source, next hop, labels, ...)."""
    table: dict[str, list[dict[str, Any]]] = engine.view.vrf_json(name)["table"]
    return table


def vrf_prefixes(engine: Engine, name: str) -> set[str]:
    return set(vrf_table(engine, name))


# --------------------------------------------------------------------------- daemon views


def gobgp_paths(
    g: GoBGP, key: str, table: str = "global", neighbor: str | None = None
) -> list[Any]:
    """GoBGP's paths for ``RD:prefix`` (VPNv4) in its global RIB or a neighbor's adj-in/adj-out."""
    paths: list[Any] = g.rib("vpnv4", table, neighbor).get(key) or []
    return paths


def gobgp_attr(path: dict[str, Any], code: int) -> Any:
    """The JSON of path attribute ``code`` of a GoBGP path, or None."""
    return next((a for a in path["attrs"] if a["type"] == code), None)


def gobgp_view(path: dict[str, Any]) -> dict[str, Any]:
    """RD, labels, RTs, next hop, ORIGINATOR_ID and CLUSTER_LIST of one GoBGP JSON path."""
    ext = gobgp_attr(path, 16)
    rd = path["nlri"]["rd"]
    oid = gobgp_attr(path, 9)
    clist = gobgp_attr(path, 10)
    return {
        "rd": f"{rd['admin']}:{rd['assigned']}",
        "labels": path["nlri"]["labels"],
        "rts": sorted(e["value"] for e in ext["value"] if e.get("subtype") == 2) if ext else [],
        "nexthop": gobgp_attr(path, 14)["nexthop"],
        "originator_id": oid["value"] if oid else None,
        "cluster_list": list(clist["value"]) if clist else [],
    }


def frr_path(f: FRR, rd: str, prefix: str) -> dict[str, Any] | None:
    """FRR's detailed view of one VPNv4 route, or None (FRR answers covering prefixes: checked)."""
    data = f.json(f"show bgp ipv4 vpn rd {rd} {prefix} json").get(rd, {})
    if data.get("prefix") != prefix:
        return None
    paths = [p for p in data.get("paths") or [] if not p.get("removed")]
    return paths[0] if paths else None
