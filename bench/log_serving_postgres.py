"""What logging into PostgreSQL costs the service: /api/predict with the log in a PostgreSQL
database vs the bare FastAPI endpoint and vs the same service with the log off, and with a
challenger named (each answer computed and logged by it as well), in PostgreSQL and in the
default SQLite file, under the same wrk load as `make bench` (bench/run_bench.py), alternating
rounds.

    .venv/bin/python bench/log_serving_postgres.py [--config config.yaml] [--postgres URL]
        [--duration 8] [--rounds 5] [--write docs/benchmarks.md]

Without --postgres a throw-away server is started (Debian's binaries, tests/postgres_server.py).
Goals: /api/predict with the log on at least 0.85× the bare endpoint's requests per second;
with a challenger as well, at least 0.9×.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
import run_bench as bench  # noqa: E402
from sections import write_section  # noqa: E402

SECTION = "log-postgres-serving"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--postgres", help="A PostgreSQL server URL (its database is used).")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    from hhforecast.config import load_settings

    settings = load_settings(args.config)
    server, url = None, args.postgres
    if url is None:
        from tests.postgres_server import start_postgres

        server = start_postgres(Path(tempfile.mkdtemp(prefix="hhforecast-postgres-")))
        # Stopped however the bench ends: a server that exits early (sys.exit) left it running.
        atexit.register(stop_postgres, server)
        url = server.url()
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bench_serving")
        connection.execute("CREATE DATABASE bench_serving")
        pg_version = connection.execute("SHOW server_version").fetchone()
    database = url.rsplit("/", 1)[0] + "/bench_serving"
    processes: dict[str, Any] = {}
    urls: dict[str, str] = {}
    logs = Path(tempfile.gettempdir())
    command = shutil.which("hhforecast", path=str(Path(sys.executable).parent)) or "hhforecast"
    runs: list[dict[str, Any]] = []
    try:
        for target, log_on in (
            ("postgres", True),
            ("nolog", False),
            ("challenger", True),
            ("sqlite-challenger", True),
        ):
            folder = bench.user_project(settings, log_on)
            if log_on and target != "sqlite-challenger":
                config = folder / "config.yaml"
                data = yaml.safe_load(config.read_text()) if config.exists() else {}
                data = data or {}
                data.setdefault("monitoring", {})["database"] = database
                config.write_text(yaml.safe_dump(data, sort_keys=False))
            if target.endswith("challenger"):
                name_a_challenger(command, folder)
            port = bench.free_port()
            urls[target] = f"http://127.0.0.1:{port}"
            processes[target] = bench.start(
                [command, "serve", "--port", str(port)],
                urls[target],
                logs / f"hhforecast-bench-{target}.log",
                cwd=folder,
            )
        port = bench.free_port()
        urls["bare"] = f"http://127.0.0.1:{port}"
        processes["bare"] = bench.start(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(bench.BENCH),
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            urls["bare"],
            logs / "hhforecast-bench-bare.log",
        )  # fmt: skip
        targets = ("bare", "postgres", "nolog", "challenger", "sqlite-challenger")
        for target in targets:
            bench.run_wrk(urls[target], 2, args.connections, processes[target].pid)
        for round_number in range(1, args.rounds + 1):
            for target in targets:
                result = bench.run_wrk(
                    urls[target], args.duration, args.connections, processes[target].pid
                )
                runs.append({"target": target, **result})
                print(f"round {round_number} {target}: {result}", flush=True)
    finally:
        for process in processes.values():
            bench.stop(process)
    with psycopg.connect(database) as connection:
        row = connection.execute("SELECT count(*) FROM predictions").fetchone()
        logged = int(row[0]) if row else 0

    def median(target: str, field: str) -> float:
        return statistics.median(r[field] for r in runs if r["target"] == target)

    answered = sum(r["requests"] for r in runs if r["target"] in ("postgres", "challenger"))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [
        f"<!-- section: {SECTION} -->",
        "## Serving with the prediction log in PostgreSQL",
        "",
        "`hhforecast serve` (one worker, as a user starts it) with `monitoring.database` a "
        "PostgreSQL database on the same machine, against the bare FastAPI endpoint and the "
        "same service with the log off; wrk with "
        f"{args.connections} connections, {args.rounds} rounds of {args.duration} s "
        "alternating. The log is written from the recorder's thread (a PostgreSQL log always "
        "is). The last two rows name a challenger (`bench/log_serving_postgres.py` trains one "
        "with one epoch in its copy of the project): each answer is computed by it as well and "
        "both rows are logged, in PostgreSQL and in the default SQLite file (written from the "
        "event loop). Goals: the logged endpoint at least 0.85× the bare one, with a "
        "challenger at least 0.9×. The PostgreSQL server "
        "shares the machine's cores with the service and wrk (its CPU is taken from them; with "
        "the database on another machine it is not); the server CPU per request is the "
        "service's own. Written by `bench/log_serving_postgres.py`.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores shared with "
        f"other work (load average after: {load}); PostgreSQL "
        f"{pg_version[0] if pg_version else '?'}",
        f"- Rows in the database after the run: {logged:,} of {answered:,} answers timed "
        "(plus the warm-up's; with the challenger on, each answer logs two rows: production's "
        "and the challenger's)",
        "",
        "| endpoint | requests/s | vs bare | p50 (ms) | p99 (ms) | server CPU per request (µs) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    bare_rps = median("bare", "requests_per_s")
    for target, label in (
        ("bare", "bare FastAPI"),
        ("postgres", "/api/predict, log in PostgreSQL"),
        ("nolog", "/api/predict, log off"),
        ("challenger", "/api/predict, log in PostgreSQL, challenger on"),
        ("sqlite-challenger", "/api/predict, log in SQLite (the default), challenger on"),
    ):
        rps = median(target, "requests_per_s")
        lines.append(
            f"| {label} | {rps:,.0f} | {rps / bare_rps:.2f}× | {median(target, 'p50_ms'):.1f} | "
            f"{median(target, 'p99_ms'):.1f} | {median(target, 'cpu_us'):.0f} |"
        )
    lines += [f"<!-- end section: {SECTION} -->", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, text, SECTION)


def stop_postgres(server: Any) -> None:
    """Stop the throw-away PostgreSQL server and remove its folder."""
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop()
    shutil.rmtree(server.data.parent, ignore_errors=True)


def name_a_challenger(command: str, folder: Path) -> None:
    """Pin production, train a one-epoch version on the sample and name it the challenger."""

    def run(*args: str) -> str:
        done = subprocess.run(
            [command, *args], cwd=folder, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.exit(f"hhforecast {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    production = json.loads(run("registry", "list", "--json"))["production_version"]
    if production is None:
        sys.exit("no production version to serve: run `make train` first")
    run("promote", production)
    run("train", "--sample", "--version", "bench-challenger", "--epochs", "1")
    run("promote", "bench-challenger", "--challenger")


if __name__ == "__main__":
    main()
