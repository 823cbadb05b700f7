import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import hhforecast.modeling.network as model_module
from hhforecast.config import TrainingConfig
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.errors import VariantNotFoundError
from hhforecast.modeling.artifacts import artifact_names, load_variant
from hhforecast.modeling.evaluation import split_weeks
from hhforecast.modeling.inference import LAYER_NAMES, RANGE_LAYER, interval_bounds
from hhforecast.modeling.network import fit_network, trending_inputs
from hhforecast.modeling.predict import predict_frame

from .conftest import FAST_TRAINING, Project, rerecord

FIVE = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


def sample_xy(features: list[str] = FIVE) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(sample_dataset_path())
    return frame[features].to_numpy(dtype=float), frame["HH"].to_numpy(dtype=float)


@pytest.mark.parametrize("variant", ["4features", "5features"])
def test_numpy_forward_pass_equals_keras(trained_project: Project, variant: str) -> None:
    import keras

    folder = trained_project.models / "1.0.0"
    model = load_variant(folder, variant)
    network = keras.models.load_model(folder / artifact_names(variant)["model"], compile=False)
    assert {layer.name for layer in network.layers if layer.weights} == {*LAYER_NAMES, RANGE_LAYER}
    x, _ = sample_xy(model.features)
    # Rows inside and well outside the training range: the two paths must agree everywhere.
    rows = np.vstack([x[::7], x[-3:] * 1.5, x[:2] * 0.5])
    z = (rows - model.x_mean) / model.x_scale
    expected = network(z.astype("float32"), training=False).numpy()[:, 0]
    expected = np.maximum(expected * model.y_scale + model.y_mean, 0.0)  # HH is never negative
    np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("variant", ["4features", "5features"])
def test_the_folded_forward_pass_is_the_layer_by_layer_one(
    trained_project: Project, variant: str
) -> None:
    """The input scaling, range layer and linear path are folded into one product; in float64
    that changes the answer by parts in 1e16, not the 1e-4 of Keras's float32 comparison."""
    model = load_variant(trained_project.models / "1.0.0", variant)
    x, _ = sample_xy(model.features)
    rows = np.vstack([x[::5], x[-3:] * 1.5, x[:2] * 0.5, x[:1] * 0.0])
    z = (rows - model.x_mean) / model.x_scale
    w0, b0 = model.weights[RANGE_LAYER]
    u = np.clip(z @ w0 + b0, 0.0, 4.0)
    (w1, b1), (w2, b2), (w3, b3) = (model.weights[n] for n in LAYER_NAMES[1:])
    deep = np.tanh(np.tanh(u @ w1 + b1) @ w2 + b2) @ w3 + b3
    w_lin, b_lin = model.weights["linear"]
    expected = np.maximum((z @ w_lin + b_lin + deep)[:, 0] * model.y_scale + model.y_mean, 0.0)
    np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("variant", ["4features", "5features"])
def test_weights_read_without_keras_answer_as_the_keras_and_joblib_loader_did(
    trained_project: Project, variant: str
) -> None:
    """The h5py reader and the plain-number scalers give the answers the earlier loader gave
    (Keras get_weights and the unpickled joblib scalers), to 1e-9."""
    import dataclasses

    import joblib
    import keras

    folder = trained_project.models / "1.0.0"
    names = artifact_names(variant)
    model = load_variant(folder, variant)
    network = keras.models.load_model(folder / names["model"], compile=False)
    weights = {}
    for layer in (*LAYER_NAMES, RANGE_LAYER):
        kernel, bias = network.get_layer(layer).get_weights()
        weights[layer] = (kernel.astype(np.float64), bias.astype(np.float64))
        np.testing.assert_array_equal(model.weights[layer][0], weights[layer][0])
        np.testing.assert_array_equal(model.weights[layer][1], weights[layer][1])
    scaler_x, scaler_y = (
        joblib.load(folder / names["scaler_X"]),
        joblib.load(folder / names["scaler_y"]),
    )
    before = dataclasses.replace(
        model,
        weights=weights,
        x_mean=scaler_x.mean_,
        x_scale=scaler_x.scale_,
        y_mean=float(scaler_y.mean_[0]),
        y_scale=float(scaler_y.scale_[0]),
    )
    x, _ = sample_xy(model.features)
    rows = np.vstack([x, x[-5:] * 1.5, x[:5] * 0.2])
    np.testing.assert_allclose(model.predict(rows), before.predict(rows), rtol=0, atol=1e-9)


def test_relative_interval_scales_with_the_prediction_and_never_goes_negative() -> None:
    lower, upper = interval_bounds(np.array([1000.0, 2000.0, 10.0]), 0.25, "relative")
    np.testing.assert_allclose(lower, [750.0, 1500.0, 7.5])
    np.testing.assert_allclose(upper, [1250.0, 2500.0, 12.5])
    lower, upper = interval_bounds(np.array([1000.0, 50.0]), 100.0, "absolute")
    np.testing.assert_allclose(lower, [900.0, 0.0])
    np.testing.assert_allclose(upper, [1100.0, 150.0])


def test_a_trained_variant_carries_a_relative_interval(trained_project: Project) -> None:
    model = load_variant(trained_project.models / "1.0.0", "5features")
    assert model.interval_scale == "relative"
    assert 0.0 < model.interval_halfwidth < 1.0
    predictions = np.array([1000.0, 1500.0])
    lower, upper = model.interval(predictions)
    np.testing.assert_allclose(upper - predictions, predictions * model.interval_halfwidth)
    assert np.all(lower < predictions)


def test_versions_calibrated_with_an_absolute_halfwidth_still_load(
    trained_project: Project,
) -> None:
    folder = trained_project.models / "1.0.0"
    meta_path = folder / "model_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["variants"]["5features"]["interval"] = {"coverage": 0.8, "halfwidth": 200.0}
    meta_path.write_text(json.dumps(meta))
    model = load_variant(folder, "5features")
    assert model.interval_scale == "absolute"
    lower, upper = model.interval(np.array([1000.0]))
    assert (lower[0], upper[0]) == (800.0, 1200.0)


def test_out_of_range_names_each_rows_features(trained_project: Project) -> None:
    model = load_variant(trained_project.models / "1.0.0", "5features")
    lows = [model.feature_ranges[f][0] for f in model.features]
    highs = [model.feature_ranges[f][1] for f in model.features]
    inside = [(lo + hi) / 2 for lo, hi in zip(lows, highs, strict=True)]
    older = [*inside[:4], highs[4] * 1.1]
    idle = [lows[0] - 1, *inside[1:]]
    assert model.out_of_range(np.array([inside, older, idle])) == [[], ["age_fleet"], ["acft"]]
    assert model.out_of_range(np.array([inside])) == [[]]


def test_predictions_shown_anywhere_carry_the_out_of_range_flag(
    trained_project: Project,
) -> None:
    model = load_variant(trained_project.models / "1.0.0", "5features")
    frame = pd.read_csv(sample_dataset_path()).drop(columns=["HH"])
    # A training week, the same week with an impossible age, the newest week (the served fit
    # learnt every week, so its age is in range) and the week after it: the fleet only gets
    # older, so its age is one the model has never seen.
    weeks = frame.iloc[[100, 100, len(frame) - 1, len(frame) - 1]].reset_index(drop=True)
    weeks.loc[1, "age_fleet"] = 1e12
    weeks.loc[3, "age_fleet"] = frame["age_fleet"].max() * 1.01
    out = predict_frame(model, weeks)
    assert list(out["out_of_range"]) == ["", "age_fleet", "", "age_fleet"]


def test_a_version_without_the_variant_is_reported(trained_project: Project) -> None:
    with pytest.raises(VariantNotFoundError) as caught:
        load_variant(trained_project.models / "1.0.0", "3features")
    assert "has no variant '3features' (variants: 4features, 5features)" in str(caught.value)


def test_without_a_useful_correction_the_network_is_linear_regression(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Demand a gain no correction can reach: the fallback must be exactly least squares on
    # every training week (fit + validation), the baseline the network is judged against.
    monkeypatch.setattr(model_module, "DEEP_MIN_T", float("inf"))
    x, y = sample_xy()
    split = split_weeks(len(y), 0.25, 0.2, "time", 42)
    cfg = TrainingConfig(**{**FAST_TRAINING, "epochs": 3})
    fitted = fit_network(x, y, split.fit, split.validation, cfg)
    assert fitted.training["deep_correction_kept"] is False
    assert fitted.training["epochs_refit"] == 0
    assert fitted.training["refit_weeks"] == len(split.train)
    ols = LinearRegression().fit(x[split.train], y[split.train])
    np.testing.assert_allclose(fitted.predict(x[split.test]), ols.predict(x[split.test]), rtol=1e-4)
    # Calibration residuals come from the first stage (without the discarded correction),
    # which never saw the validation weeks.
    first = LinearRegression().fit(x[split.fit], y[split.fit])
    np.testing.assert_allclose(
        fitted.validation_residuals,
        y[split.validation] - first.predict(x[split.validation]),
        rtol=1e-3,
        atol=0.5,
    )


def test_a_kept_correction_is_refitted_for_the_chosen_epochs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_module, "DEEP_MIN_T", float("-inf"))  # keep any correction
    x, y = sample_xy()
    split = split_weeks(len(y), 0.25, 0.2, "time", 42)
    cfg = TrainingConfig(**{**FAST_TRAINING, "epochs": 4, "patience": 10})
    fitted = fit_network(x, y, split.fit, split.validation, cfg)
    info = fitted.training
    assert info["deep_correction_kept"] is True
    assert info["epochs_run"] == 4
    assert 1 <= info["epochs_refit"] <= 4
    # The frozen linear path still holds least squares on every training week (in scaled
    # units); the deep path adds a correction on top of it.
    zx = fitted.scaler_x.transform(x[split.train])
    zy = fitted.scaler_y.transform(y[split.train].reshape(-1, 1))
    ols = LinearRegression().fit(zx, zy)
    kernel, bias = fitted.network.get_layer("linear").get_weights()
    np.testing.assert_allclose(kernel, ols.coef_.T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bias, ols.intercept_, atol=1e-4)
    raw_ols = LinearRegression().fit(x[split.train], y[split.train])
    assert not np.allclose(fitted.predict(x[split.test]), raw_ols.predict(x[split.test]))


def test_a_network_trained_after_others_in_the_process_is_the_one_trained_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stages reuse a compiled network of their shape; its weights and Adam's moments and step
    # count must start where a new network's do, or a fit would depend on the fits before it.
    monkeypatch.setattr(model_module, "DEEP_MIN_T", float("-inf"))  # train both stages
    x, y = sample_xy()
    split = split_weeks(len(y), 0.25, 0.2, "time", 42)
    cfg = TrainingConfig(**{**FAST_TRAINING, "epochs": 4, "patience": 10})

    def weights(fitted: model_module.FittedNetwork) -> list[np.ndarray]:
        return [np.asarray(w) for w in fitted.network.get_weights()]

    first = fit_network(x, y, split.fit, split.validation, cfg)
    other = fit_network(x, y * 1.3, split.fit, split.validation, cfg.model_copy(update={"seed": 9}))
    again = fit_network(x, y, split.fit, split.validation, cfg)
    assert first.training["epochs_refit"] >= 1
    for before, after in zip(weights(first), weights(again), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(first.validation_predictions, again.validation_predictions)
    # The first fit's network is its own: later fits did not overwrite it.
    assert not np.array_equal(weights(first)[-2], weights(other)[-2])


@pytest.mark.slow
def test_a_real_non_linear_effect_is_kept_and_beats_linear_regression() -> None:
    # Weeks whose demand bends with utilisation (a kink like long flying days adding findings):
    # the correction must pass the validation test and cut the error of least squares.
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 2.0, size=(240, 2))
    y = 1000.0 + 80.0 * x[:, 0] + 400.0 * np.clip(x[:, 1] - 1.0, 0.0, None) + rng.normal(0, 10, 240)
    split = split_weeks(len(y), 0.25, 0.2, "time", 42)
    cfg = TrainingConfig(
        epochs=60, patience=10, units=16, batch_size=16, learning_rate=0.03, l2=0.0
    )
    fitted = fit_network(x, y, split.fit, split.validation, cfg)
    assert fitted.training["deep_correction_kept"] is True
    assert fitted.training["deep_gain_t"] > model_module.DEEP_MIN_T
    ols = LinearRegression().fit(x[split.train], y[split.train])
    network_rmse = np.sqrt(np.mean((fitted.predict(x[split.test]) - y[split.test]) ** 2))
    linear_rmse = np.sqrt(np.mean((ols.predict(x[split.test]) - y[split.test]) ** 2))
    assert network_rmse < 0.7 * linear_rmse


def test_versions_trained_before_the_range_layer_still_predict_like_keras(
    trained_project: Project,
) -> None:
    import keras

    folder = trained_project.models / "1.0.0"
    name = artifact_names("5features")["model"]
    inputs = keras.Input(shape=(5,), name="features")
    linear = keras.layers.Dense(1, name="linear")(inputs)
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden_1")(inputs)
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden_2")(hidden)
    deep = keras.layers.Dense(1, kernel_initializer="ones", name="deep_out")(hidden)
    legacy = keras.Model(inputs, keras.layers.Add(name="HH_std")([linear, deep]))
    legacy.save(folder / name)
    rerecord(folder, name)
    model = load_variant(folder, "5features")
    assert RANGE_LAYER not in model.weights
    x, _ = sample_xy()
    z = (x[::13] - model.x_mean) / model.x_scale
    expected = legacy(z.astype("float32"), training=False).numpy()[:, 0]
    expected = expected * model.y_scale + model.y_mean
    np.testing.assert_allclose(model.predict(x[::13]), expected, rtol=1e-4, atol=1e-2)


def test_only_the_fleet_age_is_a_trend_input_of_the_sample() -> None:
    x, _ = sample_xy()
    assert list(trending_inputs(x[:195])) == [False, False, False, False, True]
    # A column that only grows trends; a constant one does not.
    assert list(trending_inputs(np.column_stack([np.arange(10.0), np.ones(10)]))) == [True, False]


def test_a_trained_version_records_how_the_correction_was_judged(
    trained_project: Project,
) -> None:
    meta = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    training = meta["variants"]["5features"]["training"]
    assert training["deep_path_excludes_trend_inputs"] == ["age_fleet"]
    assert training["deep_correction_kept"] is (training["deep_gain_t"] > model_module.DEEP_MIN_T)
    # What serves learnt every week; its interval, the errors of the last rolling-origin folds.
    assert training["refit_weeks"] == meta["served_fit"]["weeks"] == meta["dataset"]["rows"]
    interval = meta["variants"]["5features"]["interval"]
    assert interval["scale"] == "relative"
    assert interval["calibration_weeks"] == FAST_TRAINING["interval_folds"] * 65
