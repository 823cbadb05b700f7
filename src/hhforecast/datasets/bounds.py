"""Bounds checked on a table before anything parses it: the reader's first step.

A few hundred hostile bytes must not become gigabytes. A CSV is measured as bytes (size, longest
line, columns of the header, rows times columns) before pandas sees it. An .xlsx is a zip of XML
parts: its unpacked sizes are bounded, and the cells of every sheet are counted by a streaming
parse, because the spreadsheet engine allocates the sheet's whole extent, from A1 to its
farthest cell, at once (one cell at XFD1048576 asks for 512 GiB and aborts the process).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import ParseError, iterparse

import numpy as np

from hhforecast.config import ReadingLimits, shown_value
from hhforecast.errors import DatasetError

__all__ = ["check_csv_bytes", "check_file_size", "check_workbook", "refuse_repeated_headers"]

LIMITS_HINT = "Split the file, or raise dataset.limits in config.yaml (docs/configuration.md)."
_MAX_PARTS = 10_000
_CHUNK = 1 << 22
_CELL_REF = re.compile(r"^([A-Z]{1,3})([0-9]{1,7})$")
_SHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$", re.IGNORECASE)


def check_file_size(path: Path, limits: ReadingLimits) -> None:
    """Refuse a file larger than dataset.limits.max_file_bytes, before it is read."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise DatasetError(
            path,
            f"the file is {size:,} bytes; at most {limits.max_file_bytes:,} are read "
            "(dataset.limits.max_file_bytes)",
            LIMITS_HINT,
        )


def check_csv_bytes(data: bytes, header: list[str], path: Path, limits: ReadingLimits) -> None:
    """Refuse a CSV whose longest line, header or rows times columns pass the limits."""
    longest, line = _longest_line(data)
    if longest > limits.max_line_bytes:
        raise DatasetError(
            path,
            f"line {line} is {longest:,} bytes long; at most {limits.max_line_bytes:,} "
            "(dataset.limits.max_line_bytes)",
            LIMITS_HINT,
        )
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    _check_extent(path, lines, len(header), limits, "the file")


def _longest_line(data: bytes) -> tuple[int, int]:
    """The longest line's length in bytes and its number (1-based), found chunk by chunk so
    that a file of nothing but newlines costs no more memory than any other."""
    view = np.frombuffer(data, dtype=np.uint8)
    longest, longest_line, start, lines_before = 0, 1, 0, 0
    for offset in range(0, len(view), _CHUNK):
        ends = np.flatnonzero(view[offset : offset + _CHUNK] == 10) + offset
        if len(ends):
            lengths = np.diff(ends, prepend=start - 1) - 1
            i = int(np.argmax(lengths))
            if lengths[i] > longest:
                longest, longest_line = int(lengths[i]), lines_before + i + 1
            start, lines_before = int(ends[-1]) + 1, lines_before + len(ends)
    if len(view) - start > longest:  # the last line, without a newline
        longest, longest_line = len(view) - start, lines_before + 1
    return longest, longest_line


def _check_extent(path: Path, rows: int, columns: int, limits: ReadingLimits, what: str) -> None:
    if columns > limits.max_columns:
        raise DatasetError(
            path,
            f"{what} has {columns:,} columns; at most {limits.max_columns:,} "
            "(dataset.limits.max_columns)",
            LIMITS_HINT,
        )
    if rows * columns > limits.max_cells:
        raise DatasetError(
            path,
            f"{what} spans {rows:,} rows by {columns:,} columns, {rows * columns:,} cells; at "
            f"most {limits.max_cells:,} (dataset.limits.max_cells)",
            LIMITS_HINT,
        )


def check_workbook(path: Path, limits: ReadingLimits) -> None:
    """Refuse an .xlsx whose unpacked parts or sheets pass the limits, before it is parsed."""
    check_file_size(path, limits)
    try:
        with zipfile.ZipFile(path) as workbook:
            parts = workbook.infolist()
            if len(parts) > _MAX_PARTS:
                raise DatasetError(path, f"the workbook holds {len(parts):,} parts", LIMITS_HINT)
            unpacked = sum(part.file_size for part in parts)
            if unpacked > limits.max_file_bytes:
                raise DatasetError(
                    path,
                    f"the workbook unpacks to {unpacked:,} bytes; at most "
                    f"{limits.max_file_bytes:,} (dataset.limits.max_file_bytes)",
                    LIMITS_HINT,
                )
            budget = [limits.max_file_bytes]
            for part in parts:
                with workbook.open(part) as stream:
                    capped = _Capped(stream, budget, path)
                    if not _SHEET_PART.match(part.filename):
                        while capped.read():  # counted: a part may lie about its size
                            pass
                        continue
                    rows, columns = _sheet_extent(capped, path)
                where = f"sheet {Path(part.filename).stem!r}"
                _check_extent(path, rows, columns, limits, where)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise DatasetError(path, f"not a readable .xlsx workbook ({exc})") from None
    except ParseError as exc:
        raise DatasetError(
            path, f"not a readable .xlsx workbook (broken sheet XML: {exc})"
        ) from None


class _Capped:
    """A read-only stream that refuses to yield more than the budget left (zip parts can lie
    about their unpacked size)."""

    def __init__(self, stream: IO[bytes], budget: list[int], path: Path) -> None:
        self._stream, self._budget, self._path = stream, budget, path

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(1 << 16 if size < 0 else min(size, 1 << 16))
        self._budget[0] -= len(chunk)
        if self._budget[0] < 0:
            raise DatasetError(
                self._path,
                "the workbook unpacks to more bytes than dataset.limits.max_file_bytes",
                LIMITS_HINT,
            )
        return chunk


def _sheet_extent(stream: _Capped, path: Path) -> tuple[int, int]:
    """Rows and columns from A1 to the farthest cell holding anything, streamed."""
    max_row = max_column = row = column = 0
    rows_parent = None
    for event, element in iterparse(stream, events=("start", "end")):
        tag = element.tag.rpartition("}")[2]
        if event == "start":
            if tag == "sheetData":
                rows_parent = element
            elif tag == "row":
                row = int(element.get("r") or row + 1)
                column = 0
            elif tag == "c":
                ref = element.get("r")
                if ref:
                    found = _CELL_REF.match(ref)
                    if found is None:
                        raise DatasetError(path, f"not a readable .xlsx workbook (cell {ref!r})")
                    column = _column_number(found[1])
                    row = int(found[2])
                else:
                    column += 1
            continue
        if tag == "c" and len(element):
            max_row, max_column = max(max_row, row), max(max_column, column)
        elif tag == "row" and rows_parent is not None:
            rows_parent.clear()  # keep memory flat over a long sheet
    return max_row, max_column


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


def refuse_repeated_headers(names: list[Any], path: Path) -> None:
    """Refuse a header that names a column twice (pandas would rename one `name.1`)."""
    seen: set[str] = set()
    repeated = []
    for name in (str(n).strip().lstrip("\ufeff") for n in names):
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        shown = ", ".join(shown_value(name) for name in repeated[:5])
        raise DatasetError(
            path,
            f"the header names {'column' if len(repeated) == 1 else 'columns'} {shown} twice",
            "Rename or remove the repeated column(s): hhforecast will not guess which is meant.",
        )
