"""The one prediction path every caller uses: a loaded variant's forward pass in NumPy.

Training needs TensorFlow; prediction does not run Keras per request. `VariantModel` holds the
weights read once and computes the network's forward pass in NumPy (microseconds per row), so
`hhforecast predict`, the API and any later tool give the same numbers (a row forecast alone
and in a batch may differ in the 16th digit: BLAS adds a product's terms in another order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["LAYER_NAMES", "RANGE_LAYER", "RANGE_SPAN", "VariantModel", "interval_bounds"]


LAYER_NAMES = ("linear", "hidden_1", "hidden_2", "deep_out")
RANGE_LAYER = "deep_range"
"""Fixed layer placing each input in its training range, then clipped (absent in old versions)."""
RANGE_SPAN = 4.0
"""The training range of every input becomes [0, RANGE_SPAN] for the deep path: wide enough for
tanh units to bend inside it (like z-scores within ±2), clipped outside it."""


@dataclass(frozen=True)
class VariantModel:
    """A loaded variant: scalers, weights and interval width, ready to predict in NumPy."""

    version: str
    variant: str
    features: list[str]
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    interval_halfwidth: float
    coverage: float
    feature_ranges: dict[str, tuple[float, float]]
    metadata: dict[str, Any]
    interval_scale: str = "absolute"
    """`absolute`: ±interval_halfwidth HH; `relative`: ±interval_halfwidth × prediction."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted HH for rows of raw features (shape [n, len(features)]), never below zero.

        HH cannot be negative: far below the training range (all-zero inputs, say) the linear
        path would say so, and the interval around a negative centre would come out inverted.
        """
        weights, bias, width, clip = self._first_layers
        first = (np.asarray(x, dtype=np.float64) - self.x_mean) @ weights
        first += bias
        u = first[:, :width]
        if clip:
            u = np.minimum(np.maximum(u, 0.0), RANGE_SPAN)
        w1, b1 = self.weights["hidden_1"]
        w2, b2 = self.weights["hidden_2"]
        w3, b3 = self.weights["deep_out"]
        deep = np.tanh(np.tanh(u @ w1 + b1) @ w2 + b2) @ w3 + b3
        y_std = first[:, width] + deep[:, 0]
        return np.maximum(y_std * self.y_scale + self.y_mean, 0.0)

    @cached_property
    def _first_layers(self) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """The input scaling, the range layer and the linear path folded into one product of
        the centred features: (weights, bias, width of the range layer, whether it clips).

        One product instead of four NumPy calls: a one-row answer's forward pass took 17 µs
        and takes 10, equal to the unfolded one to a few parts in 1e16. The mean is taken off
        first: folded into the bias it would leave a difference of large sums. A version from
        before the range layer passes the scaled features on as they are (an identity, no
        clip).
        """
        w_lin, b_lin = self.weights["linear"]
        if RANGE_LAYER in self.weights:
            w0, b0 = self.weights[RANGE_LAYER]
        else:
            w0, b0 = np.eye(len(self.x_scale)), np.zeros(len(self.x_scale))
        stacked = np.hstack([w0, w_lin])
        weights = stacked / np.asarray(self.x_scale, dtype=np.float64)[:, None]
        bias = np.concatenate([b0, b_lin])
        return weights, bias, int(w0.shape[1]), RANGE_LAYER in self.weights

    def interval(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds at the calibrated coverage (HH cannot be negative)."""
        return interval_bounds(predictions, self.interval_halfwidth, self.interval_scale)

    @cached_property
    def range_lows(self) -> np.ndarray:
        """The smallest training value of each feature, in feature order."""
        return np.array([self.feature_ranges[f][0] for f in self.features], dtype=np.float64)

    @cached_property
    def range_highs(self) -> np.ndarray:
        """The largest training value of each feature, in feature order."""
        return np.array([self.feature_ranges[f][1] for f in self.features], dtype=np.float64)

    def reference_rows(self) -> np.ndarray:
        """The low corner, centre and high corner of the training range: a loaded model must
        give finite predictions there before it is validated or served."""
        lows, highs = self.range_lows, self.range_highs
        return np.vstack([lows, (lows + highs) / 2, highs])

    def out_of_range(self, x: np.ndarray) -> list[list[str]]:
        """For each row, the features whose value lies outside the range seen in training."""
        values = np.asarray(x, dtype=np.float64)
        outside = (values < self.range_lows) | (values > self.range_highs)
        names = np.array(self.features)
        return [list(names[row]) for row in outside] if outside.any() else [[] for _ in x]


def interval_bounds(
    predictions: np.ndarray, halfwidth: float, scale: str = "absolute"
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds around predictions (`relative`: halfwidth is a share of each)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    width = (
        halfwidth * np.abs(predictions)
        if scale == "relative"
        else np.full_like(predictions, halfwidth)
    )
    return np.maximum(predictions - width, 0.0), predictions + width
