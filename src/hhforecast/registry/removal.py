"""`hhforecast registry remove`: a version's folder and its entry go together, and the history
records it. Production and the version `rollback` would return to are never removed."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from hhforecast.config import Settings
from hhforecast.errors import RegistryError, VersionNotFoundError
from hhforecast.registry.history import PromotionRecord, RmseComparison, new_record
from hhforecast.registry.store import STAGING_PREFIX, Registry

__all__ = ["Removal", "RemovalRefusedError", "remove_version"]


class RemovalRefusedError(RegistryError):
    """The version is needed: it serves, or `rollback` would return to it."""

    def __init__(self, version: str, why: str) -> None:
        super().__init__(f"version {version} was not removed: {why}. Nothing was changed.")


@dataclass(frozen=True)
class Removal:
    """What `remove_version` did."""

    record: PromotionRecord
    folder: Path | None
    """The folder deleted with the entry; None when the entry had none (or an unsound path,
    which is never followed)."""


def remove_version(settings: Settings, version: str, reason: str = "") -> Removal:
    """Remove a version's entry and folder under the registry lock, recorded in the history.

    The folder is first renamed aside (``models/.staging-old-*``), then the registry is written,
    then the folder deleted: a kill before the registry write leaves the entry and a folder that
    `registry check --fix` moves back; a kill after it leaves only a leftover folder.
    """
    registry = Registry(settings)
    with registry.locked():
        document = registry.read_document()
        entry = next((v for v in document.versions if v.version == version), None)
        if entry is None:
            raise VersionNotFoundError(version, [v.version for v in document.versions])
        setting, current, previous = registry.production_state(document)
        if version == current:
            raise RemovalRefusedError(
                version, "it is the production version; promote another version first"
            )
        if version == document.challenger:
            raise RemovalRefusedError(
                version,
                "it is the challenger; clear it first (hhforecast registry clear-challenger)",
            )
        if version == previous:
            raise RemovalRefusedError(
                version,
                f"it is the version `hhforecast rollback` would return to (it served before "
                f"{current})",
            )
        folder = registry.models_dir / version if registry.entry_problem(entry) is None else None
        aside = None
        if folder is not None and folder.exists():
            aside = registry.models_dir / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:12]}"
            os.replace(folder, aside)
        # `from` and `to` both name the removed version: a removal moves no pointer.
        record = new_record(
            "remove",
            (version, setting),
            version,
            settings.mlops.serve_variant,
            reason,
            "",
            RmseComparison(current, None, None, f"version {version} removed"),
        )
        document.versions = [v for v in document.versions if v.version != version]
        document.history.append(record.to_entry())
        try:
            registry.write_document(document)
        except BaseException:
            if aside is not None and folder is not None:
                os.replace(aside, folder)
            raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return Removal(record, folder if aside is not None else None)
