"""The service's prediction log: answers queued on the request path, written in cycles.

`PredictionRecorder` is the service's `on_prediction` hook. The request path only counts the
rows and appends the answer to a queue (well under a microsecond); every `interval` a write
cycle turns whatever has accumulated into rows and writes them to the `PredictionLog`
(prediction_store.py) in one transaction. The service runs the cycles on its event loop
(`background=False`, serving/app.py); elsewhere a thread of the recorder's own does.

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
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from hhforecast.config import Settings
from hhforecast.watch.log_store import open_prediction_log
from hhforecast.watch.prediction_rows import (
    PredictionEvent,
    events_rows,
    kept_rows,
    rows_or_none,
    split_answer,
)
from hhforecast.watch.prediction_store import (
    COLUMNS,
    LogWriteError,
    PredictionLogError,
    PredictionRecord,
    PredictionStore,
    week_of,
)
from hhforecast.watch.sqlite_store import PredictionLog

__all__ = [
    "PredictionEvent",
    "PredictionLog",
    "PredictionLogError",
    "PredictionRecord",
    "PredictionRecorder",
    "events_rows",
    "week_of",
]

logger = logging.getLogger("hhforecast.watch.prediction_log")

WRITE_INTERVAL_SECONDS = 0.1
"""How often the service's prediction log is written: answers are queued in between."""
RETRY_SECONDS = 0.25
"""How often a write is retried while the log cannot be written."""
WRITER_BUSY_TIMEOUT_MS = 200
"""The writer waits this long on a lock, then retries later: it never blocks closing for long."""
LOOP_BUSY_TIMEOUT_MS = 5
"""The same wait when the service's event loop writes: a lock must not stall the answers."""
QUEUE_ROWS = 200_000
"""Rows held at most while the log cannot be written (about 100 MB at worst)."""
CYCLE_ROWS = 2_000
"""Rows one write cycle takes at most (about 10 ms of work): a 10,000-row batch is written over
five cycles, and the event loop answers requests in between."""
SHUTDOWN_SECONDS = 10.0
"""How long closing waits for a locked log before keeping the rows in the side file."""

ROLE = COLUMNS.index("role")

Progress = Callable[[int, int, int], None]
"""Called by the writer with (rows written since the last call, rows dropped since, queued)."""


def answered(rows: list[tuple[Any, ...]]) -> int:
    """How many of `rows` are production's answers. The queue counts answers' rows; a
    challenger's rows ride along with them and are never counted on their own."""
    return sum(1 for row in rows if row[ROLE] != "challenger")


class PredictionRecorder:
    """The service's `on_prediction` hook: queues each answer, a background thread logs them."""

    def __init__(
        self,
        log: PredictionStore,
        interval: float = WRITE_INTERVAL_SECONDS,
        capacity: int = QUEUE_ROWS,
        shutdown_seconds: float = SHUTDOWN_SECONDS,
        background: bool = True,
    ) -> None:
        self.log = log
        log.busy_timeout_ms = min(
            log.busy_timeout_ms, WRITER_BUSY_TIMEOUT_MS if background else LOOP_BUSY_TIMEOUT_MS
        )
        self.interval = interval
        self.capacity = capacity
        self.shutdown_seconds = shutdown_seconds
        self.spill_path = log.spill_path
        # deque.append and popleft are atomic: the request path never waits for the writer.
        self._incoming: collections.deque[Any] = collections.deque()
        self._held: list[tuple[Any, ...]] = []  # writer thread only
        self._lock = threading.Lock()  # the counters below
        self._written_cond = threading.Condition()
        self.accepted = 0
        self.rows_written = 0
        self.rows_dropped = 0
        self.spill_lines_skipped = 0
        """Lines of the side file that were not whole rows (torn by a kill), skipped."""
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
        self._behind = False  # the last cycle left answers for the next one
        self._cycle_lock = threading.Lock()  # one write cycle at a time (loop, flush, close)
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name="hhforecast-prediction-log", daemon=True
            )
            self._thread.start()
        else:
            self._begin()
        # Rows still queued when the process exits are written (or kept) before it ends.
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Settings, background: bool = True) -> PredictionRecorder:
        """A recorder writing to `monitoring.database`, holding at most `monitoring.queue_rows`.

        A log over the network (PostgreSQL) is always written from a thread of the recorder's
        own: a server slow to answer must not stall the event loop that answers requests.
        """
        log = open_prediction_log(settings)
        return cls(
            log,
            capacity=settings.monitoring.queue_rows,
            background=background or log.may_block,
        )

    @property
    def background(self) -> bool:
        """True when a thread of its own writes; else the owner calls `cycle()`."""
        return self._thread is not None

    def observe(self, on_progress: Progress) -> None:
        """Have the writer report its progress (the service's metrics)."""
        self._on_progress = on_progress

    def __call__(self, event: PredictionEvent) -> None:
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
            "path": self.log.location,
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "queue_depth": self._pending,
            "queue_capacity": self.capacity,
            "reopened": self.log.reopened,
            "kept_lines_skipped": self.spill_lines_skipped,
        }

    def _begin(self) -> None:
        try:
            self._take_spilled()
        finally:
            self._started.set()

    def _run(self) -> None:
        self._begin()
        # The writer wakes on a timer, not on every answer: waking per request made the
        # thread fight the event loop for the GIL and cost a third of the service's throughput.
        while not self._stopping.is_set():
            self._wake.wait(self.next_delay())
            self._wake.clear()
            self.cycle()
        self._finish()

    def next_delay(self) -> float:
        """Seconds until the next write cycle: the retry delay while the log cannot be
        written, none while answers wait beyond what one cycle takes, else the interval."""
        if self.problem is not None:
            return RETRY_SECONDS
        return 0.0 if self._behind else self.interval

    def cycle(self) -> None:
        """Write what has been queued since the last cycle (held on if the log cannot take it),
        at most `CYCLE_ROWS` rows: a burst is written over several cycles, in between which
        the event loop answers requests.

        The background thread calls it every `interval`; without one (`background=False`) the
        owner does, from its event loop: the rows are then built on the thread that answers,
        with no second thread to hand the GIL to and back.
        """
        with self._cycle_lock:
            # Held rows first: with a challenger each answer holds two rows, and collecting a
            # cycle's worth of answers every cycle would outgrow what a cycle writes.
            full = self._collect(max(0, CYCLE_ROWS - len(self._held)))
            self._write_held(CYCLE_ROWS)
            self._behind = full or bool(self._held)
        self.report()

    def _finish(self) -> None:
        """Write what is held, waiting up to `shutdown_seconds` for the file; keep the rest in
        the side file."""
        deadline = time.monotonic() + self.shutdown_seconds
        while self._held or self._incoming:
            self.cycle()
            if time.monotonic() >= deadline:
                break
            if self.problem is not None:
                time.sleep(RETRY_SECONDS)
        with self._cycle_lock:
            self._collect(None)
            self._spill()
        self.report()

    def _collect(self, limit: int | None) -> bool:
        """Turn queued answers into held rows: at most `limit` rows (None: all of them); a
        larger answer is split and its other rows wait at the head of the queue. True when
        it stopped at the limit."""
        events: list[Any] = []
        rows = 0
        while limit is None or rows < limit:
            try:
                event = self._incoming.popleft()
            except IndexError:
                break
            n = len(event.predictions)
            if limit is not None and rows + n > limit:
                parts = split_answer(event, limit - rows)
                if parts is not None:
                    event, rest = parts
                    self._incoming.appendleft(rest)
                    n = limit - rows
            events.append(event)
            rows += n
        if not events:
            return False
        try:
            self._held.extend(events_rows(events))
        except Exception:  # a malformed answer must not stop the log of the others
            logger.exception("could not turn %d answer(s) into log rows", len(events))
            for event in events:
                built = rows_or_none(event)
                self._held.extend(built)
                lost = len(event.predictions) - len(built)
                if lost:  # counted, so that the queue depth and flush() stay true
                    self._settle(lost, dropped=True)
        return limit is not None and rows >= limit

    def _write_held(self, limit: int) -> None:
        if not self._held:
            return
        batch = self._held[:limit]
        try:
            self.log.record_rows(batch)
        except (LogWriteError, OSError) as exc:
            reason = f"cannot write {self.log.location} ({exc}); {len(self._held)} row(s) held"
            if self.problem is None or self.problem.split(";")[0] != reason.split(";")[0]:
                logger.error("prediction log: %s", reason)
            self.problem = reason
            return
        del self._held[: len(batch)]
        if self.problem is not None:
            logger.info("prediction log: writing again to %s", self.log.location)
        self.problem = None
        self._settle(answered(batch), written=True)

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
        try:
            self._append_kept(self._held)
        except OSError as exc:
            logger.error(
                "prediction log: %d row(s) could not be written to %s nor kept in %s (%s)",
                len(self._held),
                self.log.location,
                self.spill_path,
                exc,
            )
            self._settle(answered(self._held), dropped=True)
            self._held.clear()
            return
        logger.warning(
            "prediction log: %d row(s) kept in %s; they are written to the log when it next starts",
            len(self._held),
            self.spill_path,
        )
        self._settle(answered(self._held))
        self._held.clear()

    def _take_spilled(self) -> None:
        """Write rows an earlier recorder kept in the side file, then remove it.

        The file is first renamed to a name of this process's own: when several service
        workers start together, one of them takes it and the others find nothing, so no row
        is written twice. A line that is not a whole row (the process was killed while
        appending it, or the file was edited) is skipped and counted, never fatal.
        """
        claimed = self.spill_path.with_name(f"{self.spill_path.name}.{os.getpid()}")
        try:
            os.rename(self.spill_path, claimed)
            data = claimed.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("prediction log: cannot read %s (%s)", self.spill_path, exc)
            return
        rows, skipped = kept_rows(data)
        if skipped:
            self.spill_lines_skipped += skipped
            logger.warning(
                "prediction log: skipped %d line(s) of %s that are not whole rows",
                skipped,
                self.spill_path,
            )
        try:
            self.log.record_rows(rows)
        except (LogWriteError, OSError) as exc:
            logger.error("prediction log: %s kept for later (%s)", self.spill_path, exc)
            self._append_kept(rows)
            claimed.unlink(missing_ok=True)
            return
        claimed.unlink(missing_ok=True)
        with self._lock:
            self.rows_written += answered(rows)
        logger.info("prediction log: wrote %d kept row(s) from %s", len(rows), self.spill_path)

    def _append_kept(self, rows: list[tuple[Any, ...]]) -> None:
        """Append rows to the side file, one JSON list a line, on a line of their own even
        when the file ends with a line torn by a killed process."""
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        with open(self.spill_path, "a+b") as out:
            if out.tell() > 0:
                out.seek(-1, os.SEEK_END)
                if out.read(1) != b"\n":
                    lines = "\n" + lines
            out.write(lines.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far has left the queue (written, or counted as
        dropped); False if it had not in time."""
        target = self.accepted
        self._started.wait(timeout)
        if self._thread is None:
            deadline = time.monotonic() + timeout
            while True:
                self.cycle()
                if self._settled >= target:
                    return True
                if time.monotonic() >= deadline:
                    return False
                if self.problem is not None:
                    time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
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
        if self._thread is not None:
            self._thread.join(timeout=self.shutdown_seconds + 30)
        else:
            self._finish()
        self.log.close()
        atexit.unregister(self.close)
