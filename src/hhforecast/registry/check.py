"""`hhforecast registry check`: does what is on disk agree with registry.json?

A version folder is built in a hidden staging folder and renamed into place, and its entry is
written right after, under the registry lock; a crash or a hard kill can still stop in between.
This module finds what such a stop (or a hand edit) leaves behind and says how to repair it:

* an entry whose folder is missing (a forced re-train killed between its two renames keeps the
  old folder in ``models/.staging-old-*``: it is put back);
* a complete version folder that no entry lists (killed after the rename, before the entry was
  written): it is registered from its own ``model_metadata.json``;
* an entry that disagrees with its folder's metadata (a forced re-train stopped the same way):
  the entry is rewritten from the folder;
* artifacts that no longer match their recorded checksums (nothing to repair automatically);
* staging folders left by crashed trainings: removed once nothing in them has changed for
  ``STALE_STAGING_SECONDS`` (a younger one may belong to a training still running);
* temporary files left by a write killed halfway (``.<name>.*.tmp`` beside registry.json or
  config.yaml): removed once as old as a stale staging folder;
* a ``model_metadata.json`` that no longer matches the SHA-256 its entry records, and entries
  that record none (their metadata could be rewritten unnoticed);
* versions whose scalers are kept only as joblib pickles (not loaded unless the user opts in);
* a production pointer naming no registered version, and promotion history entries naming
  versions that are neither registered nor recorded as removed (both need a person).

Nothing here imports TensorFlow: files are read and hashed, models are not loaded.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hhforecast._fs import file_sha256
from hhforecast.config import Settings
from hhforecast.errors import ArtifactError
from hhforecast.gate.integrity import check_integrity, integrity_problem
from hhforecast.modeling.artifacts import (
    ALLOW_PICKLE_SETTING,
    METADATA_FILE,
    METADATA_SHA256_FIELD,
    read_metadata,
    recorded_metadata_sha256,
    uses_pickled_scalers,
)
from hhforecast.registry.store import LATEST, STAGING_PREFIX, Registry

__all__ = [
    "STALE_STAGING_SECONDS",
    "CheckReport",
    "Finding",
    "check_registry",
    "repair",
]

STALE_STAGING_SECONDS = 3600.0
"""A staging folder untouched this long belongs to no running training."""
OLD_PREFIX = f"{STAGING_PREFIX}old-"


@dataclass(frozen=True)
class Finding:
    """One disagreement between registry.json and the folders beside it."""

    kind: str
    """missing_folder, unregistered_folder, entry_mismatch, integrity, metadata_changed,
    no_metadata_sha256, pickled_scalers, not_hhforecast, unknown_folder, leftover_staging,
    leftover_temp, production_unregistered or history_unknown_version (and the notes
    not_hhforecast and pickled_scalers_allowed)."""
    version: str | None
    path: str
    detail: str
    fix: str
    """What `--fix` does about it; empty when it needs a person."""
    source: str | None = None
    """For a missing folder: the leftover folder that holds it."""


@dataclass
class CheckReport:
    """Everything found, and what --fix did."""

    registry: str
    versions: int
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    """Worth knowing, nothing wrong: versions the original system trained."""
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for --json)."""
        return {
            "registry": self.registry,
            "versions": self.versions,
            "clean": self.clean,
            "findings": [asdict(f) for f in self.findings],
            "notes": [asdict(f) for f in self.notes],
            "repaired": self.repaired,
        }


def check_registry(settings: Settings) -> CheckReport:
    """Compare registry.json with the version folders; change nothing."""
    registry = Registry(settings)
    entries = registry.versions()
    report = CheckReport(str(registry.path), len(entries))
    listed: set[Path] = set()
    for entry in entries:
        problem = registry.entry_problem(entry)
        if problem is not None:  # never followed to a folder
            report.findings.append(Finding("bad_entry", entry.version, entry.path, problem, ""))
            continue
        folder = registry.version_dir(entry)
        listed.add(folder.resolve())
        for finding in _check_entry(entry.version, entry.trained_at, folder):
            (report.notes if finding.kind == "not_hhforecast" else report.findings).append(finding)
        if folder.is_dir():
            report.findings.extend(_check_metadata_record(entry.version, entry.extra, folder))
            allow_pickle = settings.mlops.allow_pickled_scalers
            for finding in _trust_findings(entry.version, entry.extra, folder, allow_pickle):
                notes = finding.kind == "pickled_scalers_allowed"
                (report.notes if notes else report.findings).append(finding)
    if registry.models_dir.is_dir():
        for folder in sorted(registry.models_dir.iterdir()):
            if not folder.is_dir():
                continue
            if folder.name.startswith(STAGING_PREFIX):
                if not folder.name.startswith(OLD_PREFIX) or not _restores_an_entry(folder, report):
                    report.findings.append(_staging_finding(folder))
            elif not folder.name.startswith(".") and folder.resolve() not in listed:
                report.findings.append(_unlisted_finding(folder))
    report.findings.extend(_leftover_temp_files(settings))
    report.findings.extend(_pointer_findings(settings, registry, {e.version for e in entries}))
    return report


def _check_metadata_record(version: str, fields: dict[str, Any], folder: Path) -> list[Finding]:
    path = folder / METADATA_FILE
    try:
        expected = recorded_metadata_sha256(fields, f"the entry of {version}")
        if expected is None or not path.is_file() or file_sha256(path) == expected:
            return []
    except (ArtifactError, OSError) as exc:
        return [Finding("metadata_changed", version, str(path), str(exc), "")]
    return [
        Finding(
            "metadata_changed",
            version,
            str(path),
            f"{METADATA_FILE} does not match the SHA-256 its registry entry records: the "
            "checksums it holds cannot be trusted, so the version is not loaded",
            "",
        )
    ]


def _trust_findings(
    version: str, fields: dict[str, Any], folder: Path, allow_pickle: bool
) -> list[Finding]:
    """What the checksums cannot vouch for: an entry without the metadata's SHA-256, and
    scalers kept only as pickles (loading them runs code)."""
    try:
        metadata = read_metadata(folder)
    except ArtifactError:
        return []  # reported by _check_entry
    if "variants" not in metadata:
        return []  # the original system's: never loaded, already a note
    path = str(folder / METADATA_FILE)
    findings = []
    if fields.get(METADATA_SHA256_FIELD) is None:
        detail = (
            f"its registry entry records no {METADATA_SHA256_FIELD}, so {METADATA_FILE} and "
            "the checksums it holds could be rewritten unnoticed; restore registry.json from "
            "a backup, or train the version again"
        )
        findings.append(Finding("no_metadata_sha256", version, path, detail, ""))
    pickled = ", ".join(uses_pickled_scalers(metadata))
    if pickled and allow_pickle:
        detail = (
            f"variant(s) {pickled} keep their scalers only as joblib pickles; they are "
            f"unpickled because mlops.{ALLOW_PICKLE_SETTING} is true: train it again to stop that"
        )
        findings.append(Finding("pickled_scalers_allowed", version, path, detail, ""))
    elif pickled:
        detail = (
            f"variant(s) {pickled} keep their scalers only as joblib pickles (trained before "
            "they were kept as numbers), so the version is not loaded: train it again, or, if "
            f"you trust the folder, set mlops.{ALLOW_PICKLE_SETTING}: true"
        )
        findings.append(Finding("pickled_scalers", version, path, detail, ""))
    return findings


def _temp_folders(settings: Settings) -> list[Path]:
    folders = [settings.registry_file.parent, settings.models_dir]
    if settings.source is not None:
        folders.append(settings.source.parent)
    unique: dict[Path, None] = {}
    for folder in folders:
        if folder.is_dir():
            unique.setdefault(folder.resolve(), None)
    return list(unique)


def _leftover_temp_files(settings: Settings) -> list[Finding]:
    """Temporary files of atomic writes (`.<name>.<random>.tmp`) that a kill left behind."""
    findings = []
    for folder in _temp_folders(settings):
        for path in sorted(folder.glob(".*.tmp")):
            if not path.is_file():
                continue
            idle = time.time() - path.stat().st_mtime
            stale = idle >= STALE_STAGING_SECONDS
            findings.append(
                Finding(
                    "leftover_temp",
                    None,
                    str(path),
                    f"a temporary file left by a write that stopped {idle / 3600:.1f} h ago"
                    if stale
                    else f"a temporary file changed {idle:.0f} s ago: a write may be under way",
                    "remove it" if stale else "",
                )
            )
    return findings


def _pointer_findings(settings: Settings, registry: Registry, known: set[str]) -> list[Finding]:
    findings = []
    setting = registry.production_setting()
    if setting.strip().lower() != LATEST and setting not in known:
        findings.append(
            Finding(
                "production_unregistered",
                setting,
                str(settings.config_file),
                f"mlops.production_version names {setting!r}, which is not registered: "
                "serve, predict and drift refuse to start",
                "",
            )
        )
    removed: set[str] = set()
    named: dict[str, int] = {}
    for i, record in enumerate(registry.history()):
        if not isinstance(record, dict):
            continue
        if str(record.get("action", "")).startswith("remov"):
            removed.update(str(record[k]) for k in ("version", "to", "from") if record.get(k))
            continue
        for key in ("from", "to"):
            value = record.get(key)
            if isinstance(value, str) and value:
                named.setdefault(value, i)
    for version, index in sorted(named.items(), key=lambda item: item[1]):
        if version not in known and version not in removed:
            findings.append(
                Finding(
                    "history_unknown_version",
                    version,
                    str(registry.path),
                    f"history entry {index} names version {version}, which is neither "
                    "registered nor recorded as removed: a rollback to it would fail",
                    "",
                )
            )
    return findings


def _check_entry(version: str, trained_at: str, folder: Path) -> list[Finding]:
    if not folder.is_dir():
        return [
            Finding(
                "missing_folder",
                version,
                str(folder),
                f"version {version} is registered but its folder is missing",
                "",
            )
        ]
    try:
        metadata = read_metadata(folder)
    except ArtifactError as exc:
        return [Finding("integrity", version, str(folder), str(exc), "")]
    if "variants" not in metadata:
        return [
            Finding(
                "not_hhforecast",
                version,
                str(folder),
                "not trained by hhforecast (the original system's format): it can be listed but "
                "not served or promoted; retrain it",
                "",
            )
        ]
    findings = []
    if str(metadata.get("trained_at")) != trained_at or metadata.get("version") != version:
        findings.append(
            Finding(
                "entry_mismatch",
                version,
                str(folder),
                f"the entry says version {version} trained at {trained_at}; the folder holds "
                f"version {metadata.get('version')} trained at {metadata.get('trained_at')}",
                "rewrite the entry from the folder's model_metadata.json",
            )
        )
    problem = integrity_problem(check_integrity(folder))
    if problem:
        findings.append(Finding("integrity", version, str(folder), problem, ""))
    return findings


def _restores_an_entry(folder: Path, report: CheckReport) -> bool:
    """Turn a 'missing folder' finding into a repairable one when this old folder holds it."""
    try:
        version = read_metadata(folder).get("version")
    except ArtifactError:
        return False
    for i, finding in enumerate(report.findings):
        if finding.kind == "missing_folder" and finding.version == version and not finding.fix:
            report.findings[i] = replace(
                finding,
                detail=f"{finding.detail}; {folder.name} holds it (a re-train stopped halfway)",
                fix=f"move {folder.name} back to {Path(finding.path).name}",
                source=str(folder),
            )
            return True
    return False


def _staging_finding(folder: Path) -> Finding:
    idle = time.time() - _last_change(folder)
    if idle >= STALE_STAGING_SECONDS:
        return Finding(
            "leftover_staging",
            None,
            str(folder),
            f"left by a training that stopped {idle / 3600:.1f} h ago",
            "remove it",
        )
    return Finding(
        "leftover_staging",
        None,
        str(folder),
        f"changed {idle:.0f} s ago: a training may still be writing it",
        "",
    )


def _unlisted_finding(folder: Path) -> Finding:
    try:
        metadata = read_metadata(folder)
    except ArtifactError:
        return Finding(
            "unknown_folder",
            None,
            str(folder),
            f"not a version folder (no readable {METADATA_FILE}) and not in the registry",
            "",
        )
    version = str(metadata.get("version", folder.name))
    if "variants" not in metadata or version != folder.name:
        return Finding(
            "unknown_folder",
            version,
            str(folder),
            "a folder with model metadata that no entry lists, not an hhforecast version "
            f"named {folder.name}",
            "",
        )
    problem = integrity_problem(check_integrity(folder))
    if problem:
        return Finding(
            "unregistered_folder",
            version,
            str(folder),
            f"no entry lists it and its artifacts fail their checksums: {problem}",
            "",
        )
    return Finding(
        "unregistered_folder",
        version,
        str(folder),
        "a complete version folder that no entry lists (a training stopped before writing it)",
        "register it from its model_metadata.json",
    )


def _last_change(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [p.stat().st_mtime for p in folder.rglob("*")]
    return max(times)


def repair(settings: Settings, report: CheckReport) -> CheckReport:
    """Apply every fix the report offers, under the registry lock, then check again.

    Each fix is checked again under the lock first: a staging folder that changed since the
    report, or a folder that got its entry meanwhile, is left alone.
    """
    registry = Registry(settings)
    done: list[str] = []
    with registry.locked():
        listed = {v.version: v for v in registry.versions()}
        for finding in report.findings:
            if not finding.fix:
                continue
            path = Path(finding.path)
            if finding.kind == "leftover_temp":
                if path.is_file() and time.time() - path.stat().st_mtime >= STALE_STAGING_SECONDS:
                    path.unlink(missing_ok=True)
                    done.append(f"removed {path.name}")
            elif finding.kind == "leftover_staging":
                if path.is_dir() and time.time() - _last_change(path) >= STALE_STAGING_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                    done.append(f"removed {path.name}")
            elif finding.kind == "missing_folder" and finding.source:
                source = Path(finding.source)
                if source.is_dir() and not path.exists():
                    source.replace(path)
                    done.append(f"moved {source.name} back to {path.name}")
            elif finding.kind == "unregistered_folder" and finding.version not in listed:
                registry.register_folder(path, _entry_fields(path))
                done.append(f"registered version {finding.version} from {path.name}")
            elif finding.kind == "entry_mismatch" and finding.version in listed:
                registry.register_folder(path, _entry_fields(path))
                done.append(f"rewrote the entry of {finding.version} from {path.name}")
    after = check_registry(settings)
    after.repaired = done
    return after


def _entry_fields(folder: Path) -> dict[str, Any]:
    """A repaired entry's fields from the folder's metadata, with the metadata's SHA-256."""
    from hhforecast.registry.store import registry_fields

    fields = registry_fields(read_metadata(folder))
    fields[METADATA_SHA256_FIELD] = file_sha256(folder / METADATA_FILE)
    return fields
