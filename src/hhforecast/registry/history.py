"""The promotion history: one record per move of the production pointer."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hhforecast.errors import RegistryError


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers and services
        return "unknown"


@dataclass(frozen=True)
class RmseComparison:
    """A candidate's RMSE against the production version's, on the same evaluation weeks."""

    production: str | None
    production_rmse: float | None
    candidate_rmse: float | None
    basis: str


@dataclass(frozen=True)
class PromotionRecord:
    """One move of the production pointer, as kept in registry.json's "history" list."""

    at: str
    action: str
    from_version: str | None
    to_version: str
    from_setting: str
    variant: str
    rmse_from: float | None
    rmse_to: float | None
    rmse_basis: str
    gate: str
    reason: str
    user: str

    @classmethod
    def from_entry(cls, entry: Any) -> PromotionRecord:
        """Read a history entry leniently (entries written by hand may lack fields)."""
        data = entry if isinstance(entry, dict) else {}
        origin = data.get("from")
        return cls(
            at=str(data.get("at", "")),
            action=str(data.get("action", "promote")),
            from_version=None if origin is None else str(origin),
            to_version=str(data.get("to", "")),
            from_setting=str(data.get("from_setting", origin or "")),
            variant=str(data.get("variant", "")),
            rmse_from=_float_or_none(data.get("rmse_from")),
            rmse_to=_float_or_none(data.get("rmse_to")),
            rmse_basis=str(data.get("rmse_basis", "")),
            gate=str(data.get("gate", "")),
            reason=str(data.get("reason", "")),
            user=str(data.get("user", "")),
        )

    def to_entry(self) -> dict[str, Any]:
        """The JSON object written to the history list."""
        return {
            "at": self.at,
            "action": self.action,
            "from": self.from_version,
            "to": self.to_version,
            "from_setting": self.from_setting,
            "variant": self.variant,
            "rmse_from": self.rmse_from,
            "rmse_to": self.rmse_to,
            "rmse_basis": self.rmse_basis,
            "gate": self.gate,
            "reason": self.reason,
            "user": self.user,
        }


MOVES = ("promote", "rollback")
"""Actions that moved the production pointer (a removal is recorded but moves nothing)."""


class NoRollbackTargetError(RegistryError):
    """The history names no earlier, different production version to return to."""


def previous_production(records: list[PromotionRecord], current: str | None) -> str:
    """The version that was in production before `current`, and differs from it.

    Walks back to the last move that put `current` in production. A move from the same version
    (pinning "latest", or a record left by an interrupted promotion) says nothing about what
    came before, so the walk goes on past it.
    """
    moves = [r for r in records if r.action in MOVES]
    found = False
    for record in reversed(moves):
        if record.to_version != current:
            continue
        found = True
        if record.from_version is None:
            break
        if record.from_version != current:
            return record.from_version
    if found:
        raise NoRollbackTargetError(
            f"{current} was the first version put in production; there is no earlier one to "
            "roll back to"
        )
    if not moves:
        raise NoRollbackTargetError(
            "nothing to roll back: no promotion is recorded. Use `hhforecast promote VERSION` "
            "to choose the production version"
        )
    raise NoRollbackTargetError(
        f"production is {current or 'nothing'}, which no recorded promotion put there (was the "
        "config file edited by hand?); use `hhforecast promote VERSION` to choose the "
        "production version"
    )


def new_record(
    action: str,
    moved_from: tuple[str | None, str],
    to_version: str,
    variant: str,
    reason: str,
    gate: str,
    comparison: RmseComparison,
) -> PromotionRecord:
    """The record of a move made now by the current user; `moved_from` is (the version that
    served, the raw production_version setting it was resolved from)."""
    current, setting = moved_from
    return PromotionRecord(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        action=action,
        from_version=current,
        to_version=to_version,
        from_setting=setting,
        variant=variant,
        rmse_from=comparison.production_rmse,
        rmse_to=comparison.candidate_rmse,
        rmse_basis=comparison.basis,
        gate=gate,
        reason=reason,
        user=current_user(),
    )
