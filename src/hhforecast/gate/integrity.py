"""Is a version folder what training wrote? Every artifact against the SHA-256 in its metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hhforecast._fs import file_sha256
from hhforecast.errors import ArtifactError
from hhforecast.modeling.artifacts import (
    METADATA_FILE,
    artifact_names,
    bytes_sha256,
    read_metadata,
)

__all__ = [
    "ArtifactCheck",
    "artifacts_now",
    "check_artifacts",
    "check_integrity",
    "integrity_problem",
    "require_integrity",
]


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact file against the SHA-256 recorded for it at training."""

    name: str
    status: str
    """ok, missing, changed, unrecorded (no checksum kept for it) or unsafe name."""
    expected: str | None = None
    actual: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_artifacts(
    version_dir: Path, metadata: Mapping[str, Any]
) -> tuple[list[ArtifactCheck], dict[str, bytes]]:
    """Every artifact the metadata records (or a variant needs) against its SHA-256, each file
    read once; with the bytes of those that matched, so that they are parsed, not read again."""
    if "variants" not in metadata:
        check = ArtifactCheck(METADATA_FILE, "not trained by hhforecast (no 'variants'); retrain")
        return [check], {}
    recorded = metadata.get("artifacts")
    if not isinstance(recorded, dict) or not recorded:
        return [ArtifactCheck(METADATA_FILE, "records no artifact checksums")], {}
    variants = metadata.get("variants", {})
    needed = {name for variant in variants for name in artifact_names(variant).values()}
    checks, verified = [], {}
    for name in sorted(set(map(str, recorded)) | needed):
        expected = recorded.get(name)
        path = version_dir / name
        if Path(name).name != name or name in ("", ".", ".."):
            checks.append(ArtifactCheck(name, "unsafe name", expected))
            continue
        try:
            data = path.read_bytes() if path.is_file() else None
        except OSError:
            data = None
        if data is None:
            checks.append(ArtifactCheck(name, "missing", expected))
        elif not isinstance(expected, str):
            checks.append(ArtifactCheck(name, "unrecorded", None, bytes_sha256(data)))
        else:
            actual = bytes_sha256(data)
            status = "ok" if actual == expected else "changed"
            checks.append(ArtifactCheck(name, status, expected, actual))
            if status == "ok":
                verified[name] = data
    return checks, verified


def check_integrity(version_dir: Path) -> list[ArtifactCheck]:
    """Compare every artifact of a version folder with the checksums in its metadata."""
    try:
        metadata = read_metadata(version_dir)
    except ArtifactError as exc:
        return [ArtifactCheck(METADATA_FILE, f"unreadable: {exc}")]
    return check_artifacts(version_dir, metadata)[0]


def artifacts_now(version_dir: Path, names: list[str]) -> dict[str, str | None]:
    """The SHA-256 of each named file as it is now (None when missing): the re-check under the
    registry's lock that the files moved into production are the ones judged."""
    found: dict[str, str | None] = {}
    for name in names:
        path = version_dir / name
        try:
            found[name] = file_sha256(path)
        except OSError:
            found[name] = None
    return found


def integrity_problem(checks: list[ArtifactCheck]) -> str | None:
    """What is wrong with a version's artifacts, in one line, or None when nothing is."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return None
    return ", ".join(f"{c.name} {c.status}" for c in bad)


def require_integrity(version_dir: Path, version: str) -> None:
    """Raise ArtifactError (exit 1) unless every artifact matches its recorded checksum."""
    problem = integrity_problem(check_integrity(version_dir))
    if problem:
        raise ArtifactError(
            f"version {version} failed its integrity check in {version_dir}: {problem}. "
            "Restore the folder from a backup or train the version again."
        )
