"""Hostile and unlucky inputs: deep JSON, unreadable files, absurd weeks, open reloads, umask."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from hhforecast._fs import atomic_write_text
from hhforecast._json import MAX_JSON_DEPTH, JSONDepthError, loads
from hhforecast.errors import HHForecastError
from hhforecast.modeling.predict import load_model, predict_frame
from hhforecast.registry.check import check_registry, repair
from hhforecast.serving.app import create_app
from hhforecast.serving.server import plan_server

from .conftest import Project
from .test_serve_e2e import WEEK, free_port

ZERO_WEEK = dict.fromkeys(WEEK, 0)


def client_for(project: Project) -> TestClient:
    return TestClient(create_app(project.settings, follow_production=False))


SAMPLE_SAID = "Warning: training on the simulated sample"
"""Said whenever the bundled sample is trained on (test_sample_dataset.py), before any error."""


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    # The sample's warning and the training's progress bars come first; the error is one line.
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if line.strip() and not line.startswith(SAMPLE_SAID) and "━" not in line
    ]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# -- JSON nesting ----------------------------------------------------------------------------


def test_the_depth_limit_counts_brackets_outside_strings_only() -> None:
    assert loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(JSONDepthError, match="more than 64 levels"):
        loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    value = "[" * 500 + '"' + "{" * 500  # brackets inside a string do not nest
    assert loads(json.dumps({"a": value})) == {"a": value}


def test_a_deeply_nested_prediction_body_is_refused_naming_the_rule(
    trained_project: Project,
) -> None:
    client = client_for(trained_project)
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(
        "/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["field"], error["rule"]) == ("body", "max_depth")
    assert "nested more than 64 levels" in error["message"]


def test_a_deeply_nested_registry_is_an_error_not_a_traceback(
    trained_project: Project, cli
) -> None:
    trained_project.registry_file.write_text('{"versions": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = cli("registry", "list", "--config", trained_project.config)
    assert result.exit_code == 2
    assert "is corrupt (arrays and objects are nested more than 64 levels deep)" in (
        one_line_error(result)
    )


# -- files the user owns ---------------------------------------------------------------------


def test_a_config_that_is_not_utf8_is_one_line_and_exit_2(project: Project, cli) -> None:
    project.config.write_bytes("training:\n  epochs: 5 # é\n".encode("latin-1"))
    result = cli("registry", "list", "--config", project.config)
    assert result.exit_code == 2
    assert "not UTF-8 text (byte" in one_line_error(result)


def test_a_models_folder_that_cannot_be_written_is_one_line_and_exit_2(
    project: Project, cli
) -> None:
    (project.root / "models").write_text("a file where the models folder should be")
    result = cli("train", "--version", "1.0.0", "--config", project.config)
    assert result.exit_code == 2
    line = one_line_error(result)
    assert str(project.root / "models") in line and "Check that the path exists" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_models_folder_is_one_line_and_exit_2(project: Project, cli) -> None:
    models = project.root / "models"
    models.mkdir()
    models.chmod(0o555)
    try:
        result = cli("train", "--version", "1.0.0", "--config", project.config)
    finally:
        models.chmod(0o755)
    assert result.exit_code == 2 and "Permission denied" in one_line_error(result)


def test_an_output_path_below_a_file_is_one_line_and_exit_2(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    weeks = tmp_path / "weeks.csv"
    pd.DataFrame([WEEK]).to_csv(weeks, index=False)
    (tmp_path / "out").write_text("a file, not a folder")
    result = cli("predict", "--input", weeks, "--output", tmp_path / "out" / "scored.csv")
    assert result.exit_code == 2 and str(tmp_path / "out") in one_line_error(result)


# -- forecasts -------------------------------------------------------------------------------


def test_all_zero_inputs_answer_a_non_negative_ordered_flagged_forecast(
    trained_project: Project,
) -> None:
    client = client_for(trained_project)
    answer = client.post("/api/predict", json=ZERO_WEEK).json()
    assert 0.0 <= answer["HH_lower"] <= answer["HH"] <= answer["HH_upper"]
    assert sorted(answer["out_of_range"]) == sorted(WEEK)
    batch = client.post("/api/predict", json={"rows": [ZERO_WEEK, WEEK]}).json()
    assert all(0.0 <= r["HH_lower"] <= r["HH"] <= r["HH_upper"] for r in batch)


@pytest.mark.parametrize("variant", ["4features", "5features"])
def test_forecasts_are_finite_non_negative_and_ordered_far_outside_the_range(
    trained_project: Project, variant: str
) -> None:
    model = load_model(trained_project.settings, "1.0.0", variant)
    rng = np.random.default_rng(0)
    lows, highs = model.range_lows, model.range_highs
    rows = rng.uniform(0, 1, (500, len(lows))) * (highs * 20) + 0 * lows
    frame = pd.DataFrame(np.vstack([rows, np.zeros((1, len(lows)))]), columns=model.features)
    out = predict_frame(model, frame)
    values = out[["HH_lower", "HH_pred", "HH_upper"]].to_numpy()
    assert np.isfinite(values).all()
    assert (values[:, 0] >= 0).all()
    assert (values[:, 0] <= values[:, 1]).all() and (values[:, 1] <= values[:, 2]).all()
    assert (out["out_of_range"] != "").sum() >= 500


def test_a_week_with_no_finite_forecast_is_refused_naming_its_line(
    trained_project: Project,
) -> None:
    # Valid inputs overflow only with a broken scaling (a spread of almost zero).
    model = load_model(trained_project.settings, "1.0.0")
    model = dataclasses.replace(model, x_scale=np.full_like(model.x_scale, 1e-300))
    frame = pd.DataFrame([WEEK, {**WEEK, "age_fleet": 1e300}])
    with pytest.raises(HHForecastError, match=r"no finite forecast for line\(s\) 3"):
        predict_frame(model, frame)


# -- /api/reload -----------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_an_api_key(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    monkeypatch.delenv("HHFORECAST_API_KEY", raising=False)
    result = cli(
        "serve", "--host", "0.0.0.0", "--port", free_port(), "--config", trained_project.config
    )
    assert result.exit_code == 2
    assert "set $HHFORECAST_API_KEY" in one_line_error(result)
    monkeypatch.setenv("HHFORECAST_API_KEY", "s3cret")
    plan = plan_server(trained_project.settings, "0.0.0.0", free_port())
    assert plan.host == "0.0.0.0"
    monkeypatch.delenv("HHFORECAST_API_KEY")
    assert plan_server(trained_project.settings, "127.0.0.1", free_port()).host == "127.0.0.1"
    assert plan_server(trained_project.settings, "localhost", free_port()).host == "localhost"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"anything"),
        ("text/plain", b""),
        ("application/x-www-form-urlencoded", b"a=1"),
        ("multipart/form-data; boundary=x", b"--x--"),
        (None, b"{}"),
    ],
)
def test_reload_accepts_only_an_empty_or_json_body(
    trained_project: Project, content_type: str | None, body: bytes
) -> None:
    client = client_for(trained_project)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/reload", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["rule"] == "media_type"


def test_reload_with_an_empty_or_json_body_works(trained_project: Project) -> None:
    client = client_for(trained_project)
    assert client.post("/api/reload").status_code == 200
    assert client.post("/api/reload", json={"why": "test"}).status_code == 200
    bad = client.post("/api/reload", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["rule"] == "json"


def test_repeated_reloads_load_nothing_until_something_changes(
    trained_project: Project,
) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    client = TestClient(app)
    follower = app.state.serving.follower
    loads_done: list[str] = []
    real_loader = follower._loader

    def counting(settings, entry):  # type: ignore[no-untyped-def]
        loads_done.append(entry.version)
        return real_loader(settings, entry)

    follower._loader = counting
    started = time.perf_counter()
    for _ in range(20):
        assert client.post("/api/reload").json()["reloaded"] is False
    assert loads_done == [] and time.perf_counter() - started < 10
    # A file of the served version replaced in place is a change: it is loaded (and refused).
    metadata = trained_project.models / "1.1.0" / "model_metadata.json"
    metadata.write_text(metadata.read_text() + " ")
    first = client.post("/api/reload")
    assert first.status_code == 409 and loads_done == ["1.1.0"]
    for _ in range(5):  # the same failure is not retried until something changes again
        assert client.post("/api/reload").status_code == 409
    assert loads_done == ["1.1.0"]
    assert client.post("/api/predict", json=WEEK).json()["model_version"] == "1.1.0"


# -- created files and the umask -------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_created_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == mode
    (tmp_path / "new.json").chmod(0o600)  # an existing file keeps its own mode
    atomic_write_text(tmp_path / "new.json", "{}")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o600


def test_registry_and_scored_files_are_created_with_the_umask(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    assert trained_project.registry_file.stat().st_mode & 0o777 == 0o666 & ~_umask()
    weeks = tmp_path / "weeks.csv"
    pd.DataFrame([WEEK]).to_csv(weeks, index=False)
    assert cli("predict", "--input", weeks, "--output", tmp_path / "s.csv").exit_code == 0
    assert (tmp_path / "s.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- registry check --------------------------------------------------------------------------


def test_registry_check_reports_and_removes_stale_temporary_files(
    trained_project: Project,
) -> None:
    stale = trained_project.models / ".registry.json.abc123.tmp"
    fresh = trained_project.root / ".config.yaml.def456.tmp"
    stale.write_text("{")
    fresh.write_text("x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    report = check_registry(trained_project.settings)
    found = {Path(f.path).name: bool(f.fix) for f in report.findings if f.kind == "leftover_temp"}
    assert found == {stale.name: True, fresh.name: False}
    after = repair(trained_project.settings, report)
    assert not stale.exists() and fresh.exists()
    assert after.repaired == [f"removed {stale.name}"]


def test_registry_check_reports_an_unregistered_production_pointer_and_history(
    trained_project: Project, cli
) -> None:
    data = json.loads(trained_project.registry_file.read_text())
    data["history"] = [
        {"at": "2026-01-01T00:00:00+00:00", "action": "promote", "from": None, "to": "0.9.0"},
        {"at": "2026-01-02T00:00:00+00:00", "action": "promote", "from": "0.9.0", "to": "1.0.0"},
    ]
    trained_project.registry_file.write_text(json.dumps(data))
    config = trained_project.config
    config.write_text(config.read_text() + "mlops:\n  production_version: '7.7.7'\n")
    result = cli("registry", "check", "--json", "--config", config)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["findings"]
    assert [(f["kind"], f["version"]) for f in findings] == [
        ("production_unregistered", "7.7.7"),
        ("history_unknown_version", "0.9.0"),
    ]


def test_registry_check_reports_metadata_that_no_longer_matches_its_entry(
    trained_project: Project,
) -> None:
    metadata = trained_project.models / "1.0.0" / "model_metadata.json"
    metadata.write_text(metadata.read_text().replace('"seed": 42', '"seed": 43'))
    report = check_registry(trained_project.settings)
    assert [(f.kind, f.version, f.fix) for f in report.findings] == [
        ("metadata_changed", "1.0.0", "")
    ]
