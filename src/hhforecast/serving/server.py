"""Run the app with uvicorn: in-process for one worker, through the app factory for several."""

from __future__ import annotations

import copy
import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hhforecast.config import CONFIG_ENV, Settings
from hhforecast.errors import HHForecastError
from hhforecast.registry.store import ModelVersion, Registry

if TYPE_CHECKING:
    from hhforecast.serving.production import ProductionFollower as Follower
    from hhforecast.serving.production import ServedModel

__all__ = ["ServerPlan", "plan_server", "run_server"]


@dataclass(frozen=True)
class ServerPlan:
    """Where and how the service will listen, and which version it starts with."""

    host: str
    port: int
    workers: int
    access_log: bool
    entry: ModelVersion

    @property
    def version_label(self) -> str:
        """The version as the original printed it: its folder, e.g. models/1.0.0."""
        return self.entry.path or f"models/{self.entry.version}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def plan_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    access_log: bool = False,
) -> ServerPlan:
    """Check that a production version exists (no TensorFlow yet) and fill in defaults."""
    entry = Registry(settings).require_production_version()
    check_reload_protected(settings, host or settings.serving.host)
    plan = ServerPlan(
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        workers=workers,
        access_log=access_log,
        entry=entry,
    )
    check_address_free(plan.host, plan.port)
    return plan


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (only this machine can connect)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # check_address_free reports an unknown host
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def check_reload_protected(settings: Settings, host: str) -> None:
    """Refuse to listen beyond loopback unless POST /api/reload needs a key."""
    env = settings.serving.api_key_env
    if os.environ.get(env) or is_loopback(host):
        return
    raise HHForecastError(
        f"--host {host} accepts connections from other machines, so POST /api/reload must need "
        f"a key: set ${env} to a secret (clients send it in the X-API-Key header), or serve "
        "on 127.0.0.1 behind a proxy"
    )


def check_address_free(host: str, port: int) -> None:
    """Fail before loading the model (seconds) if the address cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HHForecastError(f"--host {host!r} is not a known address ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            raise HHForecastError(
                f"cannot listen on {host}:{port} ({exc.strerror}); another server may be "
                "using it: pass another --port"
            ) from None


def _log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    # Swaps and reload failures are logged beside uvicorn's own lines.
    config["loggers"]["hhforecast"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run_server(
    settings: Settings,
    plan: ServerPlan,
    on_loaded: Callable[[str], None] = lambda _: None,
    served: ServedModel | None = None,
    make_follower: Callable[..., Follower] | None = None,
) -> None:
    """Serve until interrupted. One worker: load here, call `on_loaded`, run the app object.
    Several: each worker process builds its own app from $HHFORECAST_CONFIG (uvicorn needs an
    import string to start workers) and logs its own "Model loaded" line. `served` and
    `make_follower` (one worker only) serve a model loaded by the caller and follow production
    wherever the caller's follower finds it."""
    import uvicorn

    from hhforecast.serving.app import one_blas_thread
    from hhforecast.serving.connections import (
        accept_batch,
        guarded_protocol,
        raise_open_file_limit,
    )

    one_blas_thread()
    limits = settings.serving
    max_connections = raise_open_file_limit(limits.max_connections)
    common: dict[str, Any] = {
        "host": plan.host,
        "port": plan.port,
        "access_log": plan.access_log,
        "log_config": _log_config(),
        "server_header": False,
        # Slow and idle connections are closed, and capped, so they never starve /health.
        "http": guarded_protocol(limits.request_timeout_seconds, max_connections),
        "backlog": accept_batch(max_connections),
    }
    if plan.workers == 1:
        from hhforecast.serving.app import create_app
        from hhforecast.serving.production import ProductionFollower, load_served_model
        from hhforecast.watch.prediction_log import PredictionRecorder

        if served is None:
            served = load_served_model(settings, plan.entry)
        on_loaded(served.entry.path or f"models/{served.entry.version}")
        # Every answered prediction is logged for `hhforecast monitor` (docs/drift.md).
        recorder = (
            PredictionRecorder.from_settings(settings, background=False)
            if settings.monitoring.log_predictions
            else None
        )
        # The app closes the recorder as it shuts down, writing what is still queued.
        app = create_app(
            settings,
            served=served,
            prediction_log=recorder,
            make_follower=make_follower or ProductionFollower,
        )
        uvicorn.run(app, **common)
        return
    if settings.source is not None:
        os.environ[CONFIG_ENV] = str(settings.source)
    from hhforecast.serving.app import APP_FACTORY
    from hhforecast.serving.metrics import MULTIPROCESS_ENV

    # The workers' metrics meet in one folder so /metrics adds them up (serving/metrics.py). A
    # folder the user named is theirs to empty; one made here is removed when the server stops.
    own_folder = not os.environ.get(MULTIPROCESS_ENV)
    if own_folder:
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="hhforecast-metrics-")
    try:
        uvicorn.run(APP_FACTORY, factory=True, workers=plan.workers, **common)
    finally:
        if own_folder:
            shutil.rmtree(os.environ.pop(MULTIPROCESS_ENV), ignore_errors=True)
