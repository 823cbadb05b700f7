"""`hhforecast registry check`: what a crash or a hand edit leaves on disk, found and repaired."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hhforecast.registry.check import check_registry
from hhforecast.registry.store import Registry

from .conftest import Project
from .test_gate import tamper


def kinds(project: Project) -> list[tuple[str, str | None, bool]]:
    report = check_registry(project.settings)
    return [(f.kind, f.version, bool(f.fix)) for f in report.findings]


def entry(project: Project, version: str) -> dict:
    document = json.loads(project.registry_file.read_text())
    return next(v for v in document["versions"] if v["version"] == version)


def test_a_healthy_registry_is_clean(trained_project: Project, cli) -> None:
    assert kinds(trained_project) == []
    result = cli("registry", "check", "--config", trained_project.config)
    assert result.exit_code == 0, result.stdout
    assert "2 version(s), every folder matches its entry" in result.stdout


def test_a_folder_left_without_its_entry_is_registered_from_its_metadata(
    trained_project: Project, cli
) -> None:
    # What a training killed after moving its folder into place, before writing its entry,
    # leaves behind: a complete version folder that no entry lists.
    models = trained_project.models
    shutil.copytree(models / "1.1.0", models / "1.2.0")
    metadata = json.loads((models / "1.2.0" / "model_metadata.json").read_text())
    metadata["version"] = "1.2.0"
    (models / "1.2.0" / "model_metadata.json").write_text(json.dumps(metadata))
    before = trained_project.registry_file.read_bytes()

    found = cli("registry", "check", "--config", trained_project.config)
    assert found.exit_code == 1
    assert kinds(trained_project) == [("unregistered_folder", "1.2.0", True)]
    assert trained_project.registry_file.read_bytes() == before  # a check changes nothing

    fixed = cli("registry", "check", "--fix", "--config", trained_project.config)
    assert fixed.exit_code == 0, fixed.stdout
    assert "registered version 1.2.0" in fixed.stdout
    added = entry(trained_project, "1.2.0")
    assert added["path"] == "models/1.2.0"
    assert added["metrics_5features"] == entry(trained_project, "1.1.0")["metrics_5features"]
    assert [v.version for v in Registry(trained_project.settings).versions()][-1] == "1.2.0"


def test_a_folder_moved_aside_by_a_stopped_retrain_is_put_back(
    trained_project: Project, cli
) -> None:
    models = trained_project.models
    os.replace(models / "1.0.0", models / ".staging-old-0123456789ab")
    assert kinds(trained_project) == [("missing_folder", "1.0.0", True)]
    fixed = cli("registry", "check", "--fix", "--json", "--config", trained_project.config)
    assert fixed.exit_code == 0, fixed.stdout
    report = json.loads(fixed.stdout)
    assert report["clean"] and report["repaired"] == [
        "moved .staging-old-0123456789ab back to 1.0.0"
    ]
    assert (models / "1.0.0" / "model_metadata.json").is_file()


def test_what_needs_a_person_is_reported_and_left_alone(trained_project: Project, cli) -> None:
    models = trained_project.models
    shutil.rmtree(models / "1.0.0")
    tamper(models / "1.1.0" / "scaler_X_5features.joblib")
    (models / "notes").mkdir()
    result = cli("registry", "check", "--fix", "--json", "--config", trained_project.config)
    assert result.exit_code == 1
    assert kinds(trained_project) == [
        ("missing_folder", "1.0.0", False),
        ("integrity", "1.1.0", False),
        ("unknown_folder", None, False),
    ]
    report = json.loads(result.stdout)
    assert report["repaired"] == [] and not report["clean"]
    assert report["findings"][1]["detail"] == "scaler_X_5features.joblib changed"
    assert (models / "notes").is_dir() and (models / "1.1.0").is_dir()


def test_an_entry_that_disagrees_with_its_folder_is_rewritten(
    trained_project: Project, cli
) -> None:
    document = json.loads(trained_project.registry_file.read_text())
    document["versions"][0]["trained_at"] = "2020-01-01T00:00:00+00:00"
    document["versions"][0]["metrics_5features"]["RMSE"] = 1.0
    trained_project.registry_file.write_text(json.dumps(document))
    assert kinds(trained_project) == [("entry_mismatch", "1.0.0", True)]
    fixed = cli("registry", "check", "--fix", "--config", trained_project.config)
    assert fixed.exit_code == 0, fixed.stdout
    metadata = json.loads((trained_project.models / "1.0.0" / "model_metadata.json").read_text())
    rewritten = entry(trained_project, "1.0.0")
    assert rewritten["trained_at"] == metadata["trained_at"]
    assert rewritten["metrics_5features"] == metadata["variants"]["5features"]["metrics"]
    versions = [
        v["version"] for v in json.loads(trained_project.registry_file.read_text())["versions"]
    ]
    assert versions == ["1.0.0", "1.1.0"]  # rewritten where it stood


def test_only_staging_folders_nobody_writes_to_are_removed(trained_project: Project, cli) -> None:
    models = trained_project.models
    stale, fresh = models / ".staging-aaaaaaaaaaaa", models / ".staging-bbbbbbbbbbbb"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "model_hh_semanal_5features.keras").write_bytes(b"half written")
    two_hours_ago = time.time() - 7200
    for path in (stale / "model_hh_semanal_5features.keras", stale):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert kinds(trained_project) == [
        ("leftover_staging", None, True),
        ("leftover_staging", None, False),
    ]
    result = cli("registry", "check", "--fix", "--config", trained_project.config)
    assert result.exit_code == 1  # the fresh one may be a training still running
    assert not stale.exists() and fresh.is_dir()
    assert "removed .staging-aaaaaaaaaaaa" in result.stdout
    assert kinds(trained_project) == [("leftover_staging", None, False)]


KILLED_TRAINING = """
import os, signal, sys
from hhforecast.cli import app
from hhforecast.registry.store import Registry

def die(self, document):  # the power goes out right after the folder moved into place
    os.kill(os.getpid(), signal.SIGKILL)

assert hasattr(Registry, "write_document"), "the registry writes its file elsewhere now"
Registry.write_document = die
app(["train", "--version", "2.0.0", "--epochs", "1", "--config", sys.argv[1]])
"""


@pytest.mark.slow
def test_a_training_killed_before_its_entry_is_repaired_and_usable(
    trained_project: Project, cli, tmp_path_factory
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING, str(trained_project.config)],
        cwd=trained_project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (trained_project.models / "2.0.0" / "model_metadata.json").is_file()
    assert "2.0.0" not in trained_project.registry_file.read_text()

    fixed = cli("registry", "check", "--fix", "--config", trained_project.config)
    assert fixed.exit_code == 0, fixed.stdout
    assert "registered version 2.0.0" in fixed.stdout
    weeks = tmp_path_factory.mktemp("weeks") / "weeks.csv"
    weeks.write_text(
        "acft,sum_daily_hours,Cycles,sum_uti_mensal,age_fleet\n249,2539.5,1591,11261.3,8037205.9\n"
    )
    scored = cli(
        "predict", "--input", weeks, "--output", weeks.with_name("out.csv"), "--version", "2.0.0"
    )
    assert scored.exit_code == 0, scored.stderr
    validated = cli("validate", "2.0.0", "--config", trained_project.config)
    assert validated.exit_code == 0, validated.stdout
