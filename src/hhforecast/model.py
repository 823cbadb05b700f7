"""The forecasting network, its artifacts, and the one prediction path every caller uses.

The network is a linear path beside a small deep path (wide and deep) on standardised inputs and
a standardised target::

    HH_std = linear(x_std) + Dense(1)(tanh(Dense(u)(tanh(Dense(u)(x_std)))))

The linear path starts at the least-squares solution and the deep path's output starts at zero,
so training begins from linear regression and keeps a deep correction only while it helps on
the validation weeks. Because tanh saturates, the correction stays bounded outside the training
range: the model extrapolates like a linear model instead of like a ReLU network.

Training needs TensorFlow; prediction does not run Keras per request. `VariantModel` reads the
weights once and computes the same forward pass in NumPy (microseconds per row), so
`hhforecast predict`, the API and any later tool give identical numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.errors import ArtifactError

__all__ = [
    "METADATA_FILE",
    "VariantModel",
    "artifact_names",
    "build_network",
    "load_variant",
    "read_metadata",
]

METADATA_FILE = "model_metadata.json"
LAYER_NAMES = ("linear", "hidden_1", "hidden_2", "deep_out")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter off the user's terminal (unless they set it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def artifact_names(variant: str) -> dict[str, str]:
    """The file names of one variant's artifacts, as the original system named them."""
    return {
        "model": f"model_hh_semanal_{variant}.keras",
        "scaler_X": f"scaler_X_{variant}.joblib",
        "scaler_y": f"scaler_y_{variant}.joblib",
    }


def build_network(n_features: int, units: int, l2: float, seed: int) -> Any:
    """The Keras wide-and-deep regression network (uncompiled)."""
    quiet_tensorflow()
    import keras

    init = keras.initializers.GlorotUniform(seed=seed)
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    linear = keras.layers.Dense(1, name="linear")(inputs)
    hidden = keras.layers.Dense(
        units, activation="tanh", kernel_initializer=init, kernel_regularizer=reg, name="hidden_1"
    )(inputs)
    hidden = keras.layers.Dense(
        units, activation="tanh", kernel_initializer=init, kernel_regularizer=reg, name="hidden_2"
    )(hidden)
    deep = keras.layers.Dense(1, kernel_initializer="zeros", name="deep_out")(hidden)
    outputs = keras.layers.Add(name="HH_std")([linear, deep])
    return keras.Model(inputs, outputs, name="hh_wide_deep")


def read_metadata(version_dir: Path) -> dict[str, Any]:
    """The version's model_metadata.json, or an ArtifactError saying what is wrong."""
    path = version_dir / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; the version folder is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


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

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted HH for rows of raw features (shape [n, len(features)])."""
        z = (np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_scale
        w_lin, b_lin = self.weights["linear"]
        w1, b1 = self.weights["hidden_1"]
        w2, b2 = self.weights["hidden_2"]
        w3, b3 = self.weights["deep_out"]
        deep = np.tanh(np.tanh(z @ w1 + b1) @ w2 + b2) @ w3 + b3
        y_std = (z @ w_lin + b_lin + deep)[:, 0]
        return y_std * self.y_scale + self.y_mean

    def interval(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds at the calibrated coverage (HH cannot be negative)."""
        lower = np.maximum(predictions - self.interval_halfwidth, 0.0)
        return lower, predictions + self.interval_halfwidth

    def out_of_range(self, x: np.ndarray) -> list[list[str]]:
        """For each row, the features whose value lies outside the range seen in training."""
        lows = np.array([self.feature_ranges[f][0] for f in self.features])
        highs = np.array([self.feature_ranges[f][1] for f in self.features])
        outside = (x < lows) | (x > highs)
        names = np.array(self.features)
        return [list(names[row]) for row in outside] if outside.any() else [[] for _ in x]


def _scaler_arrays(scaler: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    mean = getattr(scaler, "mean_", None)
    scale = getattr(scaler, "scale_", None)
    if mean is None or scale is None:
        raise ArtifactError(f"{path} is not a fitted StandardScaler")
    return np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)


def load_variant(version_dir: Path, variant: str, version: str | None = None) -> VariantModel:
    """Load one variant of a version folder (imports Keras once, to read the weights)."""
    import joblib

    metadata = read_metadata(version_dir)
    variants = metadata.get("variants", {})
    if variant not in variants:
        known = ", ".join(variants) or "none"
        raise ArtifactError(
            f"{version_dir} has no variant {variant!r} (variants: {known}); "
            "pass --variant with one of them"
        )
    info = variants[variant]
    names = artifact_names(variant)
    for name in names.values():
        if not (version_dir / name).is_file():
            raise ArtifactError(f"{version_dir / name} is missing; the version is incomplete")
    quiet_tensorflow()
    try:
        import keras

        network = keras.models.load_model(version_dir / names["model"], compile=False)
        weights = {}
        for layer_name in LAYER_NAMES:
            kernel, bias = network.get_layer(layer_name).get_weights()
            weights[layer_name] = (kernel.astype(np.float64), bias.astype(np.float64))
        scaler_x = joblib.load(version_dir / names["scaler_X"])
        scaler_y = joblib.load(version_dir / names["scaler_y"])
    except ArtifactError:
        raise
    except Exception as exc:  # a damaged file surfaces as many exception types
        raise ArtifactError(
            f"cannot load variant {variant!r} from {version_dir}: {type(exc).__name__}: {exc}"
        ) from None
    x_mean, x_scale = _scaler_arrays(scaler_x, version_dir / names["scaler_X"])
    y_mean, y_scale = _scaler_arrays(scaler_y, version_dir / names["scaler_y"])
    ranges = {f: (float(lo), float(hi)) for f, (lo, hi) in info["feature_ranges"].items()}
    return VariantModel(
        version=version or str(metadata.get("version", version_dir.name)),
        variant=variant,
        features=list(info["features"]),
        x_mean=x_mean,
        x_scale=x_scale,
        y_mean=float(y_mean[0]),
        y_scale=float(y_scale[0]),
        weights=weights,
        interval_halfwidth=float(info["interval"]["halfwidth"]),
        coverage=float(info["interval"]["coverage"]),
        feature_ranges=ranges,
        metadata=metadata,
    )
