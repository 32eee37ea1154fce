"""The agent's SQLite state store and restart behaviour (vpe.agent.store, durable, restart).

* persistence: a new Engine on the same file finds the API's VPN instances
  and ports again, with the same RDs and labels, and knows it restarted;
* a damaged, foreign or newer file is refused with its name, never changed;
* all or nothing: an engine refusal leaves the store as it was, a failed
  commit leaves the engine as it was;
* graceful restart: R/F bits in the OPEN after a restart, and two engines
  on loopback: the survivor keeps the dead agent's routes (stale) and the
  restarted agent comes back with the same labels (the stale flag is gone).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vpe.agent.config import parse_config
from vpe.agent.durable import Conflict
from vpe.agent.engine import Engine
from vpe.agent.restart import GrPeerSettings
from vpe.agent.store import APPLICATION_ID, SCHEMA_VERSION, Store, StoreError, Transaction
from vpe.bgp.wire.capabilities import GracefulRestart
from vpe.bgp.wire.constants import VPNV4
from vpe.vpn.attachments import Attachment


def _cfg(state: Path, extra: str = "", neighbors: str = "", rid: str = "198.18.0.1") -> Any:
    return parse_config(f"""
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "{rid}"
{neighbors}
[[vrfs]]
name = "red"
route_targets = ["65000:1"]
{extra}
""")


def _port(name: str = "p1", vrf: str = "blue", ip: str = "192.0.2.10/24") -> Attachment:
    return Attachment(name, f"vm-{name}"[:15], vrf, "02:00:00:00:00:01", (ip,), ("192.0.2.1",))


def _engine(tmp_path: Path, **kw: Any) -> Engine:
    return Engine(_cfg(tmp_path, **kw), Store.in_dir(tmp_path))


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# -- persistence -----------------------------------------------------------------------


def test_state_survives_a_new_engine(tmp_path: Path) -> None:
    e1 = _engine(tmp_path)
    assert not e1.gr.restarting
    e1.ops.create_vpn("blue", {"route_targets": ["65000:2"], "label_mode": "per-endpoint"})
    e1.ops.create_vpn("green", {"import_rts": ["65000:3"], "export_rts": ["65000:4"], "rd": "65000:44"})
    e1.ops.attach(_port("p1", "blue"))
    e1.ops.attach(_port("p2", "red", "192.0.2.11/24"))
    before = {
        "labels": e1.vpn.label_bindings(),
        "rds": {n: str(v.rd) for n, v in e1.vpn.vrfs.items()},
        "ports": [a.to_json() for a in e1.view.attachments.values()],
        "green": e1.view.vrf_json("green"),
    }
    e1.store.close()  # type: ignore[union-attr]

    e2 = _engine(tmp_path)
    assert e2.gr.restarting and e2.gr.deferring
    assert e2.vpn.label_bindings() == before["labels"]
    assert {n: str(v.rd) for n, v in e2.vpn.vrfs.items()} == before["rds"]
    assert [a.to_json() for a in e2.view.attachments.values()] == before["ports"]
    g = e2.view.vrf_json("green")
    assert (g["import_rts"], g["export_rts"], g["rd"]) == (
        before["green"]["import_rts"], before["green"]["export_rts"], "65000:44")
    # the restored VPN instance is again an API one (PATCH allowed), the config one is not
    e2.ops.update_vpn("green", {"multipath": 4})
    with pytest.raises(Conflict, match="configuration file"):
        e2.ops.update_vpn("red", {"multipath": 4})


def test_deleted_objects_stay_deleted(tmp_path: Path) -> None:
    e1 = _engine(tmp_path)
    e1.ops.create_vpn("blue", {"route_targets": ["65000:2"]})
    e1.ops.attach(_port("p1", "blue"))
    e1.ops.attach(_port("p2", "red", "192.0.2.11/24"))
    e1.ops.detach("p2")
    e1.ops.delete_vpn("blue", force=True)
    e1.store.close()  # type: ignore[union-attr]
    e2 = _engine(tmp_path)
    assert "blue" not in e2.vpn.vrfs and not e2.view.attachments


def test_config_file_wins_over_stored_vpn(tmp_path: Path) -> None:
    e1 = _engine(tmp_path)
    e1.ops.create_vpn("blue", {"route_targets": ["65000:2"]})
    e1.ops.attach(_port("p1", "blue"))
    e1.ops.attach(_port("p2", "red", "192.0.2.11/24"))
    e1.store.close()  # type: ignore[union-attr]
    extra = '[[vrfs]]\nname = "blue"\nroute_targets = ["65000:77"]\n'
    e2 = _engine(tmp_path, extra=extra)
    assert e2.view.vrf_json("blue")["import_rts"] == ["target:65000:77"]
    assert "p1" in e2.view.attachments  # ports follow the VRF name
    # a port whose VRF is gone is skipped (and kept in the store), the agent starts
    e2.store.close()  # type: ignore[union-attr]
    e3 = Engine(parse_config(f"""
state_dir = "{tmp_path}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
"""), Store.in_dir(tmp_path))
    assert sorted(e3.view.attachments) == ["p1"]  # blue is the stored API VPN again; red is gone
    assert "p2" in e3.store.ports()  # type: ignore[union-attr]


# -- refusing files -----------------------------------------------------------------------


def test_not_sqlite_refused_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "vpe.db"
    db.write_bytes(b"this is my shopping list\n" * 100)
    d = _digest(db)
    with pytest.raises(StoreError) as ei:
        Store.in_dir(tmp_path)
    assert str(db) in str(ei.value) and "not a vpe state database" in str(ei.value)
    assert _digest(db) == d


def test_foreign_sqlite_refused_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "vpe.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.execute("INSERT INTO recipes VALUES ('soup')")
    con.commit()
    con.close()
    d = _digest(db)
    with pytest.raises(StoreError) as ei:
        Store(db)
    assert str(db) in str(ei.value) and "recipes" in str(ei.value)
    assert _digest(db) == d
    assert not (tmp_path / "vpe.db-wal").exists()


def test_damaged_database_refused(tmp_path: Path) -> None:
    s = Store.in_dir(tmp_path)
    with s.transaction() as tx:
        for i in range(300):
            tx.put_port(f"p{i}", "red", {"name": f"p{i}", "pad": "x" * 200})
    s.close()
    db = tmp_path / "vpe.db"
    raw = bytearray(db.read_bytes())
    assert len(raw) > 8192
    raw[4096:8192] = b"\xa5" * 4096  # a page of garbage
    db.write_bytes(bytes(raw))
    d = _digest(db)
    with pytest.raises(StoreError) as ei:
        Store(db)
    assert str(db) in str(ei.value) and "damaged" in str(ei.value)
    assert _digest(db) == d


def test_newer_schema_refused(tmp_path: Path) -> None:
    Store.in_dir(tmp_path).close()
    db = tmp_path / "vpe.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer vpe"):
        Store(db)


def test_new_file_marked(tmp_path: Path) -> None:
    Store.in_dir(tmp_path).close()
    con = sqlite3.connect(tmp_path / "vpe.db")
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema").fetchall() == [(SCHEMA_VERSION,)]
    con.close()
    Store.in_dir(tmp_path).close()  # opening again is fine


# -- all or nothing --------------------------------------------------------------------------


def _snapshot(e: Engine) -> dict[str, Any]:
    assert e.store is not None
    return {
        "vpns": e.store.vpns(),
        "ports": e.store.ports(),
        "engine_vrfs": {n: e.view.vrf_json(n) for n in e.vpn.vrfs},
        "attachments": {n: a.to_json() for n, a in e.view.attachments.items()},
        # labels of existing VRFs (a deleted VRF's held I-PMSI label is the MCAST-VPN code's business)
        "bindings": {k: v for k, v in e.vpn.label_bindings().items()
                     if isinstance(v, tuple) and v[1] in e.vpn.vrfs},
        "vpnv4": sorted(str(r) for r in e.view.routes(VPNV4)),
    }


def test_engine_refusal_leaves_store_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path)
    e.ops.create_vpn("blue", {"route_targets": ["65000:2"], "rd": "65000:9"})
    before = _snapshot(e)
    with pytest.raises(ValueError, match="already used"):
        e.ops.create_vpn("other", {"rd": "65000:9"})  # RD held by blue: the engine refuses
    with pytest.raises(ValueError, match="route target"):
        e.ops.create_vpn("x2", {"import_rts": ["nonsense"]})  # refused before anything is applied

    def boom(a: Attachment) -> None:
        raise ValueError("forwarder: cannot open vm-p1")

    monkeypatch.setattr(e.bridge, "attach", boom)
    with pytest.raises(ValueError, match="forwarder"):
        e.ops.attach(_port())
    assert _snapshot(e) == before


def test_engine_refusal_midway_is_undone(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.ops.create_vpn("blue", {"route_targets": ["65000:2"], "rd": "65000:9"})
    e.ops.create_vpn("green", {"route_targets": ["65000:3"], "rd": "65000:10"})
    before = _snapshot(e)
    with pytest.raises(ValueError, match="already used"):
        e.ops.update_vpn("green", {"rd": "65000:9", "import_rts": ["65000:5"]})
    assert _snapshot(e) == before


@pytest.mark.parametrize("op", ["create", "update", "update_rd", "delete", "attach", "detach"])
def test_failed_commit_rolls_engine_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    e = _engine(tmp_path)
    e.ops.create_vpn("blue", {"route_targets": ["65000:2"], "label_mode": "per-endpoint"})
    e.ops.attach(_port("p1", "blue"))
    before = _snapshot(e)

    def fail(self: Transaction) -> None:
        self.done = True
        self.store._db.execute("ROLLBACK")
        raise StoreError(f"{self.store.path}: commit failed: disk I/O error")

    monkeypatch.setattr(Transaction, "commit", fail)
    actions: dict[str, Callable[[], object]] = {
        "create": lambda: e.ops.create_vpn("green", {"route_targets": ["65000:3"]}),
        "update": lambda: e.ops.update_vpn("blue", {"import_rts": ["65000:8"], "multipath": 3}),
        "update_rd": lambda: e.ops.update_vpn("blue", {"rd": "65000:123"}),
        "delete": lambda: e.ops.delete_vpn("blue", force=True),
        "attach": lambda: e.ops.attach(_port("p9", "red", "192.0.2.99/24")),
        "detach": lambda: e.ops.detach("p1"),
    }
    with pytest.raises(StoreError, match="commit failed"):
        actions[op]()
    assert _snapshot(e) == before


# -- graceful restart ---------------------------------------------------------------------------


def _neighbors(addr: str, local: str, port: int, passive: bool) -> str:
    return f"""listen = ["{local}"]
port = {port}
[[neighbors]]
address = "{addr}"
remote_as = 65000
port = {port}
local_address = "{local}"
passive = {str(passive).lower()}
connect_retry = 0.3
hold_time = 9
families = ["vpnv4", "vpnv6", "rtc"]
"""


def test_open_carries_restart_bits_after_restart(tmp_path: Path) -> None:
    nb = _neighbors("127.0.0.62", "127.0.0.61", 1790, False)
    e1 = Engine(_cfg(tmp_path, neighbors=nb), Store.in_dir(tmp_path))
    (p1,) = e1.speaker.peers.values()
    gr1 = p1.fsm.local_open.find(GracefulRestart)
    assert gr1 is not None and not gr1.restart_state and all(f for _, f in gr1.families)
    e1.store.close()  # type: ignore[union-attr]
    e2 = Engine(_cfg(tmp_path, neighbors=nb), Store.in_dir(tmp_path))
    (p2,) = e2.speaker.peers.values()
    assert isinstance(p2.settings, GrPeerSettings)
    gr2 = p2.fsm.local_open.find(GracefulRestart)
    assert gr2 is not None and gr2.restart_state and all(f for _, f in gr2.families)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _remote_vpnv4(e: Engine) -> list[dict[str, Any]]:
    return [r for r in e.view.routes(VPNV4) if r["peer"] != "local"]


async def _crash(e: Engine) -> None:
    """What kill -9 does to the sessions: connections cut, no NOTIFICATION."""
    e.gr.stop()
    tasks = [p._task for p in e.speaker.peers.values() if p._task is not None]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for lst in e.speaker._listeners:
        await lst.close()


async def test_restart_keeps_routes_at_peer_and_labels(tmp_path: Path) -> None:
    port = _free_port()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    cfg_a = _cfg(a_dir, neighbors=_neighbors("127.0.0.72", "127.0.0.71", port, False))
    cfg_b = _cfg(b_dir, neighbors=_neighbors("127.0.0.71", "127.0.0.72", port, True), rid="198.18.0.2")
    a = Engine(cfg_a, Store.in_dir(a_dir))
    b = Engine(cfg_b, Store.in_dir(b_dir))
    a.ops.attach(_port("p1", "red", "192.0.2.10/24"))
    await b.start()
    await a.start()
    a2: Engine | None = None
    try:
        await _until(lambda: len(_remote_vpnv4(b)) == 1)
        label = _remote_vpnv4(b)[0]["labels"]
        await _crash(a)
        (pb,) = b.speaker.peers.values()
        await _until(lambda: not pb.established)
        # the route stays at b, marked stale, while a is away
        await asyncio.sleep(0.3)
        assert len(_remote_vpnv4(b)) == 1
        adj = b.rib.adj_ribs_in(next(iter(b.router._peer_info.values())).address)
        assert any(x.stale for x in adj)
        a.store.close()  # type: ignore[union-attr]
        a2 = Engine(cfg_a, Store.in_dir(a_dir))
        assert a2.gr.deferring
        await a2.start()
        await _until(lambda: not a2.gr.deferring)
        await _until(lambda: all(not x.stale for x in b.rib.adj_ribs_in(
            next(iter(b.router._peer_info.values())).address)))
        rows = _remote_vpnv4(b)
        assert len(rows) == 1 and rows[0]["labels"] == label
        # the R bit is gone from later OPENs
        (pa,) = a2.speaker.peers.values()
        cap = pa.fsm.local_open.find(GracefulRestart)
        assert cap is not None and not cap.restart_state
    finally:
        if a2 is not None:
            await a2.stop()
        await b.stop()


async def test_peer_gone_for_good_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = Engine(_cfg(a_dir, neighbors=_neighbors("127.0.0.82", "127.0.0.81", port, False)),
               Store.in_dir(a_dir))
    b = Engine(_cfg(b_dir, neighbors=_neighbors("127.0.0.81", "127.0.0.82", port, True), rid="198.18.0.2"),
               Store.in_dir(b_dir))
    a.ops.attach(_port("p1", "red", "192.0.2.10/24"))
    await b.start()
    await a.start()
    try:
        await _until(lambda: len(_remote_vpnv4(b)) == 1)
        (pb,) = b.speaker.peers.values()
        b.gr._peers[pb.address].time = 1  # a short restart time for the test
        await _crash(a)
        await _until(lambda: not pb.established)
        assert len(_remote_vpnv4(b)) == 1
        await _until(lambda: not _remote_vpnv4(b), timeout=5.0)
        assert "red" in b.vpn.vrfs and not [
            p for p, rs in b.view.vrf_json("red")["table"].items() if p.startswith("192.0.2.10")]
    finally:
        await b.stop()


async def test_cease_flushes_at_once(tmp_path: Path) -> None:
    port = _free_port()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = Engine(_cfg(a_dir, neighbors=_neighbors("127.0.0.92", "127.0.0.91", port, False)),
               Store.in_dir(a_dir))
    b = Engine(_cfg(b_dir, neighbors=_neighbors("127.0.0.91", "127.0.0.92", port, True), rid="198.18.0.2"),
               Store.in_dir(b_dir))
    a.ops.attach(_port("p1", "red", "192.0.2.10/24"))
    await b.start()
    await a.start()
    try:
        await _until(lambda: len(_remote_vpnv4(b)) == 1)
        await a.stop()  # administrative shutdown: a Cease NOTIFICATION
        await _until(lambda: not _remote_vpnv4(b), timeout=5.0)
    finally:
        await b.stop()
