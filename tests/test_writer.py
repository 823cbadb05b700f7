"""The one CSV writer: outputs in the style their input was read in, readable back as written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hhforecast.config import DatasetConfig
from hhforecast.datasets.reader import TableFormat, read_table
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.datasets.writer import (
    BR,
    INTL,
    CsvStyle,
    csv_bytes,
    csv_style,
    whole_numbers_as_integers,
)
from hhforecast.modeling.predict import predict_file

from .conftest import Project

DAYFIRST = DatasetConfig(dayfirst=True)
PREDICTED = ["HH_pred", "HH_lower", "HH_upper"]


def brazilian_weeks(path: Path) -> Path:
    """Six weeks as Excel saves them in Brazil: `;`, decimal comma, dd/mm/yyyy, cp1252."""
    weeks = pd.read_csv(sample_dataset_path()).tail(6).drop(columns=["HH"])
    weeks = weeks.assign(
        date=pd.to_datetime(weeks["date"]).dt.strftime("%d/%m/%Y"),
        Observação=["manutenção", "", "revisão C", "ok", "ok", "inspeção"],
    )
    path.write_bytes(weeks.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    return path


def test_a_brazilian_input_is_scored_into_a_brazilian_output_that_reads_back_the_same(
    trained_project: Project, tmp_path: Path
) -> None:
    source = brazilian_weeks(tmp_path / "semanas.csv")
    settings = trained_project.settings.with_dataset(dayfirst=True)
    run = predict_file(settings, source, tmp_path / "previsto.csv")
    data = (tmp_path / "previsto.csv").read_bytes()
    header, first = data.decode("cp1252").splitlines()[:2]
    assert header == (
        "date;acft;sum_daily_hours;age_fleet;Cycles;sum_uti_mensal;Observação;HH_pred;HH_lower;"
        "HH_upper;out_of_range"
    )
    assert first.startswith("20/11/2023;234;2254,4;") and "," in first.split(";")[7]
    numeric = [*run.frame.columns[1:6], *PREDICTED]
    back, fmt = read_table(tmp_path / "previsto.csv", DAYFIRST, numeric=numeric, dates=["date"])
    assert (fmt.encoding, fmt.separator, fmt.decimal, fmt.dayfirst) == ("cp1252", ";", ",", True)
    expected = run.frame.assign(out_of_range=run.frame["out_of_range"].replace("", None))
    pd.testing.assert_frame_equal(
        back.fillna({"Observação": ""}),
        expected.fillna({"Observação": ""}),
        check_dtype=False,
    )


def test_styles_by_name_and_from_what_was_read() -> None:
    read_as = TableFormat("cp1252", ";", ",", dayfirst=True)
    assert csv_style("input", read_as) == CsvStyle(";", ",", True, "cp1252")
    assert csv_style("intl", read_as) == INTL
    assert csv_style("br", None) == BR == CsvStyle(";", ",", True, "utf-8-sig")
    assert csv_style("input", None) == INTL
    assert csv_style("input", TableFormat("xlsx", "", ".")) == INTL


def test_br_style_writes_dates_day_first_and_decimal_commas() -> None:
    frame = pd.DataFrame({"date": ["2024-01-29"], "HH": [1234.5], "n": [3], "t": ["a;b"]})
    assert csv_bytes(frame, BR) == '\ufeffdate;HH;n;t\n29/01/2024;1234,5;3;"a;b"\n'.encode()
    assert csv_bytes(frame, INTL) == b"date,HH,n,t\n2024-01-29,1234.5,3,a;b\n"


def test_text_the_code_page_lacks_falls_back_to_utf8_with_bom() -> None:
    frame = pd.DataFrame({"note": ["→ check"]})
    assert csv_bytes(frame, CsvStyle(";", ",", True, "cp1252")) == "\ufeffnote\n→ check\n".encode()


def test_whole_number_columns_are_written_whole_and_the_others_keep_their_decimals() -> None:
    frame = pd.DataFrame(
        {
            "acft": [246.0, float("nan")],
            "hours": [2508.8, 2600.0],
            "HH_pred": [1042.0, 998.25],
        }
    )
    whole = whole_numbers_as_integers(frame, ["acft", "hours"])
    assert (
        csv_bytes(whole, INTL).decode() == "acft,hours,HH_pred\n246,2508.8,1042.0\n,2600.0,998.25\n"
    )
    assert csv_bytes(whole, BR).decode("utf-8-sig") == (
        "acft;hours;HH_pred\n246;2508,8;1042,0\n;2600,0;998,25\n"
    )
    assert frame["acft"].dtype == float  # the caller's frame is left as it was
