"""The simulated sample is used only when nothing else is named, always said loudly, and never
chosen silently when the config describes the user's own data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hhforecast.config import load_settings
from hhforecast.datasets.weekly import (
    own_data_keys,
    sample_dataset_path,
    training_dataset_path,
)
from hhforecast.errors import SampleNotChosenError

from .conftest import Project, write_config

OWN_MAPPING = {"utilization": {"date": "Data", "aircraft": "Matricula"}}

REFUSAL = (
    "Error: {config} describes your own data (dataset.utilization) but names no weekly "
    "dataset (paths.dataset is null), so the simulated sample fleet bundled with hhforecast "
    "would be used. Pass --dataset FILE (a weekly CSV, such as one made by `hhforecast dataset "
    "build`), set paths.dataset, or pass --sample to use the simulated sample anyway.\n"
)
TRAIN_WARNING = (
    "Warning: training on the simulated sample fleet bundled with hhforecast, not on your "
    "data: its figures say nothing about your fleet. Pass --dataset FILE or set paths.dataset "
    "to use yours.\n"
)


def test_the_sample_is_the_default_only_for_a_config_that_describes_no_data(
    tmp_path: Path,
) -> None:
    plain = load_settings(write_config(tmp_path))
    assert own_data_keys(plain) == []
    assert training_dataset_path(plain) == sample_dataset_path()
    own = load_settings(write_config(tmp_path, dataset={**OWN_MAPPING, "dayfirst": True}))
    assert own_data_keys(own) == ["dataset.dayfirst", "dataset.utilization"]
    with pytest.raises(SampleNotChosenError):
        training_dataset_path(own)
    assert training_dataset_path(own, use_sample=True) == sample_dataset_path()
    mine = tmp_path / "mine.csv"
    assert training_dataset_path(own, mine) == mine


@pytest.mark.parametrize("command", ["train", "retrain", "backtest"])
def test_a_config_of_ones_own_data_refuses_the_sample_without_sample(
    tmp_path: Path, cli: Callable[..., Any], command: str
) -> None:
    config = write_config(tmp_path, dataset=OWN_MAPPING)
    result = cli(command)
    assert result.exit_code == 2
    assert result.stderr == REFUSAL.format(config=config)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_dataset_and_sample_together_are_refused(project: Project, cli: Callable[..., Any]):
    result = cli("train", "--sample", "--dataset", str(sample_dataset_path()))
    assert result.exit_code == 2
    assert result.stderr == "Error: pass either --dataset FILE or --sample, not both\n"


def test_training_on_the_sample_says_so_and_the_version_records_it(
    tmp_path: Path, cli: Callable[..., Any], columns80: None
) -> None:
    write_config(tmp_path, dataset=OWN_MAPPING)
    result = cli("train", "--sample", "--version", "1.0.0", "--epochs", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == TRAIN_WARNING
    assert json.loads(result.stdout)["dataset"]["simulated_sample"] is True
    metadata = json.loads((tmp_path / "models/1.0.0/model_metadata.json").read_text())
    assert metadata["dataset"]["simulated_sample"] is True
    entry = json.loads((tmp_path / "models/registry.json").read_text())["versions"][0]
    assert entry["simulated_sample"] is True
    listed = cli("registry", "list", "--json")
    assert json.loads(listed.stdout)["versions"][0]["simulated_sample"] is True
    shown = {
        cells[0]: cells[1]
        for line in cli("registry", "show", "1.0.0").stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│").split("│")]) == 2
    }
    assert shown["simulated_sample"] == "yes"
    assert shown["dataset"] == "sample:sample_weekly.csv"


def test_a_version_trained_on_ones_own_file_is_not_flagged(
    project: Project, cli: Callable[..., Any]
) -> None:
    mine = project.root / "mine.csv"
    mine.write_bytes(sample_dataset_path().read_bytes())
    result = cli("train", "--dataset", str(mine), "--version", "1.0.0", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    assert "simulated sample" not in result.stderr
    entry = json.loads(project.registry_file.read_text())["versions"][0]
    assert "simulated_sample" not in entry
