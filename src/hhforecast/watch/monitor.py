"""Predicted vs realised HH: the logged forecasts matched to realised weeks, error per period.

When a week was predicted several times by the same version and variant, the latest prediction
counts: it is the one the planners saw last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.registry.store import Registry
from hhforecast.watch.prediction_log import PredictionLog, PredictionLogError, week_of

PERIODS = ("week", "month")

__all__ = ["MonitorResult", "PeriodError", "monitor_html", "run_monitor"]


@dataclass(frozen=True)
class PeriodError:
    """The error of one version's predictions over one week or month."""

    period: str
    version: str
    variant: str
    weeks: int
    mae: float
    rmse: float
    mape: float
    in_interval: float
    """Share of the weeks whose realised HH fell inside the logged interval."""
    limit: float | None
    flagged: bool


@dataclass(frozen=True)
class MonitorResult:
    """Errors per period and version, which periods are above their limit, and the joined weeks."""

    by: str
    database: Path
    periods: list[PeriodError]
    joined: pd.DataFrame
    error_factor: float
    message: str

    @property
    def flagged(self) -> bool:
        return any(p.flagged for p in self.periods)

    @property
    def verdict(self) -> str:
        if not self.periods:
            return "insufficient"
        return "above limit" if self.flagged else "ok"

    def to_json(self) -> dict[str, Any]:
        """Everything a machine needs, JSON-ready."""
        return {
            "verdict": self.verdict,
            "message": self.message,
            "by": self.by,
            "database": str(self.database),
            "error_factor": self.error_factor,
            "weeks_matched": len(self.joined),
            "periods": [p.__dict__ for p in self.periods],
        }


def _read_actuals(path: Path, target: str, reading: DatasetConfig) -> pd.DataFrame:
    frame = load_weekly_dataset(path, [target], None, reading=reading).frame
    weeks = [week_of(d.date()) for d in frame[DATE_COLUMN]]
    return pd.DataFrame({"week": weeks, "actual": frame[target].to_numpy(float)})


def _errors(actual: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    error = predicted - actual
    positive = actual > 0
    mape = (
        float(100 * np.mean(np.abs(error[positive]) / actual[positive]))
        if positive.any()
        else math.nan
    )
    return float(np.mean(np.abs(error))), float(np.sqrt(np.mean(error**2))), mape


def _in_interval(group: pd.DataFrame) -> float:
    bounds = group[["hh_lower", "hh_upper"]].to_numpy(float)
    known = np.isfinite(bounds).all(axis=1)
    if not known.any():
        return math.nan
    actual = group["actual"].to_numpy(float)[known]
    return float(np.mean((bounds[known, 0] <= actual) & (actual <= bounds[known, 1])))


def run_monitor(settings: Settings, actuals_path: Path, by: str = "week") -> MonitorResult:
    """Join logged predictions with realised weekly HH; error per period and version."""
    if by not in PERIODS:
        raise PredictionLogError(f"--by {by!r} is not a period; use week or month")
    log = PredictionLog.from_settings(settings)
    try:
        logged = log.frame()
    finally:
        log.close()
    actuals = _read_actuals(actuals_path, settings.training.target, settings.dataset)
    latest = logged.drop_duplicates(["version", "variant", "week"], keep="last")
    joined = latest.merge(actuals, on="week", how="inner").sort_values(["week", "version"])
    joined["period"] = joined["week"] if by == "week" else joined["week"].str[:7]

    registry_rmse = {
        (entry.version, variant): metrics["RMSE"]
        for entry in Registry(settings).versions()
        for variant, metrics in entry.metrics.items()
        if "RMSE" in metrics
    }
    factor = settings.monitoring.error_factor
    periods = []
    for (period, version, variant), group in joined.groupby(
        ["period", "version", "variant"], sort=True
    ):
        mae, rmse, mape = _errors(group["actual"].to_numpy(float), group["hh_pred"].to_numpy(float))
        test_rmse = registry_rmse.get((str(version), str(variant)))
        limit = factor * test_rmse if test_rmse is not None else None
        periods.append(
            PeriodError(
                period=str(period),
                version=str(version),
                variant=str(variant),
                weeks=len(group),
                mae=mae,
                rmse=rmse,
                mape=mape,
                in_interval=_in_interval(group),
                limit=limit,
                flagged=limit is not None and rmse > limit,
            )
        )
    flagged = [p for p in periods if p.flagged]
    if not periods:
        message = (
            f"insufficient data: no logged prediction is for a week of {actuals_path.name} "
            f"({len(logged)} predictions logged, {len(actuals)} realised weeks)"
        )
    elif flagged:
        names = ", ".join(f"{p.period} ({p.version})" for p in flagged)
        message = (
            f"{len(flagged)} of {len(periods)} periods have an RMSE above {factor:g} x the "
            f"version's test RMSE: {names}"
        )
    else:
        message = (
            f"every period is within {factor:g} x its version's test RMSE "
            f"({len(joined)} predicted weeks matched)"
        )
    return MonitorResult(by, log.path, periods, joined.reset_index(drop=True), factor, message)


def monitor_html(result: MonitorResult) -> str:
    """A self-contained HTML page: the error table and predicted vs realised HH over time."""
    from hhforecast.reports.monitor import monitor_report

    return monitor_report(result)
