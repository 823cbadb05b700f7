"""The model registry: the one module that reads and writes ``registry.json``.

Layout on disk (compatible with the original system)::

    models/
      registry.json        {"versions": [{version, trained_at, path, dataset,
                                          metrics_5features, metrics_4features, ...}],
                            "history": [...promotions...]}
      <version>/           one folder per version with its artifacts and model_metadata.json

Every change is a read-modify-write of the whole file under a file lock, written to a temporary
file and moved into place with ``os.replace``, so readers see the old file or the new one and two
writers never lose each other's entries. A version folder is built in a hidden staging folder and
renamed into place whole. Nothing here imports TensorFlow or pandas.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from hhforecast._fs import atomic_write_bytes, atomic_write_text
from hhforecast.config import Settings
from hhforecast.errors import (
    RegistryCorruptError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)
from hhforecast.registry.entries import (
    LATEST,
    BadEntryError,
    ModelVersion,
    Publication,
    RegistryDocument,
    check_version_name,
    entry_problem,
    registry_fields,
)
from hhforecast.registry.history import (
    NoRollbackTargetError,
    PromotionRecord,
    RmseComparison,
    new_record,
    previous_production,
)
from hhforecast.registry.pointer import NEW_CONFIG_HEADER, rewrite_production_version
from hhforecast.registry.snapshot import ProductionMovedError, RegistrySnapshot

__all__ = [
    "LATEST",
    "BadEntryError",
    "ModelVersion",
    "ProductionMovedError",
    "Publication",
    "Registry",
    "RegistrySnapshot",
    "check_version_name",
    "registry_fields",
]

LOCK_TIMEOUT_SECONDS = 120.0
Verify = Callable[[ModelVersion, ModelVersion | None], None]
"""A check run under the lock on (the version about to be production, production now)."""
STAGING_PREFIX = ".staging-"


class Registry:
    """Versions on disk and the production pointer, for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.registry_file
        self.models_dir = settings.models_dir
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)

    # -- reading ---------------------------------------------------------------------------

    def read_document(self) -> RegistryDocument:
        if not self.path.exists():
            return RegistryDocument([], [], {})
        try:
            return RegistryDocument.from_json(self.path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise RegistryCorruptError(self.path, "not UTF-8 text") from None
        except ValueError as exc:
            raise RegistryCorruptError(self.path, str(exc)) from None

    def snapshot(self) -> RegistrySnapshot:
        """registry.json and the production pointer as they are now, read once, together."""
        document = self.read_document()
        return RegistrySnapshot(
            tuple(document.versions),
            tuple(document.history),
            self.current_production_setting(),
            self.path,
            self.settings.config_file,
            document.challenger,
        )

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first (the order in which they were added)."""
        return self.read_document().versions

    def history(self) -> list[dict[str, Any]]:
        """Every recorded promotion, oldest first."""
        return self.read_document().history

    def get(self, version: str) -> ModelVersion:
        """The entry of `version`, or VersionNotFoundError."""
        versions = self.versions()
        for entry in versions:
            if entry.version == version:
                return entry
        raise VersionNotFoundError(version, [v.version for v in versions])

    def version_dir(self, entry: ModelVersion | str) -> Path:
        """The folder holding a version's artifacts: models/<version>, or BadEntryError."""
        if isinstance(entry, str):
            entry = self.get(entry)
        problem = self.entry_problem(entry)
        if problem is not None:
            raise BadEntryError(entry.version, self.path, problem)
        return self.models_dir / entry.version

    def entry_problem(self, entry: ModelVersion) -> str | None:
        """Why a registry entry must not be loaded or promoted, or None when it is sound."""
        return entry_problem(entry, self.models_dir, self.settings.base_dir)

    def production_setting(self) -> str:
        """The raw `mlops.production_version` value from the config."""
        return self.settings.mlops.production_version

    def production_version(self) -> ModelVersion | None:
        """The version in production as these settings name it (see RegistrySnapshot)."""
        document = self.read_document()
        setting = self.production_setting()
        return RegistrySnapshot(
            tuple(document.versions), (), setting, self.path, self.settings.config_file
        ).production()

    def require_production_version(self) -> ModelVersion:
        """The production version, or an error telling the user to train one."""
        entry = self.production_version()
        if entry is None:
            raise RegistryError(
                f"no version is registered in {self.path}; run `hhforecast train` first"
            )
        return entry

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's file lock (re-entrant within one process)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                yield
        except Timeout:
            raise RegistryError(
                f"the registry {self.path} stayed locked for {LOCK_TIMEOUT_SECONDS:.0f} s; "
                "another hhforecast command may be stuck. Try again once it has finished."
            ) from None

    def write_document(self, document: RegistryDocument) -> None:
        """Write the whole registry file atomically; hold `locked()` around read and write."""
        atomic_write_text(self.path, document.to_json())

    @contextmanager
    def staging_dir(self) -> Iterator[Path]:
        """A hidden folder beside the versions to build one in; removed unless published."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def check_can_publish(self, version: str | None, force: bool = False) -> None:
        """Fail early (before training) if `version` could not be published; `publish` checks
        again under the lock, since production may move while a version trains."""
        if version is None:
            return
        check_version_name(version)
        document = self.read_document()
        if version in {v.version for v in document.versions}:
            self._check_overwrite(version, force, document)

    def _check_overwrite(self, version: str, force: bool, document: RegistryDocument) -> None:
        """Refuse to replace production or the version rollback would return to."""
        _, current, previous = self.production_state(document)
        if version == current:
            raise VersionExistsError(version, production=True)
        if version == previous:
            raise VersionExistsError(version, rollback_target=current)
        if not force:
            raise VersionExistsError(version)

    def production_state(self, document: RegistryDocument) -> tuple[str, str | None, str | None]:
        """(the raw setting, the production version, the version rollback would return to),
        from the config file as it is now; hold `locked()` to decide on them."""
        setting = self.current_production_setting()
        current = self._resolve(setting, document.versions)
        records = [PromotionRecord.from_entry(entry) for entry in document.history]
        try:
            return setting, current, previous_production(records, current)
        except NoRollbackTargetError:
            return setting, current, None

    def _default_name(self, taken: set[str]) -> str:
        today = date.today().strftime("%Y%m%d")
        name, n = today, 1
        while name in taken or (self.models_dir / name).exists():
            n += 1
            name = f"{today}-{n}"
        return name

    def publish(
        self,
        staging: Path,
        version: str | None,
        entry_fields: dict[str, Any],
        force: bool = False,
        prepare: Callable[[str], None] | None = None,
    ) -> Publication:
        """Move a built version folder into place and append its registry entry, atomically.

        `version` None picks today's date, with a suffix when that name is taken; `prepare`
        is called with the final name before the folder moves. The name
        check, the folder rename and the registry write happen under one lock, so parallel
        trainings get distinct names and every entry survives. Whether the new version now
        serves (production follows "latest") is read under that lock too.
        """
        with self.locked():
            document = self.read_document()
            taken = {v.version for v in document.versions}
            if version is None:
                version = self._default_name(taken)
            else:
                check_version_name(version)
                if version in taken:
                    self._check_overwrite(version, force, document)
            serving = self.current_production_setting().strip().lower() == LATEST
            if prepare is not None:
                prepare(version)
            target = self.models_dir / version
            entry = self._new_entry(version, target, entry_fields)
            replaced = None
            if target.exists():
                # An old folder of the same name (a forced re-train, or one left by a crash
                # before its entry was written) is moved aside and removed once all is written.
                replaced = self.models_dir / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:12]}"
                os.replace(target, replaced)
            os.replace(staging, target)
            try:
                document.versions = [v for v in document.versions if v.version != version]
                document.versions.append(entry)
                self.write_document(document)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                if replaced is not None:
                    os.replace(replaced, target)
                raise
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
            return Publication(entry, serving)

    def register_folder(self, folder: Path, entry_fields: dict[str, Any]) -> ModelVersion:
        """Write the entry of a version folder already in place (named after its version):
        appended, or replacing the entry of that version where it stands."""
        version = check_version_name(folder.name)
        with self.locked():
            document = self.read_document()
            entry = self._new_entry(version, folder, entry_fields)
            names = [v.version for v in document.versions]
            if version in names:
                document.versions[names.index(version)] = entry
            else:
                document.versions.append(entry)
            self.write_document(document)
            return entry

    def _new_entry(self, version: str, target: Path, entry_fields: dict[str, Any]) -> ModelVersion:
        base = self.settings.base_dir
        path = target.relative_to(base).as_posix() if target.is_relative_to(base) else str(target)
        return ModelVersion.from_entry({"version": version, "path": path, **entry_fields}, "entry")

    # -- the production pointer and its history -------------------------------------------

    def promotions(self) -> list[PromotionRecord]:
        """Every recorded move of the production pointer, oldest first."""
        return [PromotionRecord.from_entry(entry) for entry in self.history()]

    def current_production_setting(self) -> str:
        """mlops.production_version as the config file says now (it may have moved since load)."""
        return self.settings.reloaded().mlops.production_version

    @staticmethod
    def _resolve(setting: str, versions: list[ModelVersion]) -> str | None:
        # Lenient on purpose: a pointer naming a vanished version is what a promotion repairs.
        if setting.strip().lower() == LATEST:
            return versions[-1].version if versions else None
        return setting

    def rollback_target(self) -> tuple[str | None, str]:
        """(production now, the different version before it) from the history, or an error."""
        document = self.read_document()
        current = self._resolve(self.current_production_setting(), document.versions)
        records = [PromotionRecord.from_entry(entry) for entry in document.history]
        return current, previous_production(records, current)

    def move_production(
        self,
        version: str,
        *,
        variant: str,
        reason: str,
        gate: str = "integrity",
        comparison: RmseComparison | None = None,
        verify: Verify | None = None,
    ) -> PromotionRecord | None:
        """Point production at `version`, record it in the history, and return the record.

        `verify` is called under the lock with the entry about to be production and the entry
        in production now (None when there is none): it checks that they are the versions that
        were judged, file for file, since neither can be replaced while the lock is held.
        With a `comparison`, production must still be the version it was compared with, else
        ProductionMovedError and nothing changes. When `version` is already the pinned
        production version, nothing is written and None is returned.
        """
        return self._move(lambda: version, "promote", variant, reason, gate, comparison, verify)

    def pin_production(self, *, variant: str, reason: str) -> PromotionRecord | None:
        """If production follows "latest", pin it to the version serving now (recorded); None
        when it is already pinned or nothing is registered. Decided under the lock."""
        with self.locked():
            versions = self.read_document().versions
            if self.current_production_setting().strip().lower() != LATEST or not versions:
                return None
            return self.move_production(versions[-1].version, variant=variant, reason=reason)

    def rollback(
        self,
        *,
        variant: str,
        reason: str,
        verify: Verify | None = None,
    ) -> PromotionRecord:
        """Put back the version that was in production before the current one (recorded too)."""
        record = self._move(
            lambda: self.rollback_target()[1],
            "rollback",
            variant,
            reason,
            "integrity",
            None,
            verify,
        )
        assert record is not None  # the rollback target always differs from production
        return record

    def _move(
        self,
        choose: Callable[[], str],
        action: str,
        variant: str,
        reason: str,
        gate: str,
        comparison: RmseComparison | None,
        verify: Verify | None,
    ) -> PromotionRecord | None:
        with self.locked():
            document = self.read_document()
            setting = self.current_production_setting()
            current = self._resolve(setting, document.versions)
            version = choose()
            target = next((v for v in document.versions if v.version == version), None)
            if target is None:
                raise VersionNotFoundError(version, [v.version for v in document.versions])
            problem = self.entry_problem(target)
            if problem is not None:
                raise BadEntryError(version, self.path, problem)
            if setting == version:
                return None  # already pinned there: a no-op, nothing written
            # The gate compares with a registered production version or with none at all.
            registered = current if any(v.version == current for v in document.versions) else None
            if comparison is not None and comparison.production != registered:
                raise ProductionMovedError(version, comparison.production, registered)
            previous = next((v for v in document.versions if v.version == current), None)
            if verify is not None:
                verify(target, previous)
            config_path = self.settings.config_file
            old_bytes = config_path.read_bytes() if config_path.is_file() else None
            old_text = old_bytes.decode("utf-8") if old_bytes is not None else NEW_CONFIG_HEADER
            new_text = rewrite_production_version(old_text, version, config_path)
            record = new_record(
                action,
                (current, setting),
                target.version,
                variant,
                reason,
                gate,
                comparison
                or RmseComparison(
                    current,
                    previous.metric(variant, "RMSE") if previous is not None else None,
                    target.metric(variant, "RMSE"),
                    "registry metrics: each version's own held-out test weeks",
                ),
            )
            # Order of the two writes: history first, then the pointer. A crash between them
            # leaves production unchanged (the old state for every reader of config.yaml) with
            # one history entry for a move that did not happen. That is harmless: the pointer
            # is the truth, rollback_target() looks for the last entry that put the *current*
            # version in production so it skips the stray one, and re-running the command
            # completes the move. The other order could move production with no record of who
            # did it, which is the one thing the history exists to prevent.
            document.history.append(record.to_entry())
            challenger = document.challenger
            if challenger == version:  # the challenger won: it is production now, not both
                document.challenger = None
            self.write_document(document)
            try:
                if old_bytes is None or new_text.encode("utf-8") != old_bytes:
                    atomic_write_bytes(config_path, new_text.encode("utf-8"))
            except BaseException:
                document.history.pop()
                document.challenger = challenger
                self.write_document(document)
                raise
        mlops = self.settings.mlops.model_copy(update={"production_version": version})
        self.settings = replace(self.settings, mlops=mlops, source=config_path.resolve())
        return record
