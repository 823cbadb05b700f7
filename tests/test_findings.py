"""train, validate and backtest say what the fit learnt: a dropped deep correction, a network
worse than a naive forecast or than the mean (R² < 0), intervals far below their level."""

from __future__ import annotations

import json

import numpy as np

from hhforecast.modeling.backtest import BacktestResult
from hhforecast.modeling.findings import backtest_findings, coverage_finding, training_findings

from .conftest import Project

BASELINES = {
    "linear_regression": {"RMSE": 413.5, "R2": -0.581},
    "naive_last_week": {"RMSE": 474.8, "R2": -1.085},
    "seasonal_naive": {"RMSE": 462.2, "R2": -0.975},
}


def variant(kept: bool, rmse: float, r2: float, covered: float) -> dict:
    return {
        "metrics": {"RMSE": rmse, "R2": r2},
        "baselines": BASELINES,
        "training": {"deep_correction_kept": kept},
        "interval": {"coverage": 0.8, "observed_coverage_test": covered},
    }


def test_training_findings_say_what_the_fit_learnt() -> None:
    metadata = {
        "split": {"test": {"weeks": 65}},
        "variants": {
            "4features": variant(False, 413.5, -0.581, 41 / 65),
            "5features": variant(True, 480.0, 0.093, 49 / 65),
        },
    }
    found = [(f.variant, f.kind, f.is_warning) for f in training_findings(metadata)]
    assert found == [
        ("4features", "linear", False),
        ("4features", "negative_r2", True),
        ("4features", "low_coverage", True),
        ("5features", "worse_than_naive", True),
    ]
    messages = {f.kind: f.message for f in training_findings(metadata)}
    assert messages["linear"] == (
        "4features: deep correction not kept (no clear gain on the validation weeks), so the "
        "network is the least-squares linear fit and scores as linear_regression."
    )
    assert messages["negative_r2"] == (
        "4features: network R² -0.581 on the test weeks: worse than forecasting their mean HH "
        "every week."
    )
    assert messages["low_coverage"] == (
        "4features: the 80% interval covered 41 of 65 test weeks (63%, p = 0.0016): far below "
        "80%, too narrow for these weeks."
    )
    assert messages["worse_than_naive"] == (
        "5features: network RMSE 480.0 on the test weeks is worse than seasonal_naive's 462.2 "
        "(repeating past HH)."
    )


def test_coverage_is_judged_against_chance_not_a_fixed_gap() -> None:
    # Two-sided at 1%: 44 of 65 (68%) happens to an 80% interval about 1 time in 50; 43 of 65
    # rarer than 1 in 100.
    assert coverage_finding("5features", 44 / 65, 0.8, 65, "test weeks") is None
    assert coverage_finding("5features", 43 / 65, 0.8, 65, "test weeks") is not None
    # On 13 weeks, 8 covered (62%) is within chance.
    assert coverage_finding("5features", 8 / 13, 0.8, 13, "backtest weeks") is None


def test_an_interval_covering_far_more_weeks_than_nominal_is_reported_too() -> None:
    # 60 of 65 (92%) is within chance for an 80% interval (two-sided p = 0.012); 61 is not.
    assert coverage_finding("5features", 60 / 65, 0.8, 65, "test weeks") is None
    wide = coverage_finding("5features", 61 / 65, 0.8, 65, "test weeks")
    assert wide is not None and wide.is_warning
    assert (wide.kind, wide.message) == (
        "high_coverage",
        "5features: the 80% interval covered 61 of 65 test weeks (94%, p = 0.0029): far above "
        "80%, wider than these weeks needed.",
    )
    # The fold weeks of the recipe's evidence are judged too.
    metadata = {
        "split": {"test": {"weeks": 65}},
        "recipe_evidence": {
            "rolling_origin": {"weeks": 200, "observed_coverage": {"5features": 0.9}}
        },
        "variants": {"5features": variant(False, 200.0, 0.3, 52 / 65)},
    }
    found = [(f.kind, f.message) for f in training_findings(metadata) if f.is_warning]
    assert found == [
        (
            "high_coverage",
            "5features: the 80% interval covered 180 of 200 rolling-origin fold weeks (90%, "
            "p = 0.00019): far above 80%, wider than these weeks needed.",
        )
    ]


def test_backtest_findings_count_the_folds_that_kept_the_correction() -> None:
    scores = {
        "network": {"RMSE": 294.0, "R2": 0.1},
        "linear_regression": {"RMSE": 294.0, "R2": 0.1},
        "naive_last_week": {"RMSE": 255.9, "R2": 0.3},
    }
    result = BacktestResult(
        folds=2,
        horizon=13,
        models=list(scores),
        fold_scores=[
            {"deep_correction_kept": {"4features": False, "5features": True}},
            {"deep_correction_kept": {"4features": False, "5features": False}},
        ],
        overall={"4features": scores, "5features": {"network": {"RMSE": 200.0, "R2": 0.4}}},
        coverage={"4features": 1.0, "5features": 0.5},
        actual=np.zeros(26),
    )
    found = {(f.variant, f.kind): f.message for f in backtest_findings(result)}
    assert set(found) == {
        ("4features", "linear"),
        ("4features", "worse_than_naive"),
        ("4features", "high_coverage"),
        ("5features", "linear"),
        ("5features", "low_coverage"),
    }
    assert found[("4features", "linear")].startswith(
        "4features: deep correction kept in none of the 2 folds"
    )
    assert found[("5features", "linear")].startswith(
        "5features: deep correction kept in 1 of 2 folds; in the others"
    )


def test_train_prints_the_findings_of_its_metadata(project: Project, cli, columns80) -> None:
    result = cli("train", "--version", "1.0.0", "--config", project.config)
    assert result.exit_code == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│├└"]
    assert table and all(len(line) <= 80 for line in table), table
    metadata = json.loads((project.models / "1.0.0" / "model_metadata.json").read_text())
    expected = training_findings(metadata)
    assert any(f.kind == "linear" for f in expected) or all(
        v["training"]["deep_correction_kept"] for v in metadata["variants"].values()
    )
    out, err = " ".join(result.stdout.split()), " ".join(result.stderr.split())
    for finding in expected:
        text = " ".join(finding.message.split())
        assert text in (err if finding.is_warning else out), text
    for name in metadata["variants"]:
        assert f"{name}: 80% interval ±" in out


def test_validate_and_its_json_carry_the_findings(trained_project: Project, cli, columns80) -> None:
    text = cli("validate", "1.0.0").stdout
    assert all(len(line) <= 80 for line in text.splitlines() if line[:1] in "┏┃┡│└"), text
    shown = cli("validate", "1.0.0", "--variant", "4features", "--json")
    data = json.loads(shown.stdout)
    metadata = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    kept = metadata["variants"]["4features"]["training"]["deep_correction_kept"]
    kinds = [f["kind"] for f in data["findings"]]
    assert ("linear" in kinds) == (not kept)
    candidate = next(s for s in data["scores"] if s["role"] == "candidate")
    assert ("negative_r2" in kinds) == (candidate["metrics"]["R2"] < 0)


def test_train_notes_the_scored_fits_correction_not_the_served_refits() -> None:
    """The table train prints is the scored fit's; the refit that serves decides on its own."""

    def metadata(scored_kept: bool, served_kept: bool) -> dict:
        return {
            "split": {"test": {"weeks": 65}},
            "variants": {"5features": variant(served_kept, 110.8, 0.595, 52 / 65)},
            "recipe_evidence": {
                "holdout": {"variants": {"5features": {"deep_correction_kept": scored_kept}}}
            },
        }

    kinds = [f.kind for f in training_findings(metadata(scored_kept=False, served_kept=True))]
    assert kinds == ["linear"]
    assert [f.kind for f in training_findings(metadata(scored_kept=True, served_kept=False))] == []


def test_validate_does_not_say_a_refit_scores_as_linear_regression(
    trained_project: Project, cli
) -> None:
    """validate scores the served refit (every week) beside a linear_regression fitted on the
    weeks before the evaluation weeks: their rows differ, and the note says why."""
    from .conftest import rerecord

    folder = trained_project.models / "1.0.0"
    path = folder / "model_metadata.json"
    metadata = json.loads(path.read_text())
    assert metadata["served_fit"]["refit_on_all_weeks"] is True
    metadata["variants"]["5features"]["training"]["deep_correction_kept"] = False
    path.write_text(json.dumps(metadata, indent=2))
    rerecord(folder)
    result = cli("validate", "1.0.0", "--config", trained_project.config)
    assert result.exit_code == 0, result.stderr
    assert (
        "Note: 5features: deep correction not kept (no clear gain on the validation weeks), so "
        "the network is the least-squares linear fit of every week it learnt (linear_regression "
        "here learnt only the weeks before the evaluation weeks, so their scores differ)."
    ) in " ".join(result.stdout.split())
    assert "scores as linear_regression" not in result.stdout
