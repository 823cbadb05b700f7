import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hhforecast.modeling.backtest import (
    BASELINES,
    NETWORK,
    ORIGINAL_INITS,
    ORIGINAL_RECIPE,
    BacktestError,
    backtest_dataset,
    rolling_origins,
)
from hhforecast.modeling.training import train_version

from .conftest import Project, write_config

TINY = {"epochs": 3, "patience": 2, "units": 4, "batch_size": 64, "min_rows": 30}


def test_rolling_origins_train_on_the_past_and_end_with_the_last_week() -> None:
    origins = rolling_origins(100, folds=3, horizon=10)
    assert [(len(train), test[0], test[-1]) for train, test in origins] == [
        (70, 70, 79),
        (80, 80, 89),
        (90, 90, 99),
    ]
    for train, test in origins:
        assert train.max() < test.min()


def test_rolling_origins_count_weeks_by_date() -> None:
    dates = np.datetime64("2020-01-06") + 7 * np.arange(60).astype("timedelta64[D]")
    dates = np.delete(dates, [50, 51])  # two weeks missing in the first fold
    origins = rolling_origins(dates, folds=2, horizon=5)
    assert [len(test) for _, test in origins] == [3, 5]
    assert dates[origins[1][1][0]] == np.datetime64("2020-01-06") + np.timedelta64(7 * 55, "D")


def test_too_short_a_dataset_is_reported_with_what_it_needs() -> None:
    with pytest.raises(BacktestError) as caught:
        rolling_origins(60, folds=4, horizon=13)
    assert str(caught.value) == (
        "a backtest of 4 fold(s) of 13 week(s) needs at least 78 weeks (26 to train the first "
        "fold on), but the dataset has 60. Use fewer --folds or a shorter --horizon."
    )


@pytest.mark.slow
def test_backtest_scores_every_model_per_fold_and_pooled(project: Project) -> None:
    settings = project.settings.with_training(**TINY)
    # Two short initialisations of the original recipe: enough to see it scored per init.
    result = backtest_dataset(settings, folds=2, horizon=6, original_inits=2, original_epochs=2)
    models = [NETWORK, ORIGINAL_RECIPE, *BASELINES]
    assert result.models == models
    assert [f["train_weeks"] for f in result.fold_scores] == [248, 254]
    assert result.fold_scores[1]["test_end"] == "2023-12-25"
    # A warm-up fold (training.interval_folds: 1) before the scored ones: every scored fold's
    # interval is calibrated on the network's errors in the fold before it.
    assert result.warmup_folds == 1
    assert list(result.fold_rows) == list(range(242, 260))
    assert list(result.fold_horizons) == [1, 2, 3, 4, 5, 6] * 3
    for fold in result.fold_scores:
        assert fold["calibration_weeks"] == {"4features": 6, "5features": 6}
    for variant in ("4features", "5features"):
        assert list(result.overall[variant]) == models
        for fold in result.fold_scores:
            assert set(fold["variants"][variant]) == set(models)
            assert 0.0 <= fold["observed_coverage"][variant] <= 1.0
        # Pooled over all 12 weeks: the pooled MAE is the mean of the two folds' MAEs.
        folds_mae = [f["variants"][variant][NETWORK]["MAE"] for f in result.fold_scores]
        assert result.overall[variant][NETWORK]["MAE"] == pytest.approx(np.mean(folds_mae))
        assert 0.0 <= result.coverage[variant] <= 1.0
        # The recipe is scored from two initialisations: its pooled RMSE is the mean of theirs.
        by_init = result.original_rmse_by_init[variant]
        assert len(by_init) == 2 and by_init[0] != by_init[1]
        assert result.overall[variant][ORIGINAL_RECIPE]["RMSE"] == pytest.approx(np.mean(by_init))
        assert result.predictions[variant][ORIGINAL_RECIPE].shape == (2, 12)
        network = result.predictions[variant][NETWORK]
        rmse = np.sqrt(np.mean((network - result.actual) ** 2))
        assert result.overall[variant][NETWORK]["RMSE"] == pytest.approx(rmse)
    assert list(result.test_rows) == list(range(248, 260))
    summary = result.summary()
    assert set(summary["overall"]["5features"][NETWORK]) == {"MAE", "RMSE", "MAPE"}
    json.dumps(result.to_dict())


@pytest.mark.slow
def test_train_records_a_backtest_summary_when_configured(tmp_path: Any) -> None:
    config = write_config(tmp_path, training={**TINY, "backtest_folds": 2, "backtest_horizon": 5})
    from hhforecast.config import load_settings

    result = train_version(load_settings(config), version="bt")
    backtest = result.metadata["backtest"]
    assert (backtest["folds"], backtest["horizon_weeks"]) == (2, 5)
    assert set(backtest["overall"]["5features"]) == {NETWORK, *BASELINES}
    saved = json.loads((result.path / "model_metadata.json").read_text())
    assert saved["backtest"]["overall"] == json.loads(json.dumps(backtest["overall"]))


def test_train_always_scores_the_recipe_by_rolling_origin_folds(
    trained_project: Project,
) -> None:
    meta = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    assert "backtest" not in meta  # the earlier key, only with training.backtest_folds > 0
    folds = meta["recipe_evidence"]["rolling_origin"]
    assert (folds["folds"], folds["weeks"]) == (1, 65)
    assert set(folds["overall"]["5features"]) == {NETWORK, *BASELINES}


@pytest.mark.slow
def test_cli_backtest_json(project: Project, cli: Callable[..., Any]) -> None:
    write_config(project.root, training=TINY)
    result = cli("backtest", "--folds", "2", "--horizon", "4", "--json", "--config", project.config)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["folds"], data["horizon_weeks"]) == (2, 4)
    assert data["models"] == [NETWORK, *BASELINES]
    assert len(data["fold_scores"]) == 2


@pytest.mark.slow
def test_cli_backtest_table_and_bad_input(project: Project, cli: Callable[..., Any]) -> None:
    write_config(project.root, training=TINY)
    result = cli(
        "backtest", "--folds", "1", "--horizon", "4", "--original", "--original-inits", "2"
    )
    assert result.exit_code == 0, result.stderr
    assert "5features: rolling-origin backtest, 1 fold(s) of 4 week(s)" in result.stdout
    assert "original_recipe" in result.stdout and "linear_regression" in result.stdout
    assert "5features original_recipe: mean of 2 initialisations, pooled RMSE" in result.stdout
    assert "intervals covered" in result.stdout
    result = cli("backtest", "--folds", "40", "--horizon", "13")
    assert result.exit_code == 2
    warning, error = result.stderr.split("\n", 1)
    assert warning.startswith("Warning: backtesting on the simulated sample fleet")
    assert error.startswith("Error: a backtest of 40 fold(s) of 13 week(s) needs")


def test_the_original_recipe_is_scored_from_5_initialisations_by_default(
    cli: Callable[..., Any],
) -> None:
    assert ORIGINAL_INITS == 5
    help_text = " ".join(cli("backtest", "--help").stdout.replace("│", " ").split())
    assert "Initialisations the original recipe is trained from (default: 5)." in help_text
