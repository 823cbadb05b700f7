"""The service's prediction log: answers queued on the request path, written by one thread.

`PredictionRecorder` is the service's `on_prediction` hook. The request path only counts the
rows and appends the answer to a queue (well under a microsecond); a background thread turns
whatever has accumulated into rows and writes them to the `PredictionLog` (prediction_store.py)
in one transaction.

Nothing accepted is lost quietly. Rows the log cannot take yet (the file locked by another
process, read-only, not a database, deleted) stay held and are written as soon as it can; the
recorder meanwhile reports itself degraded with the reason (`status()`, shown by /ready,
/api/info and /metrics). Held and queued rows together are bounded by `capacity`: an answer that
would go past it is not logged, and counted as dropped. Closing writes what is held, waiting up
to `shutdown_seconds` for the file; rows it still cannot write are kept in a side file
(``<log>.unwritten.jsonl``) that the next recorder writes to the log first.
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from hhforecast.config import Settings
from hhforecast.watch.prediction_store import (
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    horizon_weeks,
    week_of,
)

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

WRITE_INTERVAL_SECONDS = 0.02
"""How often the service's prediction log is written: answers are queued in between."""
RETRY_SECONDS = 0.25
"""How often a write is retried while the log cannot be written."""
WRITER_BUSY_TIMEOUT_MS = 200
"""The writer waits this long on a lock, then retries later: it never blocks closing for long."""
QUEUE_ROWS = 200_000
"""Rows held at most while the log cannot be written (about 100 MB at worst)."""
SHUTDOWN_SECONDS = 10.0
"""How long closing waits for a locked log before keeping the rows in the side file."""

Progress = Callable[[int, int, int], None]
"""Called by the writer with (rows written since the last call, rows dropped since, queued)."""


class PredictionRecorder:
    """The service's `on_prediction` hook: queues each answer, a background thread logs them."""

    def __init__(
        self,
        log: PredictionLog,
        interval: float = WRITE_INTERVAL_SECONDS,
        capacity: int = QUEUE_ROWS,
        shutdown_seconds: float = SHUTDOWN_SECONDS,
    ) -> None:
        self.log = log
        log.busy_timeout_ms = min(log.busy_timeout_ms, WRITER_BUSY_TIMEOUT_MS)
        self.interval = interval
        self.capacity = capacity
        self.shutdown_seconds = shutdown_seconds
        self.spill_path = log.path.with_name(log.path.name + ".unwritten.jsonl")
        # deque.append and popleft are atomic: the request path never waits for the writer.
        self._incoming: collections.deque[Any] = collections.deque()
        self._held: list[tuple[Any, ...]] = []  # writer thread only
        self._lock = threading.Lock()  # the counters below
        self._written_cond = threading.Condition()
        self.accepted = 0
        self.rows_written = 0
        self.rows_dropped = 0
        self._pending = 0  # accepted, not yet written
        self._settled = 0  # accepted and then written, kept in the side file, or lost
        self.problem: str | None = None
        self._reported = (0, 0)
        self._report_lock = threading.Lock()
        self._on_progress: Progress | None = None
        self._wake = threading.Event()
        self._started = threading.Event()  # set once kept rows of an earlier run are written
        self._stopping = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="hhforecast-prediction-log", daemon=True
        )
        self._thread.start()
        # Rows still queued when the process exits are written (or kept) before it ends.
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionRecorder:
        """A recorder writing to `monitoring.database`, holding at most `monitoring.queue_rows`."""
        return cls(PredictionLog.from_settings(settings), capacity=settings.monitoring.queue_rows)

    def observe(self, on_progress: Progress) -> None:
        """Have the writer report its progress (the service's metrics)."""
        self._on_progress = on_progress

    def __call__(self, event: PredictionEventLike) -> None:
        rows = len(event.predictions)
        with self._lock:
            if self._closed or self._pending + rows > self.capacity:
                self.rows_dropped += rows
                if self.problem is None:
                    self.problem = "the queue is full"
                return
            self._pending += rows
            self.accepted += rows
        self._incoming.append(event)

    def status(self) -> dict[str, Any]:
        """ok, or degraded with the reason; rows written, dropped and waiting."""
        return {
            "status": "degraded" if self.problem else "ok",
            "reason": self.problem,
            "path": str(self.log.path),
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "queue_depth": self._pending,
            "queue_capacity": self.capacity,
            "reopened": self.log.reopened,
        }

    def _run(self) -> None:
        try:
            self._take_spilled()
        finally:
            self._started.set()
        deadline: float | None = None
        # The writer wakes on a timer, not on every answer: waking per request made the
        # thread fight the event loop for the GIL and cost a third of the service's throughput.
        while True:
            self._wake.wait(self.interval if self.problem is None else RETRY_SECONDS)
            self._wake.clear()
            stopping = self._stopping.is_set()
            if stopping and deadline is None:
                deadline = time.monotonic() + self.shutdown_seconds
            self._collect()
            self._write_held()
            self.report()
            if stopping and (not self._held or time.monotonic() >= (deadline or 0.0)):
                self._collect()
                self._spill()
                self.report()
                return

    def _collect(self) -> None:
        events = []
        while True:
            try:
                events.append(self._incoming.popleft())
            except IndexError:
                break
        if not events:
            return
        try:
            self._held.extend(events_rows(events))
        except Exception:  # a malformed answer must not stop the log of the others
            logger.exception("could not turn %d answer(s) into log rows", len(events))
            for event in events:
                rows = _rows_or_none(event)
                self._held.extend(rows)
                lost = len(event.predictions) - len(rows)
                if lost:  # counted, so that the queue depth and flush() stay true
                    self._settle(lost, dropped=True)

    def _write_held(self) -> None:
        if not self._held:
            return
        try:
            written = self.log.record_rows(self._held)
        except (sqlite3.Error, OSError) as exc:
            reason = f"cannot write {self.log.path} ({exc}); {len(self._held)} row(s) held"
            if self.problem is None or self.problem.split(";")[0] != reason.split(";")[0]:
                logger.error("prediction log: %s", reason)
            self.problem = reason
            return
        self._held.clear()
        if self.problem is not None:
            logger.info("prediction log: writing again to %s", self.log.path)
        self.problem = None
        self._settle(written, written=True)

    def _settle(self, rows: int, written: bool = False, dropped: bool = False) -> None:
        """Rows that left the queue: written, kept in the side file, or lost (counted)."""
        with self._lock:
            self._pending -= rows
            self._settled += rows
            if written:
                self.rows_written += rows
            if dropped:
                self.rows_dropped += rows
        with self._written_cond:
            self._written_cond.notify_all()

    def report(self) -> None:
        """Tell the progress callback what changed since its last call (any thread)."""
        if self._on_progress is None:
            return
        with self._report_lock:
            written, dropped = self.rows_written, self.rows_dropped
            try:
                self._on_progress(
                    written - self._reported[0], dropped - self._reported[1], self._pending
                )
            except Exception:
                logger.exception("prediction log: progress callback failed")
            self._reported = (written, dropped)

    def _spill(self) -> None:
        """Keep rows the log could not take before closing in the side file."""
        if not self._held:
            return
        lines = "".join(json.dumps(row) + "\n" for row in self._held)
        try:
            with open(self.spill_path, "a", encoding="utf-8") as out:
                out.write(lines)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            logger.error(
                "prediction log: %d row(s) could not be written to %s nor kept in %s (%s)",
                len(self._held),
                self.log.path,
                self.spill_path,
                exc,
            )
            self._settle(len(self._held), dropped=True)
            self._held.clear()
            return
        logger.warning(
            "prediction log: %d row(s) kept in %s; they are written to the log when it next starts",
            len(self._held),
            self.spill_path,
        )
        self._settle(len(self._held))
        self._held.clear()

    def _take_spilled(self) -> None:
        """Write rows an earlier recorder kept in the side file, then remove it.

        The file is first renamed to a name of this process's own: when several service
        workers start together, one of them takes it and the others find nothing, so no row
        is written twice.
        """
        claimed = self.spill_path.with_name(f"{self.spill_path.name}.{os.getpid()}")
        try:
            os.rename(self.spill_path, claimed)
            text = claimed.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("prediction log: cannot read %s (%s)", self.spill_path, exc)
            return
        rows = [tuple(json.loads(line)) for line in text.splitlines() if line.strip()]
        try:
            self.log.record_rows(rows)
        except (sqlite3.Error, OSError) as exc:
            logger.error("prediction log: %s kept for later (%s)", self.spill_path, exc)
            with open(self.spill_path, "a", encoding="utf-8") as back:
                back.write(text)
            claimed.unlink(missing_ok=True)
            return
        claimed.unlink(missing_ok=True)
        with self._lock:
            self.rows_written += len(rows)
        logger.info("prediction log: wrote %d kept row(s) from %s", len(rows), self.spill_path)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far has left the queue (written, or counted as
        dropped); False if it had not in time."""
        target = self.accepted
        self._started.wait(timeout)
        self._wake.set()
        with self._written_cond:
            return self._written_cond.wait_for(lambda: self._settled >= target, timeout)

    def close(self) -> None:
        """Write what is queued (or keep it in the side file), stop the writer, close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=self.shutdown_seconds + 30)
        self.log.close()
        atexit.unregister(self.close)


def _rows_or_none(event: Any) -> list[tuple[Any, ...]]:
    try:
        return [record.row() for record in event_records(event)]
    except Exception:
        return []


class PredictionEventLike(Protocol):
    """What the service hands to its `on_prediction` hook (serving.state.PredictionEvent)."""

    # Read-only members: the service's event is an immutable named tuple.
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


def event_records(event: PredictionEventLike) -> list[PredictionRecord]:
    """One PredictionRecord per row of a served answer."""
    logged_at = datetime.fromtimestamp(event.at, UTC)
    weeks = getattr(event, "weeks", None)
    source = getattr(event, "source", None) or "api"
    last_week = getattr(event, "last_trained_week", None)
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
            source=source,
            last_trained_week=last_week,
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


@functools.lru_cache(maxsize=64)
def _horizon(week: str, last_week: str | None) -> int | None:
    return horizon_weeks(week, last_week)


RunKey = tuple[str, str, tuple[str, ...], str, str | None]


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
        version, variant, features, source, last_week = key
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
                itertools.repeat(source),
                [_horizon(week, last_week) for week in weeks],
                strict=False,
            )
        )
    return rows


def _run_key(event: PredictionEventLike) -> RunKey | None:
    """Answers with the same key are stacked together; dated answers (None) are not."""
    if getattr(event, "weeks", None) is not None:
        return None
    return (
        event.version,
        event.variant,
        tuple(event.features),
        getattr(event, "source", None) or "api",
        getattr(event, "last_trained_week", None),
    )
