"""The one reader of every table the product reads: weekly datasets, files to score, raw logs.

Files come as they leave the planners' tools, often Excel with Brazilian settings. The reader
finds out, from the file itself:

* the encoding: UTF-8 (with or without BOM), else cp1252 (a superset of latin-1's printable
  characters); anything else (UTF-16, binary) is refused;
* the separator: `,`, `;` or tab, whichever the header line uses most (or `dataset.separator`);
* decimal comma and thousands separators (`1.234,5` in a `;` file, `"1,234.5"` in a `,` file);
* trimmed header names, each at most once.

Before any of that, the file is measured against `dataset.limits` (datasets/bounds.py), so that
a small hostile file cannot take gigabytes or abort the process.

Dates are ISO (`YYYY-MM-DD`, a time of day allowed) or day-first (`dd/mm/yyyy`, `dd.mm.yyyy`,
`dd-mm-yyyy`). Day-first is used when `dataset.dayfirst` (or `--dayfirst`) says so, or when the
file's own dates can only be read that way (a day above 12). A file whose dates could be either
is refused with the fix; dates are never read month-first, nor outside the years 1900 to 2200.
`.xlsx` files are read through pandas with the python-calamine engine (see docs/data.md).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hhforecast._fs import file_sha256
from hhforecast.config import DatasetConfig, shown_value
from hhforecast.datasets.bounds import (
    check_csv_bytes,
    check_file_size,
    check_workbook,
    refuse_repeated_headers,
)
from hhforecast.errors import DatasetError

__all__ = [
    "EXCEL_SUFFIXES",
    "TableFormat",
    "parse_dates",
    "read_table",
    "to_numbers",
]

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SEPARATORS = {"auto": None, ",": ",", ";": ";", "tab": "\t"}
_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_SAMPLE_LINES = 500
MIN_YEAR, MAX_YEAR = 1900, 2200
DATES_HINT = (
    "Write dates as YYYY-MM-DD, or set dataset.dayfirst: true in config.yaml (or pass "
    "--dayfirst) for dd/mm/yyyy."
)

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$")
_DMY = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_COMMA_DECIMAL = re.compile(r"^[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+$")
_NUMBER = {
    ",": re.compile(r"^[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?$"),
    ".": re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?$"),
}


@dataclass(frozen=True)
class TableFormat:
    """What the reader found out about a file (kept in the dataset manifest)."""

    encoding: str
    separator: str
    decimal: str
    sha256: str = ""
    """SHA-256 of the file's bytes, taken from the bytes that were read."""
    columns: tuple[str, ...] = ()
    """The file's whole header (trimmed), also the columns a `only=` read left out."""
    dayfirst: bool = False
    """Whether the file's dates were written day-first (dd/mm/yyyy)."""

    def to_dict(self) -> dict[str, str]:
        return {
            "encoding": self.encoding,
            "separator": "tab" if self.separator == "\t" else self.separator,
            "decimal": self.decimal,
        }


def read_table(
    path: Path,
    options: DatasetConfig | None = None,
    numeric: tuple[str, ...] | list[str] = (),
    dates: tuple[str, ...] | list[str] = (),
    missing_hint: str = "Check the path.",
    only: tuple[str, ...] | list[str] | None = None,
) -> tuple[pd.DataFrame, TableFormat]:
    """Read a CSV or .xlsx file; `numeric` columns become floats and `dates` columns dates
    (those the file has: the caller reports missing columns). Row i is line i + 2 of the file.

    `only`, when given, names the columns wanted (trimmed names): the others of a CSV are
    not parsed at all (raw logs carry columns the dataset never uses)."""
    options = options or DatasetConfig()
    if not path.exists():
        raise DatasetError(path, "no such file", missing_hint)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not a file")
    if path.suffix.lower() in EXCEL_SUFFIXES:
        check_workbook(path, options.limits)
        frame = _read_excel(path)
        fmt = TableFormat("xlsx", "", ".", file_sha256(path), tuple(frame.columns))
    elif path.suffix.lower() == ".xls":
        raise DatasetError(path, "is an old .xls workbook", "Save it as .xlsx or CSV.")
    else:
        frame, fmt = _read_csv(path, options, only)
    for column in numeric:
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = to_numbers(frame[column], path, column, fmt)
    for column in dates:
        if column in frame.columns:
            if _written_dayfirst(frame[column]):
                fmt = replace(fmt, dayfirst=True)
            frame[column] = parse_dates(frame[column], path, column, options.dayfirst)
    return frame, fmt


def _written_dayfirst(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return False
    first = values.dropna().head(1)
    return bool(len(first) and _DMY.match(str(first.iloc[0]).strip()))


def _read_excel(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_excel(path, sheet_name=0, engine="calamine")
    except Exception as exc:  # calamine raises its own types for every kind of broken workbook
        raise DatasetError(path, f"not a readable .xlsx workbook ({_first_line(exc)})") from None
    # pandas renames a repeated header "acft" to "acft.1": undo that to name the repeat.
    names = [re.sub(r"\.\d+$", "", str(c)) if _mangled(str(c), frame) else c for c in frame.columns]
    refuse_repeated_headers(names, path)
    return _trimmed_headers(frame, path)


def _mangled(name: str, frame: pd.DataFrame) -> bool:
    base, dot, number = name.rpartition(".")
    return bool(dot) and number.isdigit() and base in frame.columns


def _read_csv(
    path: Path, options: DatasetConfig, only: tuple[str, ...] | list[str] | None
) -> tuple[pd.DataFrame, TableFormat]:
    check_file_size(path, options.limits)
    data = path.read_bytes()
    if not data or data.isspace():
        raise DatasetError(path, "the file is empty", "See docs/data.md for the expected columns.")
    encoding, text = _decode(data, path)
    lines = text.splitlines()[: _SAMPLE_LINES + 1]
    header = next((line for line in lines if line.strip()), "")
    separator = SEPARATORS.get(options.separator) or _sniff_separator(header)
    names = _header_names(header, separator)
    check_csv_bytes(data, names, path, options.limits)
    refuse_repeated_headers(names, path)
    decimal = _sniff_decimal(lines[1:], separator)
    wanted = None if only is None else {name.strip() for name in only}
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=separator,
            decimal=decimal,
            encoding=encoding,
            low_memory=False,
            usecols=None
            if wanted is None
            else (lambda name: name.strip().lstrip("\ufeff") in wanted),
        )
    except pd.errors.EmptyDataError:
        raise DatasetError(path, "the file is empty", "See docs/data.md.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(path, f"not a readable CSV file ({_first_line(exc)})") from None
    frame = _trimmed_headers(frame, path)
    if len(frame.columns) == 1:
        _refuse_wrong_separator(path, header, separator, options)
    sha256 = hashlib.sha256(data).hexdigest()
    return frame, TableFormat(encoding, separator, decimal, sha256, tuple(names))


def _header_names(header: str, separator: str) -> list[str]:
    try:
        fields = next(csv.reader([header], delimiter=separator))
    except (csv.Error, StopIteration):
        fields = header.split(separator)
    return [name.strip().lstrip("\ufeff").strip() for name in fields]


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise DatasetError(
            path,
            "is UTF-16 or binary, not a text CSV",
            "Save it as CSV UTF-8 (or CSV with your system's code page).",
        )
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    if data.isascii():  # most exports: no need to decode the whole file to know
        return encoding, data[:1_000_000].decode("ascii")
    try:
        return encoding, data.decode(encoding)[:1_000_000]
    except UnicodeDecodeError:
        pass
    try:
        return "cp1252", data.decode("cp1252")[:1_000_000]
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            path,
            f"line {line}: byte 0x{data[exc.start]:02x} is neither UTF-8 nor cp1252 text "
            "(unknown encoding)",
            "Save the file as CSV UTF-8.",
        ) from None


def _sniff_separator(header: str) -> str:
    counts = {}
    for candidate in (";", "\t", ","):
        try:
            fields = next(csv.reader([header], delimiter=candidate))
        except csv.Error:
            fields = [header]
        counts[candidate] = len(fields) - 1
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] > 0 else ","


def _sniff_decimal(lines: list[str], separator: str) -> str:
    """`,` when the file writes decimal commas (never in a `,`-separated file), else `.`."""
    if separator == ",":
        return "."
    for line in lines:
        for field in line.split(separator):
            if _COMMA_DECIMAL.match(field.strip().strip('"')):
                return ","
    return "."


def _refuse_wrong_separator(path: Path, header: str, used: str, options: DatasetConfig) -> None:
    for other in (";", "\t", ","):
        if other != used and other in header:
            key = (
                "dataset.separator"
                if options.separator != "auto"
                else "the separator found in the header"
            )
            raise DatasetError(
                path,
                f"was read with {_SEPARATOR_NAMES[used]} as separator ({key}) but its header "
                f"is separated by {_SEPARATOR_NAMES[other]}, so every column ran into one",
                "Set dataset.separator: auto in config.yaml (or the separator the file uses).",
            )


def _trimmed_headers(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    names = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    refuse_repeated_headers(names, path)
    frame.columns = pd.Index(names)
    return frame


def to_numbers(
    values: pd.Series, path: Path | str, column: str, fmt: TableFormat | None = None
) -> pd.Series:
    """Strict conversion of a text column to floats, thousands separators allowed.

    A column with a decimal comma anywhere (in a file that is not `,`-separated) reads `.` as
    the thousands separator; otherwise `.` is the decimal point and `,` groups thousands.
    Empty cells become NaN; anything else that is not a number is refused with its line.
    """
    text = values.astype("string").str.strip().str.replace("\u00a0", "", regex=False)
    text = text.str.replace(" ", "", regex=False)
    comma_allowed = fmt is None or fmt.separator != ","
    decimal = "."
    if comma_allowed and (
        (fmt is not None and fmt.decimal == ",") or text.str.contains(r"\d,\d", na=False).any()
    ):
        decimal = ","
    blank = text.isna() | (text == "")
    good = text.str.match(_NUMBER[decimal].pattern, na=False) & text.str.contains(r"\d", na=False)
    bad = ~(good | blank)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        style = "decimal comma" if decimal == "," else "decimal point"
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is not a number "
            f"(this column is read with a {style})",
        )
    if decimal == ",":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        text = text.str.replace(",", "", regex=False)
    return pd.to_numeric(text.mask(blank), errors="coerce").astype(float)


def parse_dates(values: pd.Series, path: Path | str, column: str, dayfirst: bool) -> pd.Series:
    """Dates (at midnight) from ISO or day-first text, or from spreadsheet date cells.

    Without `dayfirst`, non-ISO dates are read day-first only when one of them has a day above
    12; when every one could be day- or month-first the file is refused; never month-first."""
    if pd.api.types.is_datetime64_any_dtype(values):
        _refuse_years(values.dt.year.to_numpy(), path, column, values)
        return values.dt.normalize()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        i = int(np.flatnonzero(codes < 0)[0])
        raise DatasetError(path, f"column {column!r}, line {i + 2}: the date is empty")
    iso = _iso_dates(uniques)
    if iso is not None:
        return pd.Series(iso[codes], index=values.index, name=values.name)
    parsed = [_one_date(u) for u in uniques]
    bad = [k for k, p in enumerate(parsed) if p is None]
    if bad:
        i = int(np.flatnonzero(codes == bad[0])[0])
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is not a date",
            DATES_HINT,
        )
    kinds = {p[0] for p in parsed if p is not None}
    if "dmy" in kinds:
        first_parts = np.array([p[1][0] for p in parsed if p is not None and p[0] == "dmy"])
        second_parts = np.array([p[1][1] for p in parsed if p is not None and p[0] == "dmy"])
        if not dayfirst:
            _check_order(path, column, values, codes, parsed, first_parts, second_parts)
    stamps = np.array(
        [_stamp(p, path, column, values, codes, k) for k, p in enumerate(parsed)],
        dtype="datetime64[ns]",
    )
    return pd.Series(stamps[codes], index=values.index, name=values.name)


def _iso_dates(uniques: Any) -> np.ndarray | None:
    """All the distinct values as YYYY-MM-DD dates in one vectorised parse, else None."""
    text = pd.Series(uniques)
    if not pd.api.types.is_string_dtype(text) or not text.str.len().eq(10).all():
        return None
    try:
        parsed = pd.to_datetime(text, format="%Y-%m-%d")
    except (ValueError, TypeError):
        return None
    if ((parsed.dt.year < MIN_YEAR) | (parsed.dt.year > MAX_YEAR)).any():
        return None  # refused, with its line, by the one-by-one parse
    return parsed.to_numpy(dtype="datetime64[ns]")


def _one_date(value: object) -> tuple[str, tuple[int, int, int]] | None:
    if isinstance(value, datetime.date | np.datetime64):
        stamp = pd.Timestamp(value)  # a spreadsheet date cell
        return ("iso", (stamp.year, stamp.month, stamp.day))
    text = str(value).strip()
    iso = _ISO.match(text)
    if iso:
        return ("iso", (int(iso[1]), int(iso[2]), int(iso[3])))
    dmy = _DMY.match(text)
    if dmy:
        return ("dmy", (int(dmy[1]), int(dmy[3]), int(dmy[4])))
    return None


def _check_order(
    path: Path | str,
    column: str,
    values: pd.Series,
    codes: np.ndarray,
    parsed: list[tuple[str, tuple[int, int, int]] | None],
    first: np.ndarray,
    second: np.ndarray,
) -> None:
    if (first > 12).any() and (second <= 12).all():
        return  # only day-first fits these dates
    k = next(k for k, p in enumerate(parsed) if p is not None and p[0] == "dmy")
    i = int(np.flatnonzero(codes == k)[0])
    if (second > 12).any():
        j = int(np.argmax(second > 12))
        shown = [p for p in parsed if p is not None and p[0] == "dmy"][j]
        raise DatasetError(
            path,
            f"column {column!r}: dates such as {shown[1][0]:02d}/{shown[1][1]:02d}/"
            f"{shown[1][2]} are month-first, which hhforecast never reads",
            "Save the dates as YYYY-MM-DD (or dd/mm/yyyy with dataset.dayfirst: true).",
        )
    raise DatasetError(
        path,
        f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} could be day-first or "
        "month-first, and no date in the file tells which",
        "If the dates are dd/mm/yyyy, set dataset.dayfirst: true in config.yaml (or pass "
        "--dayfirst); otherwise save them as YYYY-MM-DD.",
    )


def _stamp(
    parsed: tuple[str, tuple[int, int, int]] | None,
    path: Path | str,
    column: str,
    values: pd.Series,
    codes: np.ndarray,
    k: int,
) -> np.datetime64:
    assert parsed is not None
    kind, (a, b, c) = parsed
    year, month, day = (a, b, c) if kind == "iso" else (c, b, a)
    if not MIN_YEAR <= year <= MAX_YEAR:
        _refuse_years(np.where(codes == k, year, MIN_YEAR), path, column, values)
    try:
        return np.datetime64(pd.Timestamp(year=year, month=month, day=day).to_datetime64())
    except ValueError:
        i = int(np.flatnonzero(codes == k)[0])
        order = "YYYY-MM-DD" if kind == "iso" else "dd/mm/yyyy"
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is not a valid "
            f"{order} date",
            DATES_HINT,
        ) from None


def _refuse_years(years: np.ndarray, path: Path | str, column: str, values: pd.Series) -> None:
    """Dates outside MIN_YEAR..MAX_YEAR are typing mistakes, and past 2262 they would wrap
    around in pandas' nanosecond timestamps: refused with the first such line."""
    outside = (years < MIN_YEAR) | (years > MAX_YEAR)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DatasetError(
            path,
            f"column {column!r}, line {i + 2}: {shown_value(values.iloc[i])} is outside the "
            f"years {MIN_YEAR} to {MAX_YEAR} that hhforecast reads",
            "Check the year.",
        )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
