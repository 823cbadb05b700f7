"""Is a version fit to serve, and how does it score beside production on the same weeks?

A version is *valid* when its artifacts match the SHA-256s recorded at training, it loads, and it
gives finite forecasts. It is then scored with production and the linear regression and naive
baselines on the same evaluation weeks (see `hhforecast.gate.weeks`), so "better" is never judged
alone. Validation only reports; `hhforecast.gate.promote` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.config import Settings
from hhforecast.errors import (
    ArtifactError,
    HHForecastError,
    VariantNotFoundError,
    VersionNotFoundError,
)
from hhforecast.gate.handle import DatasetCache, VersionHandle, open_version
from hhforecast.gate.integrity import ArtifactCheck
from hhforecast.gate.significance import PairScore, Significance, score_pair
from hhforecast.gate.weeks import (
    EvaluationWeeks,
    LabelledWeeks,
    Overlap,
    evaluation_frame,
    overlap,
    training_dates,
)
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.history import RmseComparison
from hhforecast.registry.snapshot import RegistrySnapshot
from hhforecast.registry.store import Registry

__all__ = [
    "Score",
    "UnreadableProduction",
    "ValidationReport",
    "judge_handles",
    "production_handle",
    "validate_version",
]


@dataclass(frozen=True)
class Score:
    """One model's metrics on the evaluation weeks."""

    name: str
    role: str
    metrics: dict[str, float]


@dataclass
class ValidationReport:
    """Everything `validate` found about a version, and the verdict."""

    version: str
    variant: str
    artifacts: list[ArtifactCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    weeks: EvaluationWeeks | None = None
    scores: list[Score] = field(default_factory=list)
    production: str | None = None
    overlaps: list[Overlap] = field(default_factory=list)
    significance: Significance | None = None
    """Diebold–Mariano test of the candidate against production on the evaluation weeks."""
    pair: PairScore | None = None
    """The candidate against production on the evaluation weeks (None when not compared)."""
    production_problem: str | None = None
    """Why production, which exists, could not be scored (the gate refuses then)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    def _rmse(self, role: str) -> float | None:
        for score in self.scores:
            if score.role == role:
                return score.metrics.get("RMSE")
        return None

    @property
    def candidate_rmse(self) -> float | None:
        return self._rmse("candidate")

    @property
    def production_rmse(self) -> float | None:
        return self._rmse("production")

    @property
    def better_than_production(self) -> bool | None:
        """Strictly lower RMSE than production on the same weeks; None when not compared."""
        return None if self.pair is None else self.pair.candidate_better

    def comparison(self) -> RmseComparison:
        """The comparison the registry records with a promotion."""
        weeks = self.weeks
        basis = (
            f"same evaluation weeks: {weeks.source}, {weeks.start} to {weeks.end} "
            f"({weeks.weeks} weeks)"
            if weeks
            else "not compared"
        )
        if self.significance is not None:
            basis += f"; {self.significance.describe()}"
        return RmseComparison(self.production, self.production_rmse, self.candidate_rmse, basis)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for --json)."""
        return {
            "version": self.version,
            "variant": self.variant,
            "passed": self.passed,
            "failures": self.failures,
            "warnings": self.warnings,
            "artifacts": [vars(c) for c in self.artifacts],
            "evaluation_weeks": vars(self.weeks) if self.weeks else None,
            "production_version": self.production,
            "candidate_rmse": self.candidate_rmse,
            "production_rmse": self.production_rmse,
            "better_than_production": self.better_than_production,
            "significance": vars(self.significance) if self.significance else None,
            "scores": [vars(s) for s in self.scores],
            "overlap": [vars(o) for o in self.overlaps],
            "overlaps_production_training": any(
                o.model == self.production and o.weeks > 0 for o in self.overlaps
            ),
        }


def forecast(model: VariantModel, x: np.ndarray) -> np.ndarray:
    """A model's forecasts; overflow or a zero scale shows up as non-finite, not as warnings."""
    with np.errstate(all="ignore"):
        return model.predict(x)


@dataclass(frozen=True)
class UnreadableProduction:
    """A production version whose registry entry or folder cannot be opened at all."""

    name: str
    problem: str


def production_handle(
    registry: Registry,
    snapshot: RegistrySnapshot,
    datasets: DatasetCache,
    warnings: list[str],
) -> VersionHandle | UnreadableProduction | None:
    """The handle of the version in production, or None (with a warning saying why)."""
    try:
        entry = snapshot.production()
    except VersionNotFoundError as exc:
        warnings.append(f"{exc} Compared with the baselines only.")
        return None
    if entry is None:
        warnings.append("nothing is in production yet: the first promotion passes")
        return None
    try:
        return open_version(registry, snapshot, entry.version, datasets)
    except HHForecastError as exc:
        # An entry that cannot even be opened: judged as unscoreable, never as no production.
        return UnreadableProduction(entry.version, str(exc))


def _production_model(
    candidate: VersionHandle,
    production: VersionHandle | UnreadableProduction | None,
    variant: str,
    report: ValidationReport,
) -> VariantModel | None:
    if production is None:
        return None
    report.production = production.name
    if production.name == candidate.name:
        report.warnings.append(f"{candidate.name} is the production version: nothing to compare")
        return None
    if isinstance(production, UnreadableProduction):
        report.production_problem = f"production {production.name} cannot be scored: "
        report.production_problem += production.problem
        report.warnings.append(f"{report.production_problem}; compared with the baselines only")
        return None
    try:
        model = production.model(variant)
    except (ArtifactError, VariantNotFoundError) as exc:
        report.production_problem = f"production {production.name} cannot be scored: {exc}"
        report.warnings.append(f"{report.production_problem}; compared with the baselines only")
        return None
    others = production.integrity_problem()
    if others:
        report.warnings.append(
            f"production {production.name}'s files that {variant} does not use fail their "
            f"check ({others}); run `hhforecast registry check`"
        )
    return model


def validate_version(
    settings: Settings,
    version: str,
    variant: str | None = None,
    data: Path | LabelledWeeks | None = None,
) -> ValidationReport:
    """Check a version's integrity and forecasts, and score it beside production and baselines.

    `data`: the weeks to score on, a CSV file or weeks in memory; by default the version's own
    held-out test weeks.
    """
    registry = Registry(settings)
    snapshot = registry.snapshot()
    datasets = DatasetCache(settings)
    candidate = open_version(registry, snapshot, version, datasets)
    warnings: list[str] = []
    production = production_handle(registry, snapshot, datasets, warnings)
    report = judge_handles(settings, candidate, production, variant, data)
    report.warnings[:0] = warnings
    return report


def judge_handles(
    settings: Settings,
    candidate: VersionHandle,
    production: VersionHandle | UnreadableProduction | None,
    variant: str | None = None,
    data: Path | LabelledWeeks | None = None,
) -> ValidationReport:
    """Validate `candidate` and score it beside `production` and the baselines on the same
    weeks; every file is read through the handles, once."""
    from hhforecast.modeling.evaluation import baseline_predictions, regression_metrics

    variant = variant or settings.mlops.serve_variant
    version = candidate.name
    report = ValidationReport(version=version, variant=variant)
    report.artifacts = candidate.checks()
    problem = candidate.integrity_problem()
    if problem:
        report.failures.append(f"integrity: {problem}")
        return report
    known = candidate.variants()
    if variant not in known:
        raise VariantNotFoundError(f"version {version}", variant, known)
    try:
        model = candidate.model(variant)
    except ArtifactError as exc:
        report.failures.append(f"does not load: {exc}")
        return report
    if not np.isfinite(forecast(model, model.reference_rows())).all():
        report.failures.append("non-finite forecasts for weeks inside its training range")

    production_model = _production_model(candidate, production, variant, report)
    target = candidate.target
    extra = [
        f
        for f in (production_model.features if production_model else [])
        if f not in model.features
    ]
    evaluation = evaluation_frame(
        settings, candidate, [*model.features, *extra], target, data, report.warnings
    )
    report.weeks = evaluation.weeks
    frame, test = evaluation.frame, evaluation.test
    y = frame[target].to_numpy(dtype=np.float64)
    x = frame[model.features].to_numpy(dtype=np.float64)
    k = len(model.features)

    predicted = forecast(model, x[test])
    if not np.isfinite(predicted).all():
        bad = int((~np.isfinite(predicted)).sum())
        report.failures.append(f"non-finite forecasts for {bad} of {len(test)} evaluation weeks")
        return report
    report.scores.append(
        Score(f"{version} (candidate)", "candidate", regression_metrics(y[test], predicted, k))
    )
    if production_model is not None and isinstance(production, VersionHandle):
        xp = frame[production_model.features].to_numpy(dtype=np.float64)
        production_predicted = forecast(production_model, xp[test])
        if np.isfinite(production_predicted).all():
            pair = score_pair(
                y[test], predicted, production_predicted, (k, len(production_model.features))
            )
            report.pair, report.significance = pair, pair.significance
            report.scores.append(
                Score(f"{production.name} (production)", "production", pair.reference)
            )
        else:
            report.production_problem = (
                f"production {production.name} gives non-finite forecasts on these weeks"
            )
            report.warnings.append(
                f"{report.production_problem}; the candidate is compared with the baselines only"
            )
        seen = overlap(production.name, training_dates(production), frame["date"].iloc[test])
        if seen is not None:
            report.overlaps.append(seen)
            if seen.weeks:
                report.warnings.append(
                    f"{seen.weeks} of the {len(test)} evaluation weeks ({seen.first} to "
                    f"{seen.last}) are weeks production {production.name} was trained on; "
                    "its score there is optimistic and the comparison is not fair"
                )
    # Its own held-out weeks too: a fit refit on every week (the default) learnt them, and its
    # recipe's score on them is the registry's, measured before the refit.
    seen = overlap(version, training_dates(candidate), frame["date"].iloc[test])
    if seen is not None:
        report.overlaps.append(seen)
        if seen.weeks:
            report.warnings.append(
                f"{seen.weeks} of the {len(test)} evaluation weeks are weeks {version}'s served "
                "fit was trained on; its score there is optimistic"
                + (
                    " (the registry's score, the recipe's, was measured before the refit; "
                    "pass --data FILE with newer labelled weeks to score the served fit)"
                    if data is None
                    else ""
                )
            )
    if len(evaluation.train) >= k + 1:
        baselines = baseline_predictions(x, y, evaluation.train, test, frame["date"])
        for name, values in baselines.items():
            report.scores.append(Score(name, "baseline", regression_metrics(y[test], values, k)))
    else:
        report.warnings.append(
            f"too few training weeks of {version} are available to fit the baselines"
        )
    return report
