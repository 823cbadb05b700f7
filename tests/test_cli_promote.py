"""`hhforecast validate`, `promote`, `rollback` and `registry history` from the command line."""

import json

import pytest

from hhforecast.registry.pointer import rewrite_production_version

from .conftest import Project, heavy_imports
from .test_gate import rank_versions, tamper


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_gate_refuses_worse_accepts_better_rolls_back_and_keeps_history(
    ranked_project: Project, cli
) -> None:
    ranking = rank_versions(ranked_project)
    config = ranked_project.config
    original = config.read_text()
    variant = ["--variant", ranking.variant]

    pinned = cli("promote", ranking.worse, *variant, "--reason", "pin", "--config", config)
    assert pinned.exit_code == 0, pinned.stderr
    assert config.read_text() == rewrite_production_version(original, ranking.worse)

    accepted = cli("promote", ranking.better, "--require-better-rmse", *variant, "--config", config)
    assert accepted.exit_code == 0, accepted.stderr
    assert f"production is now {ranking.better} (was {ranking.worse})" in one_line(accepted.stdout)
    # Only the production_version value changed, every comment and other byte is as written.
    assert config.read_text() == rewrite_production_version(original, ranking.better)

    before = config.read_bytes()
    refused = cli("promote", ranking.worse, "--require-better-rmse", *variant, "--config", config)
    assert refused.exit_code == 1
    message = one_line(refused.stderr)
    assert message.startswith(f"Error: refused to promote {ranking.worse}: its RMSE ")
    assert f"RMSE {ranking.worse_rmse:,.1f}" in message
    assert f"production {ranking.better}'s RMSE {ranking.better_rmse:,.1f}" in message
    assert config.read_bytes() == before
    # The same refusal for a pipeline: JSON on stdout, the same exit code and message.
    refused = cli(
        "promote", ranking.worse, "--require-better-rmse", *variant, "--json", "--config", config
    )
    assert refused.exit_code == 1
    outcome = json.loads(refused.stdout)
    assert outcome["promoted"] is False and outcome["error"] in one_line(refused.stderr)
    report = outcome["validation"]
    assert (report["version"], report["production_version"]) == (ranking.worse, ranking.better)
    assert report["candidate_rmse"] == pytest.approx(ranking.worse_rmse)
    assert config.read_bytes() == before

    rolled = cli("rollback", "--json", "--config", config)
    assert rolled.exit_code == 0, rolled.stderr
    moved = json.loads(rolled.stdout)
    assert (moved["promoted"], moved["action"]) == (True, "rollback")
    assert (moved["from"], moved["to"], moved["gate"]) == (
        ranking.better,
        ranking.worse,
        "integrity",
    )
    assert moved["validation"] is None
    assert moved["config_file"] == str(config)
    assert config.read_text() == rewrite_production_version(original, ranking.worse)

    history = json.loads(cli("registry", "history", "--json", "--config", config).stdout)
    assert [(h["action"], h["to"], h["gate"], h["reason"]) for h in history] == [
        ("promote", ranking.worse, "integrity", "pin"),
        ("promote", ranking.better, "require-better-rmse", ""),
        ("rollback", ranking.worse, "integrity", "rollback"),
    ]
    assert history[1]["rmse_to"] < history[1]["rmse_from"]
    table = cli("registry", "history", "--config", config)
    assert table.exit_code == 0
    assert "rollback" in table.stdout and ranking.better in table.stdout


def test_validate_prints_a_verdict_and_json(scored_project: Project, cli) -> None:
    result = cli("validate", "1.0.0", "--config", scored_project.config)
    assert result.exit_code == 0, result.stderr
    assert "PASS 1.0.0 is valid" in one_line(result.stdout)
    assert "linear_regression" in result.stdout and "1.1.0 (production)" in result.stdout
    data = json.loads(cli("validate", "1.0.0", "--json", "--config", scored_project.config).stdout)
    assert data["passed"] is True
    assert data["production_version"] == "1.1.0"
    assert data["overlaps_production_training"] is False
    assert data["evaluation_weeks"]["source"] == "held-out test weeks of 1.0.0"


def test_validate_a_tampered_artifact_exits_1(trained_project: Project, cli) -> None:
    tamper(trained_project.models / "1.0.0" / "scaler_y_5features.joblib")
    result = cli("validate", "1.0.0", "--config", trained_project.config)
    assert result.exit_code == 1
    assert "FAIL 1.0.0: integrity: scaler_y_5features.joblib changed" in one_line(result.stdout)
    refused = cli("promote", "1.0.0", "--config", trained_project.config)
    assert refused.exit_code == 1
    assert "version 1.0.0 failed its integrity check" in one_line(refused.stderr)


def test_bad_input_exits_2(trained_project: Project, cli) -> None:
    unknown = cli("promote", "9.9", "--config", trained_project.config)
    assert unknown.exit_code == 2
    assert "Error: version '9.9' is not in the registry." in one_line(unknown.stderr)
    no_history = cli("rollback", "--config", trained_project.config)
    assert no_history.exit_code == 2
    assert "nothing to roll back: no promotion is recorded" in one_line(no_history.stderr)
    missing = cli("validate", "1.0.0", "--data", "nope.csv", "--config", trained_project.config)
    assert missing.exit_code == 2
    assert "dataset nope.csv: no such file" in one_line(missing.stderr)


def test_a_corrupt_registry_is_reported_and_left_alone(trained_project: Project, cli) -> None:
    trained_project.registry_file.write_text("{ not json", "utf-8")
    config = trained_project.config.read_bytes()
    result = cli("promote", "1.0.0", "--config", trained_project.config)
    assert result.exit_code == 2
    assert "is corrupt (not valid JSON" in one_line(result.stderr)
    assert "It was left untouched" in one_line(result.stderr)
    assert trained_project.registry_file.read_text() == "{ not json"
    assert trained_project.config.read_bytes() == config


def test_promoting_the_version_already_serving_says_so(trained_project: Project, cli) -> None:
    # production_version is "latest": 1.1.0, the newest, is already production.
    config = trained_project.config.resolve()
    result = cli("promote", "1.1.0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        '1.1.0 was already production (mlops.production_version was "latest"); it is now '
        f"pinned by name in {config}.\n"
    )
    moved = json.loads(cli("promote", "1.0.0", "--json").stdout)
    assert (moved["from"], moved["to"], moved["already_in_production"]) == (
        "1.1.0",
        "1.0.0",
        False,
    )


def test_a_gated_promotion_that_moves_nothing_prints_no_comparison_warnings(
    trained_project: Project, cli
) -> None:
    """Pinning the version already serving, or promoting the pinned one, compares it with
    itself: no "nothing to compare" or "optimistic" warning about a comparison not made."""
    config = trained_project.config.resolve()
    pinned = cli("promote", "1.1.0", "--require-better-rmse")
    assert pinned.exit_code == 0, pinned.stderr
    assert pinned.stdout == (
        '1.1.0 was already production (mlops.production_version was "latest"); it is now '
        f"pinned by name in {config}.\n"
    )
    assert pinned.stderr == ""
    again = cli("promote", "1.1.0", "--require-better-rmse")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == "1.1.0 is already in production; nothing was changed.\n"
    assert again.stderr == ""


def test_a_gated_promotion_with_no_production_before_says_so(
    scored_project: Project, cli, columns80
) -> None:
    from hhforecast.registry.pointer import rewrite_production_version

    config = scored_project.config
    config.write_text(rewrite_production_version(config.read_text(), "0.0.9"))
    from hhforecast.registry.store import Registry

    rmse = Registry(scored_project.settings).get("1.0.0").metric("5features", "RMSE")
    result = cli("promote", "1.0.0", "--require-better-rmse")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"Promoted: production is now 1.0.0 (was 0.0.9); {config} updated.\n"
        f"RMSE 5features: {rmse:,.1f} (same evaluation weeks: held-out test weeks of 1.0.0, "
        "2022-10-03 to 2023-12-25 (65 weeks)); 0.0.9, production before, could not be scored.\n"
    )


def test_promote_and_rollback_by_hand_never_import_pandas(trained_project: Project) -> None:
    # Moving the pointer by hand reads no dataset: run in many processes at once (a fleet of
    # replicas' deploy scripts), each pandas import is a third of a second of CPU for nothing.
    commands = [["promote", "1.0.0", "--reason", "by hand"], ["rollback"]]
    out = heavy_imports(
        trained_project.root, commands, ("tensorflow", "pandas", "sklearn", "scipy")
    )
    assert "Promoted" in out and "HEAVY []" in out, out
