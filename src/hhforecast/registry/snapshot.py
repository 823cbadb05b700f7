"""One reading of the registry: its entries and the production pointer, taken together.

A command that judges versions (validate, compare, promote, retrain) reads ``registry.json`` and
the pointer in ``config.yaml`` once, into a `RegistrySnapshot`, and decides on that. Only the move
of the pointer reads them again, under the registry's lock, to check that what was judged is
still what is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hhforecast.errors import RegistryError, VersionNotFoundError
from hhforecast.registry.entries import LATEST, ModelVersion

__all__ = ["ProductionMovedError", "RegistrySnapshot", "VersionChangedError"]


class ProductionMovedError(RegistryError):
    """Production changed between comparing a candidate with it and moving the pointer."""

    def __init__(self, version: str, compared: str | None, now: str | None) -> None:
        self.compared = compared
        self.now = now
        super().__init__(
            f"production moved from {compared or 'nothing'} to {now or 'nothing'} while "
            f"{version} was being compared with it; nothing was changed. Run the command again "
            "to compare with the new production version."
        )


class VersionChangedError(RegistryError):
    """A version judged for promotion was replaced (retrained, edited) before the move."""

    def __init__(self, version: str, role: str, what: str) -> None:
        self.version = version
        super().__init__(
            f"{role} {version} changed while it was being judged ({what}); nothing was "
            "changed. Run the command again to judge the version as it is now."
        )


@dataclass(frozen=True)
class RegistrySnapshot:
    """The versions, the history and the production setting as read at one moment."""

    versions: tuple[ModelVersion, ...]
    history: tuple[dict[str, Any], ...]
    setting: str
    """mlops.production_version as config.yaml said when the snapshot was taken."""
    registry_file: Path
    config_file: Path
    challenger: str | None = None
    """The version named challenger in registry.json, if any."""

    @property
    def names(self) -> list[str]:
        return [v.version for v in self.versions]

    def get(self, version: str) -> ModelVersion:
        """The entry of `version`, or VersionNotFoundError."""
        for entry in self.versions:
            if entry.version == version:
                return entry
        raise VersionNotFoundError(version, self.names)

    @property
    def follows_latest(self) -> bool:
        return self.setting.strip().lower() == LATEST

    def production(self) -> ModelVersion | None:
        """The version in production: the named one, or the newest for 'latest'; None if empty.

        A named version that is not registered is an error, never a silent fallback.
        """
        if self.follows_latest:
            return self.versions[-1] if self.versions else None
        for entry in self.versions:
            if entry.version == self.setting:
                return entry
        raise VersionNotFoundError(
            self.setting, self.names, where=f"mlops.production_version in {self.config_file}"
        )
