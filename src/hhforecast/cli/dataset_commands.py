"""`hhforecast dataset build`: the weekly dataset from raw utilisation and event logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hhforecast.cli._common import (
    Command,
    ConfigOption,
    CsvStyleChoice,
    CsvStyleOption,
    DayfirstOption,
    Group,
    JsonOption,
    console,
    err_console,
    fmt,
    friendly_errors,
    print_json,
    settings_from,
)

__all__ = ["EventsOption", "UtilizationOption", "dataset_app"]

dataset_app = typer.Typer(
    cls=Group,
    help="Build the weekly dataset from raw logs.",
    no_args_is_help=True,
    add_completion=False,
)

UtilizationOption = Annotated[
    list[Path],
    typer.Option(
        "--utilization",
        help="Utilisation log, CSV or .xlsx (repeat for several files, or a quoted glob).",
        dir_okay=False,
    ),
]
EventsOption = Annotated[
    list[Path],
    typer.Option(
        "--events",
        help="Unscheduled-event log, CSV or .xlsx (repeat, or a quoted glob).",
        dir_okay=False,
    ),
]


@dataset_app.command("build", cls=Command)
@friendly_errors
def build(
    utilization: UtilizationOption,
    events: EventsOption,
    out: Annotated[
        Path, typer.Option("--output", help="Weekly CSV to write (manifest beside it).")
    ] = Path("data/weekly.csv"),
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a self-contained HTML quality report."),
    ] = None,
    config: ConfigOption = None,
    dayfirst: DayfirstOption = None,
    csv_style: CsvStyleOption = CsvStyleChoice.input,
    json_output: JsonOption = False,
) -> None:
    """Build the weekly dataset from raw utilisation and event logs, with a manifest.

    The weekly CSV is written in the utilisation log's CSV style unless --csv-style says
    otherwise.

    Example: hhforecast dataset build --utilization raw/utilization.csv --events raw/events.csv
    --output data/weekly.csv
    """
    from hhforecast.datasets.build import build_dataset, describe_output, write_dataset

    # Only the dataset: section is used; its errors name the keys to set.
    settings = settings_from(config, say_defaults=False).with_dataset(dayfirst=dayfirst)
    result = build_dataset(list(utilization), list(events), settings.dataset)
    if report is not None:
        from hhforecast.reports.dataset import render_dataset_report

        describe_output(result, out, csv_style.value)
        html = render_dataset_report(result)  # rendered before anything is written
    manifest = write_dataset(result, out, csv_style.value)
    if report is not None:
        from hhforecast._fs import atomic_write_text

        atomic_write_text(report, html)
    if json_output:
        print_json({**result.manifest, "manifest": str(manifest), "report": _str(report)})
        return
    _print_summary(result.manifest, out, manifest, report)


def _str(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def _print_summary(m: dict[str, Any], out: Path, manifest: Path, report: Path | None) -> None:
    weeks, util, ev = m["weeks"], m["utilization"], m["events"]
    console.print(
        f"Wrote {weeks['kept']} weeks ({weeks['first']} to {weeks['last']}) to "
        f"{out.resolve()}; manifest {manifest.resolve()}.",
        highlight=False,
    )
    console.print(
        f"Utilisation: {fmt(util['rows_read'], 0)} rows, {fmt(util['aircraft_days'], 0)} "
        f"aircraft-days of {util['aircraft']} aircraft, {fmt(util['duplicates_dropped'], 0)} "
        "repeated rows dropped.",
        highlight=False,
    )
    excluded = ", ".join(
        f"{name} {fmt(v['HH'])} HH ({fmt(v['rows'], 0)})" for name, v in ev["excluded"].items()
    )
    console.print(
        f"Events: {fmt(ev['rows_read'], 0)} rows, {fmt(ev['counted']['HH'])} HH counted; "
        f"excluded {excluded or 'none'}.",
        highlight=False,
    )
    dropped = [
        (f"{len(weeks['dropped_partial'])} partial week(s)", weeks["dropped_partial"]),
        (
            f"{len(weeks['dropped_month_not_covered'])} week(s) of a month not wholly covered",
            weeks["dropped_month_not_covered"],
        ),
    ]
    for label, dates in dropped:
        if dates:
            err_console.print(f"[yellow]Dropped[/] {label}: {', '.join(dates)}", highlight=False)
    for key, label in (
        ("unknown_aircraft", "on aircraft the utilisation never shows"),
        ("outside_utilization_dates", "outside the utilisation dates"),
        ("duplicates_dropped", "repeated in an overlapping file"),
    ):
        if ev[key]["rows"]:
            err_console.print(
                f"[yellow]Dropped[/] {fmt(ev[key]['rows'], 0)} event(s) {label} "
                f"({fmt(ev[key]['HH'])} HH).",
                highlight=False,
            )
    if report is not None:
        console.print(f"Report written to {report.resolve()}", highlight=False)
