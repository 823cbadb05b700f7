"""What every command shares: the --config option, consoles, and turning errors into exit codes."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

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
        help="Config file (default: $HHFORECAST_CONFIG, then config.yaml in this folder or the "
        "nearest folder above it, then built-in).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]
DatasetOption = Annotated[
    Path | None,
    typer.Option(
        "--dataset",
        help="Weekly CSV (default: paths.dataset, else the simulated sample: see --sample).",
        dir_okay=False,
    ),
]
SampleOption = Annotated[
    bool,
    typer.Option(
        "--sample",
        help="Use the simulated sample fleet bundled with hhforecast (a demonstration, not "
        "your data); needed when config.yaml describes your own data.",
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


class CsvStyleChoice(StrEnum):
    """The --csv-style values (datasets/writer.py)."""

    input = "input"
    br = "br"
    intl = "intl"


CsvStyleOption = Annotated[
    CsvStyleChoice,
    typer.Option(
        "--csv-style",
        help="How output CSVs are written: input (as the input file was, the default), br "
        "(';', decimal comma, dd/mm/yyyy) or intl (',', decimal point, YYYY-MM-DD).",
    ),
]
VersionOption = Annotated[
    str | None,
    typer.Option("--version", help="Version name (default: today's date, YYYYMMDD)."),
]


def settings_from(config: Path | None, say_defaults: bool = True) -> Settings:
    """Load the settings for a command; say on stderr when no config file was found (unless
    `say_defaults` is False: a command that uses no project folder, models or registry)."""
    settings = load_settings(config)
    global _NUMBERS
    _NUMBERS = settings.display.numbers
    if settings.source is None and say_defaults:
        err_console.print(
            f"Note: no config.yaml in {settings.base_dir} or the folders above it; using the "
            f"built-in defaults (models in {settings.models_dir}). Run from the project folder "
            "or pass --config FILE.",
            highlight=False,
            soft_wrap=True,
        )
    return settings


def chosen_dataset(settings: Settings, dataset: Path | None, sample: bool, action: str) -> Path:
    """The weekly CSV a command trains on; a loud warning on stderr when it is the sample."""
    from hhforecast.datasets.weekly import sample_dataset_path, sample_warning
    from hhforecast.datasets.weekly import training_dataset_path as resolve

    path = resolve(settings, dataset, sample)
    if path == sample_dataset_path():
        err_console.print(f"[bold yellow]Warning:[/] {sample_warning(action)}", highlight=False)
    return path


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an HHForecastError into `Error: <message>` on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # Messages are text, not markup: `pip install 'hhforecast[postgres]'` or a column named
        # `[red]` must reach the terminal as written.
        try:
            return command(*args, **kwargs)
        except HHForecastError as exc:
            err_console.print(
                f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a file of the user's that cannot be read or written
            err_console.print(
                f"[bold red]Error:[/] {escape(os_error_message(exc))}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


# typer raises click's exceptions (its own copy of click in recent releases): find the class
# through a public name rather than a private module.
_CLICK_EXCEPTION: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except _CLICK_EXCEPTION as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `hhforecast` alone: show the help
            raise
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        hint = f" See '{ctx.command_path} --help'." if ctx is not None else ""
        if not message.endswith((".", "?", "!")):
            message += "."
        err_console.print(f"[bold red]Error:[/] {escape(message)}{hint}", highlight=False)
        raise typer.Exit(getattr(exc, "exit_code", 2)) from None


OPTION_ALIASES = {"--out": "--output"}
"""Former option names, still accepted (hidden from --help) so that older scripts keep working."""


class _PlainHelp:
    """--help without type names a user cannot act on: a flag shows none (typer would print
    `<bool>`), a repeatable file option shows `<file>...` (not `<list[Path]>`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.metavar is not None or param.param_type_name != "option":
                continue
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif getattr(param, "multiple", False):
                param.metavar = "<file>..." if "Path" in param.display_type(ctx) else "<text>..."
        return params


class Command(_PlainHelp, TyperCommand):
    """Every hhforecast command: plain --help, and the former option names still accepted."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        names = {name for param in self.params for name in param.opts}
        return super().parse_args(ctx, [_renamed(arg, names) for arg in args])


def _renamed(arg: str, names: set[str]) -> str:
    name, equals, value = arg.partition("=")
    new = OPTION_ALIASES.get(name)
    return f"{new}{equals}{value}" if new in names and new is not None else arg


class Group(_PlainHelp, TyperGroup):
    """A command group (`registry`, `dataset`, `mlflow`) with the same plain --help."""


class OneLineErrorsGroup(_PlainHelp, TyperGroup):
    """The root command: a usage error (unknown option, missing or bad value) is one line,
    `Error: ...` on stderr with exit 2, like every other error."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


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


_NUMBERS = "intl"
"""display.numbers of the command's config: how `fmt` writes thousands and decimals."""
_BR_MARKS = str.maketrans({",": ".", ".": ","})


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell, with the marks display.numbers names; '-' when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return number(value, f",.{digits}f")


def number(value: float, spec: str) -> str:
    """`format(value, spec)` with the marks display.numbers names (for sentences)."""
    text = format(value, spec)
    return text.translate(_BR_MARKS) if _NUMBERS == "br" else text


@dataclass(frozen=True)
class Column:
    """A table column. Versions, dates and numbers never wrap; only `wrap` text folds.

    `drop` ranks the columns left out when the terminal is too narrow: 0 is always shown,
    1 goes first, then 2, and so on.
    """

    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    drop: int = 0
    style: str | None = None
    min_width: int | None = None


@dataclass(frozen=True)
class Row:
    """One table row: a cell per column (same order), an optional style and section end."""

    cells: Sequence[RenderableType]
    style: str | None = None
    end_section: bool = False


def fitted_table(
    columns: Sequence[Column],
    rows: Sequence[Row],
    *,
    caption: str | None = None,
    **table_options: Any,
) -> Table:
    """The table with the fewest columns left out that fits the terminal without cutting a cell.

    Columns are left out by their `drop` rank; the caption says which, and that --json has all.
    """
    ranks = sorted({c.drop for c in columns if c.drop})
    for level in [0, *ranks]:
        shown = [i for i, c in enumerate(columns) if not c.drop or c.drop > level]
        table = _table(columns, rows, shown, caption, table_options)
        unbounded = console.options.update_width(10_000)
        if console.measure(table, options=unbounded).minimum <= console.width:
            break
    return table


def _table(
    columns: Sequence[Column],
    rows: Sequence[Row],
    shown: list[int],
    caption: str | None,
    table_options: dict[str, Any],
) -> Table:
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    if hidden:
        note = f"Not shown at this width: {', '.join(hidden)} (see --json)."
        caption = f"{caption.rstrip('.')}. {note}" if caption else note
    table = Table(caption=caption, **table_options)
    for i in shown:
        c = columns[i]
        # Rich measures any text by its longest word; a cell that must not wrap needs it all.
        whole = (
            None if c.wrap else max(_cell_width(x) for x in [c.header, *(r.cells[i] for r in rows)])
        )
        table.add_column(
            c.header,
            justify=c.justify,
            no_wrap=not c.wrap,
            overflow="fold",
            style=c.style,
            min_width=whole or c.min_width,
        )
    for row in rows:
        table.add_row(*(row.cells[i] for i in shown), style=row.style, end_section=row.end_section)
    return table


def _cell_width(cell: RenderableType) -> int:
    if isinstance(cell, str):
        return Text.from_markup(cell).cell_len
    return console.measure(cell).maximum


def print_findings(findings: Sequence[Any]) -> None:
    """Notes on stdout and warnings on stderr, one line each (see modeling/findings.py)."""
    for finding in findings:
        if finding.is_warning:
            err_console.print(f"[yellow]Warning:[/] {finding.message}", highlight=False)
        else:
            console.print(f"Note: {finding.message}", highlight=False)


def print_table(table: Table) -> None:
    """Print a table whose title and caption wrap to the terminal (other output does not)."""
    title = table.title
    if isinstance(title, str):
        table.title = None
        drawn = console.render_lines(table, console.options, pad=False)
        if len(title) > max((Segment.get_line_length(line) for line in drawn), default=0):
            # A title longer than a narrow table reads better across the terminal.
            console.print(title, style="table.title", soft_wrap=False, highlight=False)
        else:
            table.title = title
    console.print(table, soft_wrap=False)
