"""`hhforecast forecast`: HH for the planned weeks, logged for `hhforecast monitor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from hhforecast.cli._common import (
    ConfigOption,
    CsvStyleChoice,
    CsvStyleOption,
    DayfirstOption,
    JsonOption,
    console,
    err_console,
    fmt,
    friendly_errors,
    print_json,
    settings_from,
)


@friendly_errors
def forecast(
    plan: Annotated[
        Path,
        typer.Option(
            "--plan",
            help="CSV of planned weeks: date (any day of the week; read as its Monday) and the "
            "variant's features.",
            dir_okay=False,
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the forecasts to this CSV.")
    ] = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not record the forecasts in the prediction log.")
    ] = False,
    confirm_out_of_range: Annotated[
        bool,
        typer.Option(
            "--confirm-out-of-range",
            help="Log the plan even when some weeks' inputs are outside the training range.",
        ),
    ] = False,
    version: Annotated[str | None, typer.Option(help="Version (default: production).")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant (default: mlops.serve_variant, 5features).")
    ] = None,
    dayfirst: DayfirstOption = None,
    csv_style: CsvStyleOption = CsvStyleChoice.input,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Forecast HH for each planned week, with its interval and how many weeks ahead it is.

    --output is written in the plan's CSV style (separator, decimal mark, date order) unless
    --csv-style says otherwise. Each forecast is logged (monitoring.database) for
    `hhforecast monitor`, unless --no-log. When a week's inputs are outside the training range,
    no week is logged (exit 1, the forecasts still shown) unless --confirm-out-of-range.

    Example: hhforecast forecast --plan plan.csv --output forecast.csv
    """
    from hhforecast.modeling.forecast import challenger_plan, forecast_plan
    from hhforecast.watch.log_store import open_prediction_log, prediction_log_location
    from hhforecast.watch.prediction_store import LogWriteError

    settings = settings_from(config).with_dataset(dayfirst=dayfirst)
    result = forecast_plan(settings, plan, version, variant)
    if output is not None:
        result.write_csv(output, csv_style.value)
    outside = result.out_of_range_weeks()
    # As on the web page: out-of-range inputs are logged for monitoring only once confirmed.
    held = outside if not (no_log or confirm_out_of_range) else None
    location = prediction_log_location(settings)
    logged, problem = 0, None
    # The log is opened only to write to it: --no-log (or a plan held back) touches nothing,
    # so a locked, missing or unreachable log does not matter then.
    if not no_log and held is None:
        log = open_prediction_log(settings)
        try:
            # The challenger forecasts the same weeks beside production (only for production's).
            beside = challenger_plan(settings, plan) if version is None else None
            logged = log.record_forecast(result, source="cli", challenger=beside)
            logged = min(logged, len(result.frame))
        except (LogWriteError, OSError) as exc:
            problem = f"cannot write {location} ({exc})"
        finally:
            log.close()
    if json_output:
        print_json(
            {
                **result.to_dict(),
                "logged": logged == len(result.frame),
                "log": {"path": location, "rows": logged, "problem": problem},
                "not_logged": held.to_dict(CLI_CONFIRM) if held else None,
                "output": str(output) if output else None,
            }
        )
    else:
        console.print(_table(result))
        for note in result.notes:
            console.print(f"Note: {note}", highlight=False)
        if output is not None:
            console.print(f"Wrote {len(result.frame)} forecasts to {output}.", highlight=False)
        if logged:
            console.print(f"Logged {logged} forecasts to {location}.", highlight=False)
    if problem is not None:
        err_console.print(
            f"[yellow]Warning:[/] the forecasts were NOT logged: {problem}. "
            "Run the command again once the log can be written.",
            highlight=False,
        )
    elif no_log and not json_output:
        console.print("Not logged (--no-log).")
    if held is not None:
        err_console.print(
            f"Not logged: {held.reason()}; {CLI_CONFIRM}.", highlight=False, markup=False
        )
        raise typer.Exit(1)


CLI_CONFIRM = (
    "check these weeks' inputs, or log the plan as it is: run the command again with "
    "--confirm-out-of-range"
)


def _table(result: Any) -> Table:
    table = Table(
        title=f"HH forecast, version {result.version} ({result.variant}), "
        f"{result.coverage:.0%} interval",
        caption=f"ahead: weeks after the version's last week ({result.last_trained_week or '?'})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("week", no_wrap=True)
    table.add_column("HH", justify="right", no_wrap=True)
    table.add_column(f"{result.coverage:.0%} interval", justify="right", no_wrap=True)
    table.add_column("ahead", justify="right", no_wrap=True)
    table.add_column("outside training range", max_width=28)
    for week in result.rows():
        table.add_row(
            week["week"],
            fmt(week["HH"], 0),
            f"{fmt(week['HH_lower'], 0)} - {fmt(week['HH_upper'], 0)}",
            "-" if week["horizon"] is None else str(week["horizon"]),
            ", ".join(week["out_of_range"]) or "-",
        )
    return table
