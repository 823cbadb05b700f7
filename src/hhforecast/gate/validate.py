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
from hhforecast.errors import ArtifactError, VariantNotFoundError, VersionNotFoundError
from hhforecast.gate.integrity import ArtifactCheck, check_integrity, integrity_problem
from hhforecast.gate.significance import Significance, diebold_mariano
from hhforecast.gate.weeks import (
    EvaluationWeeks,
    LabelledWeeks,
    Overlap,
    evaluation_frame,
    overlap,
    training_dates,
)
from hhforecast.modeling.artifacts import read_metadata
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.history import RmseComparison
from hhforecast.registry.store import ModelVersion, Registry

__all__ = ["Score", "ValidationReport", "load_version", "validate_version"]


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
        candidate, production = self.candidate_rmse, self.production_rmse
        if candidate is None or production is None:
            return None
        return candidate < production

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


def load_version(registry: Registry, entry: ModelVersion, variant: str) -> VariantModel:
    """One variant of a registered version, ready to forecast."""
    from hhforecast.modeling.predict import load_registered

    return load_registered(registry, entry, variant)


def _production_model(
    registry: Registry, version: str, variant: str, report: ValidationReport
) -> VariantModel | None:
    try:
        production = registry.production_version()
    except VersionNotFoundError as exc:
        report.warnings.append(f"{exc} Compared with the baselines only.")
        return None
    if production is None:
        report.warnings.append("nothing is in production yet: the first promotion passes")
        return None
    report.production = production.version
    if production.version == version:
        report.warnings.append(f"{version} is the production version: nothing to compare with")
        return None
    folder = registry.version_dir(production)
    problem = integrity_problem(check_integrity(folder))
    if problem:
        report.warnings.append(
            f"production {production.version} failed its integrity check ({problem}); it is not "
            "scored, so the candidate is compared with the baselines only"
        )
        return None
    try:
        return load_version(registry, production, variant)
    except ArtifactError as exc:
        report.warnings.append(
            f"production {production.version} cannot be scored ({exc}); compared with the "
            "baselines only"
        )
        return None


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
    from hhforecast.modeling.evaluation import baseline_predictions, regression_metrics

    registry = Registry(settings)
    entry = registry.get(version)
    variant = variant or settings.mlops.serve_variant
    folder = registry.version_dir(entry)
    report = ValidationReport(version=version, variant=variant)
    report.artifacts = check_integrity(folder)
    problem = integrity_problem(report.artifacts)
    if problem:
        report.failures.append(f"integrity: {problem}")
        return report
    metadata = read_metadata(folder)
    known = list(metadata.get("variants", {}))
    if variant not in known:
        raise VariantNotFoundError(f"version {version}", variant, known)
    try:
        model = load_version(registry, entry, variant)
    except ArtifactError as exc:
        report.failures.append(f"does not load: {exc}")
        return report
    if not np.isfinite(forecast(model, model.reference_rows())).all():
        report.failures.append("non-finite forecasts for weeks inside its training range")

    production = _production_model(registry, version, variant, report)
    target = str(metadata.get("target", settings.training.target))
    extra = [f for f in (production.features if production else []) if f not in model.features]
    evaluation = evaluation_frame(
        settings, version, metadata, [*model.features, *extra], target, data, report.warnings
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
    if production is not None:
        xp = frame[production.features].to_numpy(dtype=np.float64)
        production_predicted = forecast(production, xp[test])
        if np.isfinite(production_predicted).all():
            metrics = regression_metrics(y[test], production_predicted, len(production.features))
            report.scores.append(Score(f"{production.version} (production)", "production", metrics))
            report.significance = diebold_mariano(
                predicted - y[test], production_predicted - y[test]
            )
        else:
            report.warnings.append(
                f"production {production.version} gives non-finite forecasts on these weeks; "
                "the candidate is compared with the baselines only"
            )
        trained = training_dates(settings, production.metadata)
        seen = overlap(production.version, trained, frame["date"].iloc[test])
        if seen is not None:
            report.overlaps.append(seen)
            if seen.weeks:
                report.warnings.append(
                    f"{seen.weeks} of the {len(test)} evaluation weeks ({seen.first} to "
                    f"{seen.last}) are weeks production {production.version} was trained on; "
                    "its score there is optimistic and the comparison is not fair"
                )
    if data is not None:
        seen = overlap(version, training_dates(settings, metadata), frame["date"].iloc[test])
        if seen is not None:
            report.overlaps.append(seen)
            if seen.weeks:
                report.warnings.append(
                    f"{seen.weeks} of the {len(test)} evaluation weeks are weeks {version} "
                    "was trained on; its score there is optimistic"
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
