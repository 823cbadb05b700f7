"""Shared fixtures: every test runs in its own folder with a fast training config.

Training is real (TensorFlow, a few epochs of a tiny network). Versions that many tests read are
trained once per session into a template project and copied into each test's folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
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


@pytest.fixture
def trained_project(tmp_path: Path, _trained_template: Path) -> Project:
    """A project with versions 1.0.0 and 1.1.0 already trained (copied, not retrained)."""
    for item in _trained_template.iterdir():
        target = tmp_path / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    return Project(root=tmp_path, config=tmp_path / "config.yaml")


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
