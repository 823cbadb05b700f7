"""The gate's prospective evidence: a challenger judged on weeks it forecast before they happened.

While a version is the challenger, every forecast logged for production has its forecast of the
same request beside it, and `monitor --actuals` keeps the realised weeks. Once at least
`mlops.min_fair_weeks` of those weeks are realised, `promote CHALLENGER --require-better-rmse`
judges on them: both models' forecasts made with the inputs the planners gave, before the weeks
were known, scored by `score_pair` like any other comparison. Without enough such weeks the gate
falls back to the fair weeks of a dataset (gate/weeks.py).
"""

from __future__ import annotations

from hhforecast.config import Settings
from hhforecast.errors import HHForecastError
from hhforecast.gate.handle import VersionHandle
from hhforecast.gate.validate import Score, ValidationReport
from hhforecast.gate.weeks import EvaluationWeeks

__all__ = ["prospective_report"]


def prospective_report(
    settings: Settings,
    candidate: VersionHandle,
    production: VersionHandle,
    challenger: str | None,
    variant: str,
) -> ValidationReport | None:
    """The candidate against production on the realised weeks both forecast while it was the
    challenger; None when it is not the challenger or fewer than mlops.min_fair_weeks are known.
    The candidate's own checks (integrity, load) are the caller's."""
    if challenger != candidate.name or production.name == candidate.name:
        return None
    from hhforecast.watch.challenge import compare_challenger
    from hhforecast.watch.log_store import open_prediction_log

    log = open_prediction_log(settings)
    try:
        judged, kept = log.judged(), log.actuals()
    except HHForecastError:
        return None  # no log yet: no prospective evidence
    finally:
        log.close()
    if judged.empty or kept.empty:
        return None
    realised = kept.rename(columns={"hh": "actual"})[["week", "actual"]].astype({"actual": float})
    both = judged[judged["variant"] == variant].merge(realised, on="week", how="inner")
    challenge = compare_challenger(both, production.name, candidate.name)
    if challenge is None or challenge.weeks < settings.mlops.min_fair_weeks:
        return None
    report = ValidationReport(version=candidate.name, variant=variant)
    report.production = production.name
    report.weeks = EvaluationWeeks(
        source=(
            f"realised weeks forecast by both before they happened, while {candidate.name} was "
            "the challenger"
        ),
        dataset=log.location,
        start=challenge.first_week,
        end=challenge.last_week,
        weeks=challenge.weeks,
    )
    report.pair, report.significance = challenge.pair, challenge.pair.significance
    report.scores = [
        Score(f"{candidate.name} (candidate)", "candidate", challenge.pair.candidate),
        Score(f"{production.name} (production)", "production", challenge.pair.reference),
    ]
    return report
