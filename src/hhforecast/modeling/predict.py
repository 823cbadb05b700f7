"""Scoring weeks with a registered version: the path shared by `predict`, the API and checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast.config import Settings
from hhforecast.datasets.reader import read_table
from hhforecast.datasets.weekly import DATE_COLUMN, check_feature_frame
from hhforecast.datasets.writer import csv_style, whole_numbers_as_integers, write_csv
from hhforecast.errors import DatasetError
from hhforecast.modeling.artifacts import load_variant, recorded_metadata_sha256
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.store import ModelVersion, Registry

__all__ = ["PredictionRun", "load_model", "load_registered", "predict_file", "predict_frame"]

OUTPUT_COLUMNS = ("HH_pred", "HH_lower", "HH_upper", "out_of_range")


def load_model(
    settings: Settings, version: str | None = None, variant: str | None = None
) -> VariantModel:
    """Load a variant (default: mlops.serve_variant) of a version (default: production)."""
    registry = Registry(settings)
    entry: ModelVersion = (
        registry.get(version) if version is not None else registry.require_production_version()
    )
    return load_registered(registry, entry, variant or settings.mlops.serve_variant)


def load_registered(registry: Registry, entry: ModelVersion, variant: str) -> VariantModel:
    """Load a registered version's variant: its metadata checked against the SHA-256 in the
    registry entry, every artifact against the metadata, before anything is parsed; joblib
    scalers are unpickled only when mlops.allow_pickled_scalers says so."""
    where = f"registry entry {entry.version} in {registry.path}"
    expected = recorded_metadata_sha256(entry.extra, where)
    allow_pickle = registry.settings.mlops.allow_pickled_scalers
    return load_variant(
        registry.version_dir(entry), variant, entry.version, expected, allow_pickle=allow_pickle
    )


def predict_frame(model: VariantModel, frame: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    """`frame` plus HH_pred, HH_lower, HH_upper and out_of_range (features outside training)."""
    values = check_feature_frame(frame, source, model.features)
    x = values[model.features].to_numpy(dtype=np.float64)
    with np.errstate(all="ignore"):  # reported below, by row
        predictions = model.predict(x)
    infinite = np.flatnonzero(~np.isfinite(predictions))
    if len(infinite):
        lines = ", ".join(str(int(i) + 2) for i in infinite[:5])  # line 1 is the header
        raise DatasetError(
            source,
            f"the model gives no finite forecast for line(s) {lines}",
            "Check those values: they lie far outside anything the model was trained on.",
        )
    lower, upper = model.interval(predictions)
    out = frame.copy()
    out["HH_pred"] = np.round(predictions, 3)
    out["HH_lower"] = np.round(lower, 3)
    out["HH_upper"] = np.round(upper, 3)
    out["out_of_range"] = [";".join(names) for names in model.out_of_range(x)]
    return out


@dataclass(frozen=True)
class PredictionRun:
    """What a batch prediction wrote."""

    output: Path
    rows: int
    version: str
    variant: str
    rows_out_of_range: int
    frame: pd.DataFrame


def predict_file(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    version: str | None = None,
    variant: str | None = None,
    style: str = "input",
) -> PredictionRun:
    """Score every week of a CSV and write it back with the prediction columns added, in the
    input's CSV style unless `style` names another (datasets/writer.py)."""
    features = [f for fs in settings.training.variants.values() for f in fs]
    frame, read_as = read_table(input_path, settings.dataset, numeric=features, dates=[DATE_COLUMN])
    model = load_model(settings, version, variant)
    scored = predict_frame(model, frame, str(input_path))
    # Inputs that were whole numbers are written whole (156, not 156.0), as they were read.
    written = whole_numbers_as_integers(scored, [c for c in frame.columns if c in features])
    write_csv(written, output_path, csv_style(style, read_as))
    return PredictionRun(
        output=output_path,
        rows=len(scored),
        version=model.version,
        variant=model.variant,
        rows_out_of_range=int((scored["out_of_range"] != "").sum()),
        frame=scored,
    )
