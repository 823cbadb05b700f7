"""`hhforecast serve`: the forecast API and web page, following production live."""

from __future__ import annotations

from typing import Annotated

import typer

from hhforecast.cli._common import ConfigOption, console, friendly_errors, settings_from


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
    config: ConfigOption = None,
) -> None:
    """Serve the production version over HTTP: /api/predict, /api/info, a web page at /.

    Promotions are picked up without a restart. See docs/serving.md.

    Example: hhforecast serve --port 8000
    """
    from hhforecast.serving.server import plan_server, run_server

    settings = settings_from(config)
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
