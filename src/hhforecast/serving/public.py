"""What the service's public answers say of its files: names, never the server's folders.

/api/info, /ready and /api/reload are read by anyone who can reach the service: they name a file
by its name (a PostgreSQL log by its host, port and database), and a message that quotes a path
under one of the project's folders quotes it from that folder on. The operator's terminal (the
server's own log lines) keeps the full paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hhforecast.config import Settings
from hhforecast.watch.log_store import is_database_url

__all__ = ["file_name", "log_location", "public_failure", "public_log_status", "without_folders"]


def file_name(path: str) -> str:
    """The last part of a path written on any system (a version trained on Windows included)."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def log_location(location: str) -> str:
    """The prediction log as the public sees it: its file's name, or a PostgreSQL URL's host,
    port and database, with no user, password or query (which may carry a password too)."""
    if not is_database_url(location):
        return file_name(location)
    parts = urlsplit(location.strip())
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: leave it out
        port = ""
    return f"postgresql://{host}{port}{parts.path}"


def _folders(settings: Settings, extra: Sequence[str]) -> list[str]:
    """The folders holding the project's own folders, longest first, each with its separator:
    a path under them reads from the project's folder on (`models/1.1.0/...`)."""
    folders = {
        settings.base_dir,
        settings.config_file.parent,
        settings.models_dir.parent,
        settings.registry_file.parent.parent,
        settings.resolve(settings.mlflow.cache_dir).parent,
    }
    folders.update(Path(p).parent for p in extra if p)
    texts = {str(f).rstrip(os.sep) + os.sep for f in folders if str(f) not in ("", ".", os.sep)}
    return sorted(texts, key=len, reverse=True)


def without_folders(text: str | None, settings: Settings, extra: Sequence[str] = ()) -> str | None:
    """`text` with each of the project's folders (and those of the `extra` files) cut from the
    paths it quotes: `/srv/hangar/models/1.1.0/x.keras` reads `models/1.1.0/x.keras`."""
    if not text:
        return text
    for folder in _folders(settings, extra):
        text = text.replace(folder, "")
    return text


def public_failure(failure: dict[str, Any] | None, settings: Settings) -> dict[str, Any] | None:
    """A reload failure (at, version, message) with its message's paths cut to the project."""
    if failure is None:
        return None
    return {**failure, "message": without_folders(failure.get("message"), settings)}


def public_log_status(status: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The prediction log's status with `path` its file's name (or host/port/database) and the
    reason quoting the same instead of the path."""
    location = str(status.get("path") or "")
    if not location:
        return status
    public = log_location(location)
    reason = status.get("reason")
    if isinstance(reason, str):
        reason = without_folders(reason.replace(location, public), settings, [location])
    return {**status, "path": public, "reason": reason}
