"""Does /health keep answering while 20,000 slow clients hold connections (slowloris)?

Starts `python -m hhforecast serve` on a free loopback port, then attacker processes open
`--connections` connections in all, each sending a request line and a header one byte a second,
and opening a new connection whenever the server closes one. Meanwhile this process asks
/health on a fresh connection every 0.2 s and times the answers; the server's open file
descriptors are read from /proc. Runs twice: `hhforecast serve` (its deadline to send a request
and its cap on connections, serving/connections.py), then the same app run by `uvicorn --factory`
with uvicorn's own settings. Loopback only, bounded in time (`--seconds` of attack per run, at
most a minute to open the connections); raises the open-file limit to its hard limit. Linux
only (/proc).

    python bench/slow_connections.py [--config config.yaml] [--connections 20000] [--seconds 20]
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- section: slow-connections -->"
END = "<!-- end section: slow-connections -->"
HOST = "127.0.0.1"
RAMP_SECONDS = 60.0
"""At most this long to open the slow connections before /health is asked."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def raise_file_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def _hold(port: int, count: int, until: float, stats: dict[str, int], opened: Any) -> None:
    """Keep `count` slow connections open until `until`, reopening those the server closes."""

    async def one() -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                stats["refused"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            with opened.get_lock():
                opened.value += 1
            try:
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                while time.monotonic() < until:
                    await writer.drain()
                    try:
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            break  # closed by the server
                    except TimeoutError:
                        writer.write(b"a")  # one byte a second
                        continue
                stats["closed_by_server"] += time.monotonic() < until
            except OSError:
                stats["closed_by_server"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


def attacker(
    port: int, count: int, seconds: float, opened: Any, out: multiprocessing.Queue
) -> None:
    raise_file_limit()
    stats = {"opened": 0, "closed_by_server": 0, "refused": 0}
    asyncio.run(_hold(port, count, time.monotonic() + seconds, stats, opened))
    out.put(stats)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run(config: Path, connections: int, seconds: float, processes: int, guarded: bool) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HHFORECAST_CONFIG": str(config)}
    if guarded:
        command = ["-m", "hhforecast", "serve", "--port", str(port), "--config", str(config)]
    else:  # the same app, run by uvicorn with its own settings (what `serve` did before)
        command = ["-m", "uvicorn", "--factory", "hhforecast.serving.app:app_from_environment"]
        command += ["--host", HOST, "--port", str(port), "--http", "h11", "--log-level", "error"]
    server = subprocess.Popen(
        [sys.executable, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=config.parent,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{HOST}:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not become ready")
        queue: multiprocessing.Queue = multiprocessing.Queue()
        opened = multiprocessing.Value("q", 0)
        attack = seconds + RAMP_SECONDS  # opened by then, or as many as could be
        workers = [
            multiprocessing.Process(
                target=attacker, args=(port, connections // processes, attack, opened, queue)
            )
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        ramp_end = time.monotonic() + RAMP_SECONDS
        while opened.value < connections and time.monotonic() < ramp_end:
            time.sleep(0.1)
        end = time.monotonic() + seconds
        latencies: list[float] = []
        failures = 0
        most_files = 0
        while time.monotonic() < end:
            most_files = max(most_files, open_files(server.pid))
            began = time.perf_counter()
            try:
                ok = httpx.get(f"http://{HOST}:{port}/health", timeout=5.0).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                failures += 1
            time.sleep(0.2)
        stats = [queue.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies.sort()
    return {
        "guarded": guarded,
        "probes": len(latencies) + failures,
        "failures": failures,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
        "opened": sum(s["opened"] for s in stats),
        "closed_by_server": sum(s["closed_by_server"] for s in stats),
        "refused": sum(s["refused"] for s in stats),
        "most_files": most_files,
    }


def milliseconds(value: float, digits: int) -> str:
    return "–" if value != value else f"{value:.{digits}f} ms"  # NaN: nothing answered


def table(results: list[dict], connections: int, seconds: float, command: str) -> str:
    lines = [
        START,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
        f"{os.cpu_count()} cores ({platform.platform()}, Python {platform.python_version()}), "
        f"client and server on one machine over loopback, with `{command}`: {connections:,} "
        f"slow connections (a header byte a second, reopened when closed) held for "
        f"{seconds:.0f} s while /health is asked every 0.2 s on a new connection "
        f"(load average {os.getloadavg()[0]:.1f} at the end: other work shared the cores).",
        "",
        "| server | /health answered | median | slowest | slow connections opened "
        "| closed by the server | server's open files (most) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = (
            "`hhforecast serve` (defaults: 15 s, 1,024 connections)"
            if r["guarded"]
            else "the same app under `uvicorn --factory`"
        )
        lines.append(
            f"| {name} | {r['probes'] - r['failures']} of {r['probes']} | "
            f"{milliseconds(r['p50_ms'], 1)} | {milliseconds(r['max_ms'], 0)} | {r['opened']:,} | "
            f"{r['closed_by_server']:,} | {r['most_files']:,} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if args.seconds > 120 or args.connections > 30_000:
        raise SystemExit("bounded: at most 120 s and 30,000 connections")
    limit = raise_file_limit()
    if limit < args.connections // args.processes + 100:
        raise SystemExit(f"the open-file limit ({limit}) is too low: use more --processes")
    results = [
        run(args.config.resolve(), args.connections, args.seconds, args.processes, guarded)
        for guarded in (True, False)
    ]
    command = (
        f"python bench/slow_connections.py --connections {args.connections} "
        f"--seconds {args.seconds:.0f}"
    )
    text = table(results, args.connections, args.seconds, command)
    print(text)
    if args.write:
        doc = args.write.read_text()
        if START in doc:
            before, rest = doc.split(START, 1)
            doc = before + text + rest.split(END, 1)[1]
        else:
            doc = doc.rstrip("\n") + "\n\n## Slow connections (slowloris)\n\n" + text + "\n"
        args.write.write_text(doc)


if __name__ == "__main__":
    main()
