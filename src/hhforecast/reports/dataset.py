"""The quality report of `dataset build --report`: one self-contained HTML page.

Charts are drawn with matplotlib (imported here, only when a report is asked for) on an Agg
canvas and inlined as PNG data URIs; the page is rendered by `reports.pages` (one autoescaping
Jinja2 environment), so file names, column names and categories from the user's files read as
text, never as markup.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.datasets.build import DatasetBuild
from hhforecast.reports.pages import render_page

__all__ = ["render_dataset_report"]

TEMPLATE = "dataset.html.j2"


def render_dataset_report(build: DatasetBuild) -> str:
    """The HTML quality report of a built dataset: facts of the manifest and four charts."""
    manifest = build.manifest
    return render_page(TEMPLATE, m=manifest, charts=_charts(build), dropped=_dropped_rows(manifest))


def _dropped_rows(manifest: dict[str, Any]) -> list[tuple[str, int, float | None]]:
    util, ev, weeks = manifest["utilization"], manifest["events"], manifest["weeks"]
    return [
        ("utilisation rows repeated in an overlapping file", util["duplicates_dropped"], None),
        (
            "aircraft-days in dropped weeks (partial, or month not wholly covered)",
            util["aircraft_days_in_dropped_weeks"],
            None,
        ),
        (
            "event rows repeated in an overlapping file",
            ev["duplicates_dropped"]["rows"],
            ev["duplicates_dropped"]["HH"],
        ),
        (
            "events on aircraft the utilisation never shows",
            ev["unknown_aircraft"]["rows"],
            ev["unknown_aircraft"]["HH"],
        ),
        (
            "events outside the utilisation dates",
            ev["outside_utilization_dates"]["rows"],
            ev["outside_utilization_dates"]["HH"],
        ),
        ("events in dropped weeks", ev["in_dropped_weeks"]["rows"], ev["in_dropped_weeks"]["HH"]),
        *[
            (f"events of excluded category {name}", v["rows"], v["HH"])
            for name, v in ev["excluded"].items()
        ],
        ("weeks dropped: partial", len(weeks["dropped_partial"]), None),
        ("weeks dropped: month not wholly covered", len(weeks["dropped_month_not_covered"]), None),
    ]


def _charts(build: DatasetBuild) -> dict[str, str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    weekly = build.weekly
    dates = pd.to_datetime(weekly["date"]).to_numpy()

    def chart(draw: Any, title: str, ylabel: str) -> str:
        figure = Figure(figsize=(9, 2.8), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        draw(axes)
        axes.set_title(title, loc="left", fontsize=10)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    acft = weekly["acft"].to_numpy(dtype=float)
    per_day = weekly["sum_daily_hours"].to_numpy(dtype=float) / np.maximum(acft, 1)

    def hh(axes: Any) -> None:
        axes.plot(dates, weekly["HH"], color="#222222", linewidth=1.0, label="HH (counted)")
        for name in build.excluded_hh.columns:
            axes.plot(
                dates, build.excluded_hh[name].to_numpy(), linewidth=0.9, label=f"{name} (excl.)"
            )
        axes.legend(fontsize=8, loc="upper left")

    rows = _dropped_rows(build.manifest)

    def dropped(axes: Any) -> None:
        labels = [r[0] for r in rows]
        axes.barh(range(len(rows)), [r[1] for r in rows], color="#c0504d")
        axes.set_yticks(range(len(rows)), labels, fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel("rows (weeks for the last two)")

    return {
        "aircraft": chart(
            lambda a: a.plot(dates, acft / 7, color="#1f77b4"),
            "Aircraft in service (aircraft-days / 7)",
            "aircraft",
        ),
        "hours": chart(
            lambda a: a.plot(dates, per_day, color="#2ca02c"),
            "Flight hours per aircraft-day",
            "hours",
        ),
        "hh": chart(hh, "HH per week, and the excluded categories beside it", "man-hours"),
        "dropped": chart(dropped, "Rows and weeks dropped, by reason", ""),
    }
