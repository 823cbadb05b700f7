"""The production pointer: config.yaml rewritten in place, history, rollback, faults, races."""

import getpass
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hhforecast.config import load_settings
from hhforecast.errors import ConfigError, RegistryCorruptError, RegistryError
from hhforecast.registry import store as registry_module
from hhforecast.registry.history import RmseComparison
from hhforecast.registry.pointer import rewrite_production_version
from hhforecast.registry.store import ProductionMovedError, Registry

from .conftest import Project

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = (ROOT / "config.yaml").read_text(encoding="utf-8")


# -- the text-level rewrite ------------------------------------------------------------------


def test_rewrite_changes_only_the_value_of_the_shipped_config() -> None:
    rewritten = rewrite_production_version(SHIPPED_CONFIG, "1.1.0")
    assert rewritten == SHIPPED_CONFIG.replace(
        'production_version: "latest"', 'production_version: "1.1.0"', 1
    )
    assert "# or a fixed version such as" in rewritten  # the comment on that very line stays


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # plain scalar with a comment: stays plain, comment kept
        (
            "mlops:\n  production_version: latest  # pinned?\n  serve_variant: 5features\n",
            "mlops:\n  production_version: 1.1.0  # pinned?\n  serve_variant: 5features\n",
        ),
        # single quotes and Windows line endings are kept
        (
            "mlops:\r\n  production_version: 'latest'\r\n",
            "mlops:\r\n  production_version: '1.1.0'\r\n",
        ),
        # flow style
        (
            "mlops: {production_version: latest, registry_file: r.json}  # c\n",
            "mlops: {production_version: 1.1.0, registry_file: r.json}  # c\n",
        ),
        # section without the key: added with the section's indentation, after its last key
        (
            "mlops:\n    registry_file: r.json   # c\n\n# end\n",
            'mlops:\n    registry_file: r.json   # c\n    production_version: "1.1.0"\n\n# end\n',
        ),
        # empty section
        (
            "mlops:\n# c\ntraining:\n  epochs: 3\n",
            'mlops:\n  production_version: "1.1.0"\n# c\ntraining:\n  epochs: 3\n',
        ),
        # no section: appended at the end (a missing final newline is supplied)
        (
            "paths:\n  models_dir: models",
            'paths:\n  models_dir: models\nmlops:\n  production_version: "1.1.0"\n',
        ),
        ("", 'mlops:\n  production_version: "1.1.0"\n'),
        ("# only a comment\n", '# only a comment\nmlops:\n  production_version: "1.1.0"\n'),
        # key with no value
        ("mlops:\n  production_version:\n", "mlops:\n  production_version: 1.1.0\n"),
    ],
)
def test_rewrite_keeps_every_other_byte(text: str, expected: str) -> None:
    assert rewrite_production_version(text, "1.1.0") == expected


def test_a_version_that_yaml_would_read_as_a_number_is_quoted() -> None:
    text = "mlops:\n  production_version: latest\n"
    assert rewrite_production_version(text, "20240226") == (
        'mlops:\n  production_version: "20240226"\n'
    )
    assert load_settings_from_text(rewrite_production_version(text, "20240226")) == "20240226"


def load_settings_from_text(text: str) -> str:
    return str(yaml.safe_load(text)["mlops"]["production_version"])


def test_a_layout_that_cannot_be_rewritten_alone_is_refused() -> None:
    # The anchor is shared: changing it in place would change `other` too.
    text = "mlops: &m {production_version: latest}\nother: *m\n"
    with pytest.raises(ConfigError, match=r"cannot set mlops\.production_version without"):
        rewrite_production_version(text, "1.1.0", "config.yaml")


# -- moving production -----------------------------------------------------------------------


def versions(project: Project) -> Registry:
    return Registry(project.settings)


def test_promotion_rewrites_only_the_value_and_records_who_and_why(
    trained_project: Project,
) -> None:
    before = trained_project.config.read_bytes()
    registry = versions(trained_project)
    record = registry.move_production("1.0.0", variant="5features", reason="pin for audit")
    after = trained_project.config.read_bytes()
    assert after == rewrite_production_version(before.decode(), "1.0.0").encode()
    assert load_settings(trained_project.config).mlops.production_version == "1.0.0"
    assert registry.production_version().version == "1.0.0"  # the object follows the move
    (entry,) = json.loads(trained_project.registry_file.read_text())["history"]
    assert entry == record.to_entry()
    assert entry["from"] == "1.1.0" and entry["to"] == "1.0.0"  # "latest" was the newest
    assert entry["from_setting"] == "latest"
    assert entry["reason"] == "pin for audit"
    assert entry["user"] == getpass.getuser()
    assert entry["rmse_to"] == registry.get("1.0.0").metric("5features", "RMSE")
    assert entry["rmse_from"] == registry.get("1.1.0").metric("5features", "RMSE")


def test_without_a_config_file_promotion_creates_one(trained_project: Project) -> None:
    trained_project.config.unlink()
    settings = load_settings(cwd=trained_project.root)
    assert settings.source is None
    Registry(settings).move_production("1.0.0", variant="5features", reason="")
    created = trained_project.root / "config.yaml"
    assert 'mlops:\n  production_version: "1.0.0"\n' in created.read_text()
    assert load_settings(cwd=trained_project.root).mlops.production_version == "1.0.0"


def test_rollback_puts_the_previous_version_back_and_toggles(trained_project: Project) -> None:
    registry = versions(trained_project)
    registry.move_production("1.0.0", variant="5features", reason="")
    registry.move_production("1.1.0", variant="5features", reason="")
    record = registry.rollback(variant="5features", reason="rollback")
    assert (record.from_version, record.to_version, record.action) == ("1.1.0", "1.0.0", "rollback")
    assert load_settings(trained_project.config).mlops.production_version == "1.0.0"
    # Rolling back a rollback returns to the version it replaced, like `cd -`.
    assert registry.rollback(variant="5features", reason="rollback").to_version == "1.1.0"
    assert [r.action for r in registry.promotions()] == [
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]


def test_rollback_without_history_is_a_clear_error(trained_project: Project) -> None:
    with pytest.raises(RegistryError, match=r"nothing to roll back: no promotion is recorded"):
        versions(trained_project).rollback(variant="5features", reason="rollback")


def test_a_comparison_against_a_production_that_moved_changes_nothing(
    trained_project: Project,
) -> None:
    registry = versions(trained_project)
    stale = RmseComparison("1.0.0", 100.0, 90.0, "same weeks")  # production is 1.1.0
    before = trained_project.config.read_bytes(), trained_project.registry_file.read_bytes()
    with pytest.raises(ProductionMovedError, match=r"production moved from 1\.0\.0 to 1\.1\.0"):
        registry.move_production("1.0.0", variant="5features", reason="", comparison=stale)
    after = trained_project.config.read_bytes(), trained_project.registry_file.read_bytes()
    assert after == before


def test_a_failed_config_write_takes_the_history_entry_back(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = versions(trained_project)
    config_before = trained_project.config.read_bytes()

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry_module, "atomic_write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        registry.move_production("1.0.0", variant="5features", reason="")
    assert trained_project.config.read_bytes() == config_before
    assert registry.history() == []


def test_a_kill_between_the_two_writes_is_harmless(trained_project: Project) -> None:
    registry = versions(trained_project)
    registry.move_production("1.0.0", variant="5features", reason="")
    # A kill after the history write and before the config write leaves this state:
    config_before = trained_project.config.read_bytes()
    registry.move_production("1.1.0", variant="5features", reason="interrupted")
    trained_project.config.write_bytes(config_before)
    fresh = versions(trained_project)
    assert fresh.production_version().version == "1.0.0"  # the old state for every reader
    # The stray entry does not confuse rollback: 1.0.0 came from 1.1.0 in the first entry.
    assert fresh.rollback_target() == ("1.0.0", "1.1.0")


def test_a_corrupt_registry_is_reported_and_never_overwritten(trained_project: Project) -> None:
    trained_project.registry_file.write_text('{"versions": [ {"version": "1.0.0"', "utf-8")
    registry_before = trained_project.registry_file.read_bytes()
    config_before = trained_project.config.read_bytes()
    with pytest.raises(RegistryCorruptError, match=r"is corrupt \(not valid JSON"):
        versions(trained_project).move_production("1.0.0", variant="5features", reason="")
    assert trained_project.registry_file.read_bytes() == registry_before
    assert trained_project.config.read_bytes() == config_before


@pytest.mark.slow
def test_twenty_parallel_promotions_leave_a_valid_config_and_twenty_entries(
    trained_project: Project,
) -> None:
    before = trained_project.config.read_text()
    targets = ["1.0.0", "1.1.0"] * 10
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "hhforecast", "promote", version, "--reason", f"run {i}"],
            cwd=trained_project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, version in enumerate(targets)
    ]
    outcomes = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in outcomes] == [0] * 20, outcomes
    # A promotion of the version already pinned is a no-op that writes nothing; the first one
    # of the version "latest" resolves to pins it by name (a move, recorded).
    said = [p.stdout.read() if p.stdout is not None else "" for p in processes]
    moved = [
        f"run {i}"
        for i, out in enumerate(said)
        if "Promoted:" in out or "it is now pinned by name" in out
    ]
    final = load_settings(trained_project.config).mlops.production_version
    assert trained_project.config.read_text() == rewrite_production_version(before, final)
    history = versions(trained_project).promotions()
    assert len(history) == len(moved) >= 1
    assert sorted(r.reason for r in history) == sorted(moved)
    # Serialised under the lock: each move starts where the one before it ended.
    assert history[0].from_version == "1.1.0"
    for earlier, later in itertools.pairwise(history):
        assert later.from_version == earlier.to_version
    assert history[-1].to_version == final


@pytest.mark.slow
def test_promotions_during_a_training_lose_nothing(trained_project: Project) -> None:
    def run(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "hhforecast", *args],
            cwd=trained_project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    training = run("train", "--version", "2.0.0", "--epochs", "1")
    promotions = [run("promote", v) for v in ["1.0.0", "1.1.0"] * 3]
    for process in [training, *promotions]:
        assert process.wait(timeout=240) == 0, process.stderr.read() if process.stderr else ""
    said = [p.stdout.read() if p.stdout else "" for p in promotions]
    # A move: a promotion, or the first pin of the version "latest" resolves to (recorded).
    moved = sum("Promoted:" in out or "it is now pinned by name" in out for out in said)
    registry = versions(trained_project)
    assert [v.version for v in registry.versions()] == ["1.0.0", "1.1.0", "2.0.0"]
    assert len(registry.promotions()) == moved >= 1
    assert load_settings(trained_project.config).mlops.production_version in {"1.0.0", "1.1.0"}


PROMOTE_WHEN_TOLD = """
import sys

import hhforecast.gate.promote  # everything the promotion imports, before it starts
from hhforecast.cli import app

print("promoting", flush=True)
app(["promote", sys.argv[1]])
"""


def test_a_promotion_killed_at_any_moment_leaves_the_old_or_the_new_state(
    trained_project: Project,
) -> None:
    original = trained_project.config.read_text()
    current = "latest"
    # Delays counted from the moment the promotion starts (after the imports, which would
    # otherwise swallow most kills): from before its first write to after its last.
    for i, delay in enumerate([0.0, 0.01, 0.02, 0.03, 0.045, 0.06, 0.09, 0.5]):
        target = ["1.0.0", "1.1.0"][i % 2]
        process = subprocess.Popen(
            [sys.executable, "-c", PROMOTE_WHEN_TOLD, target],
            cwd=trained_project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stderr is not None
        if process.stdout.readline() != "promoting\n":
            pytest.fail(f"the promotion did not start: {process.communicate()[1]}")
        time.sleep(delay)
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
        old = rewrite_production_version(original, current) if current != "latest" else original
        assert trained_project.config.read_text() in {
            old,
            rewrite_production_version(original, target),
        }
        current = load_settings(trained_project.config).mlops.production_version
        json.loads(trained_project.registry_file.read_text())  # still valid JSON
    # The lock died with its holder: the next promotion goes through.
    registry = versions(trained_project)
    assert registry.move_production("1.0.0", variant="5features", reason="after kills").reason
    assert registry.promotions()[-1].to_version == "1.0.0"
