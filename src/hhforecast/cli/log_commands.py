"""`hhforecast log ...`: look after the prediction log (never imports TensorFlow)."""

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

log_app = typer.Typer(
    cls=Group, help="Look after the prediction log (monitoring.database).", no_args_is_help=True
)


@log_app.command("compact", cls=Command)
@friendly_errors
def compact(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Keep one row per judged forecast (week, version, variant, source, horizon) with its count.

    `hhforecast monitor` gives the same figures before and after; the other rows are removed in
    one transaction (nothing changes if it fails). Exit 0: done; 2: no log, or it cannot be
    written.

    Example: hhforecast log compact --json
    """
    from hhforecast.watch.log_store import open_prediction_log

    log = open_prediction_log(settings_from(config))
    try:
        result = log.compact()
    finally:
        log.close()
    if json_output:
        print_json(result.to_dict())
        return
    console.print(
        f"Compacted {result.location}: {result.rows_before} rows -> {result.rows_after} "
        f"({result.rows_before - result.rows_after} removed), standing for {result.forecasts} "
        "forecasts.",
        highlight=False,
        soft_wrap=True,
    )
