"""The one reader: dialects, encodings, number and date formats, and what it refuses."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhforecast.config import DatasetConfig
from hhforecast.datasets.reader import read_table
from hhforecast.datasets.weekly import load_weekly_dataset
from hhforecast.errors import DatasetError

EXPECTED = pd.DataFrame(
    {
        "Data": pd.to_datetime(["2024-01-01", "2024-01-15", "2024-01-29"]),
        "Matrícula": ["PR-GAA", "PR-GAB", "PR-GAC"],
        "Horas": [9.5, 1234.25, 10.0],
    }
)


def read(path: Path, **options: object) -> pd.DataFrame:
    frame, _ = read_table(path, DatasetConfig(**options), numeric=["Horas"], dates=["Data"])
    return frame


@pytest.mark.parametrize(
    ("name", "encoding", "text"),
    [
        (
            "plain",
            "utf-8",
            "Data,Matrícula,Horas\n2024-01-01,PR-GAA,9.5\n"
            '2024-01-15,PR-GAB,"1,234.25"\n2024-01-29,PR-GAC,10\n',
        ),
        (
            "bom",
            "utf-8-sig",
            " Data , Matrícula ,Horas\n2024-01-01,PR-GAA,9.5\n"
            "2024-01-15,PR-GAB,1234.25\n2024-01-29,PR-GAC,10\n",
        ),
        (
            "excel-br",
            "cp1252",
            "Data;Matrícula;Horas\r\n01/01/2024;PR-GAA;9,5\r\n"
            "15/01/2024;PR-GAB;1.234,25\r\n29/01/2024;PR-GAC;10\r\n",
        ),
        (
            "tab",
            "utf-8",
            "Data\tMatrícula\tHoras\n2024-01-01\tPR-GAA\t9,5\n"
            "2024-01-15\tPR-GAB\t1234,25\n2024-01-29 00:00:00\tPR-GAC\t10\n",
        ),
    ],
)
def test_every_dialect_reads_the_same_values(
    tmp_path: Path, name: str, encoding: str, text: str
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(text.encode(encoding))
    pd.testing.assert_frame_equal(read(path), EXPECTED, check_dtype=False)


def test_xlsx_is_read_with_date_cells_and_text_numbers(tmp_path: Path) -> None:
    path = tmp_path / "log.xlsx"
    frame = EXPECTED.assign(Horas=["9,5", "1.234,25", "10"])
    frame.to_excel(path, index=False, engine="openpyxl")
    pd.testing.assert_frame_equal(read(path), EXPECTED, check_dtype=False)


def test_ambiguous_day_month_dates_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text("Data;Horas\n05/02/2024;1\n12/02/2024;2\n")
    with pytest.raises(DatasetError) as caught:
        read(path)
    assert str(caught.value) == (
        f"dataset {path}: column 'Data', line 2: '05/02/2024' could be day-first or "
        "month-first, and no date in the file tells which. If the dates are dd/mm/yyyy, set "
        "dataset.dayfirst: true in config.yaml (or pass --dayfirst); otherwise save them as "
        "YYYY-MM-DD."
    )
    assert list(read(path, dayfirst=True)["Data"]) == list(
        pd.to_datetime(["2024-02-05", "2024-02-12"])
    )


def test_month_first_dates_are_never_read(tmp_path: Path) -> None:
    path = tmp_path / "us.csv"
    path.write_text("Data,Horas\n12/11/2023,1\n12/18/2023,2\n")
    with pytest.raises(DatasetError, match="are month-first, which hhforecast never reads"):
        read(path)
    with pytest.raises(DatasetError, match=r"line 3: '12/18/2023' is not a valid dd/mm/yyyy"):
        read(path, dayfirst=True)


def test_day_first_dates_are_read_when_only_day_first_fits(tmp_path: Path) -> None:
    # 11/12 alone is ambiguous; 18/12 settles it: the monitor once paired 11 Dec with 12 Nov.
    path = tmp_path / "br.csv"
    path.write_text("Data;Horas\n11/12/2023;1\n18/12/2023;2\n")
    assert list(read(path)["Data"]) == list(pd.to_datetime(["2023-12-11", "2023-12-18"]))


def test_semicolon_file_read_with_a_comma_says_so(tmp_path: Path) -> None:
    path = tmp_path / "br.csv"
    path.write_text("Data;Horas\n2024-01-01;9,5\n")
    with pytest.raises(DatasetError) as caught:
        read(path, separator=",")
    assert str(caught.value) == (
        f"dataset {path}: was read with ',' as separator (dataset.separator) but its header "
        "is separated by ';', so every column ran into one. Set dataset.separator: auto in "
        "config.yaml (or the separator the file uses)."
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("Data,Horas\n2024-01-01,9.5\n".encode("utf-16"), "is UTF-16 or binary"),
        (
            b"Data,Horas\n2024-01-01,9.5\n2024-01-08,\x81\x8d\n",
            r"line 3: byte 0x81 is neither UTF-8 nor cp1252 text \(unknown encoding\)",
        ),
        (
            b"Data;Horas\n2024-01-01;9,5\n2024-01-08;1.5\n",
            r"column 'Horas', line 3: '1.5' is not a number \(this column is read with a decimal "
            r"comma\)",
        ),
        (b"Data,Horas\n2024-01-01,9.5\n2024-01-08,n/d\n", r"line 3: 'n/d' is not a number"),
        (b"Data,Horas\n2024-01-01,9.5\n2024-31-01,1\n", r"line 3: '2024-31-01' is not a valid"),
        (b"Data,Horas\n2024-01-01,9.5\n01/08/24,1\n", r"line 3: '01/08/24' is not a date"),
        (b"Data,Data ,Horas\n2024-01-01,1,2\n", "the header names column 'Data' twice"),
    ],
)
def test_bad_files_are_refused_with_file_and_line(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=message):
        read(path)


WEEKLY = "date,acft,sum_daily_hours,age_fleet,Cycles,sum_uti_mensal,HH\n"
FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]


def weekly_rows(dates: list[str]) -> str:
    return "".join(f"{d},250,2400,1e7,1400,10000,{1000 + i}\n" for i, d in enumerate(dates))


def test_sunday_dates_are_refused_naming_the_monday(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text(WEEKLY + weekly_rows(["2024-01-07", "2024-01-14"]))
    with pytest.raises(DatasetError) as caught:
        load_weekly_dataset(path, FEATURES, "HH")
    assert str(caught.value).startswith(
        f"dataset {path}: column 'date', line 2: 2024-01-07 is a Sunday, not a Monday (2 dates "
        "are not Mondays); date each week by its Monday (2024-01-01 for this one)."
    )


def test_a_gap_is_refused_naming_the_missing_weeks(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text(WEEKLY + weekly_rows(["2024-01-01", "2024-01-08", "2024-02-19"]))
    with pytest.raises(DatasetError) as caught:
        load_weekly_dataset(path, FEATURES, "HH")
    assert str(caught.value).startswith(
        f"dataset {path}: column 'date': 5 week(s) missing between line 3 (2024-01-08) and "
        "line 4 (2024-02-19): 2024-01-15 to 2024-02-12. Add the missing weeks, or keep one "
        "unbroken stretch of weeks."
    )


def test_brazilian_weekly_file_loads_like_the_iso_one(tmp_path: Path) -> None:
    iso = tmp_path / "iso.csv"
    iso.write_text(WEEKLY + weekly_rows(["2024-01-01", "2024-01-08", "2024-01-15"]))
    frame = pd.read_csv(iso)
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y")
    br = tmp_path / "br.csv"
    br.write_bytes(frame.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    reading = DatasetConfig(dayfirst=True)
    a = load_weekly_dataset(iso, FEATURES, "HH").frame
    b = load_weekly_dataset(br, FEATURES, "HH", reading=reading).frame
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(b["date"].dt.dayofweek, 0)


def test_cli_train_on_a_gap_exits_2_with_one_line(tmp_path: Path, project, cli) -> None:
    path = tmp_path / "weeks.csv"
    dates = pd.date_range("2020-01-06", periods=40, freq="7D").strftime("%Y-%m-%d").tolist()
    path.write_text(WEEKLY + weekly_rows(dates[:20] + dates[22:]))
    result = cli("train", "--dataset", path, "--config", project.config)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        f"Error: dataset {path}: column 'date': 2 week(s) missing"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project.models / "registry.json").exists()
