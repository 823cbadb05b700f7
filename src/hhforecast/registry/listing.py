"""`registry list`: the newest versions, and those that matter whatever their age.

One snapshot of registry.json and the pointer; no version folder is read. With thousands of
versions (a daily retrain for years) the list shows the newest N, plus production, the challenger
and the version `rollback` would return to, wherever they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hhforecast.errors import VersionNotFoundError
from hhforecast.registry.entries import ModelVersion
from hhforecast.registry.history import NoRollbackTargetError, PromotionRecord, previous_production
from hhforecast.registry.store import Registry

__all__ = ["RegistryListing", "list_registry"]


@dataclass(frozen=True)
class RegistryListing:
    """The versions to show, oldest first, and what they are."""

    shown: list[ModelVersion]
    total: int
    production: str | None
    challenger: str | None
    rollback: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


def list_registry(registry: Registry, limit: int | None) -> RegistryListing:
    """The newest `limit` versions (None: all) and production, the challenger, the rollback
    target, from one snapshot."""
    snapshot = registry.snapshot()
    warnings = []
    try:
        entry = snapshot.production()
        production = entry.version if entry else None
    except VersionNotFoundError as exc:
        warnings.append(str(exc))
        production = None
    records = [PromotionRecord.from_entry(e) for e in snapshot.history]
    try:
        rollback = previous_production(records, production) if production else None
    except NoRollbackTargetError:
        rollback = None
    versions = list(snapshot.versions)
    keep = {name for name in (production, snapshot.challenger, rollback) if name}
    newest = {v.version for v in versions[-limit:]} if limit is not None else None
    shown = [v for v in versions if newest is None or v.version in newest or v.version in keep]
    return RegistryListing(
        shown, len(versions), production, snapshot.challenger, rollback, warnings
    )
