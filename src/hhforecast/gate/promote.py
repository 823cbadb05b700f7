"""Moving production: `promote` (optionally through the RMSE gate) and `rollback`.

A gated promotion reads top-down: take one snapshot of the registry and the pointer, open the
candidate and production as handles (entry, folder, metadata verified once), pick the fair weeks
(labelled weeks after the last week either version was trained on; at least
``mlops.min_fair_weeks`` of them, every column of the weeks the candidate's data shares with
production's dataset agreeing with it), validate the candidate on them (integrity, load, finite
forecasts, scores beside production and the baselines, a Diebold–Mariano test), apply the rule
(strictly lower RMSE; with `require_significant`, also a significant test), then let the registry
move the pointer under its lock, where both versions are re-checked file for file: what moves
into production is what was judged, against the production that was judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hhforecast.config import Settings
from hhforecast.errors import EXIT_CHECK_FAILED, HHForecastError
from hhforecast.gate.handle import DatasetCache, VersionHandle, open_entry, open_version
from hhforecast.gate.prospective import prospective_report
from hhforecast.gate.validate import (
    UnreadableProduction,
    ValidationReport,
    judge_handles,
    production_handle,
)
from hhforecast.gate.weeks import FairWeeks, LabelledWeeks, fair_weeks
from hhforecast.registry.history import PromotionRecord
from hhforecast.registry.snapshot import RegistrySnapshot, VersionChangedError
from hhforecast.registry.store import ModelVersion, ProductionMovedError, Registry, Verify

if TYPE_CHECKING:
    from hhforecast.tracking.sync import MirrorOutcome

__all__ = [
    "NotEnoughFairWeeksError",
    "ProductionUnscoredError",
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


class ProductionUnscoredError(HHForecastError):
    """Production exists but cannot be scored, so the gate has nothing fair to compare with."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(
            f"refused to promote {report.version}: {report.production_problem}, so the gate "
            "cannot tell whether the candidate forecasts better. Repair production (`hhforecast "
            "registry check`), or replace it deliberately with `hhforecast promote "
            f"{report.version}` without the gate. Production and the config file were left "
            "unchanged."
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


def _fair_weeks(
    settings: Settings,
    candidate: VersionHandle,
    production: VersionHandle | UnreadableProduction | None,
    variant: str,
    data: Path | LabelledWeeks | None,
) -> FairWeeks | None:
    """The weeks to judge `candidate` against production on; None when production cannot be
    scored at all (none, unreadable, not hhforecast's), which validation reports."""
    if not isinstance(production, VersionHandle) or production.name == candidate.name:
        return None
    if production.metadata_problem is not None:
        return None
    if variant not in production.variants() or variant not in candidate.variants():
        return None
    columns = [
        *candidate.metadata["variants"][variant].get("features", []),
        *production.metadata["variants"][variant].get("features", []),
    ]
    weeks = fair_weeks(
        settings, candidate, production, list(dict.fromkeys(columns)), candidate.target, data
    )
    if weeks.count < settings.mlops.min_fair_weeks:
        raise NotEnoughFairWeeksError(
            candidate.name, production.name, weeks, settings.mlops.min_fair_weeks
        )
    return weeks


def _prospective(
    settings: Settings,
    candidate: VersionHandle,
    production: VersionHandle,
    challenger: str | None,
    variant: str,
) -> ValidationReport | None:
    """The challenger judged on the weeks it forecast before they happened (gate/prospective.py),
    once both versions' files check out; None when there is not enough such evidence."""
    report = prospective_report(settings, candidate, production, challenger, variant)
    if report is None:
        return None
    report.artifacts = candidate.checks()
    problem = candidate.integrity_problem()
    if problem:
        report.failures.append(f"integrity: {problem}")
        raise ValidationFailedError(report)
    candidate.model(variant)
    production.model(variant)  # its files are hashed, for the re-check under the lock
    if report.pair is not None and not report.pair.candidate_better:
        raise PromotionRefusedError(report)
    return report


def _recheck(candidate: VersionHandle, production: VersionHandle | None, variant: str) -> Verify:
    """The check the registry runs under its lock: the version about to be production and the
    production it was compared with are, file for file, the ones judged."""

    def verify(target: ModelVersion, now: ModelVersion | None) -> None:
        candidate.recheck(target, "candidate")
        if production is not None and now is not None and now.version == production.name:
            production.recheck(now, "production", variant)

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
    for attempt in range(1, PROMOTE_ATTEMPTS + 1):
        snapshot = registry.snapshot()
        datasets = DatasetCache(settings)
        candidate = open_version(registry, snapshot, version, datasets)
        try:
            if not (require_better_rmse or require_significant):
                # Never a version a loader would refuse: every file checked, the served variant
                # parsed, before the pointer moves.
                candidate.require_integrity()
                candidate.model(variant)
                record = registry.move_production(
                    version,
                    variant=variant,
                    reason=reason,
                    verify=_recheck(candidate, None, variant),
                )
                return _mirrored(settings, PromotionResult(record, version))
            if snapshot.setting == version:
                return PromotionResult(None, version)  # already there; the registry checks again
            report, production = _judge(
                settings, registry, snapshot, datasets, candidate, variant, data
            )
            if require_significant and report.pair is not None:
                level = settings.mlops.significance_level
                if report.pair.candidate_better and not report.pair.significant(level):
                    raise PromotionRefusedError(report, level)
            record = registry.move_production(
                version,
                variant=variant,
                reason=reason,
                gate="require-better-rmse",
                comparison=report.comparison(),
                verify=_recheck(candidate, production, variant),
            )
        except (ProductionMovedError, VersionChangedError):
            if attempt == PROMOTE_ATTEMPTS:
                raise
            continue
        return _mirrored(settings, PromotionResult(record, version, report))
    raise AssertionError("unreachable")  # the loop returns or raises


def _judge(
    settings: Settings,
    registry: Registry,
    snapshot: RegistrySnapshot,
    datasets: DatasetCache,
    candidate: VersionHandle,
    variant: str,
    data: Path | LabelledWeeks | None,
) -> tuple[ValidationReport, VersionHandle | None]:
    """Validate the candidate beside production on the fair weeks; raise unless it passes and
    beats production there. Returns the report and the production handle that was judged."""
    warnings: list[str] = []
    production = production_handle(registry, snapshot, datasets, warnings)
    if isinstance(production, VersionHandle) and data is None:
        prospective = _prospective(settings, candidate, production, snapshot.challenger, variant)
        if prospective is not None:
            return prospective, production
    weeks = _fair_weeks(settings, candidate, production, variant, data)
    report = judge_handles(settings, candidate, production, variant, weeks.weeks if weeks else data)
    report.warnings[:0] = warnings
    if not report.passed:
        raise ValidationFailedError(report)
    if report.production_problem is not None:
        raise ProductionUnscoredError(report)
    if report.better_than_production is False:
        raise PromotionRefusedError(report)
    return report, production if isinstance(production, VersionHandle) else None


def rollback(settings: Settings, reason: str = "") -> PromotionResult:
    """Put the previous production version back; recorded as a promotion with reason rollback."""
    registry = Registry(settings)
    variant = settings.mlops.serve_variant

    def verify(target: ModelVersion, now: ModelVersion | None) -> None:
        # Under the lock: the version put back is checked whole, as a plain promotion checks it.
        handle = open_entry(registry, target, DatasetCache(settings))
        handle.require_integrity()
        handle.model(variant)

    record = registry.rollback(
        variant=variant,
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
