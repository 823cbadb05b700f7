"""The drift report: verdict, a table of signals, a histogram per signal, predicted vs realised."""

from __future__ import annotations

from hhforecast.reports.charts import predicted_vs_realised, signal_histogram
from hhforecast.reports.pages import render_page
from hhforecast.watch.drift import DriftReport
from hhforecast.watch.signals import PREDICTION_COLUMN
from hhforecast.watch.statistics import VERDICT_DRIFT

__all__ = ["drift_report"]


def drift_report(report: DriftReport, target: str = "HH") -> str:
    """A self-contained HTML page: verdict, table, a histogram per signal, predicted vs realised."""
    stats = report.statistics
    data = report.to_dict()
    timeline = (
        predicted_vs_realised(report.recent, target, report.version, report.variant)
        if PREDICTION_COLUMN in report.recent.columns
        else None
    )
    return render_page(
        "drift.html.j2",
        report=report,
        stats=stats,
        verdict_class="drift" if stats.verdict == VERDICT_DRIFT else "ok",
        recent=data["recent"],
        reference=data["reference"],
        histograms=[(s.name, signal_histogram(s)) for s in stats.signals],
        timeline=timeline,
    )
