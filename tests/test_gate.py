"""The gate: integrity, finite forecasts, scores on the same weeks, and the RMSE rule."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhforecast.config import load_settings
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.errors import ArtifactError, VariantNotFoundError
from hhforecast.gate.integrity import check_integrity
from hhforecast.gate.promote import PromotionRefusedError, promote, rollback
from hhforecast.gate.validate import validate_version
from hhforecast.gate.weeks import EvaluationDataError
from hhforecast.modeling.predict import load_model
from hhforecast.registry.store import Registry

from .conftest import HELD_OUT_WEEKS, Project, rerecord


@dataclass(frozen=True)
class Ranking:
    """Which of the two trained versions has the lower RMSE on the same weeks, and by variant."""

    variant: str
    better: str
    worse: str
    better_rmse: float
    worse_rmse: float


def rmse_on_held_out_weeks(project: Project, version: str, variant: str = "5features") -> float:
    """A version's RMSE on the sample's last quarter, from its forecasts (not from the gate)."""
    model = load_model(project.settings, version, variant)
    weeks = pd.read_csv(sample_dataset_path()).iloc[-HELD_OUT_WEEKS:]
    predicted = model.predict(weeks[model.features].to_numpy(dtype=np.float64))
    return float(np.sqrt(np.mean((predicted - weeks["HH"].to_numpy(dtype=np.float64)) ** 2)))


def rank_versions(project: Project) -> Ranking:
    """1.0.0 is the better and 1.2.0 the worse by construction (see the ranked_project fixture);
    their RMSEs on the weeks both hold out are computed here, independently of validate."""
    better = rmse_on_held_out_weeks(project, "1.0.0")
    worse = rmse_on_held_out_weeks(project, "1.2.0")
    assert better < worse, (better, worse)
    return Ranking("5features", "1.0.0", "1.2.0", better, worse)


def tamper(path: Path) -> None:
    """Change one byte in the middle of a file."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_integrity_passes_for_a_trained_version(scored_project: Project) -> None:
    folder = scored_project.models / "1.0.0"
    checks = check_integrity(folder)
    recorded = json.loads((folder / "model_metadata.json").read_text())["artifacts"]
    assert (
        {c.name for c in checks}
        == set(recorded)
        >= {
            "model_hh_semanal_5features.keras",
            "scaler_X_5features.joblib",
            "scaler_y_4features.joblib",
        }
    )
    assert all(c.ok for c in checks)


def test_a_changed_byte_fails_validation(scored_project: Project) -> None:
    tamper(scored_project.models / "1.1.0" / "scaler_X_5features.joblib")
    report = validate_version(scored_project.settings, "1.1.0")
    assert not report.passed
    assert report.failures == ["integrity: scaler_X_5features.joblib changed"]
    assert report.scores == []  # a tampered model is never loaded


def test_a_missing_artifact_fails_validation(scored_project: Project) -> None:
    (scored_project.models / "1.0.0" / "model_hh_semanal_4features.keras").unlink()
    report = validate_version(scored_project.settings, "1.0.0")
    assert report.failures == ["integrity: model_hh_semanal_4features.keras missing"]


def test_validate_scores_everyone_on_the_candidate_test_weeks(scored_project: Project) -> None:
    report = validate_version(scored_project.settings, "1.0.0")
    metadata = json.loads((scored_project.models / "1.0.0" / "model_metadata.json").read_text())
    test = metadata["split"]["test"]
    assert report.passed
    assert report.weeks is not None
    assert (report.weeks.start, report.weeks.end, report.weeks.weeks) == (
        test["start"],
        test["end"],
        test["weeks"],
    )
    assert report.weeks.source == "held-out test weeks of 1.0.0"
    assert [s.name for s in report.scores] == [
        "1.0.0 (candidate)",
        "1.1.0 (production)",
        "linear_regression",
        "naive_last_week",
        "seasonal_naive",
    ]
    # The candidate's own score on its test weeks is the one training recorded.
    assert report.candidate_rmse == pytest.approx(
        metadata["variants"]["5features"]["metrics"]["RMSE"], rel=1e-6
    )
    # The linear baseline is fitted on the candidate's training weeks, as at training time.
    recorded = metadata["variants"]["5features"]["baselines"]["linear_regression"]["RMSE"]
    linear = next(s for s in report.scores if s.name == "linear_regression")
    assert linear.metrics["RMSE"] == pytest.approx(recorded, rel=1e-6)
    assert report.overlaps[0].weeks == 0  # both versions hold out the same weeks
    assert report.to_dict()["overlaps_production_training"] is False


def test_weeks_production_trained_on_are_flagged(scored_project: Project, tmp_path: Path) -> None:
    data = tmp_path / "all_weeks.csv"
    shutil.copy(sample_dataset_path(), data)
    report = validate_version(scored_project.settings, "1.0.0", data=data)
    assert report.passed
    overlap = next(o for o in report.overlaps if o.model == "1.1.0")
    assert overlap.weeks > 0 and overlap.method == "exact weeks"
    assert report.to_dict()["overlaps_production_training"] is True
    # The baselines are fitted on the candidate's training weeks found in its own dataset.
    assert [s.name for s in report.scores][2:] == [
        "linear_regression",
        "naive_last_week",
        "seasonal_naive",
    ]
    assert any(
        w.startswith(f"{overlap.weeks} of the {report.weeks.weeks} evaluation weeks")
        and "production 1.1.0 was trained on" in w
        for w in report.warnings
    )


def test_a_vanished_dataset_asks_for_data(scored_project: Project) -> None:
    metadata_file = scored_project.models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["dataset"]["path"] = "data/gone.csv"
    metadata_file.write_text(json.dumps(metadata))
    rerecord(metadata_file.parent)
    with pytest.raises(EvaluationDataError) as info:
        validate_version(scored_project.settings, "1.0.0")
    assert str(info.value) == (
        "cannot find the held-out weeks of version 1.0.0: its dataset data/gone.csv is gone "
        f"({scored_project.root / 'data' / 'gone.csv'}). Pass --data FILE with labelled weeks "
        "(date, the features and HH) to evaluate on"
    )
    assert info.value.exit_code == 2


def test_a_changed_dataset_asks_for_data(scored_project: Project, tmp_path: Path) -> None:
    changed = tmp_path / "data" / "weeks.csv"
    changed.parent.mkdir()
    changed.write_text(sample_dataset_path().read_text() + "\n")  # same weeks, new bytes
    metadata_file = scored_project.models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["dataset"]["path"] = "data/weeks.csv"
    metadata_file.write_text(json.dumps(metadata))
    rerecord(metadata_file.parent)
    with pytest.raises(EvaluationDataError, match=r"has changed since training \(SHA-256"):
        validate_version(scored_project.settings, "1.0.0")


def test_an_unknown_variant_is_bad_input(scored_project: Project) -> None:
    with pytest.raises(VariantNotFoundError) as info:
        validate_version(scored_project.settings, "1.0.0", "6features")
    assert str(info.value) == (
        "version 1.0.0 has no variant '6features' (variants: 4features, 5features); "
        "pass --variant with one of them"
    )


def test_the_gate_refuses_the_worse_and_accepts_the_better(ranked_project: Project) -> None:
    ranking = rank_versions(ranked_project)
    settings = ranked_project.settings
    promote(settings, ranking.worse, variant=ranking.variant)  # no gate: pin the worse one
    # The better one goes in ...
    result = promote(
        load_settings(ranked_project.config),
        ranking.better,
        require_better_rmse=True,
        variant=ranking.variant,
    )
    assert result.record.rmse_to == pytest.approx(ranking.better_rmse)
    assert result.record.rmse_from == pytest.approx(ranking.worse_rmse)
    assert result.record.gate == "require-better-rmse"
    assert result.record.rmse_basis.startswith("same evaluation weeks: held-out test weeks")
    # ... and the worse one cannot come back through the gate.
    config = ranked_project.config.read_bytes()
    history = Registry(settings).history()
    with pytest.raises(PromotionRefusedError) as info:
        promote(
            load_settings(ranked_project.config),
            ranking.worse,
            require_better_rmse=True,
            variant=ranking.variant,
        )
    assert f"{ranking.worse_rmse:,.1f}" in str(info.value)
    assert f"{ranking.better_rmse:,.1f}" in str(info.value)
    assert info.value.exit_code == 1
    assert ranked_project.config.read_bytes() == config
    assert Registry(settings).history() == history


def test_a_tampered_candidate_is_never_promoted(scored_project: Project) -> None:
    tamper(scored_project.models / "1.0.0" / "model_hh_semanal_5features.keras")
    config = scored_project.config.read_bytes()
    with pytest.raises(ArtifactError, match=r"version 1\.0\.0 failed its integrity check"):
        promote(scored_project.settings, "1.0.0")
    assert scored_project.config.read_bytes() == config


def test_rollback_is_recorded_with_reason_rollback(scored_project: Project) -> None:
    promote(scored_project.settings, "1.0.0")
    result = rollback(load_settings(scored_project.config), "forecasts too high")
    assert (result.record.to_version, result.record.reason) == (
        "1.1.0",
        "rollback: forecasts too high",
    )
    assert rollback(load_settings(scored_project.config)).record.reason == "rollback"


def test_a_pointer_to_a_vanished_version_does_not_block_the_gate(
    scored_project: Project,
) -> None:
    text = scored_project.config.read_text()
    scored_project.config.write_text(text + 'mlops:\n  production_version: "0.9.0"\n')
    result = promote(scored_project.settings, "1.0.0", require_better_rmse=True)
    assert result.report is not None
    assert result.report.warnings[0].startswith(
        "version '0.9.0' (named by mlops.production_version"
    )
    assert (result.record.from_version, result.record.to_version) == ("0.9.0", "1.0.0")
    assert load_settings(scored_project.config).mlops.production_version == "1.0.0"


def test_data_still_evaluates_when_the_training_dataset_is_gone(
    scored_project: Project, tmp_path: Path
) -> None:
    metadata_file = scored_project.models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["dataset"]["path"] = "data/gone.csv"
    metadata_file.write_text(json.dumps(metadata))
    rerecord(metadata_file.parent)
    data = tmp_path / "weeks.csv"
    shutil.copy(sample_dataset_path(), data)
    report = validate_version(scored_project.settings, "1.0.0", data=data)
    assert report.passed
    assert report.warnings[0].startswith(
        "version 1.0.0's training weeks cannot be read (its dataset data/gone.csv is gone"
    )
    assert "linear_regression" in [s.name for s in report.scores]
    own = next(o for o in report.overlaps if o.model == "1.0.0")
    assert own.method == "training periods (dataset unavailable)"
    assert own.weeks == metadata["split"]["fit"]["weeks"] + metadata["split"]["validation"]["weeks"]


def test_non_finite_forecasts_fail_validation(scored_project: Project) -> None:
    # A degenerate scaler (zero spread) recorded with matching checksums: integrity passes,
    # the forecasts are infinite.
    folder = scored_project.models / "1.0.0"
    metadata = json.loads((folder / "model_metadata.json").read_text())
    metadata["variants"]["5features"]["scaling"]["x_scale"][0] = 0.0
    (folder / "model_metadata.json").write_text(json.dumps(metadata))
    rerecord(folder)
    report = validate_version(scored_project.settings, "1.0.0")
    assert not report.passed
    assert report.failures == [
        "non-finite forecasts for weeks inside its training range",
        f"non-finite forecasts for {report.weeks.weeks} of {report.weeks.weeks} evaluation weeks",
    ]
