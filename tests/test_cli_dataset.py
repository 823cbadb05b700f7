"""From raw logs to a trained version: the manifest travels with the model; retrain builds."""

import json

import pytest

from hhforecast._fs import file_sha256
from hhforecast.registry.store import Registry

from .conftest import Project


@pytest.mark.slow
def test_raw_logs_to_trained_version_records_the_manifest(project: Project, cli) -> None:
    assert cli("sample", "--raw", "raw", "--weeks", "120").exit_code == 0
    built = cli(
        "dataset",
        "build",
        "--utilization",
        "raw/utilization.csv",
        "--events",
        "raw/events.csv",
        "--out",
        "data/weekly.csv",
        "--json",
    )
    assert built.exit_code == 0, built.stderr
    assert json.loads(built.stdout)["weeks"]["kept"] == 120
    # Two epochs: the manifest is the point, not the fit.
    trained = cli(
        "train", "--dataset", "data/weekly.csv", "--version", "1.0.0", "--epochs", "2", "--json"
    )
    assert trained.exit_code == 0, trained.stderr
    meta = json.loads((project.models / "1.0.0" / "model_metadata.json").read_text())
    inputs = meta["dataset"]["manifest"]["inputs"]
    assert inputs["utilization"][0]["sha256"] == file_sha256(project.root / "raw/utilization.csv")
    assert inputs["events"][0]["sha256"] == file_sha256(project.root / "raw/events.csv")

    # An edited dataset no longer matches its manifest: nothing stale is recorded.
    edited = project.root / "data/weekly.csv"
    edited.write_text(edited.read_text().replace("\n", "\r\n"))
    assert cli("train", "--dataset", edited, "--version", "1.1.0", "--epochs", "2").exit_code == 0
    meta = json.loads((project.models / "1.1.0" / "model_metadata.json").read_text())
    assert "manifest" not in meta["dataset"]

    # retrain runs the pipeline: build from the raw logs (a quoted glob), then train and gate.
    result = cli(
        "retrain",
        "--utilization",
        "raw/util*.csv",
        "--events",
        "raw/events.csv",
        "--out",
        "data/latest.csv",
        "--version",
        "2.0.0",
        "--epochs",
        "2",
        "--json",
    )
    assert result.exit_code == 1  # the same weeks again: no fair week to win on
    outcome = json.loads(result.stdout)
    assert outcome["version"] == "2.0.0" and outcome["promoted"] is False
    meta = json.loads((project.models / "2.0.0" / "model_metadata.json").read_text())
    assert meta["dataset"]["path"] == "data/latest.csv"
    assert meta["dataset"]["manifest"]["output"]["sha256"] == meta["dataset"]["sha256"]


def test_retrain_with_a_bad_raw_log_changes_nothing(project: Project, cli) -> None:
    assert cli("sample", "--raw", "raw", "--weeks", "40").exit_code == 0
    (project.root / "raw/utilization.csv").write_text("Dep. Date,A/C\n2024-01-01,PR-GAA\n")
    result = cli("retrain", "--utilization", "raw/utilization.csv", "--events", "raw/events.csv")
    assert result.exit_code == 2
    assert "missing column(s) 'Hours' (dataset.utilization.hours)" in result.stderr
    assert not (project.root / "data").exists()
    assert Registry(project.settings).versions() == []
    only = cli("retrain", "--utilization", "raw/utilization.csv")
    assert only.exit_code == 2
    assert "--utilization and --events go together" in only.stderr
