"""What the registry never lets happen to production: overwrites, unsound entries, a stuck
rollback, a silent switch to a version nobody compared."""

import json
import os
import shutil
from pathlib import Path

import pytest

from hhforecast.config import load_settings
from hhforecast.errors import VersionExistsError
from hhforecast.gate.promote import promote, rollback
from hhforecast.modeling.training import train_version
from hhforecast.registry.store import BadEntryError, Registry

from .conftest import Project


def state(project: Project) -> tuple[bytes, bytes]:
    return project.config.read_bytes(), project.registry_file.read_bytes()


def one_line(text: str) -> str:
    """The text on one line, without the warning said whenever the bundled sample is trained on
    (tests/test_sample_dataset.py checks it)."""
    kept = [line for line in text.splitlines() if not line.startswith("Warning: training on")]
    return " ".join(" ".join(kept).split())


# -- train says when the new version serves --------------------------------------------------


@pytest.mark.slow
def test_train_says_the_new_version_serves_when_production_follows_latest(
    project: Project, cli
) -> None:
    first = cli("train", "--version", "1.0.0", "--epochs", "1", "--config", project.config)
    assert first.exit_code == 0, first.stderr
    assert '1.0.0 is now serving: mlops.production_version is "latest"' in one_line(first.stdout)
    data = json.loads(
        cli(
            "train", "--version", "1.1.0", "--epochs", "1", "--json", "--config", project.config
        ).stdout
    )
    assert data["serving"] is True
    assert Registry(project.settings).production_version().version == "1.1.0"
    assert cli("promote", "1.1.0", "--config", project.config).exit_code == 0  # pinned
    pinned = cli("train", "--version", "1.2.0", "--epochs", "1", "--config", project.config)
    assert pinned.exit_code == 0
    assert "now serving" not in pinned.stdout
    data = json.loads(
        cli(
            "train", "--version", "1.3.0", "--epochs", "1", "--json", "--config", project.config
        ).stdout
    )
    assert data["serving"] is False


# -- overwrite safety ------------------------------------------------------------------------


def test_a_promotion_during_a_forced_training_keeps_the_promoted_folder(
    trained_project: Project,
) -> None:
    # 1.1.0 serves ("latest"); 1.0.0 is retrained with --force, and promoted while it trains.
    folder = trained_project.models / "1.0.0"
    files_before = {p.name: p.read_bytes() for p in folder.iterdir()}
    promoted = []

    def promote_meanwhile(variant: str, done: int, total: int) -> None:
        if not promoted:
            promoted.append(promote(load_settings(trained_project.config), "1.0.0"))

    settings = trained_project.settings.with_training(epochs=2)
    with pytest.raises(VersionExistsError, match="is in production and is never overwritten"):
        train_version(settings, version="1.0.0", force=True, on_epoch=promote_meanwhile)
    assert promoted and promoted[0].record is not None
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files_before
    assert Registry(trained_project.settings).production_version().version == "1.0.0"
    assert not [p for p in trained_project.models.iterdir() if p.name.startswith(".staging")]


def test_force_never_replaces_the_rollback_target(trained_project: Project, cli) -> None:
    promote(trained_project.settings, "1.0.0")
    promote(load_settings(trained_project.config), "1.1.0")  # rollback would return to 1.0.0
    before = state(trained_project)
    result = cli(
        "train",
        "--version",
        "1.0.0",
        "--force",
        "--epochs",
        "1",
        "--config",
        trained_project.config,
    )
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        "Error: version '1.0.0' is the version `hhforecast rollback` would return to (it served "
        "before 1.1.0) and is never overwritten. Train under another name (omit --version for a "
        "dated one)."
    )
    assert state(trained_project) == before


# -- entries validated on read ---------------------------------------------------------------


def edit_registry(project: Project, change) -> None:
    data = json.loads(project.registry_file.read_text())
    change(data["versions"])
    project.registry_file.write_text(json.dumps(data))


def test_an_entry_pointing_outside_models_is_never_promoted_or_loaded(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    elsewhere = tmp_path / "elsewhere" / "1.0.0"
    shutil.copytree(trained_project.models / "1.0.0", elsewhere)

    def point_away(versions: list) -> None:
        versions[0]["path"] = str(elsewhere)

    edit_registry(trained_project, point_away)
    before = state(trained_project)
    for args in (("promote", "1.0.0"), ("validate", "1.0.0")):
        result = cli(*args, "--config", trained_project.config)
        assert result.exit_code == 2, args
        assert "the entry of version '1.0.0'" in one_line(result.stderr)
        assert "is not the folder" in one_line(result.stderr)
    weeks = tmp_path / "weeks.csv"
    weeks.write_text(
        "acft,sum_daily_hours,Cycles,sum_uti_mensal,age_fleet\n250,2400,1500,1e4,1e7\n"
    )
    predicted = cli("predict", "--input", weeks, "--output", tmp_path / "out.csv",
                    "--version", "1.0.0", "--config", trained_project.config)  # fmt: skip
    assert predicted.exit_code == 2 and "is not sound" in one_line(predicted.stderr)
    assert state(trained_project) == before


def test_a_version_named_to_escape_is_never_promoted(trained_project: Project, cli) -> None:
    outside = trained_project.root / "evil2"
    shutil.copytree(trained_project.models / "1.0.0", outside)

    def add_evil(versions: list) -> None:
        versions.append({**versions[0], "version": "../../evil2", "path": "models/../../evil2"})

    edit_registry(trained_project, add_evil)
    before = state(trained_project)
    result = cli("promote", "../../evil2", "--config", trained_project.config)
    assert result.exit_code == 2
    assert "'../../evil2' is not a valid version name" in one_line(result.stderr)
    assert state(trained_project) == before
    assert "evil2" not in trained_project.config.read_text()
    check = cli("registry", "check", "--json", "--config", trained_project.config)
    assert "bad_entry" in {f["kind"] for f in json.loads(check.stdout)["findings"]}


def test_a_version_folder_that_is_a_symlink_out_is_refused(
    trained_project: Project, tmp_path: Path
) -> None:
    folder = trained_project.models / "1.0.0"
    outside = tmp_path / "outside"
    shutil.move(folder, outside)
    os.symlink(outside, folder)
    registry = Registry(trained_project.settings)
    assert "leads elsewhere" in (registry.entry_problem(registry.get("1.0.0")) or "")
    before = state(trained_project)
    with pytest.raises(BadEntryError):
        promote(trained_project.settings, "1.0.0")
    # Nor loaded: predicting and serving read a version through the same check.
    from hhforecast.modeling.predict import load_model
    from hhforecast.serving.production import load_served_model

    with pytest.raises(BadEntryError):
        load_model(trained_project.settings, "1.0.0")
    with pytest.raises(BadEntryError):
        load_served_model(trained_project.settings, registry.get("1.0.0"))
    assert state(trained_project) == before
    assert registry.entry_problem(registry.get("1.1.0")) is None


# -- history -------------------------------------------------------------------------------


def test_promoting_the_current_version_writes_nothing(trained_project: Project, cli) -> None:
    config = trained_project.config
    assert cli("promote", "1.0.0", "--config", config).exit_code == 0
    before = state(trained_project)
    again = cli("promote", "1.0.0", "--config", config)
    assert again.exit_code == 0
    assert "1.0.0 is already in production; nothing was changed." in one_line(again.stdout)
    gated = cli("promote", "1.0.0", "--require-better-rmse", "--json", "--config", config)
    assert gated.exit_code == 0
    assert json.loads(gated.stdout)["already_in_production"] is True
    assert state(trained_project) == before


def test_rollback_returns_to_the_previous_different_version(trained_project: Project) -> None:
    def production() -> str:
        return load_settings(trained_project.config).mlops.production_version

    promote(trained_project.settings, "1.0.0")  # p3
    promote(load_settings(trained_project.config), "1.1.0")  # p4
    promote(load_settings(trained_project.config), "1.1.0")  # p4 again: a no-op
    first = rollback(load_settings(trained_project.config))
    assert (first.record.from_version, first.record.to_version) == ("1.1.0", "1.0.0")
    second = rollback(load_settings(trained_project.config))
    assert (second.record.from_version, second.record.to_version) == ("1.0.0", "1.1.0")
    assert production() == "1.1.0"


def test_a_history_with_a_repeated_promotion_does_not_stick(trained_project: Project) -> None:
    # Written before promoting the current version became a no-op: p3 -> p4 -> p4.
    promote(trained_project.settings, "1.0.0")
    promote(load_settings(trained_project.config), "1.1.0")
    data = json.loads(trained_project.registry_file.read_text())
    data["history"].append({**data["history"][-1], "from": "1.1.0", "from_setting": "1.1.0"})
    trained_project.registry_file.write_text(json.dumps(data))
    moved = rollback(load_settings(trained_project.config))
    assert (moved.record.from_version, moved.record.to_version) == ("1.1.0", "1.0.0")


# -- registry remove -----------------------------------------------------------------------


def test_remove_takes_the_folder_and_the_entry_and_records_it(
    trained_project: Project, cli
) -> None:
    config = trained_project.config
    result = cli("registry", "remove", "1.0.0", "--reason", "trial", "--json", "--config", config)
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["removed"] == "1.0.0"
    assert outcome["folder"] == str(trained_project.models / "1.0.0")
    assert not (trained_project.models / "1.0.0").exists()
    assert [v.version for v in Registry(trained_project.settings).versions()] == ["1.1.0"]
    (record,) = Registry(trained_project.settings).history()
    assert (record["action"], record["from"], record["to"], record["reason"]) == (
        "remove",
        "1.0.0",
        "1.0.0",
        "trial",
    )
    assert outcome["history"] == record
    assert not [p for p in trained_project.models.iterdir() if p.name.startswith(".staging")]
    history = cli("registry", "history", "--config", config)
    assert "✕ 1.0.0" in history.stdout
    # A removal moves nothing: rollback still has nothing to return to.
    assert cli("rollback", "--config", config).exit_code == 2


def test_remove_refuses_production_and_the_rollback_target(trained_project: Project, cli) -> None:
    config = trained_project.config
    before = state(trained_project)
    serving = cli("registry", "remove", "1.1.0", "--config", config)  # "latest" = 1.1.0
    assert serving.exit_code == 2
    assert one_line(serving.stderr) == (
        "Error: version 1.1.0 was not removed: it is the production version; promote another "
        "version first. Nothing was changed."
    )
    assert state(trained_project) == before
    promote(trained_project.settings, "1.0.0")
    promote(load_settings(config), "1.1.0")
    before = state(trained_project)
    target = cli("registry", "remove", "1.0.0", "--config", config)
    assert target.exit_code == 2
    assert "it is the version `hhforecast rollback` would return to (it served before 1.1.0)" in (
        one_line(target.stderr)
    )
    assert state(trained_project) == before
    assert (trained_project.models / "1.0.0" / "model_metadata.json").is_file()


def test_a_failed_registry_write_puts_the_folder_back(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hhforecast.registry.removal import remove_version

    before = state(trained_project)
    files = sorted(p.name for p in (trained_project.models / "1.0.0").iterdir())
    real_replace = os.replace

    def disk_full_on_registry(src, dst):
        if str(dst).endswith("registry.json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_on_registry)
    with pytest.raises(OSError, match="No space left"):
        remove_version(trained_project.settings, "1.0.0")
    monkeypatch.undo()
    assert state(trained_project) == before
    assert sorted(p.name for p in (trained_project.models / "1.0.0").iterdir()) == files


def test_a_removal_killed_before_the_registry_write_is_repaired(
    trained_project: Project, cli
) -> None:
    # The state a kill leaves after the folder was moved aside: the entry, no folder.
    aside = trained_project.models / ".staging-old-0123456789ab"
    os.replace(trained_project.models / "1.0.0", aside)
    fixed = cli("registry", "check", "--fix", "--config", trained_project.config)
    assert fixed.exit_code == 0, fixed.stdout
    assert (trained_project.models / "1.0.0" / "model_metadata.json").is_file()


def test_removing_an_unsound_entry_never_follows_its_path(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained_project.models / "1.0.0", elsewhere)

    def point_away(versions: list) -> None:
        versions[0]["path"] = str(elsewhere)

    edit_registry(trained_project, point_away)
    result = cli("registry", "remove", "1.0.0", "--config", trained_project.config)
    assert result.exit_code == 0, result.stderr
    assert "Removed 1.0.0: its registry entry" in one_line(result.stdout)
    assert (elsewhere / "model_metadata.json").is_file()  # never touched


def test_a_removal_killed_after_the_registry_write_leaves_a_reported_folder(
    trained_project: Project, cli
) -> None:
    from hhforecast.registry.removal import remove_version

    # The state a kill leaves after the registry write, before the folder aside is deleted.
    leftover = trained_project.models / ".staging-old-0123456789ab"
    shutil.copytree(trained_project.models / "1.0.0", leftover)
    remove_version(trained_project.settings, "1.0.0")
    check = cli("registry", "check", "--json", "--config", trained_project.config)
    assert check.exit_code == 1
    findings = json.loads(check.stdout)["findings"]
    assert [(f["kind"], Path(f["path"]).name) for f in findings] == [
        ("leftover_staging", leftover.name)
    ]
