"""Two `serve --follow-mlflow` replicas (real uvicorn, folders without models) follow a promote
made from a third folder, and refuse a version whose files do not match their SHA-256s."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import Project, write_config
from .test_mlflow_tracking import client, track
from .test_serve_e2e import WEEK, Server, free_port, start_server, stop_server

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


def replica(root: Path, server_url: str, names: dict[str, str], experiment: str) -> Project:
    root.mkdir()
    config = write_config(
        root,
        mlflow={
            "tracking_uri": server_url,
            "experiment": experiment,
            "registered_models": names,
        },
        serving={"reload_poll_seconds": 0.3},
    )
    return Project(root=root, config=config)


def wait_for(server: Server, check, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/ready", timeout=5.0).json()
        if check(body):
            return body
        time.sleep(0.3)
    pytest.fail(f"replica at {server.url} never got there; last /ready: {body}")


def answered_version(server: Server) -> str:
    response = httpx.post(f"{server.url}/api/predict", json=WEEK, timeout=5.0)
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def test_replicas_without_models_follow_a_promote_from_elsewhere_and_refuse_bad_bytes(
    trained_project: Project, mlflow_server, cli, tmp_path: Path
) -> None:
    names = track(trained_project, mlflow_server.url)
    experiment = yaml.safe_load(trained_project.config.read_text())["mlflow"]["experiment"]
    admin = trained_project.config
    assert cli("promote", "1.0.0", "--config", admin).exit_code == 0

    replicas = [
        replica(tmp_path / f"replica-{n}", mlflow_server.url, names, experiment) for n in "ab"
    ]
    servers = [start_server(r, "--follow-mlflow") for r in replicas]
    try:
        for r, server in zip(replicas, servers, strict=True):
            assert answered_version(server) == "1.0.0"
            assert not (r.root / "models" / "1.0.0").exists()
            info = httpx.get(f"{server.url}/api/info").json()
            assert "from MLflow" in server.output()
            # A replica reads the verified weights without TensorFlow (MLflow's client only).
            maps = Path(f"/proc/{server.process.pid}/maps").read_text()
            assert "libtensorflow" not in maps
            assert json.dumps(info).count(names["5features"]) >= 1
            # Production is named by the alias here, not by the unused config setting.
            assert info["production_setting"] == f"MLflow alias production of {names['5features']}"

        promoted = cli("promote", "1.1.0", "--reason", "from elsewhere", "--config", admin)
        assert promoted.exit_code == 0, promoted.output
        for server in servers:
            wait_for(server, lambda body: body["model_version"] == "1.1.0")
            assert answered_version(server) == "1.1.0"

        # Plant a wrong SHA-256 on 1.0.0's registered 5features version, then roll back to it:
        # every replica must refuse it and keep answering with 1.1.0.
        c = client(mlflow_server.url)
        name = names["5features"]
        old = next(
            mv
            for mv in c.search_model_versions(f"name = '{name}'")
            if mv.tags["hhforecast.version"] == "1.0.0"
        )
        files = json.loads(old.tags["hhforecast.files_sha256"])
        planted = {**files, "model_hh_semanal_5features.keras": "0" * 64}
        c.set_model_version_tag(name, old.version, "hhforecast.files_sha256", json.dumps(planted))
        assert cli("rollback", "--reason", "test", "--config", admin).exit_code == 0
        for server in servers:
            body = wait_for(server, lambda body: body["reload_failing"])
            assert body["ready"] is True and body["model_version"] == "1.1.0"
            assert "SHA-256" in body["last_failure"]["message"]
            assert "model_hh_semanal_5features.keras" in body["last_failure"]["message"]
            assert answered_version(server) == "1.1.0"

        # The registry fixed, the same replicas pick the rolled-back version up by themselves.
        c.set_model_version_tag(name, old.version, "hhforecast.files_sha256", json.dumps(files))
        for server in servers:
            wait_for(server, lambda body: body["model_version"] == "1.0.0")
            assert answered_version(server) == "1.0.0"
    finally:
        for server in servers:
            stop_server(server)


def test_follow_mlflow_without_an_alias_is_a_one_line_error(
    project: Project, mlflow_server, cli
) -> None:
    track(project, mlflow_server.url)
    port = str(free_port())
    result = cli("serve", "--follow-mlflow", "--port", port, "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: registered model 'hh5-")
    assert "has no 'production' alias" in result.stderr
