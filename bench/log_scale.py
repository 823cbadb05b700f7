"""Does `hhforecast monitor` cost what its weeks cost? The same 26 realised weeks, logged once
and asked a million times (as a polled service logs them), on SQLite and, when a server is
available, PostgreSQL; and the log's bytes per forecast, before and after `hhforecast log
compact`.

    .venv/bin/python bench/log_scale.py [--forecasts 1000000] [--postgres URL | --start-postgres]
        [--write docs/benchmarks.md]

The rows go through the log's own write path (`record_rows`, 2,000 rows a call: one service
write cycle), so the judged table is kept up to date as the service keeps it. `monitor` is timed
as a user runs it (a fresh `hhforecast monitor --json` process, median of 3) and in-process
(`run_monitor`, median of 5 after one warm-up run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sections import write_section  # noqa: E402

from hhforecast.config import load_settings  # noqa: E402
from hhforecast.watch.log_store import open_prediction_log  # noqa: E402
from hhforecast.watch.monitor import run_monitor  # noqa: E402
from hhforecast.watch.prediction_store import PredictionStore, horizon_weeks  # noqa: E402

SECTION = "log-scale"
WEEKS = 26
ROUNDS = 5
"""Alternating runs of `monitor` per figure (each figure is their median)."""
FIRST_WEEK = date(2025, 1, 6)
LAST_TRAINED = "2024-12-30"
BATCH = 2_000
INPUTS = (
    '{"Cycles": 1591.0, "acft": 249.0, "age_fleet": 8037205.9, "sum_daily_hours": 2539.5, '
    '"sum_uti_mensal": 11261.3}'
)


def rows(forecasts: int) -> Any:
    """`forecasts` rows for 26 weeks, each week asked over the four weeks before it and during
    it (every ~minute of a polled service), in time order, in batches of BATCH."""
    weeks = [FIRST_WEEK + timedelta(weeks=i) for i in range(WEEKS)]
    per_week = forecasts // WEEKS
    batch: list[tuple[Any, ...]] = []
    for n in range(forecasts):
        w = n % WEEKS
        k = n // WEEKS
        week = weeks[w]
        # Spread over the 5 weeks ending with the target week.
        at = (
            datetime(week.year, week.month, week.day, tzinfo=UTC)
            - timedelta(weeks=4)
            + (timedelta(weeks=5) * k / max(per_week, 1))
        )
        hh = 1000.0 + 10 * w + (k % 7)
        batch.append(
            (
                at.isoformat(timespec="microseconds"),
                week.isoformat(),
                "1.0.0",
                "5features",
                INPUTS,
                hh,
                hh - 150.0,
                hh + 150.0,
                "api",
                horizon_weeks(week.isoformat(), LAST_TRAINED),
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(log: PredictionStore, forecasts: int) -> float:
    started = time.perf_counter()
    for batch in rows(forecasts):
        log.record_rows(batch)
    return time.perf_counter() - started


def log_bytes(log: PredictionStore, give_back: bool = False) -> int:
    """The log's size on disk; `give_back`: after PostgreSQL's VACUUM FULL (a compacted
    table's space is otherwise kept for its next rows, not returned)."""
    if log.location.startswith("postgres"):
        import psycopg

        with psycopg.connect(log.url, autocommit=True) as connection:  # type: ignore[attr-defined]
            if give_back:
                connection.execute("VACUUM FULL predictions")
            row = connection.execute(
                "SELECT pg_total_relation_size('predictions') + pg_total_relation_size('judged')"
            ).fetchone()
            return int(row[0]) if row else 0
    path = Path(log.location)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def monitor_process(folder: Path) -> tuple[float, dict[str, Any]]:
    """Seconds of one `hhforecast monitor --json` process on `folder`'s log, and its JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "hhforecast", "monitor", "--actuals"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, str(folder / "actuals.csv"), "--json", "--config", str(folder / "config.yaml")],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - started
    assert done.returncode in (0, 1), done.stderr
    return seconds, json.loads(done.stdout)


def monitor_in_process(folder: Path) -> float:
    settings = load_settings(folder / "config.yaml")
    started = time.perf_counter()
    run_monitor(settings, folder / "actuals.csv")
    return time.perf_counter() - started


def time_monitor(
    baseline: Path, folder: Path, rounds: int
) -> tuple[float, float, float, float, dict[str, Any]]:
    """Median seconds of `monitor` on `baseline` and on `folder`, runs alternating so that both
    see the same machine load: (process, process, in-process, in-process, folder's JSON)."""
    monitor_in_process(baseline)  # warm-up: imports, first calls
    monitor_in_process(folder)
    first, second, first_in, second_in = [], [], [], []
    report: dict[str, Any] = {}
    for _ in range(rounds):
        first.append(monitor_process(baseline)[0])
        seconds, report = monitor_process(folder)
        second.append(seconds)
        first_in.append(monitor_in_process(baseline))
        second_in.append(monitor_in_process(folder))
    median = statistics.median
    return median(first), median(second), median(first_in), median(second_in), report


def project(folder: Path, database: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"monitoring": {"database": database}}))
    weeks = [FIRST_WEEK + timedelta(weeks=i) for i in range(WEEKS)]
    (folder / "actuals.csv").write_text(
        "date,HH\n" + "".join(f"{w},{1000 + 10 * i + 3}\n" for i, w in enumerate(weeks))
    )
    return folder


def measure(name: str, small: str, big: str, work: Path, forecasts: int) -> dict[str, Any]:
    """Monitor on 26 forecasts vs `forecasts`, then compact the big log."""
    result: dict[str, Any] = {"backend": name, "forecasts": forecasts}
    once = project(work / f"{name}-once", small)
    many = project(work / f"{name}-many", big)
    small_log = open_prediction_log(load_settings(once / "config.yaml"))
    fill(small_log, WEEKS)
    small_log.close()
    big_log = open_prediction_log(load_settings(many / "config.yaml"))
    result["write_seconds"] = fill(big_log, forecasts)
    big_log.close()
    result["bytes_before"] = log_bytes(big_log)
    cli_once, cli_many, in_once, in_many, report = time_monitor(once, many, ROUNDS)
    result.update(cli_once=cli_once, cli_many=cli_many, inproc_once=in_once, inproc_many=in_many)
    assert report["forecasts_logged"] == forecasts and report["forecasts_judged"] == WEEKS
    started = time.perf_counter()
    compacted = big_log.compact()
    result["compact_seconds"] = time.perf_counter() - started
    big_log.close()
    assert compacted.rows_after == WEEKS and compacted.forecasts == forecasts
    result["bytes_after"] = log_bytes(big_log, give_back=True)
    cli_once2, result["cli_compacted"], _, _, after = time_monitor(once, many, ROUNDS)
    result["compacted_ratio"] = result["cli_compacted"] / cli_once2
    assert after["periods"] == report["periods"], "compact changed what monitor reports"
    print(json.dumps(result), flush=True)
    return result


def section(results: list[dict[str, Any]], postgres_note: str) -> str:
    lines = [
        f"<!-- section: {SECTION} -->",
        "## The prediction log at scale: monitor and bytes per forecast",
        "",
        f"26 realised weeks, logged once, and asked {results[0]['forecasts']:,} times (each week "
        "polled through the 5 weeks up to it, as a service answering a planning page logs "
        "it), written through the log's own write path 2,000 rows a call (one service write "
        "cycle). `monitor` reads the judged table the writes keep (docs/drift.md), so its time "
        "should not grow with the polling: the goal is at most 2× its time on the 26 forecasts "
        "logged once. `monitor` is timed as a user runs it (a fresh `hhforecast monitor --json` "
        "process) and in-process (`run_monitor`, after a warm-up), each the median of 5 runs "
        "alternating with the same runs on the 26-forecast log, so that both see the same load. "
        "Bytes per forecast: the SQLite file (WAL checkpointed) or PostgreSQL's "
        "`pg_total_relation_size` of both tables, over the forecasts logged; after `hhforecast "
        "log compact` the log keeps 26 rows standing for all of them (PostgreSQL measured after "
        "a `VACUUM FULL`: without it the freed space is kept for the table's next rows). "
        "Written by `make bench-log` (`bench/log_scale.py`).",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores shared with "
        f"other work (load average after the run: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}); Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}{postgres_note}",
        "",
        "| log | monitor, 26 once (s) | monitor, all polled (s) | ratio | in-process once / "
        "polled (ms) | after compact (s) | bytes per forecast | after compact (total) | "
        "writing (s) | compact (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['cli_once']:.2f} | {r['cli_many']:.2f} | "
            f"{r['cli_many'] / r['cli_once']:.2f}× | {1000 * r['inproc_once']:.0f} / "
            f"{1000 * r['inproc_many']:.0f} | {r['cli_compacted']:.2f} "
            f"({r['compacted_ratio']:.2f}×) | "
            f"{r['bytes_before'] / r['forecasts']:.0f} | {r['bytes_after'] / 1024:.0f} KiB | "
            f"{r['write_seconds']:.0f} | {r['compact_seconds']:.1f} |"
        )
    lines += [f"<!-- end section: {SECTION} -->", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--forecasts", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="A PostgreSQL server URL (its database is used).")
    parser.add_argument(
        "--start-postgres",
        action="store_true",
        help="Start a throw-away server when PostgreSQL's binaries are installed.",
    )
    parser.add_argument("--write", type=Path, help="Markdown file to put the section in.")
    args = parser.parse_args()
    results, server, note = [], None, "; PostgreSQL: not measured (no server)"
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        results.append(
            measure(
                "SQLite",
                str(work / "once.sqlite"),
                str(work / "many.sqlite"),
                work,
                args.forecasts,
            )
        )
        url = args.postgres
        if url is None and args.start_postgres:
            from tests.postgres_server import postgres_bin, start_postgres

            if postgres_bin() is not None:
                pg_folder = Path(tempfile.mkdtemp(prefix="hhforecast-postgres-"))
                server = start_postgres(pg_folder)
                url = server.url()
        try:
            if url is not None:
                import psycopg

                with psycopg.connect(url, autocommit=True) as connection:
                    version = connection.execute("SHOW server_version").fetchone()
                    for name in ("bench_once", "bench_many"):
                        connection.execute(f"DROP DATABASE IF EXISTS {name}")
                        connection.execute(f"CREATE DATABASE {name}")
                base = url.rsplit("/", 1)[0]
                note = f", PostgreSQL {version[0] if version else '?'} on loopback"
                results.append(
                    measure(
                        "PostgreSQL",
                        f"{base}/bench_once",
                        f"{base}/bench_many",
                        work,
                        args.forecasts,
                    )
                )
        finally:
            if server is not None:
                server.stop()
                shutil.rmtree(server.data.parent, ignore_errors=True)
    text = section(results, note)
    print(text)
    if args.write:
        write_section(args.write, text, SECTION)


if __name__ == "__main__":
    main()
