"""Training a version: both variants, their baselines and calibration, written as one unit."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast._fs import file_sha256
from hhforecast.config import Settings
from hhforecast.datasets.weekly import WeeklyDataset, dataset_label, load_training_dataset
from hhforecast.modeling.artifacts import (
    METADATA_FILE,
    METADATA_SHA256_FIELD,
    artifact_names,
    scaling_record,
)
from hhforecast.modeling.evaluation import (
    BASELINES,
    Split,
    baseline_predictions,
    interval_coverage,
    regression_metrics,
    split_weeks,
)
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import fit_network
from hhforecast.modeling.reference import write_drift_reference
from hhforecast.registry.store import ModelVersion, Registry, registry_fields

__all__ = ["EpochCallback", "TrainedVersion", "train_version"]

EpochCallback = Callable[[str, int, int], None]
"""Called as (variant, epochs done, epochs planned) after every epoch."""

_LIBRARIES = ("hhforecast", "tensorflow", "keras", "scikit-learn", "numpy", "pandas")


@dataclass(frozen=True)
class TrainedVersion:
    """What a training produced: the registry entry and the full metadata."""

    entry: ModelVersion
    metadata: dict[str, Any]
    path: Path
    serving: bool = False
    """Whether the version serves from the moment it was registered (production follows
    "latest")."""


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _fit_variant(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    split: Split,
    settings: Settings,
    out_dir: Path,
    on_epoch: EpochCallback | None,
) -> dict[str, Any]:
    import joblib

    cfg = settings.training
    hook = None if on_epoch is None else (lambda done, total: on_epoch(name, done, total))
    fitted = fit_network(x, y, split.fit, split.validation, cfg, hook)

    k = x.shape[1]
    test_pred = fitted.predict(x[split.test])
    halfwidth = fitted.interval_halfwidth(cfg.interval_coverage)
    lower, upper = interval_bounds(test_pred, halfwidth, "relative")
    baselines = baseline_predictions(x, y, split.train, split.test, dates)

    names = artifact_names(name)
    fitted.network.save(out_dir / names["model"])
    # The joblib files keep the original system's layout; hhforecast itself loads the scalers
    # from the plain numbers in the metadata, never by unpickling (docs/artifacts.md).
    joblib.dump(fitted.scaler_x, out_dir / names["scaler_X"])
    joblib.dump(fitted.scaler_y, out_dir / names["scaler_y"])
    features = list(settings.training.variants[name])
    return {
        "features": features,
        "metrics": regression_metrics(y[split.test], test_pred, k),
        "baselines": {b: regression_metrics(y[split.test], baselines[b], k) for b in BASELINES},
        "training": {
            **fitted.training,
            "deep_path_excludes_trend_inputs": [
                features[j] for j in fitted.training["deep_path_excludes_trend_inputs"]
            ],
        },
        "interval": {
            "method": "split-conformal on the validation weeks (not seen by the first-stage "
            "fit), |residual| / prediction",
            "scale": "relative",
            "coverage": cfg.interval_coverage,
            "halfwidth": halfwidth,
            "calibration_weeks": len(split.validation),
            "observed_coverage_test": interval_coverage(y[split.test], lower, upper),
            "mean_halfwidth_test_hh": float(np.mean(upper - test_pred)),
        },
        "scaling": scaling_record(fitted.scaler_x, fitted.scaler_y),
        "feature_ranges": {
            f: [float(x[split.train, j].min()), float(x[split.train, j].max())]
            for j, f in enumerate(features)
        },
    }


def train_version(
    settings: Settings,
    dataset_path: Path | None = None,
    version: str | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
    dataset: WeeklyDataset | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainedVersion:
    """Train every variant on a weekly dataset and publish the result as one registry version.

    `dataset`, when the caller has already loaded and checked it (from `dataset_path`), is used
    as it is instead of reading the file again. `extra_metadata` is added to
    model_metadata.json (the MLflow run the training is tracked in). Nothing is written to the
    models folder or the registry unless every step succeeds.
    """
    registry = Registry(settings)
    registry.check_can_publish(version, force)
    cfg = settings.training
    if dataset is None:
        dataset = load_training_dataset(settings, dataset_path)
    split = split_weeks(
        dataset.rows, cfg.test_fraction, cfg.validation_fraction, cfg.split, cfg.seed
    )

    started = time.perf_counter()
    with registry.staging_dir() as staging:
        y = dataset.frame[cfg.target].to_numpy(dtype=np.float64)
        variants = {
            name: _fit_variant(
                name,
                dataset.frame[features].to_numpy(dtype=np.float64),
                y,
                dataset.frame["date"].to_numpy(),
                split,
                settings,
                staging,
                on_epoch,
            )
            for name, features in cfg.variants.items()
        }
        seconds = time.perf_counter() - started
        metadata = _metadata(settings, dataset, split, variants, seconds, staging)
        if cfg.backtest_folds > 0:  # rolling-origin scores of the same recipe, for the record
            metadata["backtest"] = _backtest_summary(dataset, settings)
        # Kept with the model, so that `drift` compares against the weeks it learnt from.
        metadata["artifacts"].update(write_drift_reference(staging, dataset.frame, split))
        metadata.update(extra_metadata or {})
        entry_fields = registry_fields(metadata)

        def write_metadata(name: str) -> None:
            # A dated version's name is chosen under the registry lock, just before the move.
            metadata["version"] = name
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
            # The entry binds the metadata, and so the checksums it records, to the registry.
            entry_fields[METADATA_SHA256_FIELD] = file_sha256(staging / METADATA_FILE)

        published = registry.publish(
            staging, version, entry_fields, force=force, prepare=write_metadata
        )
    entry = published.entry
    return TrainedVersion(entry, metadata, registry.version_dir(entry), published.serving)


def _backtest_summary(dataset: WeeklyDataset, settings: Settings) -> dict[str, Any]:
    from hhforecast.modeling.backtest import run_backtest

    cfg = settings.training
    return run_backtest(dataset, cfg, cfg.backtest_folds, cfg.backtest_horizon).summary()


def _metadata(
    settings: Settings,
    dataset: WeeklyDataset,
    split: Split,
    variants: dict[str, dict[str, Any]],
    seconds: float,
    folder: Path,
) -> dict[str, Any]:
    dates = dataset.frame["date"]
    cfg = settings.training

    def period(rows: np.ndarray) -> dict[str, Any]:
        chosen = dates.iloc[rows]
        return {
            "start": chosen.min().strftime("%Y-%m-%d"),
            "end": chosen.max().strftime("%Y-%m-%d"),
            "weeks": len(rows),
        }

    from hhforecast.datasets.build import read_manifest

    # A dataset built by `dataset build` carries its lineage: the raw files, what was dropped.
    manifest = read_manifest(dataset.path)
    artifacts = {
        name: file_sha256(folder / name)
        for variant in variants
        for name in artifact_names(variant).values()
    }
    return {
        "version": None,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": cfg.target,
        "dataset": {
            "path": dataset_label(dataset.path, settings.base_dir),
            "rows": dataset.rows,
            "sha256": dataset.sha256,
            "start": dates.min().strftime("%Y-%m-%d"),
            "end": dates.max().strftime("%Y-%m-%d"),
            "simulated_sample": dataset.is_sample,
            **({"manifest": manifest} if manifest is not None else {}),
        },
        "split": {
            "mode": cfg.split,
            "fit": period(split.fit),
            "validation": period(split.validation),
            "test": period(split.test),
        },
        "hyperparameters": {
            "architecture": "wide-and-deep: frozen least-squares linear path + "
            "Dense-tanh-Dense-tanh correction; refit on fit + validation weeks",
            "units": cfg.units,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "patience": cfg.patience,
            "l2": cfg.l2,
            "optimizer": "adam",
            "loss": "mse",
            "scaling": "StandardScaler on X and y, fitted on the fit + validation weeks",
        },
        "seed": cfg.seed,
        "training_seconds": round(seconds, 3),
        "libraries": _library_versions(),
        "variants": variants,
        "artifacts": artifacts,
    }
