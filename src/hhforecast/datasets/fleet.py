"""A fleet simulated day by day, aggregated to the weekly dataset the way the real one was built.

Two raw logs come out of the simulation, as in the original system:

* utilisation: one row per aircraft-day in service (date, registration, hours, cycles, TAH, TAC);
* unscheduled events: one row per item (date, registration, ATA chapter, category, HH).

`weekly_dataset` drops PILOT and CABIN items and aggregates both logs to one row per week with
the columns of the brief. Demand grows with hours, cycles and age; item HH are heavy-tailed.
Flying follows the holiday seasons strongly enough, and the items are many and small enough,
that a week's utilisation explains a fair share of its HH, as in a real fleet's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

from hhforecast.datasets.build import aggregate_weeks, weekly_csv_frame
from hhforecast.datasets.grid import monday_of

__all__ = [
    "SAMPLE_START",
    "FleetChange",
    "FleetProfile",
    "SimulatedFleet",
    "expected_weekly_hh",
    "mean_item_hh",
    "raw_logs",
    "simulate_fleet",
    "simulate_weekly_dataset",
    "weekly_dataset",
]

ByWeek = TypeVar("ByWeek", pd.DataFrame, pd.Series)

SAMPLE_SEED = 7
SAMPLE_WEEKS = 260
SAMPLE_START = "2019-01-07"

CATEGORIES = np.array(["PILOT", "CABIN", "MAINT", "FINDING", "REPLACEMENT"])
CATEGORY_SHARE = np.array([0.25, 0.20, 0.27, 0.18, 0.10])
ATA_CHAPTERS = np.array([21, 24, 25, 27, 28, 29, 30, 32, 33, 34, 35, 36, 38, 49, 52, 53, 71, 72])
COUNTED = ~np.isin(CATEGORIES, ["PILOT", "CABIN"])
HEAVY_SHARE = 0.002
HEAVY_PARETO_SHAPE = 2.2
HEAVY_SCALE = 8.0
HEAVY_FLOOR = 5.0


@dataclass(frozen=True)
class FleetChange:
    """A change of how the fleet is operated from a date on (used to simulate real drift)."""

    start: str
    aircraft_removed: int = 0
    hours_factor: float = 1.0
    sector_factor: float = 1.0
    items_factor: float = 1.0
    """Multiplies the unscheduled items each aircraft-day brings (a change of wear, of the
    reliability programme or of how findings are written up): HH move, utilisation does not."""


@dataclass(frozen=True)
class FleetProfile:
    """How a fleet is flown; the defaults give a ~37-aircraft 737NG-like fleet."""

    aircraft: int = 37
    daily_hours: float = 9.6
    sector_hours: float = 1.55
    initial_tah_mean: float = 36_000.0
    initial_tah_spread: float = 12_000.0
    items_per_day: float = 2.0
    item_hh_log_mean: float = 0.9
    item_hh_log_sigma: float = 0.9
    changes: tuple[FleetChange, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SimulatedFleet:
    """The two raw logs of a simulated fleet."""

    utilisation: pd.DataFrame
    events: pd.DataFrame


def simulate_fleet(
    seed: int = SAMPLE_SEED,
    weeks: int = SAMPLE_WEEKS,
    start: str = SAMPLE_START,
    profile: FleetProfile | None = None,
    fleet_start: str | None = None,
) -> SimulatedFleet:
    """Simulate utilisation and unscheduled-event logs for `weeks` weeks from Monday `start`.

    The fleet enters service at `start`, or at `fleet_start` when that is earlier: the weeks
    from `start` on are then the continuation of the fleet that began at `fleet_start` (the
    same aircraft, hours and ages as a longer simulation from `fleet_start`), and the logs hold
    only the calendar months around the weeks asked for.
    """
    profile = profile or FleetProfile()
    draws = _Draws(seed)
    first_week = pd.Timestamp(start).to_period("W-SUN").start_time
    last_day = first_week + pd.Timedelta(days=7 * weeks - 1)
    origin = first_week
    if fleet_start is not None:
        origin = min(origin, pd.Timestamp(fleet_start).to_period("W-SUN").start_time)
    # Whole calendar months so that monthly utilisation of the first and last weeks is complete.
    days = pd.date_range(origin.replace(day=1), last_day + pd.offsets.MonthEnd(0), freq="D")
    n_days, n_acft = len(days), profile.aircraft

    in_service = _service_calendar(draws, days, n_acft, profile)

    doy = days.dayofyear.to_numpy()
    # Brazilian holiday peaks (January, July) and dips in the low seasons: the schedule flies
    # some 8% more or less per aircraft-day across the half-year, 4% across the year.
    season = (
        1.0
        + 0.08 * np.cos(4 * np.pi * (doy - 15) / 365.25)
        + 0.04 * np.cos(2 * np.pi * (doy - 15) / 365.25)
    )
    hours_factor = np.ones(n_days)
    sector_factor = np.ones(n_days)
    for change in profile.changes:
        after = days >= pd.Timestamp(change.start)
        hours_factor[after] *= change.hours_factor
        sector_factor[after] *= change.sector_factor

    tail_hours = draws.tails.normal(1.0, 0.05, n_acft)
    tail_sector = draws.tails.normal(1.0, 0.08, n_acft)
    daily_hours = (
        profile.daily_hours
        * season[:, None]
        * hours_factor[:, None]
        * tail_hours[None, :]
        * draws.hours.gamma(40.0, 1 / 40.0, (n_days, n_acft))
    )
    daily_hours = np.clip(daily_hours, 1.5, 16.0) * in_service
    sector = profile.sector_hours * sector_factor[:, None] * tail_sector[None, :]
    cycles = np.where(
        in_service,
        np.maximum(
            1, np.rint(daily_hours / sector * draws.sectors.gamma(30.0, 1 / 30.0, (n_days, n_acft)))
        ),
        0,
    )

    tah0 = np.clip(
        draws.tails.normal(profile.initial_tah_mean, profile.initial_tah_spread, n_acft),
        4_000,
        80_000,
    )
    tah = tah0[None, :] + np.vstack([np.zeros(n_acft), np.cumsum(daily_hours, axis=0)[:-1]])
    tac = np.rint(tah0 / 1.7)[None, :] + np.vstack(
        [np.zeros(n_acft), np.cumsum(cycles, axis=0)[:-1]]
    )

    day_idx, acft_idx = np.nonzero(in_service)
    regs = np.array([f"PR-G{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(n_acft)])
    utilisation = pd.DataFrame(
        {
            "date": days[day_idx],
            "registration": regs[acft_idx],
            "hours": np.round(daily_hours[day_idx, acft_idx], 2),
            "cycles": cycles[day_idx, acft_idx].astype(int),
            "TAH": np.round(tah[day_idx, acft_idx], 1),
            "TAC": tac[day_idx, acft_idx].astype(int),
        }
    )
    events = _unscheduled_events(draws, utilisation, profile)
    if origin < first_week:
        first_day = first_week.replace(day=1)
        utilisation = utilisation[utilisation["date"] >= first_day].reset_index(drop=True)
        events = events[events["date"] >= first_day].reset_index(drop=True)
    return SimulatedFleet(utilisation=utilisation, events=events)


class _Draws:
    """One random stream per kind of draw, so that the same seed with more weeks extends the
    same fleet: every stream is drawn day by day (or item by item) in order, and a longer
    simulation only draws further along each stream."""

    def __init__(self, seed: int) -> None:
        streams = np.random.SeedSequence(seed).spawn(11)
        self._check_lengths = streams[10]
        (
            self.tails,
            self.checks,
            self.aog,
            self.hours,
            self.sectors,
            self.counts,
            self.item_hh,
            self.heavy,
            self.ata,
            self.category,
        ) = (np.random.default_rng(s) for s in streams[:10])

    def check_lengths(self, n_acft: int) -> list[np.random.Generator]:
        """A stream per aircraft for the length of its successive C-checks."""
        return [np.random.default_rng(s) for s in self._check_lengths.spawn(n_acft)]


def _service_calendar(
    draws: _Draws, days: pd.DatetimeIndex, n_acft: int, profile: FleetProfile
) -> np.ndarray:
    n_days = len(days)
    service = np.ones((n_days, n_acft), dtype=bool)
    lengths = draws.check_lengths(n_acft)
    for a in range(n_acft):
        # A-checks: a night-and-day stop roughly every two months, staggered between tails.
        first, period = int(draws.checks.integers(0, 60)), int(draws.checks.integers(55, 66))
        service[first:n_days:period, a] = False
        # C-checks: about three weeks on the ground every two years.
        first, period = int(draws.checks.integers(0, 730)), int(draws.checks.integers(700, 760))
        for d in range(first, n_days, period):
            service[d : d + int(lengths[a].integers(18, 26)), a] = False
    # AOG and other unplanned days out of service.
    service &= draws.aog.random((n_days, n_acft)) > 0.008
    for change in profile.changes:
        if change.aircraft_removed:
            after = days >= pd.Timestamp(change.start)
            service[np.ix_(after, np.arange(n_acft - change.aircraft_removed, n_acft))] = False
    return service


def _item_rate(utilisation: pd.DataFrame, profile: FleetProfile) -> np.ndarray:
    """Expected unscheduled items (every category) of each aircraft-day in service."""
    hours = utilisation["hours"].to_numpy()
    cycles = utilisation["cycles"].to_numpy()
    tah = utilisation["TAH"].to_numpy()
    items_factor = np.ones(len(utilisation))
    for change in profile.changes:
        items_factor[(utilisation["date"] >= pd.Timestamp(change.start)).to_numpy()] *= (
            change.items_factor
        )
    # Wear grows with hours and cycles; ageing accelerates it, and very long days add findings.
    return np.asarray(
        profile.items_per_day
        * items_factor
        * (hours / 9.6) ** 0.5
        * (cycles / 5.8) ** 0.45
        * (tah / 40_000.0) ** 0.8
        * (1.0 + 0.25 * np.clip(hours - 11.0, 0.0, None))
    )


def mean_item_hh(profile: FleetProfile) -> float:
    """Expected HH of one unscheduled item: the lognormal mean, lifted by the rare heavy items."""
    lognormal_mean = np.exp(profile.item_hh_log_mean + profile.item_hh_log_sigma**2 / 2)
    # numpy's pareto(a) is Lomax-distributed, with mean 1 / (a - 1).
    heavy_factor = HEAVY_SCALE / (HEAVY_PARETO_SHAPE - 1) + HEAVY_FLOOR
    return float(lognormal_mean * (1 + HEAVY_SHARE * (heavy_factor - 1)))


def _unscheduled_events(
    draws: _Draws, utilisation: pd.DataFrame, profile: FleetProfile
) -> pd.DataFrame:
    counts = draws.counts.poisson(_item_rate(utilisation, profile))
    rows = np.repeat(np.arange(len(utilisation)), counts)
    n_items = len(rows)
    hh = draws.item_hh.lognormal(profile.item_hh_log_mean, profile.item_hh_log_sigma, n_items)
    # Rare heavy items (structural findings, engine removals) make the right tail heavier.
    # Each item draws its own pair, so that the k-th item's draws never depend on how many
    # items follow it.
    heavy_draws = draws.heavy.random((n_items, 2))
    heavy = heavy_draws[:, 0] < HEAVY_SHARE
    # Lomax (numpy's pareto) by inversion of its CDF: (1 - u)^(-1/a) - 1.
    lomax = (1.0 - heavy_draws[heavy, 1]) ** (-1.0 / HEAVY_PARETO_SHAPE) - 1.0
    hh[heavy] *= lomax * HEAVY_SCALE + HEAVY_FLOOR
    return pd.DataFrame(
        {
            "date": utilisation["date"].to_numpy()[rows],
            "registration": utilisation["registration"].to_numpy()[rows],
            "ata": draws.ata.choice(ATA_CHAPTERS, n_items),
            "category": draws.category.choice(CATEGORIES, n_items, p=CATEGORY_SHARE),
            "HH": np.round(hh, 2),
        }
    )


def _monday(dates: pd.Series) -> pd.Series:
    """The Monday starting each date's week (the dataset's `date`)."""
    return monday_of(dates)


def _simulated_weeks(by_week: ByWeek, start: str, weeks: int) -> ByWeek:
    """The `weeks` weeks from the one holding `start` (the logs span whole months around them)."""
    first_week = pd.Timestamp(start).to_period("W-SUN").start_time
    return by_week.loc[first_week : first_week + pd.Timedelta(weeks=weeks - 1)]


def raw_logs(fleet: SimulatedFleet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two logs as an airline exports them, under the default column names of
    `dataset.utilization` and `dataset.events` (docs/data.md); ISO dates."""
    util = fleet.utilisation
    utilisation = pd.DataFrame(
        {
            "Dep. Date": util["date"].dt.strftime("%Y-%m-%d"),
            "A/C": util["registration"],
            "Hours": util["hours"],
            "Cycles": util["cycles"],
            "TAH": util["TAH"],
            "TAC": util["TAC"],
        }
    )
    ev = fleet.events
    events = pd.DataFrame(
        {
            "date": ev["date"].dt.strftime("%Y-%m-%d"),
            "A/C": ev["registration"],
            "ATA": ev["ata"],
            "category": ev["category"],
            "HH": ev["HH"],
        }
    )
    return utilisation, events


def weekly_dataset(fleet: SimulatedFleet, weeks: int, start: str = SAMPLE_START) -> pd.DataFrame:
    """Aggregate the raw logs to one row per week with the dataset's columns, by the same rules
    as `hhforecast dataset build` (PILOT and CABIN items left out)."""
    days = fleet.utilisation.rename(columns={"registration": "aircraft", "TAH": "tah"})
    events = fleet.events.rename(columns={"registration": "aircraft", "HH": "hh"})
    weekly, _ = aggregate_weeks(days, events, list(CATEGORIES[~COUNTED]))
    return weekly_csv_frame(_simulated_weeks(weekly, start, weeks))


def expected_weekly_hh(
    fleet: SimulatedFleet,
    weeks: int,
    start: str = SAMPLE_START,
    profile: FleetProfile | None = None,
) -> pd.Series:
    """The HH each week is expected to bring, given how the fleet flew it (indexed by week).

    This is the best forecast any model could make from the fleet's own utilisation: what is left
    between it and the realised HH is the noise of the item draws. Only a simulation knows it.
    """
    profile = profile or FleetProfile()
    util = fleet.utilisation
    counted_share = CATEGORY_SHARE[COUNTED].sum()
    per_day = _item_rate(util, profile) * counted_share * mean_item_hh(profile)
    expected = pd.Series(per_day, index=_monday(util["date"]).to_numpy()).groupby(level=0).sum()
    expected = _simulated_weeks(expected, start, weeks)
    expected.index = pd.DatetimeIndex(expected.index).strftime("%Y-%m-%d")
    return expected.rename("HH_expected")


def simulate_weekly_dataset(
    seed: int = SAMPLE_SEED,
    weeks: int = SAMPLE_WEEKS,
    start: str = SAMPLE_START,
    profile: FleetProfile | None = None,
    fleet_start: str | None = None,
) -> pd.DataFrame:
    """Simulate a fleet and return its weekly dataset in one call."""
    return weekly_dataset(simulate_fleet(seed, weeks, start, profile, fleet_start), weeks, start)
