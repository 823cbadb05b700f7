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
from hhforecast.gate.handle import DatasetCache, VersionHandle, open_version
from hhforecast.gate.significance import PairScore, Significance, score_pair
from hhforecast.gate.validate import forecast
from hhforecast.gate.weeks import (
    EvaluationDataError,
    EvaluationWeeks,
    FairWeeks,
    describe_disagreement,
    disagreeing_weeks,
    fair_weeks,
)
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
    pair: PairScore
    """The second version judged against the first (the one rule of `score_pair`)."""

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {self.versions[0]: self.pair.reference, self.versions[1]: self.pair.candidate}

    @property
    def significance(self) -> Significance:
        """Diebold–Mariano of the second version against the first: positive when the second
        erred less."""
        return self.pair.significance

    @property
    def better(self) -> str | None:
        """The version with the strictly lower RMSE, None on a tie."""
        if self.pair.tie:
            return None
        return self.versions[1] if self.pair.candidate_better else self.versions[0]

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
    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant
    if first == second:
        raise EvaluationDataError(f"compare two different versions (got {first} twice)")
    snapshot = registry.snapshot()
    datasets = DatasetCache(settings)
    handles = [open_version(registry, snapshot, name, datasets) for name in (first, second)]
    for handle in handles:
        handle.require_integrity()
    models = [handle.model(variant) for handle in handles]
    columns = list(dict.fromkeys(f for model in models for f in model.features))
    target = handles[0].target
    weeks = _common_weeks(settings, handles, columns, target, data)
    if weeks.count < settings.mlops.min_fair_weeks:
        raise TooFewCommonWeeksError(first, second, weeks, settings.mlops.min_fair_weeks)
    frame = weeks.weeks.frame
    y = frame[target].to_numpy(dtype=np.float64)
    predicted = []
    for handle, model in zip(handles, models, strict=True):
        values = forecast(model, frame[model.features].to_numpy(dtype=np.float64))
        if not np.isfinite(values).all():
            raise EvaluationDataError(
                f"version {handle.name} gives non-finite forecasts on these weeks; run "
                f"`hhforecast validate {handle.name}`"
            )
        predicted.append(values)
    # The second version is the candidate against the first, as in "compare OLD NEW".
    pair = score_pair(
        y, predicted[1], predicted[0], (len(models[1].features), len(models[0].features))
    )
    dates = frame["date"]
    evaluated = EvaluationWeeks(
        source=weeks.weeks.source,
        dataset=weeks.weeks.dataset,
        start=dates.min().strftime("%Y-%m-%d"),
        end=dates.max().strftime("%Y-%m-%d"),
        weeks=len(frame),
    )
    return Comparison((first, second), variant, evaluated, pair)


def _common_weeks(
    settings: Settings,
    handles: list[VersionHandle],
    columns: list[str],
    target: str,
    data: Path | None,
) -> FairWeeks:
    """With --data, its weeks; else the held-out test weeks of whichever version leaves more."""
    if data is not None:
        return fair_weeks(settings, handles[0], handles[1], columns, target, data)
    options = []
    for own, other in (handles, handles[::-1]):
        try:
            weeks = fair_weeks(settings, own, other, columns, target, None, check_labels=False)
            options.append(weeks)
        except EvaluationDataError:
            continue  # that version's test weeks cannot be re-read; the other's may
    if not options:
        # Raises, saying why neither version's test weeks can be read.
        return fair_weeks(
            settings, handles[1], handles[0], columns, target, None, check_labels=False
        )
    if len(options) == 2:
        _check_weeks_agree(options[0], options[1], [*columns, target])
    return max(options, key=lambda weeks: weeks.count)


def _check_weeks_agree(first: FairWeeks, second: FairWeeks, columns: list[str]) -> None:
    """Two datasets that give the same week different values cannot both be the truth."""
    found = disagreeing_weeks(first.weeks.frame, second.weeks.frame, columns)
    if found:
        raise EvaluationDataError(
            f"the datasets of the two versions ({first.weeks.dataset} and "
            f"{second.weeks.dataset}) disagree on the weeks they share "
            f"({describe_disagreement(found)}); pass --data FILE with the weeks you trust"
        )
