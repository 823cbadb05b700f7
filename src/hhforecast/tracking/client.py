"""Reaching MLflow: is tracking on, is the extra installed, and a client for the configured store.

MLflow is optional (`pip install 'hhforecast[mlflow]'`). Nothing here imports it until a
function needs a client, so commands that do not track never pay for the import.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hhforecast.config import Settings
from hhforecast.errors import HHForecastError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "PRODUCTION_ALIAS",
    "VERSION_TAG",
    "MlflowConnection",
    "MlflowNotInstalledError",
    "MlflowNotTrackingError",
    "MlflowUnreachableError",
    "connect",
    "mlflow_installed",
    "tracking_enabled",
]

PRODUCTION_ALIAS = "production"
TAG_PREFIX = "hhforecast."
VERSION_TAG = "hhforecast.version"
"""On runs and model versions: the hhforecast version (registry.json) they belong to."""


class MlflowNotInstalledError(HHForecastError):
    """Tracking is configured but the MLflow extra is not installed."""

    def __init__(self, uri: str) -> None:
        super().__init__(
            f"MLflow tracking is configured ({uri}) but MLflow is not installed; install it "
            "with: pip install 'hhforecast[mlflow]' (or set mlflow.tracking_uri to null and "
            "unset MLFLOW_TRACKING_URI)"
        )


class MlflowUnreachableError(HHForecastError):
    """A call to MLflow failed (server down, refused, timed out, or an unexpected answer)."""

    def __init__(self, uri: str, what: str, cause: BaseException | str) -> None:
        self.uri = uri
        reason = cause if isinstance(cause, str) else _short(cause)
        super().__init__(f"MLflow at {uri} could not {what}: {reason}")


class MlflowNotTrackingError(HHForecastError):
    """A command needs MLflow but no tracking URI is configured."""

    def __init__(self) -> None:
        super().__init__(
            "MLflow is not configured: set mlflow.tracking_uri in config.yaml (for example "
            "sqlite:///mlflow.db or http://mlflow.example:5000) or $MLFLOW_TRACKING_URI"
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def tracking_enabled(settings: Settings) -> bool:
    """Whether MLflow tracking is on (a tracking URI in the config or the environment)."""
    return settings.mlflow_tracking_uri is not None


def mlflow_installed() -> bool:
    """Whether the MLflow extra is importable (checked without importing it)."""
    return importlib.util.find_spec("mlflow") is not None


@dataclass(frozen=True)
class MlflowConnection:
    """A client bound to the configured tracking store, and the experiment runs go to."""

    uri: str
    client: MlflowClient
    settings: Settings

    def model_name(self, variant: str) -> str:
        return self.settings.mlflow.model_name(variant)

    def experiment_id(self) -> str:
        """The configured experiment's ID, created on first use.

        A local SQLite store keeps its artifacts in `mlartifacts/` beside the database file
        (MLflow's own default is ./mlruns of whatever folder the command runs in).
        """
        name = self.settings.mlflow.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # another process created it meanwhile
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def call(self, what: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `action(*args, **kwargs)`; any failure becomes MlflowUnreachableError."""
        try:
            return action(*args, **kwargs)
        except HHForecastError:
            raise
        except Exception as exc:
            raise MlflowUnreachableError(self.uri, what, exc) from None


def connect(settings: Settings) -> MlflowConnection:
    """A client for the configured tracking store (imports MLflow); errors if off or missing."""
    uri = settings.mlflow_tracking_uri
    if uri is None:
        raise MlflowNotTrackingError()
    if not mlflow_installed():
        raise MlflowNotInstalledError(uri)
    # MLflow retries a failed HTTP call for minutes by default; a promotion must not hang on a
    # server that is down: it promotes locally and says so. The user's own values win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow.retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.mlflow.timeout_seconds)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    # stdout carries the command's own output (--json); MLflow would print run links there.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    _quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowConnection(uri, mlflow.MlflowClient(uri, registry_uri=uri), settings)


_NOT_THE_USERS = "causes it to be serialized using CloudPickle"
"""MLflow's caution about pickling a model class: ours is saved this way on purpose."""


def _not_the_users(record: logging.LogRecord) -> bool:
    return _NOT_THE_USERS not in record.getMessage()


def _quiet_mlflow() -> None:
    """Keep MLflow's chatter out of the commands' output: its INFO lines (database set-up) and
    what it tells MLflow model authors. Its other warnings stay; a level the user set in
    $MLFLOW_LOGGING_LEVEL wins."""
    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    if _not_the_users not in pyfunc_log.filters:
        pyfunc_log.addFilter(_not_the_users)
    # Defining our pyfunc class makes MLflow advise type hints on `predict` (left out on purpose,
    # see tracking/pyfunc.py), in raw colour codes and past any filter (it forces "once"): the
    # class is defined here, with the warnings of its definition recorded and dropped.
    with warnings.catch_warnings(record=True):
        import hhforecast.tracking.pyfunc  # noqa: F401
