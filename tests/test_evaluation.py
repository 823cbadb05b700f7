import numpy as np
import pytest

from hhforecast.modeling.evaluation import (
    baseline_predictions,
    conformal_halfwidth,
    conformal_relative_halfwidth,
    interval_coverage,
    regression_metrics,
    split_weeks,
)


def test_regression_metrics_on_known_numbers() -> None:
    y = np.array([100.0, 200.0, 300.0, 400.0])
    pred = np.array([110.0, 190.0, 330.0, 400.0])
    m = regression_metrics(y, pred, n_features=1)
    assert m["MAE"] == pytest.approx(12.5)
    assert m["RMSE"] == pytest.approx(np.sqrt((100 + 100 + 900) / 4))
    assert m["MAPE"] == pytest.approx(100 * (0.1 + 0.05 + 0.1 + 0.0) / 4)
    assert m["R2"] == pytest.approx(1 - 1100 / 50_000)


def test_time_split_keeps_validation_after_fit_and_test_last() -> None:
    split = split_weeks(100, test_fraction=0.25, validation_fraction=0.2, mode="time", seed=1)
    assert list(split.test) == list(range(75, 100))
    assert list(split.validation) == list(range(60, 75))
    assert list(split.fit) == list(range(60))
    assert list(split.train) == list(range(75))


def test_conformal_halfwidth_takes_the_finite_sample_corrected_rank() -> None:
    residuals = np.array([-5.0, 1.0, 2.0, -3.0, 4.0, 6.0, -7.0, 8.0, 9.0])
    # n = 9, coverage 0.8: rank ceil(10 * 0.8) = 8 of the sorted |residuals| 1..9.
    assert conformal_halfwidth(residuals, 0.8) == 8.0
    # A coverage the calibration set cannot support falls back to the largest score.
    assert conformal_halfwidth(residuals, 0.99) == 9.0


def test_relative_halfwidth_is_a_share_of_the_prediction() -> None:
    predictions = np.array([100.0, 200.0, 400.0, 1000.0])
    residuals = np.array([10.0, -40.0, 20.0, -100.0])  # 10%, 20%, 5%, 10%
    assert conformal_relative_halfwidth(residuals, predictions, 0.5) == pytest.approx(0.1)
    assert conformal_relative_halfwidth(residuals, predictions, 0.75) == pytest.approx(0.2)


def test_interval_coverage_counts_the_bounds_as_inside() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    lower = np.array([1.0, 2.5, 0.0, 0.0])
    upper = np.array([2.0, 3.0, 3.0, 3.9])
    assert interval_coverage(y, lower, upper) == 0.5


def test_baselines_only_learn_from_the_training_rows() -> None:
    x = np.arange(60, dtype=float).reshape(-1, 1)
    y = 3.0 * x[:, 0] + 10.0
    train, test = np.arange(54), np.arange(54, 60)
    out = baseline_predictions(x, y, train, test)
    np.testing.assert_allclose(out["linear_regression"], y[test])
    np.testing.assert_allclose(out["naive_last_week"], y[test - 1])
    np.testing.assert_allclose(out["seasonal_naive"], y[test - 52])


def test_baselines_find_the_week_before_by_date_not_by_row() -> None:
    # Rows 3 and 4 are six weeks apart: the week before row 4 is not in the data.
    dates = np.array(
        ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22", "2024-03-04", "2024-03-11"],
        dtype="datetime64[D]",
    )
    x = np.arange(6, dtype=float).reshape(-1, 1)
    y = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    out = baseline_predictions(x, y, np.arange(4), np.array([4, 5]), dates)
    np.testing.assert_allclose(out["naive_last_week"], [25.0, 50.0])  # training mean, then row 4
    np.testing.assert_allclose(out["seasonal_naive"], out["naive_last_week"])


def test_seasonal_naive_uses_the_week_52_weeks_earlier() -> None:
    dates = np.datetime64("2020-01-06") + 7 * np.arange(60).astype("timedelta64[D]")
    y = np.arange(60, dtype=float)
    out = baseline_predictions(y.reshape(-1, 1), y, np.arange(55), np.arange(55, 60), dates)
    np.testing.assert_allclose(out["seasonal_naive"], y[3:8])
