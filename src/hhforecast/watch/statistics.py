"""The drift tests: residuals of recent weeks against residuals of the training weeks.

For each signal: mean and std shift, share outside the training range, two-sample KS, a mean
z-test, normalised Wasserstein distance and PSI. Weekly residuals are autocorrelated (C-checks
last weeks, monthly utilisation is one number for four weeks), so the p-values use effective
sample sizes ``n (1 - rho) / (1 + rho)``, rho being the lag-1 autocorrelation of the training
residuals. A feature drifts when the KS p-value is below ``drift.ks_pvalue`` or the mean test's
below ``drift.mean_pvalue``, and the normalised Wasserstein distance reaches ``drift.wasserstein``;
the dataset drifts when at least ``drift.share_of_features`` of the input features drift.
The thresholds and their measured false-alarm rate are in docs/drift.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DriftConfig
from hhforecast.datasets.weekly import DATE_COLUMN
from hhforecast.watch.signals import ExpectedCurve, Signal, signals_for

__all__ = [
    "VERDICT_DRIFT",
    "VERDICT_INSUFFICIENT",
    "VERDICT_NO_DRIFT",
    "DriftStatistics",
    "SignalDrift",
    "detectable_shift",
    "drift_statistics",
]

PSI_BINS = 10

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no drift"
VERDICT_INSUFFICIENT = "insufficient"


@dataclass(frozen=True)
class SignalDrift:
    """How one signal of the recent weeks compares with the training weeks."""

    name: str
    label: str
    role: str
    n_reference: int
    n_recent: int
    n_effective_reference: float
    n_effective_recent: float
    mean_shift_pct: float
    mean_shift_std: float
    mean_pvalue: float
    std_ratio: float
    outside_range_share: float
    outside_raw_range_share: float
    ks_statistic: float
    ks_pvalue_raw: float
    ks_pvalue: float
    wasserstein: float
    psi: float
    detectable_shift_std: float
    drifted: bool
    reference_residuals: list[float] = field(repr=False)
    recent_residuals: list[float] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reference_residuals")
        data.pop("recent_residuals")
        return data


def _lag1_autocorrelation(values: np.ndarray) -> float:
    if len(values) < 3:
        return 0.0
    centred = values - values.mean()
    denominator = float(centred @ centred)
    if denominator == 0:
        return 0.0
    return float(np.clip((centred[1:] @ centred[:-1]) / denominator, 0.0, 0.95))


def _effective_size(n: int, rho: float) -> float:
    return max(1.0, n * (1 - rho) / (1 + rho))


def _psi(reference: np.ndarray, recent: np.ndarray) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1)
    new_share = np.bincount(np.searchsorted(edges, recent), minlength=len(edges) + 1)
    # A small floor keeps empty bins (common with a dozen weeks) from giving infinity.
    p = np.maximum(ref_share / len(reference), 1e-4)
    q = np.maximum(new_share / len(recent), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def detectable_shift(
    n_reference: float, n_recent: float, ks_alpha: float, mean_alpha: float
) -> float:
    """Smallest shift of a normal mean (in reference stds) flagged half the time, by either test."""
    from scipy.stats import kstwobign, norm

    # The mean test flags half the time when the true shift equals its critical value.
    mean_test = float(norm.isf(mean_alpha / 2)) * math.sqrt(1 / n_reference + 1 / n_recent)
    critical = float(kstwobign.isf(ks_alpha)) / math.sqrt(
        n_reference * n_recent / (n_reference + n_recent)
    )
    if critical >= 1.0:
        return mean_test
    # For two normals a shift d apart, the KS distance is 2 * Phi(d / 2) - 1.
    return min(mean_test, float(2 * norm.ppf((1 + critical) / 2)))


def _compare(
    signal: Signal, reference: pd.DataFrame, recent: pd.DataFrame, config: DriftConfig
) -> SignalDrift:
    from scipy.stats import ks_2samp, kstwobign, norm, wasserstein_distance

    ref_values = signal.compute(reference)
    new_values = signal.compute(recent)
    ref_ok, new_ok = np.isfinite(ref_values), np.isfinite(new_values)
    ref_dates = reference[DATE_COLUMN][ref_ok].reset_index(drop=True)
    new_dates = recent[DATE_COLUMN][new_ok].reset_index(drop=True)
    ref_values, new_values = ref_values[ref_ok], new_values[new_ok]

    curve = ExpectedCurve.fit(ref_dates, ref_values, signal.trend)
    ref_expected, new_expected = curve(ref_dates), curve(new_dates)
    ref_resid, new_resid = ref_values - ref_expected, new_values - new_expected
    scale = float(ref_resid.std(ddof=1)) or 1.0

    rho = _lag1_autocorrelation(ref_resid)
    n_ref_eff = _effective_size(len(ref_resid), rho)
    n_new_eff = _effective_size(len(new_resid), rho)
    ks = ks_2samp(ref_resid, new_resid)
    statistic = float(ks.statistic)
    en = n_ref_eff * n_new_eff / (n_ref_eff + n_new_eff)
    pvalue = float(min(1.0, kstwobign.sf(statistic * math.sqrt(en))))
    wasserstein = float(wasserstein_distance(ref_resid, new_resid)) / scale
    # KS saturates at D = 1 however far a small window moved; the mean test does not.
    mean_shift = float(new_resid.mean() - ref_resid.mean()) / scale
    mean_z = mean_shift / math.sqrt(1 / n_ref_eff + 1 / n_new_eff)
    mean_pvalue = float(2 * norm.sf(abs(mean_z)))
    mean_expected = float(np.mean(np.abs(new_expected)))
    outside = float(np.mean((new_resid < ref_resid.min()) | (new_resid > ref_resid.max())))
    raw_outside = math.nan
    if signal.name in reference.columns and signal.name in recent.columns:
        raw_ref = reference[signal.name].to_numpy(float)
        raw_new = recent[signal.name].to_numpy(float)
        raw_outside = float(np.mean((raw_new < raw_ref.min()) | (raw_new > raw_ref.max())))
    return SignalDrift(
        name=signal.name,
        label=signal.label,
        role=signal.role,
        n_reference=len(ref_resid),
        n_recent=len(new_resid),
        n_effective_reference=round(n_ref_eff, 1),
        n_effective_recent=round(n_new_eff, 1),
        mean_shift_pct=(
            100.0 * float(new_resid.mean()) / mean_expected
            if signal.role != "error" and mean_expected > 0
            else math.nan
        ),
        mean_shift_std=mean_shift,
        mean_pvalue=mean_pvalue,
        std_ratio=float(new_resid.std(ddof=1)) / scale if len(new_resid) > 1 else math.nan,
        outside_range_share=outside,
        outside_raw_range_share=raw_outside,
        ks_statistic=statistic,
        ks_pvalue_raw=float(ks.pvalue),
        ks_pvalue=pvalue,
        wasserstein=wasserstein,
        psi=_psi(ref_resid, new_resid),
        detectable_shift_std=detectable_shift(
            n_ref_eff, n_new_eff, config.ks_pvalue, config.mean_pvalue
        ),
        drifted=(pvalue < config.ks_pvalue or mean_pvalue < config.mean_pvalue)
        and wasserstein >= config.wasserstein,
        reference_residuals=(ref_resid / scale).tolist(),
        recent_residuals=(new_resid / scale).tolist(),
    )


@dataclass(frozen=True)
class DriftStatistics:
    """Every signal compared, and the dataset-level verdict."""

    verdict: str
    signals: list[SignalDrift]
    drifted_features: list[str]
    share_drifted: float
    reference_weeks: int
    recent_weeks: int
    message: str


def drift_statistics(
    reference: pd.DataFrame, recent: pd.DataFrame, config: DriftConfig, target: str = "HH"
) -> DriftStatistics:
    """Compare `recent` weeks with `reference` weeks (both with a datetime `date` column).

    Columns present in both frames are compared; `target` and HH_pred are reported but only the
    features vote. Fewer weeks than `config.min_weeks` on either side gives "insufficient".
    """
    columns = [c for c in reference.columns if c in recent.columns and c != DATE_COLUMN]
    signals = signals_for(columns, target)
    n_ref, n_new = len(reference), len(recent)
    if min(n_ref, n_new) < config.min_weeks:
        side = "recent" if n_new < config.min_weeks else "training"
        return DriftStatistics(
            verdict=VERDICT_INSUFFICIENT,
            signals=[],
            drifted_features=[],
            share_drifted=math.nan,
            reference_weeks=n_ref,
            recent_weeks=n_new,
            message=(
                f"only {min(n_ref, n_new)} {side} weeks; at least {config.min_weeks} are "
                "needed for a verdict (drift.min_weeks)"
            ),
        )
    compared = [_compare(s, reference, recent, config) for s in signals]
    features = [s for s in compared if s.role == "feature"]
    drifted = [s.name for s in features if s.drifted]
    share = len(drifted) / len(features) if features else 0.0
    is_drift = bool(features) and share >= config.share_of_features
    if is_drift:
        message = (
            f"{len(drifted)} of {len(features)} features moved beyond season and trend "
            f"({', '.join(drifted)})"
        )
    elif drifted:
        message = (
            f"{len(drifted)} of {len(features)} features moved ({', '.join(drifted)}), "
            f"below the {config.share_of_features:.0%} needed (drift.share_of_features)"
        )
    else:
        message = "every feature is within what season and trend explain"
    return DriftStatistics(
        verdict=VERDICT_DRIFT if is_drift else VERDICT_NO_DRIFT,
        signals=compared,
        drifted_features=drifted,
        share_drifted=share,
        reference_weeks=n_ref,
        recent_weeks=n_new,
        message=message,
    )
