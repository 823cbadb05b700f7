"""Served answers turned into prediction-log rows (the table's column order), fast.

The service's write cycle (prediction_log.py) calls `events_rows` on everything queued since the
last cycle; its work per row is most of what the log costs the service (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from hhforecast import _json
from hhforecast.watch.prediction_store import COLUMNS, PredictionRecord, horizon_weeks, week_of

__all__ = [
    "PredictionEventLike",
    "event_records",
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


def rows_or_none(event: Any) -> list[tuple[Any, ...]]:
    try:
        return [record.row() for record in event_records(event)]
    except Exception:
        return []


class PredictionEventLike(Protocol):
    """What the service hands to its `on_prediction` hook (serving.state.PredictionEvent)."""

    # Read-only members: the service's event is an immutable named tuple.
    @property
    def at(self) -> float: ...

    @property
    def version(self) -> str: ...

    @property
    def variant(self) -> str: ...

    @property
    def features(self) -> Sequence[str]: ...

    @property
    def x(self) -> np.ndarray: ...

    @property
    def predictions(self) -> np.ndarray: ...

    @property
    def lower(self) -> np.ndarray: ...

    @property
    def upper(self) -> np.ndarray: ...


def event_records(event: PredictionEventLike) -> list[PredictionRecord]:
    """One PredictionRecord per row of a served answer."""
    logged_at = datetime.fromtimestamp(event.at, UTC)
    weeks = getattr(event, "weeks", None)
    source = getattr(event, "source", None) or "api"
    last_week = getattr(event, "last_trained_week", None)
    return [
        PredictionRecord(
            version=event.version,
            variant=event.variant,
            inputs=dict(zip(event.features, values, strict=True)),
            hh_pred=hh,
            hh_lower=lower,
            hh_upper=upper,
            week=str(weeks[i])[:10] if weeks is not None and weeks[i] is not None else None,
            logged_at=logged_at,
            source=source,
            last_trained_week=last_week,
        )
        for i, (values, hh, lower, upper) in enumerate(
            zip(
                event.x.tolist(),
                event.predictions.tolist(),
                event.lower.tolist(),
                event.upper.tolist(),
                strict=True,
            )
        )
    ]


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


RunKey = tuple[str, str, tuple[str, ...], str, str | None]


def events_rows(events: Sequence[PredictionEventLike]) -> list[tuple[Any, ...]]:
    """The log rows of many served answers, in order, built a run of answers at a time.

    Consecutive undated answers of one model are stacked and their times formatted by NumPy in
    one call: the writer thread's work per row is most of what the log costs the service.
    """
    rows: list[tuple[Any, ...]] = []
    for key, same in itertools.groupby(events, key=_run_key):
        if key is None:  # answers that name their weeks: row by row
            rows.extend(record.row() for event in same for record in event_records(event))
            continue
        run = list(same)
        version, variant, features, source, last_week = key
        counts = [len(event.predictions) for event in run]
        at = np.repeat(np.array([event.at for event in run], dtype=np.float64), counts)
        template, order = _inputs_template(features)
        x = np.concatenate([event.x for event in run])[:, order]
        stamps = np.datetime_as_string(np.round(at * 1e6).astype("datetime64[us]"), unit="us")
        weeks = [_week_of_day(day) for day in (at // 86_400).astype(np.int64).tolist()]
        rows.extend(
            zip(
                [stamp + "+00:00" for stamp in stamps.tolist()],
                weeks,
                itertools.repeat(version),
                itertools.repeat(variant),
                [template % tuple(values) for values in x.tolist()],
                np.concatenate([event.predictions for event in run]).tolist(),
                np.concatenate([event.lower for event in run]).tolist(),
                np.concatenate([event.upper for event in run]).tolist(),
                itertools.repeat(source),
                [_horizon(week, last_week) for week in weeks],
                strict=False,
            )
        )
    return rows


def _run_key(event: PredictionEventLike) -> RunKey | None:
    """Answers with the same key are stacked together; dated answers (None) are not."""
    if getattr(event, "weeks", None) is not None:
        return None
    return (
        event.version,
        event.variant,
        tuple(event.features),
        getattr(event, "source", None) or "api",
        getattr(event, "last_trained_week", None),
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
        if _is_row(row):
            rows.append(tuple(row))
        else:
            skipped += 1
    return rows, skipped


def _is_row(row: Any) -> bool:
    if not isinstance(row, list) or len(row) != len(COLUMNS):
        return False
    texts = (row[0], row[1], row[2], row[3], row[4], row[8])
    numbers = (row[5], row[6], row[7], row[9])
    return (
        all(isinstance(value, str) for value in texts)
        and isinstance(row[5], int | float)
        and all(
            value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            for value in numbers
        )
    )
