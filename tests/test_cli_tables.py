"""Every table fits an 80-column terminal without cutting a version name, a date or a number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hhforecast.cli._common import console, print_table
from hhforecast.cli.watch_commands import drift_tables, monitor_tables

REGISTRY = {
    "versions": [
        {
            "version": "20261128",
            "trained_at": "2026-11-28T04:56:13+00:00",
            "path": "models/20261128",
            "dataset": "sample:sample_weekly.csv",
            "metrics_5features": {"MAE": 219.7, "RMSE": 313.1, "R2": 0.093},
            "metrics_4features": {"MAE": 1301.9, "RMSE": 1413.5, "R2": -0.581},
            "test_period": {"start": "2022-10-03", "end": "2023-12-25", "weeks": 65},
        },
        {
            "version": "20261128-2",
            "trained_at": "2026-11-28T05:10:00+00:00",
            "path": "models/20261128-2",
            "dataset": "data/weekly.csv",
            "metrics_5features": {"MAE": 200.0, "RMSE": 290.4, "R2": 0.2},
            "metrics_4features": {"MAE": 300.0, "RMSE": 410.0, "R2": -0.5},
            "test_period": {"start": "2023-07-03", "end": "2024-12-23", "weeks": 78},
        },
    ],
    "history": [
        {
            "at": "2026-11-28T05:12:26+00:00",
            "action": "promote",
            "from": "20261128-2",
            "to": "20261128",
            "variant": "5features",
            "rmse_from": 290.4,
            "rmse_to": 313.1,
            "rmse_basis": "registry metrics: each version's own held-out test weeks",
            "gate": "require-better-rmse",
            "reason": "retrained on the March export after the hangar audit",
            "user": "planner",
        }
    ],
}


@pytest.fixture
def registry_project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.json").write_text(json.dumps(REGISTRY))
    (tmp_path / "config.yaml").write_text('mlops:\n  production_version: "20261128"\n')
    return tmp_path


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def from_table(text: str) -> list[str]:
    """The lines from the table's top border on (the title holds a temporary path)."""
    found = lines(text)
    return found[next(i for i, line in enumerate(found) if line.startswith(("┏", " when"))) :]


def assert_fits(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, wide


def test_registry_list_fits_80_columns(registry_project: Path, cli, columns80) -> None:
    result = cli("registry", "list")
    assert result.exit_code == 0
    assert_fits(result.stdout)
    assert from_table(result.stdout) == [
        "┏━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓",
        "┃ version    ┃ trained    ┃ test weeks         ┃ RMSE 5f ┃ MAE 5f ┃ RMSE 4f ┃",
        "┡━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩",
        "│ ● 20261128 │ 2026-11-28 │ 65 from 2022-10-03 │   313.1 │  219.7 │ 1,413.5 │",
        "│ 20261128-2 │ 2026-11-28 │ 78 from 2023-07-03 │   290.4 │  200.0 │   410.0 │",
        "└────────────┴────────────┴────────────────────┴─────────┴────────┴─────────┘",
        "  ● = production; RMSE/MAE in HH on each version's own held-out test weeks.",
        "   Versions tested on different weeks are not comparable by these numbers:",
        " hhforecast registry compare A B scores two on the same weeks. Not shown at",
        "                  this width: dataset, MAE 4f (see --json).",
    ]


def test_registry_list_shows_every_column_when_there_is_room(
    registry_project: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setattr(console, "_width", None)
    result = cli("registry", "list")
    assert "simulated sample" in result.stdout and "weekly.csv" in result.stdout
    assert "Not shown" not in result.stdout


def test_registry_list_in_a_real_80_column_process(registry_project: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "hhforecast", "registry", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert_fits(out)
    assert "│ ● 20261128 │ 2026-11-28 │" in out and "│ 20261128-2 │ 2026-11-28 │" in out


def test_registry_history_fits_80_columns(registry_project: Path, cli, columns80) -> None:
    result = cli("registry", "history")
    assert result.exit_code == 0
    assert_fits(result.stdout)
    assert from_table(result.stdout) == [
        " when (UTC)         action     production                   RMSE   reason",
        " " + "─" * 78,
        " 2026-11-28 05:12   promote*   20261128-2→20261128   290.4→313.1   retrained on",
        "                                                                   the March",
        "                                                                   export after",
        "                                                                   the hangar",
        "                                                                   audit",
        "",
        "* promoted through --require-better-rmse: both RMSEs on the same evaluation",
        "weeks. Otherwise each version's RMSE on its own held-out weeks (see --json). Not",
        "shown at this width: user (see --json).",
    ]


def period(name: str, version: str, rmse: float, inside: float, flagged: bool) -> dict:
    return {
        "period": name,
        "version": version,
        "variant": "5features",
        "weeks": 1,
        "mae": rmse,
        "rmse": rmse,
        "mape": 1.0,
        "bias": -rmse,
        "in_interval": inside,
        "flagged": flagged,
    }


MONITOR = {
    "by": "week",
    "database": "models/predictions.sqlite",
    "periods": [
        period("2024-01-01", "20261128-2", 12999.4, 0.0, True),
        period("2024-01-08", "20261128", 12.5, 1.0, False),
    ],
    "horizons": [period("1", "20261128-2", 1999.4, 0.5, False)],
}


def rendered(table) -> str:
    with console.capture() as capture:
        print_table(table)
    return capture.get()


def test_monitor_tables_fit_80_columns(columns80) -> None:
    weeks, horizons = (rendered(t) for t in monitor_tables(MONITOR))
    assert_fits(weeks + horizons)
    assert lines(weeks) == [
        "       Forecast vs realised HH per week (judged forecast of each week)",
        "",
        "  week         version      n      MAE     RMSE      bias   in int.   alert",
        " " + "─" * 75,
        "  2024-01-01   20261128-2   1   12,999   12,999   -12,999        0%   ALERT",
        "  2024-01-08   20261128     1       12       12       -12      100%   ok",
        "",
    ]
    assert lines(horizons)[-4:] == [
        "  ahead   version      n     MAE    RMSE     bias   in int.",
        " " + "─" * 59,
        "  1       20261128-2   1   1,999   1,999   -1,999       50%",
        "",
    ]


def _signal(name: str, role: str, shift: float, drifted: bool) -> dict:
    return {
        "name": name,
        "role": role,
        "mean_shift_pct": shift,
        "mean_shift_std": shift / 10,
        "ks_pvalue": 0.00001 if drifted else 0.3609,
        "mean_pvalue": 0.00002 if drifted else 0.2387,
        "detectable_shift_std": 0.65,
        "n_effective_recent": 30.0,
        "drifted": drifted,
    }


DRIFT = {
    "verdict": "drift",
    "message": "1 of 2 features moved beyond season and trend (age_fleet)",
    "version": "20261128-2",
    "variant": "5features",
    "recent": {"path": "data/recent.csv", "weeks": 30, "start": "2024-01-01", "end": "2024-07-22"},
    "reference": {"source": "drift_reference.csv", "weeks": 195},
    "signals": [
        _signal("sum_daily_hours", "feature", 1.2, False),
        _signal("age_fleet", "feature", -253.4, True),
        _signal("HH", "target", -19.9, True),
    ],
    "performance": None,
}


def test_drift_table_fits_80_columns(columns80) -> None:
    table, verdict = drift_tables(DRIFT)
    text = rendered(table)
    assert_fits(text)
    assert lines(text) == [
        "30 recent weeks (2024-01-01 to 2024-07-22) vs version 20261128-2's 195 training",
        "weeks, net of season and trend",
        "┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓",
        "┃ signal          ┃ shift % ┃   stds ┃    KS p ┃  mean p ┃ n eff. ┃ verdict ┃",
        "┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩",
        "│ sum_daily_hours │     1.2 │   0.12 │  0.3609 │  0.2387 │     30 │ ok      │",
        "│ age_fleet       │  -253.4 │ -25.34 │ <0.0001 │ <0.0001 │     30 │ drift   │",
        "│ HH              │   -19.9 │  -1.99 │ <0.0001 │ <0.0001 │     30 │ moved   │",
        "└─────────────────┴─────────┴────────┴─────────┴─────────┴────────┴─────────┘",
        "shift: recent mean vs expected (rates per aircraft-day, see docs/drift.md),",
        "in % and in stds; detect.: shift (stds) caught half the time; n eff.:",
        "effective recent weeks. Not shown at this width: detect. (see --json).",
    ]
    assert verdict.startswith("Verdict: [bold red]drift[/]")


def test_display_numbers_br_writes_tables_as_a_brazilian_excel_reads_them(
    trained_project, cli, columns80, monkeypatch
) -> None:
    import hhforecast.cli._common as common
    from hhforecast.registry.store import Registry

    monkeypatch.setattr(common, "_NUMBERS", "intl")  # put back after the test
    config = trained_project.config
    config.write_text(config.read_text() + "display:\n  numbers: br\n")
    rmse = Registry(trained_project.settings).get("1.0.0").metric("5features", "RMSE")
    shown = cli("registry", "list", "--config", config).stdout
    intl = f"{rmse:,.1f}"
    assert intl.replace(".", ",") in shown and intl not in shown
    assert common.fmt(1042.5) == "1.042,5"
