"""Data drift: do the recent weeks still look like the weeks the model was trained on?

`run_drift` loads a version, reads its drift reference (watch.reference) and the recent file,
adds the model's predictions to both, and compares them signal by signal (watch.signals turns
columns into rates net of season and trend; watch.statistics tests them). The method, its
thresholds and their measured false-alarm rate are in docs/drift.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.config import DriftConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.errors import DatasetError
from hhforecast.registry.store import Registry
from hhforecast.watch.reference import DRIFT_REFERENCE_FILE, read_drift_reference
from hhforecast.watch.signals import PREDICTION_COLUMN
from hhforecast.watch.statistics import (
    VERDICT_DRIFT,
    DriftStatistics,
    SignalDrift,
    drift_statistics,
)

__all__ = ["VERDICT_DRIFT", "DriftReport", "drift_report", "run_drift"]


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
