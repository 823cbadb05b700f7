"""`serve --follow-mlflow`: production is whatever MLflow's `production` alias points at.

A replica needs no local models: it resolves the alias of the served variant's registered model,
downloads that model version's files into a local cache, checks every file against the SHA-256s
registered with it (tag `hhforecast.files_sha256`: same set of files, same bytes), and only then
loads it. It polls the alias; when the alias moves it fetches and checks the new version in the
follower's thread and swaps, with the guarantees of the local follower: a version that fails to
download, verify or load is reported in /ready and /api/info and the old one keeps serving.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hhforecast._json import loads
from hhforecast.config import Settings
from hhforecast.errors import ArtifactError, HHForecastError, RegistryError
from hhforecast.modeling.artifacts import METADATA_FILE, read_metadata
from hhforecast.registry.entries import check_version_name
from hhforecast.registry.store import ModelVersion, registry_fields
from hhforecast.serving.production import (
    HistoryPicture,
    ProductionFollower,
    ServedModel,
    check_answers,
)
from hhforecast.serving.server import ServerPlan, check_address_free, check_reload_protected
from hhforecast.tracking.client import (
    PRODUCTION_ALIAS,
    VERSION_TAG,
    MlflowConnection,
    MlflowUnreachableError,
    connect,
)
from hhforecast.tracking.mirror import (
    FILES_TAG,
    TRAINED_AT_TAG,
    folder_hashes,
    production_model_version,
)
from hhforecast.tracking.rest import (
    ARTIFACTS_SCHEME,
    MAX_LISTING_ENTRIES,
    Limits,
    RestRegistry,
    is_http,
)
from hhforecast.tracking.runs import public_uri

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion

__all__ = ["AliasFollower", "AliasSource", "NoProductionAliasError", "plan_following"]

DOWNLOAD_PREFIX = ".download-"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class NoProductionAliasError(HHForecastError):
    """The registered model has no `production` alias yet."""

    def __init__(self, model: str, uri: str) -> None:
        super().__init__(
            f"registered model {model!r} at {uri} has no {PRODUCTION_ALIAS!r} alias (or does "
            "not exist): promote a version from a machine that tracks to this server, or run "
            "`hhforecast mlflow sync` there"
        )


@dataclass(frozen=True)
class AliasTarget:
    """What the alias points at: enough to tell whether it moved, and to fetch it."""

    model: str
    model_version: str
    version: str
    trained_at: str
    files: dict[str, str]

    @property
    def entry(self) -> ModelVersion:
        """A registry entry for the served model, before its files are fetched."""
        return ModelVersion(self.version, self.trained_at, "", "")


class AliasSource:
    """Resolves the `production` alias of one variant and fetches its files, checked."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.variant = settings.mlops.serve_variant
        self.model = settings.mlflow.model_name(self.variant)
        self.cache = settings.resolve(settings.mlflow.cache_dir)
        self._conn: MlflowConnection | None = None
        self.rest = RestRegistry(self.uri, settings.mlflow.timeout_seconds)

    @property
    def conn(self) -> MlflowConnection:
        if self._conn is None:
            self._conn = connect(self.settings)
        return self._conn

    @property
    def uri(self) -> str:
        return self.settings.mlflow_tracking_uri or ""

    def resolve(self) -> AliasTarget:
        """The model version `production` points at now (raises if MLflow cannot say), its
        tags checked by the rules local versions pass: nothing in them names a path."""
        found = self._alias_version()
        if found is None:
            raise NoProductionAliasError(self.model, public_uri(self.uri))
        number, tags = found
        where = f"{self.model} v{number[:20]}"
        if not re.fullmatch(r"[0-9]{1,12}", number):
            raise ArtifactError(
                f"MLflow names the {PRODUCTION_ALIAS} model version of {self.model} "
                f"{number[:20]!r}, not a number; it is not served"
            )
        try:
            files = loads(tags[FILES_TAG])
            version = check_version_name(tags[VERSION_TAG])
        except RegistryError as exc:
            raise ArtifactError(
                f"{where} has a bad {VERSION_TAG} tag: {exc}; it is not served"
            ) from None
        except (KeyError, ValueError):
            raise ArtifactError(
                f"{where} carries no valid {FILES_TAG} tag; it was not "
                "registered by hhforecast and cannot be verified, so it is not served"
            ) from None
        if not _sound_files(files):
            raise ArtifactError(
                f"{where}: its {FILES_TAG} tag is not a list of file SHA-256s including "
                f"{METADATA_FILE}; it cannot be verified, so it is not served"
            )
        return AliasTarget(
            self.model, number, version, tags.get(TRAINED_AT_TAG, "")[:64], dict(files)
        )

    def _alias_version(self) -> tuple[str, dict[str, str]] | None:
        # Over HTTP the replica speaks REST itself: the MLflow client would cost ~100 MB.
        if is_http(self.uri):
            return self.rest.alias_version(self.model, PRODUCTION_ALIAS)
        conn = self.conn
        found: MlflowModelVersion | None = conn.call(
            "read the production alias", production_model_version, conn, self.variant
        )
        return None if found is None else (str(found.version), dict(found.tags))

    def fetch(self, target: AliasTarget, follow: bool = False) -> Path:
        """The version folder in the local cache, every file checked against the registry;
        with `follow`, the download is dropped as soon as the alias points elsewhere."""
        folder = self._cache_folder(target)
        if folder.is_dir() and folder_hashes(folder) == target.files:
            return folder
        self.cache.mkdir(parents=True, exist_ok=True)
        self._remove_stale_downloads()
        download = self.cache / f"{DOWNLOAD_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            self._download(target, download, follow)
            version_dir = _version_folder(download, target)
            problem = _difference(folder_hashes(version_dir), target.files)
            if problem:
                raise ArtifactError(
                    f"{target.model} v{target.model_version} (version {target.version}) "
                    f"downloaded from MLflow does not match its registered SHA-256s: {problem}; "
                    "it is not served"
                )
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():  # a damaged earlier copy
                shutil.rmtree(folder)
            version_dir.replace(folder)
        finally:
            shutil.rmtree(download, ignore_errors=True)
        return folder

    def _cache_folder(self, target: AliasTarget) -> Path:
        """cache/<model>/v<n>-<version>, refused unless it resolves inside the cache (the
        names were checked already; this holds even for a model name from the config)."""
        folder = self.cache / target.model / f"v{target.model_version}-{target.version}"
        real, root = folder.resolve(), self.cache.resolve()
        if real == root or not real.is_relative_to(root):
            raise ArtifactError(
                f"{target.model} v{target.model_version} (version {target.version}) would be "
                f"cached at {folder}, outside {self.cache}; check mlflow.registered_models and "
                "mlflow.cache_dir. It is not served"
            )
        return folder

    def _remove_stale_downloads(self) -> None:
        """Partial downloads a killed replica left: none of them can still be running once
        older than the download deadline."""
        limit = self.settings.mlflow.download_timeout_seconds + 60
        for path in self.cache.glob(f"{DOWNLOAD_PREFIX}*"):
            try:
                if time.time() - path.stat().st_mtime > limit:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue

    def _download(self, target: AliasTarget, into: Path, follow: bool) -> None:
        if is_http(self.uri):
            where = self.rest.download_uri(target.model, target.model_version)
            if urlsplit(where).scheme == ARTIFACTS_SCHEME:
                # A slow download must not hide a newer promotion: the alias is read again
                # every poll interval while it runs.
                limits = Limits(
                    self.settings.mlflow.max_download_bytes,
                    self.settings.mlflow.download_timeout_seconds,
                    (lambda: self._still_wanted(target)) if follow else None,
                    self.settings.serving.reload_poll_seconds,
                )
                self.rest.download(where, into, limits)
                return
        # Not served through the tracking server (a local store, or object storage the
        # server does not proxy): MLflow's client knows every artifact store.
        import mlflow.artifacts

        into.mkdir(parents=True)
        self.conn.call(
            "download the model",
            mlflow.artifacts.download_artifacts,
            artifact_uri=f"models:/{target.model}/{target.model_version}",
            dst_path=str(into),
            tracking_uri=self.conn.uri,
        )

    def _still_wanted(self, target: AliasTarget) -> None:
        try:
            found = self.rest.alias_version(self.model, PRODUCTION_ALIAS)
        except MlflowUnreachableError:
            return  # the download's own deadline still bounds it
        now = found[0] if found else None
        if now != target.model_version:
            raise ArtifactError(
                f"the {PRODUCTION_ALIAS} alias of {self.model} moved from "
                f"v{target.model_version} to {f'v{now[:20]}' if now else 'nothing'} during "
                "the download; the download was dropped to follow it"
            )

    def load(self, settings: Settings, target: AliasTarget, follow: bool = False) -> ServedModel:
        """Fetch, verify and load the target as a served model (checked on reference rows)."""
        from hhforecast.modeling.artifacts import load_variant

        folder = self.fetch(target, follow)
        # The metadata is checked against the SHA-256 registered in MLflow, and every
        # artifact against the metadata, before anything is parsed (as for a local version).
        # Never unpickled, whatever the config says: a downloaded version must keep its scalers
        # as numbers (mlops.allow_pickled_scalers is for local versions only).
        model = load_variant(
            folder, self.variant, target.version, target.files[METADATA_FILE], allow_pickle=False
        )
        metadata = read_metadata(folder, target.files[METADATA_FILE])
        entry = ModelVersion.from_entry(
            {"version": target.version, "path": str(folder), **registry_fields(metadata)},
            "the MLflow model version",
        )
        served = ServedModel(model, entry, _now(), HistoryPicture(settings, model))
        check_answers(served)
        return served


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version_folder(download: Path, target: AliasTarget) -> Path:
    """The version folder inside a downloaded pyfunc model (under artifacts/)."""
    found = [p.parent for p in download.rglob(METADATA_FILE)]
    if len(found) != 1:
        raise ArtifactError(
            f"{target.model} v{target.model_version} holds {len(found)} version folders, "
            "expected one; it is not served"
        )
    return found[0]


def _sound_files(files: Any) -> bool:
    """Whether a files tag is what hhforecast writes: names to SHA-256s, the metadata's too."""
    return (
        isinstance(files, dict)
        and METADATA_FILE in files
        and len(files) <= MAX_LISTING_ENTRIES
        and all(
            isinstance(name, str) and isinstance(digest, str) and _SHA256.fullmatch(digest)
            for name, digest in files.items()
        )
    )


def _difference(actual: dict[str, str], expected: dict[str, str]) -> str | None:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(n for n in set(actual) & set(expected) if actual[n] != expected[n])
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected {', '.join(extra)}")
    if changed:
        parts.append(f"different bytes in {', '.join(changed)}")
    return "; ".join(parts) or None


class AliasFollower(ProductionFollower):
    """The production follower, with production read from MLflow's alias instead of files."""

    def __init__(
        self,
        settings: Settings,
        served: ServedModel,
        *,
        source: AliasSource | None = None,
        target: AliasTarget | None = None,
        **kwargs: Any,
    ) -> None:
        self.source = source or AliasSource(settings)
        self._target = target
        super().__init__(settings, served, loader=self._load_target, **kwargs)
        # What names production here: the alias, not mlops.production_version (unused).
        self.production_setting = f"MLflow alias production of {self.source.model}"

    def production(self) -> tuple[Settings, ModelVersion]:
        self._target = self.source.resolve()
        return self.settings, self._target.entry

    def _load_target(self, settings: Settings, entry: ModelVersion) -> ServedModel:
        assert self._target is not None and self._target.version == entry.version
        return self.source.load(settings, self._target, follow=True)

    def _watched_files(self) -> list[Path]:
        return []

    def _stamp(self, settings: Settings, entry: ModelVersion) -> str:
        # What was loaded or failed to load: the model version the alias named, with the
        # SHA-256s registered for it (a fixed registry is a change, so it is tried again).
        target = self._target
        if target is None:
            return entry.version
        files = json.dumps(target.files, sort_keys=True)
        return f"{target.model}|v{target.model_version}|{entry.version}|{files}"

    def poll_once(self) -> Any:
        """Ask MLflow where the alias points (every poll: there is no file to watch)."""
        return self.check()

    def status(self) -> dict[str, Any]:
        data = super().status()
        target = self._target
        data["mlflow"] = {
            "tracking_uri": public_uri(self.settings.mlflow_tracking_uri or ""),
            "model": self.source.model,
            "alias": PRODUCTION_ALIAS,
            "model_version": target.model_version if target else None,
            "version": target.version if target else None,
            "cache": str(self.source.cache),
        }
        return data


def plan_following(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = False,
) -> tuple[ServerPlan, ServedModel, Any]:
    """Resolve the alias, fetch and load its version; the plan, the model and the follower."""
    plan_host, plan_port = host or settings.serving.host, port or settings.serving.port
    # The same app as plain `serve`: beyond loopback, POST /api/reload must need a key.
    check_reload_protected(settings, plan_host)
    check_address_free(plan_host, plan_port)
    source = AliasSource(settings)
    target = source.resolve()
    served = source.load(settings, target)

    def make_follower(settings: Settings, served: ServedModel, **kwargs: Any) -> AliasFollower:
        return AliasFollower(settings, served, source=source, target=target, **kwargs)

    plan = ServerPlan(plan_host, plan_port, 1, access_log, served.entry)
    return plan, served, make_follower
