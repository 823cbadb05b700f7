"""Where does /api/predict's gap to the bare endpoint come from? Serve the same version in
several set-ups and measure them alternately under the same wrk load as `make bench`.

    .venv/bin/python bench/log_cost.py [--rounds 6] [--duration 4] [--log-rows 1000000]

Set-ups (all one worker, no access log):
- bare: the bare FastAPI endpoint (bench/bare_app.py);
- user: `hhforecast serve --port P` in a copy of the project, as a user starts it;
- user, log off: the same with monitoring.log_predictions: false;
- user, big log: the same with a prediction log already holding --log-rows rows;
- user, log thread: the same app with the log written by a thread of its own instead of the
  service's event loop;

Prints per set-up the median requests/s, the ratio to bare, and the server CPU per request
(user + system time of the server process over the requests it answered), which background
load on a shared machine disturbs less than throughput.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as bench

OWN_THREAD = """
import sys, uvicorn
from hhforecast.config import load_settings
from hhforecast.serving.app import create_app
from hhforecast.watch.prediction_log import PredictionRecorder
settings = load_settings(None)
app = create_app(settings, prediction_log=PredictionRecorder.from_settings(settings))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[-1]), access_log=False, log_level="warning")
"""
"""The same service with the log written by a thread of the recorder's own (the design before
the event loop wrote it)."""


def fill_log(project: Path, rows: int) -> None:
    """Give the copied project's prediction log `rows` rows of a year of past answers."""
    from hhforecast.watch.prediction_store import PredictionLog, PredictionRecord

    log = PredictionLog(project / "models" / "predictions.sqlite")
    log.record_rows([])
    inputs = {"acft": 249.0, "sum_daily_hours": 2539.5, "Cycles": 1591.0}
    template = PredictionRecord("1.0.0", "5features", inputs, 1200.0, 900.0, 1500.0).row()
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        batch = [
            (f"2025-{1 + (start + i) % 12:02d}-01T00:00:00.000000+00:00", *template[1:])
            for i in range(count)
        ]
        log.record_rows(batch)
    log.close()
    with sqlite3.connect(project / "models" / "predictions.sqlite") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from hhforecast.config import load_settings
    from hhforecast.registry.store import Registry

    settings = load_settings(args.config)
    Registry(settings).require_production_version()  # exit early when nothing is served
    command = shutil.which("hhforecast", path=str(Path(sys.executable).parent)) or "hhforecast"
    setups: dict[str, tuple[list[str], Path]] = {}
    folders = []
    for name, log_on in (("user", True), ("user, log off", False), ("user, big log", True)):
        folder = bench.user_project(settings, log_on)
        folders.append(folder)
        if name == "user, big log":
            fill_log(folder, args.log_rows)
        setups[name] = ([command, "serve"], folder)
    folder = bench.user_project(settings, True)
    folders.append(folder)
    setups["user, log thread"] = ([sys.executable, "-c", OWN_THREAD], folder)
    scratch = Path(bench.tempfile.mkdtemp())
    folders.append(scratch)
    servers = {}
    urls = {}
    try:
        port = bench.free_port()
        urls["bare"] = f"http://127.0.0.1:{port}"
        servers["bare"] = bench.start(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(bench.BENCH),
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            urls["bare"],
            scratch / "bare.log",
        )  # fmt: skip
        for name, (base, cwd) in setups.items():
            port = bench.free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            servers[name] = bench.start(
                [*base, "--port", str(port)], urls[name], scratch / f"{port}.log", cwd=cwd
            )
        results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for name in servers:
            bench.run_wrk(urls[name], 2, args.connections, servers[name].pid)
        for round_number in range(args.rounds):
            for name in servers:
                run = bench.run_wrk(urls[name], args.duration, args.connections, servers[name].pid)
                results[name].append(run)
                print(round_number + 1, name, json.dumps(run), flush=True)
    finally:
        for server in servers.values():
            bench.stop(server)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    bare_rps = statistics.median(r["requests_per_s"] for r in results["bare"])
    bare_cpu = statistics.median(r["cpu_us"] for r in results["bare"])
    print("\n| set-up | requests/s | ÷ bare | server CPU per request | bare CPU ÷ this |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        rps = statistics.median(r["requests_per_s"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        print(
            f"| {name} | {rps:,.0f} | {rps / bare_rps:.0%} | {cpu:.0f} µs | {bare_cpu / cpu:.0%} |"
        )


if __name__ == "__main__":
    main()
