"""Prediction intervals from the out-of-sample errors of rolling-origin folds.

Each fold trains the recipe on the weeks before its origin and forecasts the weeks after it, so
its errors are what the recipe's forecasts of unseen weeks look like. The interval of a fit is
calibrated on the errors of the folds that end where its own training ends (split-conformal, as
sktime's ``ConformalIntervals``): the score of a week is |error| / forecast, and the half-width
is the finite-sample corrected quantile of the scores, a share of each prediction.

One quantile serves every horizon: over simulated fleets the spread of the fold errors does not
grow with the weeks ahead (docs/model-quality.md); ``by_horizon`` records the quantile per range
of horizons, so that a user can check it on their own data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hhforecast.modeling.evaluation import conformal_relative_halfwidth

if TYPE_CHECKING:
    from hhforecast.modeling.backtest import BacktestResult

__all__ = ["FoldCalibration", "fold_calibration", "horizon_quantiles"]

HORIZON_RANGES = 3
"""The horizons of a fold are cut into this many ranges for the spread check."""


@dataclass(frozen=True)
class FoldCalibration:
    """The interval calibrated on some folds' errors, and what it was calibrated on."""

    halfwidth: float
    weeks: int
    folds: int
    first_week: int
    """Dataset row of the first calibration week."""
    last_week: int
    by_horizon: dict[str, float]

    def to_dict(self, dates: Any) -> dict[str, Any]:
        """JSON-ready, with the calibration weeks' dates (`dates`: the dataset's, by row)."""
        return {
            "halfwidth": self.halfwidth,
            "weeks": self.weeks,
            "folds": self.folds,
            "start": dates.iloc[self.first_week].strftime("%Y-%m-%d"),
            "end": dates.iloc[self.last_week].strftime("%Y-%m-%d"),
            "halfwidth_by_horizon": self.by_horizon,
        }


def horizon_quantiles(
    errors: np.ndarray, predictions: np.ndarray, horizons: np.ndarray, coverage: float
) -> dict[str, float]:
    """The calibrated half-width per range of horizons ("1-4": weeks 1 to 4 ahead)."""
    top = int(horizons.max()) if len(horizons) else 0
    edges = np.unique(np.linspace(0, top, min(HORIZON_RANGES, top) + 1).round().astype(int))
    out = {}
    for low, high in itertools.pairwise(edges):
        chosen = (horizons > low) & (horizons <= high)
        if chosen.any():
            out[f"{low + 1}-{high}"] = conformal_relative_halfwidth(
                errors[chosen], predictions[chosen], coverage
            )
    return out


def fold_calibration(
    result: BacktestResult,
    variant: str,
    y: np.ndarray,
    folds: int,
    coverage: float,
    before_row: int | None = None,
) -> FoldCalibration | None:
    """The interval calibrated on the errors of the last `folds` folds' worth of fold weeks of
    `result` (`folds` x its horizon; of its weeks before `before_row` only, when given: a fold
    cut by it still counts its earlier weeks); None when no fold week qualifies."""
    rows = result.fold_rows
    keep = np.ones(len(rows), dtype=bool) if before_row is None else rows < before_row
    if not keep.any():
        return None
    # Folds are in time order: the last qualifying weeks are the most recent ones.
    chosen = np.flatnonzero(keep)[-folds * result.horizon :]
    predictions = result.fold_predictions[variant][chosen]
    errors = y[rows[chosen]] - predictions
    return FoldCalibration(
        halfwidth=conformal_relative_halfwidth(errors, predictions, coverage),
        weeks=len(chosen),
        folds=len(np.unique(result.fold_numbers[chosen])),
        first_week=int(rows[chosen].min()),
        last_week=int(rows[chosen].max()),
        by_horizon=horizon_quantiles(errors, predictions, result.fold_horizons[chosen], coverage),
    )
