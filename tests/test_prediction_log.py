"""The service's prediction log keeps what it accepted: deleted, replaced, locked, corrupt files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hhforecast.watch.prediction_log import PredictionLog, PredictionRecord, PredictionRecorder
from hhforecast.watch.prediction_rows import PredictionEvent

from .conftest import Project

FEATURES = ("acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet")
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday


def answer(hh: float, rows: int = 1, **extra: object) -> PredictionEvent:
    x = np.tile(np.array([[249.0, 2539.5, 1591.0, 11261.3, 8037205.9]]), (rows, 1))
    predictions = np.full(rows, hh)
    return PredictionEvent(
        AT,
        "1.0.0",
        "5features",
        FEATURES,
        x,
        predictions,
        predictions - 100,
        predictions + 100,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=[True, False], ids=["own thread", "driven by the owner"])
def background(request: pytest.FixtureRequest) -> bool:
    """Whether the recorder writes from a thread of its own or from its owner's cycle() calls
    (the service's event loop; here flush() and close() drive it)."""
    return bool(request.param)


def logged(path: Path) -> list[float]:
    with sqlite3.connect(path) as connection:
        return [r[0] for r in connection.execute("SELECT hh_pred FROM predictions ORDER BY id")]


def test_rows_are_dated_sourced_and_counted_in_weeks_ahead(
    tmp_path: Path, background: bool
) -> None:
    recorder = PredictionRecorder(PredictionLog(tmp_path / "log.sqlite"), background=background)
    recorder(answer(1.0, source="web", last_trained_week="2026-11-02"))
    recorder(answer(2.0, weeks=["2026-12-16"], last_trained_week="2026-11-02"))
    recorder(answer(3.0))
    assert recorder.flush()
    frame = recorder.log.frame()
    recorder.close()
    assert frame["week"].tolist() == ["2026-11-23", "2026-12-14", "2026-11-23"]
    assert frame["source"].tolist() == ["web", "api", "api"]
    # 2026-11-02 + 3 weeks is 2026-11-23; + 6 weeks is 2026-12-14; no dataset end: unknown.
    assert frame["horizon"].tolist()[:2] == [3, 6]
    assert frame["horizon"].isna().tolist() == [False, False, True]


def test_a_deleted_log_is_recreated_and_keeps_the_rows_that_follow(
    tmp_path: Path, background: bool
) -> None:
    path = tmp_path / "log.sqlite"
    recorder = PredictionRecorder(PredictionLog(path), background=background)
    recorder(answer(1.0, rows=5))
    assert recorder.flush()
    for name in ("log.sqlite", "log.sqlite-wal", "log.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    for i in range(100):
        recorder(answer(float(i)))
    assert recorder.flush()
    assert logged(path) == [float(i) for i in range(100)]
    assert recorder.status()["reopened"] == 1
    assert recorder.status()["status"] == "ok"
    recorder.close()


def test_a_replaced_log_receives_the_rows_that_follow(tmp_path: Path, background: bool) -> None:
    path = tmp_path / "log.sqlite"
    recorder = PredictionRecorder(PredictionLog(path), background=background)
    recorder(answer(1.0))
    assert recorder.flush()
    # A backup restored over the log: another file (another inode) at the same path.
    other = tmp_path / "restored.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, logged_at TEXT, "
            "week TEXT, version TEXT, variant TEXT, inputs TEXT, hh_pred REAL, "
            "hh_lower REAL, hh_upper REAL)"
        )
    other.replace(path)
    recorder(answer(2.0))
    recorder(answer(3.0))
    assert recorder.flush()
    assert logged(path) == [2.0, 3.0]  # the old table gained the new columns
    assert recorder.log.frame()["source"].tolist() == ["api", "api"]
    recorder.close()


def test_a_corrupt_log_degrades_holds_rows_and_drops_only_past_capacity(
    tmp_path: Path, background: bool
) -> None:
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"this is not a database " * 100)
    progress: list[tuple[int, int, int]] = []
    recorder = PredictionRecorder(PredictionLog(path), capacity=10, background=background)
    recorder.observe(lambda *counts: progress.append(counts))
    for i in range(12):
        recorder(answer(float(i)))
    assert not recorder.flush(timeout=0.5)
    status = recorder.status()
    assert status["status"] == "degraded"
    assert "file is not a database" in status["reason"]
    assert "10 row(s) held" in status["reason"]
    assert (status["rows_written"], status["rows_dropped"], status["queue_depth"]) == (0, 2, 10)
    assert sum(p[1] for p in progress) == 2 and progress[-1][2] == 10

    path.unlink()  # the operator removes the bad file: the held rows go to a new log
    assert recorder.flush()
    assert logged(path) == [float(i) for i in range(10)]
    status = recorder.status()
    assert (status["status"], status["rows_written"], status["queue_depth"]) == ("ok", 10, 0)
    assert sum(p[0] for p in progress) == 10
    recorder.close()


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


def lock_in_another_process(path: Path) -> subprocess.Popen[str]:
    """A process holding an exclusive lock on `path` until a line is sent to its stdin."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def release(locker: subprocess.Popen[str]) -> None:
    assert locker.stdin is not None
    locker.stdin.write("\n")
    locker.stdin.flush()
    assert locker.wait(10) == 0


def test_closing_while_locked_keeps_the_rows_for_the_next_recorder(
    tmp_path: Path, background: bool
) -> None:
    path = tmp_path / "log.sqlite"
    recorder = PredictionRecorder(PredictionLog(path), shutdown_seconds=0.5, background=background)
    recorder(answer(1.0))
    assert recorder.flush()
    locker = lock_in_another_process(path)
    try:
        for i in range(50):
            recorder(answer(float(i)))
        recorder.close()
    finally:
        release(locker)
    spill = tmp_path / "log.sqlite.unwritten.jsonl"
    assert len(spill.read_text().splitlines()) == 50
    assert recorder.status()["rows_dropped"] == 0
    again = PredictionRecorder(PredictionLog(path), background=background)
    assert again.flush()
    again.close()
    assert logged(path) == [1.0] + [float(i) for i in range(50)]
    assert sorted(p.name for p in tmp_path.iterdir() if "unwritten" in p.name) == []


def test_an_answer_that_cannot_become_a_row_is_counted_not_left_waiting(tmp_path: Path) -> None:
    recorder = PredictionRecorder(PredictionLog(tmp_path / "log.sqlite"))
    broken = answer(2.0)._replace(x=np.array([249.0]))  # one value, not a row of five
    for event in (answer(1.0), broken, answer(3.0)):
        recorder(event)
    assert recorder.flush()
    status = recorder.status()
    assert (status["rows_written"], status["rows_dropped"], status["queue_depth"]) == (2, 1, 0)
    assert logged(tmp_path / "log.sqlite") == [1.0, 3.0]
    recorder.close()


def test_a_log_written_before_source_and_horizon_reads_as_api(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, logged_at TEXT, "
            "week TEXT, version TEXT, variant TEXT, inputs TEXT, hh_pred REAL, hh_lower REAL, "
            "hh_upper REAL)"
        )
        connection.execute(
            "INSERT INTO predictions (logged_at, week, version, variant, inputs, hh_pred) "
            "VALUES ('2024-01-01T00:00:00+00:00', '2024-01-01', '1.0.0', '5features', '{}', 5.0)"
        )
    frame = PredictionLog(path).frame()
    assert frame["source"].tolist() == ["api"] and frame["horizon"].isna().all()
    with sqlite3.connect(path) as connection:  # reading changed nothing in the file
        columns = [row[1] for row in connection.execute("PRAGMA table_info(predictions)")]
    assert "source" not in columns


def test_kept_rows_are_written_once_when_several_workers_start(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    # The side file holds log rows in the table's column order, one JSON list a line.
    kept = PredictionRecord("1.0.0", "5features", {"acft": 1.0}, 7.0, week="2024-01-01").row()
    (tmp_path / "log.sqlite.unwritten.jsonl").write_text(
        "".join(json.dumps(list(kept)) + "\n" for _ in range(3))
    )
    workers = [PredictionRecorder(PredictionLog(path)) for _ in range(4)]
    for worker in workers:
        assert worker.flush()
        worker.close()
    assert logged(path) == [7.0, 7.0, 7.0]
    assert sum(w.rows_written for w in workers) == 3


def test_the_service_loop_keeps_writing_after_a_failed_cycle(tmp_path: Path) -> None:
    import asyncio

    from hhforecast.serving.app import _write_prediction_log

    path = tmp_path / "log.sqlite"
    recorder = PredictionRecorder(PredictionLog(path), interval=0.01, background=False)
    real_cycle, calls = recorder.cycle, []

    def cycle() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in one cycle")
        real_cycle()

    recorder.cycle = cycle  # type: ignore[method-assign]

    async def serve_a_while() -> None:
        writer = asyncio.create_task(_write_prediction_log(recorder))
        recorder(answer(1.0))
        await asyncio.sleep(0.2)
        recorder(answer(2.0))
        await asyncio.sleep(0.2)
        writer.cancel()

    asyncio.run(serve_a_while())
    # Written by the loop, before any flush or close: the failed first cycle did not stop it.
    assert len(calls) > 2 and logged(path) == [1.0, 2.0]
    recorder.close()


def test_a_big_answer_is_written_over_several_cycles_in_order(tmp_path: Path) -> None:
    from hhforecast.watch.prediction_log import CYCLE_ROWS

    path = tmp_path / "log.sqlite"
    recorder = PredictionRecorder(PredictionLog(path), background=False)
    rows = 2 * CYCLE_ROWS + 500
    big = answer(
        0.0, rows=rows, weeks=["2026-12-07"] * CYCLE_ROWS + ["2027-01-04"] * (rows - CYCLE_ROWS)
    )
    big = big._replace(predictions=np.arange(rows, dtype=float))
    recorder(answer(-1.0))
    recorder(big)
    recorder(answer(-2.0))
    written = []
    for _ in range(4):
        recorder.cycle()
        written.append(recorder.status()["rows_written"])
        assert recorder.next_delay() == (0.0 if written[-1] < rows + 2 else recorder.interval)
    # At most CYCLE_ROWS rows a cycle: the event loop answers requests between them.
    assert written == [CYCLE_ROWS, 2 * CYCLE_ROWS, rows + 2, rows + 2]
    assert logged(path) == [-1.0, *range(rows), -2.0]
    weeks = recorder.log.frame()["week"].tolist()
    assert weeks[1 : CYCLE_ROWS + 1] == ["2026-12-07"] * CYCLE_ROWS
    assert weeks[CYCLE_ROWS + 1 : -1] == ["2027-01-04"] * (rows - CYCLE_ROWS)
    recorder.close()


def test_a_challengers_rows_ride_with_the_answers_they_belong_to(
    tmp_path: Path, trained_project: Project, background: bool
) -> None:
    # Each answer holds two rows (production's, the challenger's); the queue counts answers:
    # flush() returns once every answer is written, and the queue is empty, never below zero.
    from hhforecast.modeling.artifacts import load_variant

    challenger = load_variant(trained_project.models / "1.1.0", "5features")
    recorder = PredictionRecorder(PredictionLog(tmp_path / "log.sqlite"), background=background)
    answers = 3000  # more than one write cycle takes
    for i in range(answers):
        recorder(answer(float(i), challenger=challenger))
    assert recorder.flush(timeout=60)
    roles = recorder.log.frame()["role"].value_counts().to_dict()
    assert roles == {"production": answers, "challenger": answers}
    status = recorder.status()
    assert (status["queue_depth"], status["rows_written"], status["rows_dropped"]) == (
        0,
        answers,
        0,
    )
    recorder.close()
