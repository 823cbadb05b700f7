"""Servers shared by every xdist worker of a run: one PostgreSQL cluster and one `mlflow server`
instead of one per worker.

The first worker that needs one starts it under a file lock and describes it in a JSON file in
the run's shared temporary folder; the others read that file and use the same server. No worker
knows whether it is the last to need it, so none stops it: the process that runs the whole session
(xdist's controller, or pytest itself without -n) stops every server described there at the end.
Tests that stop a server to hold an outage start a private one instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from .postgres_server import PostgresServer

DESCRIPTION = "service.json"


SERVICES_ENV = "HHFORECAST_TEST_SERVICES"
"""The folder of the run's shared servers, made by the session's process before the workers
start (they inherit it)."""


def services_folder() -> Path:
    return Path(os.environ[SERVICES_ENV])


def shared_service(root: Path, name: str, start: Callable[[Path], dict]) -> dict:
    """The description of the run's server `name`, started by `start(folder)` if no process of
    the run has started it yet. `start` returns a JSON-able description with a "kind"
    (see `stop_shared_services`)."""
    folder = root / f"service-{name}"
    described = folder / DESCRIPTION
    with FileLock(str(folder) + ".lock"):
        if not described.exists():
            folder.mkdir(exist_ok=True)
            text = json.dumps(start(folder))
            partial = folder / (DESCRIPTION + ".partial")
            partial.write_text(text)
            partial.replace(described)
    return dict(json.loads(described.read_text()))


def postgres_description(server: PostgresServer, folder: Path) -> dict:
    return {
        "kind": "postgres",
        "bin": str(server.bin),
        "data": str(server.data),
        "port": server.port,
        "folder": str(folder),
    }


def postgres_from(described: dict) -> PostgresServer:
    return PostgresServer(Path(described["bin"]), Path(described["data"]), described["port"])


def _group_running(group: int) -> bool:
    """Whether a process of the group is still running (an exited one waiting to be reaped by
    the worker that started it does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


def _stop_process_group(group: int) -> None:
    """SIGTERM a server's process group (it runs uvicorn workers), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _group_running(group):
            if time.monotonic() > deadline:
                os.killpg(group, signal.SIGKILL)
                return
            time.sleep(0.1)


def stop_shared_services(root: Path) -> None:
    """Stop every server the run's workers shared (MLflow first, then the PostgreSQL cluster
    it may store into) and remove their folder."""
    found = [json.loads(p.read_text()) for p in root.glob(f"service-*/{DESCRIPTION}")]
    for described in sorted(found, key=lambda d: d["kind"] == "postgres"):
        if described["kind"] == "mlflow":
            _stop_process_group(int(described["pid"]))
        elif described["kind"] == "postgres":
            with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
                postgres_from(described).stop()
            shutil.rmtree(described["folder"], ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
