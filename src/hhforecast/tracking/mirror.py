"""The MLflow registry as a mirror of ours: one model version per variant, `production` an alias.

Each variant of an hhforecast version becomes a version of a registered model (by default
`hhforecast-5features` and `hhforecast-4features`) in the pyfunc flavour, carrying the whole
version folder and the SHA-256 of every file in it (tag `hhforecast.files_sha256`), so another
machine can download it and check every byte before loading. `production` is an alias on each
registered model; MLflow keeps no history of who held it, so each move is also written as tags
(reason, previous version, time), and the full history stays in registry.json.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hhforecast import __version__
from hhforecast._fs import file_sha256
from hhforecast.errors import ArtifactError
from hhforecast.tracking.client import (
    PRODUCTION_ALIAS,
    VERSION_TAG,
    MlflowConnection,
    MlflowUnreachableError,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion

__all__ = [
    "FILES_TAG",
    "TRAINED_AT_TAG",
    "AliasMove",
    "find_model_version",
    "folder_hashes",
    "move_production_alias",
    "production_model_version",
    "register_version",
    "tagged_version",
]

FILES_TAG = "hhforecast.files_sha256"
TRAINED_AT_TAG = "hhforecast.trained_at"
VARIANT_TAG = "hhforecast.variant"
MODEL_ARTIFACT = "model-{variant}"


def folder_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a version folder, by its path inside the folder."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _checked_hashes(folder: Path, metadata: dict[str, Any]) -> dict[str, str]:
    """The folder's hashes, after checking the artifacts against those recorded at training:
    a damaged local folder must not become the copy every replica downloads."""
    hashes = folder_hashes(folder)
    for name, expected in metadata.get("artifacts", {}).items():
        if hashes.get(name) != expected:
            raise ArtifactError(
                f"{folder / name} does not match the SHA-256 recorded at training; it is not "
                "published to MLflow. Run `hhforecast registry check`"
            )
    return hashes


def _ensure_registered_model(conn: MlflowConnection, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        conn.client.get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            conn.client.create_registered_model(
                name, description="hhforecast variant; the `production` alias follows promote."
            )
        except MlflowException as again:  # created meanwhile by another machine
            if getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise


def find_model_version(
    conn: MlflowConnection, variant: str, version: str, trained_at: str
) -> MlflowModelVersion | None:
    """The model version mirroring (version, trained_at) of a variant, if registered."""
    name = conn.model_name(variant)
    found = conn.call(
        "search model versions",
        conn.client.search_model_versions,
        f"name = '{name}' and tag.`{VERSION_TAG}` = '{version}'",
    )
    same = [mv for mv in found if mv.tags.get(TRAINED_AT_TAG) == trained_at]
    return max(same, key=lambda mv: int(mv.version)) if same else None


def register_version(
    conn: MlflowConnection, run_id: str, folder: Path, version: str
) -> dict[str, str]:
    """Log each variant of a version folder as a pyfunc model in `run_id` and register it."""
    import mlflow.pyfunc

    from hhforecast.modeling.artifacts import read_metadata
    from hhforecast.tracking.pyfunc import VERSION_ARTIFACT, VariantPyfunc

    metadata = read_metadata(folder)
    hashes = _checked_hashes(folder, metadata)
    trained_at = str(metadata.get("trained_at", ""))
    registered: dict[str, str] = {}
    for variant in metadata["variants"]:
        name = conn.model_name(variant)
        existing = find_model_version(conn, variant, version, trained_at)
        if existing is not None:
            registered[name] = str(existing.version)
            continue
        path = MODEL_ARTIFACT.format(variant=variant)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=VariantPyfunc(variant),
                artifacts={VERSION_ARTIFACT: str(folder)},
                pip_requirements=[f"hhforecast[mlflow]=={__version__}"],
            )
            conn.call("upload the model", conn.client.log_artifacts, run_id, str(local), path)
        conn.call("create the registered model", _ensure_registered_model, conn, name)
        tags = {
            VERSION_TAG: version,
            TRAINED_AT_TAG: trained_at,
            VARIANT_TAG: variant,
            FILES_TAG: json.dumps(hashes, sort_keys=True),
        }
        created = conn.call(
            "register the model version",
            conn.client.create_model_version,
            name,
            f"runs:/{run_id}/{path}",
            run_id=run_id,
            tags=tags,
            description=f"hhforecast version {version} ({variant})",
        )
        registered[name] = str(created.version)
    return registered


def production_model_version(conn: MlflowConnection, variant: str) -> MlflowModelVersion | None:
    """The model version the `production` alias points at for a variant (None if unset)."""
    from mlflow.exceptions import MlflowException

    name = conn.model_name(variant)
    try:
        return conn.client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise MlflowUnreachableError(conn.uri, "read the production alias", exc) from None
    except Exception as exc:  # refused, timed out: MLflow cannot say where production is
        raise MlflowUnreachableError(conn.uri, "read the production alias", exc) from None


@dataclass(frozen=True)
class AliasMove:
    """One registered model's alias (`production`, or `challenger` in sync.py), moved."""

    model: str
    model_version: str
    version: str
    previous_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def move_production_alias(
    conn: MlflowConnection,
    variant: str,
    model_version: MlflowModelVersion,
    *,
    action: str,
    reason: str,
    at: str,
    user: str,
) -> AliasMove:
    """Point `production` at a model version; the move's why, when and from-what as tags."""
    name = conn.model_name(variant)
    client = conn.client
    before = production_model_version(conn, variant)
    previous = tagged_version(before) if before is not None else None
    version = model_version.tags.get(VERSION_TAG, "")
    conn.call(
        "move the production alias",
        client.set_registered_model_alias,
        name,
        PRODUCTION_ALIAS,
        model_version.version,
    )
    tags = {
        "production.version": version,
        "production.action": action,
        "production.reason": reason,
        "production.previous_version": previous or "",
        "production.previous_model_version": before.version if before is not None else "",
        "production.moved_at": at,
        "production.moved_by": user,
    }
    for key, value in tags.items():
        conn.call("tag the registered model", client.set_registered_model_tag, name, key, value)
    conn.call(
        "tag the model version",
        client.set_model_version_tag,
        name,
        model_version.version,
        "production.promoted_at",
        at,
    )
    return AliasMove(name, str(model_version.version), version, previous)


UNNAMED = "a model version with no hhforecast version name"


def tagged_version(model_version: MlflowModelVersion) -> str:
    """The hhforecast version a model version's tag names, as shown to the user. The tag comes
    from the tracking server: anything but a valid version name (markup, control characters,
    a path, pages of text) is not repeated, only said to be there."""
    from hhforecast.registry.entries import MAX_VERSION_LENGTH, VERSION_PATTERN

    tag = model_version.tags.get(VERSION_TAG)
    if isinstance(tag, str) and len(tag) <= MAX_VERSION_LENGTH and VERSION_PATTERN.fullmatch(tag):
        return tag
    return UNNAMED
