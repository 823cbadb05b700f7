"""A hostile MLflow tracking server: it answers the REST calls a `--follow-mlflow` replica makes
(tracking/rest.py) with whatever a test sets: crafted tags, listings, sizes, nesting, slow or
endless bodies, redirects. Plain `http.server` on a free loopback port, in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from hhforecast.tracking.mirror import FILES_TAG, TRAINED_AT_TAG, folder_hashes

ALIAS = "/api/2.0/mlflow/registered-models/alias"
DOWNLOAD_URI = "/api/2.0/mlflow/model-versions/get-download-uri"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MODEL_PREFIX = "artifacts/version"
"""Where a pyfunc model keeps the version folder (the replica finds it by its metadata)."""

Hook = Callable[["Handler", str], bool]
"""Answers a request itself (True) or lets the stub answer normally (False)."""


@dataclass
class Seen:
    path: str
    authorization: str | None


@dataclass
class ModelVersion:
    files: dict[str, bytes]
    tags: dict[str, str]


@dataclass
class HostileMlflow:
    """The server's state: model versions, which one `production` names, and hooks."""

    versions: dict[str, ModelVersion] = field(default_factory=dict)
    production: str | None = None
    artifact_uri: Callable[[str], str] = lambda number: f"mlflow-artifacts:/models/{number}"
    hooks: dict[str, Hook] = field(default_factory=dict)
    """By kind: alias, download_uri, listing, file."""
    seen: list[Seen] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def publish(
        self, number: str, folder: Path, version: str | None = None, **tags: str
    ) -> ModelVersion:
        """A model version carrying `folder` as hhforecast registers it, with its files tag
        (the SHA-256 of every file) and `tags` on top; `production` points at it."""
        files = {
            f"{MODEL_PREFIX}/{path.relative_to(folder).as_posix()}": path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        files["MLmodel"] = b"flavors: {}\n"
        metadata = json.loads((folder / "model_metadata.json").read_text())
        found = ModelVersion(
            files,
            {
                "hhforecast.version": version or str(metadata["version"]),
                TRAINED_AT_TAG: str(metadata["trained_at"]),
                FILES_TAG: json.dumps(folder_hashes(folder)),
                **tags,
            },
        )
        self.versions[number] = found
        self.production = number
        return found

    def start(self) -> HostileMlflow:
        stub = self

        class BoundHandler(Handler):
            server_state = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), BoundHandler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class Handler(BaseHTTPRequestHandler):
    server_state: HostileMlflow

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def send_json(self, body: Any, status: int = 200) -> None:
        self.send_bytes(json.dumps(body).encode(), status)

    def send_bytes(self, data: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def missing(self) -> None:
        self.send_json({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}, 404)

    def drip(self, byte: bytes = b"x", every: float = 0.1, total: int | None = None) -> None:
        """An endless (or `total`-byte) body, `byte` at a time, until the client goes away."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        sent = 0
        try:
            while not self.server_state.stopping.is_set() and (total is None or sent < total):
                self.wfile.write(byte)
                self.wfile.flush()
                sent += len(byte)
                if every:
                    time.sleep(every)
        except OSError:
            return

    def do_GET(self) -> None:
        state = self.server_state
        state.seen.append(Seen(self.path, self.headers.get("Authorization")))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind = {
            ALIAS: "alias",
            DOWNLOAD_URI: "download_uri",
            ARTIFACTS: "listing",
        }.get(parts.path, "file" if parts.path.startswith(ARTIFACTS + "/") else "")
        hook = state.hooks.get(kind)
        if hook is not None and hook(self, query.get("path", unquote(parts.path))):
            return
        if kind == "alias":
            found = state.versions.get(state.production or "")
            if found is None:
                return self.missing()
            tags = [{"key": k, "value": v} for k, v in found.tags.items()]
            self.send_json({"model_version": {"version": state.production, "tags": tags}})
        elif kind == "download_uri":
            self.send_json({"artifact_uri": state.artifact_uri(query.get("version", ""))})
        elif kind == "listing":
            self.send_json({"files": self.listing(query.get("path", ""))})
        elif kind == "file":
            number, _, inside = (
                unquote(parts.path).removeprefix(ARTIFACTS + "/models/").partition("/")
            )
            found = state.versions.get(number)
            if found is None or inside not in found.files:
                return self.missing()
            self.send_bytes(found.files[inside])
        else:
            self.missing()

    def listing(self, path: str) -> list[dict[str, Any]]:
        number, _, inside = path.removeprefix("models/").partition("/")
        found = self.server_state.versions.get(number)
        if found is None:
            return []
        prefix = f"{inside}/" if inside else ""
        entries: dict[str, dict[str, Any]] = {}
        for name, data in found.files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name.removeprefix(prefix).partition("/")
            entries[head] = {"path": head, "is_dir": bool(rest), "file_size": len(data)}
        return list(entries.values())
