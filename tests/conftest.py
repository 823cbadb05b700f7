"""Shared fixtures: every test runs in its own folder with a fast training config.

Training is real (TensorFlow, a few epochs of a tiny network). Versions that many tests read are
trained once per session into a template project and copied into each test's folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hhforecast.cli import app
from hhforecast.config import CONFIG_ENV, Settings, load_settings

FAST_TRAINING = {
    "epochs": 8,
    "patience": 3,
    "units": 8,
    "batch_size": 64,
    "min_rows": 30,
    # Two long rolling-origin folds on the sample: one is its 65 test weeks, one (the 65 weeks
    # before) calibrates the intervals of the first.
    "interval_folds": 1,
    "backtest_horizon": 65,
}


def write_config(folder: Path, **sections: dict) -> Path:
    """A config.yaml in `folder` with fast training plus any section overrides."""
    data: dict = {"training": dict(FAST_TRAINING)}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Project:
    """A folder with a config.yaml, a models/ folder and (maybe) trained versions."""

    root: Path
    config: Path

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def registry_file(self) -> Path:
        return self.models / "registry.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with several workers the long ones start at once, not at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # never a user's own server
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project with a fast training config."""
    return Project(root=tmp_path, config=write_config(tmp_path))


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hhforecast.modeling.training import train_version

    root = tmp_path_factory.mktemp("trained")
    config = write_config(root)
    settings = load_settings(config)
    train_version(settings, version="1.0.0")
    train_version(settings.with_training(seed=7, epochs=4), version="1.1.0")
    return root


def copy_project(template: Path, folder: Path) -> Project:
    """Copy a template project's files into `folder`."""
    for item in template.iterdir():
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    return Project(root=folder, config=folder / "config.yaml")


@pytest.fixture
def trained_project(tmp_path: Path, _trained_template: Path) -> Project:
    """A project with versions 1.0.0 and 1.1.0 already trained (copied, not retrained)."""
    return copy_project(_trained_template, tmp_path)


HELD_OUT_WEEKS = 65
"""The sample's last quarter (260 weeks, test_fraction 0.25): every version's held-out weeks."""
INFLATED_DATASET = "inflated_hh.csv"


@pytest.fixture(scope="session")
def _ranked_template(tmp_path_factory: pytest.TempPathFactory, _trained_template: Path) -> Path:
    from hhforecast.datasets.weekly import sample_dataset_path
    from hhforecast.modeling.training import train_version

    root = tmp_path_factory.mktemp("ranked")
    project = copy_project(_trained_template, root)
    frame = pd.read_csv(sample_dataset_path())
    learnt = len(frame) - HELD_OUT_WEEKS
    frame.loc[: learnt - 1, "HH"] *= 1.6
    frame.to_csv(root / INFLATED_DATASET, index=False)
    train_version(project.settings.with_training(epochs=2), root / INFLATED_DATASET, "1.2.0")
    return root


@pytest.fixture
def ranked_project(tmp_path: Path, _ranked_template: Path) -> Project:
    """The trained project plus version 1.2.0 (production), the worse forecaster by construction.

    1.2.0 learnt from the sample with the HH of its training weeks inflated by 60%; its held-out
    weeks are the sample's real last quarter, the same weeks 1.0.0 and 1.1.0 hold out. On them it
    forecasts about 60% too high, whatever the network's random draw.
    """
    return copy_project(_ranked_template, tmp_path)


@pytest.fixture
def columns80(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal 80 columns wide, as rich reads it from $COLUMNS."""
    from hhforecast.cli._common import console, err_console

    monkeypatch.setenv("COLUMNS", "80")
    for c in (console, err_console):
        monkeypatch.setattr(c, "_width", None)


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


def rerecord(folder: Path, *names: str, registry: bool = True) -> None:
    """Record the current SHA-256 of `names` in the version's metadata and (with `registry`)
    the metadata's own SHA-256 in its registry entry, as someone allowed to write both would."""
    import hashlib
    import json

    meta_path = folder / "model_metadata.json"
    metadata = json.loads(meta_path.read_text())
    for name in names:
        metadata["artifacts"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(metadata, indent=2))
    registry_path = folder.parent / "registry.json"
    if registry and registry_path.exists():
        data = json.loads(registry_path.read_text())
        for entry in data["versions"]:
            if entry["version"] == folder.name:
                entry["metadata_sha256"] = hashlib.sha256(meta_path.read_bytes()).hexdigest()
        registry_path.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` (SQLite, local artifacts, free loopback port) for the session."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from .mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()
