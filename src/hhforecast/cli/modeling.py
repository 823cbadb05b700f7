"""`hhforecast sample`, `train`, `retrain` and `predict`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hhforecast.cli._common import (
    ConfigOption,
    CsvStyleChoice,
    CsvStyleOption,
    DatasetOption,
    DayfirstOption,
    JsonOption,
    SampleOption,
    VersionOption,
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
from hhforecast.config import Settings
from hhforecast.errors import EXIT_CHECK_FAILED


@friendly_errors
def sample(
    out: Annotated[
        Path | None, typer.Option("--output", help="Weekly CSV to write.", dir_okay=False)
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option(
            "--raw",
            help="Folder to write the raw logs to (utilization.csv, events.csv).",
            file_okay=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 7,
    weeks: Annotated[int, typer.Option(min=8, max=5200, help="Number of weeks.")] = 260,
    start: Annotated[
        str,
        typer.Option(
            help="First week (a date; its Monday is used). The fleet enters service on "
            "2019-01-07 (or on --start, when earlier): a later start continues that fleet."
        ),
    ] = "2019-01-07",
    csv_style: CsvStyleOption = CsvStyleChoice.input,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Simulate a fleet day by day and write its weekly dataset and/or its raw logs.

    `dataset build` on the raw logs gives the weekly dataset back, exactly. Files are written
    in the intl CSV style (',', decimal point, ISO dates) unless --csv-style br.

    Example: hhforecast sample --output data/fleet.csv --raw raw/ --seed 11 --weeks 312
    """
    import pandas as pd

    from hhforecast.datasets.fleet import SAMPLE_START, raw_logs, simulate_fleet, weekly_dataset
    from hhforecast.datasets.writer import csv_style as style_named
    from hhforecast.datasets.writer import write_csv
    from hhforecast.errors import HHForecastError

    # The simulation needs no setting, but a broken file is said at once (and display.numbers).
    settings_from(config, say_defaults=False)
    if out is None and raw is None:
        raise HHForecastError("nothing to write: pass --output FILE, --raw DIR, or both")
    try:
        pd.Timestamp(start)
    except ValueError:
        raise HHForecastError(f"--start {start!r} is not a date (use YYYY-MM-DD)") from None
    fleet = simulate_fleet(seed=seed, weeks=weeks, start=start, fleet_start=SAMPLE_START)
    frame = weekly_dataset(fleet, weeks, start)
    span = f"{frame['date'].iloc[0]} to {frame['date'].iloc[-1]}, seed {seed}"
    if raw is not None:
        utilisation, events = raw_logs(fleet)
        style = style_named(csv_style.value)
        write_csv(utilisation, raw / "utilization.csv", style)
        write_csv(events, raw / "events.csv", style)
    if out is not None:
        write_csv(frame, out, style_named(csv_style.value))
    if json_output:
        print_json(
            {
                "path": str(out.resolve()) if out is not None else None,
                "raw": str(raw.resolve()) if raw is not None else None,
                "weeks": len(frame),
                "start": str(frame["date"].iloc[0]),
                "end": str(frame["date"].iloc[-1]),
                "seed": seed,
            }
        )
        return
    if raw is not None:
        console.print(
            f"Wrote the raw logs of {len(frame)} weeks ({span}) to {raw.resolve()}: "
            f"utilization.csv ({fmt(len(utilisation), 0)} aircraft-days), events.csv "
            f"({fmt(len(events), 0)} items)",
            highlight=False,
        )
    if out is not None:
        console.print(f"Wrote {len(frame)} weeks ({span}) to {out.resolve()}", highlight=False)


@friendly_errors
def train(
    dataset: DatasetOption = None,
    sample: SampleOption = False,
    version: VersionOption = None,
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing version (never production).")
    ] = False,
    score_served_fit: Annotated[
        bool,
        typer.Option(
            "--score-served-fit",
            help="Serve the fit scored on the held-out weeks (it never learnt them) instead of "
            "a refit on every week (training.refit_on_all_weeks: false).",
        ),
    ] = False,
    json_output: JsonOption = False,
    dayfirst: DayfirstOption = None,
) -> None:
    """Score the recipe on held-out weeks and rolling-origin folds, then fit what serves on
    every labelled week, and register both variants as a new version.

    The registry's metrics are the recipe's score on the held-out (latest) weeks; the served fit
    learns those weeks too (unless --score-served-fit) and its intervals come from the folds'
    out-of-sample errors. When mlops.production_version is "latest", the new version serves as
    soon as it is registered (the output says so); pin production with `hhforecast promote` to
    review first.

    Example: hhforecast train --version 1.0.0
    """
    from hhforecast.tracking.training import train_tracked

    settings = settings_from(config).with_training(
        epochs=epochs, seed=seed, refit_on_all_weeks=False if score_served_fit else None
    )
    settings = settings.with_dataset(dayfirst=dayfirst)
    dataset = chosen_dataset(settings, dataset, sample, "training")
    with training_progress(quiet=json_output) as on_epoch:
        trained = train_tracked(settings, dataset, version, force=force, on_epoch=on_epoch)
    result, tracked = trained.result, trained.run
    if tracked.warning():
        err_console.print(f"[yellow]Warning:[/] {tracked.warning()}", highlight=False)
    from hhforecast.modeling.findings import training_findings

    findings = training_findings(result.metadata)
    if json_output:
        print_json(
            {
                "version": result.entry.version,
                "path": str(result.path),
                "serving": result.serving,
                **{k: v for k, v in result.metadata.items() if k != "version"},
                # The run as the metadata records it, with what tracking did in this command.
                **(
                    {"mlflow": {**result.metadata.get("mlflow", {}), **tracked.to_dict()}}
                    if tracked.tracking
                    else {}
                ),
                "findings": [f.to_dict() for f in findings],
            }
        )
        return
    print_table(_summary(result.metadata))
    for name, info in result.metadata["variants"].items():
        interval = info["interval"]
        console.print(
            f"{name}: {interval['coverage']:.0%} interval ±{_halfwidth_text(interval)}, "
            f"covered {interval['observed_coverage_test']:.0%} of the test weeks.",
            highlight=False,
        )
    print_findings(training_findings(result.metadata, number))
    console.print(
        f"Registered version [bold]{result.entry.version}[/] in {result.path}"
        f" (test weeks {result.metadata['split']['test']['start']} to "
        f"{result.metadata['split']['test']['end']}, split: {result.metadata['split']['mode']})."
    )
    console.print(served_fit_text(result.metadata), highlight=False)
    if result.serving:
        console.print(
            f"[bold]{result.entry.version} is now serving[/]: mlops.production_version is "
            '"latest", so the newest version is production from the moment it is registered '
            "(a running `hhforecast serve` switches to it), with no comparison. To review new "
            "versions before they serve, pin production: hhforecast promote VERSION.",
            highlight=False,
        )
    if tracked.run_id and not tracked.problem:
        console.print(
            f"MLflow run {tracked.run_id} at {tracked.tracking_uri}; registered "
            + ", ".join(f"{name} v{n}" for name, n in tracked.registered.items())
            + (f"; production alias moved to {result.entry.version}" if tracked.aliases else "")
            + ".",
            highlight=False,
        )


def served_fit_text(metadata: dict[str, Any]) -> str:
    """What the served fit learnt, told apart from the scores above (the recipe's)."""
    served, end = metadata["served_fit"], metadata["served_fit"]["trained_through"]
    if served["refit_on_all_weeks"]:
        return (
            f"Served fit trained through {end}: it learnt every labelled week "
            f"({served['weeks']}), the test weeks too; the scores above are the recipe's, "
            "measured on weeks its scored fit had not learnt."
        )
    return (
        f"Served fit trained through {end}: the scored fit serves (no refit on all weeks), "
        f"so it never learnt the {metadata['split']['test']['weeks']} test weeks."
    )


@contextmanager
def training_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per variant on stderr (none when quiet); yields the epoch callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hhforecast.modeling.training import FOLDS_TASK

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=quiet,
        disable=quiet,
    )
    tasks: dict[str, Any] = {}

    def on_epoch(variant: str, done: int, total: int) -> None:
        if variant not in tasks:
            unit = "folds" if variant == FOLDS_TASK else "epochs"
            tasks[variant] = progress.add_task(f"training {variant}", total=total, unit=unit)
        progress.update(tasks[variant], completed=done)

    with progress:
        yield on_epoch
        for task in tasks.values():  # early stopping ends before the planned epochs
            progress.update(task, total=progress.tasks[task].completed)


@friendly_errors
def retrain(
    dataset: DatasetOption = None,
    sample: SampleOption = False,
    version: VersionOption = None,
    reason: Annotated[str, typer.Option(help="Kept in the promotion history.")] = "",
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs.")] = None,
    utilization: Annotated[
        list[Path] | None,
        typer.Option(
            "--utilization",
            help="Raw utilisation log(s) to build the dataset from (repeat, or a quoted glob).",
        ),
    ] = None,
    events: Annotated[
        list[Path] | None,
        typer.Option("--events", help="Raw event log(s) to build the dataset from."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--output", help="Where the built weekly CSV goes (with --utilization)."),
    ] = Path("data/weekly.csv"),
    dayfirst: DayfirstOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train a new version and promote it only if it beats production on weeks neither saw.

    Production following "latest" is pinned first, so a new version never serves untested.
    With --utilization and --events the weekly dataset is first built from the raw logs (as
    `dataset build` does) into --output. Exit 0: promoted; 1: trained and registered, production
    kept; 2: bad input.

    Example: hhforecast retrain --utilization 'exports/util-\\*.csv' --events
    'exports/ev-\\*.csv' --reason "monthly retrain"
    """
    from hhforecast.errors import HHForecastError
    from hhforecast.gate.retrain import retrain as retrain_version

    settings = settings_from(config).with_training(epochs=epochs).with_dataset(dayfirst=dayfirst)
    if utilization or events:
        if sample:
            raise HHForecastError("pass either --sample or --utilization/--events, not both")
        dataset = _build_for_retrain(settings, dataset, utilization, events, out, json_output)
    dataset = chosen_dataset(settings, dataset, sample, "retraining")
    with training_progress(quiet=json_output) as on_epoch:
        outcome = retrain_version(settings, dataset, version, reason, on_epoch=on_epoch)
    for problem in outcome.mlflow_warnings():
        err_console.print(
            f"[yellow]Warning:[/] {problem}. Nothing local was affected; run `hhforecast mlflow "
            "sync` later.",
            highlight=False,
        )
    if json_output:
        print_json(outcome.to_dict())
    else:
        if outcome.pinned:
            console.print(
                f'Pinned production to {outcome.previous} (it followed "latest").',
                highlight=False,
            )
        scores = (
            f" RMSE {fmt(outcome.candidate_rmse)} vs {fmt(outcome.production_rmse)} on "
            f"{outcome.fair_weeks} fair week(s)."
            if outcome.candidate_rmse is not None
            else ""
        )
        if outcome.promoted:
            console.print(
                f"[bold green]Promoted[/] {outcome.version}: {outcome.why}.{scores}",
                highlight=False,
            )
        else:
            console.print(
                f"[bold yellow]Kept[/] {outcome.production} in production; {outcome.version} is "
                f"registered but not promoted: {outcome.why}",
                highlight=False,
            )
    if not outcome.promoted:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _build_for_retrain(
    settings: Settings,
    dataset: Path | None,
    utilization: list[Path] | None,
    events: list[Path] | None,
    out: Path,
    quiet: bool,
) -> Path:
    """Build the weekly dataset from the raw logs into `out` (checked before anything moves)."""
    from hhforecast.datasets.build import build_dataset, write_dataset
    from hhforecast.errors import HHForecastError

    if dataset is not None:
        raise HHForecastError("pass either --dataset or --utilization/--events, not both")
    if not utilization or not events:
        raise HHForecastError("--utilization and --events go together: pass both")
    built = build_dataset(utilization, events, settings.dataset)
    write_dataset(built, out)
    if not quiet:
        weeks = built.manifest["weeks"]
        console.print(
            f"Built {weeks['kept']} weeks ({weeks['first']} to {weeks['last']}) into {out}.",
            highlight=False,
        )
    return out


def _summary(metadata: dict[str, Any]) -> Table:
    table = Table(title="Held-out test weeks: network vs baselines (lower RMSE is better)")
    for column in ("variant", "model", "MAE", "RMSE", "R²", "MAPE %"):
        table.add_column(
            column, justify="left" if column in ("variant", "model") else "right", no_wrap=True
        )
    for name, info in metadata["variants"].items():
        rows = [("network", info["metrics"]), *list(info["baselines"].items())]
        best = min(m["RMSE"] for _, m in rows)
        for i, (label, m) in enumerate(rows):
            table.add_row(
                name,
                label,
                fmt(m["MAE"]),
                fmt(m["RMSE"]),
                fmt(m["R2"], 3),
                fmt(m["MAPE"]),
                style="bold green" if m["RMSE"] == best else None,
                end_section=i == len(rows) - 1,
            )
    return table


def _halfwidth_text(interval: dict[str, Any]) -> str:
    # Relative intervals scale with the prediction: show the share and its mean on the test weeks.
    if interval.get("scale") == "relative":
        mean = interval.get("mean_halfwidth_test_hh")
        return f"{interval['halfwidth']:.0%}" + (f" (≈{mean:.0f} HH)" if mean else "")
    return f"{interval['halfwidth']:.0f} HH"


@friendly_errors
def predict(
    input_file: Annotated[
        Path,
        typer.Option("--input", help="CSV of weeks with the variant's features.", dir_okay=False),
    ],
    output: Annotated[Path, typer.Option("--output", help="CSV to write.", dir_okay=False)],
    version: Annotated[str | None, typer.Option(help="Version (default: production).")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant (default: mlops.serve_variant, 5features).")
    ] = None,
    config: ConfigOption = None,
    dayfirst: DayfirstOption = None,
    csv_style: CsvStyleOption = CsvStyleChoice.input,
    json_output: JsonOption = False,
) -> None:
    """Score a CSV of weeks: the input plus HH_pred, HH_lower, HH_upper and out_of_range,
    written in the input's CSV style (separator, decimal mark, date order) unless --csv-style.

    Example: hhforecast predict --input weeks.csv --output scored.csv
    """
    from hhforecast.modeling.predict import predict_file

    settings = settings_from(config).with_dataset(dayfirst=dayfirst)
    run = predict_file(settings, input_file, output, version, variant, csv_style.value)
    if run.rows_out_of_range:
        err_console.print(
            f"[yellow]Warning:[/] {run.rows_out_of_range} row(s) have features outside the "
            "range seen in training (see the out_of_range column); treat them with care."
        )
    if json_output:
        print_json(
            {
                "path": str(run.output.resolve()),
                "rows": run.rows,
                "version": run.version,
                "variant": run.variant,
                "rows_out_of_range": run.rows_out_of_range,
            }
        )
        return
    console.print(
        f"Wrote {run.rows} predictions to {run.output.resolve()} (version {run.version}, "
        f"{run.variant}).",
        highlight=False,
    )
