"""The prediction log (SQLite) and the error per week and month, checked against hand sums."""

import math
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhforecast.config import load_settings
from hhforecast.registry.store import Registry
from hhforecast.watch.monitor import run_monitor
from hhforecast.watch.prediction_log import (
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    week_of,
)

from .conftest import Project, write_config

INPUTS = {"acft": 250.0, "sum_daily_hours": 2400.0, "Cycles": 1500.0}
EARLY = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
LATE = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

# week: (predicted, realised); January has five weeks (29 January starts in January)
WEEKS = {
    "2024-01-01": (100.0, 110.0),
    "2024-01-08": (200.0, 190.0),
    "2024-01-15": (300.0, 330.0),
    "2024-01-22": (400.0, 400.0),
    "2024-01-29": (500.0, 480.0),
    "2024-02-05": (600.0, 700.0),
    "2024-02-12": (700.0, 600.0),
}


def record(week: str | None, hh: float, version: str = "1.0.0", **kwargs) -> PredictionRecord:
    return PredictionRecord(
        version=version,
        variant="5features",
        inputs=INPUTS,
        hh_pred=hh,
        hh_lower=hh - 50,
        hh_upper=hh + 50,
        week=week,
        **kwargs,
    )


def test_the_week_is_the_monday_of_the_given_day_else_of_the_logging_time(
    tmp_path: Path,
) -> None:
    assert week_of("2024-01-03") == "2024-01-01"
    assert week_of("2024-01-07T23:00:00") == "2024-01-01"
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record(
        [
            record("2024-01-03", 1.0),
            record(None, 2.0, logged_at=datetime(2024, 1, 10, 9, 0, tzinfo=UTC)),
        ]
    )
    frame = log.frame()
    assert frame["week"].tolist() == ["2024-01-01", "2024-01-08"]
    assert frame["logged_at"].tolist()[1] == "2024-01-10T09:00:00.000000+00:00"
    assert frame["hh_lower"].tolist() == [-49.0, -48.0]
    assert frame["inputs"].iloc[0] == '{"Cycles": 1500.0, "acft": 250.0, "sum_daily_hours": 2400.0}'
    with sqlite3.connect(tmp_path / "log.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    log.close()


def test_concurrent_request_threads_lose_no_prediction(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    errors: list[BaseException] = []

    def serve(thread: int) -> None:
        try:
            for batch in range(20):
                log.record([record("2024-01-01", thread * 1000 + batch * 10 + i) for i in range(5)])
        except BaseException as exc:  # surfaced below: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    frame = log.frame()
    assert len(frame) == 8 * 20 * 5
    assert frame["hh_pred"].nunique() == 800
    log.close()


def test_scored_rows_are_logged_with_their_date(tmp_path: Path) -> None:
    scored = pd.DataFrame(
        {
            "date": ["2024-01-02", None],
            "acft": [250, 251],
            "HH_pred": [1000.0, 1100.0],
            "HH_lower": [900.0, 1000.0],
            "HH_upper": [1100.0, 1200.0],
        }
    )
    log = PredictionLog(tmp_path / "log.sqlite")
    assert log.record_frame("1.0.0", "4features", ["acft"], scored, logged_at=LATE) == 2
    frame = log.frame()
    assert frame["week"].tolist() == ["2024-01-01", "2024-02-26"]
    assert frame["inputs"].tolist() == ['{"acft": 250.0}', '{"acft": 251.0}']
    log.close()


def _monitored_project(trained_project: Project, limit: float) -> tuple[Project, float]:
    """Log the WEEKS predictions for 1.0.0 and set error_factor so that its limit is `limit`."""
    rmse = Registry(trained_project.settings).get("1.0.0").metric("5features", "RMSE")
    assert rmse is not None
    write_config(trained_project.root, monitoring={"error_factor": limit / rmse})
    settings = load_settings(trained_project.config)
    log = PredictionLog.from_settings(settings)
    # An earlier forecast of the first week is superseded by the later one.
    log.record([record("2024-01-01", 999.0, logged_at=EARLY)])
    log.record([record(week, predicted, logged_at=LATE) for week, (predicted, _) in WEEKS.items()])
    log.record(
        [
            record("2024-01-01", 150.0, version="1.1.0", logged_at=LATE),
            record("2024-03-04", 800.0, logged_at=LATE),  # not realised yet: ignored
        ]
    )
    log.close()
    actuals = trained_project.root / "actuals.csv"
    pd.DataFrame({"date": list(WEEKS), "HH": [realised for _, realised in WEEKS.values()]}).to_csv(
        actuals, index=False
    )
    return trained_project, rmse


def test_error_per_week_and_month_matches_hand_sums(trained_project: Project) -> None:
    project, _ = _monitored_project(trained_project, limit=50.0)
    weekly = run_monitor(project.settings, project.root / "actuals.csv", "week")
    rows = {(p.period, p.version): p for p in weekly.periods}
    assert len(rows) == 8
    assert rows[("2024-01-01", "1.0.0")].mae == pytest.approx(10.0)  # 100 vs 110, not 999
    assert rows[("2024-01-01", "1.1.0")].mae == pytest.approx(40.0)
    assert rows[("2024-01-01", "1.1.0")].limit is not None
    assert rows[("2024-02-05", "1.0.0")].rmse == pytest.approx(100.0)
    assert rows[("2024-02-05", "1.0.0")].mape == pytest.approx(100 * 100 / 700)
    assert [p.period for p in weekly.periods if p.flagged] == ["2024-02-05", "2024-02-12"]

    monthly = run_monitor(project.settings, project.root / "actuals.csv", "month")
    by_month = {(p.period, p.version): p for p in monthly.periods}
    january = by_month[("2024-01", "1.0.0")]
    assert january.weeks == 5
    assert january.mae == pytest.approx((10 + 10 + 30 + 0 + 20) / 5)
    assert january.rmse == pytest.approx(math.sqrt((100 + 100 + 900 + 0 + 400) / 5))
    assert january.mape == pytest.approx(
        100 * (10 / 110 + 10 / 190 + 30 / 330 + 0 / 400 + 20 / 480) / 5
    )
    assert january.limit == pytest.approx(50.0)
    assert january.in_interval == 1.0  # every January error is within the ±50 interval
    assert not january.flagged
    february = by_month[("2024-02", "1.0.0")]
    assert (february.weeks, february.mae, february.rmse) == (2, 100.0, 100.0)
    assert february.in_interval == 0.0
    assert february.flagged
    assert monthly.verdict == "above limit"
    assert monthly.message == (
        "1 of 3 periods have an RMSE above "
        f"{monthly.error_factor:g} x the version's test RMSE: 2024-02 (1.0.0)"
    )


def test_no_prediction_log_is_bad_input(project: Project) -> None:
    actuals = project.root / "actuals.csv"
    actuals.write_text("date,HH\n2024-01-01,100\n")
    with pytest.raises(PredictionLogError) as caught:
        run_monitor(project.settings, actuals)
    path = project.root / "models" / "predictions.sqlite"
    assert str(caught.value) == (
        f"no prediction log at {path}: the service writes it once it has served a prediction "
        "(monitoring.database in the config names the file)"
    )
    assert caught.value.exit_code == 2


def test_a_wrong_period_is_bad_input(project: Project) -> None:
    with pytest.raises(PredictionLogError, match="--by 'year' is not a period; use week or month"):
        run_monitor(project.settings, project.root / "actuals.csv", "year")


def test_the_service_hook_queues_answers_and_logs_them_in_batches(tmp_path: Path) -> None:
    import numpy as np

    from hhforecast.serving.state import PredictionEvent
    from hhforecast.watch.prediction_log import PredictionRecorder

    recorder = PredictionRecorder(PredictionLog(tmp_path / "log.sqlite"))
    at = datetime(2024, 1, 10, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday
    x = np.array([[250.0, 2400.0], [251.0, 2410.0]])
    for i in range(30):
        recorder(
            PredictionEvent(
                at,
                "1.0.0",
                "4features",
                ["acft", "Cycles"],
                x,
                np.array([1000.0 + i, 2000.0]),
                np.array([900.0, 1900.0]),
                np.array([1100.0, 2100.0]),
            )
        )
    recorder.flush()
    frame = PredictionLog(tmp_path / "log.sqlite").frame()
    assert len(frame) == 60
    assert set(frame["week"]) == {"2024-01-08"}
    assert frame["inputs"].iloc[1] == '{"Cycles": 2410.0, "acft": 251.0}'
    assert frame["hh_pred"].iloc[58] == 1029.0
    recorder(
        PredictionEvent(
            at,
            "1.0.0",
            "4features",
            ["acft", "Cycles"],
            x[:1],
            np.array([5.0]),
            np.array([4.0]),
            np.array([6.0]),
        )
    )
    recorder.close()  # what is queued is written before the writer stops
    assert len(PredictionLog(tmp_path / "log.sqlite").frame()) == 61


def test_bulk_event_rows_equal_the_per_record_rows() -> None:
    from types import SimpleNamespace

    from hhforecast.watch.prediction_log import event_records, events_rows

    x = np.array([[249.0, 2539.5, 1591.0, 11261.3, 8037205.9], [251.0, 2400.0, 1500.0, 1e4, 1e7]])
    event = SimpleNamespace(
        at=1_795_694_121.5,
        version="1.0.0",
        variant="5features",
        features=("acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"),
        x=x,
        predictions=np.array([1200.5, 1300.25]),
        lower=np.array([900.0, 1000.0]),
        upper=np.array([1500.0, 1600.0]),
    )
    assert events_rows([event]) == [r.row() for r in event_records(event)]
    dated = SimpleNamespace(**{**vars(event), "weeks": ["2026-12-02", None]})
    rows = events_rows([dated])
    assert [r[1] for r in rows] == ["2026-11-30", rows[1][1]]
    assert rows == [r.row() for r in event_records(dated)]
    # A run of answers: stacked where they share a model, in order, dated ones row by row.
    later = SimpleNamespace(**{**vars(event), "at": 1_795_780_521.25, "version": "1.1.0"})
    one_row = SimpleNamespace(
        **{**vars(event), "x": x[:1], "predictions": np.array([7.0]), "lower": np.array([6.0])}
    )
    one_row.upper = np.array([8.0])
    mixed = [event, one_row, dated, later, event]
    expected = [row for e in mixed for row in (r.row() for r in event_records(e))]
    assert events_rows(mixed) == expected
    assert len(expected) == 9


def test_rows_are_written_several_per_statement_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hhforecast.watch.prediction_store as monitoring

    log = PredictionLog(tmp_path / "log.sqlite")
    rows = [record(None, float(i), logged_at=EARLY).row() for i in range(25)]
    monkeypatch.setattr(monitoring, "ROWS_PER_INSERT", 4)
    assert log.record_rows(rows[:10]) == 10
    # An old SQLite that binds at most 21 variables a statement: two rows of ten each.
    monkeypatch.setattr(monitoring, "_variable_limit", lambda connection: 21)
    assert log.record_rows(rows[10:]) == 15
    frame = log.frame()
    assert frame["hh_pred"].tolist() == [float(i) for i in range(25)]
    assert (
        frame["inputs"].iloc[24] == '{"Cycles": 1500.0, "acft": 250.0, "sum_daily_hours": 2400.0}'
    )
