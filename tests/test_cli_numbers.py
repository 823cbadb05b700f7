"""`display.numbers: br`: every number a command prints for people uses the Brazilian marks
(1.042,5), never a mix of both styles on one screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import hhforecast.cli._common as common
from hhforecast.datasets.weekly import sample_dataset_path

from .conftest import Project, write_config
from .test_backtest import TINY

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


@pytest.fixture
def br(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the module's setting back after the test: the commands set it from the config."""
    monkeypatch.setattr(common, "_NUMBERS", "intl")


def brazilian(config: Path) -> Path:
    config.write_text(config.read_text() + "display:\n  numbers: br\n")
    return config


def br_number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}".translate(str.maketrans({",": ".", ".": ","}))


def test_forecast_table_writes_hh_and_interval_with_brazilian_marks(
    trained_project: Project, cli, columns80, br
) -> None:
    from hhforecast.modeling.forecast import forecast_plan

    sample = pd.read_csv(sample_dataset_path())
    weeks = sample.tail(3)[FEATURES].copy()
    weeks.insert(0, "date", ["2024-01-01", "2024-01-08", "2024-01-15"])
    plan = trained_project.root / "plan.csv"
    weeks.to_csv(plan, index=False)
    config = brazilian(trained_project.config)
    shown = cli("forecast", "--plan", plan, "--no-log", "--config", config).stdout
    for week in forecast_plan(trained_project.settings, plan).rows():
        assert week["HH"] >= 1000  # so that the thousands mark shows
        cells = [
            week["week"],
            br_number(week["HH"], 0),
            f"{br_number(week['HH_lower'], 0)} - {br_number(week['HH_upper'], 0)}",
            str(week["horizon"]),
        ]
        row = r"\s+".join(re.escape(cell) for cell in cells)
        assert re.search(rf"^\s*{row}\s+-\s*$", shown, flags=re.MULTILINE), shown
        assert f"{week['HH']:,.0f}" not in shown


def test_dataset_build_counts_and_hh_share_the_brazilian_marks(project: Project, cli, br) -> None:
    raw = project.root / "raw"
    made = cli("sample", "--raw", raw, "--weeks", "60", "--config", brazilian(project.config))
    assert made.exit_code == 0, made.stderr
    aircraft_days = len(pd.read_csv(raw / "utilization.csv"))
    assert f"utilization.csv ({br_number(aircraft_days, 0)} aircraft-days)" in made.stdout
    out = project.root / "weekly.csv"
    result = cli(
        "dataset", "build", "--utilization", raw / "utilization.csv",
        "--events", raw / "events.csv", "--output", out, "--json",
        "--config", project.config,
    )  # fmt: skip
    facts = json.loads(result.stdout)
    shown = cli(
        "dataset", "build", "--utilization", raw / "utilization.csv",
        "--events", raw / "events.csv", "--output", out, "--config", project.config,
    ).stdout  # fmt: skip
    util, ev = facts["utilization"], facts["events"]
    assert util["rows_read"] >= 1000 and ev["rows_read"] >= 1000
    assert (
        f"Utilisation: {br_number(util['rows_read'], 0)} rows, "
        f"{br_number(util['aircraft_days'], 0)} aircraft-days of {util['aircraft']} aircraft, "
        f"{br_number(util['duplicates_dropped'], 0)} repeated rows dropped."
    ) in shown
    assert (
        f"Events: {br_number(ev['rows_read'], 0)} rows, {br_number(ev['counted']['HH'], 1)} HH "
        "counted; excluded "
    ) in shown
    pilot = ev["excluded"]["PILOT"]
    assert f"PILOT {br_number(pilot['HH'], 1)} HH ({br_number(pilot['rows'], 0)})" in shown


def test_drift_table_writes_p_values_and_effective_weeks_with_brazilian_marks(
    trained_project: Project, cli, br, monkeypatch: pytest.MonkeyPatch
) -> None:
    for console in (common.console, common.err_console):  # wide enough for every column
        monkeypatch.setenv("COLUMNS", "160")
        monkeypatch.setattr(console, "_width", None)

    recent = trained_project.root / "recent.csv"
    pd.read_csv(sample_dataset_path()).tail(26).to_csv(recent, index=False)
    config = brazilian(trained_project.config)
    facts = json.loads(cli("drift", "--recent", recent, "--json", "--config", config).stdout)
    shown = cli("drift", "--recent", recent, "--config", config).stdout
    for signal in facts["signals"]:
        p_values = [
            f"<{br_number(1e-4, 4)}" if p < 1e-4 else br_number(p, 4)
            for p in (signal["ks_pvalue"], signal["mean_pvalue"])
        ]
        cells = [
            signal["name"],
            br_number(signal["mean_shift_pct"], 1),
            br_number(signal["mean_shift_std"], 2),
            *p_values,
            br_number(signal["detectable_shift_std"], 2),
            br_number(signal["n_effective_recent"], 0),
        ]
        row = r"\s+│\s+".join(re.escape(cell) for cell in cells)
        assert re.search(rf"│ {row} │", shown), (cells, shown)


@pytest.mark.slow
def test_backtest_original_recipe_line_writes_rmses_with_brazilian_marks(
    project: Project, cli, br
) -> None:
    config = brazilian(write_config(project.root, training=TINY))
    shown = cli(
        "backtest", "--folds", "1", "--horizon", "4", "--original", "--original-inits", "2",
        "--config", config,
    ).stdout  # fmt: skip
    line = next(x for x in shown.splitlines() if "5features original_recipe: mean of" in x)
    assert re.fullmatch(
        r"5features original_recipe: mean of 2 initialisations, pooled RMSE "
        r"\d{1,3}(\.\d{3})*,\d to \d{1,3}(\.\d{3})*,\d\.",
        line,
    ), line


def test_findings_write_their_numbers_with_brazilian_marks(br) -> None:
    from hhforecast.modeling.findings import training_findings

    from .test_findings import variant

    common._NUMBERS = "br"  # as a command reading display.numbers: br sets it
    metadata = {
        "split": {"test": {"weeks": 65}},
        "variants": {
            "4features": variant(False, 1413.5, -0.581, 41 / 65),
            "5features": variant(True, 480.0, 0.093, 49 / 65),
        },
    }
    messages = [f.message for f in training_findings(metadata, common.number)]
    assert messages[1:] == [
        "4features: network RMSE 1.413,5 on the test weeks is worse than seasonal_naive's 462,2 "
        "(repeating past HH).",
        "4features: network R² -0,581 on the test weeks: worse than forecasting their mean HH "
        "every week.",
        "4features: the 80% interval covered 41 of 65 test weeks (63%, p = 0,0016): far below "
        "80%, too narrow for these weeks.",
        "5features: network RMSE 480,0 on the test weeks is worse than seasonal_naive's 462,2 "
        "(repeating past HH).",
    ]


def test_train_prints_its_findings_with_the_configured_marks(project: Project, cli, br) -> None:
    from hhforecast.modeling.findings import training_findings

    result = cli("train", "--version", "1.0.0", "--config", brazilian(project.config))
    assert result.exit_code == 0, result.stderr
    metadata = json.loads((project.models / "1.0.0" / "model_metadata.json").read_text())
    shown = [f for f in training_findings(metadata, lambda v, s: br_format(v, s)) if f.is_warning]
    assert shown, "the fast training on the sample gives at least one warning with a number"
    err = " ".join(result.stderr.split())
    for finding in shown:
        assert " ".join(finding.message.split()) in err
        assert re.search(r"\d,\d", finding.message), finding.message


def br_format(value: float, spec: str) -> str:
    return format(value, spec).translate(str.maketrans({",": ".", ".": ","}))
