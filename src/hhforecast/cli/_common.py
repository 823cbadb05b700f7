"""What every command shares: the --config option, consoles, and turning errors into exit codes."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from hhforecast.config import Settings, load_settings
from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (default: $HHFORECAST_CONFIG, then ./config.yaml, then built-in).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DatasetOption = Annotated[
    Path | None,
    typer.Option(
        "--dataset",
        help="Weekly CSV (default: paths.dataset, else the bundled sample).",
        dir_okay=False,
    ),
]
DayfirstOption = Annotated[
    bool | None,
    typer.Option(
        "--dayfirst/--no-dayfirst",
        help="Read non-ISO dates as dd/mm/yyyy (default: dataset.dayfirst).",
        show_default=False,
    ),
]
VersionOption = Annotated[
    str | None,
    typer.Option("--version", help="Version name (default: today's date, YYYYMMDD)."),
]


def settings_from(config: Path | None) -> Settings:
    """Load the settings for a command."""
    return load_settings(config)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an HHForecastError into `Error: <message>` on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HHForecastError as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a file of the user's that cannot be read or written
            err_console.print(
                f"[bold red]Error:[/] {os_error_message(exc)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the file, what the system said, and what to check."""
    where = f"{exc.filename}" if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    reason = exc.strerror or type(exc).__name__
    return (
        f"{where}: {reason}. Check that the path exists and that you may read and write it "
        "(permissions, free space, read-only file system)."
    )


def print_json(data: Any) -> None:
    """Machine-readable output on stdout: plain JSON, no colour, NaN written as null."""
    typer.echo(json.dumps(_finite(data), indent=2, default=str))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; '-' when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"
