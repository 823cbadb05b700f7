"""The lifecycle for real: production and a challenger, weeks forecast through the served API and
`forecast --plan` before they happen, the realised weeks given to `monitor`, and the gate deciding
on the weeks the challenger forecast beforehand."""

from __future__ import annotations

import json
from datetime import date, timedelta

import httpx
import pandas as pd
import pytest

from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.gate.challenger import name_challenger
from hhforecast.gate.promote import promote
from hhforecast.watch.log_store import open_prediction_log

from .conftest import Project
from .test_serve_e2e import start_server, stop_server

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
WEEKS = 16


def coming_weeks() -> pd.DataFrame:
    """The next 16 Mondays, with the utilisation and HH of the sample's last 16 weeks: weeks
    forecast now, realised (as the test pretends) later."""
    today = date.today()
    first = today + timedelta(days=7 - today.weekday())
    weeks = pd.read_csv(sample_dataset_path()).tail(WEEKS).reset_index(drop=True)
    weeks["date"] = [(first + timedelta(weeks=i)).isoformat() for i in range(WEEKS)]
    return weeks


@pytest.mark.slow
def test_a_challenger_proves_itself_on_weeks_it_forecast_beforehand(
    trained_project: Project, cli
) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    name_challenger(project.settings, "1.1.0")
    weeks = coming_weeks()
    plan = project.root / "plan.csv"
    weeks[["date", *FEATURES]].iloc[WEEKS // 2 :].to_csv(plan, index=False)
    realised = project.root / "realised.csv"
    weeks[["date", "HH"]].to_csv(realised, index=False)

    server = start_server(project)
    try:
        info = httpx.get(f"{server.url}/api/info", timeout=10.0).json()
        assert info["model_version"] == "1.0.0"
        assert info["challenger"] == {"version": "1.1.0", "loaded": True, "problem": None}
        rows = weeks[["date", *FEATURES]].iloc[: WEEKS // 2].to_dict("records")
        answer = httpx.post(f"{server.url}/api/predict", json={"rows": rows}, timeout=30.0)
        assert answer.status_code == 200, answer.text
        assert {row["model_version"] for row in answer.json()} == {"1.0.0"}  # production answers
    finally:
        stop_server(server)  # what the service holds is written as it stops
    forecast = cli("forecast", "--plan", plan, "--json")
    assert forecast.exit_code == 0, forecast.stderr
    assert json.loads(forecast.stdout)["model_version"] == "1.0.0"

    log = open_prediction_log(project.settings)
    logged = log.frame()
    log.close()
    by_role = logged.groupby(["role", "version"]).size().to_dict()
    assert by_role == {("challenger", "1.1.0"): WEEKS, ("production", "1.0.0"): WEEKS}

    monitor = cli("monitor", "--actuals", realised, "--json")
    assert monitor.exit_code in (0, 1), monitor.stderr
    report = json.loads(monitor.stdout)
    assert report["forecasts_judged"] == WEEKS  # production's; the challenger's are compared
    comparison = report["challenger_comparison"]
    assert (comparison["production_version"], comparison["challenger_version"]) == (
        "1.0.0",
        "1.1.0",
    )
    assert comparison["weeks"] == WEEKS and report["realised_weeks_kept"] == WEEKS
    actual = weeks["HH"].to_numpy(float)
    theirs = logged[logged["role"] == "challenger"].sort_values("week")["hh_pred"].to_numpy()
    rmse = float(((theirs - actual) ** 2).mean() ** 0.5)
    assert comparison["overall"]["challenger"]["RMSE"] == pytest.approx(rmse)

    # The realised weeks were kept: the gate needs no file to judge the challenger.
    gated = cli("promote", "1.1.0", "--require-better-rmse", "--json")
    assert gated.exit_code in (0, 1), gated.stderr
    outcome = json.loads(gated.stdout)
    weeks_judged = outcome["validation"]["evaluation_weeks"]
    assert weeks_judged["weeks"] == WEEKS
    assert "forecast by both before they happened" in weeks_judged["source"]
    better = (
        comparison["overall"]["challenger"]["RMSE"] < comparison["overall"]["production"]["RMSE"]
    )
    assert outcome["promoted"] is better
    assert outcome["validation"]["candidate_rmse"] == pytest.approx(
        comparison["overall"]["challenger"]["RMSE"]
    )
