"""A registered version resolved once: entry, folder, metadata and artifacts, each verified once.

`open_version` turns a name in a `RegistrySnapshot` into a `VersionHandle`: the registry entry,
its folder (checked once), its model_metadata.json read once and checked against the SHA-256 the
entry records, and, when first asked for, every artifact read and hashed once (the bytes that
matched are kept, so a model is parsed from them, never from a second read). Its training dataset
is found, checked and parsed once per command through a shared `DatasetCache`. Validation,
comparison, promotion and retraining take handles instead of names.

Under the registry's lock, `VersionHandle.recheck` hashes the files a second time: a version
retrained with --force, or edited, between judging and moving the pointer is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hhforecast._json import JSONDepthError, loads
from hhforecast.config import Settings
from hhforecast.errors import ArtifactError, ForeignVersionError, VariantNotFoundError
from hhforecast.gate.integrity import (
    ArtifactCheck,
    artifacts_now,
    check_artifacts,
    integrity_problem,
)
from hhforecast.modeling.artifacts import (
    METADATA_FILE,
    METADATA_SHA256_FIELD,
    artifact_names,
    bytes_sha256,
    recorded_metadata_sha256,
    variant_from_verified,
)
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.snapshot import RegistrySnapshot, VersionChangedError
from hhforecast.registry.store import ModelVersion, Registry

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DatasetCache", "TrustedDataset", "VersionHandle", "open_entry", "open_version"]


@dataclass(frozen=True)
class TrustedDataset:
    """A version's training dataset: its weeks when the file is there unchanged, else why not."""

    frame: pd.DataFrame | None
    label: str
    """The recorded name (when readable) or why the weeks cannot be used."""
    path: Path | None


@dataclass
class DatasetCache:
    """Training datasets found, hashed and parsed once per command, shared by its handles."""

    settings: Settings
    _loaded: dict[tuple[Path, str], pd.DataFrame] = field(default_factory=dict)

    def columns_of(self, metadata: dict[str, Any]) -> list[str]:
        """Every numeric column a version's dataset is read with: features and target."""
        training = self.settings.training
        named = [f for fs in training.variants.values() for f in fs]
        variants = metadata.get("variants")
        for info in variants.values() if isinstance(variants, dict) else []:
            features = info.get("features") if isinstance(info, dict) else None
            named += [str(f) for f in features] if isinstance(features, list) else []
        named.append(str(metadata.get("target", training.target)))
        return list(dict.fromkeys(named))

    def trusted(self, metadata: dict[str, Any]) -> TrustedDataset:
        """The dataset a version's metadata records, if it is there with the recorded SHA-256."""
        from hhforecast.datasets.weekly import load_weekly_dataset, recorded_dataset

        recorded = recorded_dataset(metadata, self.settings.base_dir)
        if recorded.problem is not None or recorded.path is None:
            why = {
                "unrecorded": "its metadata names no dataset",
                "missing": f"its dataset {recorded.label} is gone ({recorded.path})",
                "changed": f"its dataset {recorded.label} has changed since training "
                "(SHA-256 differs)",
            }
            return TrustedDataset(None, why[recorded.problem or "unrecorded"], None)
        info = metadata.get("dataset")
        sha = str(info.get("sha256", "")) if isinstance(info, dict) else ""
        key = (recorded.path.resolve(), sha)
        columns = self.columns_of(metadata)
        frame = self._loaded.get(key)
        if frame is None or any(c not in frame.columns for c in columns):
            frame = load_weekly_dataset(
                recorded.path, [], None, optional=tuple(columns), reading=self.settings.dataset
            ).frame
            self._loaded[key] = frame
        return TrustedDataset(frame, recorded.label, recorded.path)


@dataclass
class VersionHandle:
    """One registered version, resolved and verified once (see the module's docstring)."""

    entry: ModelVersion
    folder: Path
    metadata: dict[str, Any]
    metadata_sha256: str | None
    """SHA-256 of model_metadata.json as read (None when it could not be read)."""
    metadata_problem: str | None
    """Why the metadata cannot be trusted (unreadable, or not what the registry records)."""
    datasets: DatasetCache
    _checks: list[ArtifactCheck] | None = None
    _verified: dict[str, bytes] = field(default_factory=dict)
    _models: dict[str, VariantModel] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.version

    @property
    def target(self) -> str:
        return str(self.metadata.get("target", self.datasets.settings.training.target))

    def checks(self) -> list[ArtifactCheck]:
        """Every artifact against its recorded SHA-256 (each file read and hashed once)."""
        if self._checks is None:
            if self.metadata_problem is not None:
                self._checks = [ArtifactCheck(METADATA_FILE, self.metadata_problem)]
            else:
                self._checks, self._verified = check_artifacts(self.folder, self.metadata)
        return self._checks

    def integrity_problem(self, variant: str | None = None) -> str | None:
        """What is wrong with the artifacts (only those `variant` loads, when named), or None."""
        checks = self.checks()
        if variant is not None and self.metadata_problem is None:
            names = set(artifact_names(variant).values())
            checks = [c for c in checks if c.name in names or c.name == METADATA_FILE]
        return integrity_problem(checks)

    def require_integrity(self) -> None:
        """ArtifactError (exit 1) unless every artifact matches its recorded SHA-256."""
        problem = self.integrity_problem()
        if problem:
            raise ArtifactError(
                f"version {self.name} failed its integrity check in {self.folder}: {problem}. "
                "Restore the folder from a backup or train the version again."
            )

    def variants(self) -> list[str]:
        variants = self.metadata.get("variants")
        return list(variants) if isinstance(variants, dict) else []

    def model(self, variant: str) -> VariantModel:
        """One variant, parsed from the artifact bytes that matched their SHA-256."""
        if variant not in self._models:
            if self.metadata_problem is None and "variants" not in self.metadata:
                raise ForeignVersionError(self.folder)
            if self.metadata_problem is None and variant not in self.variants():
                raise VariantNotFoundError(f"version {self.name}", variant, self.variants())
            problem = self.integrity_problem(variant)
            if problem:
                raise ArtifactError(
                    f"version {self.name} cannot be loaded: {problem}. Restore the folder "
                    "from a backup or train the version again."
                )
            self._models[variant] = variant_from_verified(
                self.folder,
                self.metadata,
                variant,
                self._verified,
                self.name,
                allow_pickle=self.datasets.settings.mlops.allow_pickled_scalers,
            )
        return self._models[variant]

    def dataset(self) -> TrustedDataset:
        """The version's training dataset (found, hashed and parsed once per command)."""
        return self.datasets.trusted(self.metadata)

    def recheck(self, now: ModelVersion, role: str, variant: str | None = None) -> None:
        """Under the registry's lock: the entry, the metadata and the artifacts judged (those
        of `variant` only, when named) are still what is there, else VersionChangedError."""
        if now.extra.get(METADATA_SHA256_FIELD) != self.entry.extra.get(METADATA_SHA256_FIELD):
            raise VersionChangedError(self.name, role, "its registry entry was rewritten")
        metadata_now = artifacts_now(self.folder, [METADATA_FILE])[METADATA_FILE]
        if metadata_now != self.metadata_sha256:
            raise VersionChangedError(self.name, role, f"its {METADATA_FILE} changed")
        judged = {c.name: c.actual for c in self.checks() if c.ok}
        if variant is not None:
            names = set(artifact_names(variant).values())
            judged = {name: sha for name, sha in judged.items() if name in names}
        changed = [
            name
            for name, sha in artifacts_now(self.folder, list(judged)).items()
            if sha != judged[name]
        ]
        if changed:
            raise VersionChangedError(self.name, role, f"{', '.join(changed)} changed")


def open_version(
    registry: Registry, snapshot: RegistrySnapshot, version: str, datasets: DatasetCache
) -> VersionHandle:
    """The handle of `version` as the snapshot records it: its metadata read once, checked
    against the registry entry's SHA-256 (a mismatch is kept as the handle's problem)."""
    return open_entry(registry, snapshot.get(version), datasets)


def open_entry(registry: Registry, entry: ModelVersion, datasets: DatasetCache) -> VersionHandle:
    """The handle of a registry entry already read (see `open_version`)."""
    version = entry.version
    folder = registry.version_dir(entry)
    expected = recorded_metadata_sha256(entry.extra, f"registry entry {version} in {registry.path}")
    path = folder / METADATA_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        return VersionHandle(entry, folder, {}, None, problem, datasets)
    actual = bytes_sha256(data)
    if expected is not None and actual != expected:
        problem = "changed: it does not match the SHA-256 its registry entry records"
        return VersionHandle(entry, folder, {}, actual, problem, datasets)
    try:
        metadata = loads(data)
    except (JSONDepthError, ValueError) as exc:
        return VersionHandle(entry, folder, {}, actual, f"unreadable: {exc}", datasets)
    if not isinstance(metadata, dict):
        return VersionHandle(entry, folder, {}, actual, "unreadable: not a JSON object", datasets)
    return VersionHandle(entry, folder, metadata, actual, None, datasets)
