"""The page's week field and plan upload in headless Chromium, logged with source web."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.watch.prediction_log import PredictionRecorder

from .conftest import Project
from .test_web_page import WEEK, answer_of, browser, serve_in_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="no chromium binary (install chromium)"
)
FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
CSV = {"Content-Type": "text/csv"}


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
    wait.until(lambda d: d.find_element(By.ID, "acft").get_attribute("value"))
    # The starting values lie inside the training range: the forecast is logged at once.
    shown = answer_of(browser, "forecast-week")
    assert "for the week of 2026-12-09" in browser.find_element(By.ID, "result-version").text  # type: ignore[attr-defined]
    assert browser.find_element(By.ID, "result-logged").text == (  # type: ignore[attr-defined]
        "Logged for planning: monitor will compare it with the week's realised HH."
    )
    # Trying other values afterwards is a what-if: answered, and the week's forecast stays.
    for name, value in WEEK.items():
        field = browser.find_element(By.ID, name)  # type: ignore[attr-defined]
        field.clear()
        field.send_keys(value)
    assert answer_of(browser, "what-if") != shown
    assert recorder.flush()
    logged = recorder.log.frame()
    assert logged[["week", "source"]].values.tolist() == [["2026-12-07", "web"]]
    assert logged["hh_pred"].iloc[0] == pytest.approx(float(shown), abs=1e-3)


def test_out_of_range_inputs_are_logged_only_once_confirmed(
    logged_url: tuple[str, PredictionRecorder],
    browser: object,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, recorder = logged_url
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "acft").get_attribute("value"))
    high = httpx.get(url + "/api/info").json()["feature_ranges"]["acft"][1]
    field = browser.find_element(By.ID, "acft")  # type: ignore[attr-defined]
    field.clear()
    field.send_keys(str(int(high) + 40))
    assert answer_of(browser, "forecast-week") == (
        "acft outside the range version 1.1.0 was trained on, so this forecast was not logged: "
        "check the values, or confirm to log it anyway"
    )
    assert recorder.flush() and recorder.accepted == 0
    confirm = browser.find_element(By.ID, "confirm-log")  # type: ignore[attr-defined]
    assert confirm.is_displayed()
    shown = answer_of(browser, "confirm-log")
    assert browser.find_element(By.ID, "result-warning").text.startswith(  # type: ignore[attr-defined]
        "Outside the range seen in training: acft."
    )
    assert recorder.flush()
    logged = recorder.log.frame()
    assert logged["source"].tolist() == ["web"]
    assert logged["hh_pred"].iloc[0] == pytest.approx(float(shown), abs=1e-3)


def test_the_planning_forecast_needs_a_week_and_the_what_if_is_never_logged(
    logged_url: tuple[str, PredictionRecorder],
) -> None:
    url, recorder = logged_url
    info = httpx.get(url + "/api/info").json()
    week = {f: sum(bounds) / 2 for f, bounds in info["feature_ranges"].items()}
    no_date = httpx.post(url + "/web/predict", json=week)
    assert no_date.status_code == 422
    assert no_date.json()["error"]["field"] == "date"
    what_if = httpx.post(url + "/web/what-if", json={**week, "date": "2026-12-07"})
    assert what_if.status_code == 200 and what_if.json()["out_of_range"] == []
    planned = httpx.post(url + "/web/predict", json={**week, "date": "2026-12-07"})
    assert planned.status_code == 200
    assert planned.json()["HH"] == what_if.json()["HH"]
    assert recorder.flush()
    assert recorder.log.frame()["week"].tolist() == ["2026-12-07"]


def test_a_plan_upload_shows_each_week_with_its_interval_and_logs_it(
    logged_url: tuple[str, PredictionRecorder],
    browser: object,  # noqa: F811
    trained_project: Project,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, recorder = logged_url
    # Eight weeks after the training data, flown as eight weeks the model learnt from (inside
    # its training range: a plan is logged at once).
    fleet = pd.read_csv(sample_dataset_path()).iloc[100:108].reset_index(drop=True)
    fleet["date"] = pd.date_range("2024-01-01", periods=8, freq="7D").strftime("%Y-%m-%d")
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

    assert "Not logged" not in browser.find_element(By.ID, "plan-note").text  # type: ignore[attr-defined]

    # A plan with a week outside the training range is shown but logged only once confirmed.
    later = simulate_weekly_dataset(weeks=4, start="2025-01-06", fleet_start="2019-01-07")
    later_plan = trained_project.root / "later.csv"
    later[["date", *FEATURES]].to_csv(later_plan, index=False)
    browser.find_element(By.ID, "plan-file").send_keys(str(later_plan))  # type: ignore[attr-defined]
    browser.find_element(By.ID, "plan-forecast").click()  # type: ignore[attr-defined]
    held = wait.until(lambda d: d.find_elements(By.ID, "plan-not-logged") or None)[0]
    # The page says which weeks and which inputs kept the plan out of the log, and how to log it.
    answer = httpx.post(url + "/web/plan", content=later_plan.read_bytes(), headers=CSV).json()
    reason = answer["not_logged"]["reason"]
    assert held.text == (
        f"Not logged: {reason}. Check those weeks' inputs (last column), or log these forecasts "
        "anyway (button below)."
    )
    for week in answer["not_logged"]["weeks"]:
        assert f"{week['week']}: {', '.join(week['out_of_range'])}" in held.text
    assert recorder.flush()
    assert (recorder.log.frame()["source"] == "web").sum() == 8
    browser.find_element(By.ID, "plan-confirm").click()  # type: ignore[attr-defined]
    wait.until(
        lambda d: (
            (d.find_elements(By.ID, "plan-note") and not d.find_elements(By.ID, "plan-not-logged"))
            or None
        )
    )
    assert recorder.flush()
    assert recorder.log.frame()["week"].tolist()[-4:] == later["date"].tolist()

    bad = trained_project.root / "bad.csv"
    pd.DataFrame({"date": ["2024-01-01"], "acft": [250]}).to_csv(bad, index=False)
    browser.find_element(By.ID, "plan-file").send_keys(str(bad))  # type: ignore[attr-defined]
    browser.find_element(By.ID, "plan-forecast").click()  # type: ignore[attr-defined]
    error = wait.until(lambda d: d.find_element(By.ID, "plan-error").text or None)
    assert error.startswith("bad.csv: missing column(s)")
