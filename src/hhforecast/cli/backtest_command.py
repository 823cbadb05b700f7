"""`hhforecast backtest`: rolling-origin scores of the networks and the baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hhforecast.cli._common import (
    ConfigOption,
    DatasetOption,
    DayfirstOption,
    JsonOption,
    SampleOption,
    chosen_dataset,
    console,
    err_console,
    fmt,
    friendly_errors,
    number,
    print_findings,
    print_json,
    print_table,
    settings_from,
)

if TYPE_CHECKING:
    from hhforecast.modeling.backtest import BacktestResult


@friendly_errors
def backtest(
    dataset: DatasetOption = None,
    sample: SampleOption = False,
    folds: Annotated[
        int | None,
        typer.Option(min=1, help="Number of folds (default: training.backtest_folds, else 4)."),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(min=1, help="Weeks scored per fold (default: training.backtest_horizon)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs per fit.")] = None,
    original: Annotated[
        bool,
        typer.Option(
            "--original",
            help="Also score the original recipe (MinMax, ReLU 100-100, 10 epochs): the mean "
            "over --original-inits initialisations, with their spread.",
        ),
    ] = False,
    original_inits: Annotated[
        int | None,
        typer.Option(
            "--original-inits",
            min=1,
            help="Initialisations the original recipe is trained from (default: 5).",
        ),
    ] = None,
    dayfirst: DayfirstOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train on the weeks up to a date, score the next weeks, move the date; repeat per fold.

    Example: hhforecast backtest --folds 4 --horizon 13
    """
    from hhforecast.modeling.backtest import ORIGINAL_INITS, backtest_dataset
    from hhforecast.modeling.findings import backtest_findings
    from hhforecast.tracking.runs import log_backtest

    settings = settings_from(config).with_training(epochs=epochs).with_dataset(dayfirst=dayfirst)
    dataset = chosen_dataset(settings, dataset, sample, "backtesting")

    def on_fold(done: int, total: int) -> None:
        if not json_output:
            err_console.print(f"fold {done}/{total} done", highlight=False)

    inits = (original_inits or ORIGINAL_INITS) if original else 0
    result = backtest_dataset(settings, dataset, folds, horizon, inits, on_fold)
    tracked = log_backtest(settings, result)
    if tracked.warning():
        err_console.print(f"[yellow]Warning:[/] {tracked.warning()}", highlight=False)
    findings = backtest_findings(result)
    if json_output:
        extra = {"mlflow": tracked.to_dict()} if tracked.tracking else {}
        print_json({**result.to_dict(), **extra, "findings": [f.to_dict() for f in findings]})
        return
    for variant in result.overall:
        print_table(backtest_table(result, variant))
    for variant, rmses in result.original_rmse_by_init.items():
        console.print(
            f"{variant} original_recipe: mean of {len(rmses)} initialisations, pooled RMSE "
            f"{fmt(min(rmses))} to {fmt(max(rmses))}.",
            highlight=False,
        )
    coverage = ", ".join(f"{v} {c:.0%}" for v, c in result.coverage.items())
    console.print(
        f"Network {result.interval_target:.0%} intervals covered: {coverage} "
        f"of the {result.folds * result.horizon} backtest weeks."
    )
    print_findings(backtest_findings(result, number))
    if tracked.run_id and not tracked.problem:
        console.print(f"MLflow run {tracked.run_id} at {tracked.tracking_uri}.", highlight=False)


def backtest_table(result: BacktestResult, variant: str) -> Table:
    """Per-fold and pooled MAE / RMSE / MAPE of every model of a variant; best RMSE in green."""
    table = Table(
        title=f"{variant}: rolling-origin backtest, {result.folds} fold(s) of "
        f"{result.horizon} week(s) (lower is better)"
    )
    for column in ("fold", "weeks from", "model", "MAE", "RMSE", "MAPE %"):
        numeric = column in ("MAE", "RMSE", "MAPE %")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    blocks = [(str(f["fold"]), f["test_start"], f["variants"][variant]) for f in result.fold_scores]
    blocks.append(("all", "pooled", result.overall[variant]))
    for label, weeks, scores in blocks:
        best = min(m["RMSE"] for m in scores.values())
        for i, (model, m) in enumerate(scores.items()):
            table.add_row(
                label if i == 0 else "",
                weeks if i == 0 else "",
                model,
                fmt(m["MAE"]),
                fmt(m["RMSE"]),
                fmt(m["MAPE"]),
                style="bold green" if m["RMSE"] == best else None,
                end_section=i == len(scores) - 1,
            )
    return table
