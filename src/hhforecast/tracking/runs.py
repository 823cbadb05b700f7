"""MLflow runs: one per `train`, `retrain` and `backtest`, holding what the version folder says.

Everything logged is read from the version's `model_metadata.json`, so a run logged at training
and one logged later by `hhforecast mlflow sync` (for a version trained before tracking was on)
hold the same params, metrics and tags. Tracking is bookkeeping: when MLflow cannot be reached
the training still happens, the command says so, and `mlflow sync` catches up later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from hhforecast import __version__
from hhforecast.config import Settings
from hhforecast.errors import HHForecastError
from hhforecast.tracking.client import (
    VERSION_TAG,
    MlflowConnection,
    connect,
    tracking_enabled,
)

if TYPE_CHECKING:
    from hhforecast.modeling.backtest import BacktestResult
    from hhforecast.modeling.training import TrainedVersion

__all__ = [
    "RunOutcome",
    "TrainingRun",
    "log_backtest",
    "log_version",
    "public_uri",
    "training_run",
    "version_metrics",
    "version_params",
    "version_tags",
]

log = logging.getLogger("hhforecast.tracking")

COMMAND_TAG = "hhforecast.command"
METADATA_KEY = "mlflow"
"""The key of model_metadata.json that records the run a version was trained in."""


def public_uri(uri: str) -> str:
    """The tracking URI without user:password (it is written to files and printed)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return uri


def version_params(metadata: dict[str, Any]) -> dict[str, str]:
    """The training settings of a version, as MLflow params (strings)."""
    params: dict[str, Any] = {f"hp.{k}": v for k, v in metadata.get("hyperparameters", {}).items()}
    split = metadata.get("split", {})
    params["split.mode"] = split.get("mode")
    for part in ("fit", "validation", "test"):
        if part in split:
            params[f"split.{part}"] = f"{split[part]['start']}..{split[part]['end']}"
    dataset = metadata.get("dataset", {})
    params["dataset.path"] = dataset.get("path")
    params["dataset.rows"] = dataset.get("rows")
    params["seed"] = metadata.get("seed")
    params["target"] = metadata.get("target")
    for variant, info in metadata.get("variants", {}).items():
        params[f"{variant}.features"] = ",".join(info.get("features", []))
        params[f"{variant}.interval_target"] = info.get("interval", {}).get("coverage")
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def version_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    """Per variant: MAE, RMSE, R², MAPE, each baseline's RMSE and the interval coverage."""
    metrics: dict[str, float] = {}
    for variant, info in metadata.get("variants", {}).items():
        for name, value in info.get("metrics", {}).items():
            metrics[f"{variant}.{name}"] = value
        for baseline, scores in info.get("baselines", {}).items():
            metrics[f"{variant}.baseline.{baseline}.RMSE"] = scores["RMSE"]
        observed = info.get("interval", {}).get("observed_coverage_test")
        if observed is not None:
            metrics[f"{variant}.interval_coverage"] = observed
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def version_tags(metadata: dict[str, Any], version: str, command: str) -> dict[str, str]:
    """hhforecast and dataset identity of a version's run."""
    dataset = metadata.get("dataset", {})
    tags = {
        VERSION_TAG: version,
        COMMAND_TAG: command,
        "hhforecast.package_version": __version__,
        "hhforecast.trained_at": str(metadata.get("trained_at", "")),
        "dataset.sha256": str(dataset.get("sha256", "")),
        "dataset.path": str(dataset.get("path", "")),
    }
    if dataset.get("manifest"):
        tags["dataset.manifest"] = json.dumps(dataset["manifest"], sort_keys=True)[:5000]
    return tags


def log_version(
    conn: MlflowConnection, run_id: str, folder: Path, version: str, command: str
) -> None:
    """Log a published version folder into a run: params, metrics, tags and the folder itself."""
    from mlflow.entities import Metric, Param, RunTag

    from hhforecast.modeling.artifacts import read_metadata

    metadata = read_metadata(folder)
    params = [Param(k, v) for k, v in version_params(metadata).items()]
    tags = [RunTag(k, v) for k, v in version_tags(metadata, version, command).items()]
    now = _millis()
    metrics = [Metric(k, v, now, 0) for k, v in version_metrics(metadata).items()]
    client = conn.client
    conn.call("log the run's params and metrics", client.log_batch, run_id, metrics, params, tags)
    conn.call("store the version folder", client.log_artifacts, run_id, str(folder), "version")


def _millis() -> int:
    import time

    return int(time.time() * 1000)


@dataclass
class RunOutcome:
    """What tracking did for one command: the run, the registered versions, or why not."""

    tracking: bool
    run_id: str | None = None
    tracking_uri: str | None = None
    registered: dict[str, str] = field(default_factory=dict)
    """Registered model name -> model version number."""
    aliases: list[dict[str, Any]] = field(default_factory=list)
    """`production` aliases moved because the new version serves at once ("latest")."""
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def warning(self) -> str | None:
        """The line a command prints when tracking failed (None when it did not)."""
        if self.problem is None:
            return None
        return f"{self.problem}. Nothing local was affected; run `hhforecast mlflow sync` later."


class TrainingRun:
    """An MLflow run opened before a training, completed with the published version."""

    def __init__(self, settings: Settings, command: str) -> None:
        self.settings = settings
        self.command = command
        self.conn: MlflowConnection | None = None
        self.outcome = RunOutcome(tracking=tracking_enabled(settings))

    def start(self) -> None:
        if not self.outcome.tracking:
            return
        try:
            conn = connect(self.settings)
            experiment = conn.call("find the experiment", conn.experiment_id)
            run = conn.call(
                "start a run",
                conn.client.create_run,
                experiment,
                tags={COMMAND_TAG: self.command},
                run_name=self.command,
            )
        except HHForecastError as exc:
            self.outcome.problem = str(exc)
            return
        self.conn = conn
        self.outcome.run_id = run.info.run_id
        self.outcome.tracking_uri = public_uri(conn.uri)

    @property
    def metadata(self) -> dict[str, Any]:
        """What the version's model_metadata.json records about its run (empty if none)."""
        if self.outcome.run_id is None:
            return {}
        return {
            METADATA_KEY: {
                "run_id": self.outcome.run_id,
                "tracking_uri": self.outcome.tracking_uri,
                "experiment": self.settings.mlflow.experiment,
            }
        }

    def record(self, trained: TrainedVersion) -> None:
        """Log the published version and register each variant; failures are only reported."""
        from hhforecast.tracking.mirror import register_version

        if self.conn is None or self.outcome.run_id is None:
            return
        version = trained.entry.version
        try:
            self.conn.call(
                "name the run",
                self.conn.client.set_tag,
                self.outcome.run_id,
                "mlflow.runName",
                f"{self.command} {version}",
            )
            log_version(self.conn, self.outcome.run_id, trained.path, version, self.command)
            self.outcome.registered = register_version(
                self.conn, self.outcome.run_id, trained.path, version
            )
        except HHForecastError as exc:
            self.outcome.problem = str(exc)

    def finish(self, failed: bool) -> None:
        if self.conn is None or self.outcome.run_id is None:
            return
        status = "FAILED" if failed or self.outcome.problem else "FINISHED"
        try:
            self.conn.call(
                "end the run", self.conn.client.set_terminated, self.outcome.run_id, status
            )
        except HHForecastError as exc:
            self.outcome.problem = self.outcome.problem or str(exc)


@contextmanager
def training_run(settings: Settings, command: str) -> Iterator[TrainingRun]:
    """A run around one training (nothing at all when tracking is off)."""
    run = TrainingRun(settings, command)
    run.start()
    failed = True
    try:
        yield run
        failed = False
    finally:
        run.finish(failed)


def log_backtest(settings: Settings, result: BacktestResult) -> RunOutcome:
    """One run for a backtest: its settings, and per variant and model the pooled scores."""
    outcome = RunOutcome(tracking=tracking_enabled(settings))
    if not outcome.tracking:
        return outcome
    try:
        conn = connect(settings)
        outcome.tracking_uri = public_uri(conn.uri)
        experiment = conn.call("find the experiment", conn.experiment_id)
        data = result.to_dict()
        tags = {COMMAND_TAG: "backtest", "dataset.sha256": result.dataset_sha256}
        run = conn.call(
            "start a run", conn.client.create_run, experiment, tags=tags, run_name="backtest"
        )
        outcome.run_id = run.info.run_id
        params = {
            k: str(v)
            for k, v in data.items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)
        }
        for key, value in settings.training.model_dump().items():
            params[f"training.{key}"] = json.dumps(value) if isinstance(value, dict) else str(value)
        metrics = {
            f"{variant}.{model}.{name}": float(value)
            for variant, models in result.overall.items()
            for model, scores in models.items()
            for name, value in scores.items()
            if isinstance(value, int | float)
        }
        metrics.update({f"{v}.interval_coverage": float(c) for v, c in result.coverage.items()})
        from mlflow.entities import Metric, Param

        now = _millis()
        conn.call(
            "log the backtest",
            conn.client.log_batch,
            outcome.run_id,
            [Metric(k, v, now, 0) for k, v in metrics.items()],
            [Param(k, v[:6000]) for k, v in params.items()],
        )
        conn.call("end the run", conn.client.set_terminated, outcome.run_id, "FINISHED")
    except HHForecastError as exc:
        outcome.problem = str(exc)
    return outcome
