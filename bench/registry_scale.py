"""The registry at 1,000 versions (a daily retrain for three years) against one version.

Trains one real version (few epochs) in a scratch folder, then makes N registry entries from it:
each version folder holds its own model_metadata.json (its name in it, its SHA-256 in the entry)
and hard links to the trained artifacts, as `hhforecast train` would leave them. Times, as a new
process each time (what a user waits for): `registry list` at 1 and N versions, a plain
`promote` and `registry check` at N. The median of a few runs is reported, with CPU time.

    python bench/registry_scale.py [--versions 1000] [--runs 5] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sections import write_section

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- section: registry-scale -->"
END = "<!-- end section: registry-scale -->"
CONFIG = """training:
  epochs: 3
  interval_folds: 1
  backtest_horizon: 65
  units: 8
  batch_size: 64
  min_rows: 30
mlops:
  production_version: "0.0.0"
"""


def hhforecast(folder: Path, *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one `hhforecast` command in `folder`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hhforecast", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"hhforecast {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def make_versions(folder: Path, count: int) -> None:
    """`count` versions 0.0.0 ... from the one trained version 'seed' (hard-linked artifacts)."""
    models = folder / "models"
    seed = models / "seed"
    registry = json.loads((models / "registry.json").read_text())
    template = registry["versions"][0]
    metadata = json.loads((seed / "model_metadata.json").read_text())
    entries = []
    for i in range(count):
        name = f"0.{i // 1000}.{i % 1000}"
        target = models / name
        target.mkdir()
        for item in seed.iterdir():
            if item.name != "model_metadata.json":
                os.link(item, target / item.name)
        text = json.dumps({**metadata, "version": name}, indent=2)
        (target / "model_metadata.json").write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        entries.append(
            {**template, "version": name, "path": f"models/{name}", "metadata_sha256": digest}
        )
    shutil.rmtree(seed)
    registry["versions"] = entries
    (models / "registry.json").write_text(json.dumps(registry, indent=2))


def measure(folder: Path, runs: int, *args: str) -> dict[str, float]:
    walls, cpus = zip(*(hhforecast(folder, *args) for _ in range(runs)), strict=True)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}


def run(count: int, runs: int) -> dict[str, dict[str, float]]:
    scratch = Path(tempfile.mkdtemp(prefix="hh-registry-scale-"))
    try:
        (scratch / "config.yaml").write_text(CONFIG.replace('"0.0.0"', '"latest"'))
        hhforecast(scratch, "train", "--version", "seed")
        results = {"list, 1 version": measure(scratch, runs, "registry", "list")}
        (scratch / "config.yaml").write_text(CONFIG)
        make_versions(scratch, count)
        results[f"list, {count:,} versions"] = measure(scratch, runs, "registry", "list")
        results[f"list --all, {count:,} versions"] = measure(
            scratch, runs, "registry", "list", "--all"
        )
        promotes = [hhforecast(scratch, "promote", f"0.0.{1 + i % 2}") for i in range(runs)]
        results[f"promote, {count:,} versions"] = {
            "wall": statistics.median(p[0] for p in promotes),
            "cpu": statistics.median(p[1] for p in promotes),
        }
        results[f"registry check, {count:,} versions"] = measure(
            scratch, max(1, runs // 2), "registry", "check"
        )
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render(results: dict[str, dict[str, float]], command: str) -> str:
    one = results["list, 1 version"]["wall"]
    rows = "\n".join(
        f"| {name} | {r['wall']:.2f} s | {r['cpu']:.2f} s | {r['wall'] / one:.2f}× |"
        for name, r in results.items()
    )
    load = os.getloadavg()[0]
    return f"""{START}
## The registry at a thousand versions

`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
{datetime.now(UTC):%Y-%m-%d}, load average {load:.1f} at the end. Each figure is the median of
new `hhforecast` processes (Python start-up included), wall and CPU time; the ratio is to
`registry list` with one version. Goal: `registry list` at 1,000 versions within 2× of one.

| command | wall | CPU | × list of 1 |
|---|---|---|---|
{rows}

`registry list` reads `registry.json` and the pointer once and no version folder, and draws the
newest 20 (plus production, the challenger and the rollback target). `registry check` hashes every
artifact of every version, so it grows with the versions by design.
{END}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    parser.add_argument("--command", default="make bench-registry", help=argparse.SUPPRESS)
    args = parser.parse_args()
    results = run(args.versions, args.runs)
    for name, r in results.items():
        print(f"{name}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU", flush=True)
    section = render(results, args.command)
    if args.write is not None:
        write_section(args.write, section, "registry-scale")
        print(f"wrote {args.write}")
    else:
        print(section)


if __name__ == "__main__":
    main()
