"""Shared fixtures: every test runs in its own folder with a fast training config.

Training is real (TensorFlow, a few epochs of a tiny network). Versions that many tests read are
trained once per session into a template project and copied into each test's folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from filelock import FileLock
from typer.testing import CliRunner

from hhforecast.cli import app
from hhforecast.config import CONFIG_ENV, Settings, load_settings

from .postgres_server import BIN_GLOB, PostgresServer, postgres_bin, start_postgres
from .shared_services import (
    SERVICES_ENV,
    postgres_description,
    postgres_from,
    services_folder,
    shared_service,
    stop_shared_services,
)

_DATABASES = itertools.count()
_SHARED_PROCESSES: list[object] = []

FAST_TRAINING = {
    "epochs": 8,
    "patience": 3,
    "units": 8,
    "batch_size": 64,
    "min_rows": 30,
    # Two long rolling-origin folds on the sample: one is its 65 test weeks, one (the 65 weeks
    # before) calibrates the intervals of the first.
    "interval_folds": 1,
    "backtest_horizon": 65,
}


SCORED_IS_SERVED = {"refit_on_all_weeks": False}
"""Versions whose served fit is the scored one (`train --score-served-fit`): their held-out weeks
stay unseen, which the fair-week gate's tests need. The refit on every week is tested in
test_training.py, test_cli_train.py and test_attacks_gate.py."""


def write_config(folder: Path, **sections: dict) -> Path:
    """A config.yaml in `folder` with fast training plus any section overrides."""
    data: dict = {"training": dict(FAST_TRAINING)}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Project:
    """A folder with a config.yaml, a models/ folder and (maybe) trained versions."""

    root: Path
    config: Path

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def registry_file(self) -> Path:
        return self.models / "registry.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with several workers the long ones start at once, not at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # never a user's own server
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project with a fast training config."""
    return Project(root=tmp_path, config=write_config(tmp_path))


def shared_template(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """A folder built once for the whole run, however many workers run the tests: the first to
    ask builds it under a file lock, the others wait and share it (tests copy it)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / f"template-{name}"
    with FileLock(str(root) + ".lock"):
        if not (root / ".built").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            build(root)
            (root / ".built").touch()
    return root


def copy_template(template: Path, folder: Path) -> None:
    """Copy a template's files (not its build marker) into `folder`."""
    shutil.copytree(template, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))


def _two_versions(**training: object) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        from hhforecast.modeling.training import train_version

        settings = load_settings(write_config(root, training=dict(training)))
        train_version(settings, version="1.0.0")
        train_version(settings.with_training(seed=7, epochs=4), version="1.1.0")

    return build


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_template(tmp_path_factory, "trained", _two_versions())


@pytest.fixture(scope="session")
def _scored_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_template(tmp_path_factory, "scored", _two_versions(**SCORED_IS_SERVED))


@pytest.fixture
def scored_project(tmp_path: Path, _scored_template: Path) -> Project:
    """Versions 1.0.0 and 1.1.0 serving the fit that was scored: their held-out weeks are
    unseen, the ground the fair-week gate judges on."""
    return copy_project(_scored_template, tmp_path)


def copy_project(template: Path, folder: Path) -> Project:
    """Copy a template project's files into `folder`."""
    copy_template(template, folder)
    return Project(root=folder, config=folder / "config.yaml")


@pytest.fixture
def trained_project(tmp_path: Path, _trained_template: Path) -> Project:
    """A project with versions 1.0.0 and 1.1.0 already trained (copied, not retrained)."""
    return copy_project(_trained_template, tmp_path)


HELD_OUT_WEEKS = 65
"""The sample's last quarter (260 weeks, test_fraction 0.25): every version's held-out weeks."""
INFLATED_DATASET = "inflated_hh.csv"


@pytest.fixture(scope="session")
def _ranked_template(tmp_path_factory: pytest.TempPathFactory, _scored_template: Path) -> Path:
    def build(root: Path) -> None:
        from hhforecast.datasets.weekly import sample_dataset_path
        from hhforecast.modeling.training import train_version

        project = copy_project(_scored_template, root)
        frame = pd.read_csv(sample_dataset_path())
        learnt = len(frame) - HELD_OUT_WEEKS
        frame.loc[: learnt - 1, "HH"] *= 1.6
        frame.to_csv(root / INFLATED_DATASET, index=False)
        settings = project.settings.with_training(epochs=2)
        train_version(settings, root / INFLATED_DATASET, "1.2.0")

    return shared_template(tmp_path_factory, "ranked", build)


@pytest.fixture
def ranked_project(tmp_path: Path, _ranked_template: Path) -> Project:
    """The trained project plus version 1.2.0 (production), the worse forecaster by construction.

    1.2.0 learnt from the sample with the HH of its training weeks inflated by 60%; its held-out
    weeks are the sample's real last quarter, the same weeks 1.0.0 and 1.1.0 hold out. On them it
    forecasts about 60% too high, whatever the network's random draw.
    """
    return copy_project(_ranked_template, tmp_path)


@pytest.fixture
def columns80(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal 80 columns wide, as rich reads it from $COLUMNS."""
    from hhforecast.cli._common import console, err_console

    monkeypatch.setenv("COLUMNS", "80")
    for c in (console, err_console):
        monkeypatch.setattr(c, "_width", None)


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


def rerecord(folder: Path, *names: str, registry: bool = True) -> None:
    """Record the current SHA-256 of `names` in the version's metadata and (with `registry`)
    the metadata's own SHA-256 in its registry entry, as someone allowed to write both would."""
    import hashlib
    import json

    meta_path = folder / "model_metadata.json"
    metadata = json.loads(meta_path.read_text())
    for name in names:
        metadata["artifacts"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(metadata, indent=2))
    registry_path = folder.parent / "registry.json"
    if registry and registry_path.exists():
        data = json.loads(registry_path.read_text())
        for entry in data["versions"]:
            if entry["version"] == folder.name:
                entry["metadata_sha256"] = hashlib.sha256(meta_path.read_bytes()).hexdigest()
        registry_path.write_text(json.dumps(data, indent=2))


def pytest_configure(config: pytest.Config) -> None:
    if SERVICES_ENV not in os.environ:  # the session's process; its xdist workers inherit it
        os.environ[SERVICES_ENV] = tempfile.mkdtemp(prefix="hhforecast-test-services-")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") and SERVICES_ENV in os.environ:
        stop_shared_services(services_folder())


def _mlflow_backend(request: pytest.FixtureRequest, name: str) -> str | None:
    """A database of the run's PostgreSQL for an MLflow server's backend store, as
    docs/mlflow.md's scale-out recipe says (None, for SQLite, when PostgreSQL is not installed)."""
    if postgres_bin() is None or importlib.util.find_spec("psycopg") is None:
        return None
    cluster: PostgresServer = request.getfixturevalue("postgres")
    url = cluster.create_database(name)
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest):
    """A real `mlflow server` (free loopback port, local artifacts, its backend store in the
    run's PostgreSQL) shared by every worker of the run: tests use names of their own. Never
    stopped by a test: those that hold an outage use `private_mlflow_server`."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from .mlflow_server import MlflowServer

    def start(folder: Path) -> dict:
        server = MlflowServer(folder, backend=_mlflow_backend(request, "mlflow_shared"))
        server.start()
        assert server.process is not None
        _SHARED_PROCESSES.append(server)  # outlives this worker: the session's process stops it
        return {"kind": "mlflow", "pid": server.process.pid, "port": server.port}

    described = shared_service(services_folder(), "mlflow", start)
    return MlflowServer(services_folder() / "service-mlflow", port=described["port"])


@pytest.fixture(scope="module")
def private_mlflow_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """A real `mlflow server` no other worker uses, for tests that stop it to hold an outage:
    the module's tests in one worker share it, so each starts it again before it ends."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from .mlflow_server import MlflowServer

    backend = _mlflow_backend(request, f"mlflow_{os.getpid()}_{next(_DATABASES)}")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), backend=backend)
    server.start()
    yield server
    server.stop()


def _needs_postgres() -> None:
    if postgres_bin() is None:
        pytest.skip(
            f"PostgreSQL is not installed (no {BIN_GLOB}/pg_ctl): apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")


def _postgres_folder() -> Path:
    """A folder of its own under the system's temporary folder (pytest's is closed to the
    `postgres` user)."""
    return Path(tempfile.mkdtemp(prefix="hhforecast-postgres-"))


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A real PostgreSQL server (Debian's `postgresql` package) shared by every worker of the
    run. Never stopped by a test: those that hold an outage use `private_postgres`."""
    _needs_postgres()

    def start(_: Path) -> dict:
        folder = _postgres_folder()
        return postgres_description(start_postgres(folder), folder)

    return postgres_from(shared_service(services_folder(), "postgres", start))


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server of the test's own, which it may stop and start."""
    _needs_postgres()
    folder = _postgres_folder()
    try:
        server = start_postgres(folder)
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of the session's server, for one test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres.create_database(f"{name}_{os.getpid()}_{next(_DATABASES)}")


HEAVY_CHECK = """
import json, sys
from hhforecast.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args)
    except SystemExit as exc:
        assert exc.code == 0, (args, exc.code)
print("HEAVY", [m for m in json.loads(sys.argv[2]) if m in sys.modules])
"""


def heavy_imports(root: Path, commands: list[list[str]], modules: tuple[str, ...]) -> str:
    """Run the CLI `commands` in one fresh process in `root`, each expected to succeed, and
    return its output, ending in `HEAVY [...]`: which of `modules` they imported."""
    out = subprocess.run(
        [sys.executable, "-c", HEAVY_CHECK, json.dumps(commands), json.dumps(modules)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
