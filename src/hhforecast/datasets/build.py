"""`hhforecast dataset build`: raw utilisation and event logs to the weekly dataset, manifest.

The rules (docs/data.md says them for users):

* an aircraft-day is a distinct (aircraft, date); its hours and cycles are summed over the day's
  rows (one per flight or one per day), its TAH is the largest reported that day;
* weeks run Monday to Sunday and are dated by their Monday; `acft` counts aircraft-days,
  `sum_daily_hours` and `Cycles` sum them, `age_fleet` sums their TAH, `sum_uti_mensal` is the
  flight hours of the whole calendar month of the week's Monday, `HH` the man-hours of the
  week's events outside the excluded categories (0 when there is none);
* the logs cover the days from their first to their last utilisation date. A week not wholly
  inside is dropped (partial week), and so is a week whose Monday's month is not wholly inside
  (its `sum_uti_mensal` would be understated). A week inside with no utilisation at all is
  refused: it cannot be told from a missing export;
* events on aircraft the utilisation never shows, or outside its dates, are dropped and counted
  with their HH.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast._fs import atomic_write_bytes, atomic_write_text, file_sha256
from hhforecast.config import DatasetConfig
from hhforecast.datasets.grid import monday_of
from hhforecast.datasets.raw import normalise_category, read_raw_log
from hhforecast.datasets.reader import TableFormat
from hhforecast.datasets.writer import csv_bytes, csv_style
from hhforecast.errors import DatasetError

__all__ = [
    "WEEKLY_COLUMNS",
    "DatasetBuild",
    "aggregate_weeks",
    "aircraft_days",
    "build_dataset",
    "describe_output",
    "manifest_path",
    "read_manifest",
    "weekly_csv_frame",
    "write_dataset",
]

WEEKLY_COLUMNS = ["date", "acft", "sum_daily_hours", "age_fleet", "Cycles", "sum_uti_mensal", "HH"]
MANIFEST_SUFFIX = ".manifest.json"


@dataclass
class DatasetBuild:
    """The weekly dataset built from raw logs, and everything said about how."""

    weekly: pd.DataFrame
    """One row per kept week, in the columns and rounding of the weekly CSV."""
    excluded_hh: pd.DataFrame
    """HH per kept week of each excluded category (for the report)."""
    manifest: dict[str, Any] = field(default_factory=dict)
    read_as: TableFormat | None = None
    """How the (first) utilisation log was written: the weekly CSV follows it by default."""


def manifest_path(dataset: Path) -> Path:
    """Where the manifest of a built dataset lives: beside it, `<name>.manifest.json`."""
    return dataset.with_name(dataset.stem + MANIFEST_SUFFIX)


def read_manifest(dataset: Path) -> dict[str, Any] | None:
    """The manifest of `dataset` when there is one that describes these exact bytes."""
    import json

    path = manifest_path(dataset)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    output = manifest.get("output", {}) if isinstance(manifest, dict) else {}
    if output.get("sha256") != file_sha256(dataset):
        return None  # the dataset was edited or rebuilt without it: it no longer describes it
    return manifest


def aggregate_weeks(
    days: pd.DataFrame, events: pd.DataFrame, excluded: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Weekly rows (every week the aircraft-days touch) and the excluded HH per week.

    `days` has one row per aircraft-day (date, aircraft, hours, cycles, tah); `events` one row
    per item (date, category, hh). Values are not rounded here."""
    week = monday_of(days["date"])
    monthly_hours = days.groupby(days["date"].dt.to_period("M"))["hours"].sum()
    weekly = days.groupby(week).agg(
        acft=("aircraft", "size"),
        sum_daily_hours=("hours", "sum"),
        age_fleet=("tah", "sum"),
        Cycles=("cycles", "sum"),
    )
    weekly.index.name = "date"
    months = pd.DatetimeIndex(weekly.index).to_period("M")
    weekly["sum_uti_mensal"] = monthly_hours.reindex(months).to_numpy()
    category = normalise_category(events["category"])
    is_excluded = category.isin(normalise_category(pd.Series(excluded, dtype=object)).tolist())
    counted = events[~is_excluded.to_numpy()]
    weekly["HH"] = (
        counted.groupby(monday_of(counted["date"]))["hh"].sum().reindex(weekly.index).fillna(0.0)
    )
    dropped = events[is_excluded.to_numpy()]
    excluded_hh = (
        dropped.groupby([monday_of(dropped["date"]), category[is_excluded.to_numpy()]])["hh"]
        .sum()
        .unstack()
        .reindex(weekly.index)
        .fillna(0.0)
    )
    return weekly, excluded_hh


def weekly_csv_frame(weekly: pd.DataFrame) -> pd.DataFrame:
    """The weekly rows as the CSV holds them: ISO Monday dates, one decimal, whole cycles."""
    out = weekly.reset_index()
    out["date"] = pd.DatetimeIndex(out["date"]).strftime("%Y-%m-%d")
    for column in ("sum_daily_hours", "age_fleet", "sum_uti_mensal", "HH"):
        out[column] = out[column].round(1)
    out["Cycles"] = out["Cycles"].round().astype(int)
    out["acft"] = out["acft"].astype(int)
    return out[WEEKLY_COLUMNS]


def aircraft_days(utilisation: pd.DataFrame) -> pd.DataFrame:
    """One row per (date, aircraft), in date then registration order: hours and cycles summed,
    the day's largest TAH."""
    aircraft = utilisation["aircraft"].astype("category")
    registrations = aircraft.cat.categories
    codes = aircraft.cat.codes.to_numpy().astype(np.int64)
    days = utilisation["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    # One integer key per aircraft-day groups faster than the (date, aircraft) pair; the
    # categories are in name order, so the key sorts by date, then registration.
    key = days * len(registrations) + codes
    grouped = (
        pd.DataFrame(
            {
                "hours": utilisation["hours"],
                "cycles": utilisation["cycles"],
                "tah": utilisation["tah"],
            }
        )
        .set_axis(key)
        .groupby(level=0, sort=True)
        .agg(hours=("hours", "sum"), cycles=("cycles", "sum"), tah=("tah", "max"))
    )
    keys = grouped.index.to_numpy()
    return pd.DataFrame(
        {
            "date": (keys // len(registrations)).astype("datetime64[D]").astype("datetime64[ns]"),
            "aircraft": pd.Categorical.from_codes(keys % len(registrations), registrations),
            "hours": grouped["hours"].to_numpy(),
            "cycles": grouped["cycles"].to_numpy(),
            "tah": grouped["tah"].to_numpy(),
        }
    )


def build_dataset(
    utilization: list[Path], events: list[Path], config: DatasetConfig
) -> DatasetBuild:
    """Read the raw logs and build the weekly dataset and its manifest (nothing is written)."""
    util_log = read_raw_log("utilization", utilization, config)
    event_log = read_raw_log("events", events, config)
    days = aircraft_days(util_log.frame)
    first, last = days["date"].min(), days["date"].max()

    events_frame = event_log.frame
    known = events_frame["aircraft"].isin(set(days["aircraft"].unique()))
    inside = (events_frame["date"] >= first) & (events_frame["date"] <= last)
    unknown_aircraft = events_frame[~known]
    outside = events_frame[known & ~inside]
    usable = events_frame[known & inside]

    weekly, excluded_hh = aggregate_weeks(days, usable, config.excluded_categories)
    all_weeks = pd.date_range(monday_of(pd.Series([first]))[0], last, freq="7D")
    _refuse_empty_weeks(all_weeks, weekly.index, first, last, utilization)
    mondays = pd.DatetimeIndex(weekly.index)
    partial = (mondays < first) | (mondays + pd.Timedelta(days=6) > last)
    month_start = mondays.to_period("M").start_time
    month_end = mondays.to_period("M").end_time.normalize()
    month_short = ~partial & ((month_start < first) | (month_end > last))
    keep = ~(partial | month_short)
    if not keep.any():
        raise DatasetError(
            "utilisation",
            f"the logs cover {first:%Y-%m-%d} to {last:%Y-%m-%d}: no whole week whose month is "
            "wholly covered",
            "Build from logs that cover at least one whole calendar month.",
        )
    kept = mondays[keep]
    day_week = monday_of(days["date"])
    event_week = monday_of(usable["date"])
    dropped_days = ~day_week.isin(kept)
    dropped_events = ~event_week.isin(kept)
    excluded_mask = normalise_category(usable["category"]).isin(
        normalise_category(pd.Series(config.excluded_categories)).tolist()
    )
    counted_kept = usable[~dropped_events.to_numpy() & ~excluded_mask.to_numpy()]

    build = DatasetBuild(
        weekly=weekly_csv_frame(weekly[keep]),
        excluded_hh=excluded_hh[keep],
        read_as=util_log.read_as,
    )
    build.manifest = {
        "product": {"name": "hhforecast", "version": _product_version()},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {"utilization": util_log.files, "events": event_log.files},
        "mapping": {
            "utilization": config.utilization.model_dump(),
            "events": config.events.model_dump(),
            "dayfirst": config.dayfirst,
            "separator": config.separator,
        },
        "excluded_categories": list(config.excluded_categories),
        "coverage": {"first_day": f"{first:%Y-%m-%d}", "last_day": f"{last:%Y-%m-%d}"},
        "weeks": {
            "kept": int(keep.sum()),
            "first": f"{kept[0]:%Y-%m-%d}",
            "last": f"{kept[-1]:%Y-%m-%d}",
            "dropped_partial": [f"{d:%Y-%m-%d}" for d in mondays[partial]],
            "dropped_month_not_covered": [f"{d:%Y-%m-%d}" for d in mondays[month_short]],
        },
        "utilization": {
            "rows_read": util_log.rows_read,
            "duplicates_dropped": util_log.duplicates_dropped,
            "aircraft_days": len(days),
            "aircraft": int(days["aircraft"].nunique()),
            "aircraft_days_in_dropped_weeks": int(dropped_days.sum()),
        },
        "events": {
            "rows_read": event_log.rows_read,
            "duplicates_dropped": {
                "rows": event_log.duplicates_dropped,
                "HH": round(event_log.duplicate_hh, 3),
            },
            "excluded": _hh_by_category(
                usable[excluded_mask.to_numpy() & ~dropped_events.to_numpy()]
            ),
            "unknown_aircraft": _rows_hh(unknown_aircraft),
            "outside_utilization_dates": _rows_hh(outside),
            "in_dropped_weeks": _rows_hh(usable[dropped_events.to_numpy()]),
            "counted": _rows_hh(counted_kept),
        },
    }
    return build


def _refuse_empty_weeks(
    all_weeks: pd.DatetimeIndex,
    present: pd.Index,
    first: pd.Timestamp,
    last: pd.Timestamp,
    utilization: list[Path],
) -> None:
    empty = all_weeks.difference(pd.DatetimeIndex(present))
    if len(empty):
        shown = ", ".join(f"{d:%Y-%m-%d}" for d in empty[:6])
        more = f" and {len(empty) - 6} more" if len(empty) > 6 else ""
        raise DatasetError(
            ", ".join(str(p) for p in utilization),
            f"no utilisation at all in the week(s) of {shown}{more}, inside the logs' "
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}; an export may be missing",
            "Add the file that covers them (repeat --utilization), or build from logs that "
            "cover one unbroken period.",
        )


def _rows_hh(frame: pd.DataFrame) -> dict[str, float | int]:
    return {"rows": len(frame), "HH": round(float(frame["hh"].sum()), 3)}


def _hh_by_category(frame: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    out = {}
    for name, group in frame.groupby(normalise_category(frame["category"]), sort=True):
        out[str(name)] = _rows_hh(group)
    return out


def _product_version() -> str:
    try:
        return importlib_metadata.version("hhforecast")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def describe_output(build: DatasetBuild, out: Path, style: str = "input") -> bytes:
    """The weekly CSV's bytes in `style` (datasets/writer.py), its name and SHA-256 recorded
    in the manifest (nothing written)."""
    data = csv_bytes(build.weekly, csv_style(style, build.read_as))
    build.manifest["output"] = {
        "path": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "weeks": len(build.weekly),
        "columns": WEEKLY_COLUMNS,
    }
    return data


def write_dataset(build: DatasetBuild, out: Path, style: str = "input") -> Path:
    """Write the weekly CSV, then its manifest beside it (each whole or not at all)."""
    import json

    data = describe_output(build, out, style)
    atomic_write_bytes(out, data)
    path = manifest_path(out)
    atomic_write_text(path, json.dumps(build.manifest, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
