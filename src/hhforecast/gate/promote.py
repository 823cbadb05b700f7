"""Moving production: `promote` (optionally through the RMSE gate) and `rollback`.

A gated promotion reads top-down: resolve the candidate and production entries, pick the fair
weeks (labelled weeks after the last week either version was trained on; at least
``mlops.min_fair_weeks`` of them), validate the candidate on them (integrity, load, finite
forecasts, scores beside production and the baselines, a Diebold–Mariano test), apply the rule
(strictly lower RMSE; with `require_significant`, also a significant test), then let the registry
move the pointer under its lock, re-checking the artifacts there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hhforecast.config import Settings
from hhforecast.errors import (
    EXIT_CHECK_FAILED,
    ArtifactError,
    HHForecastError,
    VersionNotFoundError,
)
from hhforecast.gate.integrity import require_integrity
from hhforecast.gate.validate import ValidationReport, validate_version
from hhforecast.gate.weeks import FairWeeks, LabelledWeeks, fair_weeks
from hhforecast.modeling.artifacts import read_metadata
from hhforecast.registry.history import PromotionRecord
from hhforecast.registry.store import ModelVersion, ProductionMovedError, Registry

if TYPE_CHECKING:
    from hhforecast.tracking.sync import MirrorOutcome

__all__ = [
    "NotEnoughFairWeeksError",
    "PromotionRefusedError",
    "PromotionResult",
    "ValidationFailedError",
    "promote",
    "rollback",
]

PROMOTE_ATTEMPTS = 3


class ValidationFailedError(HHForecastError):
    """A candidate failed validation, so it is not promoted."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(
            f"version {report.version} failed validation and was not promoted: "
            f"{'; '.join(report.failures)}. Run `hhforecast validate {report.version}` for details."
        )


class PromotionRefusedError(HHForecastError):
    """The gate said no: the candidate's RMSE is not lower than production's on the same weeks."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ValidationReport, level: float | None = None) -> None:
        self.report = report
        weeks = report.weeks
        where = (
            f"the {weeks.weeks} evaluation weeks {weeks.start} to {weeks.end} ({weeks.source})"
            if weeks
            else "the evaluation weeks"
        )
        rmses = (
            f"its RMSE {_num(report.candidate_rmse)} on {where} against production "
            f"{report.production}'s RMSE {_num(report.production_rmse)} ({report.variant})"
        )
        test = report.significance.describe() if report.significance else "no test"
        if level is None:
            why = f"{rmses} is not lower ({test})"
        else:
            why = f"{rmses} is lower, but not significantly so: {test}, above the level {level:g}"
        super().__init__(
            f"refused to promote {report.version}: {why}. Production and the config file were "
            "left unchanged."
        )


class NotEnoughFairWeeksError(HHForecastError):
    """Too few labelled weeks are unseen by both versions to tell which forecasts better."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, version: str, production: str, weeks: FairWeeks, needed: int) -> None:
        self.weeks = weeks
        self.count = weeks.count
        until = ", ".join(f"{v} up to {end}" for v, end in weeks.trained_until.items())
        super().__init__(
            f"refused to promote {version}: only {weeks.count} of the {weeks.offered} "
            f"{weeks.offered_source} come after {weeks.after}, the last week "
            f"either version was trained on ({until}); at least {needed} are needed to compare "
            f"it fairly with production {production} (mlops.min_fair_weeks). Pass newer "
            f"labelled weeks, after {weeks.after}, with --data FILE. Production and the config "
            "file were left unchanged."
        )


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.1f}"


@dataclass(frozen=True)
class PromotionResult:
    """A recorded move of production, and the validation behind it (when the gate ran).

    `record` is None when the version was already the pinned production version: nothing was
    written."""

    record: PromotionRecord | None
    version: str
    report: ValidationReport | None = None
    mlflow: MirrorOutcome | None = None
    """With MLflow tracking on: the `production` aliases moved, or why they could not be."""


def _significant(report: ValidationReport, level: float) -> bool:
    test = report.significance
    return test is not None and test.p_value is not None and test.p_value <= level


def _fair_weeks(
    settings: Settings, version: str, variant: str, data: Path | LabelledWeeks | None
) -> FairWeeks | None:
    """The weeks to judge `version` against production on; None when production cannot be
    scored at all (none, unregistered, not hhforecast's), which validation reports."""
    registry = Registry(settings)
    try:
        production = registry.production_version()
    except VersionNotFoundError:
        return None
    if production is None or production.version == version:
        return None
    try:
        theirs = read_metadata(registry.version_dir(production))
        ours = read_metadata(registry.version_dir(version))
    except ArtifactError:
        return None
    if variant not in theirs.get("variants", {}) or variant not in ours.get("variants", {}):
        return None
    columns = [
        *ours["variants"][variant].get("features", []),
        *theirs["variants"][variant].get("features", []),
    ]
    target = str(ours.get("target", settings.training.target))
    weeks = fair_weeks(
        settings,
        (version, ours),
        (production.version, theirs),
        list(dict.fromkeys(columns)),
        target,
        data,
    )
    if weeks.count < settings.mlops.min_fair_weeks:
        raise NotEnoughFairWeeksError(
            version, production.version, weeks, settings.mlops.min_fair_weeks
        )
    return weeks


def _with_current_pointer(settings: Settings) -> Settings:
    # Another promotion may have moved production since these settings were loaded.
    return replace(settings, mlops=settings.reloaded().mlops)


def _integrity_verifier(registry: Registry) -> Callable[[ModelVersion], None]:
    """The check the registry runs, under its lock, on the version about to be production."""

    def verify(entry: ModelVersion) -> None:
        require_integrity(registry.version_dir(entry), entry.version)

    return verify


def promote(
    settings: Settings,
    version: str,
    *,
    require_better_rmse: bool = False,
    require_significant: bool = False,
    variant: str | None = None,
    data: Path | LabelledWeeks | None = None,
    reason: str = "",
) -> PromotionResult:
    """Move production to `version`; with the gate, only if its RMSE beats production's on
    fair weeks (and, with `require_significant`, by a significant Diebold–Mariano test)."""
    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant
    registry.get(version)
    verify = _integrity_verifier(registry)

    if not (require_better_rmse or require_significant):
        record = registry.move_production(version, variant=variant, reason=reason, verify=verify)
        return _mirrored(settings, PromotionResult(record, version))
    for attempt in range(1, PROMOTE_ATTEMPTS + 1):
        current = _with_current_pointer(settings)
        if current.mlops.production_version == version:
            return PromotionResult(None, version)  # already there; the registry checks again
        weeks = _fair_weeks(current, version, variant, data)
        report = validate_version(current, version, variant, weeks.weeks if weeks else data)
        if not report.passed:
            raise ValidationFailedError(report)
        if report.better_than_production is False:
            raise PromotionRefusedError(report)
        level = settings.mlops.significance_level
        if (
            require_significant
            and report.better_than_production
            and not _significant(report, level)
        ):
            raise PromotionRefusedError(report, level)
        try:
            record = registry.move_production(
                version,
                variant=variant,
                reason=reason,
                gate="require-better-rmse",
                comparison=report.comparison(),
                verify=verify,
            )
        except ProductionMovedError:
            if attempt == PROMOTE_ATTEMPTS:
                raise
            continue
        return _mirrored(settings, PromotionResult(record, version, report))
    raise AssertionError("unreachable")  # the loop returns or raises


def rollback(settings: Settings, reason: str = "") -> PromotionResult:
    """Put the previous production version back; recorded as a promotion with reason rollback."""
    registry = Registry(settings)
    verify = _integrity_verifier(registry)

    record = registry.rollback(
        variant=settings.mlops.serve_variant,
        reason=f"rollback: {reason}" if reason else "rollback",
        verify=verify,
    )
    return _mirrored(settings, PromotionResult(record, record.to_version))


def _mirrored(settings: Settings, result: PromotionResult) -> PromotionResult:
    """The local move is done; with tracking on, move MLflow's `production` alias too (a
    failure there is reported in the result, never undoes the local move)."""
    from hhforecast.tracking.client import tracking_enabled

    if result.record is None or not tracking_enabled(settings):
        return result
    from hhforecast.tracking.sync import mirror_promotion

    return replace(result, mlflow=mirror_promotion(settings, result.record))
