"""`hhforecast forecast --plan`: dated forecasts with intervals and horizons, logged or said not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hhforecast.modeling.forecast import forecast_plan
from hhforecast.watch.prediction_log import PredictionLog

from .conftest import Project, write_config

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


@pytest.fixture
def plan(trained_project: Project) -> Path:
    """Eight weeks after the sample's last week (2023-12-25), dated by their Mondays."""
    from hhforecast.datasets.weekly import sample_dataset_path

    sample = pd.read_csv(sample_dataset_path())
    weeks = sample.tail(8)[FEATURES].copy()
    weeks.insert(0, "date", pd.date_range("2024-01-01", periods=8, freq="7D").strftime("%Y-%m-%d"))
    path = trained_project.root / "plan.csv"
    weeks.to_csv(path, index=False)
    return path


def test_each_planned_week_is_forecast_by_its_monday_with_its_horizon(
    trained_project: Project, plan: Path
) -> None:
    from hhforecast.modeling.predict import load_model, predict_frame

    result = forecast_plan(trained_project.settings, plan)
    frame = result.frame
    assert frame["week"].tolist()[:2] == ["2024-01-01", "2024-01-08"]
    assert result.last_trained_week == "2023-12-25"
    assert frame["horizon"].tolist() == list(range(1, 9))
    # The same numbers the batch scorer gives for the same rows.
    scored = predict_frame(load_model(trained_project.settings), pd.read_csv(plan))
    assert frame["HH_pred"].tolist() == scored["HH_pred"].tolist()
    assert frame["HH_upper"].tolist() == scored["HH_upper"].tolist()
    assert frame["out_of_range"].tolist() == scored["out_of_range"].tolist()
    assert result.version == "1.1.0" and result.variant == "5features"


def test_forecast_logs_every_week_with_source_version_and_horizon(
    trained_project: Project, plan: Path, cli
) -> None:
    out = trained_project.root / "forecast.csv"
    result = cli("forecast", "--plan", plan, "--output", out, "--config", trained_project.config)
    assert result.exit_code == 0, result.stderr
    assert "Logged 8 forecasts to" in result.stdout
    table = result.stdout.split("Wrote 8 forecasts")[0]  # the lines after name long paths
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "2024-01-08" in result.stdout
    written = pd.read_csv(out)
    assert written["week"].tolist()[0] == "2024-01-01"
    assert set(written["model_version"]) == {"1.1.0"}
    logged = PredictionLog.from_settings(trained_project.settings).frame()
    assert logged["week"].tolist() == written["week"].tolist()
    assert set(logged["source"]) == {"cli"}
    assert logged["horizon"].tolist() == list(range(1, 9))
    assert logged["hh_pred"].tolist() == written["HH_pred"].tolist()
    assert logged["hh_lower"].tolist() == written["HH_lower"].tolist()


def test_json_says_logged_only_when_it_was(trained_project: Project, plan: Path, cli) -> None:
    result = cli("forecast", "--plan", plan, "--json", "--config", trained_project.config)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["logged"] is True and data["log"]["rows"] == 8
    assert data["not_logged"] is None
    assert [w["horizon"] for w in data["weeks"]] == list(range(1, 9))
    assert data["weeks"][0]["HH_lower"] <= data["weeks"][0]["HH"] <= data["weeks"][0]["HH_upper"]

    unlogged = cli(
        "forecast", "--plan", plan, "--json", "--no-log", "--config", trained_project.config
    )
    assert json.loads(unlogged.stdout)["logged"] is False
    assert len(PredictionLog.from_settings(trained_project.settings).frame()) == 8

    database = trained_project.models / "predictions.sqlite"
    database.unlink()
    database.write_bytes(b"not a database at all " * 200)
    broken = cli("forecast", "--plan", plan, "--json", "--config", trained_project.config)
    assert broken.exit_code == 0
    data = json.loads(broken.stdout)
    assert data["logged"] is False and data["log"]["rows"] == 0
    assert "file is not a database" in data["log"]["problem"]
    assert "Warning: the forecasts were NOT logged" in broken.stderr


def test_a_bad_plan_is_one_error_line_and_exit_2(trained_project: Project, cli) -> None:
    bad = trained_project.root / "bad.csv"
    bad.write_text("date,acft\n2024-01-01,250\n")
    result = cli("forecast", "--plan", bad, "--config", trained_project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: plan {bad}: missing column(s)")
    assert "sum_daily_hours" in result.stderr and "Traceback" not in result.stderr
    assert not (trained_project.models / "predictions.sqlite").exists()


def plan_file(folder: Path, dates: list[str]) -> Path:
    from hhforecast.datasets.weekly import sample_dataset_path

    weeks = pd.read_csv(sample_dataset_path()).tail(len(dates))[FEATURES].copy()
    weeks.insert(0, "date", dates)
    path = folder / "plan.csv"
    weeks.to_csv(path, index=False)
    return path


def test_any_day_names_its_week_as_the_api_does(trained_project: Project, cli, columns80) -> None:
    mondays = ["2024-01-01", "2024-01-08", "2024-01-15"]
    by_monday = plan_file(trained_project.root, mondays)
    expected = forecast_plan(trained_project.settings, by_monday)
    # A Tuesday, a Monday and a Sunday: the weeks of Mondays 1, 8 and 15 January.
    plan = plan_file(trained_project.root, ["2024-01-02", "2024-01-08", "2024-01-21"])
    result = forecast_plan(trained_project.settings, plan)
    assert result.frame["week"].tolist() == mondays
    assert result.frame["horizon"].tolist() == [1, 2, 3]
    assert result.frame["HH_pred"].tolist() == expected.frame["HH_pred"].tolist()
    note = (
        "2 plan date(s) are not Mondays: a date names the week (Monday to Sunday) that holds it, "
        "so 2024-01-02 is the week of Monday 2024-01-01."
    )
    assert result.notes == (note,)
    assert expected.notes == ()
    shown = cli("forecast", "--plan", plan, "--no-log")
    assert shown.exit_code == 0, shown.stderr
    assert f"Note: {note}\n" in shown.stdout
    assert json.loads(cli("forecast", "--plan", plan, "--no-log", "--json").stdout)["notes"] == [
        note
    ]


def test_two_dates_of_one_week_are_refused_as_a_plan(trained_project: Project, cli) -> None:
    plan = plan_file(trained_project.root, ["2024-01-01", "2024-01-03"])
    result = cli("forecast", "--plan", plan)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: plan {plan}: column 'date', line 3: week 2024-01-01 appears twice. A plan has "
        "one row per week, weeks in date order with none missing; any day names the week (Monday "
        "to Sunday) that holds it, read as that week's Monday (see docs/commands.md).\n"
    )


def test_forecast_says_why_the_nearest_week_is_weeks_ahead(trained_project: Project, cli) -> None:
    plan = plan_file(trained_project.root, ["2024-01-15", "2024-01-22"])
    result = cli("forecast", "--plan", plan, "--no-log")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2] == (
        "Note: ahead counts from 2023-12-25, the last week of version 1.1.0's data; if its "
        "dataset was built from logs exported mid-month, `dataset build` left out that month's "
        "weeks, as sum_uti_mensal needs the whole month (docs/data.md)."
    )
    near = plan_file(trained_project.root, ["2024-01-01"])
    assert "Note:" not in cli("forecast", "--plan", near, "--no-log").stdout


def test_the_note_names_the_weeks_dataset_build_left_out(project: Project, cli) -> None:
    # Logs that stop on Sunday 2024-01-14: January 2024 is only half in them.
    assert cli("sample", "--raw", "raw", "--weeks", "262").exit_code == 0
    for name, column in (("utilization.csv", "Dep. Date"), ("events.csv", "date")):
        log = pd.read_csv(project.root / "raw" / name)
        log[log[column] <= "2024-01-14"].to_csv(project.root / "raw" / name, index=False)
    built = cli(
        "dataset", "build", "--utilization", "raw/utilization.csv", "--events", "raw/events.csv"
    )
    assert built.exit_code == 0, built.stderr
    trained = cli("train", "--dataset", "data/weekly.csv", "--version", "1.0.0", "--json")
    assert trained.exit_code == 0, trained.stderr
    plan = plan_file(project.root, ["2024-01-15"])
    result = cli("forecast", "--plan", plan, "--no-log", "--json")
    assert json.loads(result.stdout)["notes"] == [
        "ahead counts from 2023-12-25, the last week of version 1.0.0's data; `dataset build` "
        "left out the 2 week(s) from 2024-01-01 because their month is not wholly in the logs "
        "(sum_uti_mensal is a whole month's flight hours)."
    ]


def test_horizons_count_from_the_week_the_served_fit_was_trained_through(
    trained_project: Project, plan: Path, cli
) -> None:
    from .conftest import rerecord

    # A version whose served fit learnt up to 2022-09-26 (as with --score-served-fit), though
    # its dataset ends on 2023-12-25: the plan's first week is 66 weeks after what it learnt.
    folder = trained_project.models / "1.1.0"
    meta_path = folder / "model_metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata["trained_through"] = "2022-09-26"
    meta_path.write_text(json.dumps(metadata))
    rerecord(folder)
    result = cli(
        "forecast", "--plan", plan, "--json", "--no-log", "--config", trained_project.config
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["last_trained_week"] == "2022-09-26"
    assert [w["horizon"] for w in data["weeks"]] == list(range(66, 74))


def test_versions_without_trained_through_count_from_the_end_of_their_training_weeks(
    trained_project: Project, plan: Path
) -> None:
    from hhforecast.modeling.artifacts import trained_through

    # Trained before the field existed: the served fit was the scored fit, which learnt the
    # fit and validation weeks, not the test weeks after them.
    metadata = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    del metadata["trained_through"]
    assert trained_through(metadata) == metadata["split"]["validation"]["end"] == "2022-09-26"
    del metadata["split"]
    assert trained_through(metadata) == "2023-12-25"


def test_weeks_outside_the_training_range_are_logged_only_once_confirmed(
    trained_project: Project, cli, columns80
) -> None:
    """As the web page: forecasts from inputs the model never saw are shown, not logged, and
    the planner is told which weeks, which inputs, and how to log them anyway."""
    metadata = json.loads((trained_project.models / "1.1.0" / "model_metadata.json").read_text())
    high = metadata["variants"]["5features"]["feature_ranges"]["acft"][1]
    plan = plan_file(trained_project.root, ["2024-01-01", "2024-01-08", "2024-01-15"])
    weeks = pd.read_csv(plan)
    weeks.loc[1:, "acft"] = high + 40
    weeks.to_csv(plan, index=False)

    shown = cli("forecast", "--plan", plan)
    assert shown.exit_code == 1
    assert shown.stderr == (
        "Not logged: 2 of the 3 weeks have inputs outside the range version 1.1.0 was trained "
        "on (2024-01-08: acft; 2024-01-15: acft), so no week of the plan was logged; check "
        "these weeks' inputs, or log the plan as it is: run the command again with "
        "--confirm-out-of-range.\n"
    )
    assert "2024-01-15" in shown.stdout and "Logged" not in shown.stdout
    assert not (trained_project.models / "predictions.sqlite").exists()  # nothing logged

    scripted = cli("forecast", "--plan", plan, "--json")
    assert scripted.exit_code == 1
    data = json.loads(scripted.stdout)
    assert [w["week"] for w in data["weeks"]] == ["2024-01-01", "2024-01-08", "2024-01-15"]
    assert data["logged"] is False and data["log"]["rows"] == 0
    assert data["not_logged"] == {
        "reason": "2 of the 3 weeks have inputs outside the range version 1.1.0 was trained on "
        "(2024-01-08: acft; 2024-01-15: acft), so no week of the plan was logged",
        "weeks": [
            {"week": "2024-01-08", "out_of_range": ["acft"]},
            {"week": "2024-01-15", "out_of_range": ["acft"]},
        ],
        "confirm": "check these weeks' inputs, or log the plan as it is: run the command again "
        "with --confirm-out-of-range",
    }
    assert not (trained_project.models / "predictions.sqlite").exists()  # nothing logged

    unlogged = cli("forecast", "--plan", plan, "--no-log", "--json")
    assert unlogged.exit_code == 0 and json.loads(unlogged.stdout)["not_logged"] is None

    confirmed = cli("forecast", "--plan", plan, "--confirm-out-of-range", "--json")
    assert confirmed.exit_code == 0, confirmed.stderr
    data = json.loads(confirmed.stdout)
    assert data["logged"] is True and data["not_logged"] is None and data["log"]["rows"] == 3
    logged = PredictionLog.from_settings(trained_project.settings).frame()
    assert logged["week"].tolist() == ["2024-01-01", "2024-01-08", "2024-01-15"]


def test_no_log_opens_no_prediction_log(
    trained_project: Project, plan: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-log opens nothing: no file is created, and a log that is locked, cannot be opened
    or needs a driver that is not installed does not matter."""
    import sqlite3
    import sys

    models = trained_project.models
    database = models / "predictions.sqlite"
    before = sorted(p.name for p in models.iterdir())
    result = cli("forecast", "--plan", plan, "--no-log", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["logged"] is False
    assert data["log"] == {"path": str(database), "rows": 0, "problem": None}
    assert sorted(p.name for p in models.iterdir()) == before  # no log, no side file

    assert cli("forecast", "--plan", plan).exit_code == 0  # the log now exists
    holder = sqlite3.connect(database)
    holder.execute("BEGIN EXCLUSIVE")  # nobody else can read or write it now
    try:
        result = cli("forecast", "--plan", plan, "--no-log")
        assert result.exit_code == 0 and result.stderr == ""
        assert result.stdout.endswith("Not logged (--no-log).\n")
    finally:
        holder.rollback()
        holder.close()

    # A PostgreSQL log without psycopg installed: refused when logging, not with --no-log.
    write_config(trained_project.root, monitoring={"database": "postgresql://u:p@127.0.0.1:9/hh"})
    monkeypatch.setitem(sys.modules, "psycopg", None)  # importing it raises ImportError
    refused = cli("forecast", "--plan", plan)
    assert refused.exit_code == 2
    assert refused.stderr == (  # the extra's name in brackets is text, not terminal markup
        "Error: monitoring.database is a PostgreSQL URL (postgresql://u:***@127.0.0.1:9/hh), "
        "but psycopg is not installed: pip install 'hhforecast[postgres]'\n"
    )
    result = cli("forecast", "--plan", plan, "--no-log", "--json")
    assert result.exit_code == 0, result.stderr
    log = json.loads(result.stdout)["log"]
    assert log == {"path": "postgresql://u:***@127.0.0.1:9/hh", "rows": 0, "problem": None}
    assert not (models / "prediction-log.unwritten.jsonl").exists()
