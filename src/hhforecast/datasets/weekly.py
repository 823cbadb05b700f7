"""The weekly dataset: where it comes from, and the checks it must pass before anything uses it."""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast._fs import file_sha256
from hhforecast.config import DatasetConfig, Settings, shown_value
from hhforecast.datasets import DATE_COLUMN
from hhforecast.datasets.dates import parse_dates
from hhforecast.datasets.grid import PLAN_HINT, check_weekly_grid, monday_of
from hhforecast.datasets.reader import TableFormat, read_table
from hhforecast.errors import DatasetError, HHForecastError, SampleNotChosenError

__all__ = [
    "DATE_COLUMN",
    "SAMPLE_LABEL",
    "SAMPLE_NAME",
    "RecordedDataset",
    "WeeklyDataset",
    "check_feature_frame",
    "dataset_label",
    "dataset_path_of",
    "load_training_dataset",
    "load_weekly_dataset",
    "own_data_keys",
    "recorded_dataset",
    "sample_dataset_path",
    "sample_warning",
    "training_dataset_path",
]

SAMPLE_NAME = "sample_weekly.csv"
SAMPLE_LABEL = f"sample:{SAMPLE_NAME}"
"""How model_metadata.json names the bundled sample (its path differs between installs)."""
DATASET_HINT = "See docs/data.md for the expected columns."


@dataclass(frozen=True)
class WeeklyDataset:
    """A validated weekly dataset, sorted by date, with where it came from."""

    frame: pd.DataFrame
    path: Path
    sha256: str
    read_as: TableFormat | None = None
    """How the file was written (separator, decimal mark, date order): outputs follow it."""

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def is_sample(self) -> bool:
        """Whether this is the simulated sample bundled with the package."""
        return self.path == sample_dataset_path()


def sample_dataset_path() -> Path:
    """The synthetic sample that ships inside the package."""
    return Path(str(resources.files("hhforecast.datasets") / SAMPLE_NAME))


def dataset_label(path: Path, base_dir: Path) -> str:
    """How a training dataset is recorded: the sample's label, else a path relative to
    `base_dir` (the config file's folder) when it lies below it."""
    if path == sample_dataset_path():
        return SAMPLE_LABEL
    resolved = path.resolve()
    if resolved.is_relative_to(base_dir):
        return resolved.relative_to(base_dir).as_posix()
    return str(resolved)


def dataset_path_of(label: str, base_dir: Path) -> Path:
    """The file a recorded dataset label points to (the inverse of dataset_label)."""
    if label.startswith("sample:"):
        return sample_dataset_path()
    path = Path(label).expanduser()
    return path if path.is_absolute() else base_dir / path


@dataclass(frozen=True)
class RecordedDataset:
    """A version's training dataset as its metadata records it, and whether it is usable.

    `problem` is None when the file is there with the recorded SHA-256; otherwise
    "unrecorded", "missing" or "changed".
    """

    label: str
    path: Path | None
    problem: str | None


def recorded_dataset(metadata: dict[str, Any], base_dir: Path) -> RecordedDataset:
    """Find a version's training dataset from its model_metadata.json and check its bytes."""
    info = metadata.get("dataset")
    label = info.get("path") if isinstance(info, dict) else info
    if not isinstance(label, str) or not label:
        return RecordedDataset("", None, "unrecorded")
    path = dataset_path_of(label, base_dir)
    if not path.is_file():
        return RecordedDataset(label, path, "missing")
    expected = info.get("sha256") if isinstance(info, dict) else None
    if expected and file_sha256(path) != expected:
        return RecordedDataset(label, path, "changed")
    return RecordedDataset(label, path, None)


def read_csv(
    path: Path,
    reading: DatasetConfig | None = None,
    numeric: tuple[str, ...] | list[str] = (),
) -> pd.DataFrame:
    """Read a table through the one reader (CSV of any usual dialect, or .xlsx)."""
    return read_table(path, reading, numeric=numeric)[0]


def missing_columns(source: Path | str, missing: list[str], header: Any) -> DatasetError:
    """The error for a weeks file without some columns: each one's closest name in the file
    (accents and case ignored: 'Data' for date), and that the names are the file's to change."""
    folded = {_folded(str(c)): str(c) for c in reversed(list(header))}
    named = []
    for column in missing:
        close = difflib.get_close_matches(_folded(column), list(folded), n=1, cutoff=0.6)
        named.append(
            f"{column} (closest in the file: {shown_value(folded[close[0]])})" if close else column
        )
    present = ", ".join(map(str, header)) or "none"
    return DatasetError(
        source,
        f"missing column(s) {', '.join(named)}; columns present: {present}",
        "Name the columns as docs/data.md lists them (the dataset: mapping in config.yaml is "
        "for raw logs only).",
    )


def _folded(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.casefold().split())


def check_feature_frame(
    frame: pd.DataFrame,
    source: Path | str,
    columns: list[str],
) -> pd.DataFrame:
    """Check that `columns` exist and hold finite, non-negative numbers; return them as floats.

    Row numbers in messages are the file's line numbers (the header is line 1).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise missing_columns(source, missing, frame.columns)
    if frame.empty:
        raise DatasetError(source, "has a header but no rows", DATASET_HINT)
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() & frame[column].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(
                source,
                f"column {column!r}, line {i + 2}: {shown_value(frame[column].iloc[i])} is not "
                "a number",
            )
        values = numeric.to_numpy(dtype=float)
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            i = int(np.flatnonzero(not_finite)[0])
            shown = "empty" if np.isnan(values[i]) else str(frame[column].iloc[i])
            raise DatasetError(
                source,
                f"column {column!r}, line {i + 2}: value is {shown}; every value must be "
                "a finite number",
            )
        negative = values < 0
        if negative.any():
            i = int(np.flatnonzero(negative)[0])
            raise DatasetError(
                source,
                f"column {column!r}, line {i + 2}: {values[i]:g} is negative; counts, hours "
                "and man-hours cannot be",
            )
        out[column] = values
    return out


def check_dates(
    frame: pd.DataFrame,
    source: Path | str,
    reading: DatasetConfig | None = None,
    plan: bool = False,
) -> pd.Series:
    """Parse the date column (ISO, or day-first when configured) and enforce the weekly grid.

    In a `plan` any day names its week: the grid is checked on the weeks' Mondays, and the dates
    are returned as written (the forecast says which were moved to their Monday)."""
    if DATE_COLUMN not in frame.columns:
        raise missing_columns(source, [DATE_COLUMN], frame.columns)
    dates = frame[DATE_COLUMN]
    if not pd.api.types.is_datetime64_any_dtype(dates):
        dates = parse_dates(dates, source, DATE_COLUMN, (reading or DatasetConfig()).dayfirst)
    if plan:
        check_weekly_grid(monday_of(dates), source, hint=PLAN_HINT)
    else:
        check_weekly_grid(dates, source)
    return dates


def load_weekly_dataset(
    path: Path | None,
    features: list[str],
    target: str | None,
    min_rows: int = 1,
    optional: tuple[str, ...] = (),
    reading: DatasetConfig | None = None,
    plan: bool = False,
) -> WeeklyDataset:
    """Read and validate a weekly dataset (the bundled sample when `path` is None).

    `optional` columns are checked and kept when the file has them (realised HH in a file of
    recent weeks, say). `reading` says how the user's files are written (config `dataset:`).
    A `plan` may date a week by any of its days (see `check_dates`).
    """
    path = path if path is not None else sample_dataset_path()
    named = [*features, *([target] if target else []), *optional]
    raw, read_as = read_table(path, reading, numeric=named, dates=[DATE_COLUMN])
    present = [c for c in optional if c in raw.columns]
    wanted = list(dict.fromkeys([*features, *([target] if target else []), *present]))
    values = check_feature_frame(raw, path, wanted)
    dates = check_dates(raw, path, reading, plan)
    if len(raw) < min_rows:
        raise DatasetError(
            path,
            f"has {len(raw)} weeks; at least {min_rows} are needed",
            "Use a longer history or lower training.min_rows.",
        )
    frame = values.assign(**{DATE_COLUMN: dates.to_numpy()})[[DATE_COLUMN, *wanted]]
    return WeeklyDataset(frame.reset_index(drop=True), path, file_sha256(path), read_as)


def own_data_keys(settings: Settings) -> list[str]:
    """The `dataset:` keys the config sets away from their defaults: a config that maps raw
    columns or says how files are written describes the user's own data."""
    defaults = DatasetConfig().model_dump()
    return [
        f"dataset.{key}"
        for key, value in settings.dataset.model_dump().items()
        if value != defaults[key]
    ]


def sample_warning(action: str) -> str:
    """The warning printed whenever the simulated sample is used (`action`: "training")."""
    return (
        f"{action} on the simulated sample fleet bundled with hhforecast, not on your data: "
        "its figures say nothing about your fleet. Pass --dataset FILE or set paths.dataset "
        "to use yours."
    )


def training_dataset_path(
    settings: Settings, dataset_path: Path | None = None, use_sample: bool = False
) -> Path:
    """The file to train on: `dataset_path`, else the sample when `use_sample`, else
    paths.dataset, else the bundled sample, unless the config describes the user's own data
    (then SampleNotChosenError: the sample is never used there without being asked for)."""
    if use_sample:
        if dataset_path is not None:
            raise HHForecastError("pass either --dataset FILE or --sample, not both")
        return sample_dataset_path()
    if dataset_path is not None:
        return dataset_path
    if settings.paths.dataset:
        path = settings.resolve(settings.paths.dataset)
        if not path.exists():
            raise DatasetError(
                path,
                "no such file",
                f"It is paths.dataset in {settings.config_file}: fix it there, or pass "
                "--dataset FILE.",
            )
        return path
    own = own_data_keys(settings)
    if own:
        raise SampleNotChosenError(settings.config_file, own)
    return sample_dataset_path()


def load_training_dataset(settings: Settings, dataset_path: Path | None = None) -> WeeklyDataset:
    """The dataset to train on (chosen by `training_dataset_path`), checked for every
    variant's features and the target."""
    cfg = settings.training
    dataset_path = training_dataset_path(settings, dataset_path)
    features = list(dict.fromkeys(f for fs in cfg.variants.values() for f in fs))
    return load_weekly_dataset(
        dataset_path, features, cfg.target, min_rows=cfg.min_rows, reading=settings.dataset
    )
