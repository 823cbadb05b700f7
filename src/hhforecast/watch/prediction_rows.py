"""Served answers (`PredictionEvent`) turned into prediction-log rows (the table's column order).

The service hands every answer to its `on_prediction` hook as a `PredictionEvent`; the write
cycle (prediction_log.py) calls `events_rows`, the one builder of the service's rows, on
everything queued since the last cycle. Its work per row is most of what the log costs the
service (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, NamedTuple

import numpy as np

from hhforecast import _json
from hhforecast.watch.prediction_store import COLUMNS, horizon_weeks, week_of

__all__ = [
    "PredictionEvent",
    "events_rows",
    "kept_rows",
    "rows_or_none",
    "split_answer",
]


def split_answer(event: Any, first: int) -> tuple[Any, Any] | None:
    """The answer's first `first` rows and the others, as two answers; None when the answer
    cannot be split (it is then taken whole)."""
    replace = getattr(event, "_replace", None)
    if replace is None or first <= 0:
        return None
    weeks = getattr(event, "weeks", None)

    def rows(part: slice) -> Any:
        return replace(
            x=event.x[part],
            predictions=event.predictions[part],
            lower=event.lower[part],
            upper=event.upper[part],
            weeks=weeks[part] if weeks is not None else None,
        )

    return rows(slice(None, first)), rows(slice(first, None))


def rows_or_none(event: PredictionEvent) -> list[tuple[Any, ...]]:
    """The answer's rows, or none when it is malformed (it is then counted as dropped)."""
    try:
        return events_rows([event])
    except Exception:
        return []


class PredictionEvent(NamedTuple):
    """One answered prediction request, as the service hands it to `on_prediction`.

    A named tuple: it is built on every request, and costs a fifth of a frozen dataclass.
    """

    at: float
    """Unix time of the answer."""
    version: str
    variant: str
    features: Sequence[str]
    x: np.ndarray
    """Rows of raw features, shape [n, len(features)]."""
    predictions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    weeks: Sequence[str | None] | None = None
    """The week each row forecasts (the request's optional `date`), when the caller said."""
    source: str = "api"
    """Who asked: "api" (POST /api/predict) or "web" (the page)."""
    last_trained_week: str | None = None
    """The last week of the version's dataset, from which the horizon is counted."""
    challenger: Any = None
    """The challenger served beside production (a VariantModel), or None: its forecasts of the
    same rows are computed when the rows are written, never on the request path."""


@functools.lru_cache(maxsize=16)
def _inputs_template(features: tuple[str, ...]) -> tuple[str, tuple[int, ...]]:
    """A %-format giving json.dumps(inputs, sort_keys=True), and the value order it takes."""
    names = sorted(features)
    # repr() of a finite float is its JSON text, so this matches json.dumps byte for byte.
    template = "{" + ", ".join(f"{json.dumps(name)}: %r" for name in names) + "}"
    return template, tuple(features.index(name) for name in names)


@functools.lru_cache(maxsize=64)
def _week_of_day(day_number: int) -> str:
    return week_of(date(1970, 1, 1) + timedelta(days=day_number))


@functools.lru_cache(maxsize=64)
def _horizon(week: str, last_week: str | None) -> int | None:
    return horizon_weeks(week, last_week)


RunKey = tuple[str, str, tuple[str, ...], str, str | None, int]


def events_rows(events: Sequence[PredictionEvent]) -> list[tuple[Any, ...]]:
    """The log rows of many served answers, in order, built a run of answers at a time.

    Consecutive answers of one model are stacked and their times formatted by NumPy in one
    call: the writer's work per row is most of what the log costs the service. A row's week is
    the week of its `date` when the request named one, else the week it was answered in.
    """
    rows: list[tuple[Any, ...]] = []
    for key, same in itertools.groupby(events, key=_run_key):
        run = list(same)
        version, variant, features, source, last_week, _ = key
        counts = [len(event.predictions) for event in run]
        at = np.repeat(np.array([event.at for event in run], dtype=np.float64), counts)
        template, order = _inputs_template(features)
        x = np.concatenate([event.x for event in run])[:, order]
        stamps = np.datetime_as_string(np.round(at * 1e6).astype("datetime64[us]"), unit="us")
        weeks = [_week_of_day(day) for day in (at // 86_400).astype(np.int64).tolist()]
        if any(event.weeks is not None for event in run):
            named = [
                week
                for event, n in zip(run, counts, strict=True)
                for week in _named_weeks(event, n)
            ]
            weeks = [
                week if day is None else _week_of_date(day)
                for week, day in zip(weeks, named, strict=True)
            ]
        values = (
            np.concatenate([event.predictions for event in run]).tolist(),
            np.concatenate([event.lower for event in run]).tolist(),
            np.concatenate([event.upper for event in run]).tolist(),
        )
        if any(len(column) != len(at) for column in (x, *values)):
            raise ValueError("an answer has fewer or more input rows, bounds than forecasts")
        times = [stamp + "+00:00" for stamp in stamps.tolist()]
        inputs = [template % tuple(row) for row in x.tolist()]
        rows.extend(
            zip(
                times,
                weeks,
                itertools.repeat(version),
                itertools.repeat(variant),
                inputs,
                *values,
                itertools.repeat(source),
                [_horizon(week, last_week) for week in weeks],
                itertools.repeat("production"),
            )
        )
        challenger = run[0].challenger
        if challenger is not None:
            raw = np.concatenate([event.x for event in run])
            rows.extend(_challenger_rows(challenger, features, raw, times, weeks, inputs, source))
    return rows


def _challenger_rows(
    challenger: Any,
    features: tuple[str, ...],
    x: np.ndarray,
    times: list[str],
    weeks: list[str],
    inputs: list[str],
    source: str,
) -> list[tuple[Any, ...]]:
    """The challenger's forecasts of the rows production answered, as log rows (a NumPy
    forward pass over the whole run); none when it cannot forecast them."""
    from hhforecast.modeling.forecast import last_trained_week

    try:
        columns = [features.index(name) for name in challenger.features]
        with np.errstate(all="ignore"):
            predictions = challenger.predict(x[:, columns])
        lower, upper = challenger.interval(predictions)
    except Exception:  # the answer was production's; a challenger failure loses only its rows
        return []
    last_week = last_trained_week(challenger)
    finite = np.isfinite(predictions) & np.isfinite(lower) & np.isfinite(upper)
    return [
        (
            at,
            week,
            challenger.version,
            challenger.variant,
            given,
            hh,
            lo,
            hi,
            source,
            _horizon(week, last_week),
            "challenger",
        )
        for at, week, given, hh, lo, hi, ok in zip(
            times,
            weeks,
            inputs,
            predictions.tolist(),
            lower.tolist(),
            upper.tolist(),
            finite.tolist(),
            strict=True,
        )
        if ok
    ]


def _named_weeks(event: PredictionEvent, rows: int) -> Sequence[str | None]:
    if event.weeks is None:
        return [None] * rows
    if len(event.weeks) != rows:
        raise ValueError(f"{len(event.weeks)} weeks named for {rows} rows")
    return event.weeks


@functools.lru_cache(maxsize=256)
def _week_of_date(day: str) -> str:
    return week_of(str(day)[:10])


def _run_key(event: PredictionEvent) -> RunKey:
    """Answers with the same key are stacked together."""
    return (
        event.version,
        event.variant,
        tuple(event.features),
        event.source or "api",
        event.last_trained_week,
        id(event.challenger),
    )


def kept_rows(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of a side file (one JSON list a line, in COLUMNS order) and how many non-empty
    lines were not such a row (torn by a killed process, or edited by hand) and skipped."""
    rows: list[tuple[Any, ...]] = []
    skipped = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = _json.loads(line)
        except ValueError:  # JSONDecodeError, JSONDepthError, UnicodeDecodeError
            skipped += 1
            continue
        if isinstance(row, list) and len(row) == len(COLUMNS) - 1:
            row = [*row, "production"]  # kept before forecasts had a role
        if _is_row(row):
            rows.append(tuple(row))
        else:
            skipped += 1
    return rows, skipped


def _is_row(row: Any) -> bool:
    if not isinstance(row, list) or len(row) != len(COLUMNS):
        return False
    texts = (row[0], row[1], row[2], row[3], row[4], row[8], row[10])
    numbers = (row[5], row[6], row[7], row[9])
    return (
        all(isinstance(value, str) for value in texts)
        and isinstance(row[5], int | float)
        and all(
            value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            for value in numbers
        )
    )
