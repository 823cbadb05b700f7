"""Dates as planners' files write them: ISO or day-first, never month-first, 1900 to 2200.

Dates are ISO (`YYYY-MM-DD`, a time of day allowed) or day-first (`dd/mm/yyyy`, `dd.mm.yyyy`,
`dd-mm-yyyy`). Day-first is used when asked (`dataset.dayfirst`, `--dayfirst`), or when the
file's own dates can only be read that way (a day above 12). Dates outside 1900 to 2200 are
typing mistakes, and past 2262 they would wrap around in pandas' nanosecond timestamps.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import shown_value
from hhforecast.errors import DatasetError

__all__ = ["DATES_HINT", "MAX_YEAR", "MIN_YEAR", "parse_dates", "written_dayfirst"]

MIN_YEAR, MAX_YEAR = 1900, 2200
DATES_HINT = (
    "Write dates as YYYY-MM-DD, or set dataset.dayfirst: true in config.yaml (or pass "
    "--dayfirst) for dd/mm/yyyy."
)

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$")
_DMY = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def written_dayfirst(values: pd.Series) -> bool:
    """Whether a date column (as read, before parsing) is written dd/mm/yyyy."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return False
    first = values.dropna().head(1)
    return bool(len(first) and _DMY.match(str(first.iloc[0]).strip()))


def parse_dates(values: pd.Series, path: Path | str, column: str, dayfirst: bool) -> pd.Series:
    """Dates (at midnight) from ISO or day-first text, or from spreadsheet date cells.

    Without `dayfirst`, non-ISO dates are read day-first only when one of them has a day above
    12; when every one could be day- or month-first the file is refused; never month-first."""
    if pd.api.types.is_datetime64_any_dtype(values):
        _refuse_years(values.dt.year.to_numpy(), path, column, values)
        return values.dt.normalize()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        i = int(np.flatnonzero(codes < 0)[0])
        raise DatasetError(path, f"column {column!r}, line {i + 2}: the date is empty")
    iso = _iso_dates(uniques)
    if iso is not None:
        return pd.Series(iso[codes], index=values.index, name=values.name)
    parsed = [_one_date(u) for u in uniques]
    bad = [k for k, p in enumerate(parsed) if p is None]
    if bad:
        i = int(np.flatnonzero(codes == bad[0])[0])
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is not a date",
            DATES_HINT,
        )
    kinds = {p[0] for p in parsed if p is not None}
    if "dmy" in kinds:
        first_parts = np.array([p[1][0] for p in parsed if p is not None and p[0] == "dmy"])
        second_parts = np.array([p[1][1] for p in parsed if p is not None and p[0] == "dmy"])
        if not dayfirst:
            _check_order(path, column, values, codes, parsed, first_parts, second_parts)
    stamps = np.array(
        [_stamp(p, path, column, values, codes, k) for k, p in enumerate(parsed)],
        dtype="datetime64[ns]",
    )
    return pd.Series(stamps[codes], index=values.index, name=values.name)


def _iso_dates(uniques: Any) -> np.ndarray | None:
    """All the distinct values as YYYY-MM-DD dates in one vectorised parse, else None."""
    text = pd.Series(uniques)
    if not pd.api.types.is_string_dtype(text) or not text.str.len().eq(10).all():
        return None
    try:
        parsed = pd.to_datetime(text, format="%Y-%m-%d")
    except (ValueError, TypeError):
        return None
    if ((parsed.dt.year < MIN_YEAR) | (parsed.dt.year > MAX_YEAR)).any():
        return None  # refused, with its line, by the one-by-one parse
    return parsed.to_numpy(dtype="datetime64[ns]")


def _one_date(value: object) -> tuple[str, tuple[int, int, int]] | None:
    if isinstance(value, datetime.date | np.datetime64):
        stamp = pd.Timestamp(value)  # a spreadsheet date cell
        return ("iso", (stamp.year, stamp.month, stamp.day))
    text = str(value).strip()
    iso = _ISO.match(text)
    if iso:
        return ("iso", (int(iso[1]), int(iso[2]), int(iso[3])))
    dmy = _DMY.match(text)
    if dmy:
        return ("dmy", (int(dmy[1]), int(dmy[3]), int(dmy[4])))
    return None


def _check_order(
    path: Path | str,
    column: str,
    values: pd.Series,
    codes: np.ndarray,
    parsed: list[tuple[str, tuple[int, int, int]] | None],
    first: np.ndarray,
    second: np.ndarray,
) -> None:
    if (first > 12).any() and (second <= 12).all():
        return  # only day-first fits these dates
    k = next(k for k, p in enumerate(parsed) if p is not None and p[0] == "dmy")
    i = int(np.flatnonzero(codes == k)[0])
    if (second > 12).any():
        j = int(np.argmax(second > 12))
        shown = [p for p in parsed if p is not None and p[0] == "dmy"][j]
        raise DatasetError(
            path,
            f"column {column!r}: dates such as {shown[1][0]:02d}/{shown[1][1]:02d}/"
            f"{shown[1][2]} are month-first, which hhforecast never reads",
            "Save the dates as YYYY-MM-DD (or dd/mm/yyyy with dataset.dayfirst: true).",
        )
    raise DatasetError(
        path,
        f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} could be day-first or "
        "month-first, and no date in the file tells which",
        "If the dates are dd/mm/yyyy, set dataset.dayfirst: true in config.yaml (or pass "
        "--dayfirst); otherwise save them as YYYY-MM-DD.",
    )


def _stamp(
    parsed: tuple[str, tuple[int, int, int]] | None,
    path: Path | str,
    column: str,
    values: pd.Series,
    codes: np.ndarray,
    k: int,
) -> np.datetime64:
    assert parsed is not None
    kind, (a, b, c) = parsed
    year, month, day = (a, b, c) if kind == "iso" else (c, b, a)
    if not MIN_YEAR <= year <= MAX_YEAR:
        _refuse_years(np.where(codes == k, year, MIN_YEAR), path, column, values)
    try:
        return np.datetime64(pd.Timestamp(year=year, month=month, day=day).to_datetime64())
    except ValueError:
        i = int(np.flatnonzero(codes == k)[0])
        order = "YYYY-MM-DD" if kind == "iso" else "dd/mm/yyyy"
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is not a valid "
            f"{order} date",
            DATES_HINT,
        ) from None


def _refuse_years(years: np.ndarray, path: Path | str, column: str, values: pd.Series) -> None:
    """Dates outside MIN_YEAR..MAX_YEAR are typing mistakes, and past 2262 they would wrap
    around in pandas' nanosecond timestamps: refused with the first such line."""
    outside = (years < MIN_YEAR) | (years > MAX_YEAR)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is outside the "
            f"years {MIN_YEAR} to {MAX_YEAR} that hhforecast reads",
            "Check the year.",
        )
