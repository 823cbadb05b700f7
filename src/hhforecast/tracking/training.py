"""Training with its MLflow mirror: the one use case `hhforecast train` and `retrain` call.

A training run is opened around the fit (nothing at all when tracking is off), the new version
and its metrics are logged to it, and, when the new version serves at once (production follows
"latest"), MLflow's `production` alias follows it. A tracking failure is reported in the outcome;
it never undoes the training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hhforecast.config import Settings
from hhforecast.tracking.runs import RunOutcome, training_run
from hhforecast.tracking.sync import mirror_serving

if TYPE_CHECKING:
    from hhforecast.datasets.weekly import WeeklyDataset
    from hhforecast.modeling.training import EpochCallback, TrainedVersion

__all__ = ["TrackedTraining", "train_tracked"]


@dataclass(frozen=True)
class TrackedTraining:
    """A version trained and registered, and what tracking did with it."""

    result: TrainedVersion
    run: RunOutcome


def train_tracked(
    settings: Settings,
    dataset_path: Path | None,
    version: str | None,
    *,
    command: str = "train",
    force: bool = False,
    on_epoch: EpochCallback | None = None,
    dataset: WeeklyDataset | None = None,
) -> TrackedTraining:
    """Train and register a version inside a tracking run; move the alias if it serves."""
    from hhforecast.modeling.training import train_version

    with training_run(settings, command) as run:
        result = train_version(
            settings,
            dataset_path,
            version,
            force=force,
            on_epoch=on_epoch,
            dataset=dataset,
            extra_metadata=run.metadata,
        )
        run.record(result)
    if result.serving:  # production follows "latest": MLflow's alias follows the new version
        mirror_serving(settings, run.outcome, result.entry.version)
    return TrackedTraining(result, run.outcome)
