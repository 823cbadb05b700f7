"""The prediction log's SQLite file: its rows, how they are written, and how it is read back.

`PredictionLog` appends forecasts (time, target week, version, variant, inputs, forecast and
interval, where it came from and how many weeks ahead it was) to a SQLite database in WAL mode,
so `hhforecast monitor` reads while the service writes. Before every write it checks that the
file at its path is still the one it opened (device and inode): a log deleted or replaced while
the service runs is reopened or recreated, and the rows being written go to the new file
instead of vanishing with the old one.

The week a forecast is for is the given ``date`` (any day of that week) when there is one, else
the week of the time it was logged. Weeks start on Monday, like the dataset's ``date`` column.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hhforecast.config import Settings
from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

if TYPE_CHECKING:
    from hhforecast.modeling.forecast import PlanForecast

__all__ = [
    "SOURCES",
    "PredictionLog",
    "PredictionLogError",
    "PredictionRecord",
    "horizon_weeks",
    "week_of",
]

BUSY_TIMEOUT_MS = 10_000
"""How long a writer waits on another process's lock before the write fails (CLI, tests)."""
PREPARE_ATTEMPTS = 20
SOURCES = ("api", "web", "cli")
"""Where a logged forecast came from."""
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
    horizon INTEGER
);
CREATE INDEX IF NOT EXISTS predictions_week ON predictions (week);
"""
# Columns added since the first release; an older log gains them when first opened for writing.
ADDED_COLUMNS = {"source": "TEXT NOT NULL DEFAULT 'api'", "horizon": "INTEGER"}
COLUMNS = (
    "logged_at",
    "week",
    "version",
    "variant",
    "inputs",
    "hh_pred",
    "hh_lower",
    "hh_upper",
    "source",
    "horizon",
)
_INSERT = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
_ROW_PLACEHOLDERS = "(" + ",".join("?" * len(COLUMNS)) + ")"
ROWS_PER_INSERT = 1000
"""Rows written by one INSERT statement (fewer where SQLite allows fewer bound variables)."""


class PredictionLogError(HHForecastError):
    """The prediction log is missing or unreadable, or a monitor option is wrong."""

    exit_code = EXIT_BAD_INPUT


def week_of(day: date | datetime | str) -> str:
    """The Monday (YYYY-MM-DD) of the week holding `day`."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day[:10])
        except ValueError:
            raise PredictionLogError(f"{day!r} is not a date (use YYYY-MM-DD)") from None
    if isinstance(day, datetime):
        day = day.date()
    return (day - timedelta(days=day.weekday())).isoformat()


def horizon_weeks(week: str, last_trained_week: str | None) -> int | None:
    """Weeks from the last week a version trained on to the week forecast (1 = the next)."""
    if not last_trained_week:
        return None
    target = date.fromisoformat(week_of(week))
    last = date.fromisoformat(week_of(last_trained_week))
    return (target - last).days // 7


@dataclass(frozen=True)
class PredictionRecord:
    """One forecast, as logged."""

    version: str
    variant: str
    inputs: Mapping[str, float]
    hh_pred: float
    hh_lower: float | None = None
    hh_upper: float | None = None
    week: str | None = None
    logged_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = "api"
    last_trained_week: str | None = None
    """The last week of the version's dataset: the horizon is counted from it."""

    def row(self) -> tuple[Any, ...]:
        """The values in the table's column order (COLUMNS)."""
        week = week_of(self.week) if self.week else week_of(self.logged_at)
        return (
            self.logged_at.isoformat(timespec="microseconds"),
            week,
            self.version,
            self.variant,
            json.dumps(dict(self.inputs), sort_keys=True),
            float(self.hh_pred),
            None if self.hh_lower is None else float(self.hh_lower),
            None if self.hh_upper is None else float(self.hh_upper),
            self.source,
            horizon_weeks(week, self.last_trained_week),
        )


def _variable_limit(connection: sqlite3.Connection) -> int:
    """How many `?` one statement may bind (999 on SQLite before 3.32, 32766 or more after)."""
    return int(connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def _prepare_database(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL, create the table and add missing columns, retrying while
    another process does the same."""
    # These need an exclusive lock, and SQLite does not always wait on its busy handler for
    # them: several service workers starting at once can get "database is locked".
    for attempt in range(PREPARE_ATTEMPTS):
        try:
            # WAL lets `hhforecast monitor` read while the service writes.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(SCHEMA)
            present = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
            for name, declaration in ADDED_COLUMNS.items():
                if name not in present:
                    connection.execute(f"ALTER TABLE predictions ADD COLUMN {name} {declaration}")
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


class PredictionLog:
    """Every logged forecast, in one SQLite file; safe to share between threads.

    Writes go through one connection under a lock (SQLite serialises writers anyway).
    `busy_timeout_ms` is how long a write waits on another process's lock before failing.
    """

    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._opened: tuple[int, int] | None = None
        self._wal_opened: tuple[int, int] | None = None  # the -wal file of that connection
        self.reopened = 0
        """How many times the file was found deleted or replaced and opened again."""

    @classmethod
    def from_settings(
        cls, settings: Settings, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> PredictionLog:
        """The log named by `monitoring.database`, resolved against the config file's folder."""
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

    def record(self, records: Iterable[PredictionRecord]) -> int:
        """Append forecasts in one transaction; return how many were written."""
        return self.record_rows([r.row() for r in records])

    def record_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Append rows in the table's column order (PredictionRecord.row()), all or none.

        Raises sqlite3.Error or OSError when the file cannot be written (locked past the busy
        timeout, read-only, not a database); nothing of `rows` is then written.
        """
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
                with connection:
                    for start in range(0, len(rows), per_statement):
                        chunk = rows[start : start + per_statement]
                        connection.execute(
                            _INSERT + ",".join([_ROW_PLACEHOLDERS] * len(chunk)),
                            [value for row in chunk for value in row],
                        )
                if self._wal_opened is None:
                    self._wal_opened = _identity(self.path.with_name(self.path.name + "-wal"))
            except (sqlite3.Error, OSError):
                # A broken connection is not reused: the next write opens the file afresh.
                self._close_connection()
                raise
        return len(rows)

    def record_frame(
        self,
        version: str,
        variant: str,
        features: list[str],
        scored: pd.DataFrame,
        logged_at: datetime | None = None,
        source: str = "cli",
        last_trained_week: str | None = None,
    ) -> int:
        """Log the rows of a `predict_frame` result (an optional `date` column gives the week)."""
        now = logged_at or datetime.now(UTC)
        dates = scored["date"] if "date" in scored.columns else None
        records = []
        for i, (_, row) in enumerate(scored.iterrows()):
            day = dates.iloc[i] if dates is not None else None
            week = str(day)[:10] if day is not None and not pd.isna(day) else None
            records.append(
                PredictionRecord(
                    version=version,
                    variant=variant,
                    inputs={f: float(row[f]) for f in features},
                    hh_pred=float(row["HH_pred"]),
                    hh_lower=float(row["HH_lower"]) if "HH_lower" in row else None,
                    hh_upper=float(row["HH_upper"]) if "HH_upper" in row else None,
                    week=week,
                    logged_at=now,
                    source=source,
                    last_trained_week=last_trained_week,
                )
            )
        return self.record(records)

    def record_forecast(
        self, forecast: PlanForecast, source: str, logged_at: datetime | None = None
    ) -> int:
        """Log every week of a plan's forecast, in one transaction."""
        now = logged_at or datetime.now(UTC)
        return self.record(
            PredictionRecord(
                version=forecast.version,
                variant=forecast.variant,
                inputs=week["inputs"],
                hh_pred=week["HH"],
                hh_lower=week["HH_lower"],
                hh_upper=week["HH_upper"],
                week=week["week"],
                logged_at=now,
                source=source,
                last_trained_week=forecast.last_trained_week,
            )
            for week in forecast.rows()
        )

    def frame(self) -> pd.DataFrame:
        """Every logged forecast, oldest first (a log from before `source` reads as api)."""
        if not self.path.is_file():
            raise PredictionLogError(
                f"no prediction log at {self.path}: the service writes it once it has served a "
                "prediction, and `hhforecast forecast` once it has forecast a week "
                "(monitoring.database in the config names the file)"
            )
        try:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)
            try:
                present = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
                wanted = ["id", *COLUMNS]
                select = ", ".join(
                    name if name in present else f"{_default(name)} AS {name}" for name in wanted
                )
                return pd.read_sql_query(
                    f"SELECT {select} FROM predictions ORDER BY id", connection
                )
            finally:
                connection.close()
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise PredictionLogError(
                f"{self.path} is not a readable prediction log ({exc})"
            ) from None

    def close(self) -> None:
        """Close the connection (a later write opens it again)."""
        with self._lock:
            self._close_connection()


def _default(column: str) -> str:
    return "'api'" if column == "source" else "NULL"
