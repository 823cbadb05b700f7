"""The weekly grid: every weekly dataset has one row per week, dated by its Monday, 7 days apart.

Baselines, backtest folds and the drift season all count weeks by date; a Sunday date, a
duplicate or a missing week would make "the week before" or "a year before" silently wrong,
so such a file is refused with the dates to fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast.errors import DatasetError

__all__ = ["GRID_HINT", "PLAN_HINT", "check_weekly_grid", "monday_of", "week_before"]

GRID_HINT = (
    "Weekly datasets have one row per week, dated by its Monday, 7 days apart "
    "(hhforecast dataset build makes one from raw logs; see docs/data.md)."
)
PLAN_HINT = (
    "A plan has one row per week, weeks in date order with none missing; any day names the "
    "week (Monday to Sunday) that holds it, read as that week's Monday (see docs/commands.md)."
)


def monday_of(dates: pd.Series) -> pd.Series:
    """The Monday starting each date's week (weeks run Monday to Sunday)."""
    days = dates.to_numpy().astype("datetime64[D]").astype(np.int64)
    # Day 0 (1970-01-01) was a Thursday: (days + 3) % 7 is the weekday, Monday = 0.
    mondays = (days - (days + 3) % 7).astype("datetime64[D]").astype("datetime64[ns]")
    return pd.Series(mondays, index=dates.index, name=dates.name)


def check_weekly_grid(
    dates: pd.Series, source: Path | str, column: str = "date", hint: str = GRID_HINT
) -> None:
    """Refuse a date that is not a Monday, a repeated or backward week, or a missing week;
    `hint`, the rule of the kind of file it is, ends each message."""
    days = dates.dt.dayofweek.to_numpy()
    not_monday = np.flatnonzero(days != 0)
    if len(not_monday):
        i = int(not_monday[0])
        day = dates.iloc[i]
        count = len(not_monday)
        more = f" ({count} dates are not Mondays)" if count > 1 else ""
        raise DatasetError(
            source,
            f"column {column!r}, line {i + 2}: {day:%Y-%m-%d} is a {day:%A}, not a Monday{more}; "
            f"date each week by its Monday ({day - pd.Timedelta(days=int(days[i])):%Y-%m-%d} "
            "for this one)",
            hint,
        )
    steps = dates.diff().dt.days.to_numpy()[1:]
    repeated = np.flatnonzero(steps == 0)
    if len(repeated):
        i = int(repeated[0]) + 1
        raise DatasetError(
            source,
            f"column {column!r}, line {i + 2}: week {dates.iloc[i]:%Y-%m-%d} appears twice",
            hint,
        )
    backwards = np.flatnonzero(steps < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise DatasetError(
            source,
            f"column {column!r}, line {i + 2}: {dates.iloc[i]:%Y-%m-%d} comes before the line "
            "above it; weeks must be in increasing date order",
            hint,
        )
    gaps = np.flatnonzero(steps > 7)
    if len(gaps):
        i = int(gaps[0]) + 1
        before, after = dates.iloc[i - 1], dates.iloc[i]
        missing = int(steps[i - 1] // 7) - 1
        first = before + pd.Timedelta(days=7)
        last = after - pd.Timedelta(days=7)
        span = f"{first:%Y-%m-%d}" if missing == 1 else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
        others = f"; {len(gaps) - 1} more gap(s) after it" if len(gaps) > 1 else ""
        raise DatasetError(
            source,
            f"column {column!r}: {missing} week(s) missing between line {i + 1} "
            f"({before:%Y-%m-%d}) and line {i + 2} ({after:%Y-%m-%d}): {span}{others}. "
            "Add the missing weeks, or keep one unbroken stretch of weeks",
            hint,
        )


def week_before(dates: np.ndarray, rows: np.ndarray, weeks: int) -> np.ndarray:
    """For each row, the row dated exactly `weeks` weeks earlier, or -1 when there is none."""
    stamps = np.asarray(dates, dtype="datetime64[D]")
    wanted = stamps[rows] - np.timedelta64(7 * weeks, "D")
    found = np.searchsorted(stamps, wanted)
    found = np.clip(found, 0, len(stamps) - 1)
    return np.where(stamps[found] == wanted, found, -1)
