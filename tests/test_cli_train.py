import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SCORED_IS_SERVED, Project, write_config


def test_train_then_refuse_the_same_version(project: Project, cli) -> None:
    first = cli("train", "--version", "1.0.0", "--epochs", "2", "--config", project.config)
    assert first.exit_code == 0, first.stderr
    assert "Registered version 1.0.0" in first.stdout
    assert "linear_regression" in first.stdout
    assert (
        cli("train", "--version", "1.1.0", "--epochs", "2", "--config", project.config).exit_code
        == 0
    )
    before = project.registry_file.read_bytes()
    second = cli("train", "--version", "1.0.0", "--epochs", "2", "--config", project.config)
    assert second.exit_code == 2
    assert "Error: version '1.0.0' already exists" in second.stderr
    # "latest" makes 1.1.0 production, which even --force never overwrites
    forced = cli("train", "--version", "1.1.0", "--force", "--config", project.config)
    assert forced.exit_code == 2
    assert "Error: version '1.1.0' is in production and is never overwritten" in forced.stderr
    assert project.registry_file.read_bytes() == before


def test_missing_column_fails_and_leaves_models_untouched(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,acft,sum_daily_hours,Cycles,sum_uti_mensal,HH\n2024-01-01,1,2,3,4,5\n")
    before = {p: p.stat().st_mtime_ns for p in trained_project.models.rglob("*")}
    result = cli("train", "--dataset", bad, "--config", trained_project.config)
    assert result.exit_code == 2
    assert "missing column(s) age_fleet" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in trained_project.models.rglob("*")} == before


def test_bad_version_name_is_refused_before_training(project: Project, cli) -> None:
    result = cli("train", "--version", "../escape", "--config", project.config)
    assert result.exit_code == 2
    assert "'../escape' is not a valid version name" in result.stderr
    assert not project.models.exists() or not any(project.models.iterdir())


def test_sample_writes_a_reproducible_file(tmp_path: Path, cli) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert cli("sample", "--out", a, "--seed", "3", "--weeks", "20").exit_code == 0
    assert cli("sample", "--out", b, "--seed", "3", "--weeks", "20").exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_text().splitlines()) == 21


@pytest.mark.slow
def test_four_parallel_trainings_keep_every_entry(project: Project) -> None:
    # The registry's lock is the point, not the served fit: no refit on every week (a third of
    # each training's fits, in four processes that import TensorFlow at once).
    config = write_config(project.root, training=SCORED_IS_SERVED)
    env = {**os.environ, "HHFORECAST_CONFIG": str(config)}
    command = [sys.executable, "-m", "hhforecast", "train", "--epochs", "2"]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    data = json.loads(project.registry_file.read_text())
    names = [v["version"] for v in data["versions"]]
    assert len(names) == len(set(names)) == 4
    for name in names:
        assert (project.models / name / "model_hh_semanal_5features.keras").is_file()


@pytest.mark.slow
def test_score_served_fit_serves_the_fit_that_was_scored(trained_project: Project, cli) -> None:
    import numpy as np
    import pandas as pd

    from hhforecast.datasets.weekly import sample_dataset_path
    from hhforecast.modeling.artifacts import load_variant

    config = trained_project.config
    result = cli("train", "--version", "scored", "--score-served-fit", "--config", config)
    assert result.exit_code == 0, result.stderr
    assert (
        "Served fit trained through 2022-09-26: the scored fit serves (no refit on all weeks), "
        "so it never learnt the 65 test weeks." in " ".join(result.stdout.split())
    )
    folder = trained_project.models / "scored"
    meta = json.loads((folder / "model_metadata.json").read_text())
    assert meta["served_fit"]["refit_on_all_weeks"] is False
    assert meta["trained_through"] == meta["split"]["validation"]["end"] == "2022-09-26"
    assert meta["served_fit"]["weeks"] == 195
    # The same recipe, seed and config as 1.0.0, which was refit on every week: the scored fit
    # was scaled on the 195 weeks before the test weeks, and its weights differ.
    scored, refit = (
        load_variant(folder, "5features"),
        load_variant(trained_project.models / "1.0.0", "5features"),
    )
    x = pd.read_csv(sample_dataset_path())[scored.features].to_numpy(dtype=float)
    np.testing.assert_allclose(scored.x_mean, x[:195].mean(axis=0))
    assert not np.allclose(scored.weights["linear"][0], refit.weights["linear"][0])
    # Its interval is the one whose coverage was measured on the test weeks.
    evidence = meta["recipe_evidence"]["holdout"]["variants"]["5features"]
    assert meta["variants"]["5features"]["interval"]["halfwidth"] == evidence["interval_halfwidth"]
    # The registry entry and `registry show` say what it learnt.
    shown = cli("registry", "show", "scored", "--config", config).stdout
    assert "│ trained through   │ 2022-09-26" in shown
    entry = json.loads(cli("registry", "show", "scored", "--json", "--config", config).stdout)
    assert entry["trained_through"] == "2022-09-26"
