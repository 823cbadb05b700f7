"""`hhforecast validate`, `promote`, `rollback` and `registry history`: the production pointer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    number,
    print_findings,
    print_json,
    print_table,
    settings_from,
)
from hhforecast.errors import EXIT_CHECK_FAILED, VersionNotFoundError
from hhforecast.registry.history import PromotionRecord
from hhforecast.registry.store import Registry

if TYPE_CHECKING:
    from hhforecast.config import Settings
    from hhforecast.gate.promote import PromotionResult
    from hhforecast.gate.validate import ValidationReport
    from hhforecast.modeling.findings import Finding, NumberText

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="CSV of labelled weeks to evaluate on (default: the version's held-out test weeks).",
        dir_okay=False,
    ),
]
VariantOption = Annotated[
    str | None, typer.Option(help="Variant to check (default: mlops.serve_variant, 5features).")
]
ReasonOption = Annotated[str, typer.Option(help="Why; kept in the promotion history.")]


@friendly_errors
def validate(
    version: Annotated[str, typer.Argument(help="The version to check.")],
    data: DataOption = None,
    variant: VariantOption = None,
    dayfirst: DayfirstOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Check a version before it serves: checksums, finite forecasts, scores beside production.

    Exit 0: valid; 1: integrity failure or non-finite forecasts; 2: bad input.

    Example: hhforecast validate 1.1.0 --variant 5features
    """
    from hhforecast.gate.validate import validate_version

    settings = settings_from(config).with_dataset(dayfirst=dayfirst)
    report = validate_version(settings, version, variant, data)
    if json_output:
        findings = _findings(settings, report)
        print_json({**report.to_dict(), "findings": [f.to_dict() for f in findings]})
    else:
        _render_report(report)
        print_findings(_findings(settings, report, number))
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _findings(
    settings: Settings, report: ValidationReport, numbers: NumberText = format
) -> list[Finding]:
    """The candidate's scores against the naive baselines on the weeks validated, and whether
    its deep correction was kept (from its model_metadata.json, when it has one)."""
    from hhforecast.errors import HHForecastError
    from hhforecast.modeling.artifacts import read_metadata
    from hhforecast.modeling.findings import linear_finding, score_findings

    found: list[Finding] = []
    registry = Registry(settings)
    try:
        training = read_metadata(registry.version_dir(registry.get(report.version)))
        kept = training["variants"][report.variant]["training"]["deep_correction_kept"]
        refit = bool((training.get("served_fit") or {}).get("refit_on_all_weeks"))
    except (HHForecastError, KeyError, TypeError, AttributeError):
        kept, refit = None, False
    if kept is not None:
        note = linear_finding(report.variant, int(bool(kept)), 1, refit=refit)
        found += [note] if note else []
    candidate = next((s for s in report.scores if s.role == "candidate"), None)
    if candidate is not None and report.weeks is not None:
        baselines = {s.name: s.metrics for s in report.scores if s.role == "baseline"}
        weeks = f"these {report.weeks.weeks} weeks"
        found += score_findings(
            report.variant, report.version, candidate.metrics, baselines, weeks, numbers
        )
    return found


def _render_report(report: ValidationReport) -> None:
    bad = [c for c in report.artifacts if not c.ok]
    if bad:
        table = Table(title=f"Artifacts of {report.version} against model_metadata.json")
        for column in ("file", "status", "recorded sha256", "sha256 now"):
            table.add_column(column)
        for check in report.artifacts:
            style = None if check.ok else "red"
            short = [(h or "-")[:12] for h in (check.expected, check.actual)]
            table.add_row(check.name, check.status, *short, style=style)
        print_table(table)
    elif report.artifacts:
        console.print(f"Artifacts: {len(report.artifacts)} files match their recorded SHA-256.")
    if report.weeks is not None:
        weeks = report.weeks
        table = Table(
            title=f"{report.variant} on {weeks.weeks} weeks {weeks.start} to {weeks.end} "
            f"({weeks.source}; lower RMSE is better)"
        )
        for column in ("model", "MAE", "RMSE", "R²", "MAPE %"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for score in report.scores:
            m = score.metrics
            style = {"candidate": "bold", "production": "cyan"}.get(score.role)
            table.add_row(
                score.name,
                fmt(m["MAE"]),
                fmt(m["RMSE"]),
                fmt(m["R2"], 3),
                fmt(m["MAPE"]),
                style=style,
            )
        print_table(table)
    for warning in report.warnings:
        err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
    if not report.passed:
        console.print(f"[bold red]FAIL[/] {report.version}: " + "; ".join(report.failures))
        return
    verdict = f"[bold green]PASS[/] {report.version} is valid"
    better = report.better_than_production
    if better is not None:
        word = "lower" if better else "not lower"
        verdict += (
            f"; RMSE {fmt(report.candidate_rmse)} is {word} than production "
            f"{report.production}'s {fmt(report.production_rmse)}"
        )
    console.print(verdict + ".")
    if report.significance is not None:
        console.print(
            f"{report.significance.describe()} over {report.significance.weeks} weeks "
            "(positive: the candidate's squared errors are smaller).",
            highlight=False,
        )


@friendly_errors
def promote(
    version: Annotated[str, typer.Argument(help="The version to put in production.")],
    require_better_rmse: Annotated[
        bool,
        typer.Option(
            "--require-better-rmse",
            help="Refuse (exit 1) unless its RMSE is lower than production's on labelled weeks "
            "neither was trained on (at least mlops.min_fair_weeks of them).",
        ),
    ] = False,
    require_significant: Annotated[
        bool,
        typer.Option(
            "--require-significant",
            help="With the gate, also refuse unless a one-sided Diebold-Mariano test finds the "
            "win significant at mlops.significance_level (implies --require-better-rmse).",
        ),
    ] = False,
    challenger: Annotated[
        bool,
        typer.Option(
            "--challenger",
            help="Name the version the challenger instead: it forecasts beside production, "
            "every logged forecast computed by both (clear it: hhforecast registry "
            "clear-challenger).",
        ),
    ] = False,
    variant: VariantOption = None,
    data: DataOption = None,
    reason: ReasonOption = "",
    dayfirst: DayfirstOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Point production at a version (mlops.production_version) and record it in the history.

    The gate compares the two versions only on weeks neither was trained on: the candidate's
    held-out test weeks after production's last training week, or the weeks of --data after
    both versions' training. Exit 0: promoted; 1: refused by the gate (too few such weeks, RMSE
    not lower, win not significant) or the integrity check; 2: bad input. With --json the
    outcome is printed as JSON, a refusal by the gate included ("promoted": false).

    Example: hhforecast promote 1.1.0 --require-better-rmse --reason "retrained on March data"
    """
    from hhforecast.gate.promote import (
        NotEnoughFairWeeksError,
        ProductionUnscoredError,
        PromotionRefusedError,
        ValidationFailedError,
    )
    from hhforecast.gate.promote import promote as promote_version

    settings = settings_from(config).with_dataset(dayfirst=dayfirst)
    if challenger:
        if require_better_rmse or require_significant or data is not None:
            raise typer.BadParameter(
                "--challenger names a version to forecast beside production; it takes no gate "
                "options (judge it later with --require-better-rmse)",
                param_hint="--challenger",
            )
        from hhforecast.cli.challenger_commands import name_challenger

        name_challenger(settings, version, variant, reason, json_output)
        return
    try:
        result = promote_version(
            settings,
            version,
            require_better_rmse=require_better_rmse,
            require_significant=require_significant,
            variant=variant,
            data=data,
            reason=reason,
        )
    except NotEnoughFairWeeksError as few:
        if json_output:
            print_json({"promoted": False, "error": str(few), "fair_weeks": few.count})
        raise
    except (PromotionRefusedError, ValidationFailedError, ProductionUnscoredError) as refused:
        if json_output:
            print_json(
                {"promoted": False, "error": str(refused), "validation": refused.report.to_dict()}
            )
        raise
    moved = result.record is not None and result.record.from_version != result.record.to_version
    # A version compared with itself (already production, or pinned from "latest"): the
    # report's warnings are about a comparison that was not made.
    for warning in result.report.warnings if result.report and moved else []:
        err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
    if result.record is None:
        if json_output:
            print_json(
                {"promoted": False, "already_in_production": True, "production_version": version}
            )
        else:
            console.print(
                f"{version} is already in production; nothing was changed.", highlight=False
            )
        return
    if json_output:
        _print_move(result, settings.config_file)
        return
    assert result.record is not None
    _render_move(result.record, settings.config_file, Registry(settings))
    _report_mlflow(result)


@friendly_errors
def rollback(
    reason: ReasonOption = "", config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Put the previous production version back (recorded as a promotion, reason "rollback").

    Example: hhforecast rollback --reason "forecasts too high since Monday"
    """
    from hhforecast.gate.promote import rollback as rollback_version

    settings = settings_from(config)
    result = rollback_version(settings, reason)
    if json_output:
        _print_move(result, settings.config_file)
        return
    assert result.record is not None
    _render_move(result.record, settings.config_file, Registry(settings))
    _report_mlflow(result)


def _print_move(result: PromotionResult, config_file: Path) -> None:
    assert result.record is not None
    _warn_mlflow(result)
    print_json(
        {
            "promoted": True,
            # Pinned from "latest" to the version that was already serving.
            "already_in_production": result.record.from_version == result.record.to_version,
            **result.record.to_entry(),
            "config_file": str(config_file),
            "validation": result.report.to_dict() if result.report else None,
            **({"mlflow": result.mlflow.to_dict()} if result.mlflow else {}),
        }
    )


def _warn_mlflow(result: PromotionResult) -> None:
    warning = result.mlflow.warning() if result.mlflow else None
    if warning:
        err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)


def _report_mlflow(result: PromotionResult) -> None:
    """The `production` aliases moved in MLflow, or why they could not be (tracking on)."""
    if result.mlflow is None:
        return
    for move in result.mlflow.moves:
        console.print(
            f"MLflow: {move.model}@production -> v{move.model_version} "
            f"(version {move.version}; was {move.previous_version or 'unset'}).",
            highlight=False,
        )
    _warn_mlflow(result)


def _render_move(record: PromotionRecord, config_file: Path, registry: Registry) -> None:
    if record.from_version == record.to_version:
        # Production followed "latest" and this is the latest: the pointer is pinned, not moved.
        console.print(
            f"{record.to_version} was already production (mlops.production_version was "
            f'"{record.from_setting}"); it is now pinned by name in {config_file}.',
            highlight=False,
        )
        return
    verb = "Rolled back" if record.action == "rollback" else "Promoted"
    console.print(
        f"{verb}: production is now [bold]{record.to_version}[/] "
        f"(was {record.from_version or 'nothing'}); {config_file} updated.",
        highlight=False,
    )
    if record.gate == "require-better-rmse":
        if record.rmse_from is not None:
            scores = (
                f"{fmt(record.rmse_to)} vs {fmt(record.rmse_from)} before ({record.rmse_basis})."
            )
        else:  # nothing to compare with: judged against the baselines only
            before = (
                "no production before"
                if record.from_version is None
                else f"{record.from_version}, production before, could not be scored"
            )
            scores = f"{fmt(record.rmse_to)} ({record.rmse_basis}); {before}."
        console.print(f"RMSE {record.variant}: {scores}", highlight=False)
        return
    # Without the gate each RMSE is from the registry, on that version's own test weeks.
    windows = {}
    for name, rmse in (
        (record.to_version, record.rmse_to),
        (record.from_version, record.rmse_from),
    ):
        if name is None:
            continue
        try:
            window = registry.get(name).test_window()
        except VersionNotFoundError:
            window = "unknown"
        windows[name] = window
        console.print(
            f"RMSE {record.variant} of {name}: {fmt(rmse)} on its own test weeks ({window}).",
            highlight=False,
        )
    if len(set(windows.values())) > 1 or "unknown" in windows.values():
        console.print(
            "These were measured on different weeks and are not comparable; "
            f"`hhforecast registry compare {' '.join(windows)}` scores both on the same weeks.",
            highlight=False,
        )


@friendly_errors
def registry_history(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Show every move of the production pointer: when, from, to, RMSEs, who and why.

    Example: hhforecast registry history --json
    """
    registry = Registry(settings_from(config))
    records = registry.promotions()
    if json_output:
        print_json([r.to_entry() for r in records])
        return
    if not records:
        console.print(f"No promotion recorded in {registry.path} yet.")
        return
    columns = [
        Column("when (UTC)"),
        Column("action"),
        Column("production"),
        Column("RMSE", justify="right"),
        Column("user", drop=1),
        Column("reason", wrap=True, min_width=12),
    ]
    rows = [
        Row(
            [
                r.at[:16].replace("T", " "),
                r.action + ("*" if r.gate == "require-better-rmse" else ""),
                # `to` of a removal names the removed version; production stayed.
                f"✕ {r.to_version}"
                if r.action == "remove"
                else f"{r.from_version or '-'}→{r.to_version}",
                "" if r.action == "remove" else f"{fmt(r.rmse_from)}→{fmt(r.rmse_to)}",
                r.user,
                r.reason,
            ]
        )
        for r in records
    ]
    table = fitted_table(
        columns,
        rows,
        title=f"Promotion history in {registry.path}",
        caption="* promoted through --require-better-rmse: both RMSEs on the same evaluation "
        "weeks. Otherwise each version's RMSE on its own held-out weeks (see --json).",
        caption_style="dim",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    print_table(table)
