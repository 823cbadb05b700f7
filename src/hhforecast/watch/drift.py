"""Data drift: do the recent weeks still look like the weeks the model was trained on?

`run_drift` loads a version, reads its drift reference (watch.reference) and the recent file,
adds the model's predictions to both, and compares them signal by signal (watch.signals turns
columns into rates net of season and trend; watch.statistics tests them). The method, its
thresholds and their measured false-alarm rate are in docs/drift.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hhforecast.config import DatasetConfig, DriftConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN, load_weekly_dataset
from hhforecast.errors import DatasetError
from hhforecast.modeling.artifacts import trained_through
from hhforecast.modeling.reference import DRIFT_REFERENCE_FILE, read_drift_reference
from hhforecast.registry.store import Registry
from hhforecast.watch.signals import PREDICTION_COLUMN
from hhforecast.watch.statistics import (
    VERDICT_DRIFT,
    DriftStatistics,
    drift_statistics,
)

__all__ = ["VERDICT_DRIFT", "DriftReport", "TrainingOverlap", "run_drift"]


@dataclass(frozen=True)
class TrainingOverlap:
    """Recent weeks that lie inside the weeks the version learnt: drift compares them with the
    training data they are part of, and the model's errors on them are in-sample."""

    version: str
    weeks: int
    first: str
    last: str
    recent_weeks: int
    learnt_start: str
    learnt_end: str

    @property
    def all_weeks(self) -> bool:
        return self.weeks == self.recent_weeks

    @property
    def message(self) -> str:
        learnt = f"the weeks version {self.version} learnt ({self.learnt_start}..{self.learnt_end})"
        after = f"pass weeks after {self.learnt_end}"
        if self.all_weeks:
            return (
                f"all {self.weeks} recent weeks ({self.first}..{self.last}) lie inside {learnt}: "
                "this compares the training data with itself and cannot show drift, and the "
                f"model's errors on them are in-sample; {after}"
            )
        return (
            f"{self.weeks} of the {self.recent_weeks} recent weeks ({self.first}..{self.last}) "
            f"lie inside {learnt}: they are compared with themselves and the model's errors on "
            f"them are in-sample; {after}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weeks": self.weeks,
            "first": self.first,
            "last": self.last,
            "all_recent_weeks": self.all_weeks,
            "learnt": {"start": self.learnt_start, "end": self.learnt_end},
            "message": self.message,
        }


def training_overlap(
    version: str, metadata: dict[str, Any], reference: pd.DataFrame, recent: pd.DataFrame
) -> TrainingOverlap | None:
    """The recent weeks inside the weeks the version learnt (the reference's first week to the
    last week its served fit learnt), or None when there are none."""
    if not len(recent) or not len(reference):
        return None
    start = reference[DATE_COLUMN].min()
    ends = [reference[DATE_COLUMN].max()]
    if (through := trained_through(metadata)) is not None:
        ends.append(pd.Timestamp(through))
    end = max(ends)
    dates = recent[DATE_COLUMN]
    inside = dates[(dates >= start) & (dates <= end)]
    if not len(inside):
        return None
    return TrainingOverlap(
        version=version,
        weeks=len(inside),
        first=f"{inside.min():%Y-%m-%d}",
        last=f"{inside.max():%Y-%m-%d}",
        recent_weeks=len(recent),
        learnt_start=f"{start:%Y-%m-%d}",
        learnt_end=f"{end:%Y-%m-%d}",
    )


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
    overlap: TrainingOverlap | None = None
    """Recent weeks the version learnt (None when none): a warning, not a verdict."""

    @property
    def verdict(self) -> str:
        return self.statistics.verdict

    def to_dict(self) -> dict[str, Any]:
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
            "training_overlap": self.overlap.to_dict() if self.overlap else None,
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
            "signals": [s.to_dict() for s in stats.signals],
            "performance": self.performance,
        }


def _read_recent(
    path: Path, columns: list[str], target: str, reading: DatasetConfig
) -> pd.DataFrame:
    return load_weekly_dataset(path, columns, None, optional=(target,), reading=reading).frame


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
    recent = _read_recent(recent_path, columns, target, settings.dataset)
    reference = read_drift_reference(folder, [*columns, target], model.metadata)
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
        overlap=training_overlap(entry.version, model.metadata, reference, recent),
    )
