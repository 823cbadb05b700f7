"""The charts of the HTML reports, as base64 PNG data URIs so that a page needs no side files.

Matplotlib is imported inside the functions (it costs start-up time the CLI does not owe to
commands without a report) and drawn through the object API on an Agg canvas: no display is
needed on servers and cron jobs, and no pyplot global state is shared between threads.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.datasets.weekly import DATE_COLUMN
from hhforecast.watch.signals import PREDICTION_COLUMN
from hhforecast.watch.statistics import SignalDrift

__all__ = [
    "date_axis",
    "monitor_chart",
    "monitor_figure",
    "predicted_vs_realised",
    "signal_histogram",
]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def date_axis(axes: Any, dates: Any) -> None:
    """Weekly dates on the x axis, readable at any span: a few ticks, labels that say only what
    changes (ConciseDateFormatter: days under a month, then months, then years) and never
    overlap; a single week gets a few days either side instead of matplotlib's years."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

    locator = AutoDateLocator(minticks=3, maxticks=7)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    when = pd.to_datetime(pd.Series(dates))
    if len(when) and when.min() == when.max():
        middle = float(date2num(when.min()))
        axes.set_xlim(middle - 4, middle + 4)


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def signal_histogram(signal: SignalDrift) -> str:
    """Training and recent residuals of one drift signal, overlaid."""
    figure = _figure(5.2, 3.0)
    axes = figure.add_subplot()
    both = np.concatenate([signal.reference_residuals, signal.recent_residuals])
    bins = np.linspace(float(both.min()), float(both.max()), 21) if both.size else 10
    for values, label, colour in (
        (signal.reference_residuals, f"training ({signal.n_reference} weeks)", "#4c72b0"),
        (signal.recent_residuals, f"recent ({signal.n_recent} weeks)", "#dd8452"),
    ):
        axes.hist(values, bins=bins, density=True, alpha=0.55, label=label, color=colour)
    axes.set_title(f"{signal.name}: {signal.label}", fontsize=9)
    axes.set_xlabel("deviation from season and trend (training stds)", fontsize=8)
    axes.legend(fontsize=7)
    return _data_uri(figure)


def predicted_vs_realised(recent: pd.DataFrame, target: str, version: str, variant: str) -> str:
    """A version's predictions over the recent weeks, and the realised target when known."""
    figure = _figure(8.0, 3.2)
    axes = figure.add_subplot()
    axes.plot(recent[DATE_COLUMN], recent[PREDICTION_COLUMN], marker="o", label="predicted")
    if target in recent.columns:
        axes.plot(recent[DATE_COLUMN], recent[target], marker="s", label="realised")
    axes.set_ylabel("HH per week")
    axes.set_title(f"Version {version} ({variant}) on the recent weeks", fontsize=9)
    axes.legend(fontsize=8)
    date_axis(axes, recent[DATE_COLUMN])
    return _data_uri(figure)


def monitor_chart(matched: pd.DataFrame) -> str:
    """Realised HH per week, and every matched forecast with its interval, by version and source."""
    return _data_uri(monitor_figure(matched))


def monitor_figure(matched: pd.DataFrame) -> Any:
    """The figure of `monitor_chart`, before it is written as a PNG."""
    figure = _figure(8.0, 3.6)
    axes = figure.add_subplot()
    realised = matched.drop_duplicates("week").sort_values("week")
    axes.plot(pd.to_datetime(realised["week"]), realised["actual"], "k-s", label="realised")
    for (version, source), group in matched.groupby(["version", "source"]):
        axes.errorbar(
            pd.to_datetime(group["week"]),
            group["hh_pred"],
            yerr=[group["hh_pred"] - group["hh_lower"], group["hh_upper"] - group["hh_pred"]],
            fmt="o",
            capsize=2,
            alpha=0.7,
            label=f"forecast {version} ({source})",
        )
    axes.set_ylabel("HH per week")
    axes.legend(fontsize=8)
    date_axis(axes, matched["week"])
    return figure
