"""`hhforecast drift` and `hhforecast monitor`: does the model still fit the fleet?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from hhforecast.cli._common import (
    Column,
    ConfigOption,
    DayfirstOption,
    JsonOption,
    Row,
    console,
    err_console,
    fitted_table,
    fmt,
    friendly_errors,
    print_json,
    print_table,
    settings_from,
)
from hhforecast.errors import EXIT_CHECK_FAILED

ReportOption = Annotated[
    Path | None,
    typer.Option("--report", help="Also write a self-contained HTML report here.", dir_okay=False),
]


def _write_report(path: Path | None, html: Any, json_output: bool) -> None:
    if path is None:
        return
    from hhforecast._fs import atomic_write_text

    atomic_write_text(path, html())
    # With --json, stdout holds only the JSON document. The full path, so that a cron job's
    # mail or a colleague's terminal leads straight to the file.
    (err_console if json_output else console).print(
        f"Report written to {path.resolve()}", highlight=False, soft_wrap=True
    )


@friendly_errors
def drift(
    recent: Annotated[
        Path,
        typer.Option(
            "--recent", help="CSV of recent weeks (date + features, HH optional).", dir_okay=False
        ),
    ],
    version: Annotated[str | None, typer.Option(help="Version (default: production).")] = None,
    report: ReportOption = None,
    dayfirst: DayfirstOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare recent weeks with a version's training weeks, beyond season and trend.

    Exit 0: no drift (or too few weeks for a verdict); 1: drift; 2: bad input.

    Example: hhforecast drift --recent data/recent.csv --report drift.html
    """
    from hhforecast.reports.drift import drift_report
    from hhforecast.watch.drift import VERDICT_DRIFT, run_drift

    result = run_drift(settings_from(config).with_dataset(dayfirst=dayfirst), recent, version)
    if result.overlap is not None:
        err_console.print(f"[yellow]Warning:[/] {result.overlap.message}", highlight=False)
    if json_output:
        print_json(result.to_dict())
    else:
        _print_drift(result)
    _write_report(report, lambda: drift_report(result), json_output)
    if result.verdict == VERDICT_DRIFT:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _pvalue(value: float) -> str:
    return f"<{fmt(1e-4, 4)}" if value < 1e-4 else fmt(value, 4)


def _print_drift(result: Any) -> None:
    for renderable in drift_tables(result.to_dict()):
        if isinstance(renderable, Table):
            print_table(renderable)
        else:
            console.print(renderable, highlight=False)


def drift_tables(data: dict[str, Any]) -> list[Table | str]:
    """The signal table, the model-error table and the verdict line of a drift report's JSON."""
    recent, reference = data["recent"], data["reference"]
    columns = [
        Column("signal"),
        Column("shift %", justify="right"),
        Column("stds", justify="right"),
        Column("KS p", justify="right"),
        Column("mean p", justify="right"),
        Column("detect.", justify="right", drop=1),
        Column("n eff.", justify="right", drop=2),
        Column("verdict"),
    ]
    rows = []
    for s in data["signals"]:
        vote = s["role"] == "feature"
        verdict = (
            ("[bold red]drift[/]" if vote else "[red]moved[/]")
            if s["drifted"]
            else ("[green]ok[/]" if vote else "[dim]ok[/]")
        )
        cells = [
            s["name"],
            fmt(s["mean_shift_pct"]),
            fmt(s["mean_shift_std"], 2),
            _pvalue(s["ks_pvalue"]),
            _pvalue(s["mean_pvalue"]),
            fmt(s["detectable_shift_std"], 2),
            fmt(s["n_effective_recent"], 0),
            verdict,
        ]
        rows.append(Row(cells, style=None if vote else "dim"))
    out: list[Table | str] = []
    if rows:
        out.append(
            fitted_table(
                columns,
                rows,
                title=f"{recent['weeks']} recent weeks ({recent['start']} to {recent['end']}) "
                f"vs version {data['version']}'s {reference['weeks']} training weeks, net of "
                "season and trend",
                caption="shift: recent mean vs expected (rates per aircraft-day, see "
                "docs/drift.md), in % and in stds; detect.: shift (stds) caught half the "
                "time; n eff.: effective recent weeks",
                caption_justify="left",
            )
        )
    if data.get("performance"):
        perf = Table(title=f"Model error ({data['variant']})")
        for column in ("weeks", "MAE", "RMSE", "MAPE %"):
            perf.add_column(column, justify="left" if column == "weeks" else "right")
        for name, metrics in data["performance"].items():
            label = "recent" if name == "recent" else "training-time test weeks"
            perf.add_row(label, *(fmt(metrics.get(k)) for k in ("MAE", "RMSE", "MAPE")))
        out.append(perf)
    colour = {"drift": "bold red", "no drift": "bold green"}.get(data["verdict"], "bold yellow")
    out.append(f"Verdict: [{colour}]{data['verdict']}[/] - {data['message']}")
    return out


@friendly_errors
def monitor(
    actuals: Annotated[
        Path, typer.Option("--actuals", help="CSV of realised weeks: date and HH.", dir_okay=False)
    ],
    by: Annotated[str, typer.Option("--by", help="Period: week or month.")] = "week",
    report: ReportOption = None,
    dayfirst: DayfirstOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Match every logged forecast to its realised week: errors per period and horizon, alerts.

    Exit 0: no alert; 1: the errors went beyond what the forecasts' intervals allow (an alert,
    see docs/drift.md); 2: bad input.

    Example: hhforecast monitor --actuals data/realised.csv --by month
    """
    from hhforecast.watch.monitor import monitor_html, run_monitor

    result = run_monitor(settings_from(config).with_dataset(dayfirst=dayfirst), actuals, by)
    if json_output:
        print_json(result.to_dict())
    else:
        _print_monitor(result)
    _write_report(report, lambda: monitor_html(result), json_output)
    if result.flagged:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_monitor(result: Any) -> None:
    data = result.to_dict()
    if data["periods"]:
        for table in monitor_tables(data):
            print_table(table)
        sources = ", ".join(
            f"{s['source']} {s['forecasts']} ({s['version']})" for s in result.sources()
        )
        console.print(
            f"Forecasts matched: {result.asked} of {result.logged} logged ({sources}); "
            f"{len(result.matched)} judged (one per week, version, source and horizon); "
            f"{result.pending} not realised yet. Log: {result.database}",
            highlight=False,
        )
    colour = "bold red" if result.flagged else "bold green"
    console.print(f"[{colour}]{result.message}[/]", highlight=False)


def monitor_tables(data: dict[str, Any]) -> list[Table]:
    """Forecast vs realised HH per period, then per horizon, from a monitor report's JSON."""
    return [
        _error_table(
            f"Forecast vs realised HH per {data['by']} (judged forecast of each week)",
            data["by"],
            data["periods"],
            flags=True,
        ),
        _error_table(
            "Per horizon (weeks ahead of the version's data; every judged forecast)",
            "ahead",
            data["horizons"],
            flags=False,
        ),
    ]


def _error_table(title: str, first: str, rows: list[dict[str, Any]], flags: bool) -> Table:
    # Left out first on a narrow terminal: bias, then MAE, then the interval share.
    columns = [
        Column(first),
        Column("version"),
        Column("n", justify="right"),
        Column("MAE", justify="right", drop=2),
        Column("RMSE", justify="right"),
        Column("bias", justify="right", drop=1),
        Column("in int.", justify="right", drop=3),
    ]
    if flags:
        columns.append(Column("alert"))
    table_rows = []
    for row in rows:
        cells = [
            row["period"],
            row["version"],
            str(row["weeks"]),
            fmt(row["mae"], 0),
            fmt(row["rmse"], 0),
            fmt(row["bias"], 0),
            f"{fmt(100 * row['in_interval'], 0)}%",
        ]
        if flags:
            cells.append("[bold red]ALERT[/]" if row["flagged"] else "ok")
        table_rows.append(Row(cells))
    return fitted_table(columns, table_rows, title=title, box=box.SIMPLE_HEAD)
