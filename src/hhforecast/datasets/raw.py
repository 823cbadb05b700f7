"""Raw logs as the airline exports them: read, mapped to our column names, checked, merged.

Two sources, each possibly split over several files (one per month or year, overlapping at the
edges): the utilisation log (one row per aircraft-day or per flight) and the unscheduled-event
log (one row per item). Column names come from the config's `dataset:` section, so an export
keeps the headers its tool wrote.
"""

from __future__ import annotations

import difflib
import glob
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, shown_value
from hhforecast.datasets.reader import TableFormat, read_table
from hhforecast.errors import DatasetError

__all__ = [
    "EVENT_FIELDS",
    "UTILIZATION_FIELDS",
    "RawLog",
    "expand_paths",
    "normalise_category",
    "read_raw_log",
]

UTILIZATION_FIELDS = ("date", "aircraft", "hours", "cycles", "tah")
EVENT_FIELDS = ("date", "aircraft", "ata", "category", "hh")
_NUMERIC = {"utilization": ("hours", "cycles", "tah"), "events": ("hh",)}
_NON_NEGATIVE = {"utilization": ("hours", "cycles", "tah"), "events": ("hh",)}
_NAMES = {"utilization": "utilisation", "events": "event"}
_SHOWN_COLUMNS = 30


@dataclass
class RawLog:
    """One source's rows from all its files, under our column names, cross-file repeats dropped.

    `file` is the index of each row's file in `files`."""

    kind: str
    frame: pd.DataFrame
    files: list[dict[str, Any]] = field(default_factory=list)
    duplicates_dropped: int = 0
    duplicate_hh: float = 0.0
    read_as: TableFormat | None = None
    """How the first file was written (outputs built from the log follow it)."""

    @property
    def rows_read(self) -> int:
        return sum(int(f["rows"]) for f in self.files)


def expand_paths(paths: list[Path]) -> list[Path]:
    """The files named, a quoted glob pattern (`'exports/util-*.csv'`) expanded in name order,
    so a scheduler can pass every monthly export without listing them."""
    out: list[Path] = []
    for path in paths:
        text = str(path)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text))
            if not matches:
                raise DatasetError(text, "the pattern matches no file", "Check the path.")
            out.extend(matches)
        else:
            out.append(path)
    return out


def normalise_category(values: pd.Series) -> pd.Series:
    """Categories compared ignoring case and spaces ("Pilot ", "PI LOT" and "PILOT" are one)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)  # a few distinct values
    names = pd.Series(uniques, dtype=object).astype("string").fillna("")
    normalised = names.str.upper().str.replace(r"\s+", "", regex=True).to_numpy(dtype=object)
    return pd.Series(normalised[codes], index=values.index, dtype=object)


def _registrations(values: pd.Series) -> pd.Series:
    """Registrations trimmed, as a categorical in name order (each distinct value done once)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    names = pd.Series(uniques, dtype=object).astype("string").str.strip().fillna("")
    categories, inverse = np.unique(names.to_numpy(dtype=str), return_inverse=True)
    return pd.Series(
        pd.Categorical.from_codes(inverse[codes], pd.Index(categories.tolist())), index=values.index
    )


def read_raw_log(kind: str, paths: list[Path], config: DatasetConfig) -> RawLog:
    """Read every file of one source (`utilization` or `events`) and merge them.

    A row repeated in a later file (files overlapping at their edges) is dropped and counted;
    rows repeated inside one file are kept, because two flights of one day can be identical.
    """
    if not paths:
        raise DatasetError(kind, "no file given", f"Pass --{kind} FILE (repeat it for several).")
    paths = expand_paths(paths)
    mapping: dict[str, str] = getattr(config, kind).model_dump()
    fields = UTILIZATION_FIELDS if kind == "utilization" else EVENT_FIELDS
    frames, files = [], []
    read_as = None
    for index, path in enumerate(paths):
        frame, fmt = read_table(
            path,
            config,
            numeric=[mapping[f] for f in _NUMERIC[kind]],
            dates=[mapping["date"]],
            only=[mapping[f] for f in fields],
        )
        _check_columns(kind, path, frame, fmt.columns or tuple(frame.columns), mapping, fields)
        read_as = read_as or fmt
        mapped = pd.DataFrame({f: frame[mapping[f]] for f in fields})
        mapped["aircraft"] = _registrations(mapped["aircraft"])
        _check_values(kind, path, mapped, mapping)
        mapped["file"] = index
        frames.append(mapped)
        files.append(
            {
                "path": str(path),
                "sha256": fmt.sha256,
                "rows": len(mapped),
                "format": fmt.to_dict(),
            }
        )
    merged = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(frames) > 1:
        merged["aircraft"] = merged["aircraft"].astype(str).astype("category")
    if kind == "events":
        merged["category"] = merged["category"].astype("category")
    log = RawLog(kind, merged, files, read_as=read_as)
    if len(paths) > 1:
        _drop_cross_file_repeats(log, list(fields))
    return log


def _check_columns(
    kind: str,
    path: Path,
    frame: pd.DataFrame,
    header: tuple[str, ...],
    mapping: dict[str, str],
    fields: tuple[str, ...],
) -> None:
    """Every mapped column is there; else name each missing one, its closest match in the
    file's whole header (accents and case ignored), and that header."""
    missing = [f for f in fields if mapping[f] not in frame.columns]
    if missing:
        wanted = ", ".join(_missing_column(kind, f, mapping[f], header) for f in missing)
        present = ", ".join(shown_value(c) for c in header[:_SHOWN_COLUMNS]) or "none"
        if len(header) > _SHOWN_COLUMNS:
            present += f" and {len(header) - _SHOWN_COLUMNS} more"
        raise DatasetError(
            path,
            f"{_NAMES[kind]} log: missing column(s) {wanted}; columns present: {present}",
            "Map the file's own names in the dataset: section of config.yaml "
            "(see docs/configuration.md).",
        )
    if frame.empty:
        raise DatasetError(path, f"{_NAMES[kind]} log: has a header but no rows")


def _missing_column(kind: str, field: str, name: str, header: tuple[str, ...]) -> str:
    folded = {_folded(c): c for c in reversed(header)}
    close = difflib.get_close_matches(_folded(name), list(folded), n=1, cutoff=0.6)
    hint = f", closest in the file: {shown_value(folded[close[0]])}" if close else ""
    return f"{shown_value(name)} (dataset.{kind}.{field}{hint})"


def _folded(name: str) -> str:
    """A column name without accents, case or spacing, for finding the one meant."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.casefold().split())


def _check_values(kind: str, path: Path, frame: pd.DataFrame, mapping: dict[str, str]) -> None:
    for name in _NUMERIC[kind]:
        values = frame[name].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                path,
                f"column {mapping[name]!r} (dataset.{kind}.{name}), line {i + 2}: the value is "
                "empty or not finite",
            )
        if name in _NON_NEGATIVE[kind] and (values < 0).any():
            i = int(np.flatnonzero(values < 0)[0])
            raise DatasetError(
                path,
                f"column {mapping[name]!r} (dataset.{kind}.{name}), line {i + 2}: "
                f"{values[i]:g} is negative",
            )
    aircraft = frame["aircraft"].cat
    if "" in set(aircraft.categories):
        empty = aircraft.codes.to_numpy() == list(aircraft.categories).index("")
        i = int(np.flatnonzero(empty)[0])
        raise DatasetError(
            path,
            f"column {mapping['aircraft']!r} (dataset.{kind}.aircraft), line {i + 2}: "
            "no aircraft registration",
        )


def _drop_cross_file_repeats(log: RawLog, fields: list[str]) -> None:
    frame = log.frame
    # The k-th copy of a row in a file matches the k-th copy in an earlier file: only the
    # overlap between files is dropped, never a row repeated inside one file.
    occurrence = frame.groupby(["file", *fields], sort=False, dropna=False).cumcount()
    repeated = frame.assign(occurrence=occurrence).duplicated([*fields, "occurrence"])
    log.duplicates_dropped = int(repeated.sum())
    if "hh" in frame:
        log.duplicate_hh = float(frame.loc[repeated, "hh"].sum())
    log.frame = frame.loc[~repeated.to_numpy()].reset_index(drop=True)
