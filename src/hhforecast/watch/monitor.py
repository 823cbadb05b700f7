"""Forecast vs realised HH: every logged forecast matched to its realised week, errors per week,
month and horizon, interval coverage, and an alert calibrated on the model's own intervals.

A forecast asked many times (the page polled all week, a plan forecast every morning) is judged
once: for each week, version, variant, source and horizon, the latest forecast issued before the
week began, else the latest issued (prediction_store.py); the database keeps that choice and the
count as it writes, so monitoring costs what the weeks cost, not what the polling did. Errors per
horizon use every judged forecast; errors per week or month use for each week the judged
forecast of each version and variant that ranks first by the same rule.

The alert rule (alerts.py, docs/drift.md) judges the deployment: for each variant and week, of
those the one that ranks first whichever version issued it (what production served), each on
the scale of its own interval; a version change resets neither its reference nor its CUSUM. A
month is flagged when one of its weeks raised an alert; the alert names the version that served
the week.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.registry.store import Registry
from hhforecast.watch.alerts import Deployment, deployments
from hhforecast.watch.challenge import ChallengeComparison, compare_challenger
from hhforecast.watch.log_store import open_prediction_log
from hhforecast.watch.prediction_store import PredictionLogError, first_ranked, week_of
from hhforecast.watch.sqlite_store import PredictionLog

PERIODS = ("week", "month")
HORIZON_BANDS = ((None, None, "unknown"), (None, 0, "≤ 0"), (1, 1, "1"), (2, 2, "2"),
                 (3, 4, "3-4"), (5, 8, "5-8"), (9, 13, "9-13"), (14, 26, "14-26"),
                 (27, None, "> 26"))  # fmt: skip
"""Horizon bands in weeks ahead: (first, last, label); None is open."""

__all__ = ["MonitorResult", "PeriodError", "monitor_html", "run_monitor"]


@dataclass(frozen=True)
class PeriodError:
    """The error of one version's forecasts over a week, a month or a horizon band."""

    period: str
    version: str
    variant: str
    weeks: int
    mae: float
    rmse: float
    mape: float
    bias: float
    """Mean of forecast − realised: negative when the model forecasts too little."""
    in_interval: float
    """Share of the weeks whose realised HH fell inside the forecast's interval."""
    flagged: bool = False


@dataclass(frozen=True)
class MonitorResult:
    """Every matched forecast, errors per period and horizon, alerts, and the verdict."""

    by: str
    database: Path | str
    periods: list[PeriodError]
    horizons: list[PeriodError]
    matched: pd.DataFrame
    """One row per judged forecast of a realised week (id, week, source, version, horizon,
    forecast, actual, and `asked`: how many forecasts of its key were asked)."""
    alerts: pd.DataFrame
    """The weeks whose CUSUM passed the threshold: version (the one that served the week),
    variant, week, direction, cusum."""
    logged: int
    """Forecasts asked, all weeks."""
    pending: int
    """Logged forecasts whose week is not in the actuals (not realised yet, or missing)."""
    threshold: float
    message: str
    challenge: ChallengeComparison | None = None
    """Production against the challenger on the realised weeks both forecast, when named."""
    actuals_kept: int = 0
    """Realised weeks kept in the log (those given now and before; the newest value wins)."""
    deployments: list[Deployment] = field(default_factory=list)
    """Per variant, the series the alert rule judges: the forecast production served for
    each realised week, whichever version issued it."""

    @property
    def flagged(self) -> bool:
        return bool(len(self.alerts))

    @property
    def asked(self) -> int:
        """Forecasts asked for the realised weeks (each judged forecast stands for its key's)."""
        if "asked" not in self.matched.columns:
            return len(self.matched)
        return int(self.matched["asked"].sum())

    @property
    def verdict(self) -> str:
        if not len(self.matched):
            return "insufficient"
        return "alert" if self.flagged else "ok"

    def sources(self) -> list[dict[str, Any]]:
        """How many forecasts of realised weeks each source and version asked, and judged."""
        frame = self.matched.assign(
            asked=self.matched["asked"] if "asked" in self.matched.columns else 1
        )
        counts = frame.groupby(["source", "version"])["asked"].agg(["sum", "size"]).reset_index()
        return [
            {
                "source": str(r.source),
                "version": str(r.version),
                "forecasts": int(str(r.sum)),
                "judged": int(str(r.size)),
            }
            for r in counts.itertuples()
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything a machine needs, JSON-ready."""
        matched = self.matched.astype(object).where(self.matched.notna(), None)
        return {
            "verdict": self.verdict,
            "message": self.message,
            "by": self.by,
            "database": str(self.database),
            "forecasts_logged": self.logged,
            "forecasts_matched": self.asked,
            "forecasts_judged": len(self.matched),
            "forecasts_pending": self.pending,
            "alert_threshold": self.threshold,
            "periods": [asdict(p) for p in self.periods],
            "horizons": [asdict(p) for p in self.horizons],
            "sources": self.sources(),
            "alerts": self.alerts.to_dict("records"),
            "deployment": [d.to_dict() for d in self.deployments],
            "forecasts": matched.to_dict("records"),
            "realised_weeks_kept": self.actuals_kept,
            "challenger_comparison": self.challenge.to_dict() if self.challenge else None,
        }


def read_actuals(path: Path, target: str, reading: DatasetConfig | None = None) -> pd.DataFrame:
    """Realised HH per week (its Monday), read like any weekly file."""
    frame = load_weekly_dataset(path, [target], None, reading=reading).frame
    weeks = [week_of(d.date()) for d in frame[DATE_COLUMN]]
    actuals = pd.DataFrame({"week": weeks, "actual": frame[target].to_numpy(float)})
    twice = actuals["week"].duplicated()
    if twice.any():
        raise PredictionLogError(
            f"{path}: two rows fall in the week of {actuals['week'][twice].iloc[0]}; give one "
            "row per week"
        )
    return actuals


def _errors(group: pd.DataFrame) -> dict[str, Any]:
    actual = group["actual"].to_numpy(float)
    error = group["hh_pred"].to_numpy(float) - actual
    positive = actual > 0
    mape = (
        float(100 * np.mean(np.abs(error[positive]) / actual[positive]))
        if positive.any()
        else math.nan
    )
    bounds = group[["hh_lower", "hh_upper"]].to_numpy(float)
    known = np.isfinite(bounds).all(axis=1)
    inside = (
        float(np.mean((bounds[known, 0] <= actual[known]) & (actual[known] <= bounds[known, 1])))
        if known.any()
        else math.nan
    )
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": mape,
        "bias": float(np.mean(error)),
        "in_interval": inside,
    }


def _band(horizon: Any) -> str:
    if horizon is None or pd.isna(horizon):
        return "unknown"
    for first, last, label in HORIZON_BANDS[1:]:
        if (first is None or horizon >= first) and (last is None or horizon <= last):
            return label
    return "unknown"


def _coverage(settings: Settings, registry: Registry, version: str, variant: str) -> float:
    """The coverage the version's intervals were built for (its metadata, else the config)."""
    from hhforecast.modeling.artifacts import read_metadata

    try:
        metadata = read_metadata(registry.version_dir(version))
        return float(metadata["variants"][variant]["interval"]["coverage"])
    except Exception:  # a version removed since, or an older metadata layout
        return settings.training.interval_coverage


def run_monitor(settings: Settings, actuals_path: Path, by: str = "week") -> MonitorResult:
    """Match every logged forecast to its realised week; errors, coverage and alerts."""
    if by not in PERIODS:
        raise PredictionLogError(f"--by {by!r} is not a period; use week or month")
    # The actuals file first: a bad file is reported before anything of the log is opened.
    actuals = read_actuals(actuals_path, settings.training.target, settings.dataset)
    log = open_prediction_log(settings)
    # A missing log is an error, not a new empty one: monitor never creates it, so the realised
    # weeks are kept only once forecasts have been logged (give the file again then).
    everything = log.judged()
    # The realised weeks are kept in the log (the newest value of a week wins), so evidence
    # accumulates: weeks given earlier still count when a later file no longer holds them.
    log.record_actuals(
        list(zip(actuals["week"], actuals["actual"], strict=True)), actuals_path.name
    )
    kept = log.actuals().rename(columns={"hh": "actual"})[["week", "actual"]]
    actuals = kept.astype({"actual": float}) if len(kept) else actuals
    both = everything.merge(actuals, on="week", how="inner", validate="many_to_one")
    # Production's forecasts (the answers given) are judged; the challenger's are compared.
    production_rows = everything["role"] == "production" if "role" in everything else True
    judged = everything[production_rows]
    logged = int(judged["asked"].sum())
    matched = judged.merge(actuals, on="week", how="inner", validate="many_to_one")
    matched["asked"] = matched["asked"].astype(int)
    matched = matched.sort_values(["week", "id"]).reset_index(drop=True)
    matched["error"] = matched["hh_pred"] - matched["actual"]
    # A forecast logged without its interval (an older or hand-made log) has no bounds: NaN,
    # so it counts in the errors but not in the coverage.
    bounds = matched[["hh_lower", "hh_upper"]].astype(float)
    matched[["hh_lower", "hh_upper"]] = bounds
    inside = (bounds["hh_lower"] <= matched["actual"]) & (matched["actual"] <= bounds["hh_upper"])
    matched["inside"] = inside.where(bounds.notna().all(axis=1))
    # For each week, one forecast of each version: the judged one that ranks first by the rule
    # (issued before the week, then the latest), whatever its source.
    latest = first_ranked(matched, ["version", "variant", "week"])
    latest = latest.sort_values("week").reset_index(drop=True)
    monitoring, registry = settings.monitoring, Registry(settings)
    coverage = functools.cache(lambda v, var: _coverage(settings, registry, v, var))
    # The alert rule judges the deployment: each week's forecast as served, whichever version.
    judged_series = deployments(latest, coverage, monitoring)
    alerts = [alert for series in judged_series for alert in series.alerts()]
    alert_frame = pd.DataFrame(alerts, columns=["version", "variant", "week", "direction", "cusum"])
    alerted = {(v, var, w if by == "week" else w[:7]) for v, var, w, _, _ in alerts}

    latest["period"] = latest["week"] if by == "week" else latest["week"].str[:7]
    periods = [
        PeriodError(
            str(p),
            str(v),
            str(var),
            len(g),
            **_errors(g),
            flagged=(str(v), str(var), str(p)) in alerted,
        )
        for (p, v, var), g in latest.groupby(["period", "version", "variant"], sort=True)
    ]
    matched["band"] = [_band(h) for h in matched["horizon"]]
    order = {label: i for i, (_, _, label) in enumerate(HORIZON_BANDS)}
    horizons = sorted(
        (
            PeriodError(str(b), str(v), str(var), len(g), **_errors(g))
            for (b, v, var), g in matched.groupby(["band", "version", "variant"], sort=True)
        ),
        key=lambda p: (p.version, p.variant, order[p.period]),
    )
    matched = matched.drop(columns=["band"])
    pending = logged - int(matched["asked"].sum())
    if not len(matched):
        message = (
            f"insufficient data: no logged forecast is for a week of {actuals_path.name} "
            f"({logged} forecasts logged, {len(actuals)} realised weeks)"
        )
    elif alerts:
        weeks = ", ".join(f"{w} ({v}, {d})" for v, _, w, d, _ in alerts)
        message = (
            f"{len(alerts)} alert(s): errors beyond what the forecasts' own intervals allow, "
            f"first passing the threshold in {weeks}"
        )
    else:
        message = (
            f"no alert: {len(matched)} forecasts judged in {matched['week'].nunique()} realised "
            f"weeks, errors within what the forecasts' intervals allow"
        )
        young = [series for series in judged_series if not series.judged]
        if young:
            n = len(young[0].weeks)
            counts = [f"{n} realised week{'' if n == 1 else 's'} of {young[0].variant}"]
            counts += [f"{len(series.weeks)} of {series.variant}" for series in young[1:]]
            message += (
                f" (not judged yet: {', '.join(counts)}; the deployment's first "
                f"{monitoring.alert_baseline_weeks} give its usual error)"
            )
    snapshot = registry.snapshot()
    serving = snapshot.production() if snapshot.versions else None
    challenge = (
        compare_challenger(both, serving.version, snapshot.challenger, by, _band)
        if serving is not None and snapshot.challenger is not None
        else None
    )
    if challenge is not None:
        message += f". Challenger {challenge.challenger}: {challenge.describe()}"
    return MonitorResult(
        challenge=challenge,
        deployments=judged_series,
        actuals_kept=len(actuals),
        by=by,
        database=log.path if isinstance(log, PredictionLog) else log.location,
        periods=periods,
        horizons=horizons,
        matched=matched,
        alerts=alert_frame,
        logged=logged,
        pending=pending,
        threshold=monitoring.alert_threshold,
        message=message,
    )


def monitor_html(result: MonitorResult) -> str:
    """A self-contained HTML page: errors per period and horizon, alerts, and every matched
    forecast against the realised HH."""
    from hhforecast.reports.monitor import monitor_report

    return monitor_report(result)
