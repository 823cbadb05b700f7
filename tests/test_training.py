import json
from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast._fs import file_sha256
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.modeling.artifacts import artifact_names
from hhforecast.modeling.training import train_version
from hhforecast.registry.store import Registry

from .conftest import Project

SEED_ARTIFACTS = {
    "model_hh_semanal_4features.keras",
    "model_hh_semanal_5features.keras",
    "scaler_X_4features.joblib",
    "scaler_y_4features.joblib",
    "scaler_X_5features.joblib",
    "scaler_y_5features.joblib",
    "model_metadata.json",
}


def test_a_version_folder_has_the_original_artifacts_and_full_metadata(
    trained_project: Project,
) -> None:
    folder = trained_project.models / "1.0.0"
    assert {p.name for p in folder.iterdir()} >= SEED_ARTIFACTS
    meta = json.loads((folder / "model_metadata.json").read_text())
    assert meta["version"] == "1.0.0"
    assert meta["seed"] == 42
    assert meta["dataset"]["path"] == "sample:sample_weekly.csv"
    assert meta["dataset"]["sha256"] == file_sha256(sample_dataset_path())
    assert meta["dataset"]["rows"] == len(pd.read_csv(sample_dataset_path()))
    assert {"tensorflow", "keras", "scikit-learn", "python"} <= set(meta["libraries"])
    assert meta["training_seconds"] > 0
    assert meta["hyperparameters"]["epochs"] == 8
    for variant in ("4features", "5features"):
        for name in artifact_names(variant).values():
            assert meta["artifacts"][name] == file_sha256(folder / name)
        info = meta["variants"][variant]
        assert set(info["metrics"]) == {"MAE", "RMSE", "R2", "R2_adj", "MAPE"}
        assert set(info["baselines"]) == {"linear_regression", "naive_last_week", "seasonal_naive"}
        assert set(info["feature_ranges"]) == set(info["features"])
        assert 0.0 <= info["interval"]["observed_coverage_test"] <= 1.0
        assert info["interval"]["halfwidth"] > 0


def test_default_evaluation_holds_out_the_most_recent_weeks(trained_project: Project) -> None:
    meta = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    split = meta["split"]
    assert split["mode"] == "time"
    assert split["fit"]["end"] < split["validation"]["start"] <= split["validation"]["end"]
    assert split["validation"]["end"] < split["test"]["start"]
    assert split["test"]["end"] == meta["dataset"]["end"]
    total = split["fit"]["weeks"] + split["validation"]["weeks"] + split["test"]["weeks"]
    assert total == meta["dataset"]["rows"]
    assert split["test"]["weeks"] == round(0.25 * total)


def test_the_registry_entry_carries_metrics_and_baselines(trained_project: Project) -> None:
    entry = Registry(trained_project.settings).get("1.0.0")
    assert entry.path == "models/1.0.0"
    assert entry.dataset == "sample:sample_weekly.csv"
    for variant in ("4features", "5features"):
        assert np.isfinite(entry.metric(variant, "RMSE"))
        assert entry.metric(variant, "RMSE") >= entry.metric(variant, "MAE")
        assert set(entry.extra["baselines"][variant]) == {
            "linear_regression",
            "naive_last_week",
            "seasonal_naive",
        }
    assert entry.extra["test_period"]["weeks"] > 0


def test_random_split_reproduces_the_original_protocol(project: Project, tmp_path: Path) -> None:
    settings = project.settings.with_training(split="random", epochs=2)
    result = train_version(settings, version="random-split")
    split = result.metadata["split"]
    assert split["mode"] == "random"
    # random test weeks are spread over the whole history, not only its end
    assert split["test"]["start"] < split["fit"]["end"]
