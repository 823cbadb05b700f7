"""`hhforecast serve` for real: uvicorn in a subprocess, HTTP over a socket, a live promotion."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .conftest import Project, write_config

WEEK = {
    "acft": 249,
    "sum_daily_hours": 2539.5,
    "Cycles": 1591,
    "sum_uti_mensal": 11261.3,
    "age_fleet": 8037205.9,
}
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(project: Project, *extra: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = project.root / f"serve-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "hhforecast", "serve", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--config", str(project.config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=project.root,
        )
    return wait_until_ready(Server(process, f"http://127.0.0.1:{port}", log), "the server")


def wait_until_ready(server: Server, what: str) -> Server:
    """`server` once /ready answers 200; the test fails with its output if it exits or stalls."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"{what} exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    pytest.fail(f"{what} did not become ready in {START_TIMEOUT:.0f} s:\n{server.output()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def fast_poll_project(trained_project: Project) -> Project:
    write_config(trained_project.root, serving={"reload_poll_seconds": 0.2})
    return trained_project


@pytest.fixture
def server(fast_poll_project: Project) -> Iterator[Server]:
    running = start_server(fast_poll_project)
    yield running
    stop_server(running)


@dataclass
class Burst:
    """Clients posting predictions as fast as they can until stopped."""

    url: str
    versions: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, clients: int) -> list[threading.Thread]:
        threads = []
        for _ in range(clients):
            seen: list[str] = []
            self.versions.append(seen)
            thread = threading.Thread(target=self._client, args=(seen,), daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def _client(self, seen: list[str]) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/api/predict", json=WEEK)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text}")
                    continue
                seen.append(response.json()["model_version"])


@pytest.mark.slow
def test_serve_answers_over_http_and_follows_a_promotion_live(
    server: Server, fast_poll_project: Project
) -> None:
    assert "Model loaded (version: models/1.1.0)" in server.output()
    week = httpx.post(f"{server.url}/api/predict", json=WEEK).json()
    assert week["model_version"] == "1.1.0" and week["HH_lower"] <= week["HH"] <= week["HH_upper"]
    bad = httpx.post(f"{server.url}/api/predict", json={**WEEK, "acft": "many"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "acft"

    burst = Burst(server.url)
    threads = burst.run(clients=3)
    assert wait_until(lambda: all(burst.versions)), "a client got no answer before the promotion"
    promoted = subprocess.run(
        [
            sys.executable,
            "-m",
            "hhforecast",
            "promote",
            "1.0.0",
            "--config",
            str(fast_poll_project.config),
        ],
        capture_output=True,
        text=True,
        cwd=fast_poll_project.root,
        timeout=120,
    )
    assert promoted.returncode == 0, promoted.stderr
    deadline = time.monotonic() + 30
    info: dict = {}
    while time.monotonic() < deadline:
        info = httpx.get(f"{server.url}/api/info").json()
        if info["model_version"] == "1.0.0":
            break
        time.sleep(0.1)
    # Keep the burst going until every client has been answered by the new version.
    wait_until(lambda: all("1.0.0" in seen for seen in burst.versions))
    burst.stop.set()
    for thread in threads:
        thread.join(15)

    assert info["model_version"] == "1.0.0", info
    assert info["production_setting"] == "1.0.0"
    assert info["reload"]["reloads"] == 1 and info["reload"]["failing"] is False
    assert burst.failures == []
    answered = [v for seen in burst.versions for v in seen]
    assert len(answered) > 20 and {"1.1.0", "1.0.0"} <= set(answered)
    for seen in burst.versions:  # each client moves from the old version to the new one once
        switch = seen.index("1.0.0") if "1.0.0" in seen else len(seen)
        assert set(seen[:switch]) <= {"1.1.0"} and set(seen[switch:]) <= {"1.0.0"}
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "hhforecast_model_reloads_total 1.0" in metrics
    assert 'hhforecast_model_info{variant="5features",version="1.0.0"} 1.0' in metrics
    assert "now serving version 1.0.0 (was 1.1.0)" in server.output()


def metric(text: str, name: str) -> float:
    """The value of one sample line of /metrics (e.g. 'hhforecast_predictions_total{...}')."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


@pytest.mark.slow
def test_serve_with_two_workers_uses_the_app_factory_and_adds_up_metrics(
    fast_poll_project: Project,
) -> None:
    scratch = fast_poll_project.root / "scratch"
    scratch.mkdir()
    running = start_server(fast_poll_project, "--workers", "2", env={"TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + START_TIMEOUT  # the second worker may still be loading
        loaded = "Model loaded (version: models/1.1.0) in worker"
        while running.output().count(loaded) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running.output().count(loaded) == 2, running.output()
        assert "Starting 2 workers on" in running.output()
        # A new connection per request: the kernel hands them to either worker.
        answers = {
            httpx.post(f"{running.url}/api/predict", json=WEEK).json()["HH"] for _ in range(40)
        }
        assert len(answers) == 1
        (folder,) = scratch.glob("hhforecast-metrics-*")
        writers = {path.stem.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}
        assert len(writers) == 2, "both workers should have answered some of the 40 requests"
        # Whichever worker answers a scrape, it reports both workers' counts added up.
        served = 'hhforecast_predictions_total{variant="5features",version="1.1.0"}'
        predicted = 'hhforecast_http_requests_total{method="POST",path="/api/predict",status="200"}'
        model = 'hhforecast_model_info{variant="5features",version="1.1.0"}'
        for _ in range(6):
            text = httpx.get(f"{running.url}/metrics").text
            assert metric(text, served) == 40.0
            assert metric(text, predicted) == 40.0
            assert metric(text, model) == 1.0
    finally:
        stop_server(running)
    assert running.process.returncode == 0, running.output()
    assert not list(scratch.iterdir()), "the metrics folder is removed when the server stops"


BLAS_THREADS = """
import json, sys
import numpy  # noqa: F401  (BLAS is loaded with it)
import uvicorn
from threadpoolctl import threadpool_info

def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

print(json.dumps(blas_threads()))
if sys.argv[1] == "serve":
    from hhforecast.config import load_settings
    from hhforecast.serving.server import plan_server, run_server

    uvicorn.run = lambda *args, **kwargs: print(json.dumps(blas_threads()))
    settings = load_settings()
    run_server(settings, plan_server(settings, port=int(sys.argv[2])))
else:
    from hhforecast.serving.app import app_from_environment

    app_from_environment()
    print(json.dumps(blas_threads()))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="BLAS runs one thread on one core anyway")
@pytest.mark.parametrize("entry", ["serve", "worker"])
def test_a_serving_process_runs_blas_on_one_thread(trained_project: Project, entry: str) -> None:
    """A forward pass is a few products of matrices at most `units` wide; OpenBLAS shared one
    of a few hundred rows (a challenger's forecasts of one write cycle) among threads that then
    spun waiting for more work, nearly doubling the service's CPU per answer (wrk: 319 to 191 µs,
    docs/benchmarks.md). `hhforecast serve` and each worker of `--workers N` run one."""
    env = {**os.environ, "HHFORECAST_CONFIG": str(trained_project.config)}
    done = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS, entry, str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        cwd=trained_project.root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    before, serving = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert before, f"NumPy loaded no BLAS:\n{done.stdout}"
    if max(before) == 1:
        pytest.skip("this NumPy's BLAS runs one thread anyway: nothing to tell apart")
    assert serving and set(serving) == {1}, done.stdout
