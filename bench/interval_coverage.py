"""How often the served 80% interval covers weeks that come after training, on fleets the tool
has never seen.

For each seed a fleet is simulated for `--weeks` + `--future` weeks (the simulator is
prefix-stable: the first weeks are the same whatever the length). `hhforecast train` (the
library call, with the configured or default training settings) learns the first `--weeks`
weeks as a user would; the served model then forecasts the next `--future` weeks from their
realised utilisation, and we count the weeks whose realised HH falls inside its interval.
The held-out and rolling-origin coverages the training itself recorded are reported beside it.

    python bench/interval_coverage.py --seeds 101 102 103 104 --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import binomtest

from hhforecast.config import TrainingConfig, load_settings
from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.modeling.artifacts import load_variant
from hhforecast.modeling.training import train_version


def one_fleet(seed: int, weeks: int, future: int, training: dict[str, Any]) -> dict[str, Any]:
    """Train on a fleet's first `weeks` weeks; the served interval's coverage of the next."""
    frame = simulate_weekly_dataset(seed=seed, weeks=weeks + future)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        frame.iloc[:weeks].to_csv(root / "history.csv", index=False)
        (root / "config.yaml").write_text(yaml.safe_dump({"training": training}))
        settings = load_settings(root / "config.yaml")
        started = time.perf_counter()
        trained = train_version(settings, root / "history.csv", version="bench")
        seconds = time.perf_counter() - started
        out: dict[str, Any] = {"seed": seed, "seconds": seconds, "variants": {}}
        for variant in trained.metadata["variants"]:
            model = load_variant(trained.path, variant)
            later = frame.iloc[weeks:]
            predicted = model.predict(later[model.features].to_numpy(dtype=np.float64))
            lower, upper = model.interval(predicted)
            realised = later["HH"].to_numpy(dtype=np.float64)
            inside = int(((realised >= lower) & (realised <= upper)).sum())
            interval = trained.metadata["variants"][variant]["interval"]
            folds = trained.metadata["recipe_evidence"]["rolling_origin"] or {}
            out["variants"][variant] = {
                "future_covered": inside,
                "future_weeks": len(realised),
                "halfwidth": model.interval_halfwidth,
                "holdout": interval["observed_coverage_test"],
                "holdout_weeks": trained.metadata["split"]["test"]["weeks"],
                "folds": folds.get("observed_coverage", {}).get(variant),
                "fold_weeks": folds.get("weeks"),
            }
    print(f"seed {seed}: done in {seconds:.0f} s", file=sys.stderr, flush=True)
    return out


def table(results: list[dict[str, Any]], coverage: float) -> str:
    """Markdown: per fleet and variant, the future, holdout and fold coverages; then pooled."""
    lines = [
        "| fleet | variant | future weeks covered | holdout (scored fit) | rolling-origin folds "
        "| half-width |",
        "|---|---|---|---|---|---|",
    ]
    pooled: dict[str, list[int]] = {}
    for r in results:
        for variant, v in r["variants"].items():
            share = v["future_covered"] / v["future_weeks"]
            folds = "-" if v["folds"] is None else f"{v['folds']:.0%} of {v['fold_weeks']}"
            lines.append(
                f"| seed {r['seed']} | {variant} | {v['future_covered']}/{v['future_weeks']} "
                f"({share:.0%}) | {v['holdout']:.0%} of {v['holdout_weeks']} | {folds} "
                f"| ±{v['halfwidth']:.1%} |"
            )
            got = pooled.setdefault(variant, [0, 0])
            got[0] += v["future_covered"]
            got[1] += v["future_weeks"]
    lines.append("")
    for variant, (inside, weeks) in pooled.items():
        test = binomtest(inside, weeks, coverage)
        low, high = test.proportion_ci(0.95)
        lines.append(
            f"- {variant}: {inside} of {weeks} future weeks covered ({inside / weeks:.1%}; 95% "
            f"confidence interval {low:.1%} to {high:.1%}; two-sided binomial p = "
            f"{test.pvalue:.2g} against {coverage:.0%})."
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the options, train on each fleet (in parallel), print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104])
    parser.add_argument("--weeks", type=int, default=260, help="weeks the user trains on")
    parser.add_argument("--future", type=int, default=52, help="weeks forecast after them")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="cap the epochs (a quicker, reduced run)")
    parser.add_argument("--variant", action="append", help="only these variants (repeat)")
    args = parser.parse_args()
    training: dict[str, Any] = {}
    if args.epochs:
        training["epochs"] = args.epochs
    if args.variant:
        features = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
        every = {"4features": features[:4], "5features": features}
        training["variants"] = {v: every[v] for v in args.variant}
    from concurrent.futures import ProcessPoolExecutor

    n = len(args.seeds)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(
            pool.map(one_fleet, args.seeds, [args.weeks] * n, [args.future] * n, [training] * n)
        )
    print(table(results, TrainingConfig().interval_coverage))


if __name__ == "__main__":
    main()
