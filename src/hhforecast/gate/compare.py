"""`hhforecast registry compare A B`: two versions scored on the same weeks, neither seen by either.

Each registry entry's RMSE is measured on that version's own held-out test weeks; two versions
trained on different exports, or split differently, were measured on different weeks and their
RMSEs say nothing about which forecasts better. This scores both on their common fair weeks:
labelled weeks after the last week either was trained on (see `hhforecast.gate.weeks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.config import Settings
from hhforecast.errors import EXIT_CHECK_FAILED, HHForecastError
from hhforecast.gate.integrity import require_integrity
from hhforecast.gate.significance import Significance, diebold_mariano
from hhforecast.gate.validate import forecast, load_version
from hhforecast.gate.weeks import (
    EvaluationDataError,
    EvaluationWeeks,
    FairWeeks,
    disagreeing_weeks,
    fair_weeks,
)
from hhforecast.modeling.artifacts import read_metadata
from hhforecast.registry.store import Registry

__all__ = ["Comparison", "TooFewCommonWeeksError", "compare_versions"]


class TooFewCommonWeeksError(HHForecastError):
    """Two versions share too few unseen labelled weeks to be compared."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, first: str, second: str, weeks: FairWeeks, needed: int) -> None:
        self.count = weeks.count
        until = ", ".join(f"{v} up to {end}" for v, end in weeks.trained_until.items())
        super().__init__(
            f"{first} and {second} cannot be compared fairly: only {weeks.count} of the "
            f"{weeks.offered} {weeks.offered_source} come after {weeks.after}, the last week "
            f"either was trained on ({until}); at least {needed} are needed "
            f"(mlops.min_fair_weeks). Pass labelled weeks after {weeks.after} with --data FILE."
        )


@dataclass(frozen=True)
class Comparison:
    """Two versions' scores on the same fair weeks."""

    versions: tuple[str, str]
    variant: str
    weeks: EvaluationWeeks
    metrics: dict[str, dict[str, float]]
    significance: Significance
    """Diebold–Mariano of the second version against the first: positive when the second erred
    less."""

    @property
    def better(self) -> str | None:
        """The version with the strictly lower RMSE, None on a tie."""
        first, second = (self.metrics[v]["RMSE"] for v in self.versions)
        if first == second:
            return None
        return self.versions[0] if first < second else self.versions[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": list(self.versions),
            "variant": self.variant,
            "weeks": vars(self.weeks),
            "metrics": self.metrics,
            "better": self.better,
            "significance": vars(self.significance),
        }


def compare_versions(
    settings: Settings,
    first: str,
    second: str,
    variant: str | None = None,
    data: Path | None = None,
) -> Comparison:
    """Score two registered versions on the labelled weeks neither was trained on."""
    from hhforecast.modeling.evaluation import regression_metrics

    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant
    if first == second:
        raise EvaluationDataError(f"compare two different versions (got {first} twice)")
    entries = [registry.get(first), registry.get(second)]
    for entry in entries:
        require_integrity(registry.version_dir(entry), entry.version)
    models = [load_version(registry, entry, variant) for entry in entries]
    metadata = [read_metadata(registry.version_dir(entry)) for entry in entries]
    columns = list(dict.fromkeys(f for model in models for f in model.features))
    target = str(metadata[0].get("target", settings.training.target))
    weeks = _common_weeks(settings, (first, second), metadata, columns, target, data)
    if weeks.count < settings.mlops.min_fair_weeks:
        raise TooFewCommonWeeksError(first, second, weeks, settings.mlops.min_fair_weeks)
    frame = weeks.weeks.frame
    y = frame[target].to_numpy(dtype=np.float64)
    metrics, errors = {}, []
    for entry, model in zip(entries, models, strict=True):
        predicted = forecast(model, frame[model.features].to_numpy(dtype=np.float64))
        if not np.isfinite(predicted).all():
            raise EvaluationDataError(
                f"version {entry.version} gives non-finite forecasts on these weeks; run "
                f"`hhforecast validate {entry.version}`"
            )
        metrics[entry.version] = regression_metrics(y, predicted, len(model.features))
        errors.append(predicted - y)
    dates = frame["date"]
    evaluated = EvaluationWeeks(
        source=weeks.weeks.source,
        dataset=weeks.weeks.dataset,
        start=dates.min().strftime("%Y-%m-%d"),
        end=dates.max().strftime("%Y-%m-%d"),
        weeks=len(frame),
    )
    return Comparison((first, second), variant, evaluated, metrics, diebold_mariano(*errors[::-1]))


def _common_weeks(
    settings: Settings,
    names: tuple[str, str],
    metadata: list[dict[str, Any]],
    columns: list[str],
    target: str,
    data: Path | None,
) -> FairWeeks:
    """With --data, its weeks; else the held-out test weeks of whichever version leaves more."""
    pairs = list(zip(names, metadata, strict=True))
    if data is not None:
        return fair_weeks(settings, pairs[0], pairs[1], columns, target, data)
    options = []
    for own, other in (pairs, pairs[::-1]):
        try:
            weeks = fair_weeks(settings, own, other, columns, target, None, check_labels=False)
            options.append(weeks)
        except EvaluationDataError:
            continue  # that version's test weeks cannot be re-read; the other's may
    if not options:
        # Raises, saying why neither version's test weeks can be read.
        return fair_weeks(settings, pairs[1], pairs[0], columns, target, None, check_labels=False)
    if len(options) == 2:
        _check_labels_agree(options[0], options[1], target)
    return max(options, key=lambda weeks: weeks.count)


def _check_labels_agree(first: FairWeeks, second: FairWeeks, target: str) -> None:
    """Two datasets that give the same week different realised HH cannot both be the truth."""
    differ, shared = disagreeing_weeks(first.weeks.frame, second.weeks.frame, target)
    if differ:
        raise EvaluationDataError(
            f"the datasets of the two versions ({first.weeks.dataset} and "
            f"{second.weeks.dataset}) give different {target} for {differ} of the "
            f"{shared} weeks they share; pass --data FILE with the weeks you trust"
        )
