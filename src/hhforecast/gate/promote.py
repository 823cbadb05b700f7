"""Moving production: `promote` (optionally through the RMSE gate) and `rollback`.

A promotion reads top-down: resolve the registry entry, validate the candidate (integrity, load,
finite forecasts, scores on the evaluation weeks beside production), apply the gate's rule, then
let the registry move the pointer under its lock, re-checking the artifacts there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hhforecast.config import Settings
from hhforecast.errors import EXIT_CHECK_FAILED, HHForecastError
from hhforecast.gate.integrity import require_integrity
from hhforecast.gate.validate import ValidationReport, validate_version
from hhforecast.gate.weeks import LabelledWeeks
from hhforecast.registry.history import PromotionRecord
from hhforecast.registry.store import ModelVersion, ProductionMovedError, Registry

__all__ = [
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

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        weeks = report.weeks
        where = (
            f"the {weeks.weeks} evaluation weeks {weeks.start} to {weeks.end} ({weeks.source})"
            if weeks
            else "the evaluation weeks"
        )
        super().__init__(
            f"refused to promote {report.version}: its RMSE {_num(report.candidate_rmse)} on "
            f"{where} is not lower than production {report.production}'s RMSE "
            f"{_num(report.production_rmse)} ({report.variant}). Production and the config file "
            "were left unchanged."
        )


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.1f}"


@dataclass(frozen=True)
class PromotionResult:
    """A recorded move of production, and the validation behind it (when the gate ran)."""

    record: PromotionRecord
    report: ValidationReport | None = None


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
    variant: str | None = None,
    data: Path | LabelledWeeks | None = None,
    reason: str = "",
) -> PromotionResult:
    """Move production to `version`; with the gate, only if its RMSE beats production's."""
    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant
    registry.get(version)
    verify = _integrity_verifier(registry)

    if not require_better_rmse:
        record = registry.move_production(version, variant=variant, reason=reason, verify=verify)
        return PromotionResult(record)
    for attempt in range(1, PROMOTE_ATTEMPTS + 1):
        report = validate_version(_with_current_pointer(settings), version, variant, data)
        if not report.passed:
            raise ValidationFailedError(report)
        if report.better_than_production is False:
            raise PromotionRefusedError(report)
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
        return PromotionResult(record, report)
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
    return PromotionResult(record)
