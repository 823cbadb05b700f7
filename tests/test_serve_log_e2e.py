"""`hhforecast serve` for real, with its prediction log locked by another process and stopped by
SIGTERM: no answered prediction is lost, and the log's state shows in /ready and /metrics."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .conftest import Project
from .test_prediction_log import release
from .test_serve_e2e import WEEK, Server, start_server, stop_server

DEADLINE = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll `condition` until it holds (short pauses between looks), or fail saying `what`."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows_in(path: Path) -> int:
    with sqlite3.connect(path, timeout=30) as connection:
        return int(connection.execute("SELECT count(*) FROM predictions").fetchone()[0])


def log_check(server: Server) -> dict:
    return httpx.get(f"{server.url}/ready", timeout=10.0).json()["checks"]["prediction_log"]


def metric(server: Server, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10.0).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def test_a_30_second_lock_from_another_process_loses_none_of_500_predictions(
    trained_project: Project,
) -> None:
    database = trained_project.models / "predictions.sqlite"
    server = start_server(trained_project)
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        wait_for(lambda: log_check(server)["rows_written"] == 1, "the first row")
        locker = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(database), "30"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            answers = [client.post("/api/predict", json=WEEK) for _ in range(500)]
        assert [a.status_code for a in answers] == [200] * 500
        wait_for(lambda: log_check(server)["status"] == "degraded", "the degraded state")
        check = log_check(server)
        assert "database is locked" in check["reason"]
        assert check["queue_depth"] == 500 and check["rows_dropped"] == 0
        info = httpx.get(f"{server.url}/api/info").json()["prediction_log"]
        assert info["status"] == "degraded" and info["queue_depth"] == 500
        assert metric(server, "hhforecast_prediction_log_queue_depth") == 500
        assert locker.wait(60) == 0  # the lock is held for 30 s, then released
        wait_for(lambda: log_check(server)["rows_written"] == 501, "the held rows")
        assert log_check(server)["status"] == "ok"
        assert metric(server, "hhforecast_prediction_log_rows_written_total") == 501
        assert metric(server, "hhforecast_prediction_log_rows_dropped_total") == 0
        assert metric(server, "hhforecast_prediction_log_queue_depth") == 0
    finally:
        stop_server(server)
    assert rows_in(database) == 501


def test_sigterm_right_after_a_burst_loses_nothing(trained_project: Project) -> None:
    from .test_prediction_log import lock_in_another_process

    database = trained_project.models / "predictions.sqlite"
    server = start_server(trained_project)
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        wait_for(lambda: log_check(server)["rows_written"] == 1, "the first row")
        # Locked during the burst, so that the rows are surely still queued at SIGTERM.
        locker = lock_in_another_process(database)

        def client(_: int) -> list[int]:
            with httpx.Client(base_url=server.url, timeout=10.0) as http:
                return [http.post("/api/predict", json=WEEK).status_code for _ in range(50)]

        with ThreadPoolExecutor(8) as pool:
            codes = [code for codes in pool.map(client, range(8)) for code in codes]
        assert codes == [200] * 400
        server.process.send_signal(signal.SIGTERM)
        release(locker)
        server.process.wait(60)
    finally:
        stop_server(server)
    assert rows_in(database) == 401
    assert not database.with_name("predictions.sqlite.unwritten.jsonl").exists()
