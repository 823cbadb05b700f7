"""Benchmark `dataset build` against plain `pandas.read_csv` of the same raw files.

Ten years of a 60-aircraft fleet, one utilisation row per flight (about 900,000 rows) plus
150,000 unscheduled events, simulated by the package's fleet model. In the same run: the time
pandas takes just to read both files (`pandas.read_csv`, defaults), the time `build_dataset`
takes to read, check and aggregate them, both as the median of several runs, each in a fresh
process, with its peak resident memory. Then the same logs saved with Brazilian Excel settings
(`;`, decimal comma, dd/mm/yyyy, cp1252). Results go to their own section of
docs/benchmarks.md.

Run: make bench-dataset   (or python bench/dataset_build.py --write docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sections import write_section

SECTION = "dataset-build"
AIRCRAFT = 60
WEEKS = 522  # ten years
EVENTS = 150_000
SEED = 20

_CHILD = r"""
import json, sys, time
from pathlib import Path
import pandas as pd
mode, util, events, dayfirst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if mode == "build":
    from hhforecast.config import DatasetConfig
    from hhforecast.datasets.build import build_dataset
    config = DatasetConfig(dayfirst=dayfirst == "1")
started, cpu = time.perf_counter(), time.process_time()
if mode == "pandas":
    rows = len(pd.read_csv(util)) + len(pd.read_csv(events))
else:
    rows = len(build_dataset([util], [events], config).weekly)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
# VmHWM, not ru_maxrss: the latter keeps the parent's size across fork + exec.
status = Path("/proc/self/status").read_text()
peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mb": peak, "rows": rows}))
"""


def make_logs(folder: Path) -> tuple[Path, Path, int, int]:
    """Write the per-flight utilisation and the event log of the simulated fleet (ISO CSV)."""
    from hhforecast.datasets.fleet import FleetProfile, raw_logs, simulate_fleet

    fleet = simulate_fleet(seed=SEED, weeks=WEEKS, profile=FleetProfile(aircraft=AIRCRAFT))
    util, events = raw_logs(fleet)
    rng = np.random.default_rng(SEED)
    # Split each aircraft-day into flights: about 4.4 a day, hours and cycles shared out, TAH
    # growing flight by flight (the day keeps its largest, as in a real per-flight export).
    legs = np.maximum(1, np.rint(util["Cycles"].to_numpy() * 0.75)).astype(int)
    rows = np.repeat(np.arange(len(util)), legs)
    leg = np.concatenate([np.arange(k) for k in legs])
    per = np.repeat(legs, legs)
    hours = np.round(util["Hours"].to_numpy()[rows] / per, 3)
    cycles = util["Cycles"].to_numpy()[rows] // per + (leg < util["Cycles"].to_numpy()[rows] % per)
    flights = pd.DataFrame(
        {
            "Dep. Date": util["Dep. Date"].to_numpy()[rows],
            "A/C": util["A/C"].to_numpy()[rows],
            "Hours": hours,
            "Cycles": cycles,
            "TAH": np.round(util["TAH"].to_numpy()[rows] + leg * hours, 1),
            "TAC": util["TAC"].to_numpy()[rows] + leg,
        }
    )
    chosen = np.sort(rng.choice(len(events), size=min(EVENTS, len(events)), replace=False))
    events = events.iloc[chosen]
    util_path, events_path = folder / "utilization.csv", folder / "events.csv"
    flights.to_csv(util_path, index=False)
    events.to_csv(events_path, index=False)
    return util_path, events_path, len(flights), len(events)


def brazilian(util: Path, events: Path, folder: Path) -> tuple[Path, Path]:
    """The same logs as Excel saves them with Brazilian settings."""
    out = []
    for path, column in ((util, "Dep. Date"), (events, "date")):
        frame = pd.read_csv(path)
        frame[column] = pd.to_datetime(frame[column]).dt.strftime("%d/%m/%Y")
        target = folder / f"br_{path.name}"
        text = frame.to_csv(index=False, sep=";", decimal=",")
        target.write_bytes(text.encode("cp1252"))
        out.append(target)
    return out[0], out[1]


def run_child(mode: str, util: Path, events: Path, dayfirst: bool) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(util), str(events), "1" if dayfirst else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(util: Path, events: Path, repeats: int, dayfirst: bool = False) -> dict[str, float]:
    """Alternate pandas and build runs so that both see the same machine load."""
    plain, build = [], []
    for _ in range(repeats):
        plain.append(run_child("pandas", util, events, dayfirst))
        build.append(run_child("build", util, events, dayfirst))
    return {
        "pandas_s": statistics.median(r["seconds"] for r in plain),
        "build_s": statistics.median(r["seconds"] for r in build),
        "pandas_cpu": statistics.median(r["cpu"] for r in plain),
        "build_cpu": statistics.median(r["cpu"] for r in build),
        "pandas_peak_mb": max(r["peak_mb"] for r in plain),
        "build_peak_mb": max(r["peak_mb"] for r in build),
        "weeks": build[0]["rows"],
    }


def render(iso: dict[str, float], br: dict[str, float], sizes: dict[str, float]) -> str:
    def row(label: str, m: dict[str, float]) -> str:
        wall_ratio = m["build_s"] / m["pandas_s"]
        cpu_ratio = m["build_cpu"] / m["pandas_cpu"]
        return (
            f"| {label} | {m['pandas_s']:.2f} | {m['build_s']:.2f} | **{wall_ratio:.2f}×** | "
            f"{m['pandas_cpu']:.2f} | {m['build_cpu']:.2f} | {cpu_ratio:.2f}× | "
            f"{m['pandas_peak_mb']:.0f} | {m['build_peak_mb']:.0f} |"
        )

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return "\n".join(
        [
            f"<!-- section: {SECTION} -->",
            "## Building the dataset from raw logs",
            "",
            "`hhforecast dataset build` on ten years of a 60-aircraft fleet, one utilisation row "
            f"per flight ({sizes['flights']:,} rows, {sizes['util_mb']:.0f} MB) plus "
            f"{sizes['events']:,} events ({sizes['events_mb']:.0f} MB), against plain "
            "`pandas.read_csv` of the same two files in the same run. Each figure is the median "
            f"of {sizes['repeats']} runs, each in a fresh process (imports not timed), pandas and "
            "build runs alternating so that both see the same machine load. The ratio is of wall "
            "time; the CPU time the kernel reports for each process is shown beside it (a fresh "
            "process pays pandas' first-call costs of groupby and date handling, which a plain "
            "read does not, so the CPU ratio is the less flattering one). Peak memory is the "
            "process's peak resident set (VmHWM), Python and pandas included. Written by "
            "`make bench-dataset` (`bench/dataset_build.py`).",
            "",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; "
            f"Python {platform.python_version()}, pandas {pd.__version__}; load average after "
            f"the run: {load} (other work shares the machine)",
            "",
            "| files | pandas.read_csv (s) | dataset build (s) | ratio | pandas CPU (s) | "
            "build CPU (s) | ratio (CPU) | pandas peak (MB) | build peak (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            row("ISO CSV (`,`, decimal point, YYYY-MM-DD, UTF-8)", iso),
            row("Brazilian Excel CSV (`;`, decimal comma, dd/mm/yyyy, cp1252)", br),
            "",
            f"Both builds give the same {int(iso['weeks'])} weeks. What the build does beyond "
            "reading: it checks the encoding (decoding the whole file unless it is plain ASCII), "
            "hashes it, sniffs separator and decimal mark, parses each distinct date once, "
            "checks every number, drops repeated rows across files, then aggregates "
            "aircraft-days, weeks and months. For the "
            "Brazilian file, `pandas.read_csv` with its defaults does not even split the columns "
            "(it reads one column of text), so that ratio compares a real read with a useless one.",
            f"<!-- end section: {SECTION} -->",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, help="Markdown file to put the section in.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        util, events, n_flights, n_events = make_logs(Path(folder))
        print(f"{n_flights:,} flight rows, {n_events:,} events", flush=True)
        iso = measure(util, events, args.repeats)
        print("ISO:", iso, flush=True)
        br_util, br_events = brazilian(util, events, Path(folder))
        br = measure(br_util, br_events, args.repeats, dayfirst=True)
        print("Brazilian:", br, flush=True)
        if iso["weeks"] != br["weeks"]:
            raise SystemExit("the two builds disagree on the number of weeks")
        sizes = {
            "flights": n_flights,
            "events": n_events,
            "util_mb": util.stat().st_size / 1e6,
            "events_mb": events.stat().st_size / 1e6,
            "repeats": args.repeats,
        }
    section = render(iso, br, sizes)
    if args.write:
        write_section(args.write, section, SECTION)
        print(f"Wrote the {SECTION} section of {args.write}")
    else:
        print(section)


if __name__ == "__main__":
    main()
