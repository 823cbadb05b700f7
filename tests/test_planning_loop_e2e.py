"""The planning loop for real: a trained version served by uvicorn, the next 8 weeks forecast from
the CLI and over HTTP, the realised weeks fed to `monitor`, every forecast matched exactly once."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pandas as pd

from hhforecast.datasets.fleet import simulate_weekly_dataset

from .conftest import Project
from .test_serve_e2e import start_server, stop_server

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


def hhforecast(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hhforecast", *args, "--config", str(project.config)],
        capture_output=True,
        text=True,
        cwd=project.root,
        timeout=300,
    )


def test_forecasts_from_cli_api_and_page_are_each_matched_once(trained_project: Project) -> None:
    # The weeks after the sample (its last week is 2023-12-25), as a fleet would fly them.
    fleet = simulate_weekly_dataset(seed=23, weeks=8, start="2024-01-01")
    assert fleet["date"].tolist()[0] == "2024-01-01"
    plan = fleet[["date", *FEATURES]].copy()
    plan_file = trained_project.root / "plan.csv"
    plan.to_csv(plan_file, index=False)
    realised = trained_project.root / "realised.csv"
    fleet[["date", "HH"]].to_csv(realised, index=False)

    server = start_server(trained_project)
    try:
        # The plan's inputs lie beyond the sample's: logged as the planner confirms them.
        cli = hhforecast(
            trained_project,
            "forecast",
            "--plan",
            str(plan_file),
            "--confirm-out-of-range",
            "--json",
        )
        assert cli.returncode == 0, cli.stderr
        from_cli = json.loads(cli.stdout)
        assert from_cli["logged"] is True
        rows = [{**row, "date": str(row["date"])[:10]} for row in plan.to_dict("records")]
        api = httpx.post(f"{server.url}/api/predict", json={"rows": rows}, timeout=30.0)
        assert api.status_code == 200, api.text
        # The page's planning forecast of a week outside the training ranges, confirmed.
        page = httpx.post(
            f"{server.url}/web/predict?confirm_out_of_range=true", json=rows[0], timeout=30.0
        )
        assert page.status_code == 200, page.text
    finally:
        stop_server(server)  # the service writes what it still holds as it stops

    monitor = hhforecast(trained_project, "monitor", "--actuals", str(realised), "--json")
    assert monitor.returncode in (0, 1), monitor.stderr
    report = json.loads(monitor.stdout)
    assert (report["forecasts_logged"], report["forecasts_matched"]) == (17, 17)
    assert report["forecasts_pending"] == 0
    matched = pd.DataFrame(report["forecasts"])
    assert matched["id"].is_unique
    weeks = fleet["date"].tolist()
    for source, count in (("cli", 8), ("api", 8), ("web", 1)):
        mine = matched[matched["source"] == source]
        assert sorted(mine["week"]) == weeks[:count], source
        assert sorted(mine["horizon"]) == list(range(1, count + 1)), source
        assert set(mine["version"]) == {"1.1.0"}
    # The CLI and the API forecast the same weeks from the same inputs: the same numbers.
    by_week = matched.pivot_table(index="week", columns="source", values="hh_pred")
    assert (by_week["cli"] - by_week["api"]).abs().max() < 1e-2
    assert matched["actual"].tolist() == [fleet.set_index("date")["HH"][w] for w in matched["week"]]
    assert {s["source"]: s["forecasts"] for s in report["sources"]} == {
        "api": 8,
        "cli": 8,
        "web": 1,
    }
    assert [h["period"] for h in report["horizons"]] == ["1", "2", "3-4", "5-8"]
