"""What a fit learnt, said in words: the deep correction dropped (the network is then the
least-squares linear fit), a network worse than a naive forecast or than the weeks' mean
(R² below 0), and intervals that cover significantly fewer or more weeks than their nominal
level (too narrow: overconfident; too wide: less useful than they could be).

`train`, `validate` and `backtest` show these under their tables and put them in their JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hhforecast.modeling.backtest import BacktestResult

__all__ = [
    "COVERAGE_ALPHA",
    "NAIVE_BASELINES",
    "Finding",
    "backtest_findings",
    "coverage_finding",
    "linear_finding",
    "score_findings",
    "training_findings",
]

NumberText = Callable[[float, str], str]
"""How a message writes a number: (value, format spec such as ',.1f') -> text. The default is
`format` (1,042.5); the CLI passes one that follows display.numbers (1.042,5)."""

NAIVE_BASELINES = ("naive_last_week", "seasonal_naive")
COVERAGE_ALPHA = 0.01
"""An interval is reported when its count of covered weeks is that far from its nominal share:
a two-sided exact binomial test (scipy.stats.binomtest) below this p-value. On 65 test weeks an
80% interval is reported at 43 covered weeks (66%) or fewer and at 61 (94%) or more."""


@dataclass(frozen=True)
class Finding:
    """One thing a user should know about a variant's fit. `kind` is `linear` (a note) or
    `worse_than_naive`, `negative_r2`, `low_coverage`, `high_coverage` (warnings)."""

    variant: str
    kind: str
    message: str

    @property
    def is_warning(self) -> bool:
        return self.kind != "linear"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def linear_finding(variant: str, kept: int, fits: int, refit: bool = False) -> Finding | None:
    """The note that the deep correction was dropped in `fits - kept` of `fits` fits.

    `refit`: the fit is the served refit on every week, scored beside a linear_regression
    fitted on fewer weeks (validate), so their rows differ and the note does not say they match.
    """
    if kept == fits:
        return None
    if fits == 1:
        said = "deep correction not kept (no clear gain on the validation weeks), so the network"
    elif kept == 0:
        said = (
            f"deep correction kept in none of the {fits} folds (no clear gain on the validation "
            "weeks), so the network"
        )
    else:
        said = (
            f"deep correction kept in {kept} of {fits} folds; in the others (no clear gain on "
            "the validation weeks) the network"
        )
    if refit:
        return Finding(
            variant,
            "linear",
            f"{variant}: {said} is the least-squares linear fit of every week it learnt "
            "(linear_regression here learnt only the weeks before the evaluation weeks, so "
            "their scores differ).",
        )
    return Finding(
        variant,
        "linear",
        f"{variant}: {said} is the least-squares linear fit and scores as linear_regression.",
    )


def score_findings(
    variant: str,
    model: str,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    weeks: str,
    number: NumberText = format,
) -> list[Finding]:
    """Warnings when `metrics` lose to a naive baseline's RMSE or have R² below 0."""
    found = []
    rmse = metrics.get("RMSE")
    naive = {n: baselines[n]["RMSE"] for n in NAIVE_BASELINES if n in baselines}
    if rmse is not None and naive:
        best = min(naive, key=lambda n: naive[n])
        if naive[best] < rmse:
            found.append(
                Finding(
                    variant,
                    "worse_than_naive",
                    f"{variant}: {model} RMSE {number(rmse, ',.1f')} on {weeks} is worse than "
                    f"{best}'s {number(naive[best], ',.1f')} (repeating past HH).",
                )
            )
    r2 = metrics.get("R2")
    if r2 is not None and r2 < 0:
        found.append(
            Finding(
                variant,
                "negative_r2",
                f"{variant}: {model} R² {number(r2, '.3f')} on {weeks}: worse than forecasting "
                "their mean HH every week.",
            )
        )
    return found


def coverage_finding(
    variant: str,
    observed: float,
    nominal: float,
    weeks: int,
    where: str,
    number: NumberText = format,
) -> Finding | None:
    """A warning when an interval covered significantly fewer or more of `weeks` than its
    `nominal` share (two-sided binomial test at COVERAGE_ALPHA)."""
    from scipy.stats import binomtest

    if weeks <= 0:
        return None
    covered = round(observed * weeks)
    p_value = float(binomtest(covered, weeks, nominal).pvalue)
    if p_value >= COVERAGE_ALPHA:
        return None
    said = f"the {nominal:.0%} interval covered {covered} of {weeks} {where} ({observed:.0%}, "
    if covered < nominal * weeks:
        return Finding(
            variant,
            "low_coverage",
            f"{variant}: {said}p = {number(p_value, '.2g')}): far below {nominal:.0%}, too "
            "narrow for these weeks.",
        )
    return Finding(
        variant,
        "high_coverage",
        f"{variant}: {said}p = {number(p_value, '.2g')}): far above {nominal:.0%}, wider "
        "than these weeks needed.",
    )


def training_findings(metadata: Mapping[str, Any], number: NumberText = format) -> list[Finding]:
    """What `train` learnt, per variant, from a version's model_metadata.json."""
    found: list[Finding] = []
    test_weeks = int(metadata.get("split", {}).get("test", {}).get("weeks", 0))
    # The table train prints is the scored fit's: its own decision, not the served refit's.
    holdout = ((metadata.get("recipe_evidence") or {}).get("holdout") or {}).get("variants", {})
    for variant, info in metadata.get("variants", {}).items():
        kept = holdout.get(variant, {}).get(
            "deep_correction_kept", info.get("training", {}).get("deep_correction_kept")
        )
        if kept is not None:
            note = linear_finding(variant, int(bool(kept)), 1)
            found += [note] if note else []
        found += score_findings(
            variant,
            "network",
            info["metrics"],
            info.get("baselines", {}),
            "the test weeks",
            number,
        )
        interval = info.get("interval", {})
        if "observed_coverage_test" in interval:
            off = coverage_finding(
                variant,
                interval["observed_coverage_test"],
                interval["coverage"],
                test_weeks,
                "test weeks",
                number,
            )
            found += [off] if off else []
        folds = (metadata.get("recipe_evidence") or {}).get("rolling_origin") or {}
        if variant in folds.get("observed_coverage", {}) and "coverage" in interval:
            off = coverage_finding(
                variant,
                folds["observed_coverage"][variant],
                interval["coverage"],
                int(folds.get("weeks", 0)),
                "rolling-origin fold weeks",
                number,
            )
            found += [off] if off else []
    return found


def backtest_findings(result: BacktestResult, number: NumberText = format) -> list[Finding]:
    """What a rolling-origin backtest showed, per variant, over the pooled weeks of all folds."""
    found: list[Finding] = []
    weeks = len(result.actual)
    for variant, scores in result.overall.items():
        kept = sum(bool(f["deep_correction_kept"][variant]) for f in result.fold_scores)
        note = linear_finding(variant, kept, len(result.fold_scores))
        found += [note] if note else []
        network = scores.get("network")
        if network is not None:
            baselines = {m: s for m, s in scores.items() if m != "network"}
            found += score_findings(
                variant, "network", network, baselines, "the pooled backtest weeks", number
            )
        if variant in result.coverage:
            off = coverage_finding(
                variant,
                result.coverage[variant],
                result.interval_target,
                weeks,
                "backtest weeks",
                number,
            )
            found += [off] if off else []
    return found
