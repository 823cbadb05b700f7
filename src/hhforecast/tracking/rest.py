"""The few MLflow REST calls a `--follow-mlflow` replica needs, over the standard library.

Importing the MLflow client costs a replica about 100 MB of memory for three calls: read an
alias, ask where a model version's files are, download them. Over an HTTP tracking server these
go straight to its REST API (artifacts through `mlflow server`'s artifact proxy, on by default);
anything else falls back to the MLflow client.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from urllib.request import Request, urlopen

from hhforecast.tracking.client import MlflowUnreachableError
from hhforecast.tracking.runs import public_uri

__all__ = ["ARTIFACTS_SCHEME", "RestRegistry", "is_http"]

ARTIFACTS_SCHEME = "mlflow-artifacts"
_ARTIFACTS_ROOT = "/api/2.0/mlflow-artifacts/artifacts"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def is_http(uri: str) -> bool:
    """Whether a tracking URI is an MLflow server reached over HTTP(S)."""
    return urlsplit(uri).scheme in ("http", "https")


class RestRegistry:
    """An MLflow tracking server's model registry and artifact proxy, read over HTTP."""

    def __init__(self, uri: str, timeout: float) -> None:
        parts = urlsplit(uri)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        self.uri = public_uri(uri)
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout
        self.headers = _auth_headers(parts.username, parts.password)

    def alias_version(self, model: str, alias: str) -> tuple[str, dict[str, str]] | None:
        """The number and tags of the model version an alias points at (None if unset)."""
        query = urlencode({"name": model, "alias": alias})
        body = self._json(
            f"/api/2.0/mlflow/registered-models/alias?{query}", f"read the {alias} alias"
        )
        if body is None:
            return None
        try:
            found = body["model_version"]
            tags = {str(t["key"]): str(t.get("value", "")) for t in found.get("tags", [])}
            return str(found["version"]), tags
        except (KeyError, TypeError, AttributeError) as exc:
            raise MlflowUnreachableError(self.uri, f"read the {alias} alias", exc) from None

    def download_uri(self, model: str, version: str) -> str:
        """Where a model version's files are stored (a `runs:/` source resolved to its run's)."""
        query = urlencode({"name": model, "version": version})
        path = f"/api/2.0/mlflow/model-versions/get-download-uri?{query}"
        body = self._json(path, "locate the model's files")
        if body is None:
            raise MlflowUnreachableError(self.uri, "locate the model's files", "no such version")
        where = str(_field(body, self.uri, "locate the model's files", "artifact_uri"))
        if urlsplit(where).scheme != "runs":
            return where
        # runs:/<run_id>/<path>: the path inside that run's artifact root.
        run_id, _, inside = where.removeprefix("runs:").strip("/").partition("/")
        what = "locate the model's run"
        run = self._json(f"/api/2.0/mlflow/runs/get?{urlencode({'run_id': run_id})}", what)
        if run is None:
            raise MlflowUnreachableError(self.uri, what, f"no run {run_id!r}")
        root = str(_field(run, self.uri, what, "run", "info", "artifact_uri")).rstrip("/")
        return f"{root}/{inside}" if inside else root

    def download(self, artifact_uri: str, into: Path) -> None:
        """Copy an `mlflow-artifacts:` folder into `into`, file by file, through the proxy."""
        parts = urlsplit(artifact_uri)
        base = self.base
        if parts.netloc:  # mlflow-artifacts://host:port/path names another server
            base = urlunsplit((urlsplit(self.base).scheme, parts.netloc, "", "", ""))
        self._download_folder(base, parts.path.strip("/"), into)

    def _download_folder(self, base: str, path: str, into: Path) -> None:
        listing = self._json(
            f"{_ARTIFACTS_ROOT}?{urlencode({'path': path})}", "list the model's files", base
        )
        into.mkdir(parents=True, exist_ok=True)
        for entry in (listing or {}).get("files", []):
            name = str(entry.get("path", ""))
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise MlflowUnreachableError(self.uri, "list the model's files", f"bad {name!r}")
            if entry.get("is_dir"):
                self._download_folder(base, f"{path}/{name}", into / name)
                continue
            url = f"{base}{_ARTIFACTS_ROOT}/{quote(f'{path}/{name}')}"
            with self._open(url, "download the model") as response, (into / name).open("wb") as f:
                shutil.copyfileobj(response, f)

    def _json(self, path: str, what: str, base: str | None = None) -> dict[str, Any] | None:
        """The JSON answer of a GET; None when MLflow says the resource does not exist."""
        try:
            with self._open(f"{base or self.base}{path}", what) as response:
                return dict(json.load(response))
        except _Missing:
            return None
        except (ValueError, KeyError) as exc:
            raise MlflowUnreachableError(self.uri, what, exc) from None

    def _open(self, url: str, what: str) -> Any:
        try:
            return urlopen(Request(url, headers=self.headers), timeout=self.timeout)
        except HTTPError as exc:
            code = _error_code(exc)
            if code in _MISSING:
                raise _Missing() from None
            raise MlflowUnreachableError(
                self.uri, what, f"HTTP {exc.code} {code}".strip()
            ) from None
        except (URLError, OSError) as exc:
            raise MlflowUnreachableError(self.uri, what, exc) from None


def _field(body: Any, uri: str, what: str, *keys: str) -> Any:
    """A nested field of an answer; a missing one means an answer this client does not know."""
    try:
        for key in keys:
            body = body[key]
    except (KeyError, TypeError, IndexError):
        raise MlflowUnreachableError(uri, what, f"no {'.'.join(keys)} in its answer") from None
    return body


class _Missing(Exception):
    """MLflow answered that the alias, model or version does not exist."""


def _error_code(exc: HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("error_code", ""))
    except (ValueError, OSError, AttributeError):
        return ""


def _auth_headers(user: str | None, password: str | None) -> dict[str, str]:
    """The credentials MLflow's own client would send (URI user:password, or its variables)."""
    user = user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    if token:
        return {"Authorization": f"Bearer {token}"}
    return {}
