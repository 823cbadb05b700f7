"""Is one model's lower RMSE more than luck? The Diebold–Mariano test on squared errors.

The loss differential of week t is ``d_t = e_production,t² − e_candidate,t²``: positive when the
candidate erred less. Its mean is tested against zero with a Newey–West (Bartlett) long-run
variance, because a model's errors run in streaks from week to week, and the Harvey–Leybourne–
Newbold small-sample factor with Student's t on n − 1 degrees of freedom. The test is one-sided:
the p-value is the chance of a statistic this large if the candidate were no better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PairScore", "Significance", "diebold_mariano", "newey_west_lags", "score_pair"]


@dataclass(frozen=True)
class Significance:
    """A Diebold–Mariano comparison of two forecasters on the same weeks."""

    statistic: float | None
    """Positive when the candidate's squared errors are smaller; None when undefined."""
    p_value: float | None
    """One-sided: the candidate is better. None when the statistic is undefined."""
    weeks: int
    lags: int

    def describe(self) -> str:
        """'Diebold–Mariano 2.31, one-sided p 0.012' (or why it is undefined)."""
        if self.statistic is None or self.p_value is None:
            return "Diebold–Mariano undefined (the two models' errors do not differ)"
        return f"Diebold–Mariano {self.statistic:.2f}, one-sided p {self.p_value:.3g}"


def newey_west_lags(weeks: int) -> int:
    """Autocovariance lags for the long-run variance: the cube root of the number of weeks."""
    return math.floor(weeks ** (1.0 / 3.0) + 1e-9) if weeks > 1 else 0


def diebold_mariano(
    candidate_errors: np.ndarray, production_errors: np.ndarray, lags: int | None = None
) -> Significance:
    """Test whether the candidate's squared errors are smaller than production's, week by week."""
    e_c = np.asarray(candidate_errors, dtype=np.float64)
    e_p = np.asarray(production_errors, dtype=np.float64)
    if e_c.shape != e_p.shape or e_c.ndim != 1:
        raise ValueError("both error series must be one-dimensional and of the same length")
    n = len(e_c)
    lags = newey_west_lags(n) if lags is None else lags
    if n < 2:
        return Significance(None, None, n, lags)
    d = e_p**2 - e_c**2
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for lag in range(1, min(lags, n - 1) + 1):
        weight = 1.0 - lag / (lags + 1)
        variance += 2.0 * weight * float(centred[lag:] @ centred[:-lag]) / n
    scale = max(float(np.abs(d).max()), 1.0)
    if not variance > 1e-24 * scale**2:
        return Significance(None, None, n, lags)
    from scipy.stats import t

    statistic = float(d.mean() / math.sqrt(variance / n)) * math.sqrt((n - 1) / n)
    return Significance(statistic, float(t.sf(statistic, n - 1)), n, lags)


@dataclass(frozen=True)
class PairScore:
    """A candidate and a reference model on the same weeks: their metrics, the test, the verdict.

    The one judge of "better" for promote, validate and compare: strictly lower RMSE on the
    same weeks, with the Diebold–Mariano test beside it (positive when the candidate erred less).
    """

    candidate: dict[str, float]
    reference: dict[str, float]
    significance: Significance

    @property
    def candidate_better(self) -> bool:
        return self.candidate["RMSE"] < self.reference["RMSE"]

    @property
    def tie(self) -> bool:
        return self.candidate["RMSE"] == self.reference["RMSE"]

    def significant(self, level: float) -> bool:
        """The candidate is better and its test is significant at `level` (one-sided)."""
        p = self.significance.p_value
        return self.candidate_better and p is not None and p <= level


def score_pair(
    actual: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    features: tuple[int, int],
) -> PairScore:
    """Score two models' finite forecasts of the same weeks (`features`: each model's count of
    inputs, for the adjusted R²)."""
    from hhforecast.modeling.evaluation import regression_metrics

    return PairScore(
        regression_metrics(actual, candidate, features[0]),
        regression_metrics(actual, reference, features[1]),
        diebold_mariano(candidate - actual, reference - actual),
    )
