"""The prediction log's rows, the interface its two backends share, and the judged forecast.

A log is SQLite (a file, `sqlite_store.py`) or PostgreSQL (a URL, `postgres_store.py`);
`log_store.open_prediction_log` picks by `monitoring.database`. Both keep the same two tables:
`predictions` (every forecast as logged: time, target week, version, variant, inputs, forecast
and interval, where it came from, how many weeks ahead it was, and `asked`, how many forecasts
the row stands for) and `judged` (one row per week, version, variant, source and horizon: the
forecast `hhforecast monitor` judges, and how many were asked). `judged` is kept up to date in the
transaction that writes the forecasts, so `monitor` reads a few rows however long the log.

The judged forecast of a key is the latest issued before its week began (what planners had
when the week started); when none was issued before, the latest issued at all. Ties go to the
row written last. `compact()` keeps only those rows, each with its count.

The week a forecast is for is the given ``date`` (any day of that week) when there is one, else
the week of the time it was logged. Weeks start on Monday, like the dataset's ``date`` column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

if TYPE_CHECKING:
    from hhforecast.modeling.forecast import PlanForecast

__all__ = [
    "ACTUALS_UPSERT",
    "COLUMNS",
    "HOW_TO_LOG",
    "ROLES",
    "SCHEMA_VERSION",
    "SOURCES",
    "CompactResult",
    "LogWriteError",
    "PredictionLogError",
    "PredictionRecord",
    "PredictionStore",
    "first_ranked",
    "horizon_weeks",
    "judged_batch",
    "week_of",
]

SOURCES = ("api", "web", "cli")
"""Where a logged forecast came from."""
SCHEMA_VERSION = 4
"""1: the first layout; 2: `source` and `horizon` added; 3: `asked` and the `judged` table;
4: `role` (a forecast of production or of the challenger beside it) and the `actuals` table."""
ROLES = ("production", "challenger")
"""Whose forecast a row is: the answer given (production's), or the challenger's beside it."""
COLUMNS = (
    "logged_at",
    "week",
    "version",
    "variant",
    "inputs",
    "hh_pred",
    "hh_lower",
    "hh_upper",
    "source",
    "horizon",
    "role",
)
"""The columns a row gives (PredictionRecord.row()), in order."""

KEY_SQL = (
    "week || '|' || version || '|' || variant || '|' || source || '|' || "
    "COALESCE(CAST(horizon AS TEXT), '') || '|' || role"
)
"""The judged key of a row in SQL; `judged_key` gives the same text in Python."""
RANK_SQL = (
    "(CASE WHEN logged_at < week THEN '1' ELSE '0' END) || '|' || logged_at || '|' || {padded_id}"
)
"""A text that sorts the rows of a key as the judged rule does (greatest is judged)."""
JUDGED_UPSERT = (
    "INSERT INTO judged (key, prediction_id, rank, asked) VALUES {values} "
    "ON CONFLICT (key) DO UPDATE SET asked = judged.asked + excluded.asked, "
    "prediction_id = CASE WHEN excluded.rank > judged.rank "
    "THEN excluded.prediction_id ELSE judged.prediction_id END, "
    "rank = CASE WHEN excluded.rank > judged.rank THEN excluded.rank ELSE judged.rank END"
)
KEYS_PER_UPSERT = 200
"""Judged keys per upsert statement (4 bound values each: within SQLite's oldest limit of 999)."""
JUDGED_SELECT = (
    "SELECT p.id, " + ", ".join(f"p.{c}" for c in COLUMNS) + ", j.asked "
    "FROM judged j JOIN predictions p ON p.id = j.prediction_id ORDER BY p.week, p.id"
)
REBUILD_JUDGED = (
    "INSERT INTO judged (key, prediction_id, rank, asked) "
    "SELECT key, id, rank, total FROM (SELECT {key} AS key, id, {rank} AS rank, "
    "SUM(asked) OVER (PARTITION BY {key}) AS total, "
    "ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {rank} DESC) AS n FROM predictions) ranked "
    "WHERE n = 1"
)
"""Fill `judged` from the rows (a log upgraded from a layout without it)."""
COMPACT = (
    "UPDATE predictions SET asked = (SELECT j.asked FROM judged j WHERE j.prediction_id = "
    "predictions.id) WHERE id IN (SELECT prediction_id FROM judged)",
    "DELETE FROM predictions WHERE id NOT IN (SELECT prediction_id FROM judged)",
)
"""Keep only the judged rows, each with the count of its key."""
ACTUALS_UPSERT = (
    "INSERT INTO actuals (week, hh, recorded_at, source) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (week) DO UPDATE SET hh = excluded.hh, recorded_at = excluded.recorded_at, "
    "source = excluded.source"
)
"""A realised week kept, the newest value winning ({p}: the driver's placeholder)."""


HOW_TO_LOG = (
    "Forecasts are logged by `hhforecast serve` (every answer) and by "
    "`hhforecast forecast --plan FILE` (every week of the plan); monitoring.database in the "
    "config names the log."
)
"""How a log gets its first forecasts: said wherever a missing log is reported."""


class PredictionLogError(HHForecastError):
    """The prediction log is missing or unreadable, or a monitor option is wrong."""

    exit_code = EXIT_BAD_INPUT


class LogWriteError(Exception):
    """The log cannot take rows now (locked, unreachable, read-only, not a database): nothing
    of them was written; the message is the backend's."""


def week_of(day: date | datetime | str) -> str:
    """The Monday (YYYY-MM-DD) of the week holding `day`."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day[:10])
        except ValueError:
            raise PredictionLogError(f"{day!r} is not a date (use YYYY-MM-DD)") from None
    if isinstance(day, datetime):
        day = day.date()
    return (day - timedelta(days=day.weekday())).isoformat()


def horizon_weeks(week: str, last_trained_week: str | None) -> int | None:
    """Weeks from the last week a version trained on to the week forecast (1 = the next)."""
    if not last_trained_week:
        return None
    target = date.fromisoformat(week_of(week))
    last = date.fromisoformat(week_of(last_trained_week))
    return (target - last).days // 7


@dataclass(frozen=True)
class PredictionRecord:
    """One forecast, as logged."""

    version: str
    variant: str
    inputs: Mapping[str, float]
    hh_pred: float
    hh_lower: float | None = None
    hh_upper: float | None = None
    week: str | None = None
    logged_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = "api"
    last_trained_week: str | None = None
    """The last week of the version's dataset: the horizon is counted from it."""
    role: str = "production"

    def row(self) -> tuple[Any, ...]:
        """The values in the table's column order (COLUMNS)."""
        week = week_of(self.week) if self.week else week_of(self.logged_at)
        return (
            self.logged_at.isoformat(timespec="microseconds"),
            week,
            self.version,
            self.variant,
            json.dumps(dict(self.inputs), sort_keys=True),
            float(self.hh_pred),
            None if self.hh_lower is None else float(self.hh_lower),
            None if self.hh_upper is None else float(self.hh_upper),
            self.source,
            horizon_weeks(week, self.last_trained_week),
            self.role,
        )


def judged_key(row: tuple[Any, ...]) -> str:
    """Week, version, variant, source, horizon and role of a row, as KEY_SQL writes them."""
    horizon = row[9]
    shown = "" if horizon is None else int(horizon)
    return f"{row[1]}|{row[2]}|{row[3]}|{row[8]}|{shown}|{row[10]}"


def judged_rank(row: tuple[Any, ...], row_id: int) -> str:
    """The text RANK_SQL gives the row: issued before its week first, then the latest."""
    logged_at = str(row[0])
    return f"{'1' if logged_at < str(row[1]) else '0'}|{logged_at}|{row_id:020d}"


def first_ranked(judged: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """For each value of `keys`, the forecast of `judged` (week, logged_at, id columns) that
    ranks first by the same rule: issued before its week, then the latest, then written last."""
    ranked = judged.assign(_before=judged["logged_at"].astype(str) < judged["week"])
    ranked = ranked.sort_values(["_before", "logged_at", "id"])
    return ranked.drop_duplicates(keys, keep="last").drop(columns=["_before"])


def judged_batch(rows: list[tuple[Any, ...]], ids: list[int]) -> list[tuple[str, int, str, int]]:
    """(key, id, rank, count) of each key's judged row among `rows` (written with `ids`),
    sorted by key: writers that take row locks in the same order cannot deadlock."""
    best: dict[str, tuple[int, str, int]] = {}
    for row, row_id in zip(rows, ids, strict=True):
        key, rank = judged_key(row), judged_rank(row, row_id)
        held = best.get(key)
        if held is None:
            best[key] = (row_id, rank, 1)
        elif rank > held[1]:
            best[key] = (row_id, rank, held[2] + 1)
        else:
            best[key] = (held[0], held[1], held[2] + 1)
    return [(key, *best[key]) for key in sorted(best)]


@dataclass(frozen=True)
class CompactResult:
    """What `log compact` did: rows before and after, and the forecasts they stand for."""

    location: str
    rows_before: int
    rows_after: int
    forecasts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.location,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "rows_removed": self.rows_before - self.rows_after,
            "forecasts": self.forecasts,
        }


class PredictionStore:
    """What the recorder, `forecast`, `monitor` and `log compact` use of a log, whichever
    database holds it. Safe to share between threads."""

    location: str
    """Where the log is, for messages (a PostgreSQL URL without its password)."""
    spill_path: Path
    """The side file that keeps rows the log could not take before the service stopped."""
    may_block = False
    """True when a write waits on a network: the service then writes from a thread."""
    busy_timeout_ms: int
    """How long a write waits on a lock (or a server) before it fails."""
    reopened = 0
    """How many times the log was found deleted or replaced and opened again."""

    def record_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Append rows in COLUMNS order and count them in `judged`, all or none; return how
        many were written. Raises LogWriteError (nothing written) when the log cannot take them.
        """
        raise NotImplementedError

    def frame(self) -> pd.DataFrame:
        """Every row of the log, oldest first (id, COLUMNS, asked)."""
        raise NotImplementedError

    def judged(self) -> pd.DataFrame:
        """The judged forecast of each week, version, variant, source and horizon (id, COLUMNS
        and `asked`, how many forecasts of that key were asked), by week."""
        raise NotImplementedError

    def compact(self) -> CompactResult:
        """Keep one row per judged key, with its count, in one transaction."""
        raise NotImplementedError

    def record_actuals(self, weeks: list[tuple[str, float]], source: str) -> int:
        """Keep the realised HH of weeks (Monday, HH), the newest value of a week winning, in
        one transaction; return how many weeks were written."""
        raise NotImplementedError

    def actuals(self) -> pd.DataFrame:
        """Every realised week kept (week, hh, recorded_at, source), by week."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (a later write opens it again)."""
        raise NotImplementedError

    def record(self, records: Iterable[PredictionRecord]) -> int:
        """Append forecasts in one transaction; return how many were written."""
        return self.record_rows([r.row() for r in records])

    def record_frame(
        self,
        version: str,
        variant: str,
        features: list[str],
        scored: pd.DataFrame,
        logged_at: datetime | None = None,
        source: str = "cli",
        last_trained_week: str | None = None,
    ) -> int:
        """Log the rows of a `predict_frame` result (an optional `date` column gives the week)."""
        now = logged_at or datetime.now(UTC)
        dates = scored["date"] if "date" in scored.columns else None
        records = []
        for i, (_, row) in enumerate(scored.iterrows()):
            day = dates.iloc[i] if dates is not None else None
            week = str(day)[:10] if day is not None and not pd.isna(day) else None
            records.append(
                PredictionRecord(
                    version=version,
                    variant=variant,
                    inputs={f: float(row[f]) for f in features},
                    hh_pred=float(row["HH_pred"]),
                    hh_lower=float(row["HH_lower"]) if "HH_lower" in row else None,
                    hh_upper=float(row["HH_upper"]) if "HH_upper" in row else None,
                    week=week,
                    logged_at=now,
                    source=source,
                    last_trained_week=last_trained_week,
                )
            )
        return self.record(records)

    def record_forecast(
        self,
        forecast: PlanForecast,
        source: str,
        logged_at: datetime | None = None,
        challenger: PlanForecast | None = None,
    ) -> int:
        """Log every week of a plan's forecast, and the challenger's beside it, in one
        transaction."""
        now = logged_at or datetime.now(UTC)
        return self.record(
            record
            for plan, role in ((forecast, "production"), (challenger, "challenger"))
            if plan is not None
            for record in _plan_records(plan, source, now, role)
        )


def _plan_records(
    forecast: PlanForecast, source: str, now: datetime, role: str
) -> Iterable[PredictionRecord]:
    return (
        PredictionRecord(
            version=forecast.version,
            variant=forecast.variant,
            inputs=week["inputs"],
            hh_pred=week["HH"],
            hh_lower=week["HH_lower"],
            hh_upper=week["HH_upper"],
            week=week["week"],
            logged_at=now,
            source=source,
            last_trained_week=forecast.last_trained_week,
            role=role,
        )
        for week in forecast.rows()
    )
