"""`hhforecast drift` and `hhforecast monitor`: does the model still fit the fleet?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from hhforecast.cli._common import (
    ConfigOption,
    JsonOption,
    console,
    err_console,
    fmt,
    friendly_errors,
    print_json,
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
    # With --json, stdout holds only the JSON document.
    (err_console if json_output else console).print(f"Report written to {path}")


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
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare recent weeks with a version's training weeks, beyond season and trend.

    Exit 0: no drift (or too few weeks for a verdict); 1: drift; 2: bad input.

    Example: hhforecast drift --recent data/recent.csv --report drift.html
    """
    from hhforecast.reports.drift import drift_report
    from hhforecast.watch.drift import VERDICT_DRIFT, run_drift

    result = run_drift(settings_from(config), recent, version)
    if json_output:
        print_json(result.to_json())
    else:
        _print_drift(result)
    _write_report(report, lambda: drift_report(result), json_output)
    if result.verdict == VERDICT_DRIFT:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _pvalue(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _print_drift(result: Any) -> None:
    data = result.to_json()
    recent, reference = data["recent"], data["reference"]
    table = Table(
        title=f"{recent['weeks']} recent weeks ({recent['start']} to {recent['end']}) vs "
        f"version {result.version}'s {reference['weeks']} training weeks, net of season and trend",
        caption="shift: recent mean vs expected (rates per aircraft-day, see docs/drift.md); "
        "detectable: shift (stds) caught half the time; n eff.: effective recent weeks",
    )
    for column in (
        "signal",
        "shift %",
        "shift stds",
        "KS p",
        "mean p",
        "detectable",
        "n eff.",
        "verdict",
    ):
        # Names, p-values and verdicts stay whole on a narrow terminal.
        table.add_column(
            column,
            justify="left" if column == "signal" else "right",
            no_wrap=column in ("signal", "KS p", "mean p", "verdict"),
        )
    for s in data["signals"]:
        vote = s["role"] == "feature"
        table.add_row(
            s["name"],
            fmt(s["mean_shift_pct"]),
            fmt(s["mean_shift_std"], 2),
            _pvalue(s["ks_pvalue"]),
            _pvalue(s["mean_pvalue"]),
            fmt(s["detectable_shift_std"], 2),
            f"{s['n_effective_recent']:.0f}",
            ("[bold red]drift[/]" if vote else "[red]moved[/]")
            if s["drifted"]
            else ("[green]ok[/]" if vote else "[dim]ok[/]"),
            style=None if vote else "dim",
        )
    if data["signals"]:
        console.print(table)
    if result.performance:
        perf = Table(title=f"Model error ({result.variant})")
        for column in ("weeks", "MAE", "RMSE", "MAPE %"):
            perf.add_column(column, justify="left" if column == "weeks" else "right")
        for name, metrics in result.performance.items():
            label = "recent" if name == "recent" else "training-time test weeks"
            perf.add_row(label, *(fmt(metrics.get(k)) for k in ("MAE", "RMSE", "MAPE")))
        console.print(perf)
    colour = {"drift": "bold red", "no drift": "bold green"}.get(result.verdict, "bold yellow")
    console.print(f"Verdict: [{colour}]{result.verdict}[/] - {data['message']}", highlight=False)


@friendly_errors
def monitor(
    actuals: Annotated[
        Path, typer.Option("--actuals", help="CSV of realised weeks: date and HH.", dir_okay=False)
    ],
    by: Annotated[str, typer.Option("--by", help="Period: week or month.")] = "week",
    report: ReportOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Match every logged forecast to its realised week: errors per period and horizon, alerts.

    Exit 0: no alert; 1: the errors went beyond what the forecasts' intervals allow (an alert,
    see docs/drift.md); 2: bad input.

    Example: hhforecast monitor --actuals data/realised.csv --by month
    """
    from hhforecast.watch.monitor import monitor_html, run_monitor

    result = run_monitor(settings_from(config), actuals, by)
    if json_output:
        print_json(result.to_json())
    else:
        _print_monitor(result)
    _write_report(report, lambda: monitor_html(result), json_output)
    if result.flagged:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _error_table(title: str, first: str, rows: Any, flags: bool) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    columns = [first, "version", "n", "MAE", "RMSE", "bias", "in int."]
    for column in [*columns, *(["alert"] if flags else [])]:
        left = column in (first, "version")
        table.add_column(column, justify="left" if left else "right", no_wrap=column == first)
    for row in rows:
        cells = [
            row.period,
            row.version,
            str(row.weeks),
            fmt(row.mae, 0),
            fmt(row.rmse, 0),
            fmt(row.bias, 0),
            f"{fmt(100 * row.in_interval, 0)}%",
        ]
        if flags:
            cells.append("[bold red]ALERT[/]" if row.flagged else "ok")
        table.add_row(*cells)
    return table


def _print_monitor(result: Any) -> None:
    if result.periods:
        console.print(
            _error_table(
                f"Forecast vs realised HH per {result.by} (latest forecast of each week)",
                result.by,
                result.periods,
                flags=True,
            )
        )
        console.print(
            _error_table(
                "Per horizon (weeks ahead of the version's data; every forecast)",
                "ahead",
                result.horizons,
                flags=False,
            )
        )
        sources = ", ".join(
            f"{s['source']} {s['forecasts']} ({s['version']})" for s in result.sources()
        )
        console.print(
            f"Forecasts matched: {len(result.matched)} of {result.logged} logged ({sources}); "
            f"{result.pending} not realised yet. Log: {result.database}",
            highlight=False,
        )
    colour = "bold red" if result.flagged else "bold green"
    console.print(f"[{colour}]{result.message}[/]", highlight=False)
