"""Measure `hhforecast monitor`'s alert rule on simulated fleets: how often a healthy model
alerts (share of months), and how soon a +15% level shift in HH is flagged.

For each fleet seed: simulate TRAIN + FUTURE weeks, train the 5features network on the first
TRAIN weeks exactly as `hhforecast train` does (time split, its validation slice calibrating the
80% interval), then forecast the FUTURE weeks from their real utilisation, as a planner would
with a plan that came true. Healthy: the realised HH as simulated. Shifted: the same fleet
simulated again with 15% more unscheduled items per aircraft-day from a start week on
(`FleetChange.items_factor`; several starts per fleet): the utilisation, and so the forecasts,
are unchanged, the realised HH are drawn again from the higher rate. The rule is the one
`monitor` ships (watch/monitor.py: z_scores and alert_weeks), run over the weekly z-scores; next
to it, the same CUSUM told each version's true centre and spread, which bounds what any
estimate of them can do.

    .venv/bin/python bench/monitor_alerts.py [--seeds 101 102 ...] [--cache z.json]

Prints a table of rules; the configured row is what docs/drift.md reports.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast.config import MonitoringConfig, load_settings
from hhforecast.datasets.fleet import FleetChange, FleetProfile, simulate_weekly_dataset
from hhforecast.modeling.evaluation import split_weeks
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import fit_network
from hhforecast.watch.monitor import alert_weeks, cusum_alarms, z_scores

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


def measure(
    fleets: dict[int, pd.DataFrame], rule: Rule, baseline: int, coverage: float
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
        for start in SHIFT_STARTS:
            shifted = forecasts.assign(actual=forecasts[f"shifted_{start}"])
            found = [i for i in rule(z_scores(shifted, coverage), z) if i >= start]
            delays.append(found[0] - start + 1 if found else np.inf)
    delays_arr = np.array(delays)
    return {
        "healthy_months": months,
        "healthy_alert_rate": alerted / months,
        "shifts": len(delays),
        "caught_within_8": float(np.mean(delays_arr <= DETECT_WEEKS)),
        "median_weeks": float(np.median(delays_arr)),
        "weeks_for_80": float(np.quantile(delays_arr, 0.8, method="higher")),
    }


def load_fleets(seeds: list[int], cache: Path | None) -> dict[int, pd.DataFrame]:
    """Each seed's future weeks and forecasts: from the cache, else trained and forecast."""
    fleets: dict[int, pd.DataFrame] = {}
    if cache and cache.exists():
        stored = json.loads(cache.read_text())
        fleets = {int(k): pd.DataFrame(v) for k, v in stored.items()}
    for seed in seeds:
        if seed in fleets:
            continue
        started = time.perf_counter()
        fleets[seed] = fleet_forecasts(seed)
        print(f"fleet {seed}: trained and forecast in {time.perf_counter() - started:.0f} s")
        if cache:
            cache.write_text(json.dumps({k: v.to_dict("list") for k, v in fleets.items()}))
    return {s: fleets[s] for s in seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 149)))
    parser.add_argument("--cache", type=Path, default=None, help="Keep the forecasts here.")
    args = parser.parse_args()
    fleets = load_fleets(args.seeds, args.cache)
    settings = load_settings(None)
    coverage = settings.training.interval_coverage
    for seed, forecasts in fleets.items():
        z = z_scores(forecasts, coverage)
        mad = 1.4826 * np.median(np.abs(z - np.median(z)))
        print(
            f"seed {seed}: z median {np.median(z):+.2f} MAD-sd {mad:.2f} sd {np.std(z):.2f} "
            f"lag-1 corr {np.corrcoef(z[:-1], z[1:])[0, 1]:+.2f}; "
            f"inside 80% interval {np.mean(np.abs(z) <= 1.2816):.0%}"
        )
    configured = settings.monitoring
    variants = {
        "configured": configured,
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
                    "alert_clip": 1e9,
                    "alert_slack": 0.5,
                    "alert_threshold": 4.0,
                }
            )
        ),
    }
    print(f"\n{len(fleets)} fleets, {FUTURE} future weeks each, {len(SHIFT_STARTS)} shifts each")
    print("| rule | healthy months alerted | +15% flagged within 8 weeks | median weeks | 80% by |")
    print("|---|---|---|---|---|")
    rows = [(name, shipped(rule), rule) for name, rule in variants.items()]
    told = "told each version's true centre and spread"
    rows.append((f"configured, {told}", oracle(configured), configured))
    looser = variants["slack 0.5, threshold 4.0"]
    rows.append((f"slack 0.5, threshold 4.0, {told}", oracle(looser), looser))
    for name, rule, config in rows:
        r = measure(fleets, rule, config.alert_baseline_weeks, coverage)
        print(
            f"| {name} | {r['healthy_alert_rate']:.1%} of {r['healthy_months']:.0f} | "
            f"{r['caught_within_8']:.0%} of {r['shifts']} | {r['median_weeks']:.0f} | "
            f"{r['weeks_for_80']:.0f} weeks |"
        )


if __name__ == "__main__":
    main()
