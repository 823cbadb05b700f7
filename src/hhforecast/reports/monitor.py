"""The monitor report: errors per period and horizon, alerts, and every matched forecast."""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd

from hhforecast.reports.charts import monitor_chart
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
    def matched(self) -> pd.DataFrame: ...
    @property
    def flagged(self) -> bool: ...
    @property
    def asked(self) -> int: ...
    def sources(self) -> list[dict[str, Any]]: ...


def monitor_report(result: MonitorOutcome) -> str:
    """A self-contained HTML page: the error tables and the forecasts against realised HH."""
    chart = monitor_chart(result.matched) if len(result.matched) else None
    return render_page("monitor.html.j2", result=result, chart=chart)
