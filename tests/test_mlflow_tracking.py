"""MLflow against a real `mlflow server`: runs, the mirror, the alias, sync after an outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import Project, write_config

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]
SAMPLE = Path(__file__).parents[1] / "src" / "hhforecast" / "datasets" / "sample_weekly.csv"


def track(project: Project, server_url: str) -> dict[str, str]:
    """Point the project at the server, with names of its own (the server is shared)."""
    tag = uuid.uuid4().hex[:8]
    names = {"5features": f"hh5-{tag}", "4features": f"hh4-{tag}"}
    write_config(
        project.root,
        mlflow={"tracking_uri": server_url, "experiment": f"exp-{tag}", "registered_models": names},
    )
    return names


def client(url: str):
    import mlflow

    return mlflow.MlflowClient(url, registry_uri=url)


def by_version(url: str, name: str, version: str):
    found = client(url).search_model_versions(f"name = '{name}'")
    return [mv for mv in found if mv.tags.get("hhforecast.version") == version]


def test_train_logs_a_run_with_the_registry_metrics_and_registers_both_variants(
    project: Project, mlflow_server, cli
) -> None:
    names = track(project, mlflow_server.url)
    result = cli("train", "--version", "1.0.0", "--config", project.config, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    run_id = out["mlflow"]["run_id"]
    assert out["mlflow"]["problem"] is None

    metadata = json.loads((project.models / "1.0.0" / "model_metadata.json").read_text())
    assert metadata["mlflow"]["run_id"] == run_id
    entry = json.loads(project.registry_file.read_text())["versions"][0]
    run = client(mlflow_server.url).get_run(run_id)
    assert run.info.status == "FINISHED"
    for variant in ("5features", "4features"):
        for metric in ("MAE", "RMSE", "R2", "MAPE"):
            assert run.data.metrics[f"{variant}.{metric}"] == pytest.approx(
                entry[f"metrics_{variant}"][metric], rel=1e-12
            )
        for baseline, scores in entry["baselines"][variant].items():
            assert run.data.metrics[f"{variant}.baseline.{baseline}.RMSE"] == pytest.approx(
                scores["RMSE"]
            )
        coverage = metadata["variants"][variant]["interval"]["observed_coverage_test"]
        assert run.data.metrics[f"{variant}.interval_coverage"] == pytest.approx(coverage)
    assert run.data.tags["hhforecast.version"] == "1.0.0"
    assert run.data.tags["dataset.sha256"] == entry["dataset_sha256"]
    assert run.data.params["hp.epochs"] == "8" and run.data.params["split.mode"] == "time"
    logged = {a.path for a in client(mlflow_server.url).list_artifacts(run_id, "version")}
    assert "version/model_hh_semanal_5features.keras" in logged
    assert "version/model_metadata.json" in logged
    for name in names.values():
        assert len(by_version(mlflow_server.url, name, "1.0.0")) == 1
        # production follows "latest" here: the new version serves, and so the alias moved.
        production = client(mlflow_server.url).get_model_version_by_alias(name, "production")
        assert production.tags["hhforecast.version"] == "1.0.0"
        assert client(mlflow_server.url).get_registered_model(name).tags["production.action"] == (
            "train"
        )

    shown = cli("registry", "show", "1.0.0", "--config", project.config, "--json")
    assert json.loads(shown.stdout)["mlflow_run_id"] == run_id
    assert run_id in cli("registry", "show", "1.0.0", "--config", project.config).stdout


def test_promote_moves_the_alias_and_the_pyfunc_answers_like_hhforecast_predict(
    trained_project: Project, mlflow_server, cli, tmp_path: Path
) -> None:
    import mlflow

    names = track(trained_project, mlflow_server.url)
    config = trained_project.config
    # 1.0.0 and 1.1.0 were trained before tracking was on: promote backfills what it moves.
    first = cli("promote", "1.0.0", "--reason", "first", "--config", config, "--json")
    assert first.exit_code == 0, first.output
    moved = json.loads(first.stdout)["mlflow"]
    assert moved["problem"] is None and moved["backfilled"] == ["1.0.0"]
    assert {m["model"] for m in moved["moves"]} == set(names.values())

    assert cli("promote", "1.1.0", "--reason", "newer", "--config", config).exit_code == 0
    rolled = cli("rollback", "--reason", "too high", "--config", config, "--json")
    assert rolled.exit_code == 0, rolled.output
    c = client(mlflow_server.url)
    for name in names.values():
        production = c.get_model_version_by_alias(name, "production")
        assert production.tags["hhforecast.version"] == "1.0.0"
        tags = c.get_registered_model(name).tags
        assert tags["production.previous_version"] == "1.1.0"
        assert tags["production.reason"] == "rollback: too high"
        assert tags["production.action"] == "rollback"
        assert tags["production.moved_at"].startswith("20")

    scored = tmp_path / "scored.csv"
    assert cli("predict", "--input", SAMPLE, "--output", scored, "--config", config).exit_code == 0
    ours = pd.read_csv(scored)
    mlflow.set_tracking_uri(mlflow_server.url)
    model = mlflow.pyfunc.load_model(f"models:/{names['5features']}@production")
    theirs = model.predict(pd.read_csv(SAMPLE))
    assert len(theirs) == len(ours)
    for column in ("HH_pred", "HH_lower", "HH_upper"):
        assert (theirs[column] - ours[column]).abs().max() <= 1e-6

    # Loading and running the pyfunc needs MLflow and NumPy, not TensorFlow.
    code = (
        "import sys, mlflow, pandas as pd; "
        f"mlflow.set_tracking_uri({mlflow_server.url!r}); "
        f"m = mlflow.pyfunc.load_model('models:/{names['5features']}@production'); "
        f"m.predict(pd.read_csv({str(SAMPLE)!r}).head(3)); "
        "print(sorted(n for n in ('tensorflow', 'keras') if n in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_challenger_alias_follows_the_challenger(
    trained_project: Project, mlflow_server, cli
) -> None:
    from mlflow.exceptions import MlflowException

    names = track(trained_project, mlflow_server.url)
    config = trained_project.config
    assert cli("promote", "1.0.0", "--config", config).exit_code == 0
    named = cli("promote", "1.1.0", "--challenger", "--config", config, "--json")
    assert named.exit_code == 0, named.output
    mirrored = json.loads(named.stdout)["mlflow"]
    assert mirrored["problem"] is None and mirrored["backfilled"] == ["1.1.0"]
    c = client(mlflow_server.url)
    for name in names.values():
        assert c.get_model_version_by_alias(name, "challenger").tags["hhforecast.version"] == (
            "1.1.0"
        )
        assert c.get_model_version_by_alias(name, "production").tags["hhforecast.version"] == (
            "1.0.0"
        )
    cleared = cli("registry", "clear-challenger", "--config", config, "--json")
    assert json.loads(cleared.stdout)["mlflow"]["problem"] is None
    for name in names.values():
        with pytest.raises(MlflowException):
            c.get_model_version_by_alias(name, "challenger")


def test_sync_moves_and_removes_the_challenger_alias_mlflow_missed(
    trained_project: Project, private_mlflow_server, cli
) -> None:
    from mlflow.exceptions import MlflowException

    names = track(trained_project, private_mlflow_server.url)
    config = trained_project.config
    assert cli("promote", "1.0.0", "--config", config).exit_code == 0
    c = client(private_mlflow_server.url)
    # The challenger named, then cleared, each while MLflow is down: the local change stands,
    # and `mlflow sync` brings the alias in line afterwards.
    private_mlflow_server.stop()
    try:
        named = cli("promote", "1.1.0", "--challenger", "--config", config)
        assert named.exit_code == 0, named.output
        assert "hhforecast mlflow sync" in named.stderr
    finally:
        private_mlflow_server.start()
    synced = cli("mlflow", "sync", "--config", config, "--json")
    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.stdout)
    assert report["challenger"] == "1.1.0"
    moves = [(m["model"], m["version"], m["previous_version"]) for m in report["challenger_moves"]]
    assert sorted(moves) == sorted((name, "1.1.0", None) for name in names.values())
    for name in names.values():
        assert c.get_model_version_by_alias(name, "challenger").tags["hhforecast.version"] == (
            "1.1.0"
        )
    again = json.loads(cli("mlflow", "sync", "--config", config, "--json").stdout)
    assert again["challenger_moves"] == []  # in line: nothing moved twice

    private_mlflow_server.stop()
    try:
        assert cli("registry", "clear-challenger", "--config", config).exit_code == 0
    finally:
        private_mlflow_server.start()
    for name in names.values():  # MLflow missed the clearing: the alias is still there
        c.get_model_version_by_alias(name, "challenger")
    cleared = cli("mlflow", "sync", "--config", config)
    assert cleared.exit_code == 0, cleared.output
    removed = sorted(line for line in cleared.stdout.splitlines() if "@challenger" in line)
    assert removed == sorted(
        f"Removed {name}@challenger (was 1.1.0): no challenger is named locally."
        for name in names.values()
    )
    for name in names.values():
        with pytest.raises(MlflowException):
            c.get_model_version_by_alias(name, "challenger")


def test_a_promote_during_an_outage_stays_local_and_sync_brings_mlflow_in_line(
    trained_project: Project, private_mlflow_server, cli
) -> None:
    names = track(trained_project, private_mlflow_server.url)
    config = trained_project.config
    assert cli("mlflow", "sync", "--config", config).exit_code == 0  # backfills 1.0.0 and 1.1.0
    assert cli("promote", "1.0.0", "--config", config).exit_code == 0

    private_mlflow_server.stop()
    try:
        down = cli("promote", "1.1.0", "--reason", "during outage", "--config", config)
        assert down.exit_code == 0, down.output
        assert "production is now 1.1.0" in down.stdout
        assert "could not" in down.stderr and "hhforecast mlflow sync" in down.stderr
        refused = cli("mlflow", "sync", "--config", config)
        assert refused.exit_code == 2 and refused.stderr.startswith("Error: MLflow at")
    finally:
        private_mlflow_server.start()
    assert yaml.safe_load(config.read_text())["mlops"]["production_version"] == "1.1.0"

    synced = cli("mlflow", "sync", "--config", config, "--json")
    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.stdout)
    assert report["production"] == "1.1.0" and len(report["moves"]) == 2
    c = client(private_mlflow_server.url)
    for name in names.values():
        assert c.get_model_version_by_alias(name, "production").tags["hhforecast.version"] == (
            "1.1.0"
        )
        assert c.get_registered_model(name).tags["production.reason"] == "during outage"
        assert len(by_version(private_mlflow_server.url, name, "1.1.0")) == 1  # no duplicate
    again = json.loads(cli("mlflow", "sync", "--config", config, "--json").stdout)
    assert again["moves"] == [] and again["backfilled"] == []


def test_backtest_logs_a_run(project: Project, mlflow_server, cli) -> None:
    track(project, mlflow_server.url)
    result = cli("backtest", "--folds", "1", "--horizon", "8", "--config", project.config, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    run = client(mlflow_server.url).get_run(out["mlflow"]["run_id"])
    pooled = out["overall"]["5features"]["network"]["RMSE"]
    assert run.data.metrics["5features.network.RMSE"] == pytest.approx(pooled)
    assert run.data.tags["hhforecast.command"] == "backtest"
    assert len(run.data.tags["dataset.sha256"]) == 64


def test_train_with_mlflow_unreachable_still_trains_and_says_so(project: Project, cli) -> None:
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from .mlflow_server import free_port

    write_config(project.root, mlflow={"tracking_uri": f"http://127.0.0.1:{free_port()}"})
    result = cli("train", "--version", "1.0.0", "--config", project.config, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mlflow"]["run_id"] is None
    assert "could not" in result.stderr and "hhforecast mlflow sync" in result.stderr
    metadata = json.loads((project.models / "1.0.0" / "model_metadata.json").read_text())
    assert "mlflow" not in metadata
    assert json.loads(project.registry_file.read_text())["versions"][0]["version"] == "1.0.0"


def test_mlflow_models_serve_answers_what_hhforecast_predict_writes(
    trained_project: Project, mlflow_server, cli, tmp_path: Path
) -> None:
    import os
    import signal
    import time

    import httpx

    from .mlflow_server import free_port

    names = track(trained_project, mlflow_server.url)
    assert cli("promote", "1.1.0", "--config", trained_project.config).exit_code == 0
    scored = tmp_path / "scored.csv"
    args = ["predict", "--input", SAMPLE, "--output", scored, "--config", trained_project.config]
    assert cli(*args).exit_code == 0
    ours = pd.read_csv(scored)

    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    log = (tmp_path / "mlflow-serve.log").open("wb")
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m"]
    command += [f"models:/{names['5features']}@production", "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    weeks = pd.read_csv(SAMPLE).drop(columns=["date", "HH"])
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "mlflow-serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.5)
        body = {"dataframe_records": weeks.to_dict("records")}
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        theirs = pd.DataFrame(answer.json()["predictions"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()
    assert len(theirs) == len(ours) == 260
    assert (theirs["HH_pred"] - ours["HH_pred"]).abs().max() <= 1e-6


def test_mlflow_sync_prints_only_what_the_user_must_know(trained_project: Project) -> None:
    """MLflow's own chatter (database set-up INFO lines, a pickling caution and a type-hint
    advice in raw colour codes, both about our pyfunc class) stays out of the output."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    import hhforecast

    write_config(trained_project.root, mlflow={"tracking_uri": "sqlite:///mlflow.db"})
    src = str(Path(hhforecast.__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "hhforecast", "mlflow", "sync"],
        cwd=trained_project.root,
        env={**env, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    db = f"sqlite:///{trained_project.root.resolve()}/mlflow.db"
    assert done.stdout.splitlines() == [
        f"MLflow at {db}: 2 local version(s); registered now: 1.0.0, 1.1.0; already there: none.",
        "Moved hhforecast-4features@production to v2 (version 1.1.0; was unset).",
        "Moved hhforecast-5features@production to v2 (version 1.1.0; was unset).",
    ]
