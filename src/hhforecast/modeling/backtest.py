"""Rolling-origin backtest: train on the weeks up to a date, score the next weeks, move the date.

Every fold asks the same question a planner asks each quarter: with the history known so far,
how well are the coming weeks forecast? Each fold trains the network of every variant (the same
`fit_network` that `hhforecast train` uses, with its own validation slice and intervals), fits
the baselines on the same weeks, and scores them all on the same future weeks. The optional
`original_recipe` is the first system's model (MinMax-scaled X and y, Dense 100-100 ReLU, Adam,
10 epochs, batch 50), trained on the same weeks, to measure what the redesign changed. Its result
depends on the random draw of its initial weights, so it is trained from several initialisations
and its scores are the mean of theirs (the score of the recipe, not of one lucky or unlucky draw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.config import Settings, TrainingConfig
from hhforecast.datasets.weekly import WeeklyDataset
from hhforecast.errors import HHForecastError
from hhforecast.modeling.artifacts import quiet_tensorflow
from hhforecast.modeling.evaluation import (
    BASELINES,
    baseline_predictions,
    conformal_relative_halfwidth,
    regression_metrics,
)
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import FitMemo

__all__ = [
    "NETWORK",
    "ORIGINAL_RECIPE",
    "BacktestError",
    "BacktestResult",
    "backtest_dataset",
    "forecast_metrics",
    "original_recipe_predictions",
    "original_recipe_runs",
    "plan_origins",
    "rolling_origins",
    "run_backtest",
]

NETWORK = "network"
ORIGINAL_RECIPE = "original_recipe"
DEFAULT_FOLDS = 4
"""Folds of `hhforecast backtest` when neither --folds nor training.backtest_folds says."""
ORIGINAL_INITS = 5
"""Initialisations the original recipe is trained from; its scores are their mean."""
ORIGINAL_EPOCHS = 10
"""The original recipe's epochs."""
MIN_TRAINING_WEEKS = 26
"""Fewer weeks than half a year leave too little to fit, validate and calibrate on."""

FoldCallback = Callable[[int, int], None]
"""Called as (folds done, folds planned) after every fold."""


class BacktestError(HHForecastError):
    """The dataset is too short for the folds and horizon asked for."""

    def __init__(self, rows: int, folds: int, horizon: int) -> None:
        need = MIN_TRAINING_WEEKS + folds * horizon
        super().__init__(
            f"a backtest of {folds} fold(s) of {horizon} week(s) needs at least {need} weeks "
            f"({MIN_TRAINING_WEEKS} to train the first fold on), but the dataset has {rows}. "
            "Use fewer --folds or a shorter --horizon."
        )


@dataclass
class BacktestResult:
    """Scores of every model per fold and over all folds' weeks pooled."""

    folds: int
    horizon: int
    models: list[str]
    fold_scores: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    interval_target: float = 0.8
    original_rmse_by_init: dict[str, list[float]] = field(default_factory=dict)
    """Pooled RMSE of each initialisation of the original recipe, per variant."""
    actual: np.ndarray = field(default_factory=lambda: np.empty(0))
    """Realised HH of every scored week, folds in order."""
    test_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    """Dataset rows of the scored weeks, in the order of `actual`."""
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """Per variant and model, the forecast of every scored week; for the original recipe an
    array of one row per initialisation."""
    dataset_sha256: str = ""
    """SHA-256 of the weekly dataset backtested (recorded by tracking)."""
    warmup_folds: int = 0
    """Folds before the scored ones, run only for their errors: they calibrate the intervals
    of the first scored folds."""
    fold_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    """Dataset rows forecast by every fold (warm-up folds first), in order."""
    fold_numbers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    """For each of `fold_rows`, its fold (1 = the first warm-up fold, or the first fold)."""
    fold_horizons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    """For each of `fold_rows`, weeks after its fold's training weeks (1 = the week after)."""
    fold_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    """Per variant, the network's forecast of each of `fold_rows` (out of sample)."""

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready data."""
        return {
            "folds": self.folds,
            "horizon_weeks": self.horizon,
            "warmup_folds": self.warmup_folds,
            "models": self.models,
            "interval_target": self.interval_target,
            "overall": self.overall,
            "observed_coverage": self.coverage,
            "original_recipe_rmse_by_init": self.original_rmse_by_init,
            "fold_scores": self.fold_scores,
        }

    def summary(self) -> dict[str, Any]:
        """The short form `train` stores in model_metadata.json (overall scores only)."""
        keep = ("MAE", "RMSE", "MAPE")
        return {
            "folds": self.folds,
            "horizon_weeks": self.horizon,
            "weeks": len(self.actual),
            "warmup_folds": self.warmup_folds,
            "interval_target": self.interval_target,
            "observed_coverage": self.coverage,
            "overall": {
                variant: {m: {k: scores[k] for k in keep} for m, scores in by_model.items()}
                for variant, by_model in self.overall.items()
            },
        }


def _stamps(dates: Any) -> np.ndarray:
    if isinstance(dates, int):
        dates = np.datetime64("2000-01-03") + 7 * np.arange(dates).astype("timedelta64[D]")
    return np.asarray(dates, dtype="datetime64[D]")


def rolling_origins(dates: Any, folds: int, horizon: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, test rows) of each fold, by date: fold k scores the `horizon` weeks from
    its origin and trains on every week before it; the last fold ends with the last week.

    `dates` are the dataset's weeks in order (or a row count, for rows one week apart)."""
    stamps = _stamps(dates)
    rows = len(stamps)
    if folds < 1 or horizon < 1:
        raise BacktestError(rows, folds, horizon)
    end = stamps[-1] + np.timedelta64(7, "D") if rows else np.datetime64("2000-01-03")
    out = []
    for k in range(folds):
        origin = end - np.timedelta64(7 * horizon * (folds - k), "D")
        stop = origin + np.timedelta64(7 * horizon, "D")
        train = np.flatnonzero(stamps < origin)
        test = np.flatnonzero((stamps >= origin) & (stamps < stop))
        if len(train) < MIN_TRAINING_WEEKS or len(test) == 0:
            raise BacktestError(rows, folds, horizon)
        out.append((train, test))
    return out


def plan_origins(
    dates: Any, folds: int, horizon: int, warmup: int, *, fewer_folds: bool = False
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """`warmup + folds` rolling origins, with as many warm-up folds (up to `warmup`) as the
    dataset has weeks for; with `fewer_folds`, fewer scored folds too (down to 1) rather than
    a BacktestError. Returns the origins and the warm-up folds among them."""
    rows = len(_stamps(dates))
    for scored in range(folds, 0 if fewer_folds else folds - 1, -1):
        for w in range(max(warmup, 0), -1, -1):
            try:
                return rolling_origins(dates, scored + w, horizon), w
            except BacktestError:
                continue
    raise BacktestError(rows, folds, horizon)


def original_recipe_predictions(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    epochs: int = ORIGINAL_EPOCHS,
) -> np.ndarray:
    """The first system's model, faithfully: MinMax X and y, Dense 100-100 ReLU, 10 epochs."""
    quiet_tensorflow()
    import keras
    from sklearn.preprocessing import MinMaxScaler

    keras.utils.set_random_seed(seed)
    scaler_x = MinMaxScaler().fit(x[train])
    scaler_y = MinMaxScaler().fit(y[train].reshape(-1, 1))
    network = keras.Sequential(
        [
            keras.Input(shape=(x.shape[1],)),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    network.compile(optimizer="adam", loss="mse")
    network.fit(
        scaler_x.transform(x[train]),
        scaler_y.transform(y[train].reshape(-1, 1)),
        epochs=epochs,
        batch_size=50,
        verbose=0,
    )
    z = network(scaler_x.transform(x[test]), training=False).numpy()
    return np.asarray(scaler_y.inverse_transform(z)[:, 0], dtype=np.float64)


def original_recipe_runs(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    inits: int = ORIGINAL_INITS,
    epochs: int = ORIGINAL_EPOCHS,
) -> np.ndarray:
    """The original recipe trained from `inits` initialisations: one row of forecasts each."""
    return np.vstack(
        [original_recipe_predictions(x, y, train, test, seed + k, epochs) for k in range(inits)]
    )


def forecast_metrics(
    y_true: np.ndarray, predicted: np.ndarray, n_features: int
) -> dict[str, float]:
    """Metrics of one model's forecasts; for a (runs x weeks) array, the mean over the runs."""
    if predicted.ndim == 1:
        return regression_metrics(y_true, predicted, n_features)
    each = [regression_metrics(y_true, run, n_features) for run in predicted]
    return {k: float(np.mean([m[k] for m in each])) for k in each[0]}


def _validation_slice(train: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(1, round(len(train) * fraction))
    return train[:-n_val], train[-n_val:]


def run_backtest(
    dataset: WeeklyDataset,
    cfg: TrainingConfig,
    folds: int,
    horizon: int,
    original_inits: int = 0,
    on_fold: FoldCallback | None = None,
    *,
    original_epochs: int = ORIGINAL_EPOCHS,
    warmup_folds: int | None = None,
    fewer_folds: bool = False,
    fits: FitMemo | None = None,
) -> BacktestResult:
    """Rolling-origin evaluation of every variant's network and the baselines.

    The interval of each scored fold is calibrated on the network's errors in the
    `cfg.interval_folds` folds before it (conformal, as the served intervals are); to have them
    for the first scored folds, up to `warmup_folds` (default `cfg.interval_folds`) earlier folds
    are run for their errors only. Only when no earlier fold fits in the dataset does a fold use
    its own validation slice. With `original_inits` above 0 the original recipe is scored too,
    trained from that many initialisations for `original_epochs` (its own 10 unless a quick
    check asks for fewer); its scores are the mean of theirs. `fewer_folds`: score fewer folds
    rather than refuse a dataset too short for `folds`. `fits`: the caller's memo of fits, to
    share with its own fits on the same weeks.
    """
    fits = fits or FitMemo()
    dates = dataset.frame["date"]
    stamps = _stamps(dates.to_numpy())
    wanted = cfg.interval_folds if warmup_folds is None else warmup_folds
    origins, warmup = plan_origins(stamps, folds, horizon, wanted, fewer_folds=fewer_folds)
    folds = len(origins) - warmup
    models = [NETWORK, *([ORIGINAL_RECIPE] if original_inits else []), *BASELINES]
    y = dataset.frame[cfg.target].to_numpy(dtype=np.float64)
    result = BacktestResult(folds, horizon, models, interval_target=cfg.interval_coverage)
    result.warmup_folds = warmup
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        v: {m: [] for m in models} for v in cfg.variants
    }
    inside: dict[str, list[np.ndarray]] = {v: [] for v in cfg.variants}
    errors: dict[str, list[np.ndarray]] = {v: [] for v in cfg.variants}
    forecasts: dict[str, list[np.ndarray]] = {v: [] for v in cfg.variants}
    end = stamps[-1] + np.timedelta64(7, "D")
    for k, (train, test) in enumerate(origins):
        fit, validation = _validation_slice(train, cfg.validation_fraction)
        origin = end - np.timedelta64(7 * horizon * (len(origins) - k), "D")
        result.fold_horizons = np.concatenate(
            [result.fold_horizons, (stamps[test] - origin).astype(int) // 7 + 1]
        )
        scored = k >= warmup
        fold: dict[str, Any] = {
            "fold": k - warmup + 1,
            "train_weeks": len(train),
            "test_start": dates.iloc[test[0]].strftime("%Y-%m-%d"),
            "test_end": dates.iloc[test[-1]].strftime("%Y-%m-%d"),
            "variants": {},
            "observed_coverage": {},
            "calibration_weeks": {},
            "deep_correction_kept": {},
        }
        for variant, features in cfg.variants.items():
            x = dataset.frame[features].to_numpy(dtype=np.float64)
            fitted = fits.fit(variant, x, y, fit, validation, cfg)
            network = fitted.predict(x[test])
            # The folds just before this one: their errors are out of sample and precede it.
            earlier = slice(max(0, k - cfg.interval_folds), k)
            calibration_errors = errors[variant][earlier]
            forecasts[variant].append(network)
            errors[variant].append(y[test] - network)
            if not scored:
                continue
            if calibration_errors:
                halfwidth = conformal_relative_halfwidth(
                    np.concatenate(calibration_errors),
                    np.concatenate(forecasts[variant][earlier]),
                    cfg.interval_coverage,
                )
                fold["calibration_weeks"][variant] = int(sum(map(len, calibration_errors)))
            else:
                halfwidth = fitted.interval_halfwidth(cfg.interval_coverage)
                fold["calibration_weeks"][variant] = len(fitted.validation_residuals)
            predictions = {NETWORK: network}
            if original_inits:
                predictions[ORIGINAL_RECIPE] = original_recipe_runs(
                    x, y, train, test, cfg.seed, original_inits, original_epochs
                )
            predictions.update(baseline_predictions(x, y, train, test, dates.to_numpy()))
            lower, upper = interval_bounds(network, halfwidth, "relative")
            covered = (y[test] >= lower) & (y[test] <= upper)
            inside[variant].append(covered)
            fold["observed_coverage"][variant] = float(covered.mean())
            fold["deep_correction_kept"][variant] = fitted.training["deep_correction_kept"]
            fold["variants"][variant] = {
                m: forecast_metrics(y[test], predictions[m], len(features)) for m in models
            }
            for m in models:
                pooled[variant][m].append(predictions[m])
        if scored:
            result.fold_scores.append(fold)
        if on_fold is not None:
            on_fold(k + 1, len(origins))
    result.fold_rows = np.concatenate([test for _, test in origins])
    result.fold_numbers = np.concatenate(
        [np.full(len(t), k + 1) for k, (_, t) in enumerate(origins)]
    )
    result.fold_predictions = {v: np.concatenate(p) for v, p in forecasts.items()}
    result.test_rows = np.concatenate([test for _, test in origins[warmup:]])
    result.actual = y[result.test_rows]
    for variant, features in cfg.variants.items():
        # Folds side by side: the recipe's runs are (initialisation x week) arrays.
        result.predictions[variant] = {
            m: np.concatenate(pooled[variant][m], axis=-1) for m in models
        }
        result.overall[variant] = {
            m: forecast_metrics(result.actual, p, len(features))
            for m, p in result.predictions[variant].items()
        }
        if original_inits:
            runs = result.predictions[variant][ORIGINAL_RECIPE]
            result.original_rmse_by_init[variant] = [
                regression_metrics(result.actual, run, len(features))["RMSE"] for run in runs
            ]
        result.coverage[variant] = float(np.concatenate(inside[variant]).mean())
    return result


def backtest_dataset(
    settings: Settings,
    dataset_path: Path | None = None,
    folds: int | None = None,
    horizon: int | None = None,
    original_inits: int = 0,
    on_fold: FoldCallback | None = None,
    *,
    original_epochs: int = ORIGINAL_EPOCHS,
) -> BacktestResult:
    """Load the configured (or given) weekly dataset and backtest it with the training settings."""
    from hhforecast.datasets.weekly import load_training_dataset

    cfg = settings.training
    dataset = load_training_dataset(settings, dataset_path)
    result = run_backtest(
        dataset,
        cfg,
        folds if folds is not None else (cfg.backtest_folds or DEFAULT_FOLDS),
        horizon if horizon is not None else cfg.backtest_horizon,
        original_inits=original_inits,
        on_fold=on_fold,
        original_epochs=original_epochs,
    )
    result.dataset_sha256 = dataset.sha256
    return result
