"""Scoring: regression metrics, the time-ordered split, and the baselines every model must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BASELINES",
    "Split",
    "baseline_predictions",
    "conformal_halfwidth",
    "conformal_relative_halfwidth",
    "interval_coverage",
    "regression_metrics",
    "split_weeks",
]

BASELINES = ("linear_regression", "naive_last_week", "seasonal_naive")
WEEKS_PER_YEAR = 52


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_features: int) -> dict[str, float]:
    """MAE, RMSE, R², adjusted R² and MAPE (in %) of predictions against realised HH."""
    from sklearn.metrics import (
        mean_absolute_error,
        mean_absolute_percentage_error,
        r2_score,
        root_mean_squared_error,
    )

    n = len(y_true)
    r2 = float(r2_score(y_true, y_pred)) if n > 1 else float("nan")
    r2_adj = 1.0 - (1.0 - r2) * (n - 1) / (n - n_features - 1) if n > n_features + 1 else r2
    positive = y_true > 0
    mape = (
        100.0 * float(mean_absolute_percentage_error(y_true[positive], y_pred[positive]))
        if positive.any()
        else float("nan")
    )
    return {
        "MAE": float(mean_absolute_error(y_true, y_pred)),
        "RMSE": float(root_mean_squared_error(y_true, y_pred)),
        "R2": r2,
        "R2_adj": float(r2_adj),
        "MAPE": mape,
    }


@dataclass(frozen=True)
class Split:
    """Row indices of the fit, validation and test weeks."""

    fit: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @property
    def train(self) -> np.ndarray:
        """Every week the model may learn from (fit + validation), in order."""
        return np.sort(np.concatenate([self.fit, self.validation]))


def split_weeks(
    n_rows: int, test_fraction: float, validation_fraction: float, mode: str, seed: int
) -> Split:
    """Hold out the test weeks, then a validation slice of the rest.

    `time`: the most recent weeks are the test set and the latest training weeks the
    validation slice, so every score is on the future of what was learnt. `random`: the
    original protocol, shuffled with `seed`.
    """
    n_test = max(1, round(n_rows * test_fraction))
    n_train = n_rows - n_test
    n_val = max(1, round(n_train * validation_fraction))
    order = np.arange(n_rows)
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n_rows)
        test = np.sort(order[n_train:])
        rest = order[:n_train]
        return Split(fit=np.sort(rest[n_val:]), validation=np.sort(rest[:n_val]), test=test)
    return Split(
        fit=order[: n_train - n_val],
        validation=order[n_train - n_val : n_train],
        test=order[n_train:],
    )


def baseline_predictions(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    dates: Any = None,
) -> dict[str, np.ndarray]:
    """Predictions for the test rows from the baselines fitted on the training rows.

    * linear_regression: ordinary least squares on the same features;
    * naive_last_week: the realised HH of the week dated 7 days before (known when
      forecasting); when the data has no such week, the mean HH of the training weeks;
    * seasonal_naive: the realised HH of the week dated 52 weeks before, else naive_last_week.

    Weeks are found by `dates` (one per row), never by row offsets: rows next to each other
    may be weeks apart. Without `dates` the rows are taken as consecutive weeks.
    """
    from sklearn.linear_model import LinearRegression

    from hhforecast.datasets.grid import week_before

    if dates is None:
        dates = np.datetime64("2000-01-03") + 7 * np.arange(len(y)).astype("timedelta64[D]")
    stamps = np.asarray(dates, dtype="datetime64[D]")
    linear = LinearRegression().fit(x[train], y[train])
    fallback = float(np.mean(y[train])) if len(train) else float(np.mean(y))
    previous = week_before(stamps, test, 1)
    last_week = np.where(previous >= 0, y[np.maximum(previous, 0)], fallback)
    year_ago = week_before(stamps, test, WEEKS_PER_YEAR)
    seasonal = np.where(year_ago >= 0, y[np.maximum(year_ago, 0)], last_week)
    return {
        "linear_regression": linear.predict(x[test]),
        "naive_last_week": last_week,
        "seasonal_naive": seasonal,
    }


def conformal_halfwidth(residuals: np.ndarray, coverage: float) -> float:
    """Split-conformal half-width: the finite-sample corrected quantile of |residual|."""
    scores = np.sort(np.abs(residuals))
    n = len(scores)
    rank = min(n, int(np.ceil((n + 1) * coverage)))
    return float(scores[rank - 1])


def conformal_relative_halfwidth(
    residuals: np.ndarray, predictions: np.ndarray, coverage: float
) -> float:
    """Split-conformal half-width as a share of the prediction (spread grows with the level).

    The score of a calibration week is |residual| / |prediction|; the interval of a new week
    is prediction × (1 ± the corrected quantile of the scores).
    """
    level = np.maximum(np.abs(np.asarray(predictions, dtype=np.float64)), 1e-9)
    return conformal_halfwidth(np.asarray(residuals, dtype=np.float64) / level, coverage)


def interval_coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of weeks whose realised HH lies inside [lower, upper]."""
    inside = (np.asarray(y_true) >= lower) & (np.asarray(y_true) <= upper)
    return float(inside.mean()) if len(inside) else float("nan")
