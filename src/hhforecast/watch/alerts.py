"""The alert rule of `monitor`: the deployment is judged, not each version from scratch.

For each variant, one deployment series: for every realised week, the forecast production served
for it (of the judged forecasts of that week, the one that ranks first by the log's rule,
prediction_store.first_ranked, whichever version issued it), oldest first. Each week's error is
divided by the standard deviation the forecast's own interval implies (an 80% interval spans
±1.28 of them), giving a z-score on one scale whatever version issued the forecast: a retrain or
a promotion changes who forecasts, not what the series measures, so it resets neither the
reference nor the CUSUM.

A healthy model forecasting beyond its data is rarely unbiased, and a fleet's weekly HH carry rare
heavy items: measured on simulated fleets, z-scores centred anywhere from -0.5 to +0.5 and spread
from 0.7 to 1.6. So each week is judged against a reference: the deployment's earlier weeks,
leaving out the `monitoring.alert_guard_weeks` just before (a recent change is not its own
reference), pooled with what the interval itself says, centre 0 and spread 1, counted as
pseudo-weeks of evidence. With n reference weeks of median m and robust spread s (1.4826 × MAD),
the interval's centre weighing as k = `monitoring.alert_centre_prior_weeks` weeks and its spread
as v = `monitoring.alert_prior_weeks` weeks (the normal model's conjugate update, medians for
means):

    centre   = n m / (n + k)
    spread^2 = (v + n s^2 + (n k / (n + k)) m^2) / (n + v)

The last term widens the spread by how far the weeks' centre sits from the interval's. Few weeks
make a noisy median and MAD, and a CUSUM summing against a wrong reference for months alerts far
more often than one told the truth; the pseudo-weeks damp that noise, and their weight fades as
the reference grows. The prior is fair because the interval is calibrated on out-of-sample fold
errors: a deployment as good as its training said centres near 0 with spread near 1. With k = 0
(the default) the centre is the reference's median; on simulated monthly retrains k = v = 26
alerted fewer healthy months, as few as a rule told the true centre and spread on held-out
fleets, but not clearly enough yet to be the default (docs/drift.md). The standardised error,
clipped to ±`monitoring.alert_clip`, feeds a two-sided CUSUM (slack `monitoring.alert_slack`)
that alerts in the week it passes `monitoring.alert_threshold`, and starts again from zero. No
alert in the deployment's first `monitoring.alert_baseline_weeks` realised weeks, counted once
for the series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import MonitoringConfig
from hhforecast.watch.prediction_store import first_ranked

__all__ = [
    "Deployment",
    "alert_weeks",
    "cusum_alarms",
    "deployments",
    "reference",
    "standardised_errors",
    "z_scores",
]


def z_scores(frame: pd.DataFrame, coverage: float | np.ndarray) -> np.ndarray:
    """(realised − forecast) over the standard deviation the forecast's interval implies;
    `coverage` is the intervals' (one for all rows, or one per row)."""
    edges = np.vectorize(lambda c: NormalDist().inv_cdf(0.5 + c / 2), otypes=[float])(coverage)
    sigma = (frame["hh_upper"].to_numpy(float) - frame["hh_lower"].to_numpy(float)) / (2 * edges)
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


def reference(past: np.ndarray, centre_weeks: float, spread_weeks: float) -> tuple[float, float]:
    """(centre, spread) of reference weeks' z-scores (finite), pooled with the interval's own
    centre 0 and spread 1 counted as `centre_weeks` and `spread_weeks` weeks of evidence (see
    the module's docstring). Without weeks and weight: centre 0, spread 1."""
    n = len(past)
    median = float(np.median(past)) if n else 0.0
    mad = 1.4826 * float(np.median(np.abs(past - median))) if n else 0.0
    centre = n * median / (n + centre_weeks) if n + centre_weeks > 0 else 0.0
    apart = n * centre_weeks / (n + centre_weeks) * median**2 if n + centre_weeks > 0 else 0.0
    variance = (spread_weeks + n * mad**2 + apart) / (n + spread_weeks) if n + spread_weeks else 1.0
    # Weeks that all erred alike (no spread, and no weight on the interval): the interval's.
    return centre, math.sqrt(variance) if variance > 0 else 1.0


def standardised_errors(z: np.ndarray, rule: MonitoringConfig) -> np.ndarray:
    """Each week's z-score against the series' own reference weeks (oldest first), clipped.

    The reference of week t is every earlier finite week but the `alert_guard_weeks` just before
    it, and at least the first `alert_baseline_weeks`, pooled with the interval's centre and
    spread (`reference`).
    """
    out = np.full(len(z), np.nan)
    for t in range(len(z)):
        if not math.isfinite(z[t]):
            continue
        past = z[: max(rule.alert_baseline_weeks, t - rule.alert_guard_weeks)]
        centre, spread = reference(
            past[np.isfinite(past)], rule.alert_centre_prior_weeks, rule.alert_prior_weeks
        )
        out[t] = (z[t] - centre) / spread
    return np.clip(out, -rule.alert_clip, rule.alert_clip)


def alert_weeks(z: np.ndarray, rule: MonitoringConfig) -> list[tuple[int, str, float]]:
    """The alarms of a series' weekly z-scores (oldest first): (index, direction, sum)."""
    baseline = rule.alert_baseline_weeks
    if len(z) <= baseline:
        return []
    u = standardised_errors(z, rule)[baseline:]
    alarms = cusum_alarms(u, rule.alert_slack, rule.alert_threshold)
    return [(i + baseline, direction, total) for i, direction, total in alarms]


@dataclass(frozen=True)
class Deployment:
    """One variant's deployment series and the alerts the rule raised in it."""

    variant: str
    weeks: pd.DataFrame
    """week, version, z: the forecast production served for each realised week, oldest first."""
    alarms: list[tuple[int, str, float]]
    """(row of `weeks`, "high" or "low", CUSUM) of each alert."""
    baseline: int

    @property
    def judged(self) -> bool:
        """Whether the rule judges a week yet: more realised weeks than the baseline."""
        return len(self.weeks) > self.baseline

    def alerts(self) -> list[tuple[str, str, str, str, float]]:
        """(version that served the week, variant, week, direction, CUSUM) of each alert."""
        return [
            (str(self.weeks["version"].iloc[i]), self.variant, str(self.weeks["week"].iloc[i]),
             direction, round(total, 2))
            for i, direction, total in self.alarms
        ]  # fmt: skip

    def served(self) -> list[dict[str, Any]]:
        """The versions that served, in order: each run of consecutive weeks of one version."""
        versions = self.weeks["version"]
        runs = (versions != versions.shift()).cumsum()
        return [
            {
                "version": str(run["version"].iloc[0]),
                "first_week": str(run["week"].iloc[0]),
                "last_week": str(run["week"].iloc[-1]),
                "weeks": len(run),
            }
            for _, run in self.weeks.groupby(runs, sort=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the weeks realised, whether they are judged yet, who served them."""
        return {
            "variant": self.variant,
            "realised_weeks": len(self.weeks),
            "baseline_weeks": self.baseline,
            "judged": self.judged,
            "served": self.served(),
        }


def deployments(
    judged: pd.DataFrame, coverage: Callable[[str, str], float], rule: MonitoringConfig
) -> list[Deployment]:
    """The deployment series of each variant in `judged` (production's judged forecasts of
    realised weeks, with `actual`), judged by the rule; `coverage(version, variant)` is the
    coverage a version's intervals were built for."""
    served = first_ranked(judged, ["variant", "week"]).sort_values("week")
    out = []
    for variant, series in served.groupby("variant", sort=True):
        series = series.reset_index(drop=True)
        covers = {v: coverage(str(v), str(variant)) for v in series["version"].unique()}
        z = z_scores(series, series["version"].map(covers).to_numpy(float))
        weeks = series[["week", "version"]].assign(z=z)
        out.append(Deployment(str(variant), weeks, alert_weeks(z, rule), rule.alert_baseline_weeks))
    return out
