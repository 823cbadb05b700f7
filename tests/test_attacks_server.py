"""The HTTP server and the prediction log against the attacks tried on them: a side file torn by a
kill, cross-site form posts to /web/*, slow connections, and SIGKILL right after a burst."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from hhforecast.serving import create_app
from hhforecast.watch.prediction_log import PredictionLog, PredictionRecord, PredictionRecorder

from .conftest import Project
from .test_prediction_log import answer, lock_in_another_process, logged, release

WEEK = {
    "acft": 249,
    "sum_daily_hours": 2539.5,
    "Cycles": 1591,
    "sum_uti_mensal": 11261.3,
    "age_fleet": 8037205.9,
}


def kept_line(hh: float) -> str:
    row = PredictionRecord("1.0.0", "5features", {"acft": 1.0}, hh, week="2024-01-01").row()
    return json.dumps(list(row)) + "\n"


# --- the side file ------------------------------------------------------------------------


def test_torn_lines_of_the_side_file_are_skipped_counted_and_the_whole_rows_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.sqlite"
    side = tmp_path / "log.sqlite.unwritten.jsonl"
    torn = kept_line(9.0)[:40]
    side.write_text(
        kept_line(1.0)
        + torn
        + "\n"
        + kept_line(2.0)
        + "[[[[[[[[[[" * 20  # nested past the limit: not a row either
        + "\n"
        + '["a row", "of the wrong shape"]\n'
        + kept_line(3.0)
        + torn  # the last line, torn by a kill while it was appended
    )
    with caplog.at_level(logging.WARNING, "hhforecast.watch.prediction_log"):
        recorder = PredictionRecorder(PredictionLog(path), background=False)
    assert logged(path) == [1.0, 2.0, 3.0]
    status = recorder.status()
    assert (status["rows_written"], status["kept_lines_skipped"]) == (3, 4)
    warnings = [r.getMessage() for r in caplog.records if "not whole rows" in r.getMessage()]
    assert warnings == [f"prediction log: skipped 4 line(s) of {side} that are not whole rows"]
    recorder.close()
    assert [p.name for p in tmp_path.iterdir() if "unwritten" in p.name] == []


def test_the_skipped_lines_show_in_ready(trained_project: Project) -> None:
    database = trained_project.models / "predictions.sqlite"
    side = database.with_name("predictions.sqlite.unwritten.jsonl")
    side.write_text(kept_line(1.0) + kept_line(2.0)[:30])
    recorder = PredictionRecorder.from_settings(trained_project.settings, background=False)
    app = create_app(trained_project.settings, follow_production=False, prediction_log=recorder)
    with TestClient(app) as client:
        check = client.get("/ready").json()["checks"]["prediction_log"]
    assert (check["rows_written"], check["kept_lines_skipped"]) == (1, 1)


def test_rows_kept_after_a_torn_line_start_on_a_line_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    side = tmp_path / "log.sqlite.unwritten.jsonl"
    recorder = PredictionRecorder(PredictionLog(path), shutdown_seconds=0.2, background=False)
    recorder(answer(1.0))
    assert recorder.flush()
    side.write_text(kept_line(5.0)[:25])  # an earlier process was killed while appending
    locker = lock_in_another_process(path)
    try:
        recorder(answer(2.0))
        recorder(answer(3.0))
        recorder.close()  # locked: the two rows are appended to the side file
    finally:
        release(locker)
    again = PredictionRecorder(PredictionLog(path), background=False)
    again.close()
    assert logged(path) == [1.0, 2.0, 3.0]
    assert again.status()["kept_lines_skipped"] == 1
