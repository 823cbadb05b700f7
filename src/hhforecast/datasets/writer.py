"""The one writer of every CSV the product hands to a user: in the user's style, and safe to open.

A planner in Brazil reads and writes `;`-separated files with decimal commas and dd/mm/yyyy
dates; a file written back with `,` and decimal points opens as one column of text in their
Excel. So an output is written in the style its input was read in (`input`), or in a named
style: `br` (`;`, decimal comma, dd/mm/yyyy, UTF-8 with BOM so Excel sees the accents) or `intl`
(`,`, decimal point, ISO dates, UTF-8).

Cells a spreadsheet would run as a formula (text starting with `=`, `+`, `-`, `@`, tab or
carriage return) are written with a leading `'`, as OWASP recommends against CSV injection;
numbers stay numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hhforecast._fs import atomic_write_bytes
from hhforecast.datasets.reader import TableFormat

__all__ = [
    "CSV_STYLES",
    "CsvStyle",
    "csv_bytes",
    "csv_style",
    "neutralise_formulas",
    "whole_numbers_as_integers",
    "write_csv",
]

CSV_STYLES = ("input", "br", "intl")
CsvStyleName = Literal["input", "br", "intl"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?$")


@dataclass(frozen=True)
class CsvStyle:
    """How a CSV is written: separator, decimal mark, date order and encoding."""

    separator: str = ","
    decimal: str = "."
    dayfirst: bool = False
    encoding: str = "utf-8"


BR = CsvStyle(";", ",", True, "utf-8-sig")
INTL = CsvStyle(",", ".", False, "utf-8")


def csv_style(name: str, read_as: TableFormat | None = None) -> CsvStyle:
    """The style called `name`; `input` is the style `read_as` was read in (intl without one,
    or for an .xlsx input)."""
    if name == "br":
        return BR
    if name == "intl" or read_as is None or read_as.encoding == "xlsx":
        return INTL
    separator = read_as.separator or ","
    decimal = read_as.decimal if separator != "," else "."
    return CsvStyle(separator, decimal, read_as.dayfirst, read_as.encoding)


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and header names cannot run as a spreadsheet formula."""
    out = frame.copy()
    out.columns = pd.Index([_safe_cell(c) for c in out.columns])
    for column in out.columns:
        if _is_text(out[column]):
            out[column] = out[column].map(_safe_cell, na_action="ignore")
    return out


def whole_numbers_as_integers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy in which each of `columns` holding only whole numbers (an input's `acft` or
    `Cycles`, read as floats) is written as it was read: 156, not 156.0 or 156,0. Other
    columns, the forecasts among them, keep their decimals."""
    out = frame.copy()
    for column in columns:
        if column not in out.columns or not pd.api.types.is_float_dtype(out[column]):
            continue
        values = out[column].dropna().to_numpy(float)
        if (
            len(values)
            and np.isfinite(values).all()
            and (np.abs(values) < 2**53).all()  # exact as integers
            and (values == np.round(values)).all()
        ):
            out[column] = out[column].astype("Int64")
    return out


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)


def _safe_cell(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    if _PLAIN_NUMBER.match(value):
        return value  # "-3" or "+2,5" is a number to a spreadsheet, not a formula
    return "'" + value


def csv_bytes(frame: pd.DataFrame, style: CsvStyle) -> bytes:
    """The frame as CSV bytes in `style`, formulas neutralised; date columns (and text columns
    of ISO dates) in the style's date order."""
    safe = neutralise_formulas(frame)
    if style.dayfirst:
        for column in safe.columns:
            values = safe[column]
            dates = _is_text(values) and len(values) > 0
            if dates and values.astype("string").str.fullmatch(_ISO_DATE).all():
                safe[column] = pd.to_datetime(values, format="%Y-%m-%d")
    text = safe.to_csv(
        index=False,
        sep=style.separator,
        decimal=style.decimal,
        date_format="%d/%m/%Y" if style.dayfirst else "%Y-%m-%d",
        lineterminator="\n",
    )
    try:
        return text.encode(style.encoding)
    except UnicodeEncodeError:  # a name the code page lacks: UTF-8 with BOM still opens right
        return text.encode("utf-8-sig")


def write_csv(frame: pd.DataFrame, path: Path, style: CsvStyle = INTL) -> bytes:
    """Write the frame atomically as a CSV in `style`; returns the bytes written."""
    data = csv_bytes(frame, style)
    atomic_write_bytes(path, data)
    return data
