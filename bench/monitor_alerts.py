"""Measure `hhforecast monitor`'s alert rule on simulated fleets: how often a healthy model
alerts (share of months), and how soon a +15% level shift in HH is flagged.

For each fleet seed: simulate TRAIN + FUTURE weeks, train the 5features network on the first
TRAIN weeks exactly as `hhforecast train` does (time split, its validation slice calibrating the
80% interval), then forecast the FUTURE weeks from their real utilisation, as a planner would
with a plan that came true. Healthy: the realised HH as simulated. Shifted: realised HH × 1.15
from a start week on (several starts per fleet). The rule is the one `monitor` ships
(watch/monitor.py: z_scores and cusum_alarms), run over the weekly z-scores.

    .venv/bin/python bench/monitor_alerts.py [--seeds 1 2 3 ...] [--cache z.json]

Prints the rates for a grid of thresholds; the configured threshold's row is what
docs/drift.md reports.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast.config import load_settings
from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.modeling.evaluation import split_weeks
from hhforecast.modeling.inference import interval_bounds
from hhforecast.modeling.network import fit_network
from hhforecast.watch.monitor import alert_weeks, z_scores

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
    return pd.DataFrame(
        {
            "week": frame["date"].iloc[TRAIN:].to_numpy(),
            "actual": y[TRAIN:],
            "hh_pred": predictions,
            "hh_lower": lower,
            "hh_upper": upper,
        }
    )


def months_alerted(weeks: pd.Series, alarm_rows: list[int], offset: int) -> tuple[int, int]:
    """(months holding an alarm, months) over the weeks given (row `offset` onwards)."""
    months = weeks.str[:7]
    return len({months.iloc[i - offset] for i in alarm_rows}), months.nunique()


def measure(
    fleets: dict[int, pd.DataFrame], rule: tuple[float, float, int], coverage: float
) -> dict[str, float]:
    """Healthy months alerted, and how soon each shift is flagged, under one rule."""
    baseline = rule[2]
    alerted = months = 0
    delays: list[float] = []
    for forecasts in fleets.values():
        z = z_scores(forecasts, coverage)
        alarms = [i for i, _, _ in alert_weeks(z, *rule)]
        # Months after the baseline weeks: the rule cannot alert in those.
        a, m = months_alerted(forecasts["week"].astype(str).iloc[baseline:], alarms, baseline)
        alerted, months = alerted + a, months + m
        for start in SHIFT_STARTS:
            shifted = forecasts.copy()
            shifted.loc[start:, "actual"] *= SHIFT
            found = [i for i, _, _ in alert_weeks(z_scores(shifted, coverage), *rule) if i >= start]
            delays.append(found[0] - start + 1 if found else np.inf)
    delays_arr = np.array(delays)
    return {
        "healthy_months": months,
        "healthy_alert_rate": alerted / months,
        "shifts": len(delays),
        "caught_within_8": float(np.mean(delays_arr <= DETECT_WEEKS)),
        "median_weeks": float(np.median(delays_arr)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 113)))
    parser.add_argument("--cache", type=Path, default=None, help="Keep the forecasts here.")
    args = parser.parse_args()
    fleets: dict[int, pd.DataFrame] = {}
    if args.cache and args.cache.exists():
        stored = json.loads(args.cache.read_text())
        fleets = {int(k): pd.DataFrame(v) for k, v in stored.items()}
    for seed in args.seeds:
        if seed in fleets:
            continue
        started = time.perf_counter()
        fleets[seed] = fleet_forecasts(seed)
        print(f"fleet {seed}: trained and forecast in {time.perf_counter() - started:.0f} s")
        if args.cache:
            args.cache.write_text(
                json.dumps({k: v.to_dict("list") for k, v in fleets.items()}, default=str)
            )
    fleets = {s: fleets[s] for s in args.seeds}
    settings = load_settings(None)
    coverage = settings.training.interval_coverage
    for seed, forecasts in fleets.items():
        z = z_scores(forecasts, coverage)
        inside = np.mean(np.abs(z) <= 1.2816)
        print(
            f"seed {seed}: z mean {np.nanmean(z):+.2f} sd {np.nanstd(z):.2f} "
            f"lag-1 corr {np.corrcoef(z[:-1], z[1:])[0, 1]:+.2f}; inside 80% interval {inside:.0%}"
        )
    m = settings.monitoring
    configured = (m.alert_slack, m.alert_threshold, m.alert_baseline_weeks)
    print(f"\n{len(fleets)} fleets, {FUTURE} future weeks each")
    print(
        "slack | threshold | baseline | healthy months alerted | +15% caught within 8 wk | median"
    )
    for rule in sorted(
        {configured, *((k, h, b) for k in (0.25, 0.5, 0.75) for h in (3, 4, 5, 6) for b in (0, 13))}
    ):
        r = measure(fleets, rule, coverage)
        mark = " (configured)" if rule == configured else ""
        print(
            f"{rule[0]:5.2f} | {rule[1]:9.1f} | {rule[2]:8d} | {r['healthy_alert_rate']:6.1%} of "
            f"{r['healthy_months']:.0f} | {r['caught_within_8']:6.1%} of {r['shifts']} | "
            f"{r['median_weeks']:.0f}{mark}"
        )


if __name__ == "__main__":
    main()
