"""The charts of the HTML reports, as base64 PNG data URIs so that a page needs no side files.

Matplotlib is imported inside the functions (it costs start-up time the CLI does not owe to
commands without a report) and drawn through the object API on an Agg canvas: no display is
needed on servers and cron jobs, and no pyplot global state is shared between threads.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hhforecast.datasets.weekly import DATE_COLUMN
from hhforecast.watch.signals import PREDICTION_COLUMN
from hhforecast.watch.statistics import SignalDrift

__all__ = ["PeriodRmse", "monitor_chart", "predicted_vs_realised", "signal_histogram"]


class PeriodRmse(Protocol):
    """What the monitor chart reads of one period's error."""

    @property
    def period(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rmse(self) -> float: ...
    @property
    def limit(self) -> float | None: ...


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


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
    figure.autofmt_xdate()
    return _data_uri(figure)


def monitor_chart(joined: pd.DataFrame, periods: Sequence[PeriodRmse], by: str) -> str:
    """Realised and logged predicted HH per week, and each version's RMSE per period."""
    figure = _figure(8.0, 5.6)
    top, bottom = figure.subplots(2, 1, sharex=False)
    realised = joined.drop_duplicates("week")
    top.plot(pd.to_datetime(realised["week"]), realised["actual"], "k-s", label="realised")
    for version, group in joined.groupby("version"):
        top.plot(
            pd.to_datetime(group["week"]), group["hh_pred"], "o--", label=f"predicted ({version})"
        )
    top.set_ylabel("HH per week")
    top.legend(fontsize=8)
    for version in sorted(set(joined["version"])):
        chosen = [p for p in periods if p.version == version]
        names = [p.period for p in chosen]
        bottom.plot(names, [p.rmse for p in chosen], "o-", label=f"RMSE ({version})")
        limits = [p.limit for p in chosen]
        if all(v is not None for v in limits):
            bottom.plot(names, limits, ":", label=f"limit ({version})")
    bottom.set_ylabel(f"RMSE per {by}")
    bottom.tick_params(axis="x", labelrotation=45, labelsize=7)
    bottom.legend(fontsize=8)
    return _data_uri(figure)
