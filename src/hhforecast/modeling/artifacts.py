"""What a version folder holds, and loading one variant of it into a `VariantModel`.

Artifact names are the original system's (`model_hh_semanal_<variant>.keras`,
`scaler_X_<variant>.joblib`, `scaler_y_<variant>.joblib`, `model_metadata.json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.errors import ArtifactError, ForeignVersionError, VariantNotFoundError
from hhforecast.modeling.inference import LAYER_NAMES, RANGE_LAYER, VariantModel

__all__ = ["METADATA_FILE", "artifact_names", "load_variant", "quiet_tensorflow", "read_metadata"]


METADATA_FILE = "model_metadata.json"


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
    if "variants" not in metadata:
        raise ForeignVersionError(version_dir)
    variants = metadata["variants"]
    if variant not in variants:
        raise VariantNotFoundError(version_dir, variant, list(variants))
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
        present = {layer.name for layer in network.layers}
        for layer_name in (*LAYER_NAMES, RANGE_LAYER):
            if layer_name == RANGE_LAYER and layer_name not in present:
                continue  # versions trained before the range layer feed the deep path directly
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
        interval_scale=str(info["interval"].get("scale", "absolute")),
    )
