"""Intervals calibrated on the out-of-sample errors of rolling-origin folds."""

from __future__ import annotations

import numpy as np
import pytest

from hhforecast.modeling.backtest import BacktestResult
from hhforecast.modeling.calibration import fold_calibration, horizon_quantiles


def three_folds() -> tuple[BacktestResult, np.ndarray]:
    """Three folds of four weeks (rows 10-21), every forecast 100 HH, errors 1 to 12 HH."""
    result = BacktestResult(folds=3, horizon=4, models=["network"])
    result.fold_rows = np.arange(10, 22)
    result.fold_numbers = np.repeat([1, 2, 3], 4)
    result.fold_horizons = np.tile([1, 2, 3, 4], 3)
    result.fold_predictions = {"5features": np.full(12, 100.0)}
    y = np.zeros(30)
    y[10:22] = 100.0 + np.array([1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12])
    return result, y


def test_the_interval_is_the_corrected_quantile_of_the_last_folds_relative_errors() -> None:
    result, y = three_folds()
    # The last two folds: |error| / forecast of 0.05 to 0.12; the 80% interval takes the
    # ceil((8 + 1) x 0.8) = 8th smallest, 0.12; the 50% one the 5th, 0.09.
    served = fold_calibration(result, "5features", y, folds=2, coverage=0.8)
    assert served is not None
    assert (served.halfwidth, served.weeks, served.folds) == (pytest.approx(0.12), 8, 2)
    assert (served.first_week, served.last_week) == (14, 21)
    half = fold_calibration(result, "5features", y, folds=2, coverage=0.5)
    assert half is not None and half.halfwidth == pytest.approx(0.09)


def test_a_scored_fit_is_calibrated_only_on_fold_weeks_before_its_test_weeks() -> None:
    result, y = three_folds()
    scored = fold_calibration(result, "5features", y, folds=2, coverage=0.8, before_row=18)
    assert scored is not None
    assert (scored.halfwidth, scored.weeks, scored.last_week) == (pytest.approx(0.08), 8, 17)
    assert fold_calibration(result, "5features", y, folds=2, coverage=0.8, before_row=10) is None


def test_the_spread_is_reported_per_range_of_horizons() -> None:
    result, y = three_folds()
    errors = y[result.fold_rows] - 100.0
    ranges = horizon_quantiles(errors, np.full(12, 100.0), result.fold_horizons, 0.5)
    # Horizon 1: errors 1, 5, 9; horizons 2-3: 2, 3, 6, 7, 10, 11; horizon 4: 4, 8, 12. At
    # 50% the rank is ceil((n + 1) / 2): the 2nd of 3, the 4th of 6.
    assert ranges == {
        "1-1": pytest.approx(0.05),
        "2-3": pytest.approx(0.07),
        "4-4": pytest.approx(0.08),
    }
