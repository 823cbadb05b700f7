"""The recipe's evidence: how the training recipe forecast weeks its fits had not seen.

A version records two different things. What serves (`served_fit`, `trained_through`, the
variants' weights, scaling, ranges and intervals) may have learnt every week. How good the
recipe is can only be measured on weeks a fit had not seen: the scored fit's held-out test
weeks (whose metrics the registry keeps) and the rolling-origin folds. This module writes the
second into ``recipe_evidence``, labelled so that nobody mistakes it for a score of the served
fit on its own training weeks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hhforecast.modeling.calibration import horizon_quantiles

if TYPE_CHECKING:
    from hhforecast.datasets.weekly import WeeklyDataset
    from hhforecast.modeling.backtest import BacktestResult
    from hhforecast.modeling.evaluation import Split

__all__ = ["fold_error_summary", "recipe_evidence"]


def fold_error_summary(
    result: BacktestResult, variant: str, y: np.ndarray, coverage: float
) -> dict[str, Any]:
    """The network's out-of-sample errors over every fold (warm-up folds included)."""
    predictions = result.fold_predictions[variant]
    errors = y[result.fold_rows] - predictions
    relative = np.abs(errors) / np.maximum(np.abs(predictions), 1e-9)
    return {
        "weeks": len(errors),
        "folds": len(np.unique(result.fold_numbers)),
        "horizon_weeks": result.horizon,
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mean_error": float(np.mean(errors)),
        "median_abs_relative_error": float(np.median(relative)),
        "halfwidth_by_horizon": horizon_quantiles(
            errors, predictions, result.fold_horizons, coverage
        ),
    }


def recipe_evidence(
    split: Split,
    dataset: WeeklyDataset,
    holdout: dict[str, dict[str, Any]],
    folds: BacktestResult | None,
    target: str,
    coverage: float,
) -> dict[str, Any]:
    """The metadata's ``recipe_evidence``: the holdout and the rolling-origin folds."""
    dates = dataset.frame["date"]
    y = dataset.frame[target].to_numpy(dtype=np.float64)

    def period(rows: np.ndarray) -> dict[str, Any]:
        chosen = dates.iloc[rows]
        return {
            "start": chosen.min().strftime("%Y-%m-%d"),
            "end": chosen.max().strftime("%Y-%m-%d"),
            "weeks": len(rows),
        }

    return {
        "about": "scores of the training recipe on weeks its fits had not seen (the scored "
        "fit's held-out test weeks and rolling-origin folds); what serves is described by "
        "served_fit",
        "holdout": {
            "trained_on": period(split.train),
            "test": period(split.test),
            "variants": holdout,
        },
        "rolling_origin": None
        if folds is None
        else {
            **folds.summary(),
            "fold_errors": {
                v: fold_error_summary(folds, v, y, coverage) for v in folds.fold_predictions
            },
        },
    }
