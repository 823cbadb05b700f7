"""The prediction log: every served forecast, appended to an embedded SQLite database.

`PredictionLog` appends each prediction (time, version, variant, inputs, output and interval, and
the week it is for) to a SQLite database in WAL mode: readers never block the service, each
thread has its own connection, and a batch request is one transaction. `PredictionRecorder`
queues answers from the request path and writes them from one background thread.

The week a prediction is for is the request's ``date`` (any day of that week) when given, else
the week of the time it was logged. Weeks start on Monday, like the dataset's ``date`` column.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hhforecast.config import Settings
from hhforecast.datasets.weekly import DATE_COLUMN
from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

__all__ = [
    "PredictionLog",
    "PredictionLogError",
    "PredictionRecord",
    "PredictionRecorder",
    "event_records",
    "events_rows",
    "week_of",
]

logger = logging.getLogger("hhforecast.watch.prediction_log")

BUSY_TIMEOUT_MS = 10_000
PREPARE_ATTEMPTS = 20
WRITE_INTERVAL_SECONDS = 0.02
"""How often the service's prediction log is written: answers are queued in between."""
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
    hh_upper REAL
);
CREATE INDEX IF NOT EXISTS predictions_week ON predictions (week);
"""


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


@dataclass(frozen=True)
class PredictionRecord:
    """One served prediction, as logged."""

    version: str
    variant: str
    inputs: Mapping[str, float]
    hh_pred: float
    hh_lower: float | None = None
    hh_upper: float | None = None
    week: str | None = None
    logged_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> tuple[Any, ...]:
        return (
            self.logged_at.isoformat(timespec="microseconds"),
            week_of(self.week) if self.week else week_of(self.logged_at),
            self.version,
            self.variant,
            json.dumps(dict(self.inputs), sort_keys=True),
            float(self.hh_pred),
            None if self.hh_lower is None else float(self.hh_lower),
            None if self.hh_upper is None else float(self.hh_upper),
        )


_INSERT = (
    "INSERT INTO predictions (logged_at, week, version, variant, inputs, hh_pred, hh_lower, "
    "hh_upper) VALUES "
)
_ROW_PLACEHOLDERS = "(?,?,?,?,?,?,?,?)"
ROWS_PER_INSERT = 1000
"""Rows written by one INSERT statement (fewer where SQLite allows fewer bound variables)."""


def _variable_limit(connection: sqlite3.Connection) -> int:
    """How many `?` one statement may bind (999 on SQLite before 3.32, 32766 or more after)."""
    return int(connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def _prepare_database(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL and create the table, retrying while another process does it."""
    # Both need an exclusive lock, and SQLite does not always wait on its busy handler for
    # them: several service workers starting at once can get "database is locked".
    for attempt in range(PREPARE_ATTEMPTS):
        try:
            # WAL lets `hhforecast monitor` read while the service writes.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == PREPARE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class PredictionLog:
    """Every prediction served, in one SQLite file; safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._prepared = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """The log named by `monitoring.database`, resolved against the config file's folder."""
        return cls(settings.resolve(settings.monitoring.database))

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Each thread uses its own connection; close() may run from another thread.
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous = NORMAL")
            with self._write_lock:
                if not self._prepared:
                    _prepare_database(connection)
                    self._prepared = True
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def record(self, records: Iterable[PredictionRecord]) -> int:
        """Append predictions in one transaction; return how many were written."""
        return self.record_rows([r.row() for r in records])

    def record_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Append rows already in the table's column order (PredictionRecord.row())."""
        if not rows:
            return 0
        connection = self._connection()
        # Many rows per INSERT statement, not executemany: sqlite3 lets go of the GIL around
        # every statement it steps, and a handoff per row made the writer thread fight the
        # service's event loop (about 14 µs of server CPU per answer, measured with wrk).
        per_statement = max(1, min(ROWS_PER_INSERT, _variable_limit(connection) // len(rows[0])))
        with self._write_lock, connection:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                connection.execute(
                    _INSERT + ",".join([_ROW_PLACEHOLDERS] * len(chunk)),
                    [value for row in chunk for value in row],
                )
        return len(rows)

    def record_frame(
        self,
        version: str,
        variant: str,
        features: list[str],
        scored: pd.DataFrame,
        logged_at: datetime | None = None,
    ) -> int:
        """Log the rows of a `predict_frame` result (an optional `date` column gives the week)."""
        now = logged_at or datetime.now(UTC)
        dates = scored[DATE_COLUMN] if DATE_COLUMN in scored.columns else None
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
                )
            )
        return self.record(records)

    def frame(self) -> pd.DataFrame:
        """Every logged prediction, oldest first."""
        if not self.path.is_file():
            raise PredictionLogError(
                f"no prediction log at {self.path}: the service writes it once it has served a "
                "prediction (monitoring.database in the config names the file)"
            )
        try:
            return pd.read_sql_query(
                "SELECT id, logged_at, week, version, variant, inputs, hh_pred, hh_lower, "
                "hh_upper FROM predictions ORDER BY id",
                self._connection(),
            )
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise PredictionLogError(
                f"{self.path} is not a readable prediction log ({exc})"
            ) from None

    def close(self) -> None:
        """Close every thread's connection (the service calls it on shutdown)."""
        with self._write_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


class PredictionEventLike(Protocol):
    """What the service hands to its `on_prediction` hook (serving.state.PredictionEvent)."""

    # Read-only members: the service's event is a frozen dataclass.
    @property
    def at(self) -> float: ...

    @property
    def version(self) -> str: ...

    @property
    def variant(self) -> str: ...

    @property
    def features(self) -> Sequence[str]: ...

    @property
    def x(self) -> np.ndarray: ...

    @property
    def predictions(self) -> np.ndarray: ...

    @property
    def lower(self) -> np.ndarray: ...

    @property
    def upper(self) -> np.ndarray: ...


class PredictionRecorder:
    """The service's `on_prediction` hook: queues each answer, a background thread logs batches.

    The request path only appends to a queue (microseconds); the writer thread drains whatever
    has accumulated and inserts it in one transaction, so a burst of requests is one write.
    Events may carry ``weeks`` (one date per row) to name the weeks they forecast.
    """

    def __init__(self, log: PredictionLog, interval: float = WRITE_INTERVAL_SECONDS) -> None:
        self.log = log
        self.interval = interval
        # Items: an event to log, an Event to set once written (flush), None to stop.
        self._queue: queue.SimpleQueue[PredictionEventLike | threading.Event | None] = (
            queue.SimpleQueue()
        )
        # Set by flush/close so the writer does not wait out its interval.
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="hhforecast-prediction-log", daemon=True
        )
        self._closed = False
        self._thread.start()
        # Rows still queued when the service stops are written before the process exits.
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionRecorder:
        """A recorder writing to `monitoring.database`."""
        return cls(PredictionLog.from_settings(settings))

    def __call__(self, event: PredictionEventLike) -> None:
        if not self._closed:
            self._queue.put(event)

    def _run(self) -> None:
        # The writer wakes on a timer, not on every answer: waking per request made the
        # thread fight the event loop for the GIL and cost a third of the service's throughput.
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            batch: list[PredictionEventLike | threading.Event | None] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = events_rows(
                [
                    item
                    for item in batch
                    if item is not None and not isinstance(item, threading.Event)
                ]
            )
            if rows:
                try:
                    self.log.record_rows(rows)
                except Exception:
                    logger.exception(
                        "could not log %d prediction(s) to %s", len(rows), self.log.path
                    )
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if any(item is None for item in batch):
                return

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the database."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._wake.set()
        self._thread.join(timeout=30)
        self.log.close()
        atexit.unregister(self.close)


def event_records(event: PredictionEventLike) -> list[PredictionRecord]:
    """One PredictionRecord per row of a served answer."""
    logged_at = datetime.fromtimestamp(event.at, UTC)
    weeks = getattr(event, "weeks", None)
    return [
        PredictionRecord(
            version=event.version,
            variant=event.variant,
            inputs=dict(zip(event.features, values, strict=True)),
            hh_pred=hh,
            hh_lower=lower,
            hh_upper=upper,
            week=str(weeks[i])[:10] if weeks is not None and weeks[i] is not None else None,
            logged_at=logged_at,
        )
        for i, (values, hh, lower, upper) in enumerate(
            zip(
                event.x.tolist(),
                event.predictions.tolist(),
                event.lower.tolist(),
                event.upper.tolist(),
                strict=True,
            )
        )
    ]


@functools.lru_cache(maxsize=16)
def _inputs_template(features: tuple[str, ...]) -> tuple[str, tuple[int, ...]]:
    """A %-format giving json.dumps(inputs, sort_keys=True), and the value order it takes."""
    names = sorted(features)
    # repr() of a finite float is its JSON text, so this matches json.dumps byte for byte.
    template = "{" + ", ".join(f"{json.dumps(name)}: %r" for name in names) + "}"
    return template, tuple(features.index(name) for name in names)


@functools.lru_cache(maxsize=64)
def _week_of_day(day_number: int) -> str:
    return week_of(date(1970, 1, 1) + timedelta(days=day_number))


def events_rows(events: Sequence[PredictionEventLike]) -> list[tuple[Any, ...]]:
    """The log rows of many served answers, in order, built a run of answers at a time.

    Consecutive undated answers of one model are stacked and their times formatted by NumPy in
    one call: the writer thread's work per row is most of what the log costs the service.
    """
    rows: list[tuple[Any, ...]] = []
    for key, same in itertools.groupby(events, key=_run_key):
        if key is None:  # answers that name their weeks: row by row
            rows.extend(record.row() for event in same for record in event_records(event))
            continue
        run = list(same)
        version, variant, features = key
        counts = [len(event.predictions) for event in run]
        at = np.repeat(np.array([event.at for event in run], dtype=np.float64), counts)
        template, order = _inputs_template(features)
        x = np.concatenate([event.x for event in run])[:, order]
        stamps = np.datetime_as_string(np.round(at * 1e6).astype("datetime64[us]"), unit="us")
        weeks = [_week_of_day(day) for day in (at // 86_400).astype(np.int64).tolist()]
        rows.extend(
            zip(
                [stamp + "+00:00" for stamp in stamps.tolist()],
                weeks,
                itertools.repeat(version),
                itertools.repeat(variant),
                [template % tuple(values) for values in x.tolist()],
                np.concatenate([event.predictions for event in run]).tolist(),
                np.concatenate([event.lower for event in run]).tolist(),
                np.concatenate([event.upper for event in run]).tolist(),
                strict=False,
            )
        )
    return rows


def _run_key(event: PredictionEventLike) -> tuple[str, str, tuple[str, ...]] | None:
    """Answers with the same key are stacked together; dated answers (None) are not."""
    if getattr(event, "weeks", None) is not None:
        return None
    return (event.version, event.variant, tuple(event.features))
