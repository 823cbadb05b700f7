"""The forecasting network and how it is trained (needs TensorFlow).

The network is a linear path beside a small deep path (wide and deep) on standardised inputs and
a standardised target::

    HH_std = linear(x_std) + Dense(1)(tanh(Dense(u)(tanh(Dense(u)(x_std)))))

The linear path is the least-squares solution and stays frozen; the deep path's output starts at
zero and learns only a bounded correction of what the linear path leaves. `fit_network` trains in
two stages: first on the fit weeks with early stopping on the later validation weeks (which also
decides whether the correction helps at all, and calibrates the intervals on residuals the fit
never saw), then once more on every training week for the chosen number of epochs. When the
correction does not help on the validation weeks the deep output stays zero and the network *is*
linear regression on the training weeks. Because tanh saturates, the correction stays bounded
outside the training range: the model extrapolates like a linear model, not like a ReLU network.

Intervals are split-conformal and scaled with the level: weekly HH is a sum of many heavy-tailed
items, so its spread grows with the predicted HH; the calibrated quantile is a fraction of the
prediction (metadata ``interval.scale == "relative"``). Versions calibrated with a fixed half-width
(``"absolute"``) still load and predict the same way they always did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hhforecast.modeling.artifacts import quiet_tensorflow
from hhforecast.modeling.inference import RANGE_LAYER, RANGE_SPAN

if TYPE_CHECKING:
    from hhforecast.config import TrainingConfig

__all__ = [
    "DEEP_MIN_T",
    "FitMemo",
    "FittedNetwork",
    "build_network",
    "fit_network",
    "trending_inputs",
]


TREND_RANK_CORRELATION = 0.9
"""An input whose rank correlation with time over the training weeks reaches this is a trend
(`age_fleet`): its future always lies beyond the training range, so the deep path does not see
it (a constant in its place) and only the linear path uses it."""
DEEP_MIN_T = 2.33
"""How sure the validation weeks must be that the deep correction helps before it is kept.

The correction is kept only when its gain in squared error over the linear path, week by week on
the validation slice, is positive with a one-sided t statistic above this value (a
Diebold-Mariano test at about 1%). The slice is a few dozen heavy-tailed weeks: a gain smaller
than its own noise is luck of which weeks fell in it. At 5% (1.645), backtests on simulated
fleets with no weekly non-linear effect kept a correction in 10% of the 5features fits (twice
the nominal rate), and those corrections lost to linear regression on the weeks that followed;
a real bend in the response still passes at t of 3.5 and more."""


def build_network(n_features: int, units: int, l2: float, seed: int) -> Any:
    """The Keras wide-and-deep regression network (uncompiled)."""
    quiet_tensorflow()
    import keras

    init = keras.initializers.GlorotUniform(seed=seed)
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    linear = keras.layers.Dense(1, name="linear")(inputs)
    # The deep path sees each input as its position in the training range, clipped to it:
    # beyond the range (age_fleet only grows) the correction holds its edge value and the
    # linear path alone extrapolates. Weights are set from the training rows, never trained.
    in_range = keras.layers.Dense(
        n_features, kernel_initializer="identity", trainable=False, name=RANGE_LAYER
    )(inputs)
    in_range = keras.layers.ReLU(max_value=RANGE_SPAN, name="deep_clip")(in_range)
    hidden = keras.layers.Dense(
        units, activation="tanh", kernel_initializer=init, kernel_regularizer=reg, name="hidden_1"
    )(in_range)
    hidden = keras.layers.Dense(
        units, activation="tanh", kernel_initializer=init, kernel_regularizer=reg, name="hidden_2"
    )(hidden)
    deep = keras.layers.Dense(1, kernel_initializer="zeros", name="deep_out")(hidden)
    outputs = keras.layers.Add(name="HH_std")([linear, deep])
    return keras.Model(inputs, outputs, name="hh_wide_deep")


EpochHook = Callable[[int, int], None]
"""Called as (epochs done, epochs planned) after every epoch of the first stage."""


@dataclass
class FittedNetwork:
    """A trained network with the scalers it was trained with, and how the training went."""

    network: Any
    scaler_x: Any
    scaler_y: Any
    validation_residuals: np.ndarray
    """Residuals of the first-stage network on the validation weeks it did not learn from."""
    validation_predictions: np.ndarray
    training: dict[str, Any] = field(default_factory=dict)

    def interval_halfwidth(self, coverage: float) -> float:
        """The relative split-conformal half-width calibrated on the validation residuals."""
        from hhforecast.modeling.evaluation import conformal_relative_halfwidth

        return conformal_relative_halfwidth(
            self.validation_residuals, self.validation_predictions, coverage
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted HH for rows of raw features, through Keras (used while training)."""
        z = self.network(self.scaler_x.transform(x), training=False).numpy()
        return np.asarray(self.scaler_y.inverse_transform(z)[:, 0], dtype=np.float64)


def _train_stage(
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    validation: np.ndarray | None,
    cfg: TrainingConfig,
    epochs: int,
    on_epoch: EpochHook | None,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """One stage: scalers and a frozen least-squares linear path on `rows`, then the deep path."""
    quiet_tensorflow()
    import keras
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    keras.utils.set_random_seed(cfg.seed)
    scaler_x = StandardScaler().fit(x[rows])
    scaler_y = StandardScaler().fit(y[rows].reshape(-1, 1))
    zx = scaler_x.transform(x)
    zy = scaler_y.transform(y.reshape(-1, 1))

    network = _compiled_network(x.shape[1], cfg)
    low, high = zx[rows].min(axis=0), zx[rows].max(axis=0)
    span = np.where(high > low, high - low, 1.0) / RANGE_SPAN
    trend = trending_inputs(zx[rows])
    # A trend input reaches the deep path as the constant middle of the range: whatever the
    # deep path learnt from it would be a pattern of past weeks that later weeks never repeat.
    scale = np.where(trend, 0.0, 1.0 / span)
    offset = np.where(trend, RANGE_SPAN / 2, -low / span)
    network.get_layer(RANGE_LAYER).set_weights(
        [np.diag(scale).astype("float32"), offset.astype("float32")]
    )
    # Centre the first hidden layer on the middle of the range, where z-scores would put it.
    kernel, bias = network.get_layer("hidden_1").get_weights()
    network.get_layer("hidden_1").set_weights([kernel, bias - RANGE_SPAN / 2 * kernel.sum(axis=0)])
    ols = LinearRegression().fit(zx[rows], zy[rows])
    linear = network.get_layer("linear")
    linear.set_weights([ols.coef_.T.astype("float32"), ols.intercept_.astype("float32")])
    info: dict[str, Any] = {"trend_inputs": [int(j) for j in np.flatnonzero(trend)]}
    if epochs == 0:
        return _detached(network, x.shape[1], cfg), scaler_x, scaler_y, info

    callbacks: list[Any] = []
    fit_kwargs: dict[str, Any] = {}
    if validation is not None:
        val = (zx[validation], zy[validation])
        fit_kwargs["validation_data"] = val
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            )
        )
    if on_epoch is not None:
        hook = on_epoch
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: hook(epoch + 1, cfg.epochs)
            )
        )
    history = network.fit(
        zx[rows],
        zy[rows],
        epochs=epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
        **fit_kwargs,
    )
    info["epochs_run"] = len(history.history["loss"])
    if validation is not None:
        # EarlyStopping restores this epoch's weights at the end of training.
        info["best_epoch"] = int(np.argmin(history.history["val_loss"])) + 1
    return _detached(network, x.shape[1], cfg), scaler_x, scaler_y, info


_COMPILED: dict[tuple[Any, ...], tuple[Any, list[np.ndarray]]] = {}
"""One compiled network per shape, settings and thread, with its optimizer's starting state.

Tracing Keras's training step into a TensorFlow graph costs far more than training this small
network for dozens of epochs, and a new network is traced anew: `train` fits the network eight
times or more (folds, the scored fit, the refit, two stages each). So each stage reuses the
compiled network of its shape, with every weight and optimizer variable set back to where a
newly built one starts: the same seed gives the same weights as a network built afresh."""


def _compiled_network(n_features: int, cfg: TrainingConfig) -> Any:
    """A compiled network of this shape with freshly initialised weights (seeded by cfg.seed)
    and a reset optimizer, the one traced by earlier stages in this thread when there is one."""
    import threading

    import keras

    fresh = build_network(n_features, cfg.units, cfg.l2, cfg.seed)
    key = (n_features, cfg.units, cfg.l2, cfg.learning_rate, threading.get_ident())
    cached = _COMPILED.get(key)
    if cached is None:
        network = fresh
        # Frozen: Adam would otherwise walk the slopes away from least squares chasing a few
        # heavy-tailed weeks, and the slopes are what the forecast extrapolates with.
        network.get_layer("linear").trainable = False
        network.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="mse")
        network.optimizer.build(network.trainable_variables)
        start = [np.array(v.numpy()) for v in network.optimizer.variables]
        _COMPILED[key] = (network, start)
        return network
    network, start = cached
    network.set_weights(fresh.get_weights())
    for variable, value in zip(network.optimizer.variables, start, strict=True):
        variable.assign(value)
    return network


def _detached(network: Any, n_features: int, cfg: TrainingConfig) -> Any:
    """An uncompiled copy of a trained network, so that the next stage can reuse the compiled
    one while the caller keeps (and saves) this copy."""
    copy = build_network(n_features, cfg.units, cfg.l2, cfg.seed)
    copy.get_layer("linear").trainable = False
    copy.set_weights(network.get_weights())
    return copy


def trending_inputs(x: np.ndarray) -> np.ndarray:
    """Per column of time-ordered rows, whether it trends (|rank correlation with time| high)."""
    n = len(x)
    if n < 3:
        return np.zeros(x.shape[1], dtype=bool)
    time_rank = np.arange(n, dtype=np.float64)
    out = []
    for column in x.T:
        ranks = np.argsort(np.argsort(column, kind="stable"), kind="stable").astype(np.float64)
        rho = np.corrcoef(ranks, time_rank)[0, 1] if np.ptp(column) > 0 else 0.0
        out.append(abs(rho) >= TREND_RANK_CORRELATION)
    return np.array(out, dtype=bool)


def _gain_t_statistic(linear_errors: np.ndarray, deep_errors: np.ndarray) -> float:
    """One-sided t statistic of the per-week squared-error gain of the correction (0 if none)."""
    gain = linear_errors**2 - deep_errors**2
    if len(gain) < 2:
        return 0.0
    spread = float(np.std(gain, ddof=1))
    if spread == 0.0:
        return 0.0
    return float(np.mean(gain) / (spread / np.sqrt(len(gain))))


def fit_network(
    x: np.ndarray,
    y: np.ndarray,
    fit: np.ndarray,
    validation: np.ndarray,
    cfg: TrainingConfig,
    on_epoch: EpochHook | None = None,
) -> FittedNetwork:
    """Train the wide-and-deep network on the fit weeks, choose on the validation weeks, refit.

    Stage 1 learns the deep correction on `fit` with early stopping on the older half of the
    later `validation` weeks and is judged on the newer half; its validation residuals calibrate
    the intervals. Stage 2 refits on fit + validation
    for the chosen number of epochs, or keeps the pure least-squares network (deep output zero)
    when the correction's gain on the validation weeks is not clearly above noise (DEEP_MIN_T).
    """
    # The older half of the validation weeks chooses the epoch; the newer half, which chose
    # nothing, judges the correction (judging on the weeks that picked the epoch passed
    # corrections that then lost to least squares on the future).
    half = len(validation) // 2 if len(validation) >= 4 else len(validation)
    network, scaler_x, scaler_y, info = _train_stage(
        x, y, fit, validation[:half], cfg, cfg.epochs, on_epoch
    )
    first = FittedNetwork(network, scaler_x, scaler_y, np.empty(0), np.empty(0))
    with_deep = first.predict(x[validation])
    deep_out = network.get_layer("deep_out")
    deep_out.set_weights([np.zeros_like(w) for w in deep_out.get_weights()])
    linear_only = first.predict(x[validation])
    judged = slice(half, None)
    gain_t = _gain_t_statistic(
        (y[validation] - linear_only)[judged], (y[validation] - with_deep)[judged]
    )
    deep_helps = gain_t > DEEP_MIN_T
    # Calibrate the model that will be served: with the correction only if it is kept.
    val_pred = with_deep if deep_helps else linear_only
    epochs = info["best_epoch"] if deep_helps else 0
    train_rows = np.sort(np.concatenate([fit, validation]))
    network, scaler_x, scaler_y, _ = _train_stage(x, y, train_rows, None, cfg, epochs, None)
    training = {
        "epochs_run": info["epochs_run"],
        "epochs_refit": epochs,
        "validation_rmse_linear": float(np.sqrt(np.mean((y[validation] - linear_only) ** 2))),
        "validation_rmse_with_correction": float(
            np.sqrt(np.mean((y[validation] - with_deep) ** 2))
        ),
        "deep_gain_t": gain_t,
        "deep_path_excludes_trend_inputs": info["trend_inputs"],
        "deep_correction_kept": bool(deep_helps),
        "refit_weeks": len(train_rows),
    }
    return FittedNetwork(network, scaler_x, scaler_y, y[validation] - val_pred, val_pred, training)


class FitMemo:
    """The fits made for one training, by variant and the weeks they learnt from.

    A fit is a function of its rows, the configuration and the seed (the same weights bit for
    bit), so a fit asked again is the one made before: `train`'s first scored fold learns the
    same weeks as its held-out score. One memo serves one dataset and one configuration.
    """

    def __init__(self) -> None:
        self._fits: dict[tuple[str, bytes, bytes], FittedNetwork] = {}

    def fit(
        self,
        variant: str,
        x: np.ndarray,
        y: np.ndarray,
        fit: np.ndarray,
        validation: np.ndarray,
        cfg: TrainingConfig,
        on_epoch: EpochHook | None = None,
    ) -> FittedNetwork:
        """`fit_network` on these rows, or the fit it made on them before."""
        key = (variant, np.asarray(fit).tobytes(), np.asarray(validation).tobytes())
        if key not in self._fits:
            self._fits[key] = fit_network(x, y, fit, validation, cfg, on_epoch)
        return self._fits[key]
