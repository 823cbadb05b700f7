"""The prediction log's two backends behave alike: the judged forecast of each key and its count,
`compact` in one transaction, the upgrade of today's SQLite layout, and a PostgreSQL URL read
from the config."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hhforecast.config import load_settings
from hhforecast.watch.log_store import open_prediction_log, redacted
from hhforecast.watch.monitor import run_monitor
from hhforecast.watch.prediction_store import (
    PredictionLogError,
    PredictionRecord,
    PredictionStore,
)
from hhforecast.watch.sqlite_store import PredictionLog, schema_version

from .conftest import Project, write_config

INPUTS = {"acft": 250.0, "sum_daily_hours": 2400.0, "Cycles": 1500.0}
WEEK = "2024-01-08"


def at(day: int, hour: int = 8) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def record(hh: float, logged_at: datetime, week: str = WEEK, **kwargs: object) -> PredictionRecord:
    return PredictionRecord(
        version=str(kwargs.pop("version", "1.0.0")),
        variant="5features",
        inputs=INPUTS,
        hh_pred=hh,
        hh_lower=hh - 50,
        hh_upper=hh + 50,
        week=week,
        logged_at=logged_at,
        last_trained_week="2023-12-25",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`monitoring.database` for each backend: a file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "models" / "predictions.sqlite")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def log_project(tmp_path: Path, database: str) -> Project:
    return Project(tmp_path, write_config(tmp_path, monitoring={"database": database}))


def open_log(project: Project) -> PredictionStore:
    return open_prediction_log(project.settings)


def judged_rows(log: PredictionStore) -> list[tuple[str, str, float, int]]:
    frame = log.judged()
    return [
        (str(r.week), str(r.source), float(r.hh_pred), int(r.asked))
        for r in frame.sort_values(["week", "source"]).itertuples()
    ]


def test_the_judged_forecast_is_the_latest_before_its_week_else_the_latest(
    log_project: Project,
) -> None:
    log = open_log(log_project)
    # 8 January: three forecasts before the week (Friday 5th is the latest), two during it.
    log.record([record(1.0, at(3)), record(2.0, at(5)), record(3.0, at(4))])
    log.record([record(4.0, at(9)), record(5.0, at(10))])
    # 15 January, asked only during the week: the latest. The web page's are a key of their own.
    log.record([record(6.0, at(15), "2024-01-15"), record(7.0, at(16), "2024-01-15")])
    log.record([record(8.0, at(2), "2024-01-15", source="web")])
    assert judged_rows(log) == [
        ("2024-01-08", "api", 2.0, 5),
        ("2024-01-15", "api", 7.0, 2),
        ("2024-01-15", "web", 8.0, 1),
    ]
    log.close()


def test_compact_keeps_one_row_per_key_and_monitor_reads_the_same(log_project: Project) -> None:
    log = open_log(log_project)
    for day in range(1, 8):  # polled every hour for a week: 168 forecasts of one key
        log.record([record(100.0 + day + hour / 100, at(day, hour)) for hour in range(24)])
    log.record([record(500.0, at(2), "2024-01-15", version="1.1.0")])
    actuals = log_project.root / "actuals.csv"
    pd.DataFrame({"date": [WEEK, "2024-01-15"], "HH": [110.0, 480.0]}).to_csv(actuals, index=False)
    before = run_monitor(log_project.settings, actuals).to_dict()

    result = log.compact()

    assert (result.rows_before, result.rows_after, result.forecasts) == (169, 2, 169)
    assert len(log.frame()) == 2 and log.frame()["asked"].tolist() == [168, 1]
    after = run_monitor(log_project.settings, actuals).to_dict()
    assert after == before
    assert (after["forecasts_logged"], after["forecasts_matched"]) == (169, 169)
    assert after["forecasts_judged"] == 2
    assert [f["hh_pred"] for f in after["forecasts"]] == [107.23, 500.0]
    # Later forecasts of a compacted key are judged against the kept row, and counted on.
    log.record([record(1.0, at(8, 9))])  # during the week: the one before it stays judged
    assert judged_rows(log)[0] == ("2024-01-08", "api", 107.23, 169)
    assert log.compact().rows_after == 2
    log.close()


def test_compact_is_one_transaction(log_project: Project, database: str) -> None:
    log = open_log(log_project)
    log.record([record(float(i), at(1, i)) for i in range(5)])
    log.close()
    # A failure after the counts are moved onto the kept rows: nothing may be left changed.
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database, autocommit=True) as raw:
            raw.execute(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                "'disk gone'; END $$ LANGUAGE plpgsql"
            )
            raw.execute(
                "CREATE TRIGGER refuse BEFORE DELETE ON predictions FOR EACH ROW "
                "EXECUTE FUNCTION refuse()"
            )
    else:
        with sqlite3.connect(database) as raw:
            raw.execute(
                "CREATE TRIGGER refuse BEFORE DELETE ON predictions "
                "BEGIN SELECT RAISE(ABORT, 'disk gone'); END"
            )
    with pytest.raises(PredictionLogError, match=r"disk gone.*; nothing was changed"):
        log.compact()
    frame = log.frame()
    assert len(frame) == 5 and frame["asked"].tolist() == [1] * 5
    assert judged_rows(log) == [("2024-01-08", "api", 4.0, 5)]


def test_an_empty_database_is_no_log(log_project: Project, database: str) -> None:
    log = open_log(log_project)
    with pytest.raises(PredictionLogError, match=r"^no prediction log (at|in) "):
        log.judged()
    with pytest.raises(PredictionLogError, match=r"^no prediction log (at|in) "):
        log.compact()
    assert not Path(database).exists()  # compacting a missing file did not create it


TODAYS_SCHEMA = """
CREATE TABLE predictions (
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
CREATE INDEX predictions_week ON predictions (week);
"""
"""The layout released before the schema version table (layout 2)."""


def test_a_log_of_todays_layout_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "predictions.sqlite"
    with sqlite3.connect(path) as raw:
        raw.executescript(TODAYS_SCHEMA)
        raw.executemany(
            "INSERT INTO predictions (logged_at, week, version, variant, inputs, hh_pred, "
            "hh_lower, hh_upper, source, horizon) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                ("2024-01-03T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 1.0,
                 0.0, 2.0, "api", 2),
                ("2024-01-05T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 2.0,
                 1.0, 3.0, "api", 2),
                ("2024-01-09T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 3.0,
                 2.0, 4.0, "api", 2),
                ("2024-01-09T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 4.0,
                 None, None, "cli", None),
            ],
        )  # fmt: skip
    old = PredictionLog(path)
    read_before = old.judged()  # judged as read, the file untouched
    with sqlite3.connect(path) as raw:
        assert schema_version(raw) == 2

    old.record([record(9.0, at(20), "2024-01-22")])  # the first write upgrades it
    old.close()

    with sqlite3.connect(path) as raw:
        assert schema_version(raw) == 4
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
        roles = raw.execute("SELECT DISTINCT role FROM predictions").fetchall()
        assert roles == [("production",)]  # every earlier forecast was production's
    rows = old.frame()
    assert rows["hh_pred"].tolist() == [1.0, 2.0, 3.0, 4.0, 9.0]
    assert rows["asked"].tolist() == [1] * 5
    upgraded = old.judged()
    assert upgraded.iloc[:2].equals(read_before)
    assert [(float(r.hh_pred), int(r.asked)) for r in upgraded.itertuples()] == [
        (2.0, 3),
        (4.0, 1),
        (9.0, 1),
    ]


def test_a_log_newer_than_this_release_is_not_written(tmp_path: Path) -> None:
    from hhforecast.watch.prediction_store import LogWriteError

    path = tmp_path / "predictions.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(LogWriteError, match="layout is version 99, newer than this hhforecast's"):
        PredictionLog(path).record([record(1.0, at(3))])


def test_a_postgresql_url_names_the_log_and_its_password_stays_out_of_messages(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://hh:s3cret@db.example:5432/forecasts"
    settings = load_settings(write_config(project.root, monitoring={"database": url}))
    log = open_prediction_log(settings)
    assert log.location == "postgresql://hh:***@db.example:5432/forecasts"
    assert log.spill_path == project.root / "models" / "prediction-log.unwritten.jsonl"
    assert log.may_block
    assert redacted("postgresql://hh@db/x") == "postgresql://hh@db/x"
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(PredictionLogError) as caught:
        open_prediction_log(settings)
    assert str(caught.value) == (
        "monitoring.database is a PostgreSQL URL (postgresql://hh:***@db.example:5432/"
        "forecasts), but psycopg is not installed: pip install 'hhforecast[postgres]'"
    )


def test_log_compact_command(log_project: Project, cli, columns80: None) -> None:
    log = open_log(log_project)
    log.record([record(float(i), at(1, i)) for i in range(3)])
    log.close()
    result = cli("log", "compact", "--config", log_project.config)
    assert result.exit_code == 0
    where = open_log(log_project).location
    assert result.stdout == (
        f"Compacted {where}: 3 rows -> 1 (2 removed), standing for 3 forecasts.\n"
    )
    again = cli("log", "compact", "--json", "--config", log_project.config)
    assert again.exit_code == 0
    import json

    assert json.loads(again.stdout) == {
        "log": where,
        "rows_before": 1,
        "rows_after": 1,
        "rows_removed": 0,
        "forecasts": 3,
    }


def test_log_compact_without_a_log_is_bad_input(project: Project, cli) -> None:
    result = cli("log", "compact", "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"Error: no prediction log at {project.root / 'models' / 'predictions.sqlite'}: "
    )


def test_monitor_says_how_many_forecasts_were_asked_and_judged(
    log_project: Project, cli, columns80: None
) -> None:
    log = open_log(log_project)
    log.record([record(100.0 + i, at(1, i)) for i in range(6)])  # one key asked 6 times
    log.record([record(200.0, at(2), source="web"), record(300.0, at(2), "2024-01-22")])
    where = log.location
    log.close()
    actuals = log_project.root / "actuals.csv"
    pd.DataFrame({"date": [WEEK], "HH": [110.0]}).to_csv(actuals, index=False)
    result = cli("monitor", "--actuals", actuals, "--config", log_project.config)
    assert result.exit_code == 0
    summary = " ".join(result.stdout.split("─")[-1].split())
    assert summary.endswith(
        "Forecasts matched: 7 of 8 logged (api 6 (1.0.0), web 1 (1.0.0)); 2 judged (one per "
        f"week, version, source and horizon); 1 not realised yet. Log: {where} no alert: 2 "
        "forecasts judged in 1 realised weeks, errors within what the forecasts' intervals "
        "allow (not judged yet: 1 realised week of 5features; the deployment's first 13 give "
        "its usual error)"
    )
