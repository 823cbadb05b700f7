"""`hhforecast registry ...`: read the registry (never imports TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hhforecast.cli._common import (
    Column,
    Command,
    ConfigOption,
    DayfirstOption,
    Group,
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
from hhforecast.cli.gate_commands import registry_history
from hhforecast.errors import EXIT_CHECK_FAILED, VersionNotFoundError
from hhforecast.registry.store import ModelVersion, Registry

registry_app = typer.Typer(
    cls=Group, help="List, inspect and check registered versions.", no_args_is_help=True
)


def _production_name(registry: Registry) -> str | None:
    try:
        production = registry.production_version()
    except VersionNotFoundError as exc:
        err_console.print(f"[yellow]Warning:[/] {exc}", highlight=False)
        return None
    return production.version if production else None


@registry_app.command("list", cls=Command)
@friendly_errors
def list_versions(
    config: ConfigOption = None,
    json_output: JsonOption = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="How many of the newest versions to show.")
    ] = 20,
    show_all: Annotated[bool, typer.Option("--all", help="Show every version.")] = False,
) -> None:
    """List the newest versions with their metrics; production and the challenger are marked.

    Production, the challenger and the version rollback would return to are always shown;
    --all shows every version.

    Example: hhforecast registry list --limit 5
    """
    from hhforecast.registry.listing import list_registry

    registry = Registry(settings_from(config))
    listing = list_registry(registry, None if show_all else limit)
    for warning in listing.warnings:
        err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
    versions, production = listing.shown, listing.production
    if json_output:
        print_json(
            {
                "registry_file": str(registry.path),
                "production_version": production,
                "challenger_version": listing.challenger,
                "rollback_version": listing.rollback,
                "versions_total": listing.total,
                "versions_hidden": listing.hidden,
                "versions": [v.to_entry() for v in versions],
            }
        )
        return
    if not versions:
        console.print(f"No versions in {registry.path} yet. Train one: hhforecast train")
        return
    variants = sorted({name for v in versions for name in v.metrics}, reverse=True)
    windows = {v.test_window() for v in versions}
    caption = "● = production"
    caption += "; ◆ = challenger" if listing.challenger else ""
    caption += "; RMSE/MAE in HH on each version's own held-out test weeks."
    if len(windows) > 1:
        caption += (
            " Versions tested on different weeks are not comparable by these numbers: "
            "hhforecast registry compare A B scores two on the same weeks."
        )
    if listing.hidden:
        caption += f" {listing.hidden} older versions not shown: --all shows them."
    # Left out first on a narrow terminal: dataset, the 4features MAE, trained, the 5features
    # MAE, the test weeks. Version names and numbers are never cut.
    columns = [Column("version", style="bold"), Column("trained", drop=3)]
    columns += [Column("dataset", drop=1), Column("test weeks", drop=5)]
    for variant in variants:
        short = variant.replace("features", "f")
        columns.append(Column(f"RMSE {short}", justify="right"))
        columns.append(Column(f"MAE {short}", justify="right", drop=4 if "5" in short else 2))
    rows = []
    for entry in versions:
        name = entry.version
        if name == production:
            name = f"[green]● {name}[/]"
        elif name == listing.challenger:
            name = f"[cyan]◆ {name}[/]"
        cells = [
            name,
            _short_time(entry.trained_at),
            _short_dataset(entry.dataset),
            entry.test_window(),
        ]
        for variant in variants:
            cells += [fmt(entry.metric(variant, "RMSE")), fmt(entry.metric(variant, "MAE"))]
        rows.append(Row(cells))
    print_table(
        fitted_table(
            columns,
            rows,
            title=f"Versions in {registry.path}",
            caption=caption,
        )
    )


def _short_time(trained_at: str) -> str:
    """'2026-11-26T13:12:19+00:00' -> '2026-11-26' (the full time is in `registry show`)."""
    return trained_at[:10] if len(trained_at) > 10 and trained_at[10] in "T " else trained_at


def _short_dataset(dataset: str) -> str:
    """The file name only (the full path is in `registry show`); the bundled sample by name."""
    if dataset.startswith("sample:"):
        return "simulated sample"
    return dataset.rsplit("/", 1)[-1] if dataset else "-"


@registry_app.command("show", cls=Command)
@friendly_errors
def show_version(
    version: Annotated[str, typer.Argument(help="The version to show.")],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one version: its registry entry and where its artifacts are.

    Example: hhforecast registry show 1.0.0 --json
    """
    registry = Registry(settings_from(config))
    entry: ModelVersion = registry.get(version)
    folder = registry.version_dir(entry)
    production = _production_name(registry)
    challenger = registry.read_document().challenger
    data = {
        **entry.to_entry(),
        "folder": str(folder),
        "production": entry.version == production,
        "challenger": entry.version == challenger,
    }
    if json_output:
        print_json(data)
        return
    table = Table(title=f"Version {entry.version}", show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key in ("version", "trained_at", "dataset", "folder", "production", "challenger"):
        table.add_row(key, readable(data[key]))
    if "trained_through" in entry.extra:
        table.add_row("trained through", readable(entry.extra["trained_through"]))
    for variant, metrics in sorted(entry.metrics.items(), reverse=True):
        # Errors in HH on one line, R² on the next: each stays whole at 80 columns.
        for i, r2 in enumerate((False, True)):
            shown = {k: v for k, v in metrics.items() if k.startswith("R2") == r2}
            table.add_row(
                "" if i else f"metrics {variant}",
                ", ".join(
                    f"{k.replace('R2', 'R²')} {fmt(v, 3 if r2 else 1)}" for k, v in shown.items()
                ),
            )
    for key, value in entry.extra.items():
        if key not in ("baselines", "trained_through"):
            table.add_row(key, readable(value))
    print_table(table)


def readable(value: object) -> str:
    """A registry value for people: a period as 'start to end (n weeks)', no Python syntax."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if {"start", "end"} <= value.keys():
            weeks = f" ({value['weeks']} weeks)" if "weeks" in value else ""
            return f"{value['start']} to {value['end']}{weeks}"
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value)
    return "-" if value is None else str(value)


registry_app.command("history", cls=Command)(registry_history)


@registry_app.command("clear-challenger", cls=Command)
@friendly_errors
def clear_challenger(
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop the challenger forecasting beside production (recorded in the history).

    Example: hhforecast registry clear-challenger --reason "lost on 26 realised weeks"
    """
    from hhforecast.cli.challenger_commands import clear_challenger as clear

    clear(settings_from(config), reason, json_output)


@registry_app.command("check", cls=Command)
@friendly_errors
def check(
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Repair what can be repaired safely, then check again."),
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check that registry.json and the version folders agree (after a crash or a hand edit).

    Finds entries without a folder, complete folders without an entry, entries that disagree
    with their folder, artifacts that fail their checksums, and staging folders left by stopped
    trainings. --fix restores, registers or removes what it safely can. Exit 0: all agree;
    1: something is left to look at.

    Example: hhforecast registry check --fix
    """
    from hhforecast.registry.check import check_registry, repair

    settings = settings_from(config)
    report = check_registry(settings)
    if fix and any(f.fix for f in report.findings):
        report = repair(settings, report)
    if json_output:
        print_json(report.to_dict())
    else:
        for action in report.repaired:
            console.print(f"[green]Fixed:[/] {action}", highlight=False)
        for note in report.notes:
            console.print(f"Note: {note.version}: {note.detail}", highlight=False)
        if report.clean:
            console.print(
                f"[bold green]OK[/] {report.registry}: {report.versions} version(s), every "
                "folder matches its entry.",
                highlight=False,
            )
        else:
            table = Table(title=f"{report.registry}: {len(report.findings)} finding(s)")
            for column in ("problem", "version", "folder", "detail", "--fix"):
                # A version name is never cut; the rest folds onto more lines.
                table.add_column(column, overflow="fold", no_wrap=column == "version")
            for f in report.findings:
                table.add_row(
                    f.kind, f.version or "-", Path(f.path).name, f.detail, f.fix or "by hand"
                )
            print_table(table)
    if not report.clean:
        raise typer.Exit(EXIT_CHECK_FAILED)


@registry_app.command("compare", cls=Command)
@friendly_errors
def compare(
    first: Annotated[str, typer.Argument(help="A version.")],
    second: Annotated[str, typer.Argument(help="The version to compare it with.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="CSV of labelled weeks (default: the versions' held-out test weeks); only weeks "
            "after both trainings are scored.",
            dir_okay=False,
        ),
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant to compare (default: mlops.serve_variant).")
    ] = None,
    dayfirst: DayfirstOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Score two versions on the same labelled weeks, weeks neither was trained on.

    Exit 0: compared; 1: fewer than mlops.min_fair_weeks such weeks, or an integrity failure;
    2: bad input.

    Example: hhforecast registry compare 1.0.0 1.1.0 --data recent.csv
    """
    from hhforecast.gate.compare import compare_versions

    settings = settings_from(config).with_dataset(dayfirst=dayfirst)
    result = compare_versions(settings, first, second, variant, data)
    if json_output:
        print_json(result.to_dict())
        return
    weeks = result.weeks
    table = Table(
        title=f"{result.variant} on {weeks.weeks} weeks {weeks.start} to {weeks.end} "
        f"({weeks.source}; lower RMSE is better)"
    )
    for column in ("version", "MAE", "RMSE", "R²", "MAPE %"):
        table.add_column(column, justify="left" if column == "version" else "right")
    for version in result.versions:
        m = result.metrics[version]
        style = "bold" if version == result.better else None
        table.add_row(
            version, fmt(m["MAE"]), fmt(m["RMSE"]), fmt(m["R2"], 3), fmt(m["MAPE"]), style=style
        )
    print_table(table)
    verdict = f"{result.better} has the lower RMSE" if result.better else "Equal RMSE"
    console.print(
        f"{verdict} on these weeks; {result.significance.describe()} "
        f"(positive: {result.versions[1]} erred less).",
        highlight=False,
    )


@registry_app.command("remove", cls=Command)
@friendly_errors
def remove(
    version: Annotated[str, typer.Argument(help="The version to remove.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the promotion history.")] = "",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove a version: its folder and its registry entry together, recorded in the history.

    Refuses (exit 2) the production version and the version `rollback` would return to.

    Example: hhforecast registry remove 0.1.0-test --reason "trial run"
    """
    from hhforecast.registry.removal import remove_version

    removal = remove_version(settings_from(config), version, reason)
    if json_output:
        print_json(
            {
                "removed": version,
                "folder": str(removal.folder) if removal.folder else None,
                "history": removal.record.to_entry(),
            }
        )
        return
    where = f"its folder {removal.folder} and " if removal.folder else ""
    console.print(
        f"Removed {version}: {where}its registry entry; recorded in the history.",
        highlight=False,
    )
