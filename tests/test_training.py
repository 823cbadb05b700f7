import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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


def test_the_served_fit_learns_every_labelled_week(trained_project: Project) -> None:
    from hhforecast.modeling.artifacts import load_variant
    from hhforecast.modeling.reference import read_drift_reference

    folder = trained_project.models / "1.0.0"
    meta = json.loads((folder / "model_metadata.json").read_text())
    assert meta["trained_through"] == meta["dataset"]["end"] == "2023-12-25"
    served = meta["served_fit"]
    assert (served["refit_on_all_weeks"], served["start"], served["end"], served["weeks"]) == (
        True,
        "2019-01-07",
        "2023-12-25",
        260,
    )
    assert served["fit"]["weeks"] + served["validation"]["weeks"] == 260
    # The held-out split is still recorded, as the recipe's evidence was measured on it.
    assert meta["split"]["test"] == {"start": "2022-10-03", "end": "2023-12-25", "weeks": 65}
    sample = pd.read_csv(sample_dataset_path())
    model = load_variant(folder, "5features")
    x = sample[model.features].to_numpy(dtype=float)
    # Scaled and ranged on every week: the newest weeks were learnt, not held out.
    np.testing.assert_allclose(model.x_mean, x.mean(axis=0))
    assert model.feature_ranges["age_fleet"] == (x[:, 4].min(), x[:, 4].max())
    assert len(read_drift_reference(folder, model.features, meta)) == 260
    # The registry's metrics stay the recipe's holdout score (what the gate compares).
    entry = Registry(trained_project.settings).get("1.0.0")
    holdout = meta["recipe_evidence"]["holdout"]
    assert holdout["test"] == meta["split"]["test"]
    assert entry.metrics["5features"] == holdout["variants"]["5features"]["metrics"]
    assert entry.extra["trained_through"] == "2023-12-25"


def test_the_served_interval_comes_from_the_last_folds_errors(trained_project: Project) -> None:
    meta = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    folds = meta["recipe_evidence"]["rolling_origin"]
    # 1 fold of 65 weeks covers the 65 test weeks; 1 warm-up fold before it calibrates it; the
    # served interval is calibrated on the last fold (65 weeks up to the last).
    assert (folds["folds"], folds["warmup_folds"], folds["horizon_weeks"]) == (1, 1, 65)
    for variant in ("4features", "5features"):
        interval = meta["variants"][variant]["interval"]
        assert "rolling-origin folds" in interval["method"]
        calibration = interval["calibration"]
        assert interval["halfwidth"] == calibration["halfwidth"]
        assert (calibration["weeks"], calibration["folds"], calibration["start"]) == (
            65,
            1,
            "2022-10-03",
        )
        # The holdout coverage is of the scored fit's own interval, calibrated on fold weeks
        # before the test weeks only: the warm-up fold's 65 weeks.
        evidence = meta["recipe_evidence"]["holdout"]["variants"][variant]
        assert interval["observed_coverage_test"] == evidence["observed_coverage_test"]
        assert evidence["interval_calibration_weeks"] == 65
        errors = folds["fold_errors"][variant]
        assert (errors["weeks"], errors["folds"]) == (130, 2)
        assert set(errors["halfwidth_by_horizon"]) == {"1-22", "23-43", "44-65"}


def test_the_first_fold_on_the_test_weeks_and_the_held_out_score_are_one_fit(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Per variant: the warm-up fold, the fold on the 65 test weeks (which learns the same 195
    # weeks as the held-out score) and the refit on every week: three fits, not four.
    import hhforecast.modeling.network as network

    learnt: list[tuple[int, int]] = []
    fit_network = network.fit_network

    def counted(x, y, fit, validation, cfg, on_epoch=None):  # type: ignore[no-untyped-def]
        learnt.append((len(fit), len(validation)))
        return fit_network(x, y, fit, validation, cfg, on_epoch)

    monkeypatch.setattr(network, "fit_network", counted)
    train_version(project.settings, version="1.0.0")
    assert sorted(learnt) == sorted([(104, 26), (156, 39), (208, 52)] * 2)
