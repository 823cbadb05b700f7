"""HTML reports: values from files and datasets are text on the page, never markup."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from hhforecast.config import DriftConfig
from hhforecast.datasets.fleet import simulate_weekly_dataset
from hhforecast.reports.drift import drift_report
from hhforecast.watch.drift import DriftReport
from hhforecast.watch.monitor import MonitorResult, PeriodError, monitor_html
from hhforecast.watch.statistics import drift_statistics

HOSTILE = "<script>alert('x')</script>&co"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;co"


def test_a_hostile_feature_name_and_file_name_are_escaped_in_the_drift_report() -> None:
    weekly = simulate_weekly_dataset(seed=3, weeks=130).rename(columns={"Cycles": HOSTILE})
    weekly["date"] = pd.to_datetime(weekly["date"])
    reference, recent = weekly.iloc[:104], weekly.iloc[104:].reset_index(drop=True)
    config = DriftConfig()
    report = DriftReport(
        version="1.0.0",
        variant="5features",
        recent_path=Path("weeks <b>&.csv"),
        statistics=drift_statistics(reference, recent, config),
        reference=reference,
        recent=recent,
        config=config,
        performance={"recent": {"MAE": 1.0, "RMSE": 2.0, "MAPE": 3.0}},
    )
    assert HOSTILE in [s.name for s in report.statistics.signals]

    html = drift_report(report)

    assert "<script" not in html
    assert "<b>" not in html
    assert f"<td>{ESCAPED}</td>" in html
    assert f'alt="{ESCAPED} histogram" src="data:image/png;base64,' in html
    assert "<h1>Drift of weeks &lt;b&gt;&amp;.csv against version 1.0.0</h1>" in html
    assert "<td>recent</td><td>1.0</td><td>2.0</td><td>3.0</td>" in html


def test_a_hostile_log_path_and_period_are_escaped_in_the_monitor_report() -> None:
    period = PeriodError(
        period="2024-01 <i>",
        version="1.0.0",
        variant="5features",
        weeks=4,
        mae=12.5,
        rmse=1234.5,
        mape=float("nan"),
        bias=-3.0,
        in_interval=0.75,
        flagged=True,
    )
    matched = pd.DataFrame(
        {
            "week": ["2024-01-01"],
            "version": ["1.0.0"],
            "source": ["cli <b>"],
            "hh_pred": [1000.0],
            "hh_lower": [900.0],
            "hh_upper": [1100.0],
            "actual": [1050.0],
        }
    )
    result = MonitorResult(
        by="month",
        database=Path("/srv/logs <&>/predictions.sqlite"),
        periods=[period],
        horizons=[dataclasses.replace(period, period="1", flagged=False)],
        matched=matched,
        alerts=pd.DataFrame(
            [("1.0.0", "5features", "2024-01-22", "high", 4.5)],
            columns=["version", "variant", "week", "direction", "cusum"],
        ),
        logged=2,
        pending=1,
        threshold=4.0,
        message="1 alert <above> & beyond",
    )

    html = monitor_html(result)

    assert "<i>" not in html and "<&>" not in html and "<above>" not in html and "<b>" not in html
    assert "Forecasts from /srv/logs &lt;&amp;&gt;/predictions.sqlite." in html
    assert '<p class="drift">1 alert &lt;above&gt; &amp; beyond.</p>' in html
    assert "1 of 2 logged forecasts matched\n(cli &lt;b&gt;: 1 (1.0.0));" in html
    assert (
        "<tr><td>2024-01 &lt;i&gt;</td><td>1.0.0</td><td>5features</td><td>4</td>\n"
        "<td>12.5</td><td>1,234.5</td><td>-3.0</td>\n<td>-</td><td>75</td>\n"
        '<td><span class="drift">alert</span></td></tr>'
    ) in html
    assert 'alt="forecast vs realised" src="data:image/png;base64,' in html


@pytest.mark.parametrize("weeks", [1, 2, 6, 9, 17, 40, 300])
def test_the_monitor_charts_dates_never_overlap(weeks: int) -> None:
    from matplotlib.dates import num2date

    from hhforecast.reports.charts import monitor_figure

    dates = pd.date_range("2024-01-01", periods=weeks, freq="7D").strftime("%Y-%m-%d")
    matched = pd.DataFrame(
        {
            "week": [*dates, *dates],
            "actual": 1000.0,
            "hh_pred": 1010.0,
            "hh_lower": 900.0,
            "hh_upper": 1100.0,
            "version": "1.0.0",
            "source": ["api"] * weeks + ["web"] * weeks,
        }
    )
    figure = monitor_figure(matched)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    axes = figure.axes[0]
    labels = [t for t in axes.get_xticklabels() if t.get_visible() and t.get_text()]
    assert 2 <= len(labels) <= 8, [t.get_text() for t in labels]
    boxes = [t.get_window_extent(renderer) for t in labels]
    overlapping = [
        (labels[i].get_text(), labels[j].get_text())
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if boxes[i].overlaps(boxes[j])
    ]
    assert overlapping == []
    low, high = (num2date(x) for x in axes.get_xlim())
    # The axis spans the weeks shown, not years around a single week.
    assert (high - low).days <= max(10, 7 * weeks * 1.2)
