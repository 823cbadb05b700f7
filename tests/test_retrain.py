"""`hhforecast retrain`: a new version is promoted only when it wins on weeks neither model saw."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.modeling.training import train_version
from hhforecast.registry.store import Registry

from .conftest import SCORED_IS_SERVED, Project, copy_project, shared_template, write_config


def exports(folder: Path) -> tuple[Path, Path]:
    """An export of 200 weeks, and the export of the same fleet 100 weeks later."""
    weeks = simulate_weekly_dataset(seed=11, weeks=300)
    old, new = folder / "old.csv", folder / "new.csv"
    weeks.iloc[:200].to_csv(old, index=False)
    weeks.to_csv(new, index=False)
    return old, new


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project whose versions serve the fit that was scored (fair weeks stay unseen)."""
    return Project(root=tmp_path, config=write_config(tmp_path, training=SCORED_IS_SERVED))


@pytest.fixture(scope="session")
def _old_export_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(root: Path) -> None:
        project = Project(root=root, config=write_config(root, training=SCORED_IS_SERVED))
        old, _ = exports(root)
        train_version(project.settings, old, "1.0.0")

    return shared_template(tmp_path_factory, "retrain", build)


@pytest.fixture
def trained_on_old(tmp_path: Path, _old_export_template: Path) -> Project:
    """A project whose production 1.0.0 learnt the old export (copied, trained once)."""
    return copy_project(_old_export_template, tmp_path)


def history(project: Project) -> list[tuple[str, str, str]]:
    return [(h["to"], h["gate"], h["reason"]) for h in Registry(project.settings).history()]


@pytest.mark.slow
def test_latest_is_pinned_then_the_new_version_is_judged_on_fair_weeks(
    project: Project, cli
) -> None:
    old, new = exports(project.root)
    # The old export counted HH 60% too high: 1.0.0 learnt that, and the new export's true
    # weeks make 2.0.0 the better forecaster by construction.
    inflated = pd.read_csv(old).assign(HH=lambda f: f["HH"] * 1.6)
    inflated.to_csv(old, index=False)
    train_version(project.settings, old, "1.0.0")
    result = cli("retrain", "--dataset", new, "--version", "2.0.0", "--json")
    outcome = json.loads(result.stdout)
    # 1.0.0 learnt from weeks up to its validation end (week 160); 2.0.0's test weeks are the
    # last 75 of 300, all after it: every one of them is fair.
    assert outcome["fair_weeks"] == 75 and outcome["pinned"] is True
    assert outcome["candidate_rmse"] < outcome["production_rmse"]
    assert outcome["promoted"] is True
    assert result.exit_code == 0, result.stderr
    assert Registry(project.settings).production_version().version == "2.0.0"
    assert history(project)[0] == ("1.0.0", "integrity", "retrain: pinned before training")
    assert [v.version for v in Registry(project.settings).versions()] == ["1.0.0", "2.0.0"]


@pytest.mark.slow
def test_a_version_trained_on_noise_is_registered_but_not_promoted(
    trained_on_old: Project, cli
) -> None:
    project = trained_on_old
    new = project.root / "new.csv"
    # The new export's older labels are scrambled: the candidate learns nothing real, while the
    # fair weeks at the end are the fleet's true ones. (Scrambled features are refused before
    # any scoring: tests/test_attacks_gate.py.)
    frame = pd.read_csv(new)
    rng = np.random.default_rng(0)
    frame.loc[:224, "HH"] = rng.permutation(frame.loc[:224, "HH"].to_numpy())
    frame.to_csv(new, index=False)
    config_before = project.config.read_text()

    result = cli("retrain", "--dataset", new, "--version", "2.0.0", "--config", project.config)
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "Kept 1.0.0 in production; 2.0.0 is registered but not promoted" in text
    assert "refused to promote 2.0.0" in text and "the fair weeks" in text
    assert Registry(project.settings).production_version().version == "1.0.0"
    assert '"1.0.0"' in project.config.read_text() and config_before != project.config.read_text()


@pytest.mark.slow
def test_an_export_older_than_production_cannot_be_judged(project: Project, cli) -> None:
    old, new = exports(project.root)
    train_version(project.settings, new, "1.0.0")
    # Every test week of a version trained on the older export was a training week of 1.0.0.
    result = cli("retrain", "--dataset", old, "--version", "1.1.0", "--json")
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)
    assert (outcome["promoted"], outcome["fair_weeks"], outcome["production"]) == (
        False,
        0,
        "1.0.0",
    )
    assert "at least 13 are needed" in outcome["why"]


def test_bad_input_changes_nothing(trained_on_old: Project, cli) -> None:
    project = trained_on_old
    old = project.root / "old.csv"
    broken = project.root / "broken.csv"
    pd.read_csv(old).drop(columns=["Cycles"]).to_csv(broken, index=False)
    config_before, registry_before = project.config.read_bytes(), project.registry_file.read_bytes()
    result = cli("retrain", "--dataset", broken, "--version", "2.0.0")
    assert result.exit_code == 2
    assert "missing column(s) Cycles" in result.stderr
    assert project.config.read_bytes() == config_before  # not even pinned
    assert project.registry_file.read_bytes() == registry_before
    assert not (project.models / "2.0.0").exists()


@pytest.mark.slow
def test_a_candidate_refit_on_every_week_becomes_the_challenger(tmp_path: Path, cli) -> None:
    """With the default refit no week is unseen by the candidate: retrain keeps production and
    names the candidate the challenger, to be judged on the weeks it forecasts from now on."""
    project = Project(root=tmp_path, config=write_config(tmp_path))
    old, new = exports(project.root)
    train_version(project.settings.with_training(epochs=2), old, "1.0.0")
    result = cli("retrain", "--dataset", new, "--version", "2.0.0", "--json")
    assert result.exit_code == 1, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["promoted"], outcome["challenger"], outcome["fair_weeks"]) == (False, True, 0)
    assert "2.0.0 is now the challenger" in outcome["why"]
    assert Registry(project.settings).read_document().challenger == "2.0.0"
    assert Registry(project.settings).production_version().version == "1.0.0"
