"""Naming the challenger: a version checked as a promotion checks it, then named in registry.json.

The challenger forecasts beside production (every forecast logged for production is computed by
it too), so that `monitor` can compare the two on realised weeks and a gated promotion can judge
it on forecasts it made before its weeks happened. With MLflow tracking on, the `challenger`
alias follows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hhforecast.config import Settings
from hhforecast.gate.handle import DatasetCache, open_entry
from hhforecast.registry.challenger import set_challenger
from hhforecast.registry.history import PromotionRecord
from hhforecast.registry.store import ModelVersion, Registry

if TYPE_CHECKING:
    from hhforecast.tracking.sync import MirrorOutcome

__all__ = ["ChallengerResult", "clear_challenger", "name_challenger"]


@dataclass(frozen=True)
class ChallengerResult:
    """The challenger after the command (None: there is none) and the record written, if any."""

    challenger: str | None
    record: PromotionRecord | None
    mlflow: MirrorOutcome | None = None


def name_challenger(
    settings: Settings, version: str, *, variant: str | None = None, reason: str = ""
) -> ChallengerResult:
    """Name `version` the challenger once its metadata, artifacts and served variant check out."""
    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant

    def verify(entry: ModelVersion, _production: ModelVersion | None) -> None:
        handle = open_entry(registry, entry, DatasetCache(settings))
        handle.require_integrity()
        handle.model(variant)  # never a challenger the service could not load

    record = set_challenger(registry, version, variant=variant, reason=reason, verify=verify)
    return _mirrored(settings, ChallengerResult(version, record))


def clear_challenger(settings: Settings, reason: str = "") -> ChallengerResult:
    """Stop the challenger forecasting beside production (recorded); nothing if there is none."""
    registry = Registry(settings)
    variant = settings.mlops.serve_variant
    record = set_challenger(registry, None, variant=variant, reason=reason)
    return _mirrored(settings, ChallengerResult(None, record))


def _mirrored(settings: Settings, result: ChallengerResult) -> ChallengerResult:
    from hhforecast.tracking.client import tracking_enabled

    if result.record is None or not tracking_enabled(settings):
        return result
    from hhforecast.tracking.sync import mirror_challenger

    return replace(result, mlflow=mirror_challenger(settings, result.challenger))
