"""The agent's durable state: one SQLite file, ``<state_dir>/vpe.db``.

What a restarted agent must find again, and nothing it can relearn:

* VPN instances created through the API (config-file VRFs live in the
  config file, which stays authoritative for their names);
* port attachments (the VMs plugged into VRFs);
* routing policies created through the API (``vpe.policy`` plain-data form);
* BGP neighbors of VRFs created through the API (``meta`` rows ``vrf-neighbor:ADDRESS``);
* the VPN service's label and RD state, so the same VPN routes come back
  with the same labels and RDs and the forwarder's MPLS table and the peers'
  stale routes stay valid: one row per label (``labels``, keyed by the
  label, naming its owner), one per VRF's RD (``rds``) and the label space
  (``label_space``). An operation writes only the rows it changed
  (:meth:`VpnService.take_state_changes`), so its cost does not grow with
  the number of VRFs, ports or labels.

Schema versions 1 to 3 kept the label/RD state as one JSON document
(``service_state``) rewritten on every operation; such a file is migrated to
the rows when it is opened (version 4), hold-downs counted from the time
the document was saved.

Why SQLite: transactions. Every API operation writes its rows inside one
transaction that is committed only after the engine accepted the change
(:mod:`vpe.agent.durable`), so the file never holds half an operation.
WAL mode keeps readers off the writer's back and survives ``kill -9``.

The file carries a marker: ``PRAGMA application_id`` = ``'vpe1'`` and
``PRAGMA user_version`` = the schema version (also in the ``schema`` table
with the time it was applied). A file that is not SQLite, is damaged, or
belongs to another program is refused with :class:`StoreError` naming the
file, and is never written to; a file or directory that cannot be written
(read-only mount, permissions) is reported as read-only, not as damaged.

One agent per state directory: :class:`StateLock` holds an exclusive
``flock`` on ``<state_dir>/vpe.lock`` (which holds the owner's pid) for the
agent's life; a second agent is refused naming the first one's pid. The
state is keyed to the configuration (:meth:`Store.claim`): the file records
the AS and router id of the agent that created it, and an agent of another
identity is refused instead of silently sharing it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("vpe.store")

#: ``PRAGMA application_id`` of a vpe state file: ASCII "vpe1"
APPLICATION_ID = 0x76706531
SCHEMA_VERSION = 4
DB_NAME = "vpe.db"
LOCK_NAME = "vpe.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema (
    version    INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vpns (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL              -- JSON: rd, import_rts, export_rts, route_targets, label_mode, multipath, description
);
CREATE TABLE IF NOT EXISTS ports (
    name TEXT PRIMARY KEY,
    vrf  TEXT NOT NULL,
    spec TEXT NOT NULL              -- JSON: Attachment.to_json()
);
CREATE TABLE IF NOT EXISTS label_space (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    low       INTEGER NOT NULL,
    high      INTEGER NOT NULL,
    hold_down REAL NOT NULL,
    next      INTEGER NOT NULL      -- first label never handed out
);
CREATE TABLE IF NOT EXISTS labels (
    label    INTEGER PRIMARY KEY,
    state    TEXT NOT NULL,         -- used, pending, cooling, free
    owner    TEXT,                  -- JSON: the label owner (NULL when free)
    deadline REAL                   -- wall clock: cooling until / free since
);
CREATE TABLE IF NOT EXISTS rds (
    vrf TEXT PRIMARY KEY,
    rd  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL              -- JSON: vpe.policy.policy_to_json()
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,         -- 'owner': JSON {local_as, router_id, config}
    value TEXT NOT NULL
);
"""
_TABLES = frozenset({"schema", "vpns", "ports", "label_space", "labels", "rds", "policies", "meta"})
#: the tables a file of each older schema version has (2 added ``policies``, 3 ``meta``,
#: 4 the label/RD rows in place of the ``service_state`` document)
_V3_TABLES = frozenset({"schema", "vpns", "ports", "service_state", "policies", "meta"})
_TABLES_OF = {1: _V3_TABLES - {"policies", "meta"}, 2: _V3_TABLES - {"meta"}, 3: _V3_TABLES,
              4: _TABLES}


class StoreError(Exception):
    """The state file cannot be used (or a write failed); the message names the file."""


class StateInUse(StoreError):
    """Another live agent holds the state directory's lock."""


def _readonly(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    return code == sqlite3.SQLITE_READONLY or "readonly" in str(e)


def _writable(path: Path) -> str | None:
    """Why ``path`` (the state file, or its directory when it is new) cannot be written, else None."""
    target = path if path.exists() else path.parent
    if not target.exists():
        return None  # created below
    if not os.access(target, os.W_OK):
        err = os.statvfs(target).f_flag & os.ST_RDONLY
        return "it is on a read-only file system" if err else "this user may not write it"
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        return "it is on a read-only file system"
    if path.exists() and not os.access(path.parent, os.W_OK):
        return f"its directory {path.parent} is not writable (SQLite needs its -wal and -shm files there)"
    return None


class StateLock:
    """An exclusive lock on a state directory, held while the agent runs.

    ``<state_dir>/vpe.lock`` is ``flock``-ed (released by the kernel when the
    process dies, so a crash never leaves a stale lock) and holds the pid.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create the state lock: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateInUse(
                    f"{self.dir}: the state directory is in use by another vpe agent (pid {holder}); "
                    "stop it, or give this configuration a state_dir of its own"
                ) from None
            raise StoreError(f"{self.path}: cannot lock the state directory: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Store:
    """The SQLite state file of one agent.

    Reads are plain methods; writes happen inside :meth:`transaction`
    (``BEGIN IMMEDIATE`` .. ``COMMIT``), which rolls back when the block
    raises. The connection is used from the engine's event loop only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        why = _writable(self.path)
        if why:
            raise StoreError(f"{self.path}: the state database is read-only ({why}); the agent must be "
                             "able to write it: fix the permissions or the mount, or set state_dir")
        _check_existing(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.path.parent}: cannot create the state directory: {e.strerror}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the state database: {e}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as e:
            self._db.close()
            if _readonly(e):
                raise StoreError(f"{self.path}: the state database is read-only ({e}); the agent must "
                                 "be able to write it") from None
            raise StoreError(f"{self.path}: cannot initialise the state database: {e}") from None
        self._in_tx = False

    @classmethod
    def in_dir(cls, state_dir: str | Path) -> Store:
        """The store of an agent whose ``state_dir`` is given (``<state_dir>/vpe.db``)."""
        return cls(Path(state_dir) / DB_NAME)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- whose state this is -----------------------------------------------------

    def owner(self) -> dict[str, Any] | None:
        """The identity recorded by :meth:`claim`, None on a file nobody claimed yet."""
        rows = self._query("SELECT value FROM meta WHERE key = 'owner'")
        return _loads(self.path, rows[0][0], "meta[owner]") if rows else None

    def claim(self, local_as: int, router_id: str, config: str) -> None:
        """Key the state to this agent's identity (AS and router id) or refuse another's.

        The first agent records itself; an agent with another AS or router id
        gets :class:`StoreError` naming both identities and the configuration
        file that wrote the state: two configurations never silently share it.
        """
        mine = {"local_as": local_as, "router_id": router_id, "config": config}
        have = self.owner()
        if have is not None and (have.get("local_as"), have.get("router_id")) != (local_as, router_id):
            raise StoreError(
                f"{self.path}: this state belongs to AS {have.get('local_as')} router id "
                f"{have.get('router_id')} (configuration {have.get('config')}), not to AS {local_as} "
                f"router id {router_id} ({config}); refusing to share it: give this configuration a "
                "state_dir of its own"
            )
        if have != mine:
            with self.transaction() as tx:
                tx._exec("INSERT INTO meta (key, value) VALUES ('owner', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (json.dumps(mine, sort_keys=True),))

    # -- schema ----------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        # version 0: a new (empty) file; version 1 lacks policies and meta, 2 lacks meta;
        # versions 1 to 3 hold the label/RD state as one document. Every statement of
        # the schema is CREATE ... IF NOT EXISTS, so running it brings any of them up
        # to date; the document then becomes rows.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            if version in (1, 2, 3):
                self._from_document()
            self._db.execute(
                "INSERT OR REPLACE INTO schema (version, applied_at) VALUES (?, ?)",
                (SCHEMA_VERSION, time.time()),
            )
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if version:
            log.info("state database %s migrated from schema version %d to %d", self.path, version,
                     SCHEMA_VERSION)
        else:
            log.info("state database %s created (schema version %d)", self.path, SCHEMA_VERSION)

    def _from_document(self) -> None:
        """Version 1, 2 or 3 -> 4: the ``service_state`` document becomes rows."""
        has = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'service_state'").fetchall()
        if not has:
            return
        rows = self._db.execute("SELECT state, saved_at FROM service_state WHERE id = 1").fetchall()
        if rows:
            state = _loads(self.path, rows[0][0], "service_state")
            saved_at = float(rows[0][1])
            try:
                _write_document(self._db, state, saved_at)
            except (KeyError, TypeError, ValueError) as e:
                raise StoreError(f"{self.path}: service_state cannot be migrated: {e!r}") from None
        self._db.execute("DROP TABLE service_state")

    # -- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write: committed when the block ends, rolled back if it raises.

        :meth:`Transaction.commit` commits early (so the caller can undo its
        own side effects if the commit itself fails).
        """
        if self._in_tx:
            raise StoreError(f"{self.path}: nested transaction")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot start a transaction: {e}") from None
        self._in_tx = True
        tx = Transaction(self)
        try:
            yield tx
            if not tx.done:
                tx.commit()
        except BaseException:
            if not tx.done:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                tx.done = True
                tx.rolled_back()
            raise
        finally:
            self._in_tx = False

    # -- reads ---------------------------------------------------------------------

    def vpns(self) -> dict[str, dict[str, Any]]:
        """VPN instances created through the API: name -> spec (creation order)."""
        rows = self._query("SELECT name, spec FROM vpns ORDER BY rowid")
        return {name: _loads(self.path, spec, f"vpns[{name}]") for name, spec in rows}

    def ports(self) -> dict[str, dict[str, Any]]:
        """Attachments: name -> Attachment JSON (creation order)."""
        rows = self._query("SELECT name, spec FROM ports ORDER BY rowid")
        return {name: _loads(self.path, spec, f"ports[{name}]") for name, spec in rows}

    def policies(self) -> dict[str, dict[str, Any]]:
        """Routing policies created through the API: name -> plain-data form (creation order)."""
        rows = self._query("SELECT name, spec FROM policies ORDER BY rowid")
        return {name: _loads(self.path, spec, f"policies[{name}]") for name, spec in rows}

    def chain_defs(self, kind: str) -> dict[str, dict[str, Any]]:
        """Services (``kind`` "service") or chains ("chain") made through the API: name ->
        definition (creation order; kept as ``meta`` rows ``KIND:NAME``)."""
        rows = self._query("SELECT key, value FROM meta WHERE key LIKE ? ORDER BY rowid", (f"{kind}:%",))
        return {key.split(":", 1)[1]: _loads(self.path, value, f"meta[{key}]") for key, value in rows}

    def vrf_neighbors(self) -> dict[str, dict[str, Any]]:
        """VRF neighbors made through the API: address -> ``{"vpn", "neighbor"}`` (creation
        order; kept as ``meta`` rows ``vrf-neighbor:ADDRESS``)."""
        return self.chain_defs("vrf-neighbor")

    def service_state(self) -> dict[str, Any] | None:
        """The VPN service's saved label/RD state (``state=`` of
        :class:`~vpe.vpn.service.VpnService`: ``label_space``, ``label_rows``,
        ``rds``), None on a new file."""
        space = self._query("SELECT low, high, hold_down, next FROM label_space WHERE id = 1")
        if not space:
            return None
        low, high, hold_down, nxt = space[0]
        now = time.time()
        rows = [
            [label, st, None if owner is None else _loads(self.path, owner, f"labels[{label}]"),
             None if deadline is None else deadline - now]
            for label, st, owner, deadline in self._query("SELECT label, state, owner, deadline FROM labels")
        ]
        rds = dict(self._query("SELECT vrf, rd FROM rds"))
        return {"label_space": {"low": low, "high": high, "hold_down": hold_down, "next": nxt},
                "label_rows": rows, "rds": rds}

    def meta(self, key: str) -> Any:
        """A value a component keeps in the ``meta`` table (None when absent)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return _loads(self.path, rows[0][0], f"meta[{key}]") if rows else None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot read the state database: {e}") from None


class Transaction:
    """The writes of one :meth:`Store.transaction` block."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.done = False
        self._on_rollback: list[Callable[[], object]] = []

    def on_rollback(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` if this transaction's writes are not committed after all."""
        self._on_rollback.append(fn)

    def rolled_back(self) -> None:
        for fn in self._on_rollback:
            fn()
        self._on_rollback.clear()

    def _exec(self, sql: str, args: tuple[Any, ...]) -> None:
        if self.done:
            raise StoreError(f"{self.store.path}: write after the transaction ended")
        try:
            self.store._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.store.path}: write failed: {e}") from None

    def put_vpn(self, name: str, spec: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO vpns (name, spec) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
            (name, json.dumps(spec, sort_keys=True)),
        )

    def delete_vpn(self, name: str) -> None:
        self._exec("DELETE FROM vpns WHERE name = ?", (name,))

    def put_meta(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON) under ``key`` in the ``meta`` table ('owner' is :meth:`Store.claim`'s)."""
        self._exec("INSERT INTO meta (key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value, sort_keys=True)))

    def put_port(self, name: str, vrf: str, spec: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO ports (name, vrf, spec) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET vrf = excluded.vrf, spec = excluded.spec",
            (name, vrf, json.dumps(spec, sort_keys=True)),
        )

    def delete_port(self, name: str) -> None:
        self._exec("DELETE FROM ports WHERE name = ?", (name,))

    def put_policy(self, name: str, spec: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO policies (name, spec) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
            (name, json.dumps(spec, sort_keys=True)),
        )

    def delete_policy(self, name: str) -> None:
        self._exec("DELETE FROM policies WHERE name = ?", (name,))

    def put_chain_def(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        """A service or chain made through the API (see :meth:`Store.chain_defs`)."""
        self._exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (f"{kind}:{name}", json.dumps(spec, sort_keys=True)))

    def delete_chain_def(self, kind: str, name: str) -> None:
        self._exec("DELETE FROM meta WHERE key = ?", (f"{kind}:{name}",))

    def put_vrf_neighbor(self, address: str, vpn: str, neighbor: dict[str, Any]) -> None:
        """A VRF neighbor made through the API (see :meth:`Store.vrf_neighbors`)."""
        self.put_chain_def("vrf-neighbor", address, {"vpn": vpn, "neighbor": neighbor})

    def delete_vrf_neighbor(self, address: str) -> None:
        self.delete_chain_def("vrf-neighbor", address)

    def _exec_many(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        if self.done:
            raise StoreError(f"{self.store.path}: write after the transaction ended")
        try:
            self.store._db.executemany(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.store.path}: write failed: {e}") from None

    def put_service_changes(self, changes: dict[str, Any]) -> None:
        """The rows :meth:`VpnService.take_state_changes` says changed."""
        space = changes.get("label_space")
        if space is not None:
            self._exec(_PUT_SPACE, (space["low"], space["high"], space["hold_down"], space["next"]))
        now = time.time()
        rows = changes.get("label_rows") or ()
        if rows:
            self._exec_many(_PUT_LABEL, [
                (lab, st, None if owner is None else json.dumps(owner, sort_keys=True),
                 None if remaining is None else now + remaining)
                for lab, st, owner, remaining in rows
            ])
        rds = changes.get("rds") or {}
        put = [(n, rd) for n, rd in rds.items() if rd is not None]
        gone = [(n,) for n, rd in rds.items() if rd is None]
        if put:
            self._exec_many(_PUT_RD, put)
        if gone:
            self._exec_many("DELETE FROM rds WHERE vrf = ?", gone)

    def commit(self) -> None:
        """Make the writes durable now; :class:`StoreError` (and rolled back) if that fails."""
        if self.done:
            return
        self.done = True
        db = self.store._db
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self.rolled_back()
            raise StoreError(f"{self.store.path}: commit failed: {e}") from None
        self._on_rollback.clear()


_PUT_SPACE = ("INSERT INTO label_space (id, low, high, hold_down, next) VALUES (1, ?, ?, ?, ?) "
              "ON CONFLICT(id) DO UPDATE SET low = excluded.low, high = excluded.high, "
              "hold_down = excluded.hold_down, next = excluded.next")
_PUT_LABEL = ("INSERT INTO labels (label, state, owner, deadline) VALUES (?, ?, ?, ?) "
              "ON CONFLICT(label) DO UPDATE SET state = excluded.state, owner = excluded.owner, "
              "deadline = excluded.deadline")
_PUT_RD = "INSERT INTO rds (vrf, rd) VALUES (?, ?) ON CONFLICT(vrf) DO UPDATE SET rd = excluded.rd"


def _write_document(db: sqlite3.Connection, state: dict[str, Any], saved_at: float) -> None:
    """A version 1 ``service_state`` document (saved at ``saved_at``) as version 2 rows."""
    labels = state.get("labels") or {}
    if labels:
        db.execute(_PUT_SPACE, (int(labels["low"]), int(labels["high"]), float(labels["hold_down"]),
                                int(labels["next"])))
        rows: list[tuple[Any, ...]] = []
        for lab, o in labels.get("used", ()):
            rows.append((int(lab), "used", json.dumps(o, sort_keys=True), None))
        for lab, o in labels.get("pending", ()):
            rows.append((int(lab), "pending", json.dumps(o, sort_keys=True), None))
        for lab, o, remaining in labels.get("cooling", ()):
            rows.append((int(lab), "cooling", json.dumps(o, sort_keys=True), saved_at + float(remaining)))
        free = list(labels.get("free", ()))
        for i, lab in enumerate(free):  # matured in this order, before the save
            rows.append((int(lab), "free", None, saved_at - (len(free) - i) * 1e-6))
        db.executemany(_PUT_LABEL, rows)
    db.executemany(_PUT_RD, [(str(n), str(rd)) for n, rd in (state.get("rds") or {}).items()])


# -- checks of an existing file -------------------------------------------------------


def _check_existing(path: Path) -> None:
    """Refuse a file that is not an intact vpe state database; read-only, never writes."""
    if not path.exists():
        return
    if not path.is_file():
        raise StoreError(f"{path}: the state database path is not a regular file")
    if path.stat().st_size == 0:
        return  # a new empty file: initialised like a missing one
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise StoreError(f"{path}: cannot read the state database: {e.strerror}") from None
    if head != b"SQLite format 3\x00":
        raise StoreError(
            f"{path}: not a vpe state database (not an SQLite file); refusing to use or "
            "overwrite it: move it away or set state_dir to another directory"
        )
    try:
        ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the state database: {e}") from None
    try:
        app_id = ro.execute("PRAGMA application_id").fetchone()[0]
        version = ro.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        check = ro.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as e:
        if _readonly(e) or getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_CANTOPEN:
            raise StoreError(f"{path}: the state database cannot be opened ({e}): check that its "
                             "directory and files are readable and writable by the agent") from None
        raise StoreError(
            f"{path}: the state database is damaged ({e}); refusing to use or overwrite it: "
            "restore a backup or move it away"
        ) from None
    finally:
        ro.close()
    if app_id == 0 and not tables and version == 0:
        return  # an empty SQLite database: ours to initialise
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path}: not a vpe state database (SQLite application_id {app_id:#x}, "
            f"tables {', '.join(sorted(tables)) or 'none'}); refusing to use or overwrite it"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer vpe (schema version {version}, this one knows "
            f"{SCHEMA_VERSION}); refusing to use it"
        )
    if check != "ok":
        raise StoreError(
            f"{path}: the state database is damaged (integrity check: {check}); refusing to "
            "use or overwrite it: restore a backup or move it away"
        )
    missing = _TABLES_OF.get(version, _TABLES) - tables
    if version >= 1 and missing:
        raise StoreError(f"{path}: the state database lacks tables {', '.join(sorted(missing))}")


def _loads(path: Path, text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise StoreError(f"{path}: {what} is not valid JSON: {e}") from None
