"""What drift compares for each column, and the season and trend expected of it.

A naive comparison of raw columns cries wolf every week: ``age_fleet`` only grows, and hours,
cycles and monthly utilisation follow the seasons. Each column is therefore turned into a
*signal* that removes what is expected:

* a rate per aircraft-day (hours, cycles, monthly hours, fleet age per aircraft-day flown) and the
  sector length (hours per cycle), so that fleet size is tested once, by ``acft``;
* minus a reference curve fitted on the training weeks by least squares: an annual and a
  half-annual harmonic for the season, plus a linear trend for the quantities that grow with age
  (fleet age, HH, predictions), extrapolated to the recent dates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hhforecast.datasets.weekly import DATE_COLUMN

__all__ = ["PREDICTION_COLUMN", "ExpectedCurve", "Signal", "signals_for"]

PREDICTION_COLUMN = "HH_pred"
DAYS_PER_YEAR = 365.25
MIN_WEEKS_FOR_SEASON = 52

Computation = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Signal:
    """One quantity compared between training and recent weeks, and how its expectation is built."""

    name: str
    label: str
    role: str  # feature, target, prediction or error
    trend: bool
    compute: Computation
    needs: tuple[str, ...]


def _ratio(numerator: str, denominator: str) -> Computation:
    def compute(frame: pd.DataFrame) -> np.ndarray:
        den = frame[denominator].to_numpy(dtype=float)
        return np.divide(
            frame[numerator].to_numpy(dtype=float),
            den,
            out=np.full(len(frame), np.nan),
            where=den > 0,
        )

    return compute


def _column(name: str) -> Computation:
    def compute(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(frame[name].to_numpy(dtype=float), dtype=np.float64)

    return compute


def _monthly_per_aircraft_day(frame: pd.DataFrame) -> np.ndarray:
    # The month's hours over the month's aircraft-days, estimated from this week's aircraft-days.
    days_in_month = pd.to_datetime(frame[DATE_COLUMN]).dt.days_in_month.to_numpy(dtype=float)
    aircraft = frame["acft"].to_numpy(dtype=float) / 7.0
    den = days_in_month * aircraft
    return np.divide(
        frame["sum_uti_mensal"].to_numpy(dtype=float),
        den,
        out=np.full(len(frame), np.nan),
        where=den > 0,
    )


_KNOWN_FEATURES: dict[str, Signal] = {
    "acft": Signal("acft", "aircraft-days/week", "feature", False, _column("acft"), ("acft",)),
    "sum_daily_hours": Signal(
        "sum_daily_hours",
        "hours/aircraft-day",
        "feature",
        False,
        _ratio("sum_daily_hours", "acft"),
        ("sum_daily_hours", "acft"),
    ),
    "Cycles": Signal(
        "Cycles",
        "cycles/aircraft-day",
        "feature",
        False,
        _ratio("Cycles", "acft"),
        ("Cycles", "acft"),
    ),
    "sum_uti_mensal": Signal(
        "sum_uti_mensal",
        "month hours/aircraft-day",
        "feature",
        False,
        _monthly_per_aircraft_day,
        ("sum_uti_mensal", "acft"),
    ),
    "age_fleet": Signal(
        "age_fleet",
        "TAH/aircraft-day",
        "feature",
        True,
        _ratio("age_fleet", "acft"),
        ("age_fleet", "acft"),
    ),
}
SECTOR_SIGNAL = Signal(
    "sector_length",
    "hours/cycle",
    "feature",
    False,
    _ratio("sum_daily_hours", "Cycles"),
    ("sum_daily_hours", "Cycles"),
)


def signals_for(columns: list[str], target: str) -> list[Signal]:
    """The signals that can be computed from `columns` (features, target, predictions)."""
    available = set(columns)
    signals: list[Signal] = []
    for name in columns:
        if name in (target, PREDICTION_COLUMN, DATE_COLUMN):
            continue
        known = _KNOWN_FEATURES.get(name)
        if known is not None and set(known.needs) <= available:
            signals.append(known)
        else:
            signals.append(Signal(name, name, "feature", False, _column(name), (name,)))
    if set(SECTOR_SIGNAL.needs) <= available:
        signals.append(SECTOR_SIGNAL)
    per_day = "acft" in available

    def level(name: str, column: str, role: str, per_day_label: str, label: str) -> Signal:
        """HH (realised or predicted), per aircraft-day when the fleet's days are known."""
        compute = _ratio(column, "acft") if per_day else _column(column)
        return Signal(name, per_day_label if per_day else label, role, True, compute, (column,))

    if target in available:
        signals.append(level(target, target, "target", f"{target}/aircraft-day", target))
    if PREDICTION_COLUMN in available:
        signals.append(
            level(
                "prediction",
                PREDICTION_COLUMN,
                "prediction",
                "predicted/aircraft-day",
                "predicted HH",
            )
        )
        if target in available:
            signals.append(
                Signal(
                    "model_error",
                    f"{target} - predicted",
                    "error",
                    False,
                    lambda f: f[target].to_numpy(float) - f[PREDICTION_COLUMN].to_numpy(float),
                    (target, PREDICTION_COLUMN),
                )
            )
    return signals


# -- the expected curve: season and trend fitted on the training weeks -------------------------


@dataclass(frozen=True)
class ExpectedCurve:
    """Least-squares season (two harmonics) and optional linear trend of a training signal."""

    origin: pd.Timestamp
    coefficients: np.ndarray
    trend: bool
    season: bool

    @classmethod
    def fit(cls, dates: pd.Series, values: np.ndarray, trend: bool) -> ExpectedCurve:
        origin = pd.Timestamp(dates.iloc[0])
        span_weeks = (pd.Timestamp(dates.iloc[-1]) - origin).days / 7
        # Under a year of history the season and a trend cannot be told apart from noise.
        season = span_weeks >= MIN_WEEKS_FOR_SEASON
        curve = cls(origin, np.zeros(0), trend and season, season)
        design = curve.design(dates)
        coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
        return cls(origin, coefficients, curve.trend, season)

    def design(self, dates: pd.Series) -> np.ndarray:
        stamps = pd.to_datetime(dates)
        columns: list[np.ndarray] = [np.ones(len(stamps))]
        if self.trend:
            columns.append(((stamps - self.origin).dt.days / DAYS_PER_YEAR).to_numpy(float))
        if self.season:
            angle = 2 * np.pi * stamps.dt.dayofyear.to_numpy(float) / DAYS_PER_YEAR
            for k in (1, 2):
                columns += [np.cos(k * angle), np.sin(k * angle)]
        return np.column_stack(columns)

    def __call__(self, dates: pd.Series) -> np.ndarray:
        return self.design(dates) @ self.coefficients
