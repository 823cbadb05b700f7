"""`hhforecast retrain`: train on the latest export, promote only if it beats production fairly.

The scheduled retraining the seed asks for, in one command a scheduler can run:

1. With ``production_version: "latest"`` a new training would serve at once, before any
   comparison; so production is first pinned to the version serving now (recorded in the
   history). The pointer is pinned from then on.
2. A new version is trained on the dataset and registered, as `train` does.
3. `promote --require-better-rmse` judges the candidate against production on **fair weeks**:
   the candidate's held-out test weeks that come after every week production was trained on.
   Neither model has seen them, so the better RMSE there is the better forecaster of the future,
   not the one that remembers. With fewer than ``mlops.min_fair_weeks`` of them, or no win,
   production stays.

Production only moves to a version that won on weeks neither version trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hhforecast.config import Settings
from hhforecast.datasets.weekly import DATE_COLUMN, dataset_label, load_training_dataset
from hhforecast.gate.promote import (
    NotEnoughFairWeeksError,
    ProductionUnscoredError,
    PromotionRefusedError,
    PromotionResult,
    ValidationFailedError,
    promote,
)
from hhforecast.gate.weeks import EvaluationDataError, LabelledWeeks
from hhforecast.modeling.training import EpochCallback
from hhforecast.registry.store import Registry
from hhforecast.tracking.training import train_tracked

__all__ = ["RetrainOutcome", "retrain"]


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
    mlflow: dict[str, Any] | None = None
    """With tracking on: the training's run, and the promotion's alias moves."""
    challenger: bool = False
    """Whether the new version was named the challenger (it could not be judged yet)."""

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        if data["mlflow"] is None:  # tracking off: the output is as it was without MLflow
            del data["mlflow"]
        return data

    def mlflow_warnings(self) -> list[str]:
        """What tracking could not do (training and promotion happened regardless)."""
        if self.mlflow is None:
            return []
        found = [self.mlflow.get("run", {}), self.mlflow.get("promotion") or {}]
        return [str(part["problem"]) for part in found if part.get("problem")]


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
    variant = settings.mlops.serve_variant
    pin = registry.pin_production(variant=variant, reason="retrain: pinned before training")
    pinned = pin is not None
    if pinned:
        settings = settings.reloaded()
    previous = Registry(settings).production_version()
    # The rows checked above are the ones trained on and judged on: the file is read once.
    tracked_training = train_tracked(
        settings, dataset_path, version, command="retrain", on_epoch=on_epoch, dataset=dataset
    )
    trained, outcome = tracked_training.result, tracked_training.run
    tracked = {"run": outcome.to_dict()} if outcome.tracking else None
    candidate = trained.entry.version
    before = previous.version if previous else None
    test = trained.metadata["split"]["test"]
    dates = dataset.frame[DATE_COLUMN]
    held_out = dataset.frame[
        (dates >= pd.Timestamp(test["start"])) & (dates <= pd.Timestamp(test["end"]))
    ]
    label = dataset_label(dataset.path, settings.base_dir)
    data = LabelledWeeks(held_out, f"held-out test weeks of {candidate}", label)
    try:
        promoted = promote(
            settings, candidate, require_better_rmse=True, data=data, reason=reason or "retrain"
        )
    except NotEnoughFairWeeksError as few:
        # No week is unseen by both (a fit refit on every week learnt them all): the candidate
        # earns its evidence as the challenger, forecasting beside production from now on.
        named = _challenge(settings, candidate, before)
        return RetrainOutcome(
            candidate,
            False,
            before,
            before,
            f"{few} Production stays. {named}",
            few.count,
            pinned=pinned,
            mlflow=tracked,
            challenger=named.startswith(f"{candidate} is now the challenger"),
        )
    except EvaluationDataError as unsure:
        return RetrainOutcome(
            candidate,
            False,
            before,
            before,
            f"{unsure}. Production stays.",
            0,
            pinned=pinned,
            mlflow=tracked,
        )
    except (PromotionRefusedError, ValidationFailedError, ProductionUnscoredError) as refused:
        weeks = refused.report.weeks
        return RetrainOutcome(
            candidate,
            False,
            before,
            before,
            str(refused),
            weeks.weeks if weeks else 0,
            refused.report.candidate_rmse,
            refused.report.production_rmse,
            pinned,
            tracked,
        )
    scores = promoted.report
    count = scores.weeks.weeks if scores and scores.weeks else 0
    return RetrainOutcome(
        candidate,
        True,
        candidate,
        before,
        f"{candidate} forecast the {count} fair weeks better than "
        f"{before or 'nothing (there was no production version)'}",
        count,
        scores.candidate_rmse if scores else None,
        scores.production_rmse if scores else None,
        pinned,
        None if tracked is None else {**tracked, "promotion": _mirror(promoted)},
    )


def _challenge(settings: Settings, candidate: str, production: str | None) -> str:
    """Name the candidate the challenger; the sentence the outcome says about it."""
    from hhforecast.errors import HHForecastError
    from hhforecast.gate.challenger import name_challenger

    if production is None:
        return ""
    try:
        name_challenger(settings, candidate, reason="retrain: to be judged on the weeks ahead")
    except HHForecastError as exc:
        return f"{candidate} could not be named the challenger: {exc}"
    return (
        f"{candidate} is now the challenger: it forecasts beside production, and once "
        f"mlops.min_fair_weeks of those weeks are realised (monitor --actuals keeps them), "
        f"`hhforecast promote {candidate} --require-better-rmse` judges it on them."
    )


def _mirror(promoted: PromotionResult) -> dict[str, Any] | None:
    return promoted.mlflow.to_dict() if promoted.mlflow is not None else None
