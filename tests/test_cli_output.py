"""Output details: one-line usage errors, readable `registry show`, --json on predict and
sample, help text without ragged breaks, and every written file named by its full path."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.watch.prediction_log import PredictionLog, PredictionRecord

from .conftest import Project


@pytest.mark.parametrize(
    ("args", "start", "command"),
    [
        (["sample", "--weeks", "3", "--out", "x.csv"], "Invalid value for '--weeks'", "sample"),
        (["predict", "--output", "s.csv"], "Missing option '--input'.", "predict"),
        (["train", "--foo"], "No such option: --foo", "train"),
        (["sampl"], "No such command 'sampl'. Did you mean 'sample'?", ""),
        (["registry", "show"], "Missing argument 'version'.", "registry show"),
        (["registry", "nope"], "No such command 'nope'.", "registry"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], start: str, command: str, cli) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    path = " ".join(["hhforecast", command]).strip()
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"Error: {start}")
    assert result.stderr.endswith(f" See '{path} --help'.\n")


def test_no_arguments_still_shows_the_help(cli) -> None:
    result = cli()
    assert "Usage: hhforecast" in result.stdout + result.stderr
    assert "Error" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["promote"], ["registry", "check"], ["retrain"]])
def test_help_paragraphs_have_no_ragged_breaks(command: list[str], cli, columns80) -> None:
    text = cli(*command, "--help").stdout
    description = text.split("╭")[0].splitlines()
    for line, following in pairwise(description):
        if line.strip() and following.strip():
            # A line ends early only when the next word would not have fitted on it.
            room = 78 - len(line.strip())
            assert len(following.split()[0]) + 1 > room, (line, following)


def test_registry_show_prints_the_test_period_readably(trained_project: Project, cli) -> None:
    result = cli("registry", "show", "1.0.0")
    assert result.exit_code == 0
    period = json.loads(cli("registry", "show", "1.0.0", "--json").stdout)["test_period"]
    expected = f"{period['start']} to {period['end']} ({period['weeks']} weeks)"
    assert f"│ test_period       │ {expected}" in result.stdout
    assert "{" not in result.stdout and "True" not in result.stdout


def test_sample_json_and_path(tmp_path: Path, cli) -> None:
    result = cli("sample", "--out", "data/weekly.csv", "--weeks", "10", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "path": str(tmp_path / "data" / "weekly.csv"),
        "raw": None,
        "weeks": 10,
        "start": "2019-01-07",
        "end": "2019-03-11",
        "seed": 7,
    }
    table = cli("sample", "--out", "data/other.csv", "--weeks", "10")
    assert f"to {tmp_path / 'data' / 'other.csv'}" in " ".join(table.stdout.split())


def test_predict_json_and_path(trained_project: Project, tmp_path: Path, cli) -> None:
    weeks = pd.read_csv(sample_dataset_path()).tail(6).drop(columns=["HH"])
    weeks.to_csv(tmp_path / "weeks.csv", index=False)
    result = cli("predict", "--input", "weeks.csv", "--output", "scored.csv", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(tmp_path / "scored.csv") and data["rows"] == 6
    assert data["version"] == "1.1.0" and data["variant"] == "5features"
    assert len(pd.read_csv(data["path"])) == 6
    table = cli("predict", "--input", "weeks.csv", "--output", "out/scored.csv")
    assert f"to {tmp_path / 'out' / 'scored.csv'} " in " ".join(table.stdout.split())


def test_reports_are_named_by_their_full_path(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    recent = pd.read_csv(sample_dataset_path()).tail(20)
    recent.to_csv(tmp_path / "recent.csv", index=False)
    drift = cli("drift", "--recent", "recent.csv", "--report", "reports/drift.html")
    assert drift.exit_code in (0, 1), drift.stderr
    path = tmp_path / "reports" / "drift.html"
    assert f"Report written to {path}" in drift.stdout and path.is_file()

    log = PredictionLog.from_settings(trained_project.settings)
    week = str(recent["date"].iloc[-1])
    log.record(
        [PredictionRecord("1.0.0", "5features", {"acft": 250.0}, 1000.0, 900.0, 1100.0, week=week)]
    )
    log.close()
    recent[["date", "HH"]].to_csv(tmp_path / "actuals.csv", index=False)
    monitor = cli("monitor", "--actuals", "actuals.csv", "--report", "monitor.html", "--json")
    assert monitor.exit_code in (0, 1), monitor.stderr
    assert f"Report written to {tmp_path / 'monitor.html'}" in monitor.stderr
    assert json.loads(monitor.stdout)["forecasts_matched"] == 1


def test_dataset_build_names_its_files_by_full_path(tmp_path: Path, cli) -> None:
    assert cli("sample", "--raw", "raw", "--weeks", "10").exit_code == 0
    result = cli(
        "dataset",
        "build",
        "--utilization",
        "raw/utilization.csv",
        "--events",
        "raw/events.csv",
        "--out",
        "data/weekly.csv",
        "--report",
        "data/quality.html",
    )
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"to {tmp_path / 'data' / 'weekly.csv'};" in text
    assert f"Report written to {tmp_path / 'data' / 'quality.html'}" in text
    assert (tmp_path / "data" / "quality.html").is_file()
