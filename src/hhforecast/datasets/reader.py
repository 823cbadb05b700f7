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

Date columns are parsed by datasets/dates.py (ISO or day-first, never month-first, 1900 to
2200). `.xlsx` files are read through pandas with the python-calamine engine (see docs/data.md).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path

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
from hhforecast.datasets.dates import parse_dates, written_dayfirst
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
_DECODE_CHUNK = 1 << 22
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
            if written_dayfirst(frame[column]):
                fmt = replace(fmt, dayfirst=True)
            frame[column] = parse_dates(frame[column], path, column, options.dayfirst)
    return frame, fmt


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
        return encoding, _decoded_head(data, encoding)
    except UnicodeDecodeError:
        pass
    try:
        return "cp1252", _decoded_head(data, "cp1252")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            path,
            f"line {line}: byte 0x{data[exc.start]:02x} is neither UTF-8 nor cp1252 text "
            "(unknown encoding)",
            "Save the file as CSV UTF-8.",
        ) from None


def _decoded_head(data: bytes, encoding: str) -> str:
    """The first million characters, the whole file checked a chunk at a time (decoded at
    once, 200 MB of text can take 800 MB)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    head: list[str] = []
    kept = 0
    for offset in range(0, len(data), _DECODE_CHUNK):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
        try:
            text = decoder.decode(data[offset : offset + _DECODE_CHUNK], final=False)
        except UnicodeDecodeError as exc:
            start = offset - pending + exc.start
            raise UnicodeDecodeError(encoding, data, start, start + 1, exc.reason) from None
        if kept < 1_000_000:
            head.append(text[: 1_000_000 - kept])
            kept += len(head[-1])
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        start = len(data) - len(decoder.getstate()[0]) + exc.start
        raise UnicodeDecodeError(encoding, data, start, start + 1, exc.reason) from None
    return "".join(head)


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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
