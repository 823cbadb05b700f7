from pathlib import Path

import pandas as pd
import pytest

from hhforecast.datasets.weekly import load_weekly_dataset, sample_dataset_path
from hhforecast.errors import DatasetError

FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal", "age_fleet"]
HEADER = "date,acft,sum_daily_hours,age_fleet,Cycles,sum_uti_mensal,HH"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "weeks.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(n: int, start: str = "2024-01-01") -> list[str]:
    """`n` weekly rows from Monday `start`."""
    mondays = pd.date_range(start, periods=n, freq="7D")
    return [f"{d:%Y-%m-%d},250,2400,1e7,1400,10000,{1100 + i}" for i, d in enumerate(mondays)]


def test_sample_loads_sorted_with_checksum() -> None:
    dataset = load_weekly_dataset(None, FEATURES, "HH", min_rows=30)
    assert dataset.path == sample_dataset_path()
    assert dataset.rows >= 200
    assert dataset.frame["date"].is_monotonic_increasing
    assert len(dataset.sha256) == 64


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path, "date,acft,sum_daily_hours,Cycles,sum_uti_mensal,HH", "2024-01-01,1,2,3,4,5"
    )
    with pytest.raises(DatasetError, match=r"missing column\(s\) age_fleet"):
        load_weekly_dataset(path, FEATURES, "HH")


def test_portuguese_headers_get_the_names_to_use(tmp_path: Path) -> None:
    """A realised-weeks file exported with Portuguese headers ('Data', 'Ciclos'): the message
    names the column each one stands for, and that the config's mapping does not apply."""
    path = tmp_path / "realizado.csv"
    path.write_text("Data;Cycles;HH\n01/01/2024;1400;1100,5\n", encoding="cp1252")
    with pytest.raises(DatasetError) as raised:
        load_weekly_dataset(path, ["Cycles"], "HH", min_rows=1)
    assert str(raised.value) == (
        f"dataset {path}: missing column(s) date (closest in the file: 'Data'); columns present: "
        "Data, Cycles, HH. Name the columns as docs/data.md lists them (the dataset: mapping in "
        "config.yaml is for raw logs only)."
    )
    path.write_text("date;Ciclos;HH\n2024-01-01;1400;1100,5\n", encoding="cp1252")
    with pytest.raises(DatasetError, match=r"missing column\(s\) Cycles \(closest in the file: "):
        load_weekly_dataset(path, ["Cycles"], "HH")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", r"column 'Cycles', line 3: 'abc' is not a number"),
        ("", r"column 'Cycles', line 3: value is empty"),
        ("inf", r"column 'Cycles', line 3: value is inf;"),
        ("-5", r"column 'Cycles', line 3: -5 is negative"),
    ],
)
def test_bad_values_name_column_and_line(tmp_path: Path, value: str, message: str) -> None:
    path = write(
        tmp_path,
        HEADER,
        "2024-01-01,250,2400,1e7,1400,10000,1100",
        f"2024-01-08,250,2400,1e7,{value},10000,1100",
    )
    with pytest.raises(DatasetError, match=message):
        load_weekly_dataset(path, FEATURES, "HH")


def test_duplicate_and_unordered_dates(tmp_path: Path) -> None:
    dup = write(tmp_path, HEADER, *rows(2), rows(2)[1])
    with pytest.raises(DatasetError, match=r"line 4: week 2024-01-08 appears twice"):
        load_weekly_dataset(dup, FEATURES, "HH")
    unordered = write(tmp_path, HEADER, rows(3)[0], rows(3)[2], rows(3)[1])
    with pytest.raises(DatasetError, match=r"line 4: 2024-01-08 comes before the line above"):
        load_weekly_dataset(unordered, FEATURES, "HH")
    bad_date = write(tmp_path, HEADER, "someday,250,2400,1e7,1400,10000,1100")
    with pytest.raises(DatasetError, match=r"'someday' is not a date"):
        load_weekly_dataset(bad_date, FEATURES, "HH")


def test_too_few_rows_and_empty_files(tmp_path: Path) -> None:
    short = write(tmp_path, HEADER, *rows(5))
    with pytest.raises(DatasetError, match="has 5 weeks; at least 30 are needed"):
        load_weekly_dataset(short, FEATURES, "HH", min_rows=30)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="the file is empty"):
        load_weekly_dataset(empty, FEATURES, "HH")
    header_only = write(tmp_path, HEADER)
    with pytest.raises(DatasetError, match="has a header but no rows"):
        load_weekly_dataset(header_only, FEATURES, "HH")
    with pytest.raises(DatasetError, match="no such file"):
        load_weekly_dataset(tmp_path / "absent.csv", FEATURES, "HH")


def test_recorded_dataset_labels_round_trip_and_are_checked(tmp_path: Path) -> None:
    from hhforecast._fs import file_sha256
    from hhforecast.datasets.weekly import (
        SAMPLE_LABEL,
        dataset_label,
        dataset_path_of,
        recorded_dataset,
    )

    assert dataset_label(sample_dataset_path(), tmp_path) == SAMPLE_LABEL
    assert dataset_path_of(SAMPLE_LABEL, tmp_path) == sample_dataset_path()
    own = write(tmp_path, HEADER, *rows(2))
    label = dataset_label(own, tmp_path.resolve())
    assert label == "weeks.csv"
    assert dataset_path_of(label, tmp_path) == own

    meta = {"dataset": {"path": label, "sha256": file_sha256(own)}}
    assert recorded_dataset(meta, tmp_path).problem is None
    own.write_text(own.read_text() + "\n")
    assert recorded_dataset(meta, tmp_path).problem == "changed"
    own.unlink()
    assert recorded_dataset(meta, tmp_path).problem == "missing"
    assert recorded_dataset({}, tmp_path).problem == "unrecorded"
