"""`hhforecast retrain`: train on the latest export, promote only if it beats production fairly.

The scheduled retraining the seed asks for, in one command a scheduler can run:

1. With ``production_version: "latest"`` a new training would serve at once, before any
   comparison; so production is first pinned to the version serving now (recorded in the
   history). The pointer is pinned from then on.
2. A new version is trained on the dataset and registered, as `train` does.
3. The candidate and production are compared on **fair weeks**: the candidate's held-out test
   weeks that come after every week production was trained on. Neither model has seen them, so
   the better RMSE there is the better forecaster of the future, not the one that remembers.
4. With at least ``MIN_FAIR_WEEKS`` fair weeks, `promote --require-better-rmse` runs on exactly
   those weeks (integrity, finite forecasts, strictly lower RMSE); otherwise production stays.

Production only moves to a version that won on weeks neither version trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hhforecast.config import Settings
from hhforecast.datasets.weekly import dataset_label, load_training_dataset
from hhforecast.gate.promote import PromotionRefusedError, ValidationFailedError, promote
from hhforecast.gate.weeks import LabelledWeeks, fair_weeks
from hhforecast.modeling.artifacts import read_metadata
from hhforecast.modeling.training import EpochCallback, train_version
from hhforecast.registry.store import LATEST, ModelVersion, Registry

__all__ = ["MIN_FAIR_WEEKS", "RetrainOutcome", "retrain"]

MIN_FAIR_WEEKS = 8
"""Fewer weeks than this cannot tell two models apart; production then stays."""


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retraining did: the version it trained, and whether production moved to it."""

    version: str
    promoted: bool
    production: str | None
    """The production version after the retraining."""
    previous: str | None
    """The production version before it."""
    why: str
    fair_weeks: int
    candidate_rmse: float | None = None
    production_rmse: float | None = None
    pinned: bool = False
    """Whether production was pinned from "latest" to its version before training."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def retrain(
    settings: Settings,
    dataset_path: Path | None = None,
    version: str | None = None,
    reason: str = "",
    on_epoch: EpochCallback | None = None,
) -> RetrainOutcome:
    """Pin production if it follows "latest", train, then promote only on a fair win."""
    registry = Registry(settings)
    registry.check_can_publish(version)
    # Bad input is found before anything changes: the dataset is checked before the pin.
    dataset = load_training_dataset(settings, dataset_path)
    previous = registry.production_version()
    variant = settings.mlops.serve_variant
    pinned = False
    if previous is not None and registry.production_setting().lower() == LATEST:
        registry.move_production(
            previous.version, variant=variant, reason="retrain: pinned before training"
        )
        pinned = True
        settings = settings.reloaded()
    # The rows checked above are the ones trained on and judged on: the file is read once.
    trained = train_version(settings, dataset_path, version, on_epoch=on_epoch, dataset=dataset)
    candidate = trained.entry.version
    production_metadata = _metadata_of(registry, previous)
    weeks = fair_weeks(dataset.frame, trained.metadata, production_metadata)
    if previous is not None and len(weeks) < MIN_FAIR_WEEKS:
        return RetrainOutcome(
            candidate,
            False,
            previous.version,
            previous.version,
            f"only {len(weeks)} of {candidate}'s test weeks come after the weeks production "
            f"{previous.version} was trained on (at least {MIN_FAIR_WEEKS} are needed to "
            "compare them fairly); production stays. Retrain on an export with newer weeks, "
            f"or compare them yourself: hhforecast validate {candidate} --data FILE",
            len(weeks),
            pinned=pinned,
        )
    before = previous.version if previous else None
    label = dataset_label(dataset.path, settings.base_dir)
    data = LabelledWeeks(weeks, f"the fair weeks of {label}", label)
    try:
        promoted = promote(
            settings, candidate, require_better_rmse=True, data=data, reason=reason or "retrain"
        )
    except (PromotionRefusedError, ValidationFailedError) as refused:
        return RetrainOutcome(
            candidate,
            False,
            before,
            before,
            str(refused),
            len(weeks),
            refused.report.candidate_rmse,
            refused.report.production_rmse,
            pinned,
        )
    scores = promoted.report
    return RetrainOutcome(
        candidate,
        True,
        candidate,
        before,
        f"{candidate} forecast the {len(weeks)} fair weeks better than "
        f"{before or 'nothing (there was no production version)'}",
        len(weeks),
        scores.candidate_rmse if scores else None,
        scores.production_rmse if scores else None,
        pinned,
    )


def _metadata_of(registry: Registry, entry: ModelVersion | None) -> dict[str, Any] | None:
    """Production's metadata; None when there is none, or when the original system trained it
    (its training weeks are unknown, and hhforecast cannot serve it anyway)."""
    if entry is None:
        return None
    metadata = read_metadata(registry.version_dir(entry))
    return metadata if "variants" in metadata else None
