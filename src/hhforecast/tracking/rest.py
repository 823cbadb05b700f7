"""The few MLflow REST calls a `--follow-mlflow` replica needs, over the standard library.

Importing the MLflow client costs a replica about 100 MB of memory for three calls: read an
alias, ask where a model version's files are, download them. Over an HTTP tracking server these
go straight to its REST API (artifacts through `mlflow server`'s artifact proxy, on by default);
anything else falls back to the MLflow client.

Nothing a server answers is trusted: every answer is bounded in size, nesting and time, a
listing in depth and entries, a download in bytes and time (`Limits`), file names are checked
before they touch the disk, and credentials go only to the origin they were given for (not to
another host an artifact URI or a redirect names).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from hhforecast._json import loads
from hhforecast.tracking.client import MlflowUnreachableError
from hhforecast.tracking.runs import public_uri

__all__ = ["ARTIFACTS_SCHEME", "Limits", "RestRegistry", "is_http"]

ARTIFACTS_SCHEME = "mlflow-artifacts"
_ARTIFACTS_ROOT = "/api/2.0/mlflow-artifacts/artifacts"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
MAX_ANSWER_BYTES = 4_000_000
"""The largest JSON answer read (an alias, a run, a listing); MLflow's are a few kB."""
MAX_LISTING_DEPTH = 8
"""Folders below the model's root (a pyfunc model holds artifacts/version/...: 2)."""
MAX_LISTING_ENTRIES = 1000
"""Files and folders in one model version's listing, in all (a pyfunc model holds ~20)."""
MAX_NAME_LENGTH = 255
_CHUNK = 65536


@dataclass
class Limits:
    """How much one model version's download may take: bytes and seconds, counted as it goes."""

    max_bytes: int
    seconds: float
    recheck: Callable[[], None] | None = None
    """Called every `every` seconds while the download runs; raises to drop it."""
    every: float = 1.0
    deadline: float = field(init=False)
    received: int = 0
    entries: int = 0
    _next_check: float = field(init=False)

    def __post_init__(self) -> None:
        now = time.monotonic()
        self.deadline = now + self.seconds
        self._next_check = now + self.every

    def remaining(self) -> float:
        """Seconds left before the deadline, or raise TimeoutError once it passed (and run
        the recheck when it is due)."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            raise TimeoutError(
                f"the download took longer than mlflow.download_timeout_seconds "
                f"({self.seconds:g} s)"
            )
        if self.recheck is not None and now >= self._next_check:
            self._next_check = now + self.every
            self.recheck()
        return left

    def count(self, size: int) -> None:
        self.received += size
        if self.received > self.max_bytes:
            raise _TooLarge(
                f"the model version holds more than mlflow.max_download_bytes "
                f"({self.max_bytes} bytes)"
            )


def _origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port (the default one filled in); None when the URL names none."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


class _SameOriginRedirects(HTTPRedirectHandler):
    """Follows redirects, but the credentials only within the origin they were given for."""

    def __init__(self, origin: tuple[str, str, int] | None) -> None:
        self.origin = origin

    def redirect_request(
        self, req: Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != self.origin:
            new.remove_header("Authorization")
        return new


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
        self.origin = _origin(self.base)
        self.headers = _auth_headers(parts.username, parts.password)
        self._opener = build_opener(_SameOriginRedirects(self.origin))

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

    def download(self, artifact_uri: str, into: Path, limits: Limits) -> None:
        """Copy an `mlflow-artifacts:` folder into `into`, file by file, through the proxy,
        within `limits` (a partial copy is left for the caller to remove)."""
        what = "download the model"
        parts = urlsplit(artifact_uri)
        base = self.base
        if parts.netloc:  # mlflow-artifacts://host:port/path names another server
            origin = _origin(f"{urlsplit(self.base).scheme}://{parts.netloc}")
            if origin is None:
                raise MlflowUnreachableError(self.uri, what, f"bad artifact URI {artifact_uri!r}")
            base = f"{origin[0]}://{_netloc(origin)}"
        try:
            self._download_folder(base, parts.path.strip("/"), into, limits, 0)
        except (TimeoutError, _TooLarge) as exc:
            raise MlflowUnreachableError(self.uri, what, str(exc)) from None
        except FileExistsError as exc:
            reason = f"its listing names {Path(str(exc.filename)).name!r} twice"
            raise MlflowUnreachableError(self.uri, what, reason) from None
        except _Missing:
            raise MlflowUnreachableError(self.uri, what, "a file it lists does not exist") from None

    def _download_folder(
        self, base: str, path: str, into: Path, limits: Limits, depth: int
    ) -> None:
        what = "list the model's files"
        if depth > MAX_LISTING_DEPTH:
            raise MlflowUnreachableError(
                self.uri, what, f"its folders nest more than {MAX_LISTING_DEPTH} deep"
            )
        query = f"{_ARTIFACTS_ROOT}?{urlencode({'path': path})}"
        listing = self._json(query, what, base, limits)
        files = (listing or {}).get("files", [])
        if not isinstance(files, list):
            raise MlflowUnreachableError(self.uri, what, "its 'files' is not a list")
        limits.entries += len(files)
        if limits.entries > MAX_LISTING_ENTRIES:
            raise MlflowUnreachableError(
                self.uri, what, f"it lists more than {MAX_LISTING_ENTRIES} files and folders"
            )
        into.mkdir(parents=True, exist_ok=True)
        for entry in files:
            name = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            if not _safe_name(name):
                raise MlflowUnreachableError(self.uri, what, f"bad file name {name[:80]!r}")
            if entry.get("is_dir"):
                self._download_folder(base, f"{path}/{name}", into / name, limits, depth + 1)
                continue
            url = f"{base}{_ARTIFACTS_ROOT}/{quote(f'{path}/{name}')}"
            with (
                self._open(url, "download the model", limits.remaining()) as response,
                (into / name).open("xb") as out,
            ):
                while chunk := _read_chunk(response):
                    limits.count(len(chunk))
                    out.write(chunk)
                    limits.remaining()

    def _json(
        self, path: str, what: str, base: str | None = None, limits: Limits | None = None
    ) -> dict[str, Any] | None:
        """The JSON answer of a GET; None when MLflow says the resource does not exist. The
        answer must come within the request timeout (or the download's), bounded in size and
        nesting."""
        budget = limits or Limits(MAX_ANSWER_BYTES, self.timeout)
        try:
            with self._open(f"{base or self.base}{path}", what, budget.remaining()) as response:
                data = bytearray()
                while chunk := _read_chunk(response):
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        raise _TooLarge(f"its answer is larger than {MAX_ANSWER_BYTES} bytes")
                    budget.remaining()
            body = loads(bytes(data))
            if not isinstance(body, dict):
                raise ValueError("its answer is not a JSON object")
            return body
        except _Missing:
            return None
        except (ValueError, KeyError, TimeoutError, _TooLarge) as exc:
            reason = str(exc) if isinstance(exc, TimeoutError | _TooLarge) else exc
            raise MlflowUnreachableError(self.uri, what, reason) from None
        except OSError as exc:  # the connection broke while the answer was read
            raise MlflowUnreachableError(self.uri, what, exc) from None

    def _open(self, url: str, what: str, timeout: float | None = None) -> Any:
        # Credentials go to the origin they were given for only, never to another host.
        headers = self.headers if _origin(url) == self.origin else {}
        try:
            return self._opener.open(
                Request(url, headers=headers), timeout=min(self.timeout, timeout or self.timeout)
            )
        except HTTPError as exc:
            code = _error_code(exc)
            if code in _MISSING:
                raise _Missing() from None
            raise MlflowUnreachableError(
                self.uri, what, f"HTTP {exc.code} {code}".strip()
            ) from None
        except (URLError, OSError) as exc:
            raise MlflowUnreachableError(self.uri, what, exc) from None


def _read_chunk(response: Any) -> bytes:
    """At most one socket read's worth of the answer: a server dripping bytes returns control
    after each read, so the deadline is checked between them (and a silent server times out
    after the request timeout)."""
    try:
        return bytes(response.read1(_CHUNK))
    except TimeoutError:
        raise TimeoutError("the server stopped sending before the answer was complete") from None


def _safe_name(name: str) -> bool:
    """A file or folder name from a listing that stays inside the folder it is written to."""
    return (
        0 < len(name) <= MAX_NAME_LENGTH
        and name not in (".", "..")
        and not any(c in name for c in "/\\")
        and name.isprintable()
    )


def _netloc(origin: tuple[str, str, int]) -> str:
    host = f"[{origin[1]}]" if ":" in origin[1] else origin[1]
    return f"{host}:{origin[2]}"


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


class _TooLarge(Exception):
    """An answer or a download went past its size limit."""


def _error_code(exc: HTTPError) -> str:
    try:
        return str(loads(exc.read(MAX_ANSWER_BYTES) or b"{}").get("error_code", ""))
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
