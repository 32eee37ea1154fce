"""Constant work per change (issue 15): the work of one VPN instance or port
operation does not depend on how many VRFs the agent already has.

Work is counted, not timed: derived routes built (I-PMSI A-D, RTC), VRFs
whose tables are flushed, attribute sets of known VPN paths examined when a
VRF's import RTs change, and what the operation writes to the SQLite state
file (statements and their size). The same operations are counted for the
10th and for the 300th VRF; the counts must be the same.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import vpe.agent.originators as originators
import vpe.vpn.importer as importer
from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import APPLICATION_ID, SCHEMA_VERSION, Store
from vpe.vpn.attachments import Attachment
from vpe.vpn.label_owners import VrfLabel
from vpe.vpn.service import VpnService
from vpe.vpn.vrf import Vrf

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
"""


class Work:
    """Counts of the work done while ``counting`` is on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        pmsi, rtc, has_changes = originators.i_pmsi_route, originators.local_rtc_routes, Vrf.has_changes

        def count_pmsi(*a: Any, **kw: Any) -> Any:
            self.add("i_pmsi_routes_built")
            return pmsi(*a, **kw)

        def count_rtc(*a: Any, **kw: Any) -> Any:
            out = rtc(*a, **kw)
            self.add("rtc_routes_built", len(out))
            return out

        def count_flush(vrf: Vrf) -> bool:
            self.add("vrfs_looked_at")
            return has_changes(vrf)

        matches = importer.matches

        def count_matches(*a: Any) -> bool:
            self.add("attribute_sets_examined")
            return matches(*a)

        monkeypatch.setattr(importer, "matches", count_matches)
        monkeypatch.setattr(originators, "i_pmsi_route", count_pmsi)
        monkeypatch.setattr(originators, "local_rtc_routes", count_rtc)
        monkeypatch.setattr(Vrf, "has_changes", count_flush)
        assert engine.store is not None
        engine.store._db.set_trace_callback(self._sql)

    def add(self, what: str, n: int = 1) -> None:
        if self.on:
            self.counts[what] += n

    def _sql(self, stmt: str) -> None:
        head = stmt.lstrip().split(None, 1)[0].upper()
        if head in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            self.add("rows_statements")
            self.add("sql_octets", len(stmt))

    def of(self, fn: Callable[[], object]) -> Counter[str]:
        self.counts = Counter()
        self.on = True
        try:
            fn()
        finally:
            self.on = False
        return self.counts


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    try:
        yield e
    finally:
        assert e.store is not None
        e.store.close()


def _spec(i: int) -> dict[str, Any]:
    return {"route_targets": [f"65000:{i}"]}


def _port(i: int) -> Attachment:
    return Attachment(name=f"p{i:05d}", ifname=f"tap{i:05d}", vrf=f"v{i:05d}", mac="02:00:00:00:00:01",
                      ips=("192.0.2.10/24",))


def _operations(engine: Engine, i: int, work: Work) -> dict[str, Counter[str]]:
    """Create VRF ``i``, attach a port, change its RTs, detach, delete: the work of each."""
    ops = engine.ops
    name = f"v{i:05d}"
    return {
        "create": work.of(lambda: ops.create_vpn(name, _spec(i))),
        "attach": work.of(lambda: ops.attach(_port(i))),
        "update": work.of(lambda: ops.update_vpn(name, {"import_rts": [f"65000:{i}", "65000:99999"]})),
        "detach": work.of(lambda: ops.detach(f"p{i:05d}")),
        "delete": work.of(lambda: ops.delete_vpn(name)),
    }


def _without_octets(w: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {op: {k: v for k, v in c.items() if k != "sql_octets"} for op, c in w.items()}


def test_work_of_the_nth_vrf_does_not_depend_on_n(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    work = Work(monkeypatch, engine)
    for i in range(1, 10):
        engine.ops.create_vpn(f"v{i:05d}", _spec(i))
    at_10 = _operations(engine, 10, work)
    for i in range(11, 300):
        engine.ops.create_vpn(f"v{i:05d}", _spec(i))
        if i % 2:
            engine.ops.attach(_port(i))
    at_300 = _operations(engine, 300, work)
    assert at_10["create"]["i_pmsi_routes_built"] == 1
    assert at_10["create"]["rtc_routes_built"] == 1
    assert _without_octets(at_300) == _without_octets(at_10)
    for op in at_10:  # the same rows, the names one digit longer at most
        assert at_300[op]["sql_octets"] <= at_10[op]["sql_octets"] * 1.1 + 64, op


def test_store_rows_of_one_operation_name_only_what_changed(engine: Engine) -> None:
    for i in range(1, 50):
        engine.ops.create_vpn(f"v{i:05d}", _spec(i))
    assert engine.store is not None
    seen: list[str] = []
    engine.store._db.set_trace_callback(seen.append)
    engine.ops.create_vpn("v00050", _spec(50))
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert all("v00049" not in s for s in writes)  # nothing of the other VRFs is rewritten
    assert any("v00050" in s for s in writes)


# -- the label/RD rows survive a restart; an old (version 1) file is migrated ----------------


def _v1_file(path: Path, state: dict[str, Any], saved_at: float) -> None:
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE schema (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);
        CREATE TABLE vpns (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
        CREATE TABLE ports (name TEXT PRIMARY KEY, vrf TEXT NOT NULL, spec TEXT NOT NULL);
        CREATE TABLE service_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL,
                                    saved_at REAL NOT NULL);
        INSERT INTO schema VALUES (1, 0);
        PRAGMA user_version = 1;
    """)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("INSERT INTO service_state VALUES (1, ?, ?)", (json.dumps(state), saved_at))
    db.commit()
    db.close()


def test_version_1_state_document_is_migrated_to_rows(tmp_path: Path) -> None:
    import time

    svc = VpnService("198.18.0.1", label_hold_down=60.0)
    svc.add_vrf("a", import_rts=["65000:1"], export_rts=["65000:1"])
    svc.add_vrf("b", rd="65000:77", route_targets=["65000:2"])
    la = svc.hold_vrf_label("a")
    lb = svc.hold_vrf_label("b")
    svc.labels_withdrawn(svc.release_vrf_label("b"), 0.0)  # b's label in hold-down, 60 s
    lc = svc.labels.allocate(VrfLabel("gone"))
    svc.labels.release(VrfLabel("gone"))  # pending
    before = svc.dump_state(0.0)
    _v1_file(tmp_path / "vpe.db", before, time.time())
    store = Store(tmp_path / "vpe.db")
    try:
        con = sqlite3.connect(tmp_path / "vpe.db")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "service_state" not in tables and {"labels", "rds", "label_space"} <= tables
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        con.close()
        again = VpnService("198.18.0.1", state=store.service_state(), now=100.0)
    finally:
        store.close()
    assert again.labels.state_of(la) == "used"
    assert again.labels.state_of(lb) == "hold-down"
    assert again.labels.state_of(lc) == "pending"
    assert again.rds.dump() == {}  # preferred until the VRFs come back
    again.add_vrf("b", rd="auto", route_targets=["65000:2"])
    again.add_vrf("a", route_targets=["65000:1"])
    assert again.rds.dump() == before["rds"]
    assert again.hold_vrf_label("a") == la


def test_label_and_rd_rows_restore_the_same_state(tmp_path: Path) -> None:
    e = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    for i in range(1, 6):
        e.ops.create_vpn(f"v{i:05d}", _spec(i))
        e.ops.attach(_port(i))
    e.ops.detach("p00002")
    e.ops.delete_vpn("v00003", force=True)
    want = {n: (str(e.vpn.vrf(n).rd), e.vpn.vrf_label(n)) for n in e.vpn.vrfs}
    assert e.store is not None
    e.store.close()
    e2 = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    try:
        assert {n: (str(e2.vpn.vrf(n).rd), e2.vpn.vrf_label(n)) for n in e2.vpn.vrfs} == want
        assert sorted(a.name for a in e2.bridge.attachments) == ["p00001", "p00004", "p00005"]
    finally:
        assert e2.store is not None
        e2.store.close()


def test_listing_pages_cost_the_page(engine: Engine) -> None:
    for i in (5, 3, 9, 1, 7):
        engine.ops.create_vpn(f"v{i:05d}", _spec(i))
        engine.ops.attach(_port(i))
    assert engine.view.vrf_names(1, 2) == ["v00003", "v00005"]
    assert [a.name for a in engine.view.ports(3, 10)] == ["p00007", "p00009"]
    engine.ops.delete_vpn("v00003", force=True)
    assert engine.view.vrf_names() == ["v00001", "v00005", "v00007", "v00009"]
    assert [a.name for a in engine.view.ports()] == ["p00001", "p00005", "p00007", "p00009"]
    assert [a.name for a in engine.bridge.attachments.by_vrf("v00005")] == ["p00005"]
