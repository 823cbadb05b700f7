"""Data drift: do the recent weeks still look like the weeks the model was trained on?

A naive comparison of raw columns cries wolf every week: ``age_fleet`` only grows, and hours,
cycles and monthly utilisation follow the seasons, so any recent window differs from the whole
training period. Each feature is therefore turned into a *signal* that removes what is expected:

* a rate per aircraft-day (hours, cycles, monthly hours, fleet age per aircraft-day flown) and the
  sector length (hours per cycle), so that fleet size is tested once, by ``acft``;
* minus a reference curve fitted on the training weeks by least squares: an annual and a
  half-annual harmonic for the season, plus a linear trend for the quantities that grow with age
  (fleet age, HH, predictions), extrapolated to the recent dates.

The residuals of the recent weeks are compared with the residuals of the training weeks: mean and
std shift, share outside the training range, two-sample KS, a mean z-test, normalised
Wasserstein distance and PSI. Weekly residuals are autocorrelated (C-checks last weeks, monthly
utilisation is one number for four weeks), so the p-values use effective sample sizes
``n (1 - rho) / (1 + rho)``, rho being the lag-1 autocorrelation of the training residuals. A
feature drifts when the KS p-value is below ``drift.ks_pvalue`` or the mean test's below
``drift.mean_pvalue``, and the normalised Wasserstein distance reaches ``drift.wasserstein``;
the dataset drifts when at least ``drift.share_of_features`` of the input features drift.
The thresholds and their measured false-alarm rate are in docs/drift.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast._fs import atomic_write_text, file_sha256
from hhforecast.config import DriftConfig, Settings
from hhforecast.datasets.weekly import (
    DATE_COLUMN,
    check_feature_frame,
    load_weekly_dataset,
    read_csv,
)
from hhforecast.errors import EXIT_BAD_INPUT, ArtifactError, DatasetError
from hhforecast.registry.store import Registry

__all__ = [
    "DRIFT_REFERENCE_FILE",
    "DriftReferenceError",
    "DriftReport",
    "SignalDrift",
    "drift_report",
    "drift_statistics",
    "read_drift_reference",
    "run_drift",
    "write_drift_reference",
]

DRIFT_REFERENCE_FILE = "drift_reference.csv"
SPLIT_COLUMN = "split"
TRAINING_SPLITS = ("fit", "validation")
PREDICTION_COLUMN = "HH_pred"
DAYS_PER_YEAR = 365.25
PSI_BINS = 10
MIN_WEEKS_FOR_SEASON = 52

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no drift"
VERDICT_INSUFFICIENT = "insufficient"

Computation = Callable[[pd.DataFrame], np.ndarray]


class DriftReferenceError(ArtifactError):
    """A version has no usable drift reference (trained before references were kept)."""

    # Not a "drift found" verdict: a cron job must tell it apart from exit 1.
    exit_code = EXIT_BAD_INPUT


# -- the reference kept with every version -------------------------------------------------------


def write_drift_reference(folder: Path, frame: pd.DataFrame, split: Any) -> dict[str, str]:
    """Write the dataset's weeks with their split label to `folder`; return {file name: sha256}.

    `split` is an evaluation.Split; only its fit, validation and test row indices are used.
    """
    labels = np.full(len(frame), "", dtype=object)
    labels[split.fit] = "fit"
    labels[split.validation] = "validation"
    labels[split.test] = "test"
    out = frame.copy()
    out[DATE_COLUMN] = pd.to_datetime(out[DATE_COLUMN]).dt.strftime("%Y-%m-%d")
    out[SPLIT_COLUMN] = labels
    path = folder / DRIFT_REFERENCE_FILE
    atomic_write_text(path, out.to_csv(index=False))
    return {DRIFT_REFERENCE_FILE: file_sha256(path)}


def read_drift_reference(version_dir: Path, columns: list[str]) -> pd.DataFrame:
    """The training weeks (fit + validation) stored with a version, sorted by date."""
    path = version_dir / DRIFT_REFERENCE_FILE
    if not path.is_file():
        raise DriftReferenceError(
            f"{path} is missing: this version was trained before drift references were kept "
            "with the model. Retrain it (hhforecast train) to check drift against it"
        )
    raw = read_csv(path)
    values = check_feature_frame(raw, path, columns)
    dates = pd.to_datetime(raw[DATE_COLUMN], errors="coerce")
    keep = raw[SPLIT_COLUMN].isin(TRAINING_SPLITS).to_numpy() if SPLIT_COLUMN in raw else None
    frame = values.assign(**{DATE_COLUMN: dates.to_numpy()})
    if keep is not None:
        frame = frame[keep]
    return frame.sort_values(DATE_COLUMN).reset_index(drop=True)


# -- signals: what is compared for each column ---------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One quantity compared between training and recent weeks, and how its expectation is built."""

    name: str
    label: str
    role: str  # feature, target, prediction or error
    trend: bool
    compute: Computation
    needs: tuple[str, ...]


def _ratio(numerator: str, denominator: str) -> Computation:
    def compute(frame: pd.DataFrame) -> np.ndarray:
        den = frame[denominator].to_numpy(dtype=float)
        return np.divide(
            frame[numerator].to_numpy(dtype=float),
            den,
            out=np.full(len(frame), np.nan),
            where=den > 0,
        )

    return compute


def _column(name: str) -> Computation:
    def compute(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(frame[name].to_numpy(dtype=float), dtype=np.float64)

    return compute


def _monthly_per_aircraft_day(frame: pd.DataFrame) -> np.ndarray:
    # The month's hours over the month's aircraft-days, estimated from this week's aircraft-days.
    days_in_month = pd.to_datetime(frame[DATE_COLUMN]).dt.days_in_month.to_numpy(dtype=float)
    aircraft = frame["acft"].to_numpy(dtype=float) / 7.0
    den = days_in_month * aircraft
    return np.divide(
        frame["sum_uti_mensal"].to_numpy(dtype=float),
        den,
        out=np.full(len(frame), np.nan),
        where=den > 0,
    )


_KNOWN_FEATURES: dict[str, Signal] = {
    "acft": Signal("acft", "aircraft-days/week", "feature", False, _column("acft"), ("acft",)),
    "sum_daily_hours": Signal(
        "sum_daily_hours",
        "hours/aircraft-day",
        "feature",
        False,
        _ratio("sum_daily_hours", "acft"),
        ("sum_daily_hours", "acft"),
    ),
    "Cycles": Signal(
        "Cycles",
        "cycles/aircraft-day",
        "feature",
        False,
        _ratio("Cycles", "acft"),
        ("Cycles", "acft"),
    ),
    "sum_uti_mensal": Signal(
        "sum_uti_mensal",
        "month hours/aircraft-day",
        "feature",
        False,
        _monthly_per_aircraft_day,
        ("sum_uti_mensal", "acft"),
    ),
    "age_fleet": Signal(
        "age_fleet",
        "TAH/aircraft-day",
        "feature",
        True,
        _ratio("age_fleet", "acft"),
        ("age_fleet", "acft"),
    ),
}
SECTOR_SIGNAL = Signal(
    "sector_length",
    "hours/cycle",
    "feature",
    False,
    _ratio("sum_daily_hours", "Cycles"),
    ("sum_daily_hours", "Cycles"),
)


def signals_for(columns: list[str], target: str) -> list[Signal]:
    """The signals that can be computed from `columns` (features, target, predictions)."""
    available = set(columns)
    signals: list[Signal] = []
    for name in columns:
        if name in (target, PREDICTION_COLUMN, DATE_COLUMN):
            continue
        known = _KNOWN_FEATURES.get(name)
        if known is not None and set(known.needs) <= available:
            signals.append(known)
        else:
            signals.append(Signal(name, name, "feature", False, _column(name), (name,)))
    if set(SECTOR_SIGNAL.needs) <= available:
        signals.append(SECTOR_SIGNAL)
    per_day = "acft" in available

    def level(name: str, column: str, role: str, per_day_label: str, label: str) -> Signal:
        """HH (realised or predicted), per aircraft-day when the fleet's days are known."""
        compute = _ratio(column, "acft") if per_day else _column(column)
        return Signal(name, per_day_label if per_day else label, role, True, compute, (column,))

    if target in available:
        signals.append(level(target, target, "target", f"{target}/aircraft-day", target))
    if PREDICTION_COLUMN in available:
        signals.append(
            level(
                "prediction",
                PREDICTION_COLUMN,
                "prediction",
                "predicted/aircraft-day",
                "predicted HH",
            )
        )
        if target in available:
            signals.append(
                Signal(
                    "model_error",
                    f"{target} - predicted",
                    "error",
                    False,
                    lambda f: f[target].to_numpy(float) - f[PREDICTION_COLUMN].to_numpy(float),
                    (target, PREDICTION_COLUMN),
                )
            )
    return signals


# -- the expected curve: season and trend fitted on the training weeks -------------------------


@dataclass(frozen=True)
class ExpectedCurve:
    """Least-squares season (two harmonics) and optional linear trend of a training signal."""

    origin: pd.Timestamp
    coefficients: np.ndarray
    trend: bool
    season: bool

    @classmethod
    def fit(cls, dates: pd.Series, values: np.ndarray, trend: bool) -> ExpectedCurve:
        origin = pd.Timestamp(dates.iloc[0])
        span_weeks = (pd.Timestamp(dates.iloc[-1]) - origin).days / 7
        # Under a year of history the season and a trend cannot be told apart from noise.
        season = span_weeks >= MIN_WEEKS_FOR_SEASON
        curve = cls(origin, np.zeros(0), trend and season, season)
        design = curve.design(dates)
        coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
        return cls(origin, coefficients, curve.trend, season)

    def design(self, dates: pd.Series) -> np.ndarray:
        stamps = pd.to_datetime(dates)
        columns: list[np.ndarray] = [np.ones(len(stamps))]
        if self.trend:
            columns.append(((stamps - self.origin).dt.days / DAYS_PER_YEAR).to_numpy(float))
        if self.season:
            angle = 2 * np.pi * stamps.dt.dayofyear.to_numpy(float) / DAYS_PER_YEAR
            for k in (1, 2):
                columns += [np.cos(k * angle), np.sin(k * angle)]
        return np.column_stack(columns)

    def __call__(self, dates: pd.Series) -> np.ndarray:
        return self.design(dates) @ self.coefficients


# -- statistics ----------------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
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


# -- a version against a recent file -------------------------------------------------------------


@dataclass(frozen=True)
class DriftReport:
    """The drift of a recent file against a registered version, with the model's recent errors."""

    version: str
    variant: str
    recent_path: Path
    statistics: DriftStatistics
    reference: pd.DataFrame
    recent: pd.DataFrame
    config: DriftConfig
    performance: dict[str, dict[str, float]] | None

    @property
    def verdict(self) -> str:
        return self.statistics.verdict

    def to_json(self) -> dict[str, Any]:
        """Everything a machine needs, JSON-ready."""
        stats = self.statistics

        def period(frame: pd.DataFrame) -> dict[str, Any]:
            dates = frame[DATE_COLUMN]
            return {
                "weeks": len(frame),
                "start": dates.min().strftime("%Y-%m-%d") if len(frame) else None,
                "end": dates.max().strftime("%Y-%m-%d") if len(frame) else None,
            }

        return {
            "verdict": stats.verdict,
            "message": stats.message,
            "version": self.version,
            "variant": self.variant,
            "recent": {"path": str(self.recent_path), **period(self.recent)},
            "reference": {"source": DRIFT_REFERENCE_FILE, **period(self.reference)},
            "method": {
                "test": "two-sample KS and a mean z-test on residuals from the training "
                "weeks' season and trend, p-values with lag-1 autocorrelation effective "
                "sample sizes",
                "ks_pvalue": self.config.ks_pvalue,
                "mean_pvalue": self.config.mean_pvalue,
                "wasserstein": self.config.wasserstein,
                "psi": self.config.psi,
                "share_of_features": self.config.share_of_features,
                "min_weeks": self.config.min_weeks,
            },
            "drifted_features": stats.drifted_features,
            "share_drifted": stats.share_drifted,
            "signals": [s.to_json() for s in stats.signals],
            "performance": self.performance,
        }


def _read_recent(path: Path, columns: list[str], target: str) -> pd.DataFrame:
    return load_weekly_dataset(path, columns, None, optional=(target,)).frame


def run_drift(settings: Settings, recent_path: Path, version: str | None = None) -> DriftReport:
    """Check a recent weekly file against a version's training weeks (production by default)."""
    from hhforecast.modeling.evaluation import regression_metrics
    from hhforecast.modeling.predict import load_model, predict_frame

    registry = Registry(settings)
    entry = registry.get(version) if version is not None else registry.require_production_version()
    model = load_model(settings, entry.version)
    target = settings.training.target
    folder = registry.version_dir(entry)
    columns = list(
        dict.fromkeys(
            f for info in model.metadata.get("variants", {}).values() for f in info["features"]
        )
    ) or list(model.features)
    recent = _read_recent(recent_path, columns, target)
    reference = read_drift_reference(folder, [*columns, target])
    reference[PREDICTION_COLUMN] = predict_frame(model, reference)[PREDICTION_COLUMN].to_numpy()
    recent[PREDICTION_COLUMN] = predict_frame(model, recent, str(recent_path))[
        PREDICTION_COLUMN
    ].to_numpy()
    if len(recent) and recent[DATE_COLUMN].iloc[0] <= reference[DATE_COLUMN].iloc[0]:
        raise DatasetError(
            recent_path,
            f"the recent weeks start {recent[DATE_COLUMN].iloc[0]:%Y-%m-%d}, before the "
            f"training weeks of version {entry.version} "
            f"({reference[DATE_COLUMN].iloc[0]:%Y-%m-%d})",
            "Pass weeks observed after the training period.",
        )
    statistics = drift_statistics(reference, recent, settings.drift, target)
    performance = None
    if target in recent.columns and len(recent):
        metrics = regression_metrics(
            recent[target].to_numpy(float),
            recent[PREDICTION_COLUMN].to_numpy(float),
            len(model.features),
        )
        performance = {
            "recent": {k: metrics[k] for k in ("MAE", "RMSE", "MAPE")},
            "training": {
                k: v
                for k, v in entry.metrics.get(model.variant, {}).items()
                if k in ("MAE", "RMSE", "MAPE")
            },
        }
    return DriftReport(
        version=entry.version,
        variant=model.variant,
        recent_path=recent_path,
        statistics=statistics,
        reference=reference,
        recent=recent,
        config=settings.drift,
        performance=performance,
    )


def figure_data_uri(figure: Any) -> str:
    """A matplotlib figure as a base64 PNG data URI, so an HTML page needs no side files."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and cron jobs
    import matplotlib.pyplot as plt

    return plt


def _histogram(signal: SignalDrift) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 3.0))
    both = np.concatenate([signal.reference_residuals, signal.recent_residuals])
    bins = np.linspace(float(both.min()), float(both.max()), 21) if both.size else 10
    axes.hist(
        signal.reference_residuals,
        bins=bins,
        density=True,
        alpha=0.55,
        label=f"training ({signal.n_reference} weeks)",
        color="#4c72b0",
    )
    axes.hist(
        signal.recent_residuals,
        bins=bins,
        density=True,
        alpha=0.55,
        label=f"recent ({signal.n_recent} weeks)",
        color="#dd8452",
    )
    axes.set_title(f"{signal.name}: {signal.label}", fontsize=9)
    axes.set_xlabel("deviation from season and trend (training stds)", fontsize=8)
    axes.legend(fontsize=7)
    return figure_data_uri(figure)


def _predicted_vs_realised(report: DriftReport, target: str) -> str:
    plt = pyplot()
    recent = report.recent
    figure, axes = plt.subplots(figsize=(8.0, 3.2))
    axes.plot(recent[DATE_COLUMN], recent[PREDICTION_COLUMN], marker="o", label="predicted")
    if target in recent.columns:
        axes.plot(recent[DATE_COLUMN], recent[target], marker="s", label="realised")
    axes.set_ylabel("HH per week")
    axes.set_title(f"Version {report.version} ({report.variant}) on the recent weeks", fontsize=9)
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure_data_uri(figure)


PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;"
    "padding:0.3em 0.6em;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
    ".drift{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}"
    ".grid{display:flex;flex-wrap:wrap;gap:1em}"
)


def html_number(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _html_pvalue(value: float) -> str:
    return "&lt;0.0001" if value < 1e-4 else html_number(value, 4)


def drift_report(report: DriftReport, target: str = "HH") -> str:
    """A self-contained HTML page: verdict, table, a histogram per signal, predicted vs realised."""
    from html import escape

    data = report.to_json()
    stats = report.statistics
    verdict_class = "drift" if stats.verdict == VERDICT_DRIFT else "ok"
    rows = []
    for s in stats.signals:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{cell}</td>"
                for cell in (
                    escape(s.name),
                    escape(s.label),
                    s.role,
                    f"{s.n_reference} / {s.n_recent}",
                    f"{s.n_effective_reference:.0f} / {s.n_effective_recent:.0f}",
                    html_number(s.mean_shift_pct, 1),
                    html_number(s.mean_shift_std),
                    html_number(s.std_ratio),
                    html_number(100 * s.outside_range_share, 0),
                    html_number(s.ks_statistic),
                    _html_pvalue(s.ks_pvalue),
                    _html_pvalue(s.mean_pvalue),
                    html_number(s.wasserstein),
                    html_number(s.psi),
                    html_number(s.detectable_shift_std),
                    '<span class="drift">drift</span>' if s.drifted else "ok",
                )
            )
            + "</tr>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "signal",
            "what is compared",
            "role",
            "weeks train / recent",
            "effective weeks",
            "mean shift %",
            "mean shift (stds)",
            "std ratio",
            "outside training range %",
            "KS D",
            "KS p (adjusted)",
            "mean test p",
            "Wasserstein / std",
            "PSI",
            "detectable shift (stds)",
            "verdict",
        )
    )
    performance = ""
    if report.performance:
        perf_rows = "".join(
            f"<tr><td>{name}</td>"
            + "".join(
                f"<td>{html_number(metrics.get(k, math.nan), 1)}</td>"
                for k in ("MAE", "RMSE", "MAPE")
            )
            + "</tr>"
            for name, metrics in report.performance.items()
        )
        performance = (
            "<h2>Model error</h2><table><tr><th>weeks</th><th>MAE</th><th>RMSE</th>"
            f"<th>MAPE %</th></tr>{perf_rows}</table>"
        )
    charts = "".join(
        f'<img alt="{escape(s.name)} histogram" src="{_histogram(s)}">' for s in stats.signals
    )
    timeline = (
        f'<img alt="predicted vs realised" src="{_predicted_vs_realised(report, target)}">'
        if PREDICTION_COLUMN in report.recent.columns
        else ""
    )
    recent, reference = data["recent"], data["reference"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hhforecast drift: version {
        escape(report.version)
    }</title><style>{PAGE_STYLE}</style></head><body>
<h1>Drift of {escape(str(report.recent_path.name))} against version {escape(report.version)}</h1>
<p>Verdict: <span class="{verdict_class}">{escape(stats.verdict)}</span>. {
        escape(stats.message)
    }.</p>
<p>Recent weeks: {recent["weeks"]} ({recent["start"]} to {recent["end"]}). Training weeks:
{reference["weeks"]} ({reference["start"]} to {reference["end"]}). Each signal is compared after
removing the season and trend fitted on the training weeks (rates per aircraft-day, see
docs/drift.md). A feature drifts when the KS p-value is below {report.config.ks_pvalue} or the
mean-test p-value below {report.config.mean_pvalue} (both with effective sample sizes for
autocorrelation), and the Wasserstein distance is at least {report.config.wasserstein} training
stds. The dataset drifts when at least {report.config.share_of_features:.0%} of the features
drift. Target, predictions and model error are shown but do not vote. "Detectable shift" is the
mean shift (in training stds) that the tests catch half the time at these sample sizes.</p>
<table><tr>{header}</tr>{"".join(rows)}</table>
{performance}
<h2>Predicted vs realised</h2>{timeline}
<h2>Training vs recent, per signal</h2><div class="grid">{charts}</div>
</body></html>
"""
