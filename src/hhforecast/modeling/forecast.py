"""Forecasts for planned weeks: a plan of utilisation dated by week in, HH with its interval out.

A plan file has a ``date`` per week (any day of it names the week, Monday to Sunday, as the API's
``week`` does; one row per week) and the variant's features, as planners expect to fly them.
Each forecast carries its horizon: how many weeks after the last week the served fit learnt
(`trained_through`) the forecast week is (1 = the week right after). Forecasts far ahead, or with
features outside the training range, deserve less trust.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, Settings
from hhforecast.datasets.reader import TableFormat
from hhforecast.datasets.weekly import DATE_COLUMN, WeeklyDataset, load_weekly_dataset
from hhforecast.datasets.writer import csv_style, whole_numbers_as_integers, write_csv
from hhforecast.errors import DatasetError, PlanError
from hhforecast.modeling.artifacts import trained_through
from hhforecast.modeling.inference import VariantModel
from hhforecast.modeling.predict import load_model

log = logging.getLogger("hhforecast.forecast")

__all__ = [
    "PLAN_COLUMNS",
    "OutOfRangeWeeks",
    "PlanForecast",
    "challenger_plan",
    "forecast_plan",
    "forecast_weeks",
    "last_trained_week",
    "monday_of",
    "read_plan",
    "read_plan_bytes",
]

PLAN_COLUMNS = ("week", "HH_pred", "HH_lower", "HH_upper", "horizon", "out_of_range")


def monday_of(day: date) -> date:
    """The Monday of the week holding `day`."""
    return day - timedelta(days=day.weekday())


def last_trained_week(model: VariantModel) -> str | None:
    """The Monday of the last week the served fit learnt, when its metadata says."""
    end = trained_through(model.metadata)
    return monday_of(date.fromisoformat(end)).isoformat() if end else None


def read_plan(
    path: Path, features: list[str], reading: DatasetConfig | None = None
) -> pd.DataFrame:
    """The plan's weeks: ``date`` (any day of each week, as written) and the features, checked
    like any weekly file on the weeks' Mondays (`reading`: config `dataset:`)."""
    return _plan_file(path, features, reading).frame


def _plan_file(path: Path, features: list[str], reading: DatasetConfig | None) -> WeeklyDataset:
    # Read by the shared weekly reader, as every weekly file is; with how it was written.
    try:
        return load_weekly_dataset(path, features, None, reading=reading, plan=True)
    except DatasetError as exc:  # a plan is not a dataset to the planner who wrote it
        raise PlanError(exc.source, exc.problem, exc.hint) from None


def _upload_suffix(name: str) -> str:
    """The extension of an uploaded file's name (the reader goes by it); never a path."""
    suffix = Path(name).suffix.lower()
    plain = suffix.isascii() and 2 <= len(suffix) <= 6 and suffix[1:].isalnum()
    return suffix if plain else ".csv"


def read_plan_bytes(
    content: bytes,
    features: list[str],
    name: str = "plan.csv",
    reading: DatasetConfig | None = None,
) -> pd.DataFrame:
    """`read_plan` for an uploaded file (the web page), read through the same reader."""
    with tempfile.TemporaryDirectory(prefix="hhforecast-plan-") as folder:
        path = Path(folder) / ("plan" + _upload_suffix(name))
        path.write_bytes(content)
        return read_plan(path, features, reading)


@dataclass(frozen=True)
class PlanForecast:
    """The forecast of every planned week, by one version and variant."""

    version: str
    variant: str
    features: list[str]
    coverage: float
    last_trained_week: str | None
    frame: pd.DataFrame
    """One row per week: PLAN_COLUMNS plus the features."""
    read_as: TableFormat | None = None
    """How the plan file was written: `write_csv` follows it by default."""
    notes: tuple[str, ...] = ()
    """What a planner should know to read the forecasts (dates moved to their Monday, why the
    nearest week is several weeks ahead), one sentence each."""

    def rows(self) -> list[dict[str, Any]]:
        """Each week as a JSON-ready dict."""
        out = []
        for row in self.frame.to_dict("records"):
            horizon = row["horizon"]
            out.append(
                {
                    "week": row["week"],
                    "HH": row["HH_pred"],
                    "HH_lower": row["HH_lower"],
                    "HH_upper": row["HH_upper"],
                    "horizon": None if pd.isna(horizon) else int(horizon),
                    "out_of_range": [n for n in str(row["out_of_range"]).split(";") if n],
                    "model_version": self.version,
                    "variant": self.variant,
                    "inputs": {f: float(row[f]) for f in self.features},
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything a machine needs, JSON-ready."""
        return {
            "model_version": self.version,
            "variant": self.variant,
            "interval_coverage": self.coverage,
            "last_trained_week": self.last_trained_week,
            "weeks": self.rows(),
            "notes": list(self.notes),
        }

    def table(self) -> pd.DataFrame:
        """The table written by --output: one line per week."""
        table = self.frame[[*PLAN_COLUMNS, *self.features]].assign(
            model_version=self.version, variant=self.variant
        )
        return table.assign(week=pd.to_datetime(table["week"]))

    def write_csv(self, path: Path, style: str = "input") -> None:
        """Write `table()` to `path` in the plan's CSV style, or the one `style` names; inputs
        that were whole numbers stay whole (156), forecasts keep their decimals."""
        table = whole_numbers_as_integers(self.table(), self.features)
        write_csv(table, path, csv_style(style, self.read_as))

    def out_of_range_weeks(self) -> OutOfRangeWeeks | None:
        """The weeks whose inputs lie outside the training range (None when there are none):
        a plan holding any is logged only once the planner confirms it, on every surface."""
        weeks = tuple(
            (week["week"], tuple(week["out_of_range"]))
            for week in self.rows()
            if week["out_of_range"]
        )
        return OutOfRangeWeeks(self.version, weeks, len(self.frame)) if weeks else None


@dataclass(frozen=True)
class OutOfRangeWeeks:
    """Why a plan was not logged: its weeks with inputs outside the version's training range."""

    version: str
    weeks: tuple[tuple[str, tuple[str, ...]], ...]
    """Each such week (its Monday) and the inputs outside the range."""
    plan_weeks: int

    def reason(self) -> str:
        """One sentence: how many weeks, which, and which inputs."""
        shown = "; ".join(f"{week}: {', '.join(names)}" for week, names in self.weeks[:6])
        more = f"; and {len(self.weeks) - 6} more" if len(self.weeks) > 6 else ""
        return (
            f"{len(self.weeks)} of the {self.plan_weeks} weeks "
            f"{'has' if len(self.weeks) == 1 else 'have'} inputs outside the range "
            f"version {self.version} was trained on ({shown}{more}), so no week of the plan was "
            "logged"
        )

    def to_dict(self, confirm: str) -> dict[str, Any]:
        """JSON-ready: the reason, every such week with its inputs, and how to confirm."""
        return {
            "reason": self.reason(),
            "weeks": [{"week": week, "out_of_range": list(names)} for week, names in self.weeks],
            "confirm": confirm,
        }


def forecast_weeks(model: VariantModel, plan: pd.DataFrame) -> PlanForecast:
    """Forecast each week of a plan read by `read_plan` (or any frame with date + features)."""
    given = [pd.Timestamp(d).date() for d in plan[DATE_COLUMN]]
    mondays = [monday_of(day) for day in given]
    x = plan[model.features].to_numpy(dtype=np.float64)
    predictions = model.predict(x)
    lower, upper = model.interval(predictions)
    last = last_trained_week(model)
    horizons: list[int | None] = [
        (monday - date.fromisoformat(last)).days // 7 if last else None for monday in mondays
    ]
    frame = pd.DataFrame(
        {
            "week": [m.isoformat() for m in mondays],
            "HH_pred": np.round(predictions, 3),
            "HH_lower": np.round(lower, 3),
            "HH_upper": np.round(upper, 3),
            "horizon": pd.array(horizons, dtype="Int64"),
            "out_of_range": [";".join(names) for names in model.out_of_range(x)],
        }
    )
    for feature in model.features:
        frame[feature] = x[:, model.features.index(feature)]
    return PlanForecast(
        version=model.version,
        variant=model.variant,
        features=list(model.features),
        coverage=float(model.coverage),
        last_trained_week=last,
        frame=frame,
        notes=tuple(
            note
            for note in (_moved_note(given, mondays), _ahead_note(model, last, horizons))
            if note
        ),
    )


def _moved_note(given: list[date], mondays: list[date]) -> str | None:
    moved = [(day, monday) for day, monday in zip(given, mondays, strict=True) if day != monday]
    if not moved:
        return None
    day, monday = moved[0]
    return (
        f"{len(moved)} plan date(s) are not Mondays: a date names the week (Monday to Sunday) "
        f"that holds it, so {day.isoformat()} is the week of Monday {monday.isoformat()}."
    )


def _ahead_note(model: VariantModel, last: str | None, horizons: list[int | None]) -> str | None:
    """Why the nearest planned week is more than one week ahead of the version's data."""
    ahead = [h for h in horizons if h is not None and h > 0]
    if last is None or not ahead or min(ahead) <= 1:
        return None
    dataset = model.metadata.get("dataset")
    manifest = dataset.get("manifest") if isinstance(dataset, dict) else None
    weeks = manifest.get("weeks") if isinstance(manifest, dict) else None
    dropped = weeks.get("dropped_month_not_covered") if isinstance(weeks, dict) else None
    later = sorted(str(d)[:10] for d in dropped or [] if str(d)[:10] > last)
    if later:
        why = (
            f"`dataset build` left out the {len(later)} week(s) from {later[0]} because their "
            "month is not wholly in the logs (sum_uti_mensal is a whole month's flight hours)"
        )
    else:
        why = (
            "if its dataset was built from logs exported mid-month, `dataset build` left out "
            "that month's weeks, as sum_uti_mensal needs the whole month (docs/data.md)"
        )
    return f"ahead counts from {last}, the last week of version {model.version}'s data; {why}."


def forecast_plan(
    settings: Settings, plan_path: Path, version: str | None = None, variant: str | None = None
) -> PlanForecast:
    """Forecast every week of a plan file with a version (default: production)."""
    model = load_model(settings, version, variant)
    plan = _plan_file(plan_path, model.features, settings.dataset)
    return replace(forecast_weeks(model, plan.frame), read_as=plan.read_as)


def challenger_plan(settings: Settings, plan_path: Path) -> PlanForecast | None:
    """The challenger's forecast of the same plan (logged beside production's), or None when
    no challenger is named. A challenger that cannot forecast it is said, never fatal."""
    from hhforecast.errors import HHForecastError
    from hhforecast.registry.store import Registry

    name = Registry(settings).read_document().challenger
    if name is None:
        return None
    try:
        return forecast_plan(settings, plan_path, name)
    except HHForecastError as exc:
        log.warning("the challenger %s did not forecast the plan: %s", name, exc)
        return None
