"""Every reading path goes through the one reader: a Brazilian Excel file reads like the ISO one."""

import json
from pathlib import Path

import pandas as pd
import yaml

from hhforecast.datasets.weekly import sample_dataset_path

from .conftest import Project


def brazilian(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` as Excel saves it with Brazilian settings: `;`, decimal comma, dd/mm/yyyy, cp1252."""
    out = frame.assign(date=pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y"))
    out = out.rename(columns={"acft": " acft "})  # a stray space in a header is trimmed
    path.write_bytes(out.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    return path


def dayfirst_config(project: Project) -> Path:
    data = yaml.safe_load(project.config.read_text())
    data["dataset"] = {"dayfirst": True}
    path = project.root / "dayfirst.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_predict_reads_a_brazilian_file_like_the_iso_one(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    weeks = pd.read_csv(sample_dataset_path()).tail(6).drop(columns=["HH"])
    iso = tmp_path / "weeks.csv"
    weeks.to_csv(iso, index=False)
    br = brazilian(weeks, tmp_path / "semanas.csv")
    assert cli("predict", "--input", iso, "--output", "a.csv").exit_code == 0
    result = cli("predict", "--input", br, "--output", "b.csv", "--dayfirst")
    assert result.exit_code == 0, result.stderr
    a = pd.read_csv(tmp_path / "a.csv")
    b = pd.read_csv(tmp_path / "b.csv", sep=";", decimal=",", encoding="cp1252")  # as read
    pd.testing.assert_series_equal(a["HH_pred"], b["HH_pred"])
    intl = cli("predict", "--input", br, "--output", "c.csv", "--dayfirst", "--csv-style", "intl")
    assert intl.exit_code == 0, intl.stderr
    c = pd.read_csv(tmp_path / "c.csv")
    pd.testing.assert_series_equal(a["HH_pred"], c["HH_pred"])
    assert c["date"].tolist() == a["date"].tolist()  # ISO again


def test_forecast_output_is_written_in_the_plan_style(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    weeks = pd.read_csv(sample_dataset_path()).tail(3).drop(columns=["HH"])
    plan = brazilian(weeks, tmp_path / "plano.csv")
    result = cli("forecast", "--plan", plan, "--dayfirst", "--no-log", "--output", "p.csv")
    assert result.exit_code == 0, result.stderr
    lines = (tmp_path / "p.csv").read_bytes().decode("cp1252").splitlines()
    assert lines[0] == (
        "week;HH_pred;HH_lower;HH_upper;horizon;out_of_range;acft;sum_daily_hours;Cycles;"
        "sum_uti_mensal;age_fleet;model_version;variant"
    )
    assert [line.split(";")[0] for line in lines[1:]] == ["11/12/2023", "18/12/2023", "25/12/2023"]
    assert "," in lines[1].split(";")[1]  # decimal comma
    iso = cli(
        "forecast",
        "--plan",
        plan,
        "--dayfirst",
        "--no-log",
        "--output",
        "q.csv",
        "--csv-style",
        "intl",
    )
    assert iso.exit_code == 0, iso.stderr
    q = pd.read_csv(tmp_path / "q.csv")
    assert q["week"].tolist() == ["2023-12-11", "2023-12-18", "2023-12-25"]


def test_whole_number_inputs_are_written_whole_and_forecasts_keep_their_decimals(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    """acft and Cycles are whole numbers in the plan: --output writes 246, not 246,0 (br) or
    246.0 (intl); the forecasts and the inputs with decimals keep them. predict too."""
    weeks = pd.read_csv(sample_dataset_path()).tail(3).drop(columns=["HH"])
    plan = brazilian(weeks, tmp_path / "plano.csv")
    for style, separator, decimal in (("input", ";", ","), ("intl", ",", ".")):
        out = tmp_path / f"{style}.csv"
        args = ("--dayfirst", "--no-log", "--output", out, "--csv-style", style)
        result = cli("forecast", "--plan", plan, *args)
        assert result.exit_code == 0, result.stderr
        lines = out.read_bytes().decode("utf-8-sig").splitlines()
        header, first = lines[0].split(separator), lines[1].split(separator)
        cells = dict(zip(header, first, strict=True))
        assert [cells[c] for c in ("acft", "Cycles")] == ["246", "1652"]
        assert cells["sum_daily_hours"] == f"2508{decimal}8"
        assert cells["age_fleet"] == f"12230095{decimal}8"
        assert decimal in cells["HH_pred"] and decimal in cells["HH_upper"]

    scored = tmp_path / "scored.csv"
    result = cli("predict", "--input", plan, "--output", scored, "--dayfirst")
    assert result.exit_code == 0, result.stderr
    lines = scored.read_bytes().decode("cp1252").splitlines()
    cells = dict(zip(lines[0].split(";"), lines[1].split(";"), strict=True))
    assert [cells[c] for c in ("acft", "Cycles")] == ["246", "1652"]
    assert cells["sum_daily_hours"] == "2508,8"
    assert "," in cells["HH_pred"]


def test_sample_in_br_style_reads_back_like_the_intl_one(tmp_path: Path, cli) -> None:
    from hhforecast.datasets.reader import read_table

    assert cli("sample", "--out", "br.csv", "--csv-style", "br").exit_code == 0
    assert cli("sample", "--out", "intl.csv").exit_code == 0
    assert (tmp_path / "br.csv").read_bytes().startswith("\ufeffdate;acft;".encode())
    numeric = ["acft", "sum_daily_hours", "age_fleet", "Cycles", "sum_uti_mensal", "HH"]
    br, fmt = read_table(tmp_path / "br.csv", numeric=numeric, dates=["date"])
    intl, _ = read_table(tmp_path / "intl.csv", numeric=numeric, dates=["date"])
    assert (fmt.separator, fmt.decimal, fmt.dayfirst) == (";", ",", True)
    pd.testing.assert_frame_equal(br, intl, check_dtype=False)


def test_drift_reads_a_brazilian_file_like_the_iso_one(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    recent = pd.read_csv(sample_dataset_path()).tail(20)
    iso = tmp_path / "recent.csv"
    recent.to_csv(iso, index=False)
    br = brazilian(recent, tmp_path / "recentes.csv")
    a = cli("drift", "--recent", iso, "--json")
    # 2023-08-14 and later: days above 12 settle the order, no setting needed.
    b = cli("drift", "--recent", br, "--json")
    c = cli("drift", "--recent", br, "--json", "--config", dayfirst_config(trained_project))
    assert a.exit_code == b.exit_code == c.exit_code
    verdicts = [json.loads(r.stdout) for r in (a, b, c)]
    for key in ("verdict", "drifted_features", "share_drifted"):
        assert verdicts[0][key] == verdicts[1][key] == verdicts[2][key]


def test_ambiguous_dates_in_recent_weeks_are_refused_with_the_fix(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    recent = pd.read_csv(sample_dataset_path()).iloc[-8:-4]  # Monday 2023-12-04 and before
    recent = recent[pd.to_datetime(recent["date"]).dt.day <= 12]
    path = brazilian(recent, tmp_path / "recentes.csv")
    result = cli("drift", "--recent", path)
    assert result.exit_code == 2
    assert "could be day-first or month-first" in result.stderr
    assert "set dataset.dayfirst: true in config.yaml (or pass --dayfirst)" in result.stderr
    # Every command that reads such a file takes the flag and reads it day-first.
    drift = cli("drift", "--recent", path, "--dayfirst", "--json")
    assert drift.exit_code == 0, drift.stderr
    assert json.loads(drift.stdout)["recent"]["start"] == recent["date"].iloc[0]
    assert cli("forecast", "--plan", path, "--no-log").exit_code == 2
    plan = cli("forecast", "--plan", path, "--dayfirst", "--no-log", "--json")
    assert plan.exit_code == 0, plan.stderr
    assert [row["week"] for row in json.loads(plan.stdout)["weeks"]] == recent["date"].tolist()


def test_monitor_pairs_day_first_actuals_with_their_own_weeks(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    from datetime import UTC, datetime

    from hhforecast.modeling.predict import load_model, predict_frame
    from hhforecast.watch.prediction_log import PredictionLog

    settings = trained_project.settings
    model = load_model(settings)
    weeks = pd.read_csv(sample_dataset_path()).iloc[-8:]  # 2023-11-06 to 2023-12-25
    log = PredictionLog.from_settings(settings)
    log.record_frame(
        model.version,
        model.variant,
        model.features,
        predict_frame(model, weeks),
        logged_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    log.close()
    iso = tmp_path / "realised.csv"
    weeks[["date", "HH"]].to_csv(iso, index=False)
    br = brazilian(weeks[["date", "HH"]], tmp_path / "realizado.csv")
    a = cli("monitor", "--actuals", iso, "--json")
    b = cli("monitor", "--actuals", br, "--json")  # 13/11/2023 and later settle the order
    assert a.exit_code == b.exit_code == 0, b.stderr
    assert json.loads(a.stdout)["periods"] == json.loads(b.stdout)["periods"]
    assert json.loads(b.stdout)["forecasts_matched"] == 8

    # Read month-first, 11/12/2023 would be 12 Nov: such a file is refused, never paired.
    us = tmp_path / "us.csv"
    dates = pd.to_datetime(weeks["date"]).dt.strftime("%m/%d/%Y")
    weeks[["HH"]].assign(date=dates.to_numpy()).to_csv(us, index=False)
    refused = cli("monitor", "--actuals", us)
    assert refused.exit_code == 2
    assert "are month-first, which hhforecast never reads" in refused.stderr
