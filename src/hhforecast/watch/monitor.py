"""Forecast vs realised HH: every logged forecast matched to its realised week, errors per week,
month and horizon, interval coverage, and an alert calibrated on the model's own intervals.

A forecast asked many times (the page polled all week, a plan forecast every morning) is judged
once: for each week, version, variant, source and horizon, the latest forecast issued before the
week began, else the latest issued (prediction_store.py); the database keeps that choice and the
count as it writes, so monitoring costs what the weeks cost, not what the polling did. Errors per
horizon use every judged forecast; errors per week or month, and the alert, use for each week
the judged forecast of each version and variant that ranks first by the same rule.

The alert rule (docs/drift.md): each week's error is divided by the standard deviation the
forecast's own interval implies (an 80% interval spans ±1.28 of them), giving a z-score. A
healthy model forecasting beyond its data is rarely unbiased, and a fleet's weekly HH carry rare
heavy items: measured on simulated fleets, a version's z-scores centred anywhere from -0.5 to
+0.5 and spread from 0.7 to 1.6. So each week is judged against the version's own reference: the
median and the robust spread (MAD) of its earlier weeks, leaving out the
`monitoring.alert_guard_weeks` just before (a recent change is not its own reference), the spread
shrunk toward the interval's as if the interval were `monitoring.alert_prior_weeks` more weeks.
The standardised error, clipped to ±`monitoring.alert_clip`, feeds a two-sided CUSUM (slack
`monitoring.alert_slack`) that alerts in the week it passes `monitoring.alert_threshold`, and
starts again from zero. No alert in a version's first `monitoring.alert_baseline_weeks` realised
weeks. A month is flagged when one of its weeks raised an alert.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DatasetConfig, MonitoringConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.registry.store import Registry
from hhforecast.watch.challenge import ChallengeComparison, compare_challenger
from hhforecast.watch.log_store import open_prediction_log
from hhforecast.watch.prediction_store import PredictionLogError, week_of
from hhforecast.watch.sqlite_store import PredictionLog

PERIODS = ("week", "month")
HORIZON_BANDS = ((None, None, "unknown"), (None, 0, "≤ 0"), (1, 1, "1"), (2, 2, "2"),
                 (3, 4, "3-4"), (5, 8, "5-8"), (9, 13, "9-13"), (14, 26, "14-26"),
                 (27, None, "> 26"))  # fmt: skip
"""Horizon bands in weeks ahead: (first, last, label); None is open."""

__all__ = [
    "MonitorResult",
    "PeriodError",
    "alert_weeks",
    "cusum_alarms",
    "monitor_html",
    "run_monitor",
    "standardised_errors",
    "z_scores",
]


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
    """The weeks whose CUSUM passed the threshold: version, variant, week, direction, cusum."""
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


def z_scores(frame: pd.DataFrame, coverage: float) -> np.ndarray:
    """(realised − forecast) over the standard deviation the forecast's interval implies."""
    z_edge = NormalDist().inv_cdf(0.5 + coverage / 2)
    sigma = (frame["hh_upper"].to_numpy(float) - frame["hh_lower"].to_numpy(float)) / (2 * z_edge)
    error = frame["actual"].to_numpy(float) - frame["hh_pred"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma > 0, error / sigma, np.nan)


def cusum_alarms(z: np.ndarray, slack: float, threshold: float) -> list[tuple[int, str, float]]:
    """Two-sided CUSUM over weekly z-scores: (index, "high" or "low", sum) of each alarm.

    Both sums restart from zero after an alarm, so a lasting shift alarms again later.
    """
    high = low = 0.0
    alarms = []
    for i, value in enumerate(z.tolist()):
        if not math.isfinite(value):
            continue
        high = max(0.0, high + value - slack)
        low = max(0.0, low - value - slack)
        if high > threshold or low > threshold:
            alarms.append((i, "high" if high > threshold else "low", max(high, low)))
            high = low = 0.0
    return alarms


def standardised_errors(z: np.ndarray, rule: MonitoringConfig) -> np.ndarray:
    """Each week's z-score against the version's own reference weeks (oldest first), clipped.

    The reference of week t is every earlier finite week but the `alert_guard_weeks` just before
    it, and at least the first `alert_baseline_weeks`. Its median is the version's usual bias;
    its MAD, shrunk toward 1 (the interval's own spread) with `alert_prior_weeks` of weight, is
    the usual spread. Without reference weeks the interval alone judges: centre 0, spread 1.
    """
    out = np.full(len(z), np.nan)
    for t in range(len(z)):
        if not math.isfinite(z[t]):
            continue
        reference = z[: max(rule.alert_baseline_weeks, t - rule.alert_guard_weeks)]
        reference = reference[np.isfinite(reference)]
        n = len(reference)
        centre = float(np.median(reference)) if n else 0.0
        mad = 1.4826 * float(np.median(np.abs(reference - centre))) if n else 1.0
        prior = rule.alert_prior_weeks
        spread = math.sqrt((n * mad**2 + prior) / (n + prior)) if n + prior > 0 else 1.0
        # Weeks that all erred alike (no spread, and no weight on the interval): the interval's.
        out[t] = (z[t] - centre) / (spread if spread > 0 else 1.0)
    return np.clip(out, -rule.alert_clip, rule.alert_clip)


def alert_weeks(z: np.ndarray, rule: MonitoringConfig) -> list[tuple[int, str, float]]:
    """The alarms of one version's weekly z-scores (oldest first): (index, direction, sum)."""
    baseline = rule.alert_baseline_weeks
    if len(z) <= baseline:
        return []
    u = standardised_errors(z, rule)[baseline:]
    alarms = cusum_alarms(u, rule.alert_slack, rule.alert_threshold)
    return [(i + baseline, direction, total) for i, direction, total in alarms]


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
    log = open_prediction_log(settings)
    everything = log.judged()
    actuals = read_actuals(actuals_path, settings.training.target, settings.dataset)
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
    ranked = matched.assign(before=matched["logged_at"].astype(str) < matched["week"])
    ranked = ranked.sort_values(["before", "logged_at", "id"])
    latest = ranked.drop_duplicates(["version", "variant", "week"], keep="last").drop(
        columns=["before"]
    )
    latest = latest.sort_values("week").reset_index(drop=True)
    monitoring, registry = settings.monitoring, Registry(settings)
    alerts = []
    for (version, variant), series in latest.groupby(["version", "variant"], sort=True):
        z = z_scores(series, _coverage(settings, registry, str(version), str(variant)))
        for i, direction, total in alert_weeks(z, monitoring):
            week = str(series["week"].iloc[i])
            alerts.append((str(version), str(variant), week, direction, round(total, 2)))
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
        baseline = monitoring.alert_baseline_weeks
        young = sorted(
            str(v) for v, n in latest.groupby("version")["week"].nunique().items() if n <= baseline
        )
        if young:
            message += (
                f" (not judged yet: {', '.join(young)}, whose first {baseline} realised weeks "
                "give their usual error)"
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
