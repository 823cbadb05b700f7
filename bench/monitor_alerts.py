"""Measure `hhforecast monitor`'s alert rule on simulated fleets: how often a healthy model
alerts (share of months), and how soon a +15% level shift in HH is flagged.

Two schedules. `--schedule once`: for each fleet seed, simulate TRAIN + FUTURE weeks, train the
5features network on the first TRAIN weeks (time split, its validation slice calibrating the 80%
interval: the fit `train` scores, not the refit on every week it publishes), then forecast the
FUTURE weeks from their real utilisation, as a planner would with a plan that came true: one
version serves two years. `--schedule monthly`: a new version every
RETRAIN_WEEKS weeks, each what `train` publishes from every week up to then (the fit on every
week, its interval from the errors of the rolling-origin folds: run_backtest and
fold_calibration, as training.py calibrates the served fit), each forecasting its weeks; the
deployment series then spans versions. Healthy: the realised HH as simulated. Shifted: the same
fleet simulated again with 15% more unscheduled items per aircraft-day from a start week on
(`FleetChange.items_factor`; several starts per fleet): the utilisation is unchanged, the
realised HH are drawn again from the higher rate (and in the monthly schedule the versions
retrained after the start learn them). The rule is the one `monitor` ships (watch/alerts.py:
z_scores and alert_weeks over the deployment's weekly z-scores); next to it, its neighbours (the
reference pooled with the interval's centre and spread as 13 or 26 weeks each, other slacks and
thresholds) and the same CUSUM told the series' true centre and spread, which bounds what any
estimate of them can do.

    .venv/bin/python bench/monitor_alerts.py [--schedule once|monthly] [--seeds 101 102 ...]
        [--cache z.json] [--jobs 2] [--write docs/benchmarks.md]

Prints a table of rules; `--schedule once` gives the table of docs/drift.md, `--schedule monthly
--write` the section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sections import write_section

from hhforecast.config import MonitoringConfig, TrainingConfig, load_settings
from hhforecast.datasets.fleet import FleetChange, FleetProfile, simulate_weekly_dataset
from hhforecast.datasets.weekly import WeeklyDataset
from hhforecast.modeling.backtest import BacktestResult, run_backtest
from hhforecast.modeling.calibration import fold_calibration
from hhforecast.modeling.evaluation import split_weeks
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import fit_network
from hhforecast.modeling.training import all_weeks_split
from hhforecast.watch.alerts import alert_weeks, cusum_alarms, z_scores

SECTION_START = "<!-- section: alerts-monthly -->"
SECTION_END = "<!-- end section: alerts-monthly -->"

TRAIN = 208
FUTURE = 104
SHIFT = 1.15
SHIFT_STARTS = (13, 26, 39, 52, 65, 78, 91)
"""Future weeks (0-based) where a shift starts: after the baseline weeks, each followed by at
least 8 weeks."""
DETECT_WEEKS = 8
FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


def fleet_forecasts(seed: int) -> pd.DataFrame:
    """The future weeks of one simulated fleet with their forecasts and 80% intervals."""
    cfg = load_settings(None).training
    frame = simulate_weekly_dataset(seed=seed, weeks=TRAIN + FUTURE, start="2019-01-07")
    x = frame[FEATURES].to_numpy(np.float64)
    y = frame["HH"].to_numpy(np.float64)
    split = split_weeks(TRAIN, cfg.test_fraction, cfg.validation_fraction, "time", cfg.seed)
    fitted = fit_network(x[:TRAIN], y[:TRAIN], split.fit, split.validation, cfg)
    share = fitted.interval_halfwidth(cfg.interval_coverage)
    predictions = fitted.predict(x[TRAIN:])
    lower, upper = interval_bounds(predictions, share, "relative")
    forecasts = pd.DataFrame(
        {
            "week": frame["date"].iloc[TRAIN:].to_numpy(),
            "actual": y[TRAIN:],
            "hh_pred": predictions,
            "hh_lower": lower,
            "hh_upper": upper,
        }
    )
    for start in SHIFT_STARTS:
        change = FleetChange(start=str(forecasts["week"].iloc[start]), items_factor=SHIFT)
        shifted = simulate_weekly_dataset(
            seed=seed,
            weeks=TRAIN + FUTURE,
            start="2019-01-07",
            profile=FleetProfile(changes=(change,)),
        )
        if not np.array_equal(shifted[FEATURES].to_numpy(np.float64), x):
            raise RuntimeError("an items change must leave the utilisation as it was")
        forecasts[f"shifted_{start}"] = shifted["HH"].to_numpy(np.float64)[TRAIN:]
    return forecasts


RETRAIN_WEEKS = 4
"""The monthly schedule: a new version every 4 weeks, refit on every week up to then."""
MONTHLY_FUTURE = 52
MONTHLY_SHIFT_STARTS = (13, 22, 31, 40)
"""Future weeks where a shift starts in the monthly schedule: one at each phase of the retrain
cycle, after the deployment's baseline weeks, each followed by at least 8 weeks."""
MONTHLY_EPOCHS = 10
"""Epochs of each fit in the monthly schedule (train's default is 300), to keep it cheap."""
VARIANT = "5features"
START = "2019-01-07"


def served_forecasts(
    x: np.ndarray, y: np.ndarray, origin: int, folds: BacktestResult, cfg: TrainingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The version `train` publishes from weeks [0, origin): the fit on every week and its
    interval from the folds' errors (training.py's served fit); its forecasts of the next
    RETRAIN_WEEKS weeks with their bounds, and whether the deep correction was kept."""
    split = all_weeks_split(origin, cfg.validation_fraction)
    fitted = fit_network(x, y, split.fit, split.validation, cfg)
    calibration = fold_calibration(folds, VARIANT, y, cfg.interval_folds, cfg.interval_coverage)
    halfwidth = (
        calibration.halfwidth if calibration else fitted.interval_halfwidth(cfg.interval_coverage)
    )
    predictions = fitted.predict(x[origin : origin + RETRAIN_WEEKS])
    lower, upper = interval_bounds(predictions, halfwidth, "relative")
    return predictions, lower, upper, bool(fitted.training["deep_correction_kept"])


def monthly_forecasts(seed: int, epochs: int = MONTHLY_EPOCHS) -> pd.DataFrame:
    """The future weeks of one fleet served by a version retrained every RETRAIN_WEEKS weeks.

    Each version is what `train` publishes from the weeks up to its origin: the rolling-origin
    folds `train` calibrates the served interval on (the last `training.interval_folds` folds of
    `training.backtest_horizon` weeks, run_backtest), then the fit on every week. Shifted: the
    same fleet with 15% more items from a start week; a version retrained after the start learns
    the shifted weeks (refit on them), and its interval is calibrated on the shifted realised HH.
    Its folds are the healthy ones: within the 8 weeks judged, every fold trains on weeks before
    the start (origin - horizon < start), so only the fit on every week and the calibration
    errors change. Shifted columns are NaN after the 8 weeks judged.
    """
    settings = load_settings(None)
    cfg = settings.training.model_copy(
        update={"epochs": epochs, "variants": {VARIANT: FEATURES}, "backtest_folds": 0}
    )
    weeks = TRAIN + MONTHLY_FUTURE
    frame = simulate_weekly_dataset(seed=seed, weeks=weeks, start=START)
    frame["date"] = pd.to_datetime(frame["date"])  # as the dataset reader gives it
    x = frame[FEATURES].to_numpy(np.float64)
    y = frame["HH"].to_numpy(np.float64)
    shifted_y = {}
    for start in MONTHLY_SHIFT_STARTS:
        change = FleetChange(str(frame["date"].iloc[TRAIN + start])[:10], items_factor=SHIFT)
        shifted = simulate_weekly_dataset(
            seed=seed, weeks=weeks, start=START, profile=FleetProfile(changes=(change,))
        )
        if not np.array_equal(shifted[FEATURES].to_numpy(np.float64), x):
            raise RuntimeError("an items change must leave the utilisation as it was")
        shifted_y[start] = shifted["HH"].to_numpy(np.float64)
    out = pd.DataFrame(
        {"week": frame["date"].iloc[TRAIN:].astype(str).str[:10].to_numpy(), "actual": y[TRAIN:]}
    )
    columns: dict[str, np.ndarray] = {
        name: np.full(MONTHLY_FUTURE, np.nan) for name in ("hh_pred", "hh_lower", "hh_upper")
    }
    columns["version"] = np.zeros(MONTHLY_FUTURE)
    columns["deep_kept"] = np.zeros(MONTHLY_FUTURE)
    for start in MONTHLY_SHIFT_STARTS:
        columns[f"shifted_{start}"] = shifted_y[start][TRAIN:]
        for name in ("hh_pred", "hh_lower", "hh_upper"):
            columns[f"shifted_{start}_{name}"] = np.full(MONTHLY_FUTURE, np.nan)
    for number, origin in enumerate(range(TRAIN, weeks, RETRAIN_WEEKS)):
        rows = slice(origin - TRAIN, origin - TRAIN + RETRAIN_WEEKS)
        known = WeeklyDataset(frame.iloc[:origin].reset_index(drop=True), Path("fleet"), "")
        folds = run_backtest(known, cfg, cfg.interval_folds, cfg.backtest_horizon, warmup_folds=0)
        pred, lower, upper, kept = served_forecasts(x, y, origin, folds, cfg)
        columns["hh_pred"][rows], columns["hh_lower"][rows], columns["hh_upper"][rows] = (
            pred,
            lower,
            upper,
        )
        columns["version"][rows] = number + 1
        columns["deep_kept"][rows] = kept
        for start in MONTHLY_SHIFT_STARTS:
            first, last = TRAIN + start, TRAIN + start + DETECT_WEEKS  # the weeks judged
            if origin + RETRAIN_WEEKS <= first or origin >= last:
                continue
            if origin > first:  # retrained on shifted weeks
                if origin - cfg.backtest_horizon >= first:
                    raise RuntimeError("a fold would train on shifted weeks")
                pred, lower, upper, _ = served_forecasts(x, shifted_y[start], origin, folds, cfg)
            keep = np.arange(origin, origin + RETRAIN_WEEKS)
            keep = keep[(keep >= first) & (keep < last)] - TRAIN
            for name, values in (("hh_pred", pred), ("hh_lower", lower), ("hh_upper", upper)):
                columns[f"shifted_{start}_{name}"][keep] = values[keep - (origin - TRAIN)]
    for start in MONTHLY_SHIFT_STARTS:  # before the start, the healthy weeks' forecasts
        for name in ("hh_pred", "hh_lower", "hh_upper"):
            columns[f"shifted_{start}_{name}"][:start] = columns[name][:start]
    return out.assign(**columns)


def months_alerted(weeks: pd.Series, alarm_rows: list[int], offset: int) -> tuple[int, int]:
    """(months holding an alarm, months) over the weeks given (row `offset` onwards)."""
    months = weeks.str[:7]
    return len({months.iloc[i - offset] for i in alarm_rows}), months.nunique()


Rule = Callable[[np.ndarray, np.ndarray], list[int]]
"""Alarm rows of a version's weekly z-scores, given also its healthy z-scores (for the oracle)."""


def shipped(rule: MonitoringConfig) -> Rule:
    """The rule `monitor` runs (it never sees the healthy z-scores)."""
    return lambda z, _healthy: [i for i, _, _ in alert_weeks(z, rule)]


def oracle(rule: MonitoringConfig) -> Rule:
    """The same CUSUM told each version's true centre and spread: its median and MAD over all
    its healthy weeks. Not available to `monitor`; it bounds what estimating them costs."""

    def alarms(z: np.ndarray, healthy: np.ndarray) -> list[int]:
        centre = float(np.median(healthy))
        spread = 1.4826 * float(np.median(np.abs(healthy - centre)))
        u = np.clip((z - centre) / spread, -rule.alert_clip, rule.alert_clip)
        found = cusum_alarms(u[rule.alert_baseline_weeks :], rule.alert_slack, rule.alert_threshold)
        return [i + rule.alert_baseline_weeks for i, _, _ in found]

    return alarms


def shifted_series(forecasts: pd.DataFrame, start: int) -> pd.DataFrame:
    """The fleet with its shift from `start`: realised HH drawn again, and in the monthly
    schedule the forecasts of the versions retrained on shifted weeks (NaN after the weeks
    judged)."""
    shifted = forecasts.assign(actual=forecasts[f"shifted_{start}"])
    if f"shifted_{start}_hh_pred" in forecasts:
        for name in ("hh_pred", "hh_lower", "hh_upper"):
            shifted[name] = forecasts[f"shifted_{start}_{name}"]
    return shifted


def measure(
    fleets: dict[int, pd.DataFrame],
    rule: Rule,
    baseline: int,
    coverage: float,
    starts: tuple[int, ...],
) -> dict[str, float]:
    """Healthy months alerted, and how soon each shift is flagged, under one rule."""
    alerted = months = 0
    delays: list[float] = []
    for forecasts in fleets.values():
        z = z_scores(forecasts, coverage)
        alarms = rule(z, z)
        # Months after the baseline weeks: the rule cannot alert in those.
        a, m = months_alerted(forecasts["week"].astype(str).iloc[baseline:], alarms, baseline)
        alerted, months = alerted + a, months + m
        for start in starts:
            shifted = shifted_series(forecasts, start)
            found = [i for i in rule(z_scores(shifted, coverage), z) if i >= start]
            delays.append(found[0] - start + 1 if found else np.inf)
    delays_arr = np.array(delays)
    return {
        "healthy_months": months,
        "healthy_months_alerted": alerted,
        "healthy_alert_rate": alerted / months,
        "shifts": len(delays),
        "caught_within_8": float(np.mean(delays_arr <= DETECT_WEEKS)),
        "median_weeks": float(np.median(delays_arr)),
        "weeks_for_80": float(np.quantile(delays_arr, 0.8, method="higher")),
    }


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a share k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def load_fleets(
    seeds: list[int], cache: Path | None, make: Callable[[int], pd.DataFrame], jobs: int
) -> dict[int, pd.DataFrame]:
    """Each seed's future weeks and forecasts: from the cache, else made (in `jobs` worker
    processes); the cache is written after each fleet, so an interrupted run resumes."""
    fleets: dict[int, pd.DataFrame] = {}
    if cache and cache.exists():
        stored = json.loads(cache.read_text())
        fleets = {int(k): pd.DataFrame(v) for k, v in stored.items()}
    todo = [seed for seed in seeds if seed not in fleets]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1))) as pool:
        futures = {pool.submit(make, seed): seed for seed in todo}
        for future in as_completed(futures):
            seed = futures[future]
            fleets[seed] = future.result()
            print(
                f"fleet {seed}: trained and forecast ({time.perf_counter() - started:.0f} s "
                "since the start)",
                flush=True,
            )
            if cache:
                text = json.dumps({k: v.to_dict("list") for k, v in fleets.items()})
                cache.write_text(text)
    return {s: fleets[s] for s in seeds}


def describe(fleets: dict[int, pd.DataFrame], coverage: float) -> None:
    """Each fleet's z-scores: centre, spread, autocorrelation, share inside the interval."""
    for seed, forecasts in fleets.items():
        z = z_scores(forecasts, coverage)
        mad = 1.4826 * np.median(np.abs(z - np.median(z)))
        print(
            f"seed {seed}: z median {np.median(z):+.2f} MAD-sd {mad:.2f} sd {np.std(z):.2f} "
            f"lag-1 corr {np.corrcoef(z[:-1], z[1:])[0, 1]:+.2f}; "
            f"inside 80% interval {np.mean(np.abs(z) <= 1.2816):.0%}"
        )


def rule_table(
    fleets: dict[int, pd.DataFrame], configured: MonitoringConfig, coverage: float, starts: tuple
) -> list[tuple[str, dict[str, float]]]:
    """The configured rule and its neighbours, each measured on the fleets."""
    pooled = {
        f"centre and spread pooled with the interval's, {k} weeks each": {
            "alert_centre_prior_weeks": float(k),
            "alert_prior_weeks": float(k),
        }
        for k in (13, 26)
    }
    variants = {
        "configured": configured,
        **{
            name: configured.model_copy(update=update)
            for name, update in {
                "reference's median, spread pooled with the interval's over 13 weeks (the rule "
                "shipped until 2026-12)": {
                    "alert_centre_prior_weeks": 0.0,
                    "alert_prior_weeks": 13.0,
                },
                **pooled,
            }.items()
            if configured.model_copy(update=update) != configured
        },
        **{
            f"slack {k}, threshold {h}": configured.model_copy(
                update={"alert_slack": k, "alert_threshold": h}
            )
            for k, h in ((0.5, 4.0), (0.5, 5.0), (0.75, 3.0), (0.75, 4.0), (1.0, 3.0))
        },
        "no guard (reference: the baseline weeks only)": configured.model_copy(
            update={"alert_guard_weeks": 10_000}
        ),
        "no clip": configured.model_copy(update={"alert_clip": 1e9}),
        "earlier rule: mean of the baseline weeks, interval's spread, slack 0.5, threshold 4": (
            configured.model_copy(
                update={
                    "alert_guard_weeks": 10_000,
                    "alert_prior_weeks": 1e9,
                    "alert_centre_prior_weeks": 0.0,
                    "alert_clip": 1e9,
                    "alert_slack": 0.5,
                    "alert_threshold": 4.0,
                }
            )
        ),
    }
    rows = [(name, shipped(rule), rule) for name, rule in variants.items()]
    told = "told the series' true centre and spread"
    rows.append((f"configured, {told}", oracle(configured), configured))
    looser = variants["slack 0.5, threshold 4.0"]
    rows.append((f"slack 0.5, threshold 4.0, {told}", oracle(looser), looser))
    return [
        (name, measure(fleets, rule, config.alert_baseline_weeks, coverage, starts))
        for name, rule, config in rows
    ]


def render(
    results: list[tuple[str, dict[str, float]]],
    fleets: dict[int, pd.DataFrame],
    command: str,
    made: str,
    epochs: int,
) -> str:
    """The monthly schedule's section of docs/benchmarks.md."""
    seeds = sorted(fleets)
    kept = float(np.mean([f["deep_kept"].mean() for f in fleets.values()]))
    versions = int(np.mean([f["version"].max() for f in fleets.values()]))
    lines = []
    for name, r in results:
        low, high = wilson(r["healthy_months_alerted"], r["healthy_months"])
        caught = round(r["caught_within_8"] * r["shifts"])
        c_low, c_high = wilson(caught, r["shifts"])
        median = f"{r['median_weeks']:.0f}" if np.isfinite(r["median_weeks"]) else "> 8"
        name = f"**{name}**" if name == "configured" else name
        lines.append(
            f"| {name} | {r['healthy_alert_rate']:.1%} of {r['healthy_months']:.0f} "
            f"({low:.1%}-{high:.1%}) | {r['caught_within_8']:.0%} of {r['shifts']} "
            f"({c_low:.0%}-{c_high:.0%}) | {median} |"
        )
    table = "\n".join(lines)
    load = os.getloadavg()[0]
    configured = dict(results)["configured"]
    healthy, caught = configured["healthy_alert_rate"], configured["caught_within_8"]
    verdict = (
        f"The configured rule: {healthy:.1%} of healthy months alerted, goal at most 5% "
        f"{'met' if healthy <= 0.05 else 'not met'}; {caught:.0%} of shifts flagged within 8 "
        f"weeks, goal at least 60% {'met' if caught >= 0.6 else 'not met'}."
    )
    return f"""{SECTION_START}
## The alert rule under a monthly retrain

`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
{datetime.now(UTC):%Y-%m-%d}, load average {load:.1f} at the end; {made}.
{len(seeds)} simulated fleets (seeds {seeds[0]} to {seeds[-1]}), each trained on {TRAIN} weeks,
then retrained every {RETRAIN_WEEKS} weeks on every week up to then, for {MONTHLY_FUTURE} weeks
({versions} versions): each version is what `train` publishes (the fit on every week; its 80%
interval from the errors of the last `training.interval_folds` rolling-origin folds,
`run_backtest` and `fold_calibration`), with {epochs} epochs instead of 300 to keep the bench
cheap (the deep correction passed its test in {kept:.0%} of the served weeks; in the others the
network is least squares whatever the epochs; with 300 it might pass more often). Each version
forecasts its {RETRAIN_WEEKS} weeks from their real utilisation. `monitor` judges the deployment
series (the forecast served each week, whichever version), with no alert in its first 13 weeks.
Healthy: months alerted after those 13 weeks. Shifted: 15% more unscheduled items per
aircraft-day from one of {len(MONTHLY_SHIFT_STARTS)} start weeks
({", ".join(map(str, MONTHLY_SHIFT_STARTS))} weeks after the first version; one at each phase of
the retrain cycle); the versions retrained after a start learn the shifted weeks and calibrate
on them. Goal: at most 5% of healthy months alerted, at least 60% of shifts flagged within
8 weeks. 95% Wilson intervals in brackets.

| rule | healthy months with an alert | +15% flagged within 8 weeks | median weeks to flag |
|---|---|---|---|
{table}

{verdict}
{SECTION_END}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", choices=("once", "monthly"), default="once")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--cache", type=Path, default=None, help="Keep the forecasts here.")
    parser.add_argument("--jobs", type=int, default=2, help="Worker processes training fleets.")
    parser.add_argument("--epochs", type=int, default=MONTHLY_EPOCHS, help="Monthly schedule.")
    parser.add_argument("--write", type=Path, default=None, help="Update this Markdown file.")
    parser.add_argument("--command", default="make bench-alerts", help=argparse.SUPPRESS)
    parser.add_argument("--made", default=None, help=argparse.SUPPRESS)  # how a cache was made
    args = parser.parse_args()
    monthly = args.schedule == "monthly"
    seeds = args.seeds or list(range(101, 107 if monthly else 149))
    make = functools.partial(monthly_forecasts, epochs=args.epochs) if monthly else fleet_forecasts
    started = time.perf_counter()
    cached = (
        set(json.loads(args.cache.read_text())) if args.cache and args.cache.exists() else set()
    )
    fleets = load_fleets(seeds, args.cache, make, args.jobs)
    todo = [s for s in seeds if str(s) not in cached]
    made = (
        f"{len(todo)} fleets trained and forecast in {(time.perf_counter() - started) / 60:.0f} "
        f"min with {args.jobs} worker processes"
        if todo
        else args.made or "the forecasts read from `--cache` (made by an earlier run)"
    )
    settings = load_settings(None)
    coverage = settings.training.interval_coverage
    describe(fleets, coverage)
    starts = MONTHLY_SHIFT_STARTS if monthly else SHIFT_STARTS
    future = MONTHLY_FUTURE if monthly else FUTURE
    results = rule_table(fleets, settings.monitoring, coverage, starts)
    print(f"\n{len(fleets)} fleets, {future} future weeks each, {len(starts)} shifts each")
    print("| rule | healthy months alerted | +15% flagged within 8 weeks | median weeks | 80% by |")
    print("|---|---|---|---|---|")
    for name, r in results:
        print(
            f"| {name} | {r['healthy_alert_rate']:.1%} of {r['healthy_months']:.0f} | "
            f"{r['caught_within_8']:.0%} of {r['shifts']} | {r['median_weeks']:.0f} | "
            f"{r['weeks_for_80']:.0f} weeks |"
        )
    if monthly and args.write is not None:
        write_section(args.write, render(results, fleets, args.command, made, args.epochs),
                      "alerts-monthly")  # fmt: skip
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
