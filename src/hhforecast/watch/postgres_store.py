"""The prediction log in PostgreSQL: one database that many service replicas write to.

The same two tables as the SQLite log (prediction_store.py), created by the first writer (under
an advisory lock, so replicas starting together do not race). psycopg is imported only here,
when `monitoring.database` is a postgresql:// URL. A write that fails (server stopped,
unreachable, statement timeout) closes the connection and raises LogWriteError; the next write
connects again, so the recorder's held rows go in as soon as the server is back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hhforecast.watch.prediction_store import (
    ACTUALS_UPSERT,
    COLUMNS,
    COMPACT,
    HOW_TO_LOG,
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

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresPredictionLog"]

CONNECT_TIMEOUT_SECONDS = 2
"""libpq's shortest connect timeout: an unreachable server fails a write after this long."""
MIN_STATEMENT_TIMEOUT_MS = 2_000
SCHEMA_LOCK = 7_283_401
"""The advisory lock id held while creating the tables."""
# "C" collation: ranks and times compare byte by byte, as in SQLite, whatever the database's.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS predictions (
    id BIGSERIAL PRIMARY KEY,
    logged_at TEXT COLLATE "C" NOT NULL,
    week TEXT COLLATE "C" NOT NULL,
    version TEXT NOT NULL,
    variant TEXT NOT NULL,
    inputs TEXT NOT NULL,
    hh_pred DOUBLE PRECISION NOT NULL,
    hh_lower DOUBLE PRECISION,
    hh_upper DOUBLE PRECISION,
    source TEXT NOT NULL DEFAULT 'api',
    horizon INTEGER,
    asked BIGINT NOT NULL DEFAULT 1,
    role TEXT NOT NULL DEFAULT 'production'
);
CREATE INDEX IF NOT EXISTS predictions_week ON predictions (week);
CREATE TABLE IF NOT EXISTS actuals (
    week TEXT COLLATE "C" PRIMARY KEY,
    hh DOUBLE PRECISION NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judged (
    key TEXT COLLATE "C" PRIMARY KEY,
    prediction_id BIGINT NOT NULL,
    rank TEXT COLLATE "C" NOT NULL,
    asked BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM schema_version)
"""
_COPY = f"COPY predictions (id, {', '.join(COLUMNS)}) FROM STDIN"


class PostgresPredictionLog(PredictionStore):
    """Every logged forecast, in a PostgreSQL database; safe to share between threads."""

    may_block = True

    def __init__(self, url: str, location: str, spill_path: Path, busy_timeout_ms: int) -> None:
        self.url = url
        self.location = location
        self.spill_path = spill_path
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        timeout = max(MIN_STATEMENT_TIMEOUT_MS, int(self.busy_timeout_ms))
        return psycopg.connect(
            self.url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c statement_timeout={timeout} -c lock_timeout={timeout}",
        )

    def _writer(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            connection = self._connect()
            try:
                with connection.transaction():
                    connection.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
                    found = _version(connection)
                    if found > SCHEMA_VERSION:
                        raise LogWriteError(
                            f"the log's layout is version {found}, newer than this "
                            f"hhforecast's ({SCHEMA_VERSION}): upgrade hhforecast"
                        )
                    if found < SCHEMA_VERSION:
                        for statement in SCHEMA.split(";"):
                            connection.execute(statement)
                    if 0 < found < SCHEMA_VERSION:
                        _upgrade(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # a connection the server already dropped
                self._connection.close()
        self._connection = None

    def record_rows(self, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        import psycopg

        with self._lock:
            try:
                connection = self._writer()
                with connection.transaction():
                    # Ids first, in order: the judged rule breaks ties by id.
                    ids = [
                        int(r[0])
                        for r in connection.execute(
                            "SELECT nextval('predictions_id_seq') FROM generate_series(1, %s)",
                            (len(rows),),
                        ).fetchall()
                    ]
                    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
                        for row_id, row in zip(ids, rows, strict=True):
                            copy.write_row((row_id, *row))
                    judged = judged_batch(rows, ids)
                    for start in range(0, len(judged), KEYS_PER_UPSERT):
                        keys = judged[start : start + KEYS_PER_UPSERT]
                        connection.execute(
                            JUDGED_UPSERT.format(values=",".join(["(%s,%s,%s,%s)"] * len(keys))),
                            [value for entry in keys for value in entry],
                        )
            except (psycopg.Error, OSError, LogWriteError) as exc:
                # A broken connection is not reused: the next write connects afresh.
                self._close_connection()
                raise LogWriteError(_first_line(exc)) from exc
        return len(rows)

    def _read(self, query: Callable[[psycopg.Connection[Any]], str]) -> pd.DataFrame:
        import psycopg

        try:
            with self._connect() as connection:
                if _version(connection) == 0:
                    raise PredictionLogError(
                        f"no prediction log in {self.location}: no forecast has been logged "
                        f"yet. {HOW_TO_LOG}"
                    )
                cursor = connection.execute(query(connection))
                names = [d.name for d in cursor.description or []]
                return pd.DataFrame(cursor.fetchall(), columns=names)
        except psycopg.Error as exc:
            raise PredictionLogError(
                f"cannot read the prediction log at {self.location} ({_first_line(exc)})"
            ) from None

    # A log of an earlier layout is read as it is, without changing it (the first write
    # upgrades it): its rows were all production's, and it kept no realised weeks.
    def frame(self) -> pd.DataFrame:
        return self._read(
            lambda c: f"SELECT id, {_columns(c, '')}, asked FROM predictions ORDER BY id"
        )

    def judged(self) -> pd.DataFrame:
        return self._read(
            lambda c: (
                f"SELECT p.id, {_columns(c, 'p.')}, j.asked "
                "FROM judged j JOIN predictions p ON p.id = j.prediction_id ORDER BY p.week, p.id"
            )
        )

    def compact(self) -> CompactResult:
        import psycopg

        try:
            with self._connect() as connection:
                # One snapshot for both statements: rows written meanwhile by the service are
                # not seen, so neither removed nor left uncounted.
                connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                if _version(connection) == 0:
                    raise PredictionLogError(f"no prediction log in {self.location}")
                with connection.transaction():
                    before = _scalar(connection, "SELECT count(*) FROM predictions")
                    for statement in COMPACT:
                        connection.execute(statement)
                    after = _scalar(connection, "SELECT count(*) FROM predictions")
                    asked = _scalar(connection, "SELECT COALESCE(SUM(asked), 0) FROM predictions")
            # Mark the removed rows' space free for the next ones (outside the transaction).
            with contextlib.suppress(psycopg.Error), self._connect() as connection:
                connection.autocommit = True
                connection.execute("VACUUM predictions")
        except psycopg.Error as exc:
            raise PredictionLogError(
                f"cannot compact {self.location} ({_first_line(exc)}); nothing was changed"
            ) from None
        return CompactResult(self.location, before, after, asked)

    def record_actuals(self, weeks: list[tuple[str, float]], source: str) -> int:
        if not weeks:
            return 0
        import psycopg

        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._lock:
            try:
                connection = self._writer()
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.executemany(
                        ACTUALS_UPSERT.format(p="%s"), [(w, hh, now, source) for w, hh in weeks]
                    )
            except (psycopg.Error, OSError, LogWriteError) as exc:
                self._close_connection()
                raise PredictionLogError(
                    f"cannot keep the realised weeks in {self.location} ({_first_line(exc)}); "
                    "nothing was kept"
                ) from None
        return len(weeks)

    def actuals(self) -> pd.DataFrame:
        def query(connection: psycopg.Connection[Any]) -> str:
            if _version(connection) >= SCHEMA_VERSION:
                return "SELECT week, hh, recorded_at, source FROM actuals ORDER BY week"
            return "SELECT NULL AS week, NULL AS hh, NULL AS recorded_at, NULL AS source LIMIT 0"

        return self._read(query)

    def close(self) -> None:
        with self._lock:
            self._close_connection()


def _upgrade(connection: psycopg.Connection[Any]) -> None:
    """Bring a log of an earlier layout (3) to SCHEMA_VERSION, inside the caller's transaction:
    the `role` column (every earlier row was production's), and `judged` keyed with it."""
    connection.execute(
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS role TEXT NOT NULL DEFAULT 'production'"
    )
    connection.execute("DELETE FROM judged")
    rank = RANK_SQL.format(padded_id="lpad(id::text, 20, '0')")
    connection.execute(REBUILD_JUDGED.format(key=KEY_SQL, rank=rank))
    connection.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))


def _columns(connection: psycopg.Connection[Any], prefix: str) -> str:
    """COLUMNS as a select list (each after `prefix`), `role` given when the layout lacks it."""
    if _version(connection) >= SCHEMA_VERSION:
        return ", ".join(prefix + c for c in COLUMNS)
    return ", ".join(prefix + c if c != "role" else "'production' AS role" for c in COLUMNS)


def _first_line(exc: BaseException) -> str:
    """The server's message without its CONTEXT and DETAIL lines."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _scalar(connection: psycopg.Connection[Any], query: str) -> int:
    row = connection.execute(query).fetchone()
    return int(row[0]) if row else 0


def _version(connection: psycopg.Connection[Any]) -> int:
    """The layout of the database: 0 when it holds no log yet."""
    if _scalar(connection, "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_version' "
               "AND schemaname = current_schema()") == 0:  # fmt: skip
        return 0
    return _scalar(connection, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
