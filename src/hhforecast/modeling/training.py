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
from typing import TYPE_CHECKING, Any

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
from hhforecast.modeling.calibration import FoldCalibration, fold_calibration
from hhforecast.modeling.evaluation import (
    BASELINES,
    Split,
    baseline_predictions,
    interval_coverage,
    regression_metrics,
    split_weeks,
)
from hhforecast.modeling.evidence import recipe_evidence
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import FitMemo
from hhforecast.modeling.reference import write_drift_reference
from hhforecast.registry.store import ModelVersion, Registry, registry_fields

if TYPE_CHECKING:
    from hhforecast.modeling.backtest import BacktestResult

__all__ = ["FOLDS_TASK", "EpochCallback", "TrainedVersion", "all_weeks_split", "train_version"]

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


def all_weeks_split(n_rows: int, validation_fraction: float) -> Split:
    """Every week learnt: the recipe's fit and validation weeks taken from all of them (the
    latest `validation_fraction` validate), no test week."""
    rows = np.arange(n_rows)
    n_val = max(1, round(n_rows * validation_fraction))
    return Split(fit=rows[:-n_val], validation=rows[-n_val:], test=rows[:0])


def _interval_record(
    cfg: Any,
    served: FoldCalibration | None,
    fallback_weeks: int,
    halfwidth: float,
    dates: Any,
) -> dict[str, Any]:
    if served is None:
        return {
            "method": "split-conformal on the validation weeks (not seen by the first-stage "
            "fit), |residual| / prediction: too few weeks for rolling-origin folds",
            "scale": "relative",
            "coverage": cfg.interval_coverage,
            "halfwidth": halfwidth,
            "calibration_weeks": fallback_weeks,
        }
    return {
        "method": "split-conformal on the errors of rolling-origin folds of the recipe (each "
        "forecasting weeks after those it trained on), |error| / forecast",
        "scale": "relative",
        "coverage": cfg.interval_coverage,
        "halfwidth": halfwidth,
        "calibration_weeks": served.weeks,
        "calibration": served.to_dict(dates),
    }


def _fit_variant(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    dates: Any,
    split: Split,
    served_split: Split | None,
    folds: BacktestResult | None,
    fits: FitMemo,
    settings: Settings,
    out_dir: Path,
    on_epoch: EpochCallback | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variant's record in the metadata, and its evidence (the scored fit's holdout)."""
    import joblib

    cfg = settings.training
    hook = None if on_epoch is None else (lambda done, total: on_epoch(name, done, total))
    # The first fold scored on the test weeks learnt the same weeks: the memo has this fit.
    scored = fits.fit(name, x, y, split.fit, split.validation, cfg, hook)
    test_pred = scored.predict(x[split.test])
    # The scored fit's interval, calibrated as the served one is but only on fold weeks before
    # the test weeks: its coverage on them is then out of sample.
    before_test = int(split.test.min()) if cfg.split == "time" and len(split.test) else None
    scored_cal = (
        fold_calibration(folds, name, y, cfg.interval_folds, cfg.interval_coverage, before_test)
        if folds is not None and before_test is not None
        else None
    )
    scored_halfwidth = (
        scored_cal.halfwidth if scored_cal else scored.interval_halfwidth(cfg.interval_coverage)
    )
    lower, upper = interval_bounds(test_pred, scored_halfwidth, "relative")
    baselines = baseline_predictions(x, y, split.train, split.test, dates.to_numpy())
    k = x.shape[1]
    evidence = {
        "metrics": regression_metrics(y[split.test], test_pred, k),
        "interval_halfwidth": scored_halfwidth,
        "interval_calibration_weeks": scored_cal.weeks
        if scored_cal
        else len(scored.validation_residuals),
        "observed_coverage_test": interval_coverage(y[split.test], lower, upper),
        "deep_correction_kept": scored.training["deep_correction_kept"],
    }

    if served_split is None:  # the scored fit serves
        served, served_rows, served_cal = scored, split.train, scored_cal
    else:
        refit_hook = (
            None
            if on_epoch is None
            else (lambda d, total: on_epoch(f"{name} (all weeks)", d, total))
        )
        served = fits.fit(name, x, y, served_split.fit, served_split.validation, cfg, refit_hook)
        served_rows = served_split.train
        served_cal = (
            fold_calibration(folds, name, y, cfg.interval_folds, cfg.interval_coverage)
            if folds is not None
            else None
        )
    halfwidth = (
        served_cal.halfwidth if served_cal else served.interval_halfwidth(cfg.interval_coverage)
    )
    interval = _interval_record(cfg, served_cal, len(served.validation_residuals), halfwidth, dates)
    served_test = served.predict(x[split.test]) if len(split.test) else test_pred
    interval.update(
        observed_coverage_test=evidence["observed_coverage_test"],
        mean_halfwidth_test_hh=float(np.mean(halfwidth * np.abs(served_test))),
    )

    names = artifact_names(name)
    served.network.save(out_dir / names["model"])
    # The joblib files keep the original system's layout; hhforecast itself loads the scalers
    # from the plain numbers in the metadata, never by unpickling (docs/artifacts.md).
    joblib.dump(served.scaler_x, out_dir / names["scaler_X"])
    joblib.dump(served.scaler_y, out_dir / names["scaler_y"])
    features = list(settings.training.variants[name])
    record = {
        "features": features,
        # The recipe's score on the held-out weeks (the registry's metrics and the gate's).
        "metrics": evidence["metrics"],
        "baselines": {b: regression_metrics(y[split.test], baselines[b], k) for b in BASELINES},
        "training": {
            **served.training,
            "deep_path_excludes_trend_inputs": [
                features[j] for j in served.training["deep_path_excludes_trend_inputs"]
            ],
        },
        "interval": interval,
        "scaling": scaling_record(served.scaler_x, served.scaler_y),
        "feature_ranges": {
            f: [float(x[served_rows, j].min()), float(x[served_rows, j].max())]
            for j, f in enumerate(features)
        },
    }
    return record, evidence


def _recipe_folds(
    dataset: WeeklyDataset,
    split: Split,
    settings: Settings,
    fits: FitMemo,
    on_epoch: EpochCallback | None,
) -> BacktestResult | None:
    """The rolling-origin folds of the recipe: the scored ones cover the test weeks (or
    `training.backtest_folds` folds), warm-up folds before them; None if the data is too short."""
    from hhforecast.modeling.backtest import BacktestError, run_backtest

    cfg = settings.training
    horizon = cfg.backtest_horizon
    folds = cfg.backtest_folds or max(1, -(-len(split.test) // horizon))
    hook = None if on_epoch is None else (lambda done, total: on_epoch(FOLDS_TASK, done, total))
    try:
        return run_backtest(dataset, cfg, folds, horizon, on_fold=hook, fewer_folds=True, fits=fits)
    except BacktestError:
        return None


FOLDS_TASK = "rolling-origin folds"
"""The name the epoch callback gets for the folds' progress (done and planned folds)."""


def train_version(
    settings: Settings,
    dataset_path: Path | None = None,
    version: str | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
    dataset: WeeklyDataset | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainedVersion:
    """Score the recipe on a weekly dataset, fit what serves, publish both variants as one version.

    The recipe is scored on the latest weeks held out (the registry's metrics) and by
    rolling-origin folds; with `training.refit_on_all_weeks` (the default) the served fit then
    learns every week, and its intervals come from the folds' out-of-sample errors.
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
    served_split = (
        all_weeks_split(dataset.rows, cfg.validation_fraction) if cfg.refit_on_all_weeks else None
    )

    started = time.perf_counter()
    fits = FitMemo()
    folds = _recipe_folds(dataset, split, settings, fits, on_epoch)
    with registry.staging_dir() as staging:
        y = dataset.frame[cfg.target].to_numpy(dtype=np.float64)
        fitted = {
            name: _fit_variant(
                name,
                dataset.frame[features].to_numpy(dtype=np.float64),
                y,
                dataset.frame["date"],
                split,
                served_split,
                folds,
                fits,
                settings,
                staging,
                on_epoch,
            )
            for name, features in cfg.variants.items()
        }
        variants = {name: record for name, (record, _) in fitted.items()}
        seconds = time.perf_counter() - started
        metadata = _metadata(settings, dataset, split, variants, seconds, staging)
        learnt = served_split or split
        metadata["served_fit"] = _served_fit(dataset, learnt, served_split is not None)
        metadata["trained_through"] = metadata["served_fit"]["trained_through"]
        metadata["recipe_evidence"] = recipe_evidence(
            split,
            dataset,
            {n: e for n, (_, e) in fitted.items()},
            folds,
            cfg.target,
            cfg.interval_coverage,
        )
        if cfg.backtest_folds > 0 and folds is not None:  # the earlier place of the summary
            metadata["backtest"] = folds.summary()
        # Kept with the model, so that `drift` compares against the weeks it learnt from.
        metadata["artifacts"].update(write_drift_reference(staging, dataset.frame, learnt))
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


def _period(dates: Any, rows: np.ndarray) -> dict[str, Any]:
    chosen = dates.iloc[rows]
    return {
        "start": chosen.min().strftime("%Y-%m-%d"),
        "end": chosen.max().strftime("%Y-%m-%d"),
        "weeks": len(rows),
    }


def _served_fit(dataset: WeeklyDataset, learnt: Split, refit: bool) -> dict[str, Any]:
    """The weeks the served fit learnt: every week (refit) or the scored fit's."""
    dates = dataset.frame["date"]
    period = _period(dates, learnt.train)
    return {
        "refit_on_all_weeks": refit,
        "trained_through": period["end"],
        **period,
        "fit": _period(dates, learnt.fit),
        "validation": _period(dates, learnt.validation),
    }


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
        return _period(dates, rows)

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
            "refit_on_all_weeks": cfg.refit_on_all_weeks,
            "interval_folds": cfg.interval_folds,
            "fold_weeks": cfg.backtest_horizon,
            "scaling": "StandardScaler on X and y, fitted on the fit + validation weeks of "
            "the served fit (served_fit)",
        },
        "seed": cfg.seed,
        "training_seconds": round(seconds, 3),
        "libraries": _library_versions(),
        "variants": variants,
        "artifacts": artifacts,
    }
