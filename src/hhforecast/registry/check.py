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
  ``STALE_STAGING_SECONDS`` (a younger one may belong to a training still running).

Nothing here imports TensorFlow: files are read and hashed, models are not loaded.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hhforecast.config import Settings
from hhforecast.errors import ArtifactError
from hhforecast.gate.integrity import check_integrity, integrity_problem
from hhforecast.modeling.artifacts import METADATA_FILE, read_metadata
from hhforecast.registry.store import STAGING_PREFIX, Registry

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
    """missing_folder, unregistered_folder, entry_mismatch, integrity, not_hhforecast,
    unknown_folder or leftover_staging."""
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
    if registry.models_dir.is_dir():
        for folder in sorted(registry.models_dir.iterdir()):
            if not folder.is_dir():
                continue
            if folder.name.startswith(STAGING_PREFIX):
                if not folder.name.startswith(OLD_PREFIX) or not _restores_an_entry(folder, report):
                    report.findings.append(_staging_finding(folder))
            elif not folder.name.startswith(".") and folder.resolve() not in listed:
                report.findings.append(_unlisted_finding(folder))
    return report


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
    from hhforecast.registry.store import registry_fields

    registry = Registry(settings)
    done: list[str] = []
    with registry.locked():
        listed = {v.version: v for v in registry.versions()}
        for finding in report.findings:
            if not finding.fix:
                continue
            path = Path(finding.path)
            if finding.kind == "leftover_staging":
                if path.is_dir() and time.time() - _last_change(path) >= STALE_STAGING_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                    done.append(f"removed {path.name}")
            elif finding.kind == "missing_folder" and finding.source:
                source = Path(finding.source)
                if source.is_dir() and not path.exists():
                    source.replace(path)
                    done.append(f"moved {source.name} back to {path.name}")
            elif finding.kind == "unregistered_folder" and finding.version not in listed:
                registry.register_folder(path, registry_fields(read_metadata(path)))
                done.append(f"registered version {finding.version} from {path.name}")
            elif finding.kind == "entry_mismatch" and finding.version in listed:
                registry.register_folder(path, registry_fields(read_metadata(path)))
                done.append(f"rewrote the entry of {finding.version} from {path.name}")
    after = check_registry(settings)
    after.repaired = done
    return after
