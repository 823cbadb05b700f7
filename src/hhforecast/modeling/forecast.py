"""Forecasts for planned weeks: a plan of utilisation dated by week in, HH with its interval out.

A plan file has a ``date`` per week (its Monday, one row per week, as every weekly file) and the
variant's features, as planners expect to fly them. Each forecast carries its horizon: how many
weeks after the last week the served fit learnt (`trained_through`) the forecast week is (1 = the
week right after). Forecasts far ahead, or with features outside the training range, deserve less
trust.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.modeling.artifacts import trained_through
from hhforecast.modeling.inference import VariantModel
from hhforecast.modeling.predict import load_model

__all__ = [
    "PLAN_COLUMNS",
    "PlanForecast",
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
    """The plan's weeks: ``date`` (a Monday) and the features, checked like any weekly file
    (`reading`: how the user's files are written, config `dataset:`)."""
    # The one place plan and actuals files are read: the shared weekly reader.
    return load_weekly_dataset(path, features, None, reading=reading).frame


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

    def to_json(self) -> dict[str, Any]:
        """Everything a machine needs, JSON-ready."""
        return {
            "model_version": self.version,
            "variant": self.variant,
            "interval_coverage": self.coverage,
            "last_trained_week": self.last_trained_week,
            "weeks": self.rows(),
        }

    def to_csv(self) -> str:
        """The table written by --output: one line per week."""
        table = self.frame[[*PLAN_COLUMNS, *self.features]].assign(
            model_version=self.version, variant=self.variant
        )
        return str(table.to_csv(index=False))


def forecast_weeks(model: VariantModel, plan: pd.DataFrame) -> PlanForecast:
    """Forecast each week of a plan read by `read_plan` (or any frame with date + features)."""
    mondays = [monday_of(pd.Timestamp(d).date()) for d in plan[DATE_COLUMN]]
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
    )


def forecast_plan(
    settings: Settings, plan_path: Path, version: str | None = None, variant: str | None = None
) -> PlanForecast:
    """Forecast every week of a plan file with a version (default: production)."""
    model = load_model(settings, version, variant)
    return forecast_weeks(model, read_plan(plan_path, model.features, settings.dataset))
