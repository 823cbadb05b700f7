"""`hhforecast forecast --plan`: dated forecasts with intervals and horizons, logged or said not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hhforecast.modeling.forecast import forecast_plan
from hhforecast.watch.prediction_log import PredictionLog

from .conftest import Project

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
    assert result.stderr.startswith("Error: dataset ")
    assert "sum_daily_hours" in result.stderr and "Traceback" not in result.stderr
    assert not (trained_project.models / "predictions.sqlite").exists()


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
