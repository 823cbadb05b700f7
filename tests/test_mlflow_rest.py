"""A `serve --follow-mlflow` replica over HTTP reads the alias and downloads the model through
the tracking server's REST API: the MLflow client (about 100 MB) is never imported, not at start
and not when it swaps to a newly promoted version. Over a local store it falls back to the
client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import Project, write_config
from .test_mlflow_follower import answered_version, replica, wait_for
from .test_mlflow_tracking import track
from .test_serve_e2e import Server, free_port, stop_server, wait_until_ready

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]

# The real `hhforecast serve` in this process; a thread reports, once /ready names the awaited
# version, whether anything imported mlflow and the process's resident memory.
REPLICA = """
import json, sys, threading, time, urllib.request
port, awaited = sys.argv[1], sys.argv[2]

def report():
    while True:
        time.sleep(0.2)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                body = json.load(r)
        except OSError:
            continue
        if body.get("model_version") == awaited:
            rss = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
            loaded = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
            print("REPORT " + json.dumps({"mlflow": loaded, "rss_kb": int(rss.split()[1])}),
                  flush=True)
            return

threading.Thread(target=report, daemon=True).start()
from hhforecast.cli import main
sys.argv = ["hhforecast", *sys.argv[3:]]
main()
"""


def start_replica(config: Path, awaited: str) -> Server:
    port = free_port()
    log = config.parent / f"serve-{port}.log"
    command = [sys.executable, "-c", REPLICA, str(port), awaited]
    serve = ["serve", "--follow-mlflow", "--port", str(port), "--config", str(config)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, *serve],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=config.parent,
        )
    return wait_until_ready(Server(process, f"http://127.0.0.1:{port}", log), "the replica")


def reported(server: Server, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.output().splitlines():
            if line.startswith("REPORT "):
                return json.loads(line.removeprefix("REPORT "))
        time.sleep(0.2)
    pytest.fail(f"the replica never reported:\n{server.output()}")


def test_a_replica_following_over_http_swaps_without_importing_mlflow(
    trained_project: Project, mlflow_server, cli, tmp_path: Path
) -> None:
    names = track(trained_project, mlflow_server.url)
    experiment = yaml.safe_load(trained_project.config.read_text())["mlflow"]["experiment"]
    admin = trained_project.config
    assert cli("promote", "1.0.0", "--config", admin).exit_code == 0
    follower = replica(tmp_path / "replica", mlflow_server.url, names, experiment)
    server = start_replica(follower.config, awaited="1.1.0")
    try:
        assert answered_version(server) == "1.0.0"
        assert (follower.root / "mlflow-cache" / names["5features"]).is_dir()
        promoted = cli("promote", "1.1.0", "--reason", "swap", "--config", admin)
        assert promoted.exit_code == 0, promoted.output
        wait_for(server, lambda body: body["model_version"] == "1.1.0")
        assert answered_version(server) == "1.1.0"
        report = reported(server)
        assert report["mlflow"] == [], report
        assert report["rss_kb"] < 250 * 1024, report
    finally:
        stop_server(server)


def test_a_replica_following_a_local_store_falls_back_to_the_mlflow_client(
    trained_project: Project, cli, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    (tmp_path / "shared").mkdir()
    names = {"5features": "hh5-local", "4features": "hh4-local"}
    write_config(
        trained_project.root,
        mlflow={"tracking_uri": uri, "experiment": "local", "registered_models": names},
    )
    assert cli("promote", "1.0.0", "--config", trained_project.config).exit_code == 0
    follower = replica(tmp_path / "replica", uri, names, "local")
    server = start_replica(follower.config, awaited="1.0.0")
    try:
        assert answered_version(server) == "1.0.0"
        # The same report that finds no MLflow over HTTP finds it here, where it is needed.
        assert "mlflow" in reported(server)["mlflow"]
    finally:
        stop_server(server)
