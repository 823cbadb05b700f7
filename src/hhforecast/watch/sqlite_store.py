"""The prediction log in a SQLite file (the default): schema and its upgrades, writes that notice
a replaced file, reads that change nothing.

The file is in WAL mode, so `hhforecast monitor` reads while the service writes. Before every
write the log checks that the file at its path is still the one it opened (device and inode): a
log deleted or replaced while the service runs is reopened or recreated, and the rows being
written go to the new file instead of vanishing with the old one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hhforecast.config import Settings
from hhforecast.watch.prediction_store import (
    ACTUALS_UPSERT,
    COLUMNS,
    COMPACT,
    HOW_TO_LOG,
    JUDGED_SELECT,
    JUDGED_UPSERT,
    KEY_SQL,
    KEYS_PER_UPSERT,
    RANK_SQL,
    REBUILD_JUDGED,
    SCHEMA_VERSION,
    CompactResult,
    LogWriteError,
    PredictionLogError,
    PredictionStore,
    judged_batch,
)

__all__ = ["BUSY_TIMEOUT_MS", "PredictionLog", "schema_version"]

BUSY_TIMEOUT_MS = 10_000
"""How long a writer waits on another process's lock before the write fails (CLI, tests)."""
PREPARE_ATTEMPTS = 20
ROWS_PER_INSERT = 1000
"""Rows written by one INSERT statement (fewer where SQLite allows fewer bound variables)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at TEXT NOT NULL,
    week TEXT NOT NULL,
    version TEXT NOT NULL,
    variant TEXT NOT NULL,
    inputs TEXT NOT NULL,
    hh_pred REAL NOT NULL,
    hh_lower REAL,
    hh_upper REAL,
    source TEXT NOT NULL DEFAULT 'api',
    horizon INTEGER,
    asked INTEGER NOT NULL DEFAULT 1,
    role TEXT NOT NULL DEFAULT 'production'
);
CREATE INDEX IF NOT EXISTS predictions_week ON predictions (week);
CREATE TABLE IF NOT EXISTS actuals (
    week TEXT PRIMARY KEY,
    hh REAL NOT NULL,
    recorded_at TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judged (
    key TEXT PRIMARY KEY,
    prediction_id INTEGER NOT NULL,
    rank TEXT NOT NULL,
    asked INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
"""
# Columns added since the first release; an older log gains them when first opened for writing.
ADDED_COLUMNS = {
    "source": "TEXT NOT NULL DEFAULT 'api'",
    "horizon": "INTEGER",
    "asked": "INTEGER NOT NULL DEFAULT 1",
    "role": "TEXT NOT NULL DEFAULT 'production'",
}
_RANK = RANK_SQL.format(padded_id="printf('%020d', id)")
_INSERT = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
_ROW_PLACEHOLDERS = "(" + ",".join("?" * len(COLUMNS)) + ")"


def _variable_limit(connection: sqlite3.Connection) -> int:
    """How many `?` one statement may bind (999 on SQLite before 3.32, 32766 or more after)."""
    return int(connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def schema_version(connection: sqlite3.Connection) -> int:
    """The layout of the file: 0 empty, 1 first release, 2 with source and horizon, 3 now."""
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" in tables:
        return int(connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    if "predictions" not in tables:
        return 0
    present = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
    return 2 if "horizon" in present else 1


def _upgrade(connection: sqlite3.Connection) -> None:
    """Create the tables, or bring an older layout to SCHEMA_VERSION, in one transaction."""
    # A read first: a log already up to date needs no write lock, so reopening it while
    # another process holds one (a backup, a long transaction) does not wait on it.
    if schema_version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        if found > SCHEMA_VERSION:
            raise LogWriteError(
                f"the log's layout is version {found}, newer than this hhforecast's "
                f"({SCHEMA_VERSION}): upgrade hhforecast"
            )
        if found < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            present = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
            for name, declaration in ADDED_COLUMNS.items():
                if name not in present:
                    connection.execute(f"ALTER TABLE predictions ADD COLUMN {name} {declaration}")
            connection.execute("DELETE FROM judged")
            connection.execute(REBUILD_JUDGED.format(key=KEY_SQL, rank=_RANK))
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _prepare_database(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL and bring its tables up to date, retrying while another process
    does the same."""
    # These need an exclusive lock, and SQLite does not always wait on its busy handler for
    # them: several service workers starting at once can get "database is locked".
    for attempt in range(PREPARE_ATTEMPTS):
        try:
            # WAL lets `hhforecast monitor` read while the service writes.
            connection.execute("PRAGMA journal_mode = WAL")
            _upgrade(connection)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == PREPARE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


class PredictionLog(PredictionStore):
    """Every logged forecast, in one SQLite file; safe to share between threads.

    Writes go through one connection under a lock (SQLite serialises writers anyway).
    `busy_timeout_ms` is how long a write waits on another process's lock before failing.
    """

    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.location = str(path)
        self.spill_path = path.with_name(path.name + ".unwritten.jsonl")
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._opened: tuple[int, int] | None = None
        self._wal_opened: tuple[int, int] | None = None  # the -wal file of that connection
        self.reopened = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> PredictionLog:
        """The file named by `monitoring.database`, resolved against the config file's folder."""
        return cls(settings.resolve(settings.monitoring.database), busy_timeout_ms)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            connection.execute("PRAGMA synchronous = NORMAL")
            _prepare_database(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _writer(self) -> sqlite3.Connection:
        """The open connection, reopened first when the file was deleted or replaced."""
        current = _identity(self.path)
        if self._connection is not None and current != self._opened:
            # Another file (or none) is at the path now: writing on would put the rows in a
            # file nobody can open.
            self._retire_connection()
            self.reopened += 1
        if self._connection is None:
            self._connection = self._connect()
            self._opened = _identity(self.path)
        return self._connection

    def _retire_connection(self) -> None:
        """Close a connection whose file was deleted or replaced, and remove its -wal file.

        SQLite will not checkpoint into a moved file, so the old -wal would stay at the path
        and be replayed into whatever file is there now, overwriting its pages.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        ours = self._wal_opened is not None and _identity(wal) == self._wal_opened
        self._close_connection()
        if ours:
            wal.unlink(missing_ok=True)
            self.path.with_name(self.path.name + "-shm").unlink(missing_ok=True)

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None
        self._opened = None
        self._wal_opened = None

    def record_rows(self, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        with self._lock:
            try:
                connection = self._writer()
                # Many rows per INSERT statement, not executemany: sqlite3 lets go of the GIL
                # around every statement it steps, and a handoff per row made the writer
                # thread fight the service's event loop for the GIL.
                limit = _variable_limit(connection) // len(COLUMNS)
                per_statement = max(1, min(ROWS_PER_INSERT, limit))
                ids: list[int] = []
                with connection:
                    for start in range(0, len(rows), per_statement):
                        chunk = rows[start : start + per_statement]
                        cursor = connection.execute(
                            _INSERT + ",".join([_ROW_PLACEHOLDERS] * len(chunk)),
                            [value for row in chunk for value in row],
                        )
                        # One statement's rows take consecutive ids (the writer holds the lock).
                        last = int(cursor.lastrowid or 0)
                        ids.extend(range(last - len(chunk) + 1, last + 1))
                    judged = judged_batch(rows, ids)
                    for start in range(0, len(judged), KEYS_PER_UPSERT):
                        keys = judged[start : start + KEYS_PER_UPSERT]
                        connection.execute(
                            JUDGED_UPSERT.format(values=",".join(["(?,?,?,?)"] * len(keys))),
                            [value for entry in keys for value in entry],
                        )
                if self._wal_opened is None:
                    self._wal_opened = _identity(self.path.with_name(self.path.name + "-wal"))
            except (sqlite3.Error, OSError, LogWriteError) as exc:
                # A broken connection is not reused: the next write opens the file afresh.
                self._close_connection()
                raise LogWriteError(str(exc)) from exc
        return len(rows)

    def _reader(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise PredictionLogError(
                f"no prediction log at {self.path}: no forecast has been logged yet. {HOW_TO_LOG}"
            )
        return sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)

    def _read(self, query: Callable[[sqlite3.Connection], str]) -> pd.DataFrame:
        try:
            connection = self._reader()
            try:
                return pd.read_sql_query(query(connection), connection)
            finally:
                connection.close()
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise PredictionLogError(
                f"{self.path} is not a readable prediction log ({exc})"
            ) from None

    def frame(self) -> pd.DataFrame:
        """Every logged row, oldest first (a log from before `source` reads as api)."""
        return self._read(
            lambda connection: (
                f"SELECT {_select_with_defaults(connection)} FROM predictions ORDER BY id"
            )
        )

    def judged(self) -> pd.DataFrame:
        # An older layout is judged as it is read, without changing the file (the first write
        # upgrades it).
        def query(connection: sqlite3.Connection) -> str:
            if schema_version(connection) >= SCHEMA_VERSION:
                return JUDGED_SELECT
            columns = ", ".join(["id", *COLUMNS])
            return (
                f"SELECT {columns}, total AS asked FROM (SELECT {columns}, "
                f"SUM(asked) OVER (PARTITION BY {KEY_SQL}) AS total, "
                f"ROW_NUMBER() OVER (PARTITION BY {KEY_SQL} ORDER BY {_RANK} DESC) AS n "
                f"FROM (SELECT {_select_with_defaults(connection)} FROM predictions) b) ranked "
                "WHERE n = 1 ORDER BY week, id"
            )

        return self._read(query)

    def compact(self) -> CompactResult:
        self._reader().close()  # a missing file is an error, not a new empty log
        with self._lock:
            try:
                connection = self._writer()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    before = connection.execute("SELECT count(*) FROM predictions").fetchone()[0]
                    for statement in COMPACT:
                        connection.execute(statement)
                    after, asked = connection.execute(
                        "SELECT count(*), COALESCE(SUM(asked), 0) FROM predictions"
                    ).fetchone()
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                # Give the freed pages back to the file system (atomic; skipped while busy).
                with contextlib.suppress(sqlite3.OperationalError):
                    connection.execute("VACUUM")
            except (sqlite3.Error, OSError, LogWriteError) as exc:
                self._close_connection()
                raise PredictionLogError(
                    f"cannot compact {self.path} ({exc}); nothing was changed"
                ) from None
        return CompactResult(self.location, int(before), int(after), int(asked))

    def record_actuals(self, weeks: list[tuple[str, float]], source: str) -> int:
        if not weeks:
            return 0
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._lock:
            try:
                connection = self._writer()
                with connection:  # one transaction: every week or none
                    connection.executemany(
                        ACTUALS_UPSERT.format(p="?"), [(w, hh, now, source) for w, hh in weeks]
                    )
            except (sqlite3.Error, OSError) as exc:
                self._close_connection()
                raise PredictionLogError(
                    f"cannot keep the realised weeks in {self.path} ({exc}); nothing was kept"
                ) from None
        return len(weeks)

    def actuals(self) -> pd.DataFrame:
        def query(connection: sqlite3.Connection) -> str:
            if schema_version(connection) >= 4:
                return "SELECT week, hh, recorded_at, source FROM actuals ORDER BY week"
            return "SELECT NULL AS week, NULL AS hh, NULL AS recorded_at, NULL AS source LIMIT 0"

        return self._read(query)

    def close(self) -> None:
        with self._lock:
            self._close_connection()


def _select_with_defaults(connection: sqlite3.Connection) -> str:
    """id, COLUMNS and asked, with the defaults of columns an older layout lacks."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
    defaults = {"source": "'api'", "asked": "1", "role": "'production'"}
    return ", ".join(
        name if name in present else f"{defaults.get(name, 'NULL')} AS {name}"
        for name in ["id", *COLUMNS, "asked"]
    )
