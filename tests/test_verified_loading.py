"""No artifact is parsed before its SHA-256 matches: planted pickles, copied scalers, rewritten
metadata, on every path that loads a version (predict, drift, validate, serve and reload)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest

from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.errors import ArtifactError
from hhforecast.modeling.artifacts import load_variant
from hhforecast.modeling.predict import load_model
from hhforecast.serving.app import create_app

from .conftest import Project, rerecord
from .test_serve_e2e import WEEK, free_port, start_server, stop_server


class Payload:
    """Unpickling this creates the marker file: proof that a planted pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def foreign_scaler(target: Path) -> None:
    """A fitted scaler of other weeks, as another version trained on other data would hold."""
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(sample_dataset_path()).head(60)
    columns = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
    shape = (-1, 1) if target.name.startswith("scaler_y") else (-1, len(columns))
    values = frame["HH" if shape[1] == 1 else columns].to_numpy(dtype=float).reshape(shape)
    joblib.dump(StandardScaler().fit(values), target)


def plant(folder: Path, marker: Path, name: str = "scaler_X_5features.joblib") -> Path:
    target = folder / name
    joblib.dump(Payload(marker), target)
    return target


def weeks_file(tmp_path: Path) -> Path:
    path = tmp_path / "weeks.csv"
    pd.read_csv(sample_dataset_path()).tail(3).drop(columns=["HH"]).to_csv(path, index=False)
    return path


def recent_file(tmp_path: Path) -> Path:
    path = tmp_path / "recent.csv"
    pd.read_csv(sample_dataset_path()).tail(20).to_csv(path, index=False)
    return path


def drop_scaling_numbers(folder: Path) -> None:
    """Make the version look trained before the scalers were kept as numbers (joblib only)."""
    path = folder / "model_metadata.json"
    metadata = json.loads(path.read_text())
    for info in metadata["variants"].values():
        info.pop("scaling")
    path.write_text(json.dumps(metadata, indent=2))
    rerecord(folder)


@pytest.mark.parametrize("legacy", [False, True], ids=["scaling-in-metadata", "joblib-scalers"])
def test_a_planted_pickle_never_runs_in_predict_drift_or_validate(
    trained_project: Project, tmp_path: Path, cli, legacy: bool
) -> None:
    folder = trained_project.models / "1.0.0"
    if legacy:  # the loader unpickles these scalers: the checksum must come first
        drop_scaling_numbers(folder)
    marker = tmp_path / "pwned"
    plant(folder, marker)

    predicted = cli(
        "predict",
        "--version",
        "1.0.0",
        "--input",
        weeks_file(tmp_path),
        "--output",
        tmp_path / "o.csv",
    )
    assert predicted.exit_code == 1
    assert "scaler_X_5features.joblib does not match the SHA-256 recorded" in predicted.stderr
    drifted = cli("drift", "--version", "1.0.0", "--recent", recent_file(tmp_path))
    assert drifted.exit_code == 1 and "scaler_X_5features.joblib" in drifted.stderr
    validated = cli("validate", "1.0.0")
    assert validated.exit_code == 1 and "scaler_X_5features.joblib changed" in validated.stdout
    assert not marker.exists()


def test_a_scaler_from_another_version_is_refused_by_name(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    models = trained_project.models
    foreign_scaler(models / "1.0.0" / "scaler_X_5features.joblib")
    result = cli(
        "predict",
        "--version",
        "1.0.0",
        "--input",
        weeks_file(tmp_path),
        "--output",
        tmp_path / "o.csv",
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {models / '1.0.0' / 'scaler_X_5features.joblib'} does not match the SHA-256 "
        "recorded in model_metadata.json"
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "o.csv").exists()


def test_a_file_swapped_after_its_hash_matched_is_not_what_gets_parsed(
    trained_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import hhforecast.modeling.artifacts as artifacts

    folder = trained_project.models / "1.0.0"
    before = load_variant(folder, "5features")
    marker = tmp_path / "ran"
    hash_bytes = artifacts.bytes_sha256
    swapped: list[str] = []

    def hash_then_swap(data: bytes) -> str:
        digest = hash_bytes(data)
        # Right after the check, every scaler and network on disk is replaced by a pickle bomb.
        for name in ("scaler_X_5features.joblib", "model_hh_semanal_5features.keras"):
            if not (folder / name).read_bytes().startswith(b"\x80"):
                plant(folder, marker, name)
                swapped.append(name)
        return digest

    monkeypatch.setattr(artifacts, "bytes_sha256", hash_then_swap)
    after = load_variant(folder, "5features")
    assert swapped, "the files were not swapped: the test did not run its attack"
    rows = before.reference_rows()
    np.testing.assert_allclose(after.predict(rows), before.predict(rows), rtol=0, atol=1e-9)
    assert not marker.exists()


def test_metadata_rewritten_with_the_files_is_refused_by_the_registry_entry(
    trained_project: Project,
) -> None:
    # Replace a scaler *and* record it in the metadata: the files agree with the metadata,
    # but the metadata no longer agrees with the registry entry.
    models = trained_project.models
    foreign_scaler(models / "1.0.0" / "scaler_X_5features.joblib")
    metadata_path = models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["variants"]["5features"]["scaling"]["x_mean"][0] += 10.0
    metadata_path.write_text(json.dumps(metadata))
    rerecord(models / "1.0.0", "scaler_X_5features.joblib", registry=False)
    load_variant(models / "1.0.0", "5features")  # the folder alone is self-consistent
    with pytest.raises(ArtifactError) as info:
        load_model(trained_project.settings, "1.0.0")
    assert str(info.value).startswith(
        f"{metadata_path} does not match the SHA-256 recorded in the registry entry"
    )


def test_a_malformed_metadata_checksum_in_the_registry_is_refused(
    trained_project: Project,
) -> None:
    registry = json.loads(trained_project.registry_file.read_text())
    registry["versions"][0]["metadata_sha256"] = "../../etc"
    trained_project.registry_file.write_text(json.dumps(registry))
    with pytest.raises(ArtifactError, match="'metadata_sha256' is not a SHA-256"):
        load_model(trained_project.settings, "1.0.0")


def test_serve_refuses_to_start_on_a_planted_pickle(trained_project: Project, tmp_path: Path):
    folder = trained_project.models / "1.1.0"  # production: the newest version
    marker = tmp_path / "pwned"
    plant(folder, marker, "scaler_y_5features.joblib")
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "hhforecast", "serve", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=trained_project.root,
        env={**os.environ, "HHFORECAST_CONFIG": str(trained_project.config)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "scaler_y_5features.joblib does not match the SHA-256 recorded" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_reload_onto_a_planted_pickle_keeps_the_old_model(
    trained_project: Project, tmp_path: Path
) -> None:
    server = start_server(trained_project)
    try:
        before = httpx.post(f"{server.url}/api/predict", json=WEEK).json()
        marker = tmp_path / "pwned"
        plant(trained_project.models / "1.0.0", marker)
        config = trained_project.config
        config.write_text(
            config.read_text() + "mlops:\n  production_version: '1.0.0'\n", encoding="utf-8"
        )
        reloaded = httpx.post(f"{server.url}/api/reload")
        assert reloaded.status_code == 409, reloaded.text
        assert "scaler_X_5features.joblib does not match" in reloaded.text
        after = httpx.post(f"{server.url}/api/predict", json=WEEK).json()
        assert after == before and after["model_version"] == "1.1.0"
        assert not marker.exists()
    finally:
        stop_server(server)


def test_the_follower_keeps_the_old_model_when_a_scaler_was_swapped(
    trained_project: Project,
) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    models = trained_project.models
    foreign_scaler(models / "1.0.0" / "scaler_y_5features.joblib")
    config = trained_project.config
    config.write_text(config.read_text() + "mlops:\n  production_version: '1.0.0'\n")
    outcome = app.state.serving.follower.poll_once()
    assert outcome is not None and outcome.failure is not None
    assert "scaler_y_5features.joblib does not match" in outcome.failure.message
    assert app.state.serving.follower.current.entry.version == "1.1.0"


def test_drift_refuses_a_changed_drift_reference_by_name(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    reference = trained_project.models / "1.1.0" / "drift_reference.csv"
    lines = reference.read_text().splitlines()
    reference.write_text("\n".join(lines[:-5]) + "\n")  # five training weeks fewer
    result = cli("drift", "--recent", recent_file(tmp_path), "--config", trained_project.config)
    assert result.exit_code == 1
    assert f"{reference} does not match the SHA-256 recorded in model_metadata.json" in (
        result.stderr
    )


def test_training_records_the_metadata_checksum_in_the_registry_entry(
    trained_project: Project,
) -> None:
    import hashlib

    for entry in json.loads(trained_project.registry_file.read_text())["versions"]:
        metadata = trained_project.models / entry["version"] / "model_metadata.json"
        assert entry["metadata_sha256"] == hashlib.sha256(metadata.read_bytes()).hexdigest()
        scaling = json.loads(metadata.read_text())["variants"]["5features"]["scaling"]
        assert len(scaling["x_mean"]) == 5 and len(scaling["y_scale"]) == 1
