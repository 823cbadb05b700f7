"""What a version folder holds, and loading one variant of it, verified, into a `VariantModel`.

Artifact names are the original system's (`model_hh_semanal_<variant>.keras`,
`scaler_X_<variant>.joblib`, `scaler_y_<variant>.joblib`, `model_metadata.json`).

Loading reads each file's bytes once, checks their SHA-256 against the one recorded at training,
and only then parses those same bytes (never the file a second time). The metadata, which records
those checksums, is itself checked against the SHA-256 in the version's registry entry when the
caller passes it. Nothing here imports TensorFlow: the weights are read from the `.keras` archive
with h5py, and the scalers are plain numbers in the metadata (docs/artifacts.md says why).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast._json import JSONDepthError, loads
from hhforecast.errors import ArtifactError, ForeignVersionError, VariantNotFoundError
from hhforecast.modeling.inference import LAYER_NAMES, RANGE_LAYER, VariantModel

__all__ = [
    "METADATA_FILE",
    "METADATA_SHA256_FIELD",
    "ArtifactChangedError",
    "PickledScalersError",
    "artifact_names",
    "bytes_sha256",
    "load_variant",
    "quiet_tensorflow",
    "read_metadata",
    "recorded_metadata_sha256",
    "scaling_record",
    "trained_through",
    "uses_pickled_scalers",
    "variant_from_verified",
    "verified_artifact",
]


METADATA_FILE = "model_metadata.json"
METADATA_SHA256_FIELD = "metadata_sha256"
"""The registry entry's field holding the SHA-256 of the version's model_metadata.json."""
SCALING_KEY = "scaling"
"""Where a variant's scaler parameters are kept in the metadata, as plain numbers."""
ALLOW_PICKLE_SETTING = "allow_pickled_scalers"
"""The `mlops` setting that lets versions without `scaling` unpickle their joblib scalers."""


class ArtifactChangedError(ArtifactError):
    """A file's SHA-256 differs from the one recorded for it: it is not loaded."""

    def __init__(self, path: Path, expected: str, actual: str, recorded_in: str) -> None:
        self.path = path
        super().__init__(
            f"{path} does not match the SHA-256 recorded in {recorded_in} (recorded "
            f"{expected[:12]}…, file {actual[:12]}…): it changed since training and was not "
            "loaded. Restore the version folder from a backup or train the version again."
        )


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


def bytes_sha256(data: bytes) -> str:
    """SHA-256 of bytes already read (hash what is parsed, not the file a second time)."""
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; the version folder is incomplete") from None
    except OSError as exc:
        raise ArtifactError(f"{path} cannot be read ({exc.strerror or exc})") from None


def read_metadata(version_dir: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """The version's model_metadata.json, checked against `expected_sha256` when given (the
    registry entry's record), or an ArtifactError saying what is wrong."""
    path = version_dir / METADATA_FILE
    data = _read_bytes(path)
    if expected_sha256 is not None:
        actual = bytes_sha256(data)
        if actual != expected_sha256:
            raise ArtifactChangedError(path, expected_sha256, actual, "the registry entry")
    try:
        parsed = loads(data)
    except (JSONDepthError, ValueError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return parsed


def _iso_day(value: Any) -> str | None:
    text = str(value)[:10] if isinstance(value, str) else ""
    return text if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None


def trained_through(metadata: Mapping[str, Any]) -> str | None:
    """The last week (YYYY-MM-DD) the served fit learnt: `trained_through`; for versions
    trained before it was recorded, the end of their fit and validation weeks (what they
    learnt), else their dataset's last week; None when the metadata says none of these."""
    recorded = _iso_day(metadata.get("trained_through"))
    if recorded:
        return recorded
    split = metadata.get("split")
    if isinstance(split, dict):
        ends = [
            _iso_day(split[part].get("end"))
            for part in ("fit", "validation")
            if isinstance(split.get(part), dict)
        ]
        if ends and all(ends):
            return max(e for e in ends if e)
    dataset = metadata.get("dataset")
    return _iso_day(dataset.get("end")) if isinstance(dataset, dict) else None


def recorded_metadata_sha256(entry_fields: Mapping[str, Any], where: str) -> str | None:
    """The metadata SHA-256 a registry entry records (None for entries written before it was
    recorded), or an ArtifactError when the field holds something else."""
    value = entry_fields.get(METADATA_SHA256_FIELD)
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ArtifactError(
            f"{where}: '{METADATA_SHA256_FIELD}' is not a SHA-256 (64 hexadecimal digits); "
            "the registry entry was edited. Restore registry.json from a backup."
        )
    return value


def verified_artifact(version_dir: Path, name: str, metadata: Mapping[str, Any]) -> bytes:
    """The bytes of artifact `name`, once their SHA-256 matches the metadata's record of it."""
    path = version_dir / name
    recorded = metadata.get("artifacts")
    expected = recorded.get(name) if isinstance(recorded, dict) else None
    if not isinstance(expected, str):
        raise ArtifactError(
            f"{path}: {METADATA_FILE} records no SHA-256 for it, so it cannot be verified and "
            "was not loaded. Train the version again."
        )
    data = _read_bytes(path)
    actual = bytes_sha256(data)
    if actual != expected:
        raise ArtifactChangedError(path, expected, actual, METADATA_FILE)
    return data


def scaling_record(scaler_x: Any, scaler_y: Any) -> dict[str, list[float]]:
    """A fitted X and y StandardScaler pair as the plain numbers the loader reads."""
    return {
        "x_mean": [float(v) for v in scaler_x.mean_],
        "x_scale": [float(v) for v in scaler_x.scale_],
        "y_mean": [float(v) for v in scaler_y.mean_],
        "y_scale": [float(v) for v in scaler_y.scale_],
    }


def _numbers(record: Mapping[str, Any], key: str, size: int, where: str) -> np.ndarray:
    values = record.get(key)
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ):
        raise ArtifactError(f"{where}: '{SCALING_KEY}.{key}' must be a list of {size} numbers")
    return np.array(values, dtype=np.float64)


class PickledScalersError(ArtifactError):
    """A version keeps its scalers only as joblib pickles, and unpickling was not allowed."""

    def __init__(self, where: Path, variant: str) -> None:
        super().__init__(
            f"{where}: variant {variant!r} keeps its scalers only as joblib pickles (it was "
            f"trained before they were kept as numbers, '{SCALING_KEY}'); unpickling runs "
            "whatever code a pickle names, so it is not loaded. Train the version again, or, "
            f"for a local version you trust, set mlops.{ALLOW_PICKLE_SETTING}: true in "
            "config.yaml (docs/artifacts.md); a replica never unpickles what it downloads"
        )


def uses_pickled_scalers(metadata: Mapping[str, Any]) -> list[str]:
    """The variants of a version's metadata whose scalers exist only as joblib pickles."""
    variants = metadata.get("variants")
    if not isinstance(variants, dict):
        return []
    return sorted(
        str(name)
        for name, info in variants.items()
        if not (isinstance(info, dict) and isinstance(info.get(SCALING_KEY), dict))
    )


def _scaling(
    info: Mapping[str, Any],
    blobs: dict[str, bytes],
    n_features: int,
    where: Path,
    variant: str,
    allow_pickle: bool,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    record = info.get(SCALING_KEY)
    if isinstance(record, dict):
        x_mean = _numbers(record, "x_mean", n_features, str(where))
        x_scale = _numbers(record, "x_scale", n_features, str(where))
        y_mean = _numbers(record, "y_mean", 1, str(where))
        y_scale = _numbers(record, "y_scale", 1, str(where))
        return x_mean, x_scale, float(y_mean[0]), float(y_scale[0])
    if not allow_pickle:
        raise PickledScalersError(where, variant)
    # Versions trained before the parameters were kept in the metadata, opted in by the user:
    # their joblib files are unpickled, but only these bytes, whose SHA-256 has just matched.
    import joblib

    def arrays(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
        scaler = joblib.load(io.BytesIO(data))
        mean, scale = getattr(scaler, "mean_", None), getattr(scaler, "scale_", None)
        if mean is None or scale is None:
            raise ArtifactError(f"{where}: {name} is not a fitted StandardScaler")
        return np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)

    x_mean, x_scale = arrays(blobs["scaler_X"], "scaler_X")
    y_mean, y_scale = arrays(blobs["scaler_y"], "scaler_y")
    return x_mean, x_scale, float(y_mean[0]), float(y_scale[0])


def _snake_case(name: str) -> str:
    # Keras names each layer's group in model.weights.h5 after its class, in this spelling.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def read_keras_weights(data: bytes, where: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Kernel and bias of the network's Dense layers, read from a `.keras` archive's bytes
    without Keras: config.json names the layers in order, model.weights.h5 holds their
    variables under `layers/<class>[_n]/vars/<i>` in that order (the Keras 3 format)."""
    import zipfile

    import h5py

    wanted = (*LAYER_NAMES, RANGE_LAYER)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            config = loads(archive.read("config.json"))
            weights_file = archive.read("model.weights.h5")
        groups: dict[str, str] = {}
        used: dict[str, int] = {}
        for layer in config["config"]["layers"]:
            base = _snake_case(str(layer["class_name"]))
            count = used.get(base)
            used[base] = 0 if count is None else count + 1
            group = base if count is None else f"{base}_{count + 1}"
            if layer["config"]["name"] in wanted:
                if layer["class_name"] != "Dense":
                    raise ValueError(f"layer {layer['config']['name']!r} is not a Dense layer")
                groups[layer["config"]["name"]] = group
        weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with h5py.File(io.BytesIO(weights_file), "r") as h5:
            for name, group in groups.items():
                variables = h5[f"layers/{group}/vars"]
                kernel = np.asarray(variables["0"][()], dtype=np.float64)
                bias = np.asarray(variables["1"][()], dtype=np.float64)
                if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
                    raise ValueError(
                        f"layer {name!r} has weights of shapes {kernel.shape}, {bias.shape}"
                    )
                weights[name] = (kernel, bias)
    except ArtifactError:
        raise
    except Exception as exc:  # a damaged archive surfaces as many exception types
        raise ArtifactError(f"{where} cannot be read: {type(exc).__name__}: {exc}") from None
    missing = [name for name in LAYER_NAMES if name not in weights]
    if missing:
        raise ArtifactError(f"{where} has no layer {', '.join(missing)}; it is not our network")
    return weights


def _check_shapes(
    weights: dict[str, tuple[np.ndarray, np.ndarray]], n_features: int, where: Path
) -> None:
    kernel = weights["linear"][0]
    if kernel.shape != (n_features, 1):
        raise ArtifactError(
            f"{where}: the network takes {kernel.shape[0]} inputs but the metadata names "
            f"{n_features} features; the file belongs to another variant or version"
        )


def load_variant(
    version_dir: Path,
    variant: str,
    version: str | None = None,
    metadata_sha256: str | None = None,
    *,
    allow_pickle: bool = False,
) -> VariantModel:
    """Load one variant of a version folder, every file verified before it is parsed.

    `metadata_sha256` is the registry entry's record of model_metadata.json; with it, the
    checksums in the metadata cannot be rewritten alongside the files they describe. A version
    without scaler numbers is refused unless `allow_pickle` (its joblib files are pickles).
    """
    metadata = read_metadata(version_dir, metadata_sha256)
    if "variants" not in metadata:
        raise ForeignVersionError(version_dir)
    variants = metadata["variants"]
    if variant not in variants:
        raise VariantNotFoundError(version_dir, variant, list(variants))
    # Every file of the variant is checked, even one the loader does not parse: a scaler copied
    # from another version is refused by name rather than left unnoticed.
    blobs = {
        name: verified_artifact(version_dir, name, metadata)
        for name in artifact_names(variant).values()
    }
    return variant_from_verified(
        version_dir, metadata, variant, blobs, version, allow_pickle=allow_pickle
    )


def variant_from_verified(
    version_dir: Path,
    metadata: Mapping[str, Any],
    variant: str,
    blobs: Mapping[str, bytes],
    version: str | None = None,
    *,
    allow_pickle: bool = False,
) -> VariantModel:
    """One variant parsed from artifact bytes (by file name) whose SHA-256 already matched; a
    version without scaler numbers is refused unless `allow_pickle`."""
    variants = metadata.get("variants")
    if not isinstance(variants, dict) or variant not in variants:
        known = list(variants) if isinstance(variants, dict) else []
        raise VariantNotFoundError(version_dir, variant, known)
    info = variants[variant]
    names = artifact_names(variant)
    missing = [name for name in names.values() if name not in blobs]
    if missing:
        raise ArtifactError(
            f"{version_dir}: {', '.join(missing)} did not match the SHA-256 recorded in "
            f"{METADATA_FILE} and was not loaded. Restore the version folder from a backup or "
            "train the version again."
        )
    roles = {key: blobs[name] for key, name in names.items()}
    where = version_dir / METADATA_FILE
    try:
        features = [str(f) for f in info["features"]]
        weights = read_keras_weights(roles["model"], version_dir / names["model"])
        _check_shapes(weights, len(features), version_dir / names["model"])
        x_mean, x_scale, y_mean, y_scale = _scaling(
            info, roles, len(features), where, variant, allow_pickle
        )
        ranges = {f: (float(lo), float(hi)) for f, (lo, hi) in info["feature_ranges"].items()}
        interval = info["interval"]
        halfwidth, coverage = float(interval["halfwidth"]), float(interval["coverage"])
        interval_scale = str(interval.get("scale", "absolute"))
        if not (np.isfinite(halfwidth) and halfwidth >= 0) or interval_scale not in (
            "absolute",
            "relative",
        ):
            raise ValueError(f"the interval {interval!r} is not a finite, non-negative width")
    except ArtifactError:
        raise
    except Exception as exc:  # a damaged file surfaces as many exception types
        raise ArtifactError(
            f"cannot load variant {variant!r} from {version_dir}: {type(exc).__name__}: {exc}"
        ) from None
    return VariantModel(
        version=version or str(metadata.get("version", version_dir.name)),
        variant=variant,
        features=features,
        x_mean=x_mean,
        x_scale=x_scale,
        y_mean=y_mean,
        y_scale=y_scale,
        weights=weights,
        interval_halfwidth=halfwidth,
        coverage=coverage,
        feature_ranges=ranges,
        metadata=dict(metadata),
        interval_scale=interval_scale,
    )
