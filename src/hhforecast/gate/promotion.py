"""The promotion gate: is a version fit to serve, and does it beat production on the same weeks?

A version is *valid* when its artifacts match the SHA-256s recorded at training, it loads, and it
gives finite forecasts. It is *better* than production when its RMSE is strictly lower on the same
evaluation weeks: by default the candidate's own held-out test weeks, re-read from the dataset it
was trained on (checked by SHA-256), or the labelled weeks of a file the user names. The linear
regression and naive baselines are scored on those weeks too, so "better" is never judged alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast._fs import file_sha256
from hhforecast.config import Settings
from hhforecast.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    ArtifactError,
    HHForecastError,
    VariantNotFoundError,
    VersionNotFoundError,
)
from hhforecast.modeling.artifacts import METADATA_FILE, artifact_names, read_metadata
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.history import PromotionRecord, RmseComparison
from hhforecast.registry.store import ModelVersion, ProductionMovedError, Registry

__all__ = [
    "ArtifactCheck",
    "EvaluationDataError",
    "EvaluationWeeks",
    "Overlap",
    "PromotionRefusedError",
    "PromotionResult",
    "Score",
    "ValidationFailedError",
    "ValidationReport",
    "VariantNotFoundError",
    "check_integrity",
    "integrity_problem",
    "promote",
    "require_integrity",
    "rollback",
    "validate_version",
]

PROMOTE_ATTEMPTS = 3


class EvaluationDataError(HHForecastError):
    """The weeks to evaluate on cannot be found or trusted; the user must name them."""

    exit_code = EXIT_BAD_INPUT


class ValidationFailedError(HHForecastError):
    """A candidate failed validation, so it is not promoted."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(
            f"version {report.version} failed validation and was not promoted: "
            f"{'; '.join(report.failures)}. Run `hhforecast validate {report.version}` for details."
        )


class PromotionRefusedError(HHForecastError):
    """The gate said no: the candidate's RMSE is not lower than production's on the same weeks."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        weeks = report.weeks
        where = (
            f"the {weeks.weeks} evaluation weeks {weeks.start} to {weeks.end} ({weeks.source})"
            if weeks
            else "the evaluation weeks"
        )
        super().__init__(
            f"refused to promote {report.version}: its RMSE {_num(report.candidate_rmse)} on "
            f"{where} is not lower than production {report.production}'s RMSE "
            f"{_num(report.production_rmse)} ({report.variant}). Production and the config file "
            "were left unchanged."
        )


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.1f}"


# -- integrity -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact file against the SHA-256 recorded for it at training."""

    name: str
    status: str
    """ok, missing, changed, unrecorded (no checksum kept for it) or unsafe name."""
    expected: str | None = None
    actual: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_integrity(version_dir: Path) -> list[ArtifactCheck]:
    """Compare every artifact of a version folder with the checksums in its metadata."""
    try:
        metadata = read_metadata(version_dir)
    except ArtifactError as exc:
        return [ArtifactCheck(METADATA_FILE, f"unreadable: {exc}")]
    if "variants" not in metadata:
        return [ArtifactCheck(METADATA_FILE, "not trained by hhforecast (no 'variants'); retrain")]
    recorded = metadata.get("artifacts")
    if not isinstance(recorded, dict) or not recorded:
        return [ArtifactCheck(METADATA_FILE, "records no artifact checksums")]
    variants = metadata.get("variants", {})
    needed = {name for variant in variants for name in artifact_names(variant).values()}
    checks = []
    for name in sorted(set(map(str, recorded)) | needed):
        expected = recorded.get(name)
        path = version_dir / name
        if Path(name).name != name or name in ("", ".", ".."):
            checks.append(ArtifactCheck(name, "unsafe name", expected))
        elif not path.is_file():
            checks.append(ArtifactCheck(name, "missing", expected))
        elif not isinstance(expected, str):
            checks.append(ArtifactCheck(name, "unrecorded", None, file_sha256(path)))
        else:
            actual = file_sha256(path)
            status = "ok" if actual == expected else "changed"
            checks.append(ArtifactCheck(name, status, expected, actual))
    return checks


def integrity_problem(checks: list[ArtifactCheck]) -> str | None:
    """What is wrong with a version's artifacts, in one line, or None when nothing is."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return None
    return ", ".join(f"{c.name} {c.status}" for c in bad)


def require_integrity(version_dir: Path, version: str) -> None:
    """Raise ArtifactError (exit 1) unless every artifact matches its recorded checksum."""
    problem = integrity_problem(check_integrity(version_dir))
    if problem:
        raise ArtifactError(
            f"version {version} failed its integrity check in {version_dir}: {problem}. "
            "Restore the folder from a backup or train the version again."
        )


# -- evaluation weeks ------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationWeeks:
    """Which weeks every model was scored on."""

    source: str
    dataset: str
    start: str
    end: str
    weeks: int


@dataclass(frozen=True)
class Overlap:
    """Evaluation weeks a model was trained on: scores there are not fair ground."""

    model: str
    weeks: int
    first: str | None
    last: str | None
    method: str


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
            "scores": [vars(s) for s in self.scores],
            "overlap": [vars(o) for o in self.overlaps],
            "overlaps_production_training": any(
                o.model == self.production and o.weeks > 0 for o in self.overlaps
            ),
        }


def _trusted_dataset(settings: Settings, metadata: dict[str, Any]) -> tuple[Path | None, str]:
    """The path of a version's training dataset if it is still there unchanged, else why not."""
    from hhforecast.datasets.weekly import recorded_dataset

    recorded = recorded_dataset(metadata, settings.base_dir)
    why = {
        "unrecorded": "its metadata names no dataset",
        "missing": f"its dataset {recorded.label} is gone ({recorded.path})",
        "changed": f"its dataset {recorded.label} has changed since training (SHA-256 differs)",
    }
    if recorded.problem is not None:
        return None, why[recorded.problem]
    return recorded.path, recorded.label


def _period_mask(dates: Any, period: dict[str, Any]) -> np.ndarray:
    import pandas as pd

    start, end = pd.Timestamp(period["start"]), pd.Timestamp(period["end"])
    return np.asarray((dates >= start) & (dates <= end))


def _has_split(metadata: dict[str, Any]) -> bool:
    split = metadata.get("split")
    return isinstance(split, dict) and all(
        isinstance(split.get(k), dict) for k in ("fit", "validation", "test")
    )


def _split_rows(metadata: dict[str, Any], dates: Any) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of a version's own dataset, as its training split them."""
    from hhforecast.modeling.evaluation import split_weeks

    if not _has_split(metadata):
        raise EvaluationDataError(
            f"the metadata of version {metadata.get('version')} does not record its train/test "
            "split; pass --data FILE with the weeks to evaluate on"
        )
    split = metadata["split"]
    if split.get("mode", "time") == "time":
        train = _period_mask(dates, split["fit"]) | _period_mask(dates, split["validation"])
        return np.flatnonzero(train), np.flatnonzero(_period_mask(dates, split["test"]))
    # A random split is rebuilt from its seed and sizes, then checked against the metadata.
    n_rows, n_test = len(dates), int(split["test"]["weeks"])
    n_val = int(split["validation"]["weeks"])
    rebuilt = split_weeks(
        n_rows, n_test / n_rows, n_val / (n_rows - n_test), "random", int(metadata["seed"])
    )
    for name in ("fit", "validation", "test"):
        rows = getattr(rebuilt, name)
        chosen = dates.iloc[rows]
        if (
            len(rows) != split[name]["weeks"]
            or chosen.min().strftime("%Y-%m-%d") != split[name]["start"]
            or chosen.max().strftime("%Y-%m-%d") != split[name]["end"]
        ):
            raise EvaluationDataError(
                f"the random split of version {metadata.get('version')} cannot be rebuilt from "
                "its metadata; pass --data FILE with the weeks to evaluate on"
            )
    return rebuilt.train, rebuilt.test


def _training_dates(settings: Settings, metadata: dict[str, Any]) -> tuple[set[Any], str] | None:
    """The weeks a version learnt from, exactly when its dataset is intact, else by period."""
    import pandas as pd

    from hhforecast.datasets.weekly import load_weekly_dataset

    if not _has_split(metadata):
        return None
    split = metadata["split"]
    path, _ = _trusted_dataset(settings, metadata)
    if path is not None:
        dates = load_weekly_dataset(path, [], None).frame["date"]
        train, _ = _split_rows(metadata, dates)
        return set(dates.iloc[train]), "exact weeks"
    periods = [split["fit"], split["validation"]]
    weeks = set()
    for period in periods:
        weeks |= set(pd.date_range(period["start"], period["end"], freq="D"))
    return weeks, "training periods (dataset unavailable)"


@dataclass
class _Frame:
    """The weeks to score: features and target, which rows are evaluated, which are training."""

    frame: Any
    test: np.ndarray
    train: np.ndarray
    weeks: EvaluationWeeks


def _evaluation_frame(
    settings: Settings,
    version: str,
    metadata: dict[str, Any],
    columns: list[str],
    target: str,
    data: Path | None,
    report: ValidationReport,
) -> _Frame:
    import pandas as pd

    from hhforecast.datasets.weekly import load_weekly_dataset

    own_path, own_label = _trusted_dataset(settings, metadata)
    if data is None:
        if own_path is None:
            raise EvaluationDataError(
                f"cannot find the held-out weeks of version {version}: {own_label}. Pass "
                f"--data FILE with labelled weeks (date, the features and {target}) to "
                "evaluate on"
            )
        own = load_weekly_dataset(own_path, columns, target)
        train, test = _split_rows(metadata, own.frame["date"])
        frame = own.frame
        source, label = f"held-out test weeks of {version}", own_label
    else:
        given = load_weekly_dataset(data, columns, target)
        frame, source, label = given.frame, f"labelled weeks of {data}", str(data)
        train = np.array([], dtype=int)
        if own_path is not None and _has_split(metadata):
            own_frame = load_weekly_dataset(own_path, columns, target).frame
            own_train, _ = _split_rows(metadata, own_frame["date"])
            # The candidate's training weeks come first so the baselines can be fitted and the
            # naive forecasts have a week before; a week present in both is scored from --data.
            history = own_frame.iloc[own_train]
            trained_dates = history["date"]
            history = history[~history["date"].isin(frame["date"])]
            frame = pd.concat([history, frame]).sort_values("date").reset_index(drop=True)
            train = np.flatnonzero(frame["date"].isin(trained_dates).to_numpy())
        else:
            report.warnings.append(
                f"version {version}'s training weeks cannot be read ({own_label}); the "
                "baselines are fitted on the weeks of --data inside its training period, if any"
            )
            split = metadata.get("split") or {}
            if _has_split(metadata):
                inside = _period_mask(frame["date"], split["fit"]) | _period_mask(
                    frame["date"], split["validation"]
                )
                train = np.flatnonzero(inside)
        test = np.flatnonzero(frame["date"].isin(given.frame["date"]).to_numpy())
    if len(test) == 0:
        raise EvaluationDataError(f"there are no weeks to evaluate version {version} on")
    chosen = frame["date"].iloc[test]
    weeks = EvaluationWeeks(
        source=source,
        dataset=label,
        start=chosen.min().strftime("%Y-%m-%d"),
        end=chosen.max().strftime("%Y-%m-%d"),
        weeks=len(test),
    )
    return _Frame(frame=frame, test=test, train=train, weeks=weeks)


def _overlap(name: str, trained: tuple[set[Any], str] | None, evaluated: Any) -> Overlap | None:
    if trained is None:
        return None
    weeks, method = trained
    hits = sorted(d for d in evaluated if d in weeks)
    return Overlap(
        model=name,
        weeks=len(hits),
        first=hits[0].strftime("%Y-%m-%d") if hits else None,
        last=hits[-1].strftime("%Y-%m-%d") if hits else None,
        method=method,
    )


# -- validation ------------------------------------------------------------------------------


def _forecast(model: VariantModel, x: np.ndarray) -> np.ndarray:
    # Overflow or a zero scale must show up as a non-finite verdict, not as numpy warnings.
    with np.errstate(all="ignore"):
        return model.predict(x)


def _load(registry: Registry, entry: ModelVersion, variant: str) -> VariantModel:
    from hhforecast.modeling.artifacts import load_variant

    return load_variant(registry.version_dir(entry), variant, entry.version)


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
        return _load(registry, production, variant)
    except ArtifactError as exc:
        report.warnings.append(
            f"production {production.version} cannot be scored ({exc}); compared with the "
            "baselines only"
        )
        return None


def validate_version(
    settings: Settings, version: str, variant: str | None = None, data: Path | None = None
) -> ValidationReport:
    """Check a version's integrity and forecasts, and score it beside production and baselines."""
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
        model = _load(registry, entry, variant)
    except ArtifactError as exc:
        report.failures.append(f"does not load: {exc}")
        return report
    if not np.isfinite(_forecast(model, model.reference_rows())).all():
        report.failures.append("non-finite forecasts for weeks inside its training range")

    production = _production_model(registry, version, variant, report)
    target = str(metadata.get("target", settings.training.target))
    extra = [f for f in (production.features if production else []) if f not in model.features]
    evaluation = _evaluation_frame(
        settings, version, metadata, [*model.features, *extra], target, data, report
    )
    report.weeks = evaluation.weeks
    frame, test = evaluation.frame, evaluation.test
    y = frame[target].to_numpy(dtype=np.float64)
    x = frame[model.features].to_numpy(dtype=np.float64)
    k = len(model.features)

    predicted = _forecast(model, x[test])
    if not np.isfinite(predicted).all():
        bad = int((~np.isfinite(predicted)).sum())
        report.failures.append(f"non-finite forecasts for {bad} of {len(test)} evaluation weeks")
        return report
    report.scores.append(
        Score(f"{version} (candidate)", "candidate", regression_metrics(y[test], predicted, k))
    )
    if production is not None:
        xp = frame[production.features].to_numpy(dtype=np.float64)
        production_predicted = _forecast(production, xp[test])
        if np.isfinite(production_predicted).all():
            metrics = regression_metrics(y[test], production_predicted, len(production.features))
            report.scores.append(Score(f"{production.version} (production)", "production", metrics))
        else:
            report.warnings.append(
                f"production {production.version} gives non-finite forecasts on these weeks; "
                "the candidate is compared with the baselines only"
            )
        trained = _training_dates(settings, production.metadata)
        overlap = _overlap(production.version, trained, frame["date"].iloc[test])
        if overlap is not None:
            report.overlaps.append(overlap)
            if overlap.weeks:
                report.warnings.append(
                    f"{overlap.weeks} of the {len(test)} evaluation weeks ({overlap.first} to "
                    f"{overlap.last}) are weeks production {production.version} was trained on; "
                    "its score there is optimistic and the comparison is not fair"
                )
    if data is not None:
        overlap = _overlap(version, _training_dates(settings, metadata), frame["date"].iloc[test])
        if overlap is not None:
            report.overlaps.append(overlap)
            if overlap.weeks:
                report.warnings.append(
                    f"{overlap.weeks} of the {len(test)} evaluation weeks are weeks {version} "
                    "was trained on; its score there is optimistic"
                )
    if len(evaluation.train) >= k + 1:
        baselines = baseline_predictions(x, y, evaluation.train, test)
        for name, values in baselines.items():
            report.scores.append(Score(name, "baseline", regression_metrics(y[test], values, k)))
    else:
        report.warnings.append(
            f"too few training weeks of {version} are available to fit the baselines"
        )
    return report


# -- promotion and rollback ------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionResult:
    """A recorded move of production, and the validation behind it (when the gate ran)."""

    record: PromotionRecord
    report: ValidationReport | None = None


def _with_current_pointer(settings: Settings) -> Settings:
    # Another promotion may have moved production since these settings were loaded.
    return replace(settings, mlops=settings.reloaded().mlops)


def _integrity_verifier(registry: Registry) -> Callable[[ModelVersion], None]:
    """The check the registry runs, under its lock, on the version about to be production."""

    def verify(entry: ModelVersion) -> None:
        require_integrity(registry.version_dir(entry), entry.version)

    return verify


def promote(
    settings: Settings,
    version: str,
    *,
    require_better_rmse: bool = False,
    variant: str | None = None,
    data: Path | None = None,
    reason: str = "",
) -> PromotionResult:
    """Move production to `version`; with the gate, only if its RMSE beats production's."""
    registry = Registry(settings)
    variant = variant or settings.mlops.serve_variant
    registry.get(version)
    verify = _integrity_verifier(registry)

    if not require_better_rmse:
        record = registry.move_production(version, variant=variant, reason=reason, verify=verify)
        return PromotionResult(record)
    for attempt in range(1, PROMOTE_ATTEMPTS + 1):
        report = validate_version(_with_current_pointer(settings), version, variant, data)
        if not report.passed:
            raise ValidationFailedError(report)
        if report.better_than_production is False:
            raise PromotionRefusedError(report)
        try:
            record = registry.move_production(
                version,
                variant=variant,
                reason=reason,
                gate="require-better-rmse",
                comparison=report.comparison(),
                verify=verify,
            )
        except ProductionMovedError:
            if attempt == PROMOTE_ATTEMPTS:
                raise
            continue
        return PromotionResult(record, report)
    raise AssertionError("unreachable")  # the loop returns or raises


def rollback(settings: Settings, reason: str = "") -> PromotionResult:
    """Put the previous production version back; recorded as a promotion with reason rollback."""
    registry = Registry(settings)
    verify = _integrity_verifier(registry)

    record = registry.rollback(
        variant=settings.mlops.serve_variant,
        reason=f"rollback: {reason}" if reason else "rollback",
        verify=verify,
    )
    return PromotionResult(record)
