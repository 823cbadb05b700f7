"""`hhforecast serve` replicas logging into one real PostgreSQL database: `monitor` elsewhere
matches every forecast; the database stopped during a burst, or a replica stopped by SIGTERM in
the middle of one, loses no answered prediction."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from hhforecast.datasets.fleet import simulate_weekly_dataset

from .conftest import Project, copy_project, write_config
from .postgres_server import PostgresServer
from .test_serve_e2e import WEEK, Server, start_server, stop_server
from .test_serve_log_e2e import log_check, metric, wait_for

pytestmark = pytest.mark.slow

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
OUTAGE_SECONDS = 20.0


def logging_to(project: Project, url: str, **sections: dict) -> Project:
    """The project with its prediction log in the PostgreSQL database at `url`."""
    write_config(project.root, monitoring={"database": url}, **sections)
    return project


def hhforecast(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hhforecast", *args, "--config", str(project.config)],
        capture_output=True,
        text=True,
        cwd=project.root,
        timeout=300,
    )


def rows_in(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM predictions").fetchone()
        return int(row[0]) if row else 0


def test_two_replicas_log_into_one_database_and_monitor_elsewhere_matches_them(
    trained_project: Project, _trained_template: Path, postgres_url: str, tmp_path: Path
) -> None:
    first = logging_to(trained_project, postgres_url)  # serves 1.1.0, production
    second = logging_to(
        copy_project(_trained_template, tmp_path / "replica-b"),
        postgres_url,
        mlops={"production_version": "1.0.0"},
    )
    fleet = simulate_weekly_dataset(seed=23, weeks=8, start="2024-01-01")
    plan = fleet[["date", *FEATURES]].copy()
    plan.to_csv(first.root / "plan.csv", index=False)
    rows = [{**row, "date": str(row["date"])[:10]} for row in plan.to_dict("records")]

    servers = [start_server(first), start_server(second)]
    try:
        a, b = servers
        assert (
            httpx.post(f"{a.url}/api/predict", json={"rows": rows}, timeout=30).status_code == 200
        )
        # The page's planning forecast (confirmed: the plan's inputs lie beyond the sample's).
        page = f"{a.url}/web/predict?confirm_out_of_range=true"
        assert httpx.post(page, json=rows[0], timeout=30).status_code == 200
        for _ in range(2):  # the plan asked twice of the second replica: judged once, counted 2
            answer = httpx.post(f"{b.url}/api/predict", json={"rows": rows}, timeout=30)
            assert answer.status_code == 200
        with httpx.Client(timeout=30) as client:  # this week's: not realised yet
            assert {
                client.post(f"{s.url}/api/predict", json=WEEK).status_code for s in servers
            } == {200}
        plan_file = str(first.root / "plan.csv")
        cli = hhforecast(first, "forecast", "--plan", plan_file, "--confirm-out-of-range", "--json")
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["log"]["rows"] == 8
    finally:
        for server in servers:
            stop_server(server)  # each writes what it still holds as it stops

    folder = tmp_path / "monitor"  # a third folder: no models, only the database's URL
    folder.mkdir()
    elsewhere = logging_to(Project(folder, folder / "config.yaml"), postgres_url)
    realised = elsewhere.root / "realised.csv"
    fleet[["date", "HH"]].to_csv(realised, index=False)
    monitor = hhforecast(elsewhere, "monitor", "--actuals", str(realised), "--json")
    assert monitor.returncode in (0, 1), monitor.stderr
    report = json.loads(monitor.stdout)
    assert rows_in(postgres_url) == 8 + 1 + 16 + 2 + 8
    assert report["forecasts_logged"] == 35 and report["forecasts_pending"] == 2
    assert (report["forecasts_matched"], report["forecasts_judged"]) == (33, 25)
    judged = pd.DataFrame(report["forecasts"])
    assert judged["id"].is_unique
    weeks = fleet["date"].tolist()
    for source, version, count, asked in (
        ("cli", "1.1.0", 8, 1),
        ("api", "1.1.0", 8, 1),
        ("api", "1.0.0", 8, 2),
        ("web", "1.1.0", 1, 1),
    ):
        mine = judged[(judged["source"] == source) & (judged["version"] == version)]
        assert sorted(mine["week"]) == weeks[:count], (source, version)
        assert set(mine["asked"]) == {asked}
    assert judged["actual"].tolist() == [fleet.set_index("date")["HH"][w] for w in judged["week"]]
    assert {(s["source"], s["version"]): s["forecasts"] for s in report["sources"]} == {
        ("api", "1.0.0"): 16,
        ("api", "1.1.0"): 8,
        ("cli", "1.1.0"): 8,
        ("web", "1.1.0"): 1,
    }


def burst(server: Server, clients: int, each: int) -> list[int]:
    """`clients` threads posting `each` predictions; the status codes."""
    codes: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as http:
            for _ in range(each):
                codes.append(http.post("/api/predict", json=WEEK).status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return codes


def test_the_database_stopped_during_a_burst_loses_nothing(
    trained_project: Project, private_postgres: PostgresServer
) -> None:
    postgres = private_postgres  # a server of its own: the others' tests keep theirs running
    postgres_url = postgres.create_database("burst")
    server = start_server(logging_to(trained_project, postgres_url))
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        wait_for(lambda: log_check(server)["rows_written"] == 1, "the first row")
        postgres.stop()
        stopped = time.monotonic()
        try:
            assert burst(server, clients=8, each=40) == [200] * 320
            wait_for(lambda: log_check(server)["status"] == "degraded", "the degraded state")
            check = log_check(server)
            # /ready names the database by host, port and name: no user (postgres@), no password.
            public = postgres_url.replace("postgres@", "")
            assert check["path"] == public and "@" not in json.dumps(check)
            assert check["reason"].startswith(f"cannot write {public} (")
            assert check["queue_depth"] == 320 and check["rows_dropped"] == 0
            assert metric(server, "hhforecast_prediction_log_queue_depth") == 320
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        finally:
            postgres.start()
        wait_for(lambda: log_check(server)["rows_written"] == 321, "the held rows")
        assert log_check(server)["status"] == "ok"
        assert metric(server, "hhforecast_prediction_log_rows_dropped_total") == 0
        assert metric(server, "hhforecast_prediction_log_queue_depth") == 0
    finally:
        stop_server(server)
    assert rows_in(postgres_url) == 321


def test_a_replica_stopped_by_sigterm_mid_burst_loses_nothing(
    trained_project: Project, postgres_url: str
) -> None:
    server = start_server(logging_to(trained_project, postgres_url))
    answered: list[int] = []
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=10.0) as http:
                while not stop.is_set():
                    try:
                        code = http.post("/api/predict", json=WEEK).status_code
                    except httpx.HTTPError:  # the server has stopped answering
                        return
                    answered.append(code)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answered) >= 200, "200 answers")
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)  # uvicorn shuts down gracefully, then ends by the signal
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        stop_server(server)
    assert len(answered) >= 200 and set(answered) == {200}
    assert rows_in(postgres_url) == len(answered) + 1
    assert not (trained_project.models / "prediction-log.unwritten.jsonl").exists()
