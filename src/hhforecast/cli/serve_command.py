"""`hhforecast serve`: the forecast API and web page, following production live."""

from __future__ import annotations

from typing import Annotated

import typer

from hhforecast.cli._common import ConfigOption, console, friendly_errors, settings_from
from hhforecast.config import Settings


@friendly_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: serving.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: serving.port, 8000).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes; each loads the model.")
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request line.")
    ] = False,
    follow_mlflow: Annotated[
        bool,
        typer.Option(
            "--follow-mlflow",
            help="Serve what MLflow's `production` alias points at (downloaded, checked by "
            "SHA-256) and swap when it moves; needs no local models. See docs/mlflow.md.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Serve the production version over HTTP: /api/predict, /api/info, a web page at /.

    Promotions are picked up without a restart. See docs/serving.md.

    Example: hhforecast serve --port 8000
    """
    from hhforecast.serving.server import plan_server, run_server

    settings = settings_from(config)
    if follow_mlflow:
        _serve_following(settings, host, port, workers, access_log)
        return
    plan = plan_server(settings, host, port, workers, access_log)
    if plan.workers > 1:
        console.print(
            f"Starting {plan.workers} workers on {plan.url} (API docs at {plan.url}/docs); "
            f"each loads production version {plan.version_label}.",
            highlight=False,
        )
    else:
        console.print(f"Loading production version {plan.entry.version}…", highlight=False)
    run_server(
        settings,
        plan,
        on_loaded=lambda label: console.print(
            f"Model loaded (version: {label}). Serving on {plan.url} "
            f"(API docs at {plan.url}/docs).",
            highlight=False,
        ),
    )


def _serve_following(
    settings: Settings, host: str | None, port: int | None, workers: int, access_log: bool
) -> None:
    from hhforecast.errors import HHForecastError
    from hhforecast.serving.server import run_server
    from hhforecast.tracking.follower import plan_following

    if workers != 1:
        raise HHForecastError(
            "--follow-mlflow runs one worker per process (each would download and poll on its "
            "own); run several replicas behind a load balancer instead of --workers"
        )
    model = settings.mlflow.model_name(settings.mlops.serve_variant)
    console.print(f"Resolving {model}@production in MLflow…", highlight=False)
    plan, served, make_follower = plan_following(settings, host, port, access_log)
    run_server(
        settings,
        plan,
        on_loaded=lambda label: console.print(
            f"Model loaded (version: {served.entry.version}, from MLflow, cached in {label}). "
            f"Serving on {plan.url} (API docs at {plan.url}/docs).",
            highlight=False,
        ),
        served=served,
        make_follower=make_follower,
    )
