"""The promotion history: one record per move of the production pointer."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any


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
