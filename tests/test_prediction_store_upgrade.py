"""A log written by the previous release (layout 3) is read and upgraded in place by today's
store, on PostgreSQL and on SQLite: its rows survive as production's forecasts, new rows (the
challenger's too) and realised weeks go in, and two stores upgrading at once are serialised."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hhforecast.watch.postgres_store import SCHEMA_LOCK, PostgresPredictionLog
from hhforecast.watch.prediction_store import PredictionRecord, PredictionStore
from hhforecast.watch.sqlite_store import PredictionLog

WEEK = "2024-01-08"
INPUTS = {"acft": 250.0, "sum_daily_hours": 2400.0, "Cycles": 1500.0}

# Layout 3 as the previous release created it (src/hhforecast/watch/postgres_store.py before
# layout 4): no `role` column, no `actuals` table, judged keys without the role.
POSTGRES_LAYOUT_3 = """
CREATE TABLE predictions (
    id BIGSERIAL PRIMARY KEY,
    logged_at TEXT COLLATE "C" NOT NULL,
    week TEXT COLLATE "C" NOT NULL,
    version TEXT NOT NULL,
    variant TEXT NOT NULL,
    inputs TEXT NOT NULL,
    hh_pred DOUBLE PRECISION NOT NULL,
    hh_lower DOUBLE PRECISION,
    hh_upper DOUBLE PRECISION,
    source TEXT NOT NULL DEFAULT 'api',
    horizon INTEGER,
    asked BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX predictions_week ON predictions (week);
CREATE TABLE judged (
    key TEXT COLLATE "C" PRIMARY KEY,
    prediction_id BIGINT NOT NULL,
    rank TEXT COLLATE "C" NOT NULL,
    asked BIGINT NOT NULL
);
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (3)
"""
SQLITE_LAYOUT_3 = """
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at TEXT NOT NULL,
    week TEXT NOT NULL,
    version TEXT NOT NULL,
    variant TEXT NOT NULL,
    inputs TEXT NOT NULL,
    hh_pred REAL NOT NULL,
    hh_lower REAL,
    hh_upper REAL,
    source TEXT NOT NULL DEFAULT 'api',
    horizon INTEGER,
    asked INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX predictions_week ON predictions (week);
CREATE TABLE judged (
    key TEXT PRIMARY KEY,
    prediction_id INTEGER NOT NULL,
    rank TEXT NOT NULL,
    asked INTEGER NOT NULL
);
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (3);
"""
# The rows and the judged table the previous release kept for them: of the three forecasts of
# the week from the API, the judged one is the latest issued before the week (id 2), asked 3
# times in all; the CLI's forecast is a key of its own.
OLD_ROWS = [
    (1, "2024-01-03T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 1.0, 0.0, 2.0,
     "api", 2, 1),
    (2, "2024-01-05T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 2.0, 1.0, 3.0,
     "api", 2, 1),
    (3, "2024-01-09T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 3.0, 2.0, 4.0,
     "api", 2, 1),
    (4, "2024-01-09T08:00:00.000000+00:00", WEEK, "1.0.0", "5features", "{}", 4.0, None, None,
     "cli", None, 1),
]  # fmt: skip
OLD_JUDGED = [
    (f"{WEEK}|1.0.0|5features|api|2", 2, "1|2024-01-05T08:00:00.000000+00:00|" + "2".zfill(20), 3),
    (f"{WEEK}|1.0.0|5features|cli|", 4, "0|2024-01-09T08:00:00.000000+00:00|" + "4".zfill(20), 1),
]
_INSERT_ROW = (
    "INSERT INTO predictions (id, logged_at, week, version, variant, inputs, hh_pred, "
    "hh_lower, hh_upper, source, horizon, asked) VALUES ({p})"
)


def forecast(hh: float, day: int, role: str = "production") -> PredictionRecord:
    """A forecast of WEEK from the API, issued on January `day` (horizon 2, as the old rows)."""
    return PredictionRecord(
        "1.0.0",
        "5features",
        INPUTS,
        hh,
        hh - 50,
        hh + 50,
        week=WEEK,
        logged_at=datetime(2024, 1, day, 9, tzinfo=UTC),
        last_trained_week="2023-12-25",
        role=role,
    )


def judged_view(log: PredictionStore) -> list[tuple[str, str, float, int]]:
    """(source, role, forecast, times asked) of each judged key."""
    return sorted(
        (str(r.source), str(r.role), float(r.hh_pred), int(r.asked))
        for r in log.judged().itertuples()
    )


def check_upgraded_log(log: PredictionStore, judged_keys: list[tuple[str, int]]) -> None:
    """The old rows and two new forecasts (production's, then the challenger's) and a realised
    week, read back; `judged_keys` is the judged table as stored (key, times asked)."""
    frame = log.frame()
    assert frame["hh_pred"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert frame["role"].tolist() == ["production"] * 5 + ["challenger"]
    assert frame["asked"].tolist() == [1] * 6
    # The new production forecast, issued later but still before the week, is now the judged
    # one of the key the old rows were judged under, and counts them: 3 asked before, 1 now.
    assert judged_view(log) == [
        ("api", "challenger", 6.0, 1),
        ("api", "production", 5.0, 4),
        ("cli", "production", 4.0, 1),
    ]
    assert sorted(judged_keys) == [
        (f"{WEEK}|1.0.0|5features|api|2|challenger", 1),
        (f"{WEEK}|1.0.0|5features|api|2|production", 4),
        (f"{WEEK}|1.0.0|5features|cli||production", 1),
    ]
    actuals = log.actuals()
    assert [(r.week, float(r.hh)) for r in actuals.itertuples()] == [(WEEK, 1234.5)]


def check_old_log_read(log: PredictionStore) -> None:
    """The layout-3 log as today's store reads it before writing: the old rows, production's."""
    frame = log.frame()
    assert frame["hh_pred"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame["role"].tolist() == ["production"] * 4
    assert judged_view(log) == [("api", "production", 2.0, 3), ("cli", "production", 4.0, 1)]
    assert log.actuals().empty


# PostgreSQL -------------------------------------------------------------------------------


def old_postgres_log(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as connection:
        for statement in POSTGRES_LAYOUT_3.split(";"):
            connection.execute(statement)
        with connection.cursor() as cursor:
            cursor.executemany(_INSERT_ROW.format(p=",".join(["%s"] * 12)), OLD_ROWS)
            cursor.executemany("INSERT INTO judged VALUES (%s, %s, %s, %s)", OLD_JUDGED)
        # The ids were drawn from the sequence: the next row is id 5.
        connection.execute("SELECT setval('predictions_id_seq', 4)")


def postgres_store(url: str, tmp_path: Path) -> PostgresPredictionLog:
    return PostgresPredictionLog(url, "the test database", tmp_path / "spill.jsonl", 5_000)


def postgres_state(url: str) -> tuple[list[Any], list[Any], list[tuple[str, int]]]:
    """The layout versions, the columns of `predictions`, the judged table (key, asked)."""
    import psycopg

    with psycopg.connect(url) as connection:
        versions = connection.execute("SELECT version FROM schema_version").fetchall()
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'predictions' ORDER BY ordinal_position"
        ).fetchall()
        judged = connection.execute("SELECT key, asked FROM judged").fetchall()
    return versions, [c[0] for c in columns], [(str(k), int(a)) for k, a in judged]


def test_a_postgresql_log_of_the_previous_layout_is_read_then_upgraded_by_the_first_write(
    postgres_url: str, tmp_path: Path
) -> None:
    old_postgres_log(postgres_url)
    log = postgres_store(postgres_url, tmp_path)

    check_old_log_read(log)  # `monitor` before the service's first write
    versions, columns, _ = postgres_state(postgres_url)
    assert versions == [(3,)] and "role" not in columns  # reading changed nothing

    assert log.record([forecast(5.0, 6), forecast(6.0, 6, role="challenger")]) == 2
    assert log.record_actuals([(WEEK, 1234.5)], "test") == 1
    versions, columns, judged = postgres_state(postgres_url)
    assert versions == [(4,)]
    assert columns[-1] == "role"
    check_upgraded_log(log, judged)
    log.close()

    # Opened again, as by a restarted service: already up to date, it writes on.
    again = postgres_store(postgres_url, tmp_path)
    assert again.record([forecast(7.0, 7)]) == 1
    assert judged_view(again)[1] == ("api", "production", 7.0, 5)
    again.close()


def test_two_services_upgrading_a_postgresql_log_at_once_are_serialised(
    postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    old_postgres_log(postgres_url)
    stores = [postgres_store(postgres_url, tmp_path / str(i)) for i in range(2)]
    errors: list[BaseException] = []

    def write(store: PostgresPredictionLog, day: int) -> None:
        try:
            store.record([forecast(float(day), day)])
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    # Both start while a third session holds the layout lock, so both reach the upgrade
    # together once it is let go.
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        threads = [
            threading.Thread(target=write, args=(store, day))
            for store, day in zip(stores, (6, 7), strict=True)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        waiting = 0
        while waiting < 2 and time.monotonic() < deadline:
            row = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND wait_event = 'advisory' AND datname = current_database()"
            ).fetchone()
            waiting = int(row[0]) if row else 0
            time.sleep(0.02)
        assert waiting == 2, "both stores should wait for the layout lock before upgrading"
        holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
        for thread in threads:
            thread.join(30)
    assert errors == []
    versions, columns, judged = postgres_state(postgres_url)
    assert versions == [(4,)]
    assert columns.count("role") == 1
    # One upgrade's judged table, counting both new forecasts once each: 3 + 2.
    assert sorted(judged) == [
        (f"{WEEK}|1.0.0|5features|api|2|production", 5),
        (f"{WEEK}|1.0.0|5features|cli||production", 1),
    ]
    frame = stores[0].frame()
    assert sorted(frame["hh_pred"].tolist()) == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0]
    assert judged_view(stores[1])[0] == ("api", "production", 7.0, 5)
    for store in stores:
        store.close()


# SQLite -----------------------------------------------------------------------------------


def old_sqlite_log(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.executescript(SQLITE_LAYOUT_3)
        raw.executemany(_INSERT_ROW.format(p=",".join("?" * 12)), OLD_ROWS)
        raw.executemany("INSERT INTO judged VALUES (?, ?, ?, ?)", OLD_JUDGED)
    raw.close()


def sqlite_state(path: Path) -> tuple[list[Any], list[str], list[tuple[str, int]]]:
    with sqlite3.connect(path) as raw:
        versions = raw.execute("SELECT version FROM schema_version").fetchall()
        columns = [row[1] for row in raw.execute("PRAGMA table_info(predictions)")]
        judged = [(str(k), int(a)) for k, a in raw.execute("SELECT key, asked FROM judged")]
    raw.close()
    return versions, columns, judged


def test_a_sqlite_log_of_the_previous_layout_is_read_then_upgraded_by_the_first_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "predictions.sqlite"
    old_sqlite_log(path)
    log = PredictionLog(path)

    check_old_log_read(log)
    versions, columns, _ = sqlite_state(path)
    assert versions == [(3,)] and "role" not in columns

    assert log.record([forecast(5.0, 6), forecast(6.0, 6, role="challenger")]) == 2
    assert log.record_actuals([(WEEK, 1234.5)], "test") == 1
    versions, columns, judged = sqlite_state(path)
    assert versions == [(4,)]
    assert columns[-1] == "role"
    check_upgraded_log(log, judged)
    log.close()


@pytest.mark.parametrize("attempt", range(3))
def test_two_services_upgrading_a_sqlite_log_at_once_are_serialised(
    tmp_path: Path, attempt: int
) -> None:
    path = tmp_path / "predictions.sqlite"
    old_sqlite_log(path)
    stores = [PredictionLog(path) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(store: PredictionLog, day: int) -> None:
        start.wait()
        try:
            store.record([forecast(float(day), day)])
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(store, day))
        for store, day in zip(stores, (6, 7), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    versions, columns, judged = sqlite_state(path)
    assert versions == [(4,)]
    assert columns.count("role") == 1
    assert sorted(judged) == [
        (f"{WEEK}|1.0.0|5features|api|2|production", 5),
        (f"{WEEK}|1.0.0|5features|cli||production", 1),
    ]
    assert sorted(stores[0].frame()["hh_pred"].tolist()) == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0]
    for store in stores:
        store.close()
