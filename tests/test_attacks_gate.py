"""Attacks on the promotion gate: each promise of docs/promotion.md against what breaks it.

A candidate replaced while it is judged, a metadata file edited behind the registry's back, one
byte appended to a file production does not use, a candidate trained on scrambled features: none
of them may move the production pointer. A gated promotion reads registry.json twice and hashes
each artifact twice (to judge, then under the lock).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import hhforecast.gate.promote as promote_module
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.errors import HHForecastError
from hhforecast.gate.promote import (
    ProductionUnscoredError,
    PromotionRefusedError,
    ValidationFailedError,
    promote,
)
from hhforecast.modeling.artifacts import artifact_names
from hhforecast.modeling.training import train_version
from hhforecast.registry.snapshot import VersionChangedError
from hhforecast.registry.store import Registry

from .conftest import Project

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


def production(project: Project) -> str:
    entry = Registry(project.settings).production_version()
    assert entry is not None
    return entry.version


def state(project: Project) -> tuple[bytes, bytes]:
    return project.config.read_bytes(), project.registry_file.read_bytes()


def spy_on_moves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The refusals of the registry's move under its lock, as they happen."""
    refusals: list[str] = []
    real_move = Registry.move_production

    def move(self, *args, **kwargs):
        try:
            return real_move(self, *args, **kwargs)
        except VersionChangedError as exc:
            refusals.append(" ".join(str(exc).split()))
            raise

    monkeypatch.setattr(Registry, "move_production", move)
    return refusals


def after_judging(monkeypatch: pytest.MonkeyPatch, act: Callable[[Any], None]) -> None:
    """Run `act(candidate handle)` right after each judgement, before the move under the lock:
    what another process could do in that window."""
    real_judge = promote_module.judge_handles

    def judge_then_act(settings: Any, candidate: Any, *args: Any, **kwargs: Any) -> Any:
        report = real_judge(settings, candidate, *args, **kwargs)
        act(candidate)
        return report

    monkeypatch.setattr(promote_module, "judge_handles", judge_then_act)


def append_a_byte(path: Path) -> Callable[[Any], None]:
    def act(_: Any) -> None:
        with path.open("ab") as handle:  # after its hash matched, before the lock
            handle.write(b"\0")

    return act


def test_a_candidate_retrained_while_it_is_judged_is_judged_again(
    ranked_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --force` of the candidate between its scoring and the move: the pointer never moves
    to files that were not judged; the new files are judged, and lose."""
    project = ranked_project
    promote(project.settings, "1.2.0")  # the worse forecaster, pinned
    noise = project.root / "noise.csv"
    frame = pd.read_csv(sample_dataset_path())
    frame["HH"] = frame["HH"].sample(frac=1.0, random_state=3).to_numpy() * 13
    frame.to_csv(noise, index=False)
    judged: list[str] = []

    def retrain(candidate: Any) -> None:
        judged.append(str(candidate.metadata_sha256))
        if len(judged) == 1:  # another terminal runs `train --force 1.0.0` on a bad export
            settings = project.settings.with_training(epochs=1)
            train_version(settings, noise, "1.0.0", force=True)

    after_judging(monkeypatch, retrain)
    moves = spy_on_moves(monkeypatch)
    with pytest.raises(HHForecastError) as refused:  # the new 1.0.0, looked at in turn
        promote(project.settings, "1.0.0", require_better_rmse=True)
    assert production(project) == "1.2.0"
    assert moves == [
        "candidate 1.0.0 changed while it was being judged (its registry entry was rewritten); "
        "nothing was changed. Run the command again to judge the version as it is now."
    ]
    assert "the candidate's dataset noise.csv" in str(refused.value)  # the new files' dataset


def test_a_candidate_changed_at_every_attempt_is_never_promoted(
    ranked_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = ranked_project
    promote(project.settings, "1.2.0")
    before = state(project)
    model = project.models / "1.0.0" / artifact_names("5features")["model"]
    after_judging(monkeypatch, append_a_byte(model))
    moves = spy_on_moves(monkeypatch)
    with pytest.raises(ValidationFailedError) as refused:  # the second look sees the change
        promote(project.settings, "1.0.0", require_better_rmse=True)
    assert "integrity: model_hh_semanal_5features.keras changed" in str(refused.value)
    assert moves == [
        "candidate 1.0.0 changed while it was being judged (model_hh_semanal_5features.keras "
        "changed); nothing was changed. Run the command again to judge the version as it is now."
    ]
    assert state(project) == before


def test_production_replaced_while_judged_is_noticed(
    ranked_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = ranked_project
    promote(project.settings, "1.2.0")
    before = state(project)
    theirs = project.models / "1.2.0" / artifact_names("5features")["model"]
    after_judging(monkeypatch, append_a_byte(theirs))
    moves = spy_on_moves(monkeypatch)
    with pytest.raises(ProductionUnscoredError):  # the second look cannot score production
        promote(project.settings, "1.0.0", require_better_rmse=True)
    assert moves == [
        "production 1.2.0 changed while it was being judged (model_hh_semanal_5features.keras "
        "changed); nothing was changed. Run the command again to judge the version as it is now."
    ]
    assert state(project) == before


def test_plain_promote_refuses_metadata_the_registry_does_not_record(
    scored_project: Project, cli
) -> None:
    project = scored_project
    promote(project.settings, "1.0.0")
    before = state(project)
    meta = project.models / "1.1.0" / "model_metadata.json"
    data = json.loads(meta.read_text())
    data["variants"]["5features"]["interval"]["halfwidth"] = 0.0  # artifacts untouched
    meta.write_text(json.dumps(data))
    result = cli("promote", "1.1.0", "--config", project.config)
    assert result.exit_code == 1
    assert (
        "Error: version 1.1.0 failed its integrity check in "
        f"{project.models / '1.1.0'}: model_metadata.json changed: it does not match the SHA-256 "
        "its registry entry records. Restore the folder from a backup or train the version again."
    ) == " ".join(result.stderr.split())
    assert state(project) == before


def test_a_byte_appended_to_a_file_production_does_not_use_keeps_the_gate_on(
    ranked_project: Project,
) -> None:
    project = ranked_project
    promote(project.settings, "1.0.0")
    unused = project.models / "1.0.0" / artifact_names("4features")["scaler_X"]
    with unused.open("ab") as handle:
        handle.write(b"\0")
    before = state(project)
    with pytest.raises(PromotionRefusedError) as refused:
        promote(project.settings, "1.2.0", require_better_rmse=True)
    report = refused.value.report
    assert report.production_rmse is not None and report.candidate_rmse > report.production_rmse
    assert any(
        "production 1.0.0's files that 5features does not use fail their check "
        "(scaler_X_4features.joblib changed)" in w
        for w in report.warnings
    )
    assert state(project) == before


def test_a_production_that_cannot_be_scored_refuses_the_gate(ranked_project: Project, cli) -> None:
    project = ranked_project
    promote(project.settings, "1.0.0")
    used = project.models / "1.0.0" / artifact_names("5features")["model"]
    with used.open("ab") as handle:
        handle.write(b"\0")
    before = state(project)
    result = cli("promote", "1.2.0", "--require-better-rmse", "--config", project.config)
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert text.startswith(
        "Error: refused to promote 1.2.0: production 1.0.0 cannot be scored: version 1.0.0 "
        "cannot be loaded: model_hh_semanal_5features.keras changed."
    )
    assert "replace it deliberately with `hhforecast promote 1.2.0` without the gate" in text
    assert state(project) == before


def test_a_candidate_trained_on_scrambled_features_is_refused(scored_project: Project, cli) -> None:
    project = scored_project
    promote(project.settings, "1.0.0")
    scrambled = project.root / "scrambled.csv"
    frame = pd.read_csv(sample_dataset_path())
    rotated = FEATURES[1:] + FEATURES[:1]  # a wrong column mapping: every feature shifted by one
    frame[FEATURES] = frame[rotated].to_numpy()
    frame.to_csv(scrambled, index=False)
    train_version(project.settings.with_training(epochs=2), scrambled, "9.0.0")
    before = state(project)
    result = cli("promote", "9.0.0", "--require-better-rmse", "--config", project.config)
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert text.startswith(
        "Error: the candidate's dataset scrambled.csv and production 1.0.0's dataset "
        "sample:sample_weekly.csv disagree on the weeks both hold (different acft for 260 of the "
        "260 weeks, different sum_daily_hours for 260 of the 260 weeks"
    ), text
    assert "check the export and its column mapping" in text
    assert state(project) == before


def test_a_gated_promotion_reads_the_registry_twice_and_hashes_each_artifact_twice(
    ranked_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = ranked_project
    promote(project.settings, "1.2.0")
    settings = project.settings
    opened: Counter[str] = Counter()
    real_open = io.open

    def counting(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and not set(mode) & set("wax+"):
            path = Path(file)
            opened[f"{path.parent.name}/{path.name}"] += 1
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(io, "open", counting)
        result = promote(settings, "1.0.0", require_better_rmse=True)
    assert result.record is not None and production(project) == "1.0.0"
    assert opened["models/registry.json"] == 2  # the snapshot, then under the lock
    candidate = [n for n in opened if n.startswith("1.0.0/")]
    artifacts = [n for n in candidate if not n.endswith("model_metadata.json")]
    assert len(artifacts) == 7 and all(opened[n] == 2 for n in artifacts), opened
    assert opened["1.0.0/model_metadata.json"] == 2  # opened once, re-hashed under the lock
    assert opened["1.2.0/model_metadata.json"] == 2
    # Loaded by the caller, then the snapshot's pointer and the pointer under the lock.
    assert opened[f"{project.root.name}/config.yaml"] <= 3, opened


def test_production_s_dataset_is_read_with_the_configured_rules(project: Project, cli) -> None:
    """Both versions learnt from a Brazilian-style export (dd/mm/yyyy, `;`, decimal comma): the
    gate reads production's copy with `dataset.dayfirst` too, and judges instead of refusing."""
    frame = pd.read_csv(sample_dataset_path())
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y")
    exported = project.root / "export.csv"
    frame.to_csv(exported, sep=";", decimal=",", index=False, encoding="cp1252")
    text = project.config.read_text().replace("training:", "training:\n  refit_on_all_weeks: false")
    text += "dataset:\n  dayfirst: true\n"
    project.config.write_text(text)
    settings = project.settings.with_training(epochs=2)
    train_version(settings, exported, "1.0.0")
    train_version(settings.with_training(seed=5), exported, "2.0.0")
    promote(project.settings, "1.0.0")
    result = cli("promote", "2.0.0", "--require-better-rmse", "--config", project.config)
    assert result.exit_code in (0, 1), result.stderr  # a verdict, not a refusal to read
    assert "evaluation weeks" in " ".join((result.stdout + result.stderr).split())


def test_retrain_json_keeps_the_training_run_when_the_candidate_cannot_be_judged(
    project: Project, cli
) -> None:
    """retrain --json reports the MLflow run of its training on every path, a refusal to judge
    included (here tracking points at a port where nothing listens: the run's problem)."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from .mlflow_server import free_port

    train_version(project.settings.with_training(epochs=2), None, "1.0.0")
    promote(project.settings, "1.0.0")
    scrambled = project.root / "scrambled.csv"
    frame = pd.read_csv(sample_dataset_path())
    frame[FEATURES] = frame[FEATURES[::-1]].to_numpy()
    frame.to_csv(scrambled, index=False)
    text = project.config.read_text() + f"mlflow:\n  tracking_uri: http://127.0.0.1:{free_port()}\n"
    project.config.write_text(text)
    result = cli("retrain", "--dataset", scrambled, "--version", "2.0.0", "--json")
    assert result.exit_code == 1, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["promoted"] is False and "disagree on the weeks both hold" in outcome["why"]
    assert outcome["mlflow"]["run"]["tracking"] is True
    assert outcome["mlflow"]["run"]["problem"]
