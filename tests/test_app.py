"""The API through TestClient(create_app(...)): predictions, refusals, info, health, live reload."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from hhforecast.errors import RegistryError
from hhforecast.gate.promote import promote
from hhforecast.modeling.predict import load_model
from hhforecast.serving import PredictionEvent, create_app

from .conftest import Project, rerecord, write_config

WEEK = {
    "acft": 249,
    "sum_daily_hours": 2539.5,
    "Cycles": 1591,
    "sum_uti_mensal": 11261.3,
    "age_fleet": 8037205.9,
}
FEATURES = list(WEEK)
CSV = {"Content-Type": "text/csv"}  # what the page sends to /web/plan


def client_for(project: Project, **kwargs: Any) -> TestClient:
    """A client of an app that does not start its polling thread (tests poll by hand)."""
    return TestClient(create_app(project.settings, follow_production=False, **kwargs))


def set_production(project: Project, version: str) -> None:
    """Point production at `version` by editing config.yaml as a person would."""
    data = yaml.safe_load(project.config.read_text())
    data.setdefault("mlops", {})["production_version"] = version
    project.config.write_text(yaml.safe_dump(data, sort_keys=False))


def metric_value(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_predict_one_week_uses_the_shared_prediction_path(trained_project: Project) -> None:
    client = client_for(trained_project)
    response = client.post("/api/predict", json=WEEK)
    assert response.status_code == 200
    body = response.json()
    model = load_model(trained_project.settings)
    expected = float(model.predict(np.array([list(WEEK.values())], dtype=float))[0])
    lower, upper = model.interval(np.array([expected]))
    assert body == {
        "HH": round(expected, 3),
        "HH_lower": round(float(lower[0]), 3),
        "HH_upper": round(float(upper[0]), 3),
        "model_version": "1.1.0",
        "variant": "5features",
        "out_of_range": [],
    }


def test_batch_answers_a_list_in_order_and_names_out_of_range_features(
    trained_project: Project,
) -> None:
    client = client_for(trained_project)
    odd = {**WEEK, "age_fleet": 9.9e8, "acft": 1}
    response = client.post("/api/predict", json={"rows": [WEEK, odd, WEEK]})
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == 3
    single = client.post("/api/predict", json=WEEK).json()
    assert rows[0] == single and rows[2] == single
    assert rows[1]["out_of_range"] == ["acft", "age_fleet"]


def test_a_four_feature_variant_accepts_the_original_five_feature_body(
    trained_project: Project,
) -> None:
    write_config(trained_project.root, mlops={"serve_variant": "4features"})
    client = client_for(trained_project)
    body = client.post("/api/predict", json=WEEK).json()
    assert body["variant"] == "4features"
    assert client.get("/api/info").json()["features"] == FEATURES[:4]


BAD_BODIES: list[tuple[bytes, int, str, str, str]] = [
    (b"", 400, "body", "json", "the body is empty; send a JSON object"),
    (b"{not json", 400, "body", "json", "the body is not valid JSON"),
    (b"[1, 2]", 422, "body", "object", "body must be a JSON object"),
    (
        json.dumps({k: v for k, v in WEEK.items() if k != "Cycles"}).encode(),
        422,
        "Cycles",
        "required",
        "Cycles is required (flight cycles in the week)",
    ),
    (
        json.dumps({**WEEK, "HH": 1000}).encode(),
        422,
        "HH",
        "unknown_field",
        "HH is not a feature; send exactly acft, sum_daily_hours, Cycles, sum_uti_mensal, "
        "age_fleet",
    ),
    (
        json.dumps({**WEEK, "acft": "249"}).encode(),
        422,
        "acft",
        "number",
        'acft must be a number, got "249"',
    ),
    (json.dumps({**WEEK, "acft": None}).encode(), 422, "acft", "number", "acft must be a number"),
    (json.dumps({**WEEK, "acft": True}).encode(), 422, "acft", "number", "got true"),
    (
        json.dumps({**WEEK, "age_fleet": float("nan")}).encode(),
        422,
        "age_fleet",
        "finite",
        "age_fleet must be a finite number, got nan",
    ),
    (
        b'{"acft": 249, "sum_daily_hours": Infinity, "Cycles": 1, "sum_uti_mensal": 1, '
        b'"age_fleet": 1}',
        422,
        "sum_daily_hours",
        "finite",
        "sum_daily_hours must be a finite number, got inf",
    ),
    (
        b'{"rows": [{"acft": 249, "sum_daily_hours": 1, "Cycles": 1, "sum_uti_mensal": 1, '
        b'"age_fleet": -Infinity}]}',
        422,
        "rows[0].age_fleet",
        "finite",
        "rows[0].age_fleet must be a finite number, got -inf",
    ),
    (
        json.dumps({**WEEK, "sum_uti_mensal": 1e400}).encode().replace(b"Infinity", b"1e400"),
        422,
        "sum_uti_mensal",
        "finite",
        "sum_uti_mensal must be a finite number, got inf",
    ),
    (
        json.dumps({**WEEK, "Cycles": -3}).encode(),
        422,
        "Cycles",
        "minimum",
        "Cycles must be ≥ 0 (flight cycles in the week), got -3",
    ),
    (
        json.dumps({**WEEK, "sum_daily_hours": 250_000}).encode(),
        422,
        "sum_daily_hours",
        "maximum",
        "sum_daily_hours must be ≤ 168000 (flight hours in the week (7,000 aircraft-days × "
        "24 h)), got 250000; check the units",
    ),
    (
        b'{"acft": 1' + b"0" * 400 + b', "sum_daily_hours": 1, "Cycles": 1, '
        b'"sum_uti_mensal": 1, "age_fleet": 1}',
        422,
        "acft",
        "maximum",
        "acft must be ≤ 7000",
    ),
    (b'{"rows": []}', 422, "rows", "min_rows", "rows must hold at least one week"),
    (b'{"rows": {"acft": 1}}', 422, "rows", "array", "rows must be a JSON array"),
    (
        json.dumps({"rows": [WEEK], "version": "1.0.0"}).encode(),
        422,
        "version",
        "unknown_field",
        "version is not allowed beside rows",
    ),
    (
        json.dumps({"rows": [WEEK, {**WEEK, "acft": -1}]}).encode(),
        422,
        "rows[1].acft",
        "minimum",
        "rows[1].acft must be ≥ 0",
    ),
    (
        json.dumps({"rows": [WEEK, WEEK, 7]}).encode(),
        422,
        "rows[2]",
        "object",
        "rows[2] must be a JSON object",
    ),
]


def test_bad_bodies_get_a_4xx_naming_the_field_and_the_rule(trained_project: Project) -> None:
    client = client_for(trained_project)
    for body, status, field, rule, message in BAD_BODIES:
        response = client.post(
            "/api/predict", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status, body[:80]
        error = response.json()["error"]
        assert (error["field"], error["rule"]) == (field, rule), body[:80]
        assert message in error["message"], error["message"]
    assert metric_value(client, "hhforecast_predictions_total") == 0.0


def test_oversized_bodies_and_batches_are_refused(trained_project: Project) -> None:
    write_config(trained_project.root, serving={"max_body_bytes": 2048, "max_batch_rows": 3})
    client = client_for(trained_project)
    too_many = client.post("/api/predict", json={"rows": [WEEK] * 4})
    assert too_many.status_code == 413
    assert too_many.json()["error"] == {
        "field": "rows",
        "rule": "max_batch_rows",
        "message": "rows holds 4 weeks; at most 3 are accepted per request "
        "(serving.max_batch_rows): split the batch",
    }
    big = json.dumps({"rows": [WEEK] * 30}).encode()
    declared = client.post(
        "/api/predict", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["error"]["rule"] == "max_body_bytes"
    # Without a Content-Length (chunked upload) the limit holds while reading.
    streamed = client.post(
        "/api/predict",
        content=iter([big[:1500], big[1500:]]),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["message"] == (
        "the body is larger than 2048 bytes (serving.max_body_bytes): split the batch"
    )
    assert client.post("/api/predict", json={"rows": [WEEK] * 3}).status_code == 200


def test_info_shows_the_version_its_metrics_ranges_and_reload_status(
    trained_project: Project,
) -> None:
    info = client_for(trained_project).get("/api/info").json()
    metadata = json.loads((trained_project.models / "1.1.0" / "model_metadata.json").read_text())
    assert info["model_version"] == "1.1.0"
    assert info["variant"] == "5features"
    assert info["features"] == FEATURES
    assert info["trained_at"] == metadata["trained_at"]
    assert info["trained_through"] == metadata["trained_through"] == "2023-12-25"
    assert info["metrics"] == metadata["variants"]["5features"]["metrics"]
    assert info["feature_ranges"] == metadata["variants"]["5features"]["feature_ranges"]
    assert info["production_setting"] == "latest"
    assert info["history"] == {"available": True, "url": "/api/history.png", "reason": None}
    assert info["limits"] == {"max_batch_rows": 10_000, "max_body_bytes": 2_000_000}
    assert info["reload"]["failing"] is False and info["reload"]["last_failure"] is None


def test_info_summarises_the_dataset_without_a_path_on_the_server(
    trained_project: Project,
) -> None:
    """The manifest `dataset build` recorded names every raw file by its path: /api/info, a
    public endpoint, keeps their names, counts and SHA-256s, never a folder."""
    folder = trained_project.models / "1.1.0"
    metadata = json.loads((folder / "model_metadata.json").read_text())
    recorded = metadata["dataset"]
    raw = {"rows": 10, "sha256": "ab" * 32, "format": {"encoding": "utf-8"}}
    metadata["dataset"] = {
        **recorded,
        "path": "/srv/hangar/exports/weekly.csv",
        "manifest": {
            "built_at": "2026-11-30T08:00:00+00:00",
            "inputs": {
                "utilization": [
                    {**raw, "path": "/srv/hangar/exports/util-2023.csv"},
                    {**raw, "path": "/srv/hangar/exports/util-2024.csv", "rows": 12},
                ],
                "events": [{**raw, "path": "C:\\Users\\planner\\ev-2023.csv"}],
            },
            "mapping": {"utilization": {"date": "Dep. Date"}},
            "weeks": {
                "kept": 260,
                "first": "2019-01-07",
                "last": "2023-12-25",
                "dropped_partial": ["2019-01-01"],
                "dropped_month_not_covered": ["2024-01-01", "2024-01-08"],
            },
            "output": {"path": "weekly.csv", "sha256": recorded["sha256"]},
        },
    }
    (folder / "model_metadata.json").write_text(json.dumps(metadata))
    rerecord(folder)
    dataset = client_for(trained_project).get("/api/info").json()["dataset"]
    assert dataset == {
        "name": "weekly.csv",
        "rows": recorded["rows"],
        "sha256": recorded["sha256"],
        "start": recorded["start"],
        "end": recorded["end"],
        "simulated_sample": recorded["simulated_sample"],
        "built_from": {
            "utilization": [
                {"name": "util-2023.csv", "rows": 10, "sha256": "ab" * 32},
                {"name": "util-2024.csv", "rows": 12, "sha256": "ab" * 32},
            ],
            "events": [{"name": "ev-2023.csv", "rows": 10, "sha256": "ab" * 32}],
            "weeks_kept": 260,
            "weeks_dropped": 3,
            "built_at": "2026-11-30T08:00:00+00:00",
        },
    }
    assert "hangar" not in json.dumps(dataset) and "planner" not in json.dumps(dataset)


def test_info_ready_and_metrics_name_files_without_the_servers_folders(
    trained_project: Project,
) -> None:
    """/api/info, /ready and /metrics are public: the files the service watches and logs to are
    named by their names, and messages quote paths from the project's folder on."""
    from hhforecast.watch.prediction_log import PredictionRecorder

    settings = trained_project.settings
    (trained_project.models / "predictions.sqlite").mkdir()  # a log that cannot be written
    recorder = PredictionRecorder.from_settings(settings, background=False)
    app = create_app(settings, follow_production=False, prediction_log=recorder)
    client = TestClient(app)
    assert client.post("/api/predict", json=WEEK).status_code == 200
    recorder.cycle()
    (trained_project.models / "1.0.0" / "model_hh_semanal_5features.keras").unlink()
    set_production(trained_project, "1.0.0")
    assert app.state.serving.follower.poll_once() is not None
    info = client.get("/api/info").json()
    ready = client.get("/ready").json()
    assert info["reload"]["watching"] == ["config.yaml", "registry.json"]
    assert info["prediction_log"]["path"] == "predictions.sqlite"
    assert info["prediction_log"]["status"] == "degraded"
    assert info["prediction_log"]["reason"].startswith("cannot write predictions.sqlite (")
    assert ready["checks"]["prediction_log"] == info["prediction_log"]
    message = "models/1.0.0/model_hh_semanal_5features.keras is missing"
    assert info["reload"]["last_failure"]["message"].startswith(message)
    assert ready["last_failure"]["message"].startswith(message)
    folder = str(trained_project.root)
    for text in (json.dumps(info), json.dumps(ready), client.get("/metrics").text):
        assert folder not in text and "pytest-" not in text
    recorder.close()


def test_a_postgresql_log_is_named_by_host_port_and_database_only() -> None:
    from hhforecast.serving.public import log_location

    url = "postgresql://planner:s3cret@db.hangar:5433/hh?sslmode=require&password=x"
    assert log_location(url) == "postgresql://db.hangar:5433/hh"
    assert log_location("postgres://planner:***@db.hangar/hh") == "postgresql://db.hangar/hh"
    assert log_location("C:\\logs\\predictions.sqlite") == "predictions.sqlite"


def test_info_names_the_marks_the_page_writes_numbers_with(trained_project: Project) -> None:
    from hhforecast.config import DisplayConfig

    assert client_for(trained_project).get("/api/info").json()["display"] == {"numbers": "intl"}
    settings = dataclasses.replace(trained_project.settings, display=DisplayConfig(numbers="br"))
    app = create_app(settings, follow_production=False)
    assert TestClient(app).get("/api/info").json()["display"] == {"numbers": "br"}


def test_health_and_ready(trained_project: Project) -> None:
    client = client_for(trained_project)
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "model_version": "1.1.0",
        "reload_failing": False,
        "last_failure": None,
        "checks": {
            "prediction_log": {
                "status": "off",
                "reason": "the service logs no prediction (monitoring.log_predictions: false)",
            }
        },
    }


def test_a_promotion_is_picked_up_without_a_restart(trained_project: Project) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    client = TestClient(app)
    follower = app.state.serving.follower
    assert follower.poll_once() is None  # nothing changed yet: no reload
    promote(trained_project.settings, "1.0.0", reason="test")
    outcome = follower.poll_once()
    assert outcome is not None and outcome.swapped
    assert (outcome.version, outcome.previous_version) == ("1.0.0", "1.1.0")
    info = client.get("/api/info").json()
    assert info["model_version"] == "1.0.0" and info["production_setting"] == "1.0.0"
    assert info["reload"]["reloads"] == 1 and info["reload"]["last_reload_at"]
    assert client.post("/api/predict", json=WEEK).json()["model_version"] == "1.0.0"
    assert metric_value(client, "hhforecast_model_reloads_total") == 1.0
    assert metric_value(client, "hhforecast_model_info", version="1.0.0") == 1.0
    assert metric_value(client, "hhforecast_model_info", version="1.1.0") == 0.0
    assert metric_value(client, "hhforecast_predictions_total", version="1.0.0") == 1.0


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    trained_project: Project,
) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    client = TestClient(app)
    (trained_project.models / "1.0.0" / "model_hh_semanal_5features.keras").unlink()
    set_production(trained_project, "1.0.0")
    outcome = app.state.serving.follower.poll_once()
    assert outcome is not None and not outcome.swapped and outcome.failure is not None
    assert "model_hh_semanal_5features.keras is missing" in outcome.failure.message
    assert client.post("/api/predict", json=WEEK).json()["model_version"] == "1.1.0"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["reload_failing"] is True
    assert ready.json()["last_failure"]["version"] == "1.0.0"
    info = client.get("/api/info").json()
    assert info["model_version"] == "1.1.0"
    assert info["reload"]["failing"] is True and info["reload"]["failures"] == 1
    assert "is missing" in info["reload"]["last_failure"]["message"]
    assert metric_value(client, "hhforecast_model_reload_failures_total") == 1.0
    assert metric_value(client, "hhforecast_model_reload_failing") == 1.0
    # An unchanged failure is not retried on every poll; going back to a good version heals.
    assert app.state.serving.follower.poll_once() is None
    set_production(trained_project, "1.1.0")
    outcome = app.state.serving.follower.poll_once()
    assert outcome is not None and not outcome.swapped and outcome.failure is None
    assert client.get("/ready").json()["reload_failing"] is False


def test_a_version_with_non_finite_predictions_is_not_served(trained_project: Project) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    metadata_path = trained_project.models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["variants"]["5features"]["scaling"]["x_scale"] = [0.0] * 5  # inputs scale to ±inf
    metadata_path.write_text(json.dumps(metadata))
    rerecord(metadata_path.parent)
    set_production(trained_project, "1.0.0")
    outcome = app.state.serving.follower.poll_once()
    assert outcome is not None and outcome.failure is not None
    assert "gives non-finite predictions on reference rows" in outcome.failure.message
    assert app.state.serving.follower.current.entry.version == "1.1.0"


def test_reload_endpoint_requires_the_api_key_when_one_is_set(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HHFORECAST_API_KEY", "s3cret")
    client = client_for(trained_project)
    refused = client.post("/api/reload")
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "field": "X-API-Key",
        "rule": "api_key",
        "message": "this endpoint needs the API key (the value of $HHFORECAST_API_KEY on the "
        "server) in the X-API-Key header",
    }
    assert client.post("/api/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    promote(trained_project.settings, "1.0.0")
    done = client.post("/api/reload", headers={"X-API-Key": "s3cret"})
    assert done.status_code == 200
    assert done.json() == {
        "reloaded": True,
        "model_version": "1.0.0",
        "previous_version": "1.1.0",
        "failure": None,
    }


def test_reload_endpoint_reports_a_failed_load_with_409(trained_project: Project) -> None:
    client = client_for(trained_project)
    set_production(trained_project, "9.9.9")
    response = client.post("/api/reload")
    assert response.status_code == 409
    body = response.json()
    assert body["reloaded"] is False and body["model_version"] == "1.1.0"
    assert "version '9.9.9'" in body["failure"]["message"]
    assert "is not in the registry" in body["failure"]["message"]


def test_metrics_count_requests_latency_and_predictions_per_app(
    trained_project: Project,
) -> None:
    first, second = client_for(trained_project), client_for(trained_project)
    first.post("/api/predict", json={"rows": [WEEK, WEEK]})
    first.post("/api/predict", json={"acft": -1})
    second.get("/nowhere")
    text = first.get("/metrics").text
    assert 'hhforecast_http_requests_total{method="POST",path="/api/predict",status="200"} 1.0' in (
        text
    )
    assert 'hhforecast_http_requests_total{method="POST",path="/api/predict",status="422"} 1.0' in (
        text
    )
    assert 'hhforecast_predictions_total{variant="5features",version="1.1.0"} 2.0' in text
    assert 'hhforecast_http_request_duration_seconds_count{path="/api/predict"} 2.0' in text
    assert "unmatched" not in text  # the other app's 404 was counted in its own registry
    assert metric_value(second, "hhforecast_http_requests_total", path="unmatched") == 1.0


def test_on_prediction_receives_every_answer_and_cannot_break_it(
    trained_project: Project,
) -> None:
    events: list[PredictionEvent] = []

    def record(event: PredictionEvent) -> None:
        events.append(event)
        raise RuntimeError("the log is full")

    client = client_for(trained_project, on_prediction=record)
    response = client.post("/api/predict", json={"rows": [WEEK, WEEK]})
    assert response.status_code == 200
    (event,) = events
    assert (event.version, event.variant, event.features) == ("1.1.0", "5features", tuple(FEATURES))
    assert event.x.shape == (2, 5) and event.predictions.shape == (2,)
    assert round(float(event.predictions[0]), 3) == response.json()[0]["HH"]


def test_a_registry_in_the_original_format_is_served(trained_project: Project) -> None:
    current = json.loads(trained_project.registry_file.read_text())
    original = {
        "versions": [
            {
                "version": v["version"],
                "trained_at": v["trained_at"],
                "path": f"models/{v['version']}",
                "dataset": "dados_semanais.csv",
                "metrics_5features": {"mae": 120.5, "rmse": 160.2, "r2": 0.41},
                "metrics_4features": {"mae": 125.0, "rmse": 170.9, "r2": 0.35},
            }
            for v in current["versions"]
        ]
    }
    trained_project.registry_file.write_text(json.dumps(original, indent=2))
    client = client_for(trained_project)
    assert client.post("/api/predict", json=WEEK).json()["model_version"] == "1.1.0"
    info = client.get("/api/info").json()
    assert (info["model_version"], info["variant"]) == ("1.1.0", "5features")


def test_history_picture_and_its_absence(trained_project: Project) -> None:
    client = client_for(trained_project)
    picture = client.get("/api/history.png")
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(b"\x89PNG")
    metadata_path = trained_project.models / "1.0.0" / "model_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["dataset"]["path"] = "data/gone.csv"
    metadata_path.write_text(json.dumps(metadata))
    rerecord(metadata_path.parent)
    promote(trained_project.settings, "1.0.0")
    client.app.state.serving.follower.poll_once()  # type: ignore[attr-defined]
    history = client.get("/api/info").json()["history"]
    assert history["available"] is False
    assert history["reason"] == (
        "the training dataset of version 1.0.0 (data/gone.csv) is not available"
    )
    missing = client.get("/api/history.png")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == history["reason"]


def test_history_legend_says_the_served_refit_learnt_the_test_weeks(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a refit on every week the fitted line over the test weeks is no forecast: the
    shaded weeks are not called held out."""
    from matplotlib.figure import Figure

    from hhforecast.serving.history import render_history_png

    legends: list[list[str]] = []
    save = Figure.savefig

    def record(figure: Figure, *args: object, **kwargs: object) -> None:
        legends.append([text.get_text() for text in figure.axes[0].get_legend().get_texts()])
        save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    model = load_model(trained_project.settings, "1.0.0", "5features")
    assert model.metadata["served_fit"]["refit_on_all_weeks"] is True
    assert render_history_png(trained_project.settings, model).startswith(b"\x89PNG")
    assert legends == [
        ["80% interval", "realised HH", "model 1.0.0", "test weeks (the served refit learnt them)"]
    ]


def test_page_and_openapi(trained_project: Project) -> None:
    client = client_for(trained_project)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for feature in FEATURES:
        assert f'id="{feature}"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/BatchPredictRequest"} in body["schema"]["oneOf"]
    properties = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert set(properties) == {*FEATURES, "date"}
    assert {"/api/info", "/api/reload", "/health", "/ready", "/metrics"} <= set(schema["paths"])


def test_nothing_trained_is_a_clear_error(project: Project, tmp_path: Path, cli: Any) -> None:
    with pytest.raises(RegistryError, match=r"run `hhforecast train` first"):
        create_app(project.settings)
    result = cli("serve", "--config", project.config)
    assert result.exit_code == 2
    assert "Error: no version is registered in" in result.stderr
    assert "run `hhforecast train` first" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_full_batch_is_answered_row_for_row(trained_project: Project) -> None:
    client = client_for(trained_project)
    rows = [{**WEEK, "acft": 200 + i % 100} for i in range(10_000)]
    response = client.post("/api/predict", json={"rows": rows})
    assert response.status_code == 200
    answers = response.json()
    assert len(answers) == 10_000
    model = load_model(trained_project.settings)
    x = np.array([list(row.values()) for row in rows], dtype=float)
    assert [a["HH"] for a in answers] == np.round(model.predict(x), 3).tolist()
    assert [a["out_of_range"] for a in answers] == model.out_of_range(x)
    refused = client.post("/api/predict", json={"rows": [*rows, WEEK]})
    assert refused.status_code == 413 and refused.json()["error"]["rule"] == "max_batch_rows"


def test_ready_is_503_when_the_served_model_stops_answering(trained_project: Project) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    follower = app.state.serving.follower
    served = follower.current
    # Damage the loaded weights in memory: the model now gives NaN for every row.
    broken = dataclasses.replace(served.model, x_scale=np.full_like(served.model.x_scale, np.nan))
    follower._served = dataclasses.replace(served, model=broken)
    client = TestClient(app)
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "ready": False,
        "model_version": None,
        "reload_failing": False,
        "last_failure": None,
        "checks": {
            "prediction_log": {
                "status": "off",
                "reason": "the service logs no prediction (monitoring.log_predictions: false)",
            }
        },
    }
    refused = client.post("/api/predict", json=WEEK)
    assert refused.status_code == 422
    assert refused.json()["error"]["rule"] == "finite_forecast"
    assert client.get("/health").status_code == 200


def test_an_unexpected_error_answering_a_prediction_is_a_500_counted_and_raised(
    trained_project: Project,
) -> None:
    app = create_app(trained_project.settings, follow_production=False)
    follower = app.state.serving.follower
    served = follower.current
    # Weights of the wrong shape: the forward pass itself fails, as a bug would.
    broken = dataclasses.replace(served.model, x_scale=np.ones(2))
    follower._served = dataclasses.replace(served, model=broken)
    with pytest.raises(ValueError):  # raised to the server, which logs it
        TestClient(app).post("/api/predict", json=WEEK)
    client = TestClient(app, raise_server_exceptions=False)
    answer = client.post("/api/predict", json=WEEK)
    assert (answer.status_code, answer.text) == (500, "Internal Server Error")
    assert client.post("/api/predict", json={"acft": -1}).status_code == 422
    assert (
        metric_value(client, "hhforecast_http_requests_total", path="/api/predict", status="500")
        == 2.0
    )
    assert (
        metric_value(client, "hhforecast_http_request_duration_seconds_count", path="/api/predict")
        == 3.0
    )


def test_serve_refuses_a_port_in_use_before_loading(trained_project: Project, cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--config", trained_project.config, "--port", port)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port} (")
    assert "pass another --port" in result.stderr


def test_an_optional_date_names_the_week_forecast_for_the_log(trained_project: Project) -> None:
    events: list[PredictionEvent] = []
    client = client_for(trained_project, on_prediction=events.append)
    plain = client.post("/api/predict", json=WEEK).json()
    dated = client.post("/api/predict", json={**WEEK, "date": "2026-12-02"})
    assert dated.status_code == 200
    assert dated.json() == plain  # the date changes what is logged, not the forecast
    batch = client.post("/api/predict", json={"rows": [{**WEEK, "date": "2026-12-07"}, WEEK]})
    assert batch.status_code == 200 and len(batch.json()) == 2
    assert [e.weeks for e in events] == [None, ["2026-12-02"], ["2026-12-07", None]]

    bad = client.post("/api/predict", json={**WEEK, "date": "next week"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "date" and bad.json()["error"]["rule"] == "date"
    bad_row = client.post("/api/predict", json={"rows": [WEEK, {**WEEK, "date": 20261207}]})
    assert bad_row.status_code == 422
    assert bad_row.json()["error"]["field"] == "rows[1].date"
    assert len(events) == 3  # refused bodies are never logged


def test_the_prediction_log_can_be_switched_off(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hhforecast.config import CONFIG_ENV
    from hhforecast.serving.app import app_from_environment
    from hhforecast.watch.prediction_log import PredictionRecorder

    monkeypatch.setenv(CONFIG_ENV, str(trained_project.config))
    logged = app_from_environment()
    assert isinstance(logged.state.serving.on_prediction, PredictionRecorder)
    logged.state.serving.on_prediction.close()
    write_config(trained_project.root, monitoring={"log_predictions": False})
    assert app_from_environment().state.serving.on_prediction is None


def test_the_page_plan_endpoint_forecasts_and_refuses_bad_plans(trained_project: Project) -> None:
    events: list[PredictionEvent] = []
    client = client_for(trained_project, on_prediction=events.append)
    header = "date," + ",".join(FEATURES)
    values = ",".join(str(v) for v in WEEK.values())
    plan = f"{header}\n2024-01-01,{values}\n2024-01-08,{values}\n"
    answer = client.post("/web/plan", content=plan, headers={**CSV, "X-Filename": "plan%20A.csv"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    one = client.post("/api/predict", json=WEEK).json()
    assert [w["week"] for w in body["weeks"]] == ["2024-01-01", "2024-01-08"]
    assert [w["horizon"] for w in body["weeks"]] == [1, 2]
    assert body["weeks"][0]["HH"] == one["HH"] and body["weeks"][0]["HH_upper"] == one["HH_upper"]
    assert events[0].source == "web" and events[0].weeks == ["2024-01-01", "2024-01-08"]
    assert events[1].source == "api"

    dotted = client.post("/web/plan", content=plan, headers={**CSV, "X-Filename": "..%2F..%2F.."})
    assert dotted.status_code == 200  # a name is never a path
    empty = client.post("/web/plan", content=b"", headers=CSV)
    assert empty.status_code == 400 and empty.json()["error"]["message"] == "the plan file is empty"
    missing = client.post(
        "/web/plan",
        content="date,acft\n2024-01-01,250\n",
        headers={**CSV, "X-Filename": "plan%20A.csv"},
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("plan A.csv: missing column(s)")
    write_config(trained_project.root, serving={"max_batch_rows": 1})
    small = client_for(Project(trained_project.root, trained_project.config))
    too_many = small.post("/web/plan", content=plan, headers=CSV)
    assert too_many.status_code == 413
    assert len(events) == 3  # refused plans are never logged


def test_a_plan_with_weeks_out_of_range_says_which_and_how_to_log_it(
    trained_project: Project,
) -> None:
    events: list[PredictionEvent] = []
    client = client_for(trained_project, on_prediction=events.append)
    high = client.get("/api/info").json()["feature_ranges"]["acft"][1]
    header = "date," + ",".join(FEATURES)
    inside = ",".join(str(v) for v in WEEK.values())
    outside = ",".join(str(v) for v in {**WEEK, "acft": high + 40}.values())
    plan = f"{header}\n2024-01-01,{inside}\n2024-01-08,{outside}\n"
    held = client.post("/web/plan", content=plan, headers=CSV).json()
    assert held["logged"] is False and events == []
    assert held["not_logged"] == {
        "reason": "1 of the 2 weeks has inputs outside the range version 1.1.0 was trained on "
        "(2024-01-08: acft), so no week of the plan was logged",
        "weeks": [{"week": "2024-01-08", "out_of_range": ["acft"]}],
        "confirm": "check these weeks' inputs; to log the plan as it is, post it again with "
        "?confirm_out_of_range=true (the page's Log these forecasts anyway)",
    }
    confirmed = client.post("/web/plan?confirm_out_of_range=true", content=plan, headers=CSV)
    assert confirmed.json()["logged"] is True and confirmed.json()["not_logged"] is None
    assert [event.weeks for event in events] == [["2024-01-01", "2024-01-08"]]
