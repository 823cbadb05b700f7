"""The page's week field and plan upload in headless Chromium, logged with source web."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.watch.prediction_log import PredictionRecorder

from .conftest import Project
from .test_web_page import WEEK, browser, serve_in_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="no chromium binary (install chromium)"
)
FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


@pytest.fixture
def logged_url(trained_project: Project) -> Iterator[tuple[str, PredictionRecorder]]:
    recorder = PredictionRecorder.from_settings(trained_project.settings)
    with serve_in_thread(trained_project, prediction_log=recorder) as url:
        yield url, recorder


def test_the_week_field_names_the_week_logged(
    logged_url: tuple[str, PredictionRecorder],
    browser: object,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, recorder = logged_url
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")  # type: ignore[attr-defined]
    today = date.today()
    monday = today + timedelta(days=(7 - today.weekday()) or 7)
    week = browser.find_element(By.ID, "week")  # type: ignore[attr-defined]
    assert week.get_attribute("value") == monday.isoformat()
    # A date input takes keys in the browser's locale order: set it as a script would.
    browser.execute_script("arguments[0].value = '2026-12-09'", week)  # type: ignore[attr-defined]
    for name, value in WEEK.items():
        field = browser.find_element(By.ID, name)  # type: ignore[attr-defined]
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "predict").click()  # type: ignore[attr-defined]
    shown = wait.until(lambda d: d.find_element(By.ID, "result-hh").get_attribute("data-value"))
    assert "for the week of 2026-12-09" in browser.find_element(By.ID, "result-version").text  # type: ignore[attr-defined]
    assert recorder.flush()
    logged = recorder.log.frame()
    assert logged[["week", "source"]].values.tolist() == [["2026-12-07", "web"]]
    assert logged["hh_pred"].iloc[0] == pytest.approx(float(shown), abs=1e-3)


def test_a_plan_upload_shows_each_week_with_its_interval_and_logs_it(
    logged_url: tuple[str, PredictionRecorder],
    browser: object,  # noqa: F811
    trained_project: Project,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, recorder = logged_url
    fleet = simulate_weekly_dataset(seed=5, weeks=8, start="2024-01-01")
    plan = trained_project.root / "plan.csv"
    fleet[["date", *FEATURES]].to_csv(plan, index=False)
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "plan-file").send_keys(str(plan))  # type: ignore[attr-defined]
    browser.find_element(By.ID, "plan-forecast").click()  # type: ignore[attr-defined]
    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#plan-table tbody tr") or None)
    api = httpx.post(url + "/api/predict", json={"rows": fleet[FEATURES].to_dict("records")}).json()
    assert [float(r.get_attribute("data-hh")) for r in rows] == [a["HH"] for a in api]
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "2024-01-01" and cells[3] == "1"
    assert cells[2] == f"{api[0]['HH_lower']:,.1f} – {api[0]['HH_upper']:,.1f}"
    points = browser.find_elements(By.CSS_SELECTOR, "#plan-svg circle.forecast-point")  # type: ignore[attr-defined]
    assert len(points) == 8
    # Everything the page needed came from this server.
    resources = browser.execute_script(  # type: ignore[attr-defined]
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(r.startswith(url) for r in resources)

    assert recorder.flush()
    logged = recorder.log.frame()
    web = logged[logged["source"] == "web"]
    assert web["week"].tolist() == fleet["date"].tolist()
    assert web["horizon"].tolist() == list(range(1, 9))

    bad = trained_project.root / "bad.csv"
    pd.DataFrame({"date": ["2024-01-01"], "acft": [250]}).to_csv(bad, index=False)
    browser.find_element(By.ID, "plan-file").send_keys(str(bad))  # type: ignore[attr-defined]
    browser.find_element(By.ID, "plan-forecast").click()  # type: ignore[attr-defined]
    error = wait.until(lambda d: d.find_element(By.ID, "plan-error").text or None)
    assert error.startswith("bad.csv: missing column(s)")
