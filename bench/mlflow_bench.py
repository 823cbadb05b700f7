"""`hhforecast serve` against `mlflow models serve` of the same registered version, in one run.

Usage (from the repository root, with the mlflow extra installed and a version trained):

    .venv/bin/python bench/mlflow_bench.py [--config config.yaml] [--duration 8] [--rounds 3]

The production version is copied into a throw-away project tracking to its own `mlflow server`
(SQLite, artifacts served by the server, over HTTP on a loopback port), registered there by
`hhforecast mlflow sync`, and served three ways, one uvicorn worker each, measured alternately
under the same wrk load with the same week:

- `hhforecast serve` (the local registry);
- `hhforecast serve --follow-mlflow` (the same version, fetched through the `production` alias);
- `mlflow models serve -m models:/<name>@production --env-manager local` (MLflow's own server
  of our pyfunc model, which runs the same NumPy forward pass).

Each server's memory (RSS of its process tree) and time from start to its first answer are
recorded too. The results replace the MLflow section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import ROOT, free_port, grab, machine, to_ms
from sections import write_section

BENCH = ROOT / "bench"
WEEK = {
    "acft": 249,
    "sum_daily_hours": 2539.5,
    "Cycles": 1591,
    "sum_uti_mensal": 11261.3,
    "age_fleet": 8037205.9,
}
SECTION = "mlflow-serve"


@dataclass
class Target:
    name: str
    label: str
    url: str
    path: str
    body: dict
    lua: Path
    process: subprocess.Popen[bytes] | None = None
    ready_s: float = 0.0
    rss_mb: float = 0.0
    tensorflow: bool = False


def tree(pid: int) -> list[int]:
    """A process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def lua(path: Path, url_path: str, body: dict) -> Path:
    path.write_text(
        f'wrk.method = "POST"\nwrk.path = "{url_path}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{json.dumps(body)}'\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("non_2xx: %d\\n", summary.errors.status))\nend\n'
    )
    return path


def wrk(url: str, duration: int, connections: int, script: Path) -> dict[str, float]:
    """One wrk run. The timeout is 30 s (wrk's default, 2 s, would drop MLflow's slow answers
    from the latency figures and count them as errors)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "30s"]
    out = subprocess.run(
        [*command, "--latency", "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)$", out, flags=re.MULTILINE))
    if "99" not in percentiles:
        sys.exit(f"unexpected wrk output:\n{out}")
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
    }


def launch(target: Target, command: list[str], env: dict[str, str], log: Path) -> None:
    started = time.monotonic()
    with log.open("wb") as out:
        target.process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # mlflow models serve starts workers: stop the whole group
        )
    deadline = started + 300
    while time.monotonic() < deadline:
        if target.process.poll() is not None:
            sys.exit(f"{target.name} exited early:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.post(target.url + target.path, json=target.body, timeout=5.0)
            if response.status_code == 200:
                target.ready_s = time.monotonic() - started
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"{target.name} did not answer in 300 s:\n{log.read_text()[-3000:]}")


def answer_hh(target: Target) -> float:
    data = httpx.post(target.url + target.path, json=target.body, timeout=30.0).json()
    if "predictions" in data:
        return float(data["predictions"][0]["HH_pred"])
    return float(data["HH"])


def bench_project(config: Path | None, folder: Path, uri: str) -> tuple[Path, str, str]:
    """A project holding only the production version, tracked to the bench's MLflow server."""
    from hhforecast.config import load_settings
    from hhforecast.modeling.artifacts import read_metadata
    from hhforecast.registry.store import Registry, registry_fields

    settings = load_settings(config)
    registry = Registry(settings)
    entry = registry.require_production_version()
    shutil.copytree(registry.version_dir(entry), folder / "models" / entry.version)
    data = {
        "training": settings.training.model_dump(),
        "mlops": {**settings.mlops.model_dump(), "production_version": entry.version},
        "serving": settings.serving.model_dump(),
        "monitoring": {**settings.monitoring.model_dump(), "database": "bench-predictions.db"},
        "mlflow": {"tracking_uri": uri, "experiment": "bench"},
    }
    data["mlops"].pop("registry_file")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    local = load_settings(path)
    Registry(local).register_folder(
        folder / "models" / entry.version,
        registry_fields(read_metadata(folder / "models" / entry.version)),
    )
    model = local.mlflow.model_name(local.mlops.serve_variant)
    return path, entry.version, model


def render(
    targets: list[Target],
    runs: list[dict],
    args: argparse.Namespace,
    version: str,
    hh: dict[str, float],
    info: dict[str, str],
    load_after: str,
) -> str:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["target"] == name)

    import mlflow

    serve_rps = med("serve", "requests_per_s")
    lines = [
        f"<!-- section: {SECTION} -->",
        "## hhforecast serve against mlflow models serve",
        "",
        "Written by `make bench-mlflow` (`bench/mlflow_bench.py`); rerun it to refresh it.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {info['nproc']} cores, "
        f"`{info['cpu']}`; MLflow {mlflow.__version__}",
        f"- Load average before / after: {info['load']} / {load_after}",
        f"- Version {version}, registered by `hhforecast mlflow sync` in a throw-away `mlflow "
        "server` (SQLite, artifacts served by the server, loopback HTTP); every server "
        "answers the same week (hhforecast: the five features as JSON; "
        'MLflow: `{"dataframe_records": [week]}` to `/invocations`)',
        "- Same answer everywhere: "
        + ", ".join(f"{t.label} HH = {hh[t.name]:.3f}" for t in targets),
        f"- Load: `wrk -t1 -c{args.connections} -d{args.duration}s --latency`, "
        f"{args.rounds} rounds after a warm-up, targets alternated within each round; one "
        "worker per server",
        "",
        "| round | server | requests/s | p50 | p99 | CPU per request | requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {t.name: t.label for t in targets}
    for r in runs:
        lines.append(
            f"| {r['round']} | {labels[r['target']]} | {r['requests_per_s']:,.1f} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['cpu_us']:,.0f} µs | "
            f"{r['requests']:,} | {r['errors']} |"
        )
    lines += [
        "",
        "| server (median of rounds) | requests/s | × mlflow models serve | p99 | RSS after "
        "the run | start to first answer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    mlflow_rps = med("mlflow", "requests_per_s")
    for t in targets:
        rps = med(t.name, "requests_per_s")
        lines.append(
            f"| {t.label} | {rps:,.1f} | {rps / mlflow_rps:,.1f} | {med(t.name, 'p99_ms'):.1f} ms "
            f"| {t.rss_mb:,.0f} MB | {t.ready_s:.1f} s |"
        )
    lines += [
        "",
        f"`hhforecast serve` answered {serve_rps / mlflow_rps:,.0f} times as many single-week "
        "requests per second as `mlflow models serve` of the same registered version. Per "
        "request, MLflow's scoring server builds a pandas DataFrame from the JSON and our "
        "pyfunc runs `predict_frame` on it (pandas checks and copies, the path of `hhforecast "
        "predict` for files); `hhforecast serve` parses one week by hand and runs the NumPy "
        "forward pass on one row. The pyfunc already runs that NumPy pass: a Keras model served "
        "the same way calls `predict()` per request and answers far fewer. The "
        "`--follow-mlflow` replica asks the tracking server where the alias points every "
        "`serving.reload_poll_seconds` and downloads through its REST API with the standard "
        "library, without importing MLflow's client (about 100 MB). RSS is the sum over each "
        "server's process tree (the tracking server not counted); "
        + (
            "TensorFlow was imported by: " + ", ".join(t.label for t in targets if t.tensorflow)
            if any(t.tensorflow for t in targets)
            else "no server imported TensorFlow"
        )
        + ".",
        f"<!-- end section: {SECTION} -->",
        "",
    ]
    return "\n".join(lines)


def uses_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's library is mapped into the process tree (it was imported)."""
    for p in tree(pid):
        try:
            if "libtensorflow" in Path(f"/proc/{p}/maps").read_text():
                return True
        except OSError:
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        sys.exit("MLflow is not installed: pip install -e '.[mlflow]'")

    info = machine()
    folder = Path(tempfile.mkdtemp(prefix="hhforecast-mlflow-bench-"))
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    # mlflow models serve starts `uvicorn` by name: the venv's bin must be on the PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    tracking = start_tracking_server(bin_dir, folder, env)
    uri = f"http://127.0.0.1:{tracking.port}"
    try:
        config, version, model = bench_project(args.config, folder, uri)
        hhforecast = [str(bin_dir / "hhforecast")]
        sync = [*hhforecast, "mlflow", "sync", "--config", str(config)]
        subprocess.run(sync, check=True, env=env)
        run_targets(args, info, folder, bin_dir, env, hhforecast, config, version, model, uri)
    finally:
        stop_group(tracking.process)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"Wrote the MLflow section of {args.output}")


@dataclass
class TrackingServer:
    process: subprocess.Popen[bytes]
    port: int


def start_tracking_server(bin_dir: Path, folder: Path, env: dict[str, str]) -> TrackingServer:
    """`mlflow server` on SQLite with its own artifact store, as a shared deployment runs it."""
    port = free_port()
    command = [
        str(bin_dir / "mlflow"), "server", "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
        (folder / "mlartifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    with (folder / "tracking.log").open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return TrackingServer(process, port)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_group(process)
    sys.exit(f"mlflow server did not start:\n{(folder / 'tracking.log').read_text()[-3000:]}")


def run_targets(
    args: argparse.Namespace,
    info: dict[str, str],
    folder: Path,
    bin_dir: Path,
    env: dict[str, str],
    hhforecast: list[str],
    config: Path,
    version: str,
    model: str,
    uri: str,
) -> None:
    replica = folder / "replica"
    replica.mkdir()
    replica_config = replica / "config.yaml"
    replica_config.write_text(config.read_text())

    ports = [free_port() for _ in range(3)]
    targets = [
        Target("serve", "hhforecast serve", f"http://127.0.0.1:{ports[0]}", "/api/predict",
               WEEK, lua(folder / "serve.lua", "/api/predict", WEEK)),
        Target("follow", "hhforecast serve --follow-mlflow", f"http://127.0.0.1:{ports[1]}",
               "/api/predict", WEEK, lua(folder / "follow.lua", "/api/predict", WEEK)),
        Target("mlflow", "mlflow models serve", f"http://127.0.0.1:{ports[2]}", "/invocations",
               {"dataframe_records": [WEEK]},
               lua(folder / "mlflow.lua", "/invocations", {"dataframe_records": [WEEK]})),
    ]  # fmt: skip
    commands = {
        "serve": [*hhforecast, "serve", "--port", str(ports[0]), "--config", str(config)],
        "follow": [
            *hhforecast, "serve", "--follow-mlflow", "--port", str(ports[1]),
            "--config", str(replica_config),
        ],
        "mlflow": [
            str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{model}@production",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(ports[2]),
            "--workers", "1",
        ],
    }  # fmt: skip
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": uri}
    runs: list[dict] = []
    try:
        for t in targets:  # one at a time, so that start-up times do not compete
            launch(t, commands[t.name], mlflow_env if t.name == "mlflow" else env,
                   folder / f"{t.name}.log")  # fmt: skip
            print(f"{t.label}: first answer after {t.ready_s:.1f} s", flush=True)
        hh = {t.name: answer_hh(t) for t in targets}
        if max(hh.values()) - min(hh.values()) > 1e-6:
            sys.exit(f"the servers disagree: {hh}")
        pids = {t.name: t.process.pid for t in targets if t.process}
        for t in targets:
            wrk(t.url + t.path, 2, args.connections, t.lua)
        for number in range(1, args.rounds + 1):
            for t in targets:
                pid = pids[t.name]
                before = sum(_cpu(p) for p in tree(pid))
                result = wrk(t.url + t.path, args.duration, args.connections, t.lua)
                cpu = sum(_cpu(p) for p in tree(pid)) - before
                result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
                runs.append({"target": t.name, "round": number, **result})
                print(f"round {number} {t.name}: {result}", flush=True)
        for t in targets:
            t.rss_mb = rss_mb(pids[t.name])
            t.tensorflow = uses_tensorflow(pids[t.name])
    finally:
        for t in targets:
            if t.process is not None:
                stop_group(t.process)
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    write_section(args.output, render(targets, runs, args, version, hh, info, load_after), SECTION)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
