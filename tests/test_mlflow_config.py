"""The `mlflow:` section, and MLflow staying out of every command that does not track."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hhforecast.config import load_settings

from .conftest import Project, write_config


def test_tracking_is_off_by_default_with_the_documented_names(project: Project) -> None:
    settings = project.settings
    assert settings.mlflow_tracking_uri is None
    assert settings.mlflow.experiment == "hhforecast"
    assert settings.mlflow.model_name("5features") == "hhforecast-5features"
    assert settings.mlflow.model_name("4features") == "hhforecast-4features"
    assert settings.mlflow.model_name("6features") == "hhforecast-6features"


def test_relative_stores_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    sqlite = load_settings(write_config(folder, mlflow={"tracking_uri": "sqlite:///mlflow.db"}))
    assert sqlite.mlflow_tracking_uri == f"sqlite:///{folder.resolve()}/mlflow.db"
    files = load_settings(write_config(folder, mlflow={"tracking_uri": "runs"}))
    assert files.mlflow_tracking_uri == (folder.resolve() / "runs").as_uri()
    server = load_settings(write_config(folder, mlflow={"tracking_uri": "https://ml.example"}))
    assert server.mlflow_tracking_uri == "https://ml.example"


def test_the_environment_variable_wins_over_the_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(project.root, mlflow={"tracking_uri": "sqlite:///a.db"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert project.settings.mlflow_tracking_uri == "http://127.0.0.1:5999"


def test_an_unknown_mlflow_key_is_refused(project: Project, cli) -> None:
    write_config(project.root, mlflow={"tracking_url": "x"})
    result = cli("registry", "list", "--config", project.config)
    assert result.exit_code == 2
    assert "unknown key 'mlflow.tracking_url'" in result.stderr


def _modules_after(args: list[str], cwd: Path) -> dict[str, object]:
    code = (
        "import sys, json\n"
        "from hhforecast.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps({'mlflow': sorted(m for m in sys.modules if m.split('.')[0] == "
        "'mlflow'), 'code': code}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=False
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [["--help"], ["registry", "list"], ["registry", "list", "--json"], ["promote", "--help"]],
)
def test_help_and_registry_list_never_import_mlflow_even_with_tracking_on(
    trained_project: Project, args: list[str]
) -> None:
    write_config(trained_project.root, mlflow={"tracking_uri": "http://127.0.0.1:9"})
    seen = _modules_after(args, trained_project.root)
    assert seen["code"] in (0, None)
    assert seen["mlflow"] == []


def test_without_tracking_train_writes_nothing_about_mlflow(trained_project: Project) -> None:
    metadata = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    assert "mlflow" not in metadata
    entry = json.loads(trained_project.registry_file.read_text())["versions"][0]
    assert not any(key.startswith("mlflow") for key in entry)


def test_mlflow_sync_without_a_tracking_uri_is_a_one_line_error(project: Project, cli) -> None:
    result = cli("mlflow", "sync", "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: MLflow is not configured: set mlflow.tracking_uri")
    assert "Traceback" not in result.stderr + result.stdout
