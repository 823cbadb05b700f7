"""`hhforecast mlflow ...`: bring the MLflow mirror in line with the local registry."""

from __future__ import annotations

import typer

from hhforecast.cli._common import (
    Command,
    ConfigOption,
    Group,
    JsonOption,
    console,
    friendly_errors,
    print_json,
    settings_from,
)

mlflow_app = typer.Typer(
    cls=Group,
    help="The MLflow mirror of the registry (needs the extra: pip install 'hhforecast[mlflow]').",
    no_args_is_help=True,
)


@mlflow_app.command("sync", cls=Command)
@friendly_errors
def sync(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Register in MLflow every version it lacks; point `production` and `challenger` at local's.

    For versions trained before tracking was on, and after a promotion or a challenger named or
    cleared that MLflow missed.
    Exit 0: in line; 2: MLflow not configured, not installed or not reachable.

    Example: hhforecast mlflow sync --json
    """
    from hhforecast.tracking.sync import sync as sync_mirror

    report = sync_mirror(settings_from(config))
    if json_output:
        print_json(report.to_dict())
        return
    console.print(
        f"MLflow at {report.tracking_uri}: {report.versions} local version(s); "
        f"registered now: {', '.join(report.backfilled) or 'none'}; "
        f"already there: {', '.join(report.already) or 'none'}.",
        highlight=False,
    )
    for version, why in report.skipped.items():
        console.print(f"Skipped {version}: {why}", highlight=False)
    for move in report.moves:
        console.print(
            f"Moved {move.model}@production to v{move.model_version} (version {move.version}; "
            f"was {move.previous_version or 'unset'}).",
            highlight=False,
        )
    if report.production is None:
        console.print("Nothing is in production locally; no alias moved.")
    elif not report.moves:
        console.print(f"production already points at {report.production}.", highlight=False)
    for move in report.challenger_moves:
        was = f"was {move.previous_version or 'unset'}"
        to = f"v{move.model_version} (version {move.version}; {was})"
        console.print(
            f"Moved {move.model}@challenger to {to}."
            if move.version
            else f"Removed {move.model}@challenger ({was}): no challenger is named locally.",
            highlight=False,
        )
