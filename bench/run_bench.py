"""Measure /api/predict against a bare FastAPI endpoint with wrk, time a 10,000-row batch,
and write the results to docs/benchmarks.md.

Usage (from the repository root, after a version is trained):

    .venv/bin/python bench/run_bench.py [--config config.yaml] [--duration 8] [--rounds 5]

Both servers run with the same uvicorn settings (one worker, no access log), one at a time
under the same wrk load, alternating, so that background load hits both alike.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml

if TYPE_CHECKING:
    from hhforecast.config import Settings

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA = BENCH / "predict.lua"
FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
BATCH_ROWS = 10_000
GOALS = {"ratio": 0.80, "p99_ms": 25.0, "batch_ms": 100.0}
LABELS = {
    "bare": "bare FastAPI endpoint",
    "api": "/api/predict (hhforecast, prediction log on: the default)",
    "api_nolog": "/api/predict (monitoring.log_predictions: false)",
}


@dataclass
class WrkRun:
    target: str
    round: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def grab(pattern: str, text: str) -> str:
    """The first group of `pattern` in wrk's output, or exit saying what was not found."""
    match = re.search(pattern, text, flags=re.MULTILINE)
    if match is None:
        sys.exit(f"unexpected wrk output (no {pattern!r}):\n{text}")
    return match.group(1)


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, duration: int, connections: int, pid: int) -> dict[str, float]:
    """One wrk run; also the server's CPU time per request, which background load on the
    machine does not inflate the way it does wall-clock throughput."""
    cpu_before = cpu_seconds(pid)
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)$", out, flags=re.MULTILINE))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(grab(r"non_2xx: (\d+)", out))
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {
        "requests_per_s": float(grab(r"Requests/sec:\s+([\d.]+)", out)),
        "p50_ms": to_ms(percentiles["50"]),
        "p99_ms": to_ms(percentiles["99"]),
        "requests": int(grab(r"(\d+) requests in", out)),
        "errors": errors,
        "cpu_us": cpu / max(int(grab(r"(\d+) requests in", out)), 1) * 1e6,
    }


def start(command: list[str], url: str, log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "HHFORECAST_CONFIG"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited early ({' '.join(command)}, in {cwd}):\n{log.read_text()}")
        try:
            httpx.get(url + "/docs", timeout=1.0)
            return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"server did not start:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def batch_body() -> bytes:
    import pandas as pd

    from hhforecast.datasets.weekly import sample_dataset_path

    weeks = pd.read_csv(sample_dataset_path())[FEATURES].to_dict("records")
    rows = (weeks * (BATCH_ROWS // len(weeks) + 1))[:BATCH_ROWS]
    return json.dumps({"rows": rows}).encode()


def time_batch(url: str, repeats: int) -> list[float]:
    body = batch_body()
    times = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(repeats + 1):
            start_time = time.perf_counter()
            response = client.post(
                url + "/api/predict", content=body, headers={"Content-Type": "application/json"}
            )
            elapsed = (time.perf_counter() - start_time) * 1000
            if response.status_code != 200 or len(response.json()) != BATCH_ROWS:
                sys.exit(f"batch failed: {response.status_code} {response.text[:300]}")
            if i:  # the first one warms up
                times.append(elapsed)
    return times


def command_line(args: argparse.Namespace) -> str:
    """How this run was started, without the machine's own paths."""
    if args.from_make:
        return "make bench"
    words = ["python", "bench/run_bench.py"]
    skip = False
    for word in sys.argv[1:]:
        if skip or word == "--output":  # where the page was written is not part of the run
            skip = not skip
            continue
        words.append(word)
    return " ".join(words)


def log_rows(project: Path) -> int:
    """Rows in the copied project's prediction log after the bench (every answer is one)."""
    import sqlite3

    from hhforecast.config import load_settings

    config = project / "config.yaml"
    database = (
        load_settings(config).monitoring.database
        if config.exists()
        else "models/predictions.sqlite"
    )
    path = project / database
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM predictions").fetchone()[0])


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def versions() -> str:
    from importlib.metadata import version

    names = ["fastapi", "starlette", "uvicorn", "pydantic", "numpy"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def median_of(runs: list[WrkRun], target: str, field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs if r.target == target)


def render(
    runs: list[WrkRun],
    batch_ms: list[float],
    info: dict[str, str],
    load_after: str,
    args: argparse.Namespace,
    served_version: str,
) -> str:
    bare_rps = median_of(runs, "bare", "requests_per_s")
    api_rps = median_of(runs, "api", "requests_per_s")
    ratio = api_rps / bare_rps
    api_p99 = median_of(runs, "api", "p99_ms")
    nolog_rps = median_of(runs, "api_nolog", "requests_per_s")
    nolog_ratio = nolog_rps / bare_rps
    batch_median = statistics.median(batch_ms)
    errors = sum(r.errors for r in runs)
    cpu_ratio = median_of(runs, "bare", "cpu_us") / median_of(runs, "api", "cpu_us")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        "# Benchmarks",
        "",
        "How fast `hhforecast serve` answers, measured against a bare FastAPI endpoint that takes",
        "the same body (a pydantic model of the five features) and returns a constant. Written by",
        "`make bench` (`bench/run_bench.py`); rerun it to refresh this page.",
        "",
        "The baseline goes through FastAPI's whole request handling (dependency solving, the",
        "pydantic body, response encoding) and does no work; `/api/predict` does the real work",
        "(checks, the forward pass, the interval, metrics) but skips FastAPI's per-request",
        "machinery (see the end of this page). The ratio therefore says what serving costs",
        "compared with the cheapest FastAPI endpoint one could write, not that FastAPI's",
        "machinery became free.",
        "",
        "## Last run",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {info['nproc']} cores (`nproc`), CPU `{info['cpu']}`, {info['os']}",
        f"- Python {info['python']}; {versions()}",
        f"- Load average before / after the run: {info['load']} / {load_after} "
        "(other work on the machine competes with the servers; compare the two targets within "
        "a round, not across machines)",
        f"- Served version: {served_version}",
        "- Servers: `hhforecast serve --port P` started as a user starts it (the console "
        "script, no other option) in a copy of the project (its config.yaml as written, "
        "registry, versions and prediction log), once as is and once with "
        "`monitoring.log_predictions: false`; the bare endpoint under uvicorn; one worker "
        "each, no access log, measured alternately; wrk runs on the same machine",
        f"- Load: `wrk -t1 -c{args.connections} -d{args.duration}s --latency -s bench/predict.lua "
        "URL` (POST of one week's five features), "
        f"{args.rounds} rounds after a warm-up",
        f"- Command: `{command_line(args)}`",
        "",
        "| round | target | requests/s | p50 latency | p99 latency | server CPU per request "
        "| requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        label = LABELS[run.target]
        lines.append(
            f"| {run.round} | {label} | {run.requests_per_s:,.0f} | {run.p50_ms:.2f} ms | "
            f"{run.p99_ms:.2f} ms | {run.cpu_us:.0f} µs | {run.requests:,} | {run.errors} |"
        )
    lines += [
        "",
        "| summary (median of rounds) | value | goal | |",
        "|---|---:|---:|---|",
        f"| bare endpoint requests/s | {bare_rps:,.0f} | | |",
        f"| /api/predict requests/s | {api_rps:,.0f} | | |",
        f"| throughput ratio /api/predict ÷ bare | {ratio:.0%} | ≥ {GOALS['ratio']:.0%} | "
        f"{verdict(ratio >= GOALS['ratio'])} |",
        f"| bare endpoint server CPU per request | {median_of(runs, 'bare', 'cpu_us'):.0f} µs "
        "| | |",
        f"| /api/predict server CPU per request | {median_of(runs, 'api', 'cpu_us'):.0f} µs | | |",
        f"| CPU ratio bare ÷ /api/predict (throughput ratio on an idle core) | "
        f"{cpu_ratio:.0%} | ≥ {GOALS['ratio']:.0%} | {verdict(cpu_ratio >= GOALS['ratio'])} |",
        f"| /api/predict p50 latency | {median_of(runs, 'api', 'p50_ms'):.2f} ms | | |",
        f"| /api/predict p99 latency | {api_p99:.2f} ms | < {GOALS['p99_ms']:.0f} ms | "
        f"{verdict(api_p99 < GOALS['p99_ms'])} |",
        f"| without the prediction log: requests/s | {nolog_rps:,.0f} | | |",
        f"| without the prediction log: throughput ratio ÷ bare | {nolog_ratio:.0%} "
        f"| ≥ {GOALS['ratio']:.0%} | {verdict(nolog_ratio >= GOALS['ratio'])} |",
        f"| without the prediction log: p99 latency | "
        f"{median_of(runs, 'api_nolog', 'p99_ms'):.2f} ms | | |",
        f"| 10,000-row batch, median of {len(batch_ms)} (HTTP round trip) | "
        f"{batch_median:.1f} ms | < {GOALS['batch_ms']:.0f} ms | "
        f"{verdict(batch_median < GOALS['batch_ms'])} |",
        f"| 10,000-row batch, slowest of {len(batch_ms)} | {max(batch_ms):.1f} ms | | |",
        f"| failed requests (non-2xx and socket errors) | {errors} | 0 | {verdict(errors == 0)} |",
        "",
        f"10,000-row batch, every timing (ms): {', '.join(f'{t:.1f}' for t in batch_ms)}; "
        f"body {len(batch_body()) / 1e6:.2f} MB.",
        "",
        "## Where the gap to the bare endpoint comes from",
        "",
        "Throughput ratios measured on a shared machine move from run to run: 0.69 and 0.75 in "
        "two runs at high load; on an idle machine 0.80 with the log written by a thread of its "
        "own every 20 ms, 0.86 to 0.89 with the event loop writing it. `bench/log_cost.py` serves "
        "the same version in several set-ups, measured alternately in 4-second wrk rounds, and "
        "compares the server CPU per request (user + system time of the server process over "
        "the requests it answered), which other work on the machine disturbs less than "
        "requests/s. Three runs on 2026-11-28 on the 2-core machine above, 6 rounds each "
        "(`python bench/log_cost.py --rounds 6 --duration 4`, version trained with the default "
        "config on the bundled sample): A idle, the log written every 20 ms; B idle, every "
        "100 ms (the default now); C every 100 ms with a CPU-bound process busy beside it:",
        "",
        "| set-up | A: CPU per request (bare ÷ this) | B | C |",
        "|---|---:|---:|---:|",
        "| bare FastAPI endpoint | 172 µs (100%) | 165 µs (100%) | 157 µs (100%) |",
        "| `hhforecast serve` as a user starts it (log written by the event loop) "
        "| 202 µs (85%) | 192 µs (86%) | 183 µs (86%) |",
        "| the same, `monitoring.log_predictions: false` | 186 µs (92%) | 186 µs (88%) "
        "| 167 µs (94%) |",
        "| the same, log already holding 1,000,000 rows | 201 µs (86%) | 189 µs (87%) "
        "| 181 µs (87%) |",
        "| the same app, log written by a thread of its own (the earlier design) "
        "| 210 µs (82%) | 189 µs (87%) | 184 µs (85%) |",
        "",
        "- **The log** costs 6 to 16 µs of CPU per answer in these runs. Timed inside a served "
        "process, its write cycles took 0.44 s of CPU for 51,463 rows (8.6 µs per row at "
        "20 ms: building the rows about 2 µs, SQLite about 2 µs, the rest the cycle's fixed "
        "work: one `stat` of the file, the commit, the metrics). Writing every 100 ms spreads "
        "that fixed work over five times the rows; a row reaches the file at most 0.1 s after "
        "its answer.",
        "- **A thread of its own** used to write the log. It costs about the same CPU, but each "
        "write cycle takes the GIL from the event loop and gives it back: in 8-second runs at "
        "about 5,000 requests/s, 2,100 to 5,300 voluntary context switches of the writer "
        "thread and 1,200 to 2,000 of the event loop, against 150 to 370 in all with the loop "
        "writing (per-thread counters in /proc, 20 ms cycles). The event loop now runs the "
        "cycle itself; a lock held by another process makes a write wait at most 5 ms before "
        "the rows are held for a later try.",
        "- **The size of the log** does not matter (1,000,000 rows: same cost): rows are "
        "appended at the end of the table and its index.",
        "- **The rest of the gap** (log off, 88-94% of bare) is the service's own work per "
        "answer: the range checks, the forward pass, the interval, the metrics.",
        "- **Throughput** on a busy machine says more about the neighbours than about the "
        "service: in earlier runs at load average 17-23, the same bare server swung from about "
        "600 to 5,400 requests/s between rounds. The CPU ratio (reported by `make bench` next "
        "to the throughput ratio) is the figure to compare across machines.",
        "",
        "## What keeps the request path lean",
        "",
        "- The model is never called through Keras per request: `VariantModel.predict` is the "
        "same forward pass in NumPy (tens of microseconds for one row).",
        "- `/api/predict` is also mounted as a plain Starlette route ahead of the FastAPI route "
        "(which stays for `/docs`): FastAPI's dependency solving alone costs about as much as "
        "the whole prediction.",
        "- The body is parsed with `json.loads` and checked by hand: one week with plain Python "
        "comparisons, a batch with a few C-level passes and vectorised NumPy masks. No pydantic "
        "model on the request path, no `response_model` serialisation: the answer is written "
        "once as bytes.",
        "- Metrics are a pure ASGI middleware (no `BaseHTTPMiddleware` task) that reuses "
        "labelled Prometheus children.",
        "- Bodies over 50 kB (about 450 weeks) are parsed and answered in a worker thread, so "
        "single-week requests keep flowing meanwhile.",
        "- Every answer is logged for `hhforecast monitor` (the default): the request path only "
        "counts its rows against the bounded queue under a lock and appends it to a deque; "
        "every 100 ms the event loop checks that the log file is still the one it opened (one "
        "`stat`), turns what accumulated into rows (consecutive answers of one model stacked, "
        "their times formatted by NumPy in one call) and inserts them with multi-row INSERT "
        "statements in one SQLite transaction. That work is the gap between the two "
        "/api/predict rows. `monitoring.log_predictions: false` removes it.",
        "- `gc.freeze()` at start-up takes the objects TensorFlow leaves behind out of the "
        "collector's reach, so a full collection does not stall requests for 100 ms.",
        "",
    ]
    return "\n".join(lines)


def user_project(settings: Settings, log_predictions: bool) -> Path:
    """A copy of the user's project (config.yaml as written, the models folder with the
    registry, the versions and the prediction log as they are) in a temporary folder.

    `hhforecast serve` is then started there exactly as a user starts it, so the benchmark
    measures what the user runs (production pointer, follower, metrics, the log and its size)
    while its tens of thousands of answers stay out of the real prediction log.
    """
    # In the project folder, so that the log is on the same disk as the user's own.
    folder = Path(tempfile.mkdtemp(prefix=".hhforecast-bench-", dir=settings.base_dir))
    atexit.register(shutil.rmtree, folder, True)  # removed however the bench ends
    base = settings.base_dir
    if settings.source is not None:
        text = settings.source.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not log_predictions:
            data.setdefault("monitoring", {})["log_predictions"] = False
            text = yaml.safe_dump(data, sort_keys=False)
        (folder / "config.yaml").write_text(text, encoding="utf-8")
    elif not log_predictions:
        (folder / "config.yaml").write_text("monitoring:\n  log_predictions: false\n")
    for path in (settings.models_dir, settings.registry_file.parent):
        try:
            relative = path.resolve().relative_to(base.resolve())
        except ValueError:
            sys.exit(f"{path} is outside the project folder {base}: cannot copy it for the bench")
        if path.is_dir() and not (folder / relative).exists():
            shutil.copytree(path, folder / relative)
    dataset = settings.paths.dataset
    if dataset and not Path(dataset).is_absolute() and (base / dataset).exists():
        # The served version's history picture reads its dataset at start-up.
        (folder / dataset).parent.mkdir(parents=True, exist_ok=True)
        (folder / dataset).symlink_to((base / dataset).resolve())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-repeats", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--from-make", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    from hhforecast.config import load_settings
    from hhforecast.registry.store import Registry

    settings = load_settings(args.config)
    entry = Registry(settings).require_production_version()
    info = machine()
    api_port, bare_port = free_port(), free_port()
    api_url, bare_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
    logs = Path(tempfile.gettempdir())
    nolog_port = free_port()
    nolog_url = f"http://127.0.0.1:{nolog_port}"
    servers = {}
    # The console script, in a copy of the project, with no option but the port: as a user does.
    command = shutil.which("hhforecast", path=str(Path(sys.executable).parent)) or "hhforecast"
    projects = {}
    for target, port, url, log_on in (
        ("api", api_port, api_url, True),
        ("api_nolog", nolog_port, nolog_url, False),
    ):
        projects[target] = user_project(settings, log_on)
        servers[target] = start(
            [command, "serve", "--port", str(port)],
            url,
            logs / f"hhforecast-bench-{target}.log",
            cwd=projects[target],
        )
    api = servers["api"]
    bare = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--app-dir",
            str(BENCH),
            "--port",
            str(bare_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        bare_url,
        logs / "hhforecast-bench-bare.log",
    )
    pids = {api_url: api.pid, bare_url: bare.pid, nolog_url: servers["api_nolog"].pid}
    runs: list[WrkRun] = []
    try:
        targets = (("bare", bare_url), ("api", api_url), ("api_nolog", nolog_url))
        for _, url in targets:
            run_wrk(url, 2, args.connections, pids[url])  # warm-up
        for round_number in range(1, args.rounds + 1):
            for target, url in targets:
                result = run_wrk(url, args.duration, args.connections, pids[url])
                runs.append(WrkRun(target, round_number, **result))  # type: ignore[arg-type]
                print(f"round {round_number} {target}: {result}", flush=True)
        batch_ms = time_batch(api_url, args.batch_repeats)
        print(f"10,000-row batch (ms): {[round(t, 1) for t in batch_ms]}", flush=True)
    finally:
        for server in (*servers.values(), bare):
            stop(server)
        logged = log_rows(projects["api"])
        for folder in projects.values():
            shutil.rmtree(folder, ignore_errors=True)
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"prediction log rows written by the logged server: {logged:,}", flush=True)
    text = render(runs, batch_ms, info, load_after, args, entry.version)
    args.output.write_text(text.rstrip("\n") + "\n" + _other_sections(args.output))
    print(f"Wrote {args.output}")


def _other_sections(path: Path) -> str:
    """Sections other benchmarks wrote into the same page (`<!-- section: NAME -->` blocks)."""
    if not path.exists():
        return ""
    found = re.finditer(
        r"<!-- section: (\S+) -->.*?<!-- end section: \1 -->\n?", path.read_text(), re.DOTALL
    )
    return "".join("\n" + m.group(0) for m in found)


if __name__ == "__main__":
    main()
