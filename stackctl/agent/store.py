"""The agent's own state: SQLite in WAL mode at ``<state>/agent.db``.

What lives here is what the node cannot tell by itself — everything else is rebuilt from the
containers' labels and the runtime's records (STYLE.md 5):

- **stacks**: each stack's desired state (the normalized spec, dump form) in numbered
  versions, so a rollback has something to roll back to. ``put_stack`` of a spec equal to the
  current one adds no version (a second ``up`` with no change is not a new version).
- **restarts**: per slot, the times of its restarts for one config hash (the history that
  :func:`stackctl.scheduler.restart.should_restart` takes).
- **stack files**: the files each stack's last ``up`` was given (``ls``' CONFIG FILES).
- **health**: per container, its normalized health check (so a restarted agent still checks
  it) and the last known health (status, failing streak, last probes), so that ``ps`` after an
  agent restart does not forget a container was healthy.

The schema is migrated by ``PRAGMA user_version`` (:data:`MIGRATIONS`, applied in order, each
in its own transaction). Every write is one transaction. One connection, guarded by a lock:
the agent calls this from its trio thread and, rarely, from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import NotFoundError, StackctlError, writing
from stackctl.paths import NodePaths

DB_NAME = "agent.db"
KEEP_VERSIONS = 10  # per stack; older versions are dropped

MIGRATIONS: list[str] = [
    # 1: stacks, versions, restart history, health
    """
    CREATE TABLE stacks (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        project_dir TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE stack_versions (
        stack TEXT NOT NULL,
        version INTEGER NOT NULL,
        spec TEXT NOT NULL,
        project_dir TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        PRIMARY KEY (stack, version)
    );
    CREATE TABLE restarts (
        stack TEXT NOT NULL,
        service TEXT NOT NULL,
        slot TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        at_ns INTEGER NOT NULL
    );
    CREATE INDEX restarts_slot ON restarts (stack, service, slot);
    CREATE TABLE health (
        container_id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        failing_streak INTEGER NOT NULL DEFAULT 0,
        log TEXT NOT NULL DEFAULT '[]',
        started_at TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    );
    """,
    # 2: the files each stack was deployed from (`stackctl ls`' CONFIG FILES)
    """
    CREATE TABLE stack_files (
        name TEXT PRIMARY KEY,
        files TEXT NOT NULL DEFAULT '[]'
    );
    """,
]


class StoreError(StackctlError):
    """The agent's database cannot be opened or is newer than this stackctl."""


@dataclass(frozen=True, slots=True)
class StackVersion:
    version: int
    spec: dict[str, Any]
    project_dir: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StackRecord:
    """A stack's current desired state (and the one before, for rollbacks)."""

    name: str
    version: int
    spec: dict[str, Any]
    project_dir: str
    status: str
    created_at: float
    updated_at: float
    previous: StackVersion | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "project_dir": self.project_dir,
                "status": self.status, "created_at": self.created_at,
                "updated_at": self.updated_at,
                "previous_version": self.previous.version if self.previous else None}


@dataclass(slots=True)
class HealthRecord:
    """The persisted health of one container."""

    container_id: str
    config: dict[str, Any]
    status: str = ""  # "" until checked: starting | healthy | unhealthy
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""  # the container start this status belongs to


def db_path(paths: NodePaths) -> str:
    return os.path.join(paths.state, DB_NAME)


class Store:
    """The agent database. ``Store.open(paths)``; close with :meth:`close` (or ``with``)."""

    def __init__(self, path: str, *, clock=time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        try:
            # root-only from the first byte: it holds stacks' environment values; sqlite
            # gives its -wal and -shm files the database file's mode
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the agent database {path}: {exc.strerror}",
                             hint="check the state directory's permissions and free space") from None
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the agent database {path}: {exc}",
                             hint="check the state directory's permissions and free space") from None

    @classmethod
    def open(cls, paths: NodePaths) -> Store:
        os.makedirs(paths.state, mode=0o700, exist_ok=True)
        return cls(db_path(paths))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(f"the agent database {self.path} has schema version {current}; "
                             f"this stackctl knows up to {len(MIGRATIONS)}",
                             hint="run a newer stackctl, or move the database away")
        for version in range(current, len(MIGRATIONS)):
            with self._tx() as db:
                for stmt in MIGRATIONS[version].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {version + 1}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front)."""
        with self._lock, writing(self.path):  # SQLITE_FULL -> DiskFullError
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) may leave the transaction open, or SQLite may
                # have rolled it back itself: either way the database stays as it was.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- stacks ------------------------------------------------------------------------------

    def put_stack(self, name: str, spec: dict[str, Any] | str, project_dir: str = "") -> int:
        """Store a new desired state of ``name``; returns its version (unchanged when the spec
        equals the current one)."""
        text = _canonical(spec)
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT version FROM stacks WHERE name = ?", (name,)).fetchone()
            if row is not None:
                cur = db.execute("SELECT spec, project_dir FROM stack_versions WHERE stack = ? "
                                 "AND version = ?", (name, row[0])).fetchone()
                if cur is not None and cur[0] == text and cur[1] == project_dir:
                    return row[0]
                version = row[0] + 1
                db.execute("UPDATE stacks SET version = ?, project_dir = ?, updated_at = ? "
                           "WHERE name = ?", (version, project_dir, now, name))
            else:
                last = db.execute("SELECT MAX(version) FROM stack_versions WHERE stack = ?",
                                  (name,)).fetchone()[0]
                version = (last or 0) + 1
                db.execute("INSERT INTO stacks (name, version, project_dir, created_at, "
                           "updated_at) VALUES (?, ?, ?, ?, ?)",
                           (name, version, project_dir, now, now))
            db.execute("INSERT INTO stack_versions (stack, version, spec, project_dir, "
                       "created_at) VALUES (?, ?, ?, ?, ?)",
                       (name, version, text, project_dir, now))
            db.execute("DELETE FROM stack_versions WHERE stack = ? AND version <= ?",
                       (name, version - KEEP_VERSIONS))
        return version

    def get_stack(self, name: str) -> StackRecord | None:
        rows = self._query("SELECT name, version, project_dir, status, created_at, updated_at "
                           "FROM stacks WHERE name = ?", (name,))
        return self._record(rows[0]) if rows else None

    def require_stack(self, name: str) -> StackRecord:
        rec = self.get_stack(name)
        if rec is None:
            raise NotFoundError(f"no such stack: {name}", hint="stackctl ls lists the stacks")
        return rec

    def get_stack_version(self, name: str, version: int) -> StackVersion | None:
        rows = self._query("SELECT version, spec, project_dir, created_at FROM stack_versions "
                           "WHERE stack = ? AND version = ?", (name, version))
        if not rows:
            return None
        v, spec, pdir, created = rows[0]
        return StackVersion(v, json.loads(spec), pdir, created)

    def stack_versions(self, name: str) -> list[int]:
        return [r[0] for r in self._query("SELECT version FROM stack_versions WHERE stack = ? "
                                          "ORDER BY version", (name,))]

    def list_stacks(self) -> list[StackRecord]:
        rows = self._query("SELECT name, version, project_dir, status, created_at, updated_at "
                           "FROM stacks ORDER BY name")
        return [self._record(r) for r in rows]

    def delete_stack(self, name: str) -> bool:
        """Forget a stack (its versions and restart history too). False if it was unknown."""
        with self._tx() as db:
            n = db.execute("DELETE FROM stacks WHERE name = ?", (name,)).rowcount
            db.execute("DELETE FROM stack_versions WHERE stack = ?", (name,))
            db.execute("DELETE FROM restarts WHERE stack = ?", (name,))
            db.execute("DELETE FROM stack_files WHERE name = ?", (name,))
        return n > 0

    def set_stack_files(self, name: str, files: list[str]) -> None:
        """The stack files the last ``up`` of ``name`` was given (shown by ``ls``)."""
        with self._tx() as db:
            db.execute("INSERT INTO stack_files (name, files) VALUES (?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET files = excluded.files", (name, json.dumps(list(files))))

    def stack_files(self) -> dict[str, list[str]]:
        return {name: json.loads(files)
                for name, files in self._query("SELECT name, files FROM stack_files")}

    def set_stack_status(self, name: str, status: str) -> None:
        with self._tx() as db:
            n = db.execute("UPDATE stacks SET status = ?, updated_at = ? WHERE name = ?",
                           (status, self._clock(), name)).rowcount
        if n == 0:
            raise NotFoundError(f"no such stack: {name}")

    def _record(self, row: tuple) -> StackRecord:
        name, version, pdir, status, created, updated = row
        cur = self.get_stack_version(name, version)
        prev_rows = self._query("SELECT MAX(version) FROM stack_versions WHERE stack = ? AND "
                                "version < ?", (name, version))
        prev = self.get_stack_version(name, prev_rows[0][0]) if prev_rows[0][0] else None
        return StackRecord(name, version, cur.spec if cur else {}, pdir, status, created,
                           updated, prev)

    # -- restart history ---------------------------------------------------------------------

    def record_restart(self, stack: str, service: str, slot: str, config_hash: str,
                       at_ns: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO restarts VALUES (?, ?, ?, ?, ?)",
                       (stack, service, slot, config_hash, at_ns))

    def restart_history(self, stack: str, service: str, slot: str, config_hash: str) -> list[int]:
        """The slot's restart times (ns) for ``config_hash``; older hashes do not count."""
        rows = self._query("SELECT at_ns FROM restarts WHERE stack = ? AND service = ? AND "
                           "slot = ? AND config_hash = ? ORDER BY at_ns",
                           (stack, service, slot, config_hash))
        return [r[0] for r in rows]

    def clear_restarts(self, stack: str, service: str | None = None,
                       slot: str | None = None, *, except_hash: str | None = None) -> None:
        """Forget restart history (of a service, a slot; keeping ``except_hash``'s)."""
        sql, args = "DELETE FROM restarts WHERE stack = ?", [stack]
        if service is not None:
            sql, args = sql + " AND service = ?", args + [service]
        if slot is not None:
            sql, args = sql + " AND slot = ?", args + [slot]
        if except_hash is not None:
            sql, args = sql + " AND config_hash != ?", args + [except_hash]
        with self._tx() as db:
            db.execute(sql, tuple(args))

    # -- health ------------------------------------------------------------------------------

    def put_health_config(self, container_id: str, config: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO health (container_id, config, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (container_id) DO UPDATE SET config = excluded.config, "
                       "updated_at = excluded.updated_at",
                       (container_id, json.dumps(config, sort_keys=True), self._clock()))

    def get_health(self, container_id: str) -> HealthRecord | None:
        rows = self._query("SELECT container_id, config, status, failing_streak, log, started_at "
                           "FROM health WHERE container_id = ?", (container_id,))
        return _health(rows[0]) if rows else None

    def all_health(self) -> dict[str, HealthRecord]:
        rows = self._query("SELECT container_id, config, status, failing_streak, log, started_at "
                           "FROM health")
        return {r[0]: _health(r) for r in rows}

    def save_health_state(self, container_id: str, status: str, failing_streak: int,
                          log: list[dict[str, Any]], started_at: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE health SET status = ?, failing_streak = ?, log = ?, "
                       "started_at = ?, updated_at = ? WHERE container_id = ?",
                       (status, failing_streak, json.dumps(log), started_at, self._clock(),
                        container_id))

    def delete_health(self, container_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM health WHERE container_id = ?", (container_id,))

    def prune_health(self, live: Iterable[str]) -> list[str]:
        """Drop the health of containers that are gone; returns their ids."""
        keep = set(live)
        gone = [cid for (cid,) in self._query("SELECT container_id FROM health")
                if cid not in keep]
        if gone:
            with self._tx() as db:
                db.executemany("DELETE FROM health WHERE container_id = ?",
                               [(c,) for c in gone])
        return gone


def _canonical(spec: dict[str, Any] | str) -> str:
    if isinstance(spec, str):
        spec = json.loads(spec)
    if not isinstance(spec, dict):
        raise StackctlError("a stack's desired state must be a JSON object")
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _health(row: tuple) -> HealthRecord:
    cid, config, status, streak, log, started = row
    return HealthRecord(cid, json.loads(config), status, streak, json.loads(log), started)
