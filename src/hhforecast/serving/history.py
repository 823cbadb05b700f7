"""The picture on the web page: realised weekly HH and the model's fitted values.

Drawn once per loaded version, from the dataset the version was trained on (found through
``model_metadata.json``'s ``dataset`` path and checked against its SHA-256).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hhforecast.config import Settings
from hhforecast.datasets.weekly import load_weekly_dataset, recorded_dataset
from hhforecast.errors import HHForecastError
from hhforecast.modeling.inference import VariantModel

__all__ = [
    "HistoryUnavailable",
    "render_history_png",
    "test_weeks_label",
    "training_dataset_path",
]


class HistoryUnavailable(HHForecastError):
    """The training dataset of a version cannot be found or has changed since training."""


def training_dataset_path(settings: Settings, model: VariantModel) -> Path:
    """Where the version's training dataset is, or HistoryUnavailable saying why not."""
    recorded = recorded_dataset(model.metadata, settings.base_dir)
    about = f"the training dataset of version {model.version} ({recorded.label})"
    if recorded.path is None:  # nothing recorded
        raise HistoryUnavailable(f"version {model.version} does not record its training dataset")
    if recorded.problem == "missing":
        raise HistoryUnavailable(f"{about} is not available")
    if recorded.problem == "changed":
        raise HistoryUnavailable(f"{about} has changed since training (SHA-256 differs)")
    return recorded.path


def test_weeks_label(metadata: dict) -> str:
    """The legend of the shaded test weeks: held out from the scored fit, but learnt by a
    served fit refit on every week, whose line there is a fit, not a forecast."""
    if (metadata.get("served_fit") or {}).get("refit_on_all_weeks"):
        return "test weeks (the served refit learnt them)"
    return "held-out test weeks"


def render_history_png(settings: Settings, model: VariantModel) -> bytes:
    """A PNG of realised HH and fitted HH over the training weeks, test weeks shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    from hhforecast.reports.charts import date_axis

    path = training_dataset_path(settings, model)
    target = str(model.metadata.get("target", settings.training.target))
    dataset = load_weekly_dataset(path, model.features, target, reading=settings.dataset)
    frame = dataset.frame
    fitted = model.predict(frame[model.features].to_numpy(dtype=np.float64))
    lower, upper = model.interval(fitted)
    dates = frame["date"].to_numpy()

    # The object API, not pyplot: pyplot keeps global state and is not safe in a thread.
    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.fill_between(
        dates, lower, upper, color="#9ecae1", alpha=0.45, label=f"{model.coverage:.0%} interval"
    )
    axes.plot(dates, frame[target].to_numpy(), color="#222222", linewidth=1.0, label="realised HH")
    axes.plot(dates, fitted, color="#d95f02", linewidth=1.3, label=f"model {model.version}")
    test = model.metadata.get("split", {}).get("test", {})
    if test.get("start") and test.get("end"):
        axes.axvspan(
            date2num(np.datetime64(test["start"])),
            date2num(np.datetime64(test["end"])),
            color="#cccccc",
            alpha=0.35,
            label=test_weeks_label(model.metadata),
        )
    axes.set_ylabel("man-hours per week")
    axes.set_title(
        f"Weekly unscheduled HH: realised vs model {model.version} ({model.variant})", fontsize=10
    )
    axes.legend(loc="upper left", fontsize=8, ncols=4)
    date_axis(axes, frame["date"])
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
