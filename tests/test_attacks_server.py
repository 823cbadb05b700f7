"""The HTTP server and the prediction log against the attacks tried on them: a side file torn by a
kill, cross-site form posts to /web/*, slow connections, and SIGKILL right after a burst."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from hhforecast.serving import create_app
from hhforecast.watch.prediction_log import PredictionLog, PredictionRecord, PredictionRecorder

from .conftest import Project, write_config
from .test_prediction_log import answer, lock_in_another_process, logged, release
from .test_serve_e2e import start_server, stop_server

WEEK = {
    "acft": 249,
    "sum_daily_hours": 2539.5,
    "Cycles": 1591,
    "sum_uti_mensal": 11261.3,
    "age_fleet": 8037205.9,
    "date": "2026-12-07",  # a planning forecast names its week
}
INPUTS = {name: value for name, value in WEEK.items() if name != "date"}
CONFIRMED = "?confirm_out_of_range=true"
"""The page's own planning forecast, confirmed: these values lie outside the sample's ranges."""


def kept_line(hh: float) -> str:
    row = PredictionRecord("1.0.0", "5features", {"acft": 1.0}, hh, week="2024-01-01").row()
    return json.dumps(list(row)) + "\n"


# --- the side file ------------------------------------------------------------------------


def test_torn_lines_of_the_side_file_are_skipped_counted_and_the_whole_rows_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.sqlite"
    side = tmp_path / "log.sqlite.unwritten.jsonl"
    torn = kept_line(9.0)[:40]
    side.write_text(
        kept_line(1.0)
        + torn
        + "\n"
        + kept_line(2.0)
        + "[[[[[[[[[[" * 20  # nested past the limit: not a row either
        + "\n"
        + '["a row", "of the wrong shape"]\n'
        + kept_line(3.0)
        + torn  # the last line, torn by a kill while it was appended
    )
    with caplog.at_level(logging.WARNING, "hhforecast.watch.prediction_log"):
        recorder = PredictionRecorder(PredictionLog(path), background=False)
    assert logged(path) == [1.0, 2.0, 3.0]
    status = recorder.status()
    assert (status["rows_written"], status["kept_lines_skipped"]) == (3, 4)
    warnings = [r.getMessage() for r in caplog.records if "not whole rows" in r.getMessage()]
    assert warnings == [f"prediction log: skipped 4 line(s) of {side} that are not whole rows"]
    recorder.close()
    assert [p.name for p in tmp_path.iterdir() if "unwritten" in p.name] == []


def test_the_skipped_lines_show_in_ready(trained_project: Project) -> None:
    database = trained_project.models / "predictions.sqlite"
    side = database.with_name("predictions.sqlite.unwritten.jsonl")
    side.write_text(kept_line(1.0) + kept_line(2.0)[:30])
    recorder = PredictionRecorder.from_settings(trained_project.settings, background=False)
    app = create_app(trained_project.settings, follow_production=False, prediction_log=recorder)
    with TestClient(app) as client:
        check = client.get("/ready").json()["checks"]["prediction_log"]
    assert (check["rows_written"], check["kept_lines_skipped"]) == (1, 1)


def test_rows_kept_after_a_torn_line_start_on_a_line_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    side = tmp_path / "log.sqlite.unwritten.jsonl"
    recorder = PredictionRecorder(PredictionLog(path), shutdown_seconds=0.2, background=False)
    recorder(answer(1.0))
    assert recorder.flush()
    side.write_text(kept_line(5.0)[:25])  # an earlier process was killed while appending
    locker = lock_in_another_process(path)
    try:
        recorder(answer(2.0))
        recorder(answer(3.0))
        recorder.close()  # locked: the two rows are appended to the side file
    finally:
        release(locker)
    again = PredictionRecorder(PredictionLog(path), background=False)
    again.close()
    assert logged(path) == [1.0, 2.0, 3.0]
    assert again.status()["kept_lines_skipped"] == 1


# --- cross-site posts to the page's endpoints ----------------------------------------------

# What a form with enctype=text/plain on another site sends: `name=value`, where the name is
# JSON up to the date's day and the value closes it (the date keeps its first 10 characters).
FORM_BODY = (
    '{"acft": 249, "sum_daily_hours": 2539.5, "Cycles": 1591, "sum_uti_mensal": 11261.3, '
    '"age_fleet": 8037205.9, "date": "2026-12-07' + "=" + '"}\r\n'
)
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


def page_client(project: Project, events: list) -> TestClient:
    return TestClient(
        create_app(project.settings, follow_production=False, on_prediction=events.append)
    )


def test_a_cross_site_text_plain_form_post_is_refused_and_not_logged(
    trained_project: Project,
) -> None:
    events: list = []
    client = page_client(trained_project, events)
    form = {"Content-Type": "text/plain"}
    answer = client.post("/web/predict", content=FORM_BODY, headers={**form, **CROSS_SITE})
    assert answer.status_code == 403
    assert answer.json()["error"]["rule"] == "same_origin"
    # Without the browser's headers (an old browser): its content type still gives it away.
    bare = client.post("/web/predict", content=FORM_BODY, headers=form)
    assert bare.status_code == 415
    assert bare.json() == {
        "error": {
            "field": "Content-Type",
            "rule": "media_type",
            "message": "/web/predict takes a application/json body (Content-Type: "
            "application/json), got text/plain",
        }
    }
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert (
            client.post(
                "/web/predict", content=FORM_BODY, headers={"Content-Type": kind}
            ).status_code
            == 415
        )
    assert events == []


def test_api_posts_take_only_json_bodies_so_a_cross_site_form_logs_nothing(
    trained_project: Project,
) -> None:
    """A form on any site can make a browser post text/plain, urlencoded or multipart to
    /api/predict without a preflight, and the forecast would be logged: only bodies declared
    JSON are answered (application/json or application/*+json, as Flask's get_json takes)."""
    events: list = []
    client = page_client(trained_project, events)
    refused = {
        "text/plain": client.post(
            "/api/predict", content=FORM_BODY, headers={"Content-Type": "text/plain", **CROSS_SITE}
        ),
        "no Content-Type": client.post("/api/predict", content=json.dumps(WEEK)),
        "text/plain; x=json": client.post(
            "/api/predict", content=FORM_BODY, headers={"Content-Type": "text/plain; x=json"}
        ),
    }
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        refused[kind] = client.post(
            "/api/predict", content=FORM_BODY, headers={"Content-Type": kind}
        )
    for given, refusal in refused.items():
        assert refusal.status_code == 415, (given, refusal.text)
    assert refused["text/plain"].json() == {
        "error": {
            "field": "Content-Type",
            "rule": "media_type",
            "message": "/api/predict takes a JSON body: send it with Content-Type: "
            "application/json (got text/plain)",
        }
    }
    assert refused["no Content-Type"].json()["error"]["message"].endswith("(got no Content-Type)")
    assert events == []
    reload = client.post("/api/reload", content=FORM_BODY, headers={"Content-Type": "text/plain"})
    assert reload.status_code == 415

    # What JSON clients send is answered: charset, case, a +json type, and a batch.
    body = json.dumps(WEEK)
    for given in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        answered = client.post("/api/predict", content=body, headers={"Content-Type": given})
        assert answered.status_code == 200, (given, answered.text)
    vendor = {"Content-Type": "application/vnd.api+json"}
    assert client.post("/api/predict", content=body, headers=vendor).status_code == 200
    assert client.post("/api/predict", json={"rows": [WEEK, WEEK]}).status_code == 200
    assert len(events) == 5


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file on disk
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_json_from_another_origin_is_refused_on_every_page_endpoint(
    trained_project: Project, headers: dict[str, str]
) -> None:
    events: list = []
    client = page_client(trained_project, events)
    week = client.post("/web/predict" + CONFIRMED, json=WEEK, headers=headers)
    assert week.status_code == 403, week.text
    assert week.json()["error"]["rule"] == "same_origin"
    plan = "date," + ",".join(INPUTS) + "\n2024-01-01," + ",".join(map(str, INPUTS.values())) + "\n"
    csv = client.post("/web/plan", content=plan, headers={"Content-Type": "text/csv", **headers})
    assert csv.status_code == 403
    assert events == []


def test_the_page_own_requests_and_scripts_are_answered(trained_project: Project) -> None:
    events: list = []
    client = page_client(trained_project, events)
    page = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/web/predict" + CONFIRMED, json=WEEK, headers=page).status_code == 200
    curl = client.post("/web/predict" + CONFIRMED, json=WEEK)  # neither header
    assert curl.status_code == 200
    plan = "date," + ",".join(INPUTS) + "\n2024-01-01," + ",".join(map(str, INPUTS.values())) + "\n"
    form = client.post("/web/plan", content=plan, headers={"Content-Type": "text/plain", **page})
    assert form.status_code == 415
    csv = client.post(
        "/web/plan" + CONFIRMED, content=plan, headers={"Content-Type": "text/csv", **page}
    )
    assert csv.status_code == 200
    assert [event.source for event in events] == ["web", "web", "web"]


def test_deeply_nested_page_bodies_are_refused_with_400(trained_project: Project) -> None:
    client = page_client(trained_project, [])
    deep = "[" * 500 + "]" * 500
    for path in ("/web/predict", "/api/predict", "/api/reload"):
        answer = client.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, path
        assert "nested more than 64 levels deep" in answer.json()["error"]["message"], path


# --- slow connections --------------------------------------------------------------------


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (FIN or reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_connections_are_closed_and_health_still_answers(trained_project: Project) -> None:
    write_config(
        trained_project.root, serving={"request_timeout_seconds": 1.0, "max_connections": 100}
    )
    server = start_server(trained_project)
    port = int(server.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    try:
        # 300 clients that send a request line and then a header byte by byte (slowloris).
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        # And one that sends its headers and then a body byte by byte (a slow POST).
        slow_body = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow_body.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        slow.append(slow_body)
        started = time.monotonic()
        for _ in range(5):
            health = httpx.get(f"{server.url}/health", timeout=2.0)
            assert health.status_code == 200 and health.json() == {"status": "ok"}
        # Beyond max_connections the longest waiting were closed at once, whatever they sent.
        assert sum(closed_by_server(sock, 0.01) for sock in slow[:200]) == 200
        while time.monotonic() - started < 0.8:  # a byte now and then does not buy time
            for sock in slow[200:]:
                with contextlib.suppress(OSError):  # already closed
                    sock.send(b"a")
            time.sleep(0.1)
        assert all(closed_by_server(sock, 3.0) for sock in slow[200:])
        assert time.monotonic() - started < 4.0
        # A whole request sent slowly but within the deadline is answered.
        patient = socket.create_connection(("127.0.0.1", port), timeout=5)
        for part in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            patient.sendall(part)
            time.sleep(0.2)
        assert patient.recv(1024).startswith(b"HTTP/1.1 200 OK")
        patient.close()
        assert server.process.poll() is None
        assert "Traceback" not in server.output()  # the cut body is a 400, not an error
    finally:
        for sock in slow:
            sock.close()
        stop_server(server)


# --- SIGKILL right after a burst ---------------------------------------------------------

KILL_WINDOW_SECONDS = 0.5
"""What docs/serving.md says SIGKILL can lose: the rows not yet written, which after a burst the
writer keeps up with are those answered in its last 0.1 s write interval (0.5 s here, for a
loaded test machine)."""


def test_sigkill_right_after_a_burst_loses_at_most_the_last_write_interval(
    trained_project: Project,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from .test_serve_log_e2e import log_check, rows_in, wait_for

    database = trained_project.models / "predictions.sqlite"
    server = start_server(trained_project)
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        wait_for(lambda: log_check(server)["rows_written"] == 1, "the first row")

        def client(_: int) -> list[float]:
            answered = []
            with httpx.Client(base_url=server.url, timeout=10.0) as http:
                for _ in range(100):
                    assert http.post("/api/predict", json=WEEK).status_code == 200
                    answered.append(time.monotonic())
            return answered

        with ThreadPoolExecutor(8) as pool:
            answered = sorted(t for times in pool.map(client, range(8)) for t in times)
        killed_at = time.monotonic()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    finally:
        stop_server(server)
    lost = 1 + len(answered) - rows_in(database)
    recent = sum(t >= killed_at - KILL_WINDOW_SECONDS for t in answered)
    assert 0 <= lost <= recent, (lost, recent)


def test_a_cross_site_form_post_through_uvicorn_is_refused_and_not_logged(
    trained_project: Project,
) -> None:
    from .test_serve_log_e2e import log_check, rows_in, wait_for

    server = start_server(trained_project)
    try:
        # Exactly what a browser sends for <form method=post enctype=text/plain> on another site.
        form = httpx.post(
            f"{server.url}/web/predict",
            content=FORM_BODY,
            headers={"Content-Type": "text/plain", **CROSS_SITE, "Sec-Fetch-Mode": "navigate"},
            timeout=10.0,
        )
        assert form.status_code == 403
        assert form.headers["content-type"] == "application/json"
        assert form.json()["error"]["field"] == "Sec-Fetch-Site"
        # The same form aimed at /api/predict (through its fast lane), and a body without a type.
        for headers in ({"Content-Type": "text/plain", **CROSS_SITE}, {}):
            api = httpx.post(
                f"{server.url}/api/predict", content=FORM_BODY, headers=headers, timeout=10.0
            )
            assert api.status_code == 415, api.text
            assert api.json()["error"]["rule"] == "media_type"
        page = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        ours = httpx.post(
            f"{server.url}/web/predict{CONFIRMED}", json=WEEK, headers=page, timeout=10.0
        )
        assert ours.status_code == 200
        wait_for(lambda: log_check(server)["rows_written"] == 1, "the page's row")
    finally:
        stop_server(server)
    assert rows_in(trained_project.models / "predictions.sqlite") == 1
