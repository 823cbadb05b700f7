"""Production against the challenger, on the weeks both forecast before they were known.

Every forecast logged for production has the challenger's forecast of the same request beside it
(role ``challenger``, same time, week and source). Pairing the two on the judged forecasts of each
realised week (the latest issued before the week began, as `monitor` judges) gives the evidence a
gated promotion can decide on: two models' errors on the same weeks, forecast with the inputs the
planners gave before those weeks happened, never a holdout either model could have tuned on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hhforecast.gate.significance import PairScore, score_pair

__all__ = ["ChallengeComparison", "compare_challenger", "paired_weeks"]

PAIR_KEYS = ["week", "source", "logged_at"]


def paired_weeks(matched: pd.DataFrame, production: str, challenger: str) -> pd.DataFrame:
    """One row per realised week: production's and the challenger's forecast of the same request
    (the latest issued before the week began; weeks forecast only later are left out), with
    the realised HH.

    `matched` is the judged log joined to the realised weeks (`actual`), both roles."""
    role = matched["role"] if "role" in matched.columns else "production"
    ours = matched[(role == "production") & (matched["version"] == production)]
    theirs = matched[(role == "challenger") & (matched["version"] == challenger)]
    columns = [*PAIR_KEYS, "id", "hh_pred", "hh_lower", "hh_upper", "horizon"]
    pairs = ours[[*columns, "actual"]].merge(
        theirs[columns], on=PAIR_KEYS, suffixes=("", "_challenger")
    )
    # Only forecasts issued before their week began: a week forecast once it was under way (or
    # over, by a version trained since) is no evidence of forecasting the future.
    pairs = pairs[pairs["logged_at"].astype(str) < pairs["week"]]
    pairs = pairs.sort_values(["logged_at", "id"]).drop_duplicates("week", keep="last")
    return pairs.sort_values("week").reset_index(drop=True)


def _coverage(pairs: pd.DataFrame, suffix: str) -> float:
    lower = pairs[f"hh_lower{suffix}"].to_numpy(float)
    upper = pairs[f"hh_upper{suffix}"].to_numpy(float)
    actual = pairs["actual"].to_numpy(float)
    known = np.isfinite(lower) & np.isfinite(upper)
    if not known.any():
        return math.nan
    return float(np.mean((lower[known] <= actual[known]) & (actual[known] <= upper[known])))


@dataclass(frozen=True)
class ChallengeGroup:
    """Both models' errors on one group of paired weeks (all of them, a month, a horizon)."""

    group: str
    weeks: int
    production: dict[str, float]
    challenger: dict[str, float]
    statistic: float | None
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _group(name: str, pairs: pd.DataFrame, features: int) -> tuple[ChallengeGroup, PairScore]:
    actual = pairs["actual"].to_numpy(float)
    pair = score_pair(
        actual,
        pairs["hh_pred_challenger"].to_numpy(float),
        pairs["hh_pred"].to_numpy(float),
        (features, features),
    )

    def summary(metrics: dict[str, float], suffix: str) -> dict[str, float]:
        kept = {k: float(metrics[k]) for k in ("RMSE", "MAE")}
        return {**kept, "coverage": _coverage(pairs, suffix)}

    group = ChallengeGroup(
        name,
        len(pairs),
        summary(pair.reference, ""),
        summary(pair.candidate, "_challenger"),
        pair.significance.statistic,
        pair.significance.p_value,
    )
    return group, pair


@dataclass(frozen=True)
class ChallengeComparison:
    """Production and the challenger on the same realised weeks, overall and by group."""

    production: str
    challenger: str
    overall: ChallengeGroup
    pair: PairScore
    by_period: list[ChallengeGroup]
    by_horizon: list[ChallengeGroup]
    first_week: str
    last_week: str

    @property
    def weeks(self) -> int:
        return self.overall.weeks

    def describe(self) -> str:
        """One sentence: who erred less on how many weeks, and the test."""
        leader = self.challenger if self.pair.candidate_better else self.production
        return (
            f"on {self.weeks} realised weeks ({self.first_week} to {self.last_week}) forecast "
            f"by both before they happened: RMSE {self.overall.challenger['RMSE']:,.1f} "
            f"(challenger {self.challenger}) against {self.overall.production['RMSE']:,.1f} "
            f"(production {self.production}); {leader} erred less, "
            f"{self.pair.significance.describe()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "production_version": self.production,
            "challenger_version": self.challenger,
            "weeks": self.weeks,
            "first_week": self.first_week,
            "last_week": self.last_week,
            "overall": self.overall.to_dict(),
            "by_period": [g.to_dict() for g in self.by_period],
            "by_horizon": [g.to_dict() for g in self.by_horizon],
            "summary": self.describe(),
        }


def compare_challenger(
    matched: pd.DataFrame,
    production: str,
    challenger: str,
    by: str = "week",
    band: Any = None,
) -> ChallengeComparison | None:
    """The comparison on every realised week both forecast, or None when there is none.

    `by` groups by week or month; `band` names a forecast's horizon band (production's)."""
    pairs = paired_weeks(matched, production, challenger)
    if pairs.empty:
        return None
    features = 1  # the adjusted R² is not reported here: any count will do
    overall, pair = _group("all", pairs, features)
    period = pairs["week"] if by == "week" else pairs["week"].str[:7]
    by_period = [_group(str(p), g, features)[0] for p, g in pairs.groupby(period, sort=True)]
    by_horizon = []
    if band is not None:
        bands = pairs["horizon"].map(band)
        by_horizon = [_group(str(b), g, features)[0] for b, g in pairs.groupby(bands, sort=True)]
    return ChallengeComparison(
        production,
        challenger,
        overall,
        pair,
        by_period,
        by_horizon,
        str(pairs["week"].iloc[0]),
        str(pairs["week"].iloc[-1]),
    )
