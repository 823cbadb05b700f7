"""`hhforecast drift` and `monitor` on a trained project: verdicts, exit codes, reports."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hhforecast._fs import file_sha256
from hhforecast.datasets.fleet import FleetChange, FleetProfile, simulate_weekly_dataset
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.modeling.predict import load_model, predict_frame
from hhforecast.watch.prediction_log import PredictionLog

from .conftest import Project, write_config

LAST_WEEKS = 26  # the sample's last 26 weeks come after the training weeks (time split)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_csv(sample_dataset_path())


@pytest.fixture(scope="module")
def changed(sample: pd.DataFrame) -> pd.DataFrame:
    """The sample's fleet (same seed, same weeks) losing 6 aircraft and flying longer, shorter
    sectors over its last 26 weeks; the weeks before are identical to the sample."""
    start = sample["date"].iloc[-LAST_WEEKS]
    change = FleetChange(start=start, aircraft_removed=6, hours_factor=1.15, sector_factor=0.8)
    weekly = simulate_weekly_dataset(
        seed=7, weeks=len(sample), profile=FleetProfile(changes=(change,))
    )
    return weekly.iloc[-LAST_WEEKS:]


def test_recent_weeks_of_the_same_fleet_pass(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli
) -> None:
    recent = tmp_path / "recent.csv"
    sample.iloc[-LAST_WEEKS:].to_csv(recent, index=False)
    report = tmp_path / "drift.html"
    result = cli(
        "drift", "--recent", recent, "--report", report, "--config", trained_project.config
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Verdict: no drift" in result.stdout
    assert "training-time test weeks" in result.stdout
    html = report.read_text()
    assert 'Verdict: <span class="ok">no drift</span>' in html
    # one histogram per signal: 5 features, sector length, HH, predictions, model error
    assert len(re.findall(r'alt="[^"]+ histogram" src="data:image/png;base64,', html)) == 9
    assert 'alt="predicted vs realised" src="data:image/png;base64,' in html


def test_a_shrunk_fleet_flying_longer_shorter_sectors_is_drift(
    trained_project: Project, changed: pd.DataFrame, tmp_path: Path, cli
) -> None:
    recent = tmp_path / "recent.csv"
    changed.to_csv(recent, index=False)
    result = cli("drift", "--recent", recent, "--json", "--config", trained_project.config)
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "drift"
    assert data["version"] == "1.1.0"  # production is the latest version
    assert {"acft", "sum_daily_hours", "Cycles", "sector_length"} <= set(data["drifted_features"])
    assert data["recent"]["weeks"] == 26
    # The reference is the weeks the served fit learnt: every week of the sample (the refit).
    assert data["reference"] == {
        "source": "drift_reference.csv",
        "weeks": 260,
        "start": "2019-01-07",
        "end": "2023-12-25",
    }
    assert set(data["performance"]) == {"recent", "training"}
    signals = {s["name"]: s for s in data["signals"]}
    assert signals["acft"]["mean_shift_pct"] < -10
    assert signals["prediction"]["role"] == "prediction"


def test_recent_weeks_the_version_learnt_are_warned_about(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli, columns80
) -> None:
    """Recent weeks inside the training weeks are compared with themselves: one warning line on
    stderr naming them, and `training_overlap` in --json; stronger when every week is inside."""
    later = simulate_weekly_dataset(seed=7, weeks=len(sample) + 12).iloc[-16:]  # 4 learnt
    recent = tmp_path / "recent.csv"
    later.to_csv(recent, index=False)
    result = cli("drift", "--recent", recent, "--json", "--config", trained_project.config)
    assert result.exit_code in (0, 1), result.stderr
    assert result.stderr == (
        "Warning: 4 of the 16 recent weeks (2023-12-04..2023-12-25) lie inside the weeks "
        "version 1.1.0 learnt (2019-01-07..2023-12-25): they are compared with themselves and "
        "the model's errors on them are in-sample; pass weeks after 2023-12-25\n"
    )
    assert json.loads(result.stdout)["training_overlap"] == {
        "weeks": 4,
        "first": "2023-12-04",
        "last": "2023-12-25",
        "all_recent_weeks": False,
        "learnt": {"start": "2019-01-07", "end": "2023-12-25"},
        "message": result.stderr[len("Warning: ") : -1],
    }

    sample.iloc[-LAST_WEEKS:].to_csv(recent, index=False)
    report = tmp_path / "drift.html"
    result = cli(
        "drift", "--recent", recent, "--report", report, "--config", trained_project.config
    )
    assert result.exit_code == 0, result.stderr
    assert "lie inside the weeks version 1.1.0 learnt" in report.read_text()
    assert result.stderr == (
        "Warning: all 26 recent weeks (2023-07-03..2023-12-25) lie inside the weeks version "
        "1.1.0 learnt (2019-01-07..2023-12-25): this compares the training data with itself "
        "and cannot show drift, and the model's errors on them are in-sample; pass weeks after "
        "2023-12-25\n"
    )

    later.iloc[4:].to_csv(recent, index=False)
    result = cli("drift", "--recent", recent, "--json", "--config", trained_project.config)
    assert result.stderr == ""
    assert json.loads(result.stdout)["training_overlap"] is None


def test_the_dataset_file_may_move_after_training(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli
) -> None:
    reference = trained_project.models / "1.0.0" / "drift_reference.csv"
    metadata = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    assert metadata["artifacts"]["drift_reference.csv"] == file_sha256(reference)
    recent = tmp_path / "recent.csv"
    sample.iloc[-12:].to_csv(recent, index=False)
    result = cli(
        "drift", "--recent", recent, "--version", "1.0.0", "--config", trained_project.config
    )
    assert result.exit_code == 0, result.stderr


def test_too_few_weeks_is_insufficient_not_an_error(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli
) -> None:
    recent = tmp_path / "recent.csv"
    sample.iloc[-5:].drop(columns="HH").to_csv(recent, index=False)
    result = cli("drift", "--recent", recent, "--json", "--config", trained_project.config)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["verdict"] == "insufficient"
    assert (
        data["message"]
        == "only 5 recent weeks; at least 8 are needed for a verdict (drift.min_weeks)"
    )
    assert data["performance"] is None


def test_bad_recent_files_are_exit_2(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("drift", "--recent", empty, "--config", trained_project.config)
    assert result.exit_code == 2
    assert f"Error: dataset {empty}: the file is empty." in result.stderr

    missing = tmp_path / "missing.csv"
    sample.iloc[-12:].drop(columns="age_fleet").to_csv(missing, index=False)
    result = cli("drift", "--recent", missing, "--config", trained_project.config)
    assert result.exit_code == 2
    assert f"Error: dataset {missing}: missing column(s) age_fleet" in result.stderr

    wrong = tmp_path / "wrong.csv"
    bad = sample.iloc[-12:].astype({"Cycles": str})
    bad.iloc[3, bad.columns.get_loc("Cycles")] = "many"
    bad.to_csv(wrong, index=False)
    result = cli("drift", "--recent", wrong, "--config", trained_project.config)
    assert result.exit_code == 2
    assert "column 'Cycles', line 5: 'many' is not a number" in result.stderr

    old = tmp_path / "old.csv"
    sample.iloc[:12].to_csv(old, index=False)
    result = cli("drift", "--recent", old, "--config", trained_project.config)
    assert result.exit_code == 2
    assert "the recent weeks start 2019-01-07, before the training weeks" in result.stderr
    assert "Traceback" not in result.stderr


def test_monitor_reports_served_predictions_per_week_and_month(
    trained_project: Project, sample: pd.DataFrame, tmp_path: Path, cli
) -> None:
    settings = trained_project.settings
    model = load_model(settings)
    weeks = sample.iloc[-8:]
    scored = predict_frame(model, weeks)
    log = PredictionLog.from_settings(settings)
    log.record_frame(
        model.version,
        model.variant,
        model.features,
        scored,
        logged_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    log.close()
    actuals = tmp_path / "actuals.csv"
    weeks[["date", "HH"]].to_csv(actuals, index=False)

    result = cli(
        "monitor",
        "--actuals",
        actuals,
        "--by",
        "month",
        "--json",
        "--report",
        tmp_path / "monitor.html",
        "--config",
        trained_project.config,
    )
    # Eight realised weeks are fewer than a version's baseline weeks (13 by default): the alert
    # rule does not judge the version yet, so no month is flagged and the exit code is 0.
    assert settings.monitoring.alert_baseline_weeks > len(weeks)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # the report's path goes to stderr
    assert "Report written to" in result.stderr
    assert [p["period"] for p in data["periods"]] == ["2023-11", "2023-12"]
    assert sum(p["weeks"] for p in data["periods"]) == 8
    errors = (scored["HH_pred"] - scored["HH"]).abs()
    assert data["periods"][1]["mae"] == pytest.approx(errors.iloc[-4:].mean())
    assert [p["flagged"] for p in data["periods"]] == [False, False]
    assert "not judged yet" in data["message"]
    assert "data:image/png;base64," in (tmp_path / "monitor.html").read_text()

    weekly = cli("monitor", "--actuals", actuals, "--config", trained_project.config)
    assert "2023-12-25" in weekly.stdout


def test_monitor_without_a_log_is_exit_2(project: Project, tmp_path: Path, cli) -> None:
    """The actuals file is checked first; then a missing log is one error line saying where it
    was looked for and how forecasts get logged; no log is created, no week is kept."""
    database = project.root / "models" / "predictions.sqlite"
    bad = tmp_path / "bad.csv"
    bad.write_text("date,HH\n2024-01-01,lots\n")
    result = cli("monitor", "--actuals", bad, "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: dataset {bad}: column 'HH', line 2: 'lots' is not")
    actuals = tmp_path / "actuals.csv"
    actuals.write_text("date,HH\n2024-01-01,100\n")
    result = cli("monitor", "--actuals", actuals, "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: no prediction log at {database}: no forecast has been logged yet. Forecasts "
        "are logged by `hhforecast serve` (every answer) and by `hhforecast forecast --plan "
        "FILE` (every week of the plan); monitoring.database in the config names the log.\n"
    )
    assert result.stdout == ""
    assert not database.exists() and not database.parent.exists()


def test_predictions_served_by_the_api_are_monitored(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    from fastapi.testclient import TestClient

    from hhforecast.serving.app import create_app
    from hhforecast.watch.prediction_log import PredictionRecorder, week_of

    settings = trained_project.settings
    recorder = PredictionRecorder.from_settings(settings)
    app = create_app(settings, follow_production=False, on_prediction=recorder)
    week = {
        "acft": 249,
        "sum_daily_hours": 2539.5,
        "Cycles": 1591,
        "sum_uti_mensal": 11261.3,
        "age_fleet": 8037205.9,
    }
    with TestClient(app) as client:
        answer = client.post("/api/predict", json=week)
        assert answer.status_code == 200, answer.text
        batch = client.post("/api/predict", json={"rows": [week, week]})
        assert batch.status_code == 200, batch.text
    recorder.close()
    predicted = answer.json()["HH"]
    this_week = week_of(datetime.now(UTC))  # the requests carry no date: the week they were made
    actuals = tmp_path / "actuals.csv"
    actuals.write_text(f"date,HH\n{this_week},{predicted + 30}\n")
    result = cli("monitor", "--actuals", actuals, "--json", "--config", trained_project.config)
    assert result.exit_code == 0, result.stderr
    (period,) = json.loads(result.stdout)["periods"]
    assert period["period"] == this_week
    assert period["version"] == answer.json()["model_version"]
    assert period["mae"] == pytest.approx(30.0, abs=1e-3)  # the latest of the three predictions


@pytest.mark.slow
def test_the_running_service_logs_what_monitor_reports(trained_project: Project, cli) -> None:
    import httpx

    from hhforecast.watch.prediction_log import week_of

    from .test_serve_e2e import WEEK, start_server, stop_server

    server = start_server(trained_project)
    try:
        answers = [httpx.post(f"{server.url}/api/predict", json=WEEK, timeout=10.0)]
        answers.append(
            httpx.post(f"{server.url}/api/predict", json={"rows": [WEEK] * 3}, timeout=10.0)
        )
        assert [a.status_code for a in answers] == [200, 200]
    finally:
        stop_server(server)  # queued predictions are written as the service stops
    predicted = answers[1].json()[-1]["HH"]
    this_week = week_of(datetime.now(UTC))
    actuals = trained_project.root / "actuals.csv"
    actuals.write_text(f"date,HH\n{this_week},{predicted - 40}\n")
    result = cli(
        "monitor",
        "--actuals",
        actuals,
        "--by",
        "month",
        "--json",
        "--config",
        trained_project.config,
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["forecasts_matched"] == 4  # every forecast of the week, each matched once
    (period,) = data["periods"]
    assert period["period"] == this_week[:7]
    assert period["mae"] == pytest.approx(40.0, abs=1e-3)
    log = PredictionLog.from_settings(trained_project.settings)
    assert len(log.frame()) == 4
    log.close()


def test_monitor_on_an_empty_postgresql_database_creates_no_table(
    project: Project, tmp_path: Path, cli, postgres_url: str
) -> None:
    """The same on PostgreSQL: a database nothing has logged into stays empty."""
    import psycopg

    write_config(project.root, monitoring={"database": postgres_url})
    actuals = tmp_path / "actuals.csv"
    actuals.write_text("date,HH\n2024-01-01,100\n")
    result = cli("monitor", "--actuals", actuals, "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no prediction log in postgresql://")
    assert "no forecast has been logged yet" in result.stderr and "***" not in result.stdout
    with psycopg.connect(postgres_url) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
