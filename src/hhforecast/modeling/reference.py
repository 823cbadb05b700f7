"""The drift reference kept with every version: the dataset's weeks labelled by their split.

Training writes it next to the model; `drift` reads back the fit and validation weeks, the weeks
the model learnt from, to compare recent weeks against.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast._fs import atomic_write_text, file_sha256
from hhforecast.datasets.weekly import DATE_COLUMN, check_feature_frame, read_csv
from hhforecast.errors import EXIT_BAD_INPUT, ArtifactError

__all__ = [
    "DRIFT_REFERENCE_FILE",
    "DriftReferenceError",
    "read_drift_reference",
    "write_drift_reference",
]

DRIFT_REFERENCE_FILE = "drift_reference.csv"
SPLIT_COLUMN = "split"
TRAINING_SPLITS = ("fit", "validation")


class DriftReferenceError(ArtifactError):
    """A version has no usable drift reference (trained before references were kept)."""

    # Not a "drift found" verdict: a cron job must tell it apart from exit 1.
    exit_code = EXIT_BAD_INPUT


def write_drift_reference(folder: Path, frame: pd.DataFrame, split: Any) -> dict[str, str]:
    """Write the dataset's weeks with their split label to `folder`; return {file name: sha256}.

    `split` is an evaluation.Split; only its fit, validation and test row indices are used.
    """
    labels = np.full(len(frame), "", dtype=object)
    labels[split.fit] = "fit"
    labels[split.validation] = "validation"
    labels[split.test] = "test"
    out = frame.copy()
    out[DATE_COLUMN] = pd.to_datetime(out[DATE_COLUMN]).dt.strftime("%Y-%m-%d")
    out[SPLIT_COLUMN] = labels
    path = folder / DRIFT_REFERENCE_FILE
    atomic_write_text(path, out.to_csv(index=False))
    return {DRIFT_REFERENCE_FILE: file_sha256(path)}


def read_drift_reference(
    version_dir: Path, columns: list[str], metadata: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The training weeks (fit + validation) stored with a version, sorted by date.

    With the version's (verified) `metadata`, the file is parsed only once its SHA-256 matches.
    """
    path = version_dir / DRIFT_REFERENCE_FILE
    if not path.is_file():
        raise DriftReferenceError(
            f"{path} is missing: this version was trained before drift references were kept "
            "with the model. Retrain it (hhforecast train) to check drift against it"
        )
    if metadata is None:
        raw = read_csv(path)
    else:
        from hhforecast.modeling.artifacts import verified_artifact

        raw = pd.read_csv(io.BytesIO(verified_artifact(version_dir, path.name, metadata)))
    values = check_feature_frame(raw, path, columns)
    dates = pd.to_datetime(raw[DATE_COLUMN], errors="coerce")
    keep = raw[SPLIT_COLUMN].isin(TRAINING_SPLITS).to_numpy() if SPLIT_COLUMN in raw else None
    frame = values.assign(**{DATE_COLUMN: dates.to_numpy()})
    if keep is not None:
        frame = frame[keep]
    return frame.sort_values(DATE_COLUMN).reset_index(drop=True)
