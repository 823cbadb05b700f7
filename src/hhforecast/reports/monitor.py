"""The monitor report: the error table per period and version, and predicted vs realised HH."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from hhforecast.reports.charts import PeriodRmse, monitor_chart
from hhforecast.reports.pages import render_page

__all__ = ["MonitorOutcome", "monitor_report"]


class MonitorOutcome(Protocol):
    """What the page reads of a monitor result (watch.monitor.MonitorResult).

    A protocol rather than an import: watch.monitor hands its result to this page, and the
    dependency stays one-way.
    """

    @property
    def by(self) -> str: ...
    @property
    def joined(self) -> pd.DataFrame: ...
    @property
    def periods(self) -> Sequence[PeriodRmse]: ...


def monitor_report(result: MonitorOutcome) -> str:
    """A self-contained HTML page: the error table and predicted vs realised HH over time."""
    chart = monitor_chart(result.joined, result.periods, result.by) if len(result.joined) else None
    return render_page("monitor.html.j2", result=result, chart=chart)
