"""The prediction log (SQLite) and the error per week and month, checked against hand sums."""

import math
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhforecast.config import load_settings
from hhforecast.watch.monitor import run_monitor
from hhforecast.watch.prediction_log import (
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    week_of,
)

from .conftest import Project, write_config

INPUTS = {"acft": 250.0, "sum_daily_hours": 2400.0, "Cycles": 1500.0}
EARLY = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
LATE = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

# week: (predicted, realised); January has five weeks (29 January starts in January)
WEEKS = {
    "2024-01-01": (100.0, 110.0),
    "2024-01-08": (200.0, 190.0),
    "2024-01-15": (300.0, 330.0),
    "2024-01-22": (400.0, 400.0),
    "2024-01-29": (500.0, 480.0),
    "2024-02-05": (600.0, 700.0),
    "2024-02-12": (700.0, 800.0),
}


def record(week: str | None, hh: float, version: str = "1.0.0", **kwargs) -> PredictionRecord:
    return PredictionRecord(
        version=version,
        variant="5features",
        inputs=INPUTS,
        hh_pred=hh,
        hh_lower=hh - 50,
        hh_upper=hh + 50,
        week=week,
        **kwargs,
    )


def bare_record(week: str, hh: float) -> PredictionRecord:
    """A forecast logged without interval bounds (an older or hand-made log)."""
    return PredictionRecord(
        version="1.0.0", variant="5features", inputs=INPUTS, hh_pred=hh, week=week, logged_at=LATE
    )


def test_the_week_is_the_monday_of_the_given_day_else_of_the_logging_time(
    tmp_path: Path,
) -> None:
    assert week_of("2024-01-03") == "2024-01-01"
    assert week_of("2024-01-07T23:00:00") == "2024-01-01"
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record(
        [
            record("2024-01-03", 1.0),
            record(None, 2.0, logged_at=datetime(2024, 1, 10, 9, 0, tzinfo=UTC)),
        ]
    )
    frame = log.frame()
    assert frame["week"].tolist() == ["2024-01-01", "2024-01-08"]
    assert frame["logged_at"].tolist()[1] == "2024-01-10T09:00:00.000000+00:00"
    assert frame["hh_lower"].tolist() == [-49.0, -48.0]
    assert frame["inputs"].iloc[0] == '{"Cycles": 1500.0, "acft": 250.0, "sum_daily_hours": 2400.0}'
    with sqlite3.connect(tmp_path / "log.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    log.close()


def test_concurrent_request_threads_lose_no_prediction(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    errors: list[BaseException] = []

    def serve(thread: int) -> None:
        try:
            for batch in range(20):
                log.record([record("2024-01-01", thread * 1000 + batch * 10 + i) for i in range(5)])
        except BaseException as exc:  # surfaced below: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    frame = log.frame()
    assert len(frame) == 8 * 20 * 5
    assert frame["hh_pred"].nunique() == 800
    log.close()


def test_scored_rows_are_logged_with_their_date(tmp_path: Path) -> None:
    scored = pd.DataFrame(
        {
            "date": ["2024-01-02", None],
            "acft": [250, 251],
            "HH_pred": [1000.0, 1100.0],
            "HH_lower": [900.0, 1000.0],
            "HH_upper": [1100.0, 1200.0],
        }
    )
    log = PredictionLog(tmp_path / "log.sqlite")
    assert log.record_frame("1.0.0", "4features", ["acft"], scored, logged_at=LATE) == 2
    frame = log.frame()
    assert frame["week"].tolist() == ["2024-01-01", "2024-02-26"]
    assert frame["inputs"].tolist() == ['{"acft": 250.0}', '{"acft": 251.0}']
    log.close()


def _monitored_project(trained_project: Project) -> Project:
    """Log the WEEKS forecasts of 1.0.0 (horizons 1 to 7) and their realised HH."""
    settings = trained_project.settings
    log = PredictionLog.from_settings(settings)
    # An earlier forecast of the first week is superseded by the later one.
    log.record([record("2024-01-01", 999.0, logged_at=EARLY, source="cli")])
    log.record(
        [
            record(week, predicted, logged_at=LATE, last_trained_week="2023-12-25")
            for week, (predicted, _) in WEEKS.items()
        ]
    )
    log.record(
        [
            record("2024-01-01", 150.0, version="1.1.0", logged_at=LATE, source="web"),
            record("2024-03-04", 800.0, logged_at=LATE),  # not realised yet: pending
        ]
    )
    log.close()
    actuals = trained_project.root / "actuals.csv"
    pd.DataFrame({"date": list(WEEKS), "HH": [realised for _, realised in WEEKS.values()]}).to_csv(
        actuals, index=False
    )
    return trained_project


def test_error_per_week_month_and_horizon_matches_hand_sums(trained_project: Project) -> None:
    project = _monitored_project(trained_project)
    weekly = run_monitor(project.settings, project.root / "actuals.csv", "week")
    # Every logged forecast of a realised week is matched once, the superseded one included.
    assert len(weekly.matched) == 9 and weekly.matched["id"].is_unique
    assert (weekly.logged, weekly.pending) == (10, 1)
    assert sorted(weekly.matched["source"]) == ["api"] * 7 + ["cli", "web"]
    rows = {(p.period, p.version): p for p in weekly.periods}
    assert len(rows) == 8
    assert rows[("2024-01-01", "1.0.0")].mae == pytest.approx(10.0)  # 100 vs 110, not 999
    assert rows[("2024-01-01", "1.1.0")].mae == pytest.approx(40.0)
    assert rows[("2024-02-05", "1.0.0")].rmse == pytest.approx(100.0)
    assert rows[("2024-02-05", "1.0.0")].bias == pytest.approx(-100.0)
    assert rows[("2024-02-05", "1.0.0")].mape == pytest.approx(100 * 100 / 700)

    monthly = run_monitor(project.settings, project.root / "actuals.csv", "month")
    by_month = {(p.period, p.version): p for p in monthly.periods}
    january = by_month[("2024-01", "1.0.0")]
    assert january.weeks == 5
    assert january.mae == pytest.approx((10 + 10 + 30 + 0 + 20) / 5)
    assert january.rmse == pytest.approx(math.sqrt((100 + 100 + 900 + 0 + 400) / 5))
    assert january.mape == pytest.approx(
        100 * (10 / 110 + 10 / 190 + 30 / 330 + 0 / 400 + 20 / 480) / 5
    )
    assert january.in_interval == 1.0  # every January error is within the ±50 interval
    february = by_month[("2024-02", "1.0.0")]
    assert (february.weeks, february.mae, february.rmse) == (2, 100.0, 100.0)
    assert february.in_interval == 0.0

    bands = {(p.period, p.version): p for p in weekly.horizons}
    assert (bands[("1", "1.0.0")].weeks, bands[("1", "1.0.0")].mae) == (1, 10.0)
    # The superseded forecast counts per horizon (it had none recorded): 999 vs 110.
    assert bands[("unknown", "1.0.0")].mae == pytest.approx(889.0)
    assert bands[("3-4", "1.0.0")].mae == pytest.approx((30 + 0) / 2)
    assert bands[("5-8", "1.0.0")].weeks == 3
    assert bands[("unknown", "1.1.0")].weeks == 1


def test_a_forecast_logged_without_its_interval_counts_in_errors_not_in_coverage(
    trained_project: Project,
) -> None:
    settings = trained_project.settings
    log = PredictionLog.from_settings(settings)
    log.record([bare_record("2024-01-01", 100.0)])
    log.close()
    actuals = trained_project.root / "actuals.csv"
    pd.DataFrame({"date": ["2024-01-01"], "HH": [110.0]}).to_csv(actuals, index=False)
    result = run_monitor(settings, actuals, "week")
    (period,) = result.periods
    assert period.mae == pytest.approx(10.0)
    assert math.isnan(period.in_interval)


def test_the_alert_follows_the_forecasts_own_intervals(trained_project: Project) -> None:
    project = _monitored_project(trained_project)
    write_config(project.root, monitoring={"alert_baseline_weeks": 0})
    project = Project(project.root, project.config)
    # ±50 is an 80% interval: sigma = 50 / 1.2816 = 39.02 HH. The deployment series is the
    # forecast production served for each week, whichever version: 2024-01-01's is 1.1.0's
    # (150 vs 110; logged at the same time as 1.0.0's, and written last), z = -40 / 39.02 =
    # -1.025; the others are 1.0.0's. With no earlier week to judge by (the 26 guard weeks leave
    # no reference), the interval alone sets centre 0 and spread 1. The low sum reaches only
    # 1.025 - 0.75 = 0.275 and falls back to 0; the two February weeks 100 HH above their
    # forecasts give z = 2.563 each, and the high CUSUM (slack 0.75) reaches
    # 2 x (2.563 - 0.75) = 3.63 > 3.5 in the second.
    weekly = run_monitor(project.settings, project.root / "actuals.csv", "week")
    assert weekly.alerts.to_dict("records") == [
        {"version": "1.0.0", "variant": "5features", "week": "2024-02-12", "direction": "high",
         "cusum": 3.63}
    ]  # fmt: skip
    assert [p.period for p in weekly.periods if p.flagged] == ["2024-02-12"]
    monthly = run_monitor(project.settings, project.root / "actuals.csv", "month")
    assert [p.period for p in monthly.periods if p.flagged] == ["2024-02"]
    assert monthly.verdict == "alert"
    assert "2024-02-12 (1.0.0, high)" in monthly.message
    write_config(project.root, monitoring={"alert_threshold": 3.7, "alert_baseline_weeks": 0})
    assert run_monitor(load_settings(project.config), project.root / "actuals.csv").verdict == "ok"


def test_each_week_is_judged_against_the_deployments_earlier_weeks(
    trained_project: Project,
) -> None:
    project = _monitored_project(trained_project)
    # The deployment's first five weeks are its reference, whichever version served them:
    # z = -1.025 (1.1.0), then 1.0.0's -0.256, 0.769, 0, -0.513. Sorted: -1.025, -0.513,
    # -0.256, 0, 0.769: median m = -0.256; distances to it 0.769, 0, 1.025, 0.256, 0.256:
    # median 0.256, MAD-spread s = 1.4826 x 0.256 = 0.380. Pooled with the interval's centre 0
    # and spread 1 as k = v = 26 weeks: bias = 5 x -0.256 / 31 = -0.0413, spread =
    # sqrt((26 + 5 x 0.380^2 + (5 x 26 / 31) x 0.256^2) / 31) = 0.933. February's
    # z = 2.563 count (2.563 + 0.0413) / 0.933 = 2.791 each, and the CUSUM reaches
    # 2 x (2.791 - 0.75) = 4.08.
    write_config(project.root, monitoring={"alert_baseline_weeks": 5})
    result = run_monitor(load_settings(project.config), project.root / "actuals.csv")
    assert result.alerts[["version", "week", "cusum"]].to_dict("records") == [
        {"version": "1.0.0", "week": "2024-02-12", "cusum": 4.08}
    ]
    # Trusting the interval's spread alone (a heavy prior), only the bias moves it:
    # 2 x (2.563 + 0.0413 - 0.75) = 3.71.
    write_config(
        project.root, monitoring={"alert_baseline_weeks": 5, "alert_prior_weeks": 1_000_000}
    )
    result = run_monitor(load_settings(project.config), project.root / "actuals.csv")
    assert result.alerts["cusum"].tolist() == [3.71]
    # Seven realised weeks are not enough to know how the deployment usually errs: no alert yet.
    write_config(project.root, monitoring={"alert_baseline_weeks": 7})
    young = run_monitor(load_settings(project.config), project.root / "actuals.csv")
    assert young.verdict == "ok"
    assert young.message.endswith(
        "(not judged yet: 7 realised weeks of 5features; the deployment's first 7 give its usual "
        "error)"
    )
    assert young.to_dict()["deployment"] == [
        {
            "variant": "5features",
            "realised_weeks": 7,
            "baseline_weeks": 7,
            "judged": False,
            "served": [
                {"version": "1.1.0", "first_week": "2024-01-01", "last_week": "2024-01-01",
                 "weeks": 1},
                {"version": "1.0.0", "first_week": "2024-01-08", "last_week": "2024-02-12",
                 "weeks": 6},
            ],
        }
    ]  # fmt: skip


MONTHLY_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0")
"""A monthly retrain: each version serves 5, 4, 5 then 4 weeks (18 weeks from 2024-01-01)."""
SERVED_WEEKS = (5, 4, 5, 4)


def _monthly_deployment(project: Project, errors: list[float]) -> Path:
    """Log 18 weeks served by four versions in turn, as a planning loop does: each week
    forecast at 1,000 HH (±50) on the Thursday before it; at a retrain the outgoing version had
    forecast the new one's first week a week earlier. A challenger forecasts every week far off
    (its rows are compared, never judged). Realised HH: 1,000 + each week's error."""
    weeks = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(len(errors))]
    served = [v for v, n in zip(MONTHLY_VERSIONS, SERVED_WEEKS, strict=True) for _ in range(n)]
    records = []
    for i, (week, version) in enumerate(zip(weeks, served, strict=True)):
        thursday = datetime.combine(week - timedelta(days=4), datetime.min.time(), UTC)
        records += [
            record(str(week), 1000.0, version, logged_at=thursday, source="cli"),
            record(str(week), 1500.0, "9.9.9", logged_at=thursday, role="challenger"),
        ]
        if i and served[i - 1] != version:  # superseded by the new version's forecast
            records.append(record(str(week), 900.0, served[i - 1], logged_at=thursday - WEEK))
    log = PredictionLog.from_settings(project.settings)
    log.record(records)
    log.close()
    actuals = project.root / "actuals.csv"
    realised = [1000.0 + e for e in errors]
    pd.DataFrame({"date": [str(w) for w in weeks], "HH": realised}).to_csv(actuals, index=False)
    return actuals


WEEK = timedelta(weeks=1)
HEALTHY = [20.0, -20.0, 0.0] * 6
"""Errors (realised − forecast) of healthy weeks: median 0, MAD 20 HH."""


def test_a_monthly_retrain_is_judged_as_one_deployment(trained_project: Project) -> None:
    # Weeks 1-13 (versions 1.0.0 to 1.2.0) are healthy; from week 14 (1.2.0's last) the fleet
    # needs 60 HH more than forecast. Judged per version from scratch, no version reaches 13
    # realised weeks and nothing would ever be judged; as one deployment, the first 13 weeks
    # are its baseline and reference. Their z-scores (sigma = 39.02 HH): 20 / 39.02 = 0.513 five
    # times, -0.513 four times, 0 four times: median 0, MAD 0.513, MAD-spread 1.4826 x 0.513 =
    # 0.760; pooled with the interval's centre 0 and spread 1 as 26 weeks each: bias 0,
    # spread sqrt((26 + 13 x 0.760^2) / 39) = 0.927. Each shifted week: z = 60 / 39.02 = 1.538,
    # standardised 1.538 / 0.927 = 1.659, adding 1.659 - 0.75 = 0.909 to the high CUSUM: 0.91
    # (week 14, 1.2.0), 1.82, 2.73, then 3.64 > 3.5 in week 17, served by 1.3.0. The version
    # change in week 15 did not reset the sum: restarted with 1.3.0, it would pass only in
    # week 18.
    actuals = _monthly_deployment(trained_project, HEALTHY[:13] + [60.0] * 5)
    result = run_monitor(trained_project.settings, actuals)
    assert result.alerts.to_dict("records") == [
        {"version": "1.3.0", "variant": "5features", "week": "2024-04-22", "direction": "high",
         "cusum": 3.64}
    ]  # fmt: skip
    assert result.message == (
        "1 alert(s): errors beyond what the forecasts' own intervals allow, first passing the "
        "threshold in 2024-04-22 (1.3.0, high)"
    )
    assert [(p.period, p.version) for p in result.periods if p.flagged] == [("2024-04-22", "1.3.0")]
    # Per-version figures are kept: 1.3.0's four weeks all 60 HH under the realised.
    by_version = run_monitor(trained_project.settings, actuals, "month").periods
    april = {p.version: p for p in by_version if p.period == "2024-04"}
    assert (april["1.3.0"].weeks, april["1.3.0"].bias) == (4, -60.0)
    (deployment,) = result.to_dict()["deployment"]
    assert (deployment["realised_weeks"], deployment["judged"]) == (18, True)
    assert [(s["version"], s["weeks"]) for s in deployment["served"]] == list(
        zip(MONTHLY_VERSIONS, SERVED_WEEKS, strict=True)
    )


def test_a_healthy_monthly_retrain_does_not_alert(trained_project: Project) -> None:
    # The same four versions, every week healthy: the standardised errors are 0 or
    # ±0.513 / 0.927 = ±0.553, below the slack 0.75, so neither CUSUM ever rises above 0.
    actuals = _monthly_deployment(trained_project, HEALTHY)
    result = run_monitor(trained_project.settings, actuals)
    assert result.verdict == "ok"
    # 18 weeks served, and the 3 forecasts superseded at a retrain judged for their versions.
    assert result.message == (
        "no alert: 21 forecasts judged in 18 realised weeks, errors within what the forecasts' "
        "intervals allow"
    )


def test_the_reference_leaves_out_the_guard_weeks_and_one_heavy_week_is_clipped() -> None:
    from hhforecast.config import MonitoringConfig
    from hhforecast.watch.alerts import alert_weeks, standardised_errors

    rule = MonitoringConfig(
        alert_baseline_weeks=4, alert_guard_weeks=3, alert_prior_weeks=0, alert_centre_prior_weeks=0
    )
    z = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 3.0, 3.0, 3.0, 3.0])
    u = standardised_errors(z, rule)
    # Weeks 4 to 6 are judged against the first four (median 0, MAD 1: spread 1.4826); week 9
    # against weeks 0-5, week 10 against weeks 0-6: the guard keeps 7-9 out, so a lasting
    # change is still compared with the weeks before it.
    np.testing.assert_allclose(u[4:7], np.array([1.0, -1.0, 1.0]) / 1.4826)
    np.testing.assert_allclose(u[9], 3.0 / 1.4826)
    # Week 10's reference (weeks 0-6) has median 1 and no spread (MAD 0): the interval's is used.
    assert u[10] == pytest.approx(2.0)
    assert [i for i, _, _ in alert_weeks(z, rule)] == [9]
    # Without the guard, the change joins the reference at once and is never flagged.
    assert alert_weeks(z, rule.model_copy(update={"alert_guard_weeks": 0})) == []
    # One heavy week counts at most alert_clip: it alone does not pass the threshold.
    heavy = np.array([1.0, -1.0, 1.0, -1.0, 40.0, 0.0, 0.0])
    assert standardised_errors(heavy, rule)[4] == 3.0
    assert alert_weeks(heavy, rule) == []


def test_the_reference_pools_the_weeks_with_the_intervals_centre_and_spread() -> None:
    from hhforecast.watch.alerts import reference

    # Five weeks: median 0.5; distances to it 1.5, 0.5, 0, 0.5, 1.5, median 0.5: MAD-spread
    # 1.4826 x 0.5 = 0.7413, squared 0.54953.
    past = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    # The interval's centre 0 as 5 weeks: centre 5 x 0.5 / (5 + 5) = 0.25. Its spread 1 as 5
    # weeks, and the weeks' centre 0.5 away from the interval's adds (5 x 5 / 10) x 0.5^2 =
    # 0.625: spread^2 = (5 + 5 x 0.54953 + 0.625) / (5 + 5) = 0.83727, spread 0.91502.
    centre, spread = reference(past, 5.0, 5.0)
    assert (centre, spread) == (pytest.approx(0.25), pytest.approx(0.91502, abs=1e-5))
    # No weight on the interval's centre: the median, and no term for the distance:
    # spread^2 = (5 + 5 x 0.54953) / 10 = 0.77477, spread 0.88021.
    centre, spread = reference(past, 0.0, 5.0)
    assert (centre, spread) == (pytest.approx(0.5), pytest.approx(0.88021, abs=1e-5))
    # Only weeks: the median and the MAD-spread.
    assert reference(past, 0.0, 0.0) == (pytest.approx(0.5), pytest.approx(0.7413, abs=1e-4))
    # No week: the interval alone. Weeks that all erred alike, with no weight on the interval:
    # no spread to divide by, the interval's is used.
    assert reference(np.array([]), 13.0, 13.0) == (0.0, 1.0)
    assert reference(np.array([]), 0.0, 0.0) == (0.0, 1.0)
    assert reference(np.array([0.4, 0.4, 0.4]), 0.0, 0.0) == (pytest.approx(0.4), 1.0)


def test_a_chance_bias_of_the_first_weeks_alerts_less_once_pooled_and_a_shift_still_does() -> None:
    from hhforecast.config import MonitoringConfig
    from hhforecast.watch.alerts import alert_weeks

    # The deployment's first 13 weeks happen to fall low: median -0.75; distances 0.5 (8 weeks)
    # and 0 (5 weeks), median 0.5: MAD-spread 0.7413, squared 0.54953. Then it is healthy, each
    # week 0.25 interval-sigmas above its forecast; or shifted, 1.75 above. Until week 39 the
    # reference is the first 13 weeks (the 26 guard weeks keep the later ones out).
    first = [-1.25, -0.75, -0.25] * 4 + [-0.75]
    healthy = np.array(first + [0.25] * 10)
    shifted = np.array(first + [1.75] * 10)
    rule = MonitoringConfig(
        alert_baseline_weeks=13, alert_guard_weeks=26, alert_clip=3.0, alert_slack=0.75,
        alert_threshold=3.5, alert_centre_prior_weeks=26.0, alert_prior_weeks=26.0,
    )  # fmt: skip
    median_rule = rule.model_copy(
        update={"alert_centre_prior_weeks": 0.0, "alert_prior_weeks": 13.0}
    )
    # The reference's median as the centre: -0.75, spread sqrt((13 + 13 x 0.54953) / 26) =
    # 0.88021. A healthy week counts (0.25 + 0.75) / 0.88021 = 1.13609, adding 0.38609 to the
    # high sum: 3.47 after 9 weeks, 3.86 > 3.5 in the 10th (week 22).
    ((week, direction, total),) = alert_weeks(healthy, median_rule)
    assert (week, direction, total) == (22, "high", pytest.approx(3.8609, abs=1e-3))
    # Pooled with the interval as 26 weeks: centre 13 x -0.75 / 39 = -0.25; spread^2 = (26 +
    # 13 x 0.54953 + (13 x 26 / 39) x 0.75^2) / 39 = (26 + 7.14389 + 4.875) / 39 = 0.97484,
    # spread 0.98734. A healthy week counts (0.25 + 0.25) / 0.98734 = 0.50641 < 0.75: no sum.
    assert alert_weeks(healthy, rule) == []
    # A shifted week counts (1.75 + 0.25) / 0.98734 = 2.02564, adding 1.27564: 3.83 > 3.5 in
    # the third shifted week (week 15), and again every third week after the sum restarts.
    alarms = alert_weeks(shifted, rule)
    assert [(week, direction) for week, direction, _ in alarms] == [
        (15, "high"), (18, "high"), (21, "high")
    ]  # fmt: skip
    assert [total for _, _, total in alarms] == pytest.approx([3.8269] * 3, abs=1e-3)


def test_the_deployment_reads_each_forecast_with_its_versions_coverage() -> None:
    from hhforecast.config import MonitoringConfig
    from hhforecast.watch.alerts import deployments

    # Week 1 served by "a" (80% intervals), week 2 by "b" (50%), both ±50 around 1,000 and 100
    # HH short; "a" also forecast week 2, earlier, so "b"'s later forecast is the one served.
    judged = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "week": ["2024-01-01", "2024-01-08", "2024-01-08"],
            "logged_at": ["2023-12-28", "2023-12-28", "2024-01-04"],
            "version": ["a", "a", "b"],
            "variant": ["5features"] * 3,
            "hh_pred": [1000.0] * 3,
            "hh_lower": [950.0] * 3,
            "hh_upper": [1050.0] * 3,
            "actual": [1100.0] * 3,
        }
    )
    covers = {"a": 0.8, "b": 0.5}
    (series,) = deployments(judged, lambda v, _: covers[v], MonitoringConfig())
    assert series.weeks["version"].tolist() == ["a", "b"]
    # sigma = 50 / 1.2816 = 39.02 for "a" (z = 100 / 39.02 = 2.563), 50 / 0.6745 = 74.13 for
    # "b" (z = 100 / 74.13 = 1.349): the same miss is a smaller surprise for a wider interval.
    np.testing.assert_allclose(series.weeks["z"], [2.5631, 1.3490], atol=1e-4)
    assert series.to_dict()["served"] == [
        {"version": "a", "first_week": "2024-01-01", "last_week": "2024-01-01", "weeks": 1},
        {"version": "b", "first_week": "2024-01-08", "last_week": "2024-01-08", "weeks": 1},
    ]


def test_cusum_alarms_and_restarts() -> None:
    from hhforecast.watch.alerts import cusum_alarms

    z = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.nan, -3.0, -3.0, 0.0])
    # high: 0.5, 1.0, 1.5, 2.0, 2.5 (no alarm at 4); low: 2.5, 5.0 -> alarm at index 7
    assert cusum_alarms(z, 0.5, 4.0) == [(7, "low", 5.0)]
    assert cusum_alarms(z, 0.5, 2.2) == [(4, "high", 2.5), (6, "low", 2.5), (7, "low", 2.5)]


def test_no_prediction_log_is_bad_input(project: Project) -> None:
    actuals = project.root / "actuals.csv"
    actuals.write_text("date,HH\n2024-01-01,100\n")
    with pytest.raises(PredictionLogError) as caught:
        run_monitor(project.settings, actuals)
    assert str(caught.value).startswith(
        f"no prediction log at {project.root / 'models' / 'predictions.sqlite'}: "
    )
    assert caught.value.exit_code == 2


def test_a_wrong_period_is_bad_input(project: Project) -> None:
    with pytest.raises(PredictionLogError, match="--by 'year' is not a period; use week or month"):
        run_monitor(project.settings, project.root / "actuals.csv", "year")


def test_the_service_hook_queues_answers_and_logs_them_in_batches(tmp_path: Path) -> None:
    import numpy as np

    from hhforecast.watch.prediction_log import PredictionEvent, PredictionRecorder

    recorder = PredictionRecorder(PredictionLog(tmp_path / "log.sqlite"))
    at = datetime(2024, 1, 10, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday
    x = np.array([[250.0, 2400.0], [251.0, 2410.0]])
    for i in range(30):
        recorder(
            PredictionEvent(
                at,
                "1.0.0",
                "4features",
                ["acft", "Cycles"],
                x,
                np.array([1000.0 + i, 2000.0]),
                np.array([900.0, 1900.0]),
                np.array([1100.0, 2100.0]),
            )
        )
    recorder.flush()
    frame = PredictionLog(tmp_path / "log.sqlite").frame()
    assert len(frame) == 60
    assert set(frame["week"]) == {"2024-01-08"}
    assert frame["inputs"].iloc[1] == '{"Cycles": 2410.0, "acft": 251.0}'
    assert frame["hh_pred"].iloc[58] == 1029.0
    recorder(
        PredictionEvent(
            at,
            "1.0.0",
            "4features",
            ["acft", "Cycles"],
            x[:1],
            np.array([5.0]),
            np.array([4.0]),
            np.array([6.0]),
        )
    )
    recorder.close()  # what is queued is written before the writer stops
    assert len(PredictionLog(tmp_path / "log.sqlite").frame()) == 61


def test_the_rows_of_served_answers_dated_or_not_in_order() -> None:
    from hhforecast.watch.prediction_log import PredictionEvent, events_rows

    x = np.array([[249.0, 2539.5], [251.0, 2400.0]])
    event = PredictionEvent(
        1_795_694_121.5,  # 2026-11-26T11:55:21.5 UTC, a Thursday
        "1.0.0",
        "4features",
        ("acft", "Cycles"),
        x,
        np.array([1200.5, 1300.25]),
        np.array([900.0, 1000.0]),
        np.array([1500.0, 1600.0]),
        last_trained_week="2026-11-02",
    )
    dated = event._replace(weeks=["2026-12-02", None], source="web")
    later = event._replace(at=1_795_780_521.25, version="1.1.0", last_trained_week=None)
    rows = events_rows([event, dated, later])
    stamp, later_stamp = "2026-11-26T11:55:21.500000+00:00", "2026-11-27T11:55:21.250000+00:00"
    P = "production"
    inputs = ['{"Cycles": 2539.5, "acft": 249.0}', '{"Cycles": 2400.0, "acft": 251.0}']
    assert rows == [
        (stamp, "2026-11-23", "1.0.0", "4features", inputs[0], 1200.5, 900.0, 1500.0, "api", 3, P),
        (
            stamp,
            "2026-11-23",
            "1.0.0",
            "4features",
            inputs[1],
            1300.25,
            1000.0,
            1600.0,
            "api",
            3,
            P,
        ),
        (stamp, "2026-11-30", "1.0.0", "4features", inputs[0], 1200.5, 900.0, 1500.0, "web", 4, P),
        (
            stamp,
            "2026-11-23",
            "1.0.0",
            "4features",
            inputs[1],
            1300.25,
            1000.0,
            1600.0,
            "web",
            3,
            P,
        ),
        (
            later_stamp,
            "2026-11-23",
            "1.1.0",
            "4features",
            inputs[0],
            1200.5,
            900.0,
            1500.0,
            "api",
            None,
            P,
        ),
        (
            later_stamp,
            "2026-11-23",
            "1.1.0",
            "4features",
            inputs[1],
            1300.25,
            1000.0,
            1600.0,
            "api",
            None,
            P,
        ),
    ]


def test_rows_are_written_several_per_statement_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hhforecast.watch.sqlite_store as monitoring

    log = PredictionLog(tmp_path / "log.sqlite")
    rows = [record(None, float(i), logged_at=EARLY).row() for i in range(25)]
    monkeypatch.setattr(monitoring, "ROWS_PER_INSERT", 4)
    assert log.record_rows(rows[:10]) == 10
    # An old SQLite that binds at most 21 variables a statement: two rows of ten each.
    monkeypatch.setattr(monitoring, "_variable_limit", lambda connection: 21)
    assert log.record_rows(rows[10:]) == 15
    frame = log.frame()
    assert frame["hh_pred"].tolist() == [float(i) for i in range(25)]
    assert (
        frame["inputs"].iloc[24] == '{"Cycles": 1500.0, "acft": 250.0, "sum_daily_hours": 2400.0}'
    )
