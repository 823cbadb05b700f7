"""The web page in headless Chromium: fill the five inputs, click Predict, read the answer."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hhforecast.serving import create_app

from .conftest import Project, rerecord
from .test_serve_e2e import free_port

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None
)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WEEK = {
    "acft": "251",
    "sum_daily_hours": "2412.7",
    "Cycles": "1502",
    "sum_uti_mensal": "10480.2",
    "age_fleet": "10950000",
}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary (install Debian's chromium and chromium-driver to run this test)",
)


@pytest.fixture
def live_url(trained_project: Project) -> Iterator[str]:
    """The app served by uvicorn on a real socket, in a thread of this process."""
    with serve_in_thread(trained_project) as url:
        yield url


@contextmanager
def serve_in_thread(trained_project: Project, **app_options: Any) -> Iterator[str]:
    port = free_port()
    app = create_app(trained_project.settings, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium is installed but chromedriver is not: install chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    # An explicit driver path keeps selenium-manager from looking anything up online.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_the_page_predicts_what_the_api_predicts(live_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    wait = WebDriverWait(browser, 20)
    browser.get(live_url + "/")
    wait.until(lambda d: d.find_element(By.ID, "model-version").text == "1.1.0")
    image = wait.until(lambda d: d.find_element(By.ID, "history-image"))
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)

    for name, value in WEEK.items():
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "what-if").click()
    shown = wait.until(
        lambda d: d.find_element(By.ID, "result-hh").get_attribute("data-value") or None
    )
    expected = httpx.post(
        live_url + "/api/predict", json={k: float(v) for k, v in WEEK.items()}
    ).json()
    assert float(shown) == expected["HH"]
    assert browser.find_element(By.ID, "result-hh").text == f"{expected['HH']:,.1f}"
    interval = browser.find_element(By.ID, "result-interval").text
    assert interval == f"interval {expected['HH_lower']:,.1f} – {expected['HH_upper']:,.1f} HH"
    monday = date.today() + timedelta(days=(7 - date.today().weekday()) or 7)  # the default week
    assert browser.find_element(By.ID, "result-version").text == (
        f"model version 1.1.0 (5features), for the week of {monday.isoformat()}"
    )
    assert browser.find_element(By.ID, "result-logged").text == "What if: not logged."

    field = browser.find_element(By.ID, "acft")
    field.clear()
    field.send_keys("-5")
    browser.find_element(By.ID, "what-if").click()
    error = wait.until(lambda d: d.find_element(By.ID, "result-error").text or None)
    assert error.startswith("acft must be ≥ 0")


def answer_of(browser: Any, button: str) -> str:
    """Click `button` and wait for the forecast or the error the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, button).click()
    return str(
        WebDriverWait(browser, 20).until(
            lambda d: (
                d.find_element(By.ID, "result-hh").get_attribute("data-value")
                or d.find_element(By.ID, "result-error").text
                or None
            )
        )
    )


def shown(value: float) -> str:
    """A range bound as the page writes it (en-US grouping, at most one decimal)."""
    text = f"{value:,.1f}"
    return text.removesuffix(".0")


def test_hints_and_starting_values_come_from_the_served_versions_training_ranges(
    live_url: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    info = httpx.get(live_url + "/api/info").json()
    browser.get(live_url + "/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "model-version").text == "1.1.0"
    )
    for name, (low, high) in info["feature_ranges"].items():
        value = float(browser.find_element(By.ID, name).get_attribute("value"))
        whole = float(low).is_integer() and float(high).is_integer()
        # The middle of the range, rounded to a whole number or to one decimal like the bounds.
        assert value == pytest.approx((low + high) / 2, abs=0.5 if whole else 0.051), name
        assert value == round(value) if whole else round(value, 1)
        hint = browser.find_element(By.ID, f"hint-{name}").text
        assert hint.endswith(f"(seen in training: {shown(low)} – {shown(high)})"), hint
    assert "typical" not in browser.find_element(By.ID, "predict-form").text
    # With the starting values the served model answers inside its training range.
    assert float(answer_of(browser, "what-if")) > 0
    assert browser.find_element(By.ID, "result-warning").text == ""


def test_with_display_numbers_br_the_page_writes_a_decimal_comma(
    trained_project: Project, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    from .conftest import write_config

    assert isinstance(browser, WebDriver)
    br = str.maketrans({",": ".", ".": ","})
    write_config(trained_project.root, display={"numbers": "br"})
    with serve_in_thread(Project(trained_project.root, trained_project.config)) as url:
        info = httpx.get(url + "/api/info").json()
        assert info["display"] == {"numbers": "br"}
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.ID, "model-version").text == "1.1.0"
        )
        for name, (low, high) in info["feature_ranges"].items():
            hint = browser.find_element(By.ID, f"hint-{name}").text
            expected = (
                f"(seen in training: {shown(low).translate(br)} – {shown(high).translate(br)})"
            )
            assert hint.endswith(expected), hint
            assert "." not in browser.find_element(By.ID, name).get_attribute("value"), name
        # The starting values, written with a decimal comma, are read back as they were meant.
        starting = {
            name: float(browser.find_element(By.ID, name).get_attribute("value").replace(",", "."))
            for name in info["features"]
        }
        expected_answer = httpx.post(url + "/api/predict", json=starting).json()
        assert float(answer_of(browser, "what-if")) == expected_answer["HH"]
        assert browser.find_element(By.ID, "result-hh").text == (
            f"{expected_answer['HH']:,.1f}".translate(br)
        )
        assert browser.find_element(By.ID, "result-interval").text == (
            f"interval {expected_answer['HH_lower']:,.1f}".translate(br)
            + f" – {expected_answer['HH_upper']:,.1f} HH".translate(br)
        )


def test_the_week_field_says_how_far_it_lies_from_the_served_fit(
    live_url: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    assert httpx.get(live_url + "/api/info").json()["trained_through"] == "2023-12-25"
    browser.get(live_url + "/")
    ahead = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "week-ahead").text or None
    )
    monday = date.today() + timedelta(days=(7 - date.today().weekday()) or 7)  # the default
    weeks = (monday - date(2023, 12, 25)).days // 7
    assert browser.find_element(By.ID, "week").get_attribute("value") == monday.isoformat()
    assert ahead == f"{weeks} weeks ahead of the served model's last trained week (2023-12-25)."
    warning = browser.find_element(By.ID, "week-warning")
    assert warning.is_displayed()
    assert warning.text == (
        f"The week of {monday.isoformat()} is {weeks} weeks ahead of the last week the served "
        "model learnt (2023-12-25): the forecast extrapolates that far. Use it with care, or "
        "serve a version trained on recent weeks."
    )
    for day, said, warned in (
        ("2024-01-10", "2 weeks ahead of", False),  # a Wednesday: the week of 2024-01-08
        ("2024-02-19", "8 weeks ahead of", False),
        ("2024-02-26", "9 weeks ahead of", True),
        ("2023-12-25", "It is", False),
        ("2023-12-18", "1 week before", False),
    ):
        browser.execute_script(
            "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('change'))",
            browser.find_element(By.ID, "week"),
            day,
        )
        text = browser.find_element(By.ID, "week-ahead").text
        assert text.startswith(said) and text.endswith("(2023-12-25)."), (day, text)
        assert warning.is_displayed() is warned, day


def test_a_decimal_comma_is_read_and_an_ambiguous_number_refused(
    live_url: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    browser.get(live_url + "/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "model-version").text == "1.1.0"
    )
    expected = httpx.post(
        live_url + "/api/predict", json={k: float(v) for k, v in WEEK.items()}
    ).json()["HH"]
    for written in ("2412,7", "2.412,7", "2,412.7", "2 412,7"):
        typed = {**WEEK, "sum_daily_hours": written, "sum_uti_mensal": "10480,2"}
        for name, value in typed.items():
            field = browser.find_element(By.ID, name)
            field.clear()
            field.send_keys(value)
        assert float(answer_of(browser, "what-if")) == expected, written
    field = browser.find_element(By.ID, "Cycles")
    field.clear()
    field.send_keys("1,590")
    assert answer_of(browser, "what-if") == (
        'Cycles: "1,590" can be read as 1590 or as 1.590; write 1590 (no thousands separator) '
        "or 1.590 (a decimal point)"
    )
    field.clear()
    field.send_keys("15.90,5")
    assert answer_of(browser, "what-if") == 'Cycles: "15.90,5" is not a number'


def test_the_page_has_an_icon(live_url: str) -> None:
    icon = httpx.get(live_url + "/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
    assert '<link rel="icon" href="/favicon.ico">' in httpx.get(live_url + "/").text


def test_the_page_says_when_the_history_is_unavailable(
    trained_project: Project, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    metadata_path = trained_project.models / "1.1.0" / "model_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["dataset"]["path"] = "data/fleet.csv"
    metadata_path.write_text(json.dumps(metadata))
    rerecord(metadata_path.parent)
    assert isinstance(browser, WebDriver)
    with serve_in_thread(trained_project) as url:
        browser.get(url + "/")
        note = WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.ID, "history-unavailable").text or None
        )
        assert note == (
            "The history picture is not available: the training dataset of version 1.1.0 "
            "(data/fleet.csv) is not available"
        )
        assert browser.find_elements(By.ID, "history-image") == []


def test_docs_page_renders_from_the_api_alone(live_url: str, browser: object) -> None:
    """Swagger UI draws the API's operations, and every file the browser loaded for it came
    from the API itself (a hangar network has no internet)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    wait = WebDriverWait(browser, 30)
    for page, drawn in (("/docs", ".opblock-post"),):
        browser.get(live_url + page)
        wait.until(lambda d, css=drawn: d.find_elements(By.CSS_SELECTOR, css))
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded, page
        outside = [url for url in loaded if not url.startswith(live_url + "/")]
        assert outside == [], (page, outside)
