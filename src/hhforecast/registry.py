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

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from hhforecast.config import Settings
from hhforecast.errors import (
    RegistryCorruptError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)

__all__ = [
    "LATEST",
    "ModelVersion",
    "Registry",
    "atomic_write_text",
    "check_version_name",
]

LATEST = "latest"
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_VERSION_LENGTH = 64
LOCK_TIMEOUT_SECONDS = 120.0
STAGING_PREFIX = ".staging-"
_ORIGINAL_KEYS = ("version", "trained_at", "path", "dataset")


def check_version_name(name: str) -> str:
    """Return `name` if it is a safe version name, else raise RegistryError saying why."""
    if not VERSION_PATTERN.fullmatch(name) or len(name) > MAX_VERSION_LENGTH:
        raise RegistryError(
            f"{name!r} is not a valid version name: use letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, at most {MAX_VERSION_LENGTH} characters "
            "(for example 1.0.0 or 20240226)"
        )
    if name.lower() == LATEST:
        raise RegistryError(f"{name!r} is reserved: it means the newest version")
    return name


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _metric_key(name: str) -> str:
    """Normalise metric names written by hand or by the original ('mae', 'R²', 'r2')."""
    cleaned = name.replace("²", "2").replace(" ", "_")
    canonical = {"mae": "MAE", "rmse": "RMSE", "r2": "R2", "mape": "MAPE", "r2_adj": "R2_adj"}
    return canonical.get(cleaned.lower(), cleaned)


@dataclass(frozen=True)
class ModelVersion:
    """One registry entry: a trained version and the headline metrics of each variant."""

    version: str
    trained_at: str
    path: str
    dataset: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Any, where: str) -> ModelVersion:
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), str | int | float):
            raise ValueError(f"{where} is not an object with a 'version'")
        metrics: dict[str, dict[str, float]] = {}
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            if key in _ORIGINAL_KEYS:
                continue
            if key.startswith("metrics_") and isinstance(value, dict):
                metrics[key.removeprefix("metrics_")] = {
                    _metric_key(str(k)): float(v)
                    for k, v in value.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            else:
                extra[key] = value
        return cls(
            version=str(entry["version"]),
            trained_at=str(entry.get("trained_at", "")),
            path=str(entry.get("path", "")),
            dataset=str(entry.get("dataset", "")),
            metrics=metrics,
            extra=extra,
        )

    def to_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "version": self.version,
            "trained_at": self.trained_at,
            "path": self.path,
            "dataset": self.dataset,
        }
        # The original wrote the 5-feature metrics first; keep that order for readers of the file.
        for variant in sorted(self.metrics, reverse=True):
            entry[f"metrics_{variant}"] = self.metrics[variant]
        entry.update(self.extra)
        return entry

    def metric(self, variant: str, name: str) -> float | None:
        return self.metrics.get(variant, {}).get(name)


@dataclass
class _RegistryDocument:
    versions: list[ModelVersion]
    history: list[dict[str, Any]]
    other: dict[str, Any]

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "versions": [v.to_entry() for v in self.versions],
            "history": self.history,
        }
        data.update(self.other)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


class Registry:
    """Versions on disk and the production pointer, for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.registry_file
        self.models_dir = settings.models_dir
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> _RegistryDocument:
        if not self.path.exists():
            return _RegistryDocument([], [], {})
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RegistryCorruptError(self.path, f"not valid JSON: {exc}") from None
        except UnicodeDecodeError:
            raise RegistryCorruptError(self.path, "not UTF-8 text") from None
        if isinstance(data, list):  # a bare list of entries is accepted as well
            data = {"versions": data}
        if not isinstance(data, dict) or not isinstance(data.get("versions", []), list):
            raise RegistryCorruptError(self.path, "expected an object with a 'versions' list")
        try:
            versions = [
                ModelVersion.from_entry(entry, f"versions[{i}]")
                for i, entry in enumerate(data.get("versions", []))
            ]
        except (ValueError, TypeError) as exc:
            raise RegistryCorruptError(self.path, str(exc)) from None
        history = data.get("history", [])
        if not isinstance(history, list):
            raise RegistryCorruptError(self.path, "'history' must be a list")
        other = {k: v for k, v in data.items() if k not in ("versions", "history")}
        return _RegistryDocument(versions, history, other)

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first (the order in which they were added)."""
        return self._read().versions

    def history(self) -> list[dict[str, Any]]:
        """Every recorded promotion, oldest first."""
        return self._read().history

    def get(self, version: str) -> ModelVersion:
        """The entry of `version`, or VersionNotFoundError."""
        versions = self.versions()
        for entry in versions:
            if entry.version == version:
                return entry
        raise VersionNotFoundError(version, [v.version for v in versions])

    def version_dir(self, entry: ModelVersion | str) -> Path:
        """The folder holding a version's artifacts."""
        if isinstance(entry, str):
            entry = self.get(entry)
        if entry.path:
            recorded = self.settings.resolve(entry.path)
            if recorded.is_dir():
                return recorded
        return self.models_dir / entry.version

    def production_setting(self) -> str:
        """The raw `mlops.production_version` value from the config."""
        return self.settings.mlops.production_version

    def production_version(self) -> ModelVersion | None:
        """The version in production: the named one, or the newest for 'latest'; None if empty.

        A named version that is not registered is an error, never a silent fallback.
        """
        setting = self.production_setting()
        versions = self.versions()
        if setting.strip().lower() == LATEST:
            return versions[-1] if versions else None
        for entry in versions:
            if entry.version == setting:
                return entry
        raise VersionNotFoundError(
            setting,
            [v.version for v in versions],
            where=f"mlops.production_version in {self.settings.config_file}",
        )

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

    def _write(self, document: _RegistryDocument) -> None:
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
        """Fail early (before training) if `version` could not be published."""
        if version is None:
            return
        check_version_name(version)
        known = {v.version for v in self.versions()}
        if version in known:
            self._check_overwrite(version, force)

    def _check_overwrite(self, version: str, force: bool) -> None:
        production = self.production_version()
        if production is not None and production.version == version:
            raise VersionExistsError(version, production=True)
        if not force:
            raise VersionExistsError(version)

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
    ) -> ModelVersion:
        """Move a built version folder into place and append its registry entry, atomically.

        `version` None picks today's date, with a suffix when that name is taken; `prepare`
        is called with the final name before the folder moves. The name
        check, the folder rename and the registry write happen under one lock, so parallel
        trainings get distinct names and every entry survives.
        """
        with self.locked():
            document = self._read()
            taken = {v.version for v in document.versions}
            if version is None:
                version = self._default_name(taken)
            else:
                check_version_name(version)
                if version in taken:
                    self._check_overwrite(version, force)
            if prepare is not None:
                prepare(version)
            target = self.models_dir / version
            entry = ModelVersion.from_entry(
                {
                    "version": version,
                    "path": target.relative_to(self.settings.base_dir).as_posix()
                    if target.is_relative_to(self.settings.base_dir)
                    else str(target),
                    **entry_fields,
                },
                "new entry",
            )
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
                self._write(document)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                if replaced is not None:
                    os.replace(replaced, target)
                raise
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
            return entry
