"""The `hhforecast` command line: thin commands over the library modules.

Exit codes, like diff: 0 done or check passed, 1 a check said no, 2 bad input or usage.
"""

from __future__ import annotations

import typer

from hhforecast.cli import (
    backtest_command,
    forecast_command,
    gate_commands,
    modeling,
    serve_command,
    watch_commands,
)
from hhforecast.cli._common import Command, OneLineErrorsGroup
from hhforecast.cli.dataset_commands import dataset_app
from hhforecast.cli.log_commands import log_app
from hhforecast.cli.mlflow_commands import mlflow_app
from hhforecast.cli.registry_commands import registry_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="hhforecast",
    help="Forecast weekly unscheduled maintenance man-hours (HH), and operate the forecast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrorsGroup,
    # Markdown joins a docstring's wrapped lines into paragraphs (rich mode keeps every break).
    rich_markup_mode="markdown",
)
app.command(cls=Command)(modeling.sample)
app.add_typer(dataset_app, name="dataset")
app.command(cls=Command)(modeling.train)
app.command(cls=Command)(modeling.retrain)
app.command(cls=Command)(modeling.predict)
app.command(cls=Command)(forecast_command.forecast)
app.add_typer(registry_app, name="registry")
app.command(cls=Command)(gate_commands.validate)
app.command(cls=Command)(gate_commands.promote)
app.command(cls=Command)(gate_commands.rollback)
app.command(cls=Command)(watch_commands.drift)
app.command(cls=Command)(watch_commands.monitor)
app.add_typer(log_app, name="log")
app.command(cls=Command)(serve_command.serve)
app.command(cls=Command)(backtest_command.backtest)
app.add_typer(mlflow_app, name="mlflow")


def main() -> None:
    """Entry point of the `hhforecast` console script."""
    app()
