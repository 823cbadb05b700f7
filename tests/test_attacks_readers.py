"""Hostile files against the reader, the config loader and the CSV writer, each one a break
seen before it was fixed: every test here failed on the code it guards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import hhforecast
from hhforecast.config import DatasetConfig, ReadingLimits, load_settings
from hhforecast.datasets.reader import read_table
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.datasets.writer import neutralise_formulas
from hhforecast.errors import ConfigError, DatasetError
from hhforecast.modeling.predict import predict_file

from .conftest import Project, write_config

LIMITS_HINT = "Split the file, or raise dataset.limits in config.yaml (docs/configuration.md)."
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"


def hostile_xlsx(path: Path, cells: dict[str, str], dimension: str | None, pad: int = 0) -> Path:
    """A workbook built part by part: `cells` (ref -> number) on its one sheet, the sheet's
    declared dimension (which may lie), and `pad` bytes of whitespace that compress to nothing."""
    rows = "".join(
        f'<row r="{ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}"><c r="{ref}"><v>{v}</v></c></row>'
        for ref, v in cells.items()
    )
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets><sheet name="Sheet1" sheetId="1" '
            'r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" Type="{_REL}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{_NS}">{dim}<sheetData>{rows}</sheetData>{" " * pad}</worksheet>'
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as workbook:
        for name, text in parts.items():
            workbook.writestr(name, '<?xml version="1.0" encoding="UTF-8"?>' + text)
    return path


# Subprocesses import the same hhforecast as this test, wherever they run.
SOURCE_ENV = {**os.environ, "PYTHONPATH": str(Path(hhforecast.__file__).parents[1])}


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process: a crash in native code shows as its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "hhforecast", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**SOURCE_ENV, "COLUMNS": "200"},
    )


# 3. A workbook whose farthest cell makes the spreadsheet engine allocate 512 GiB.

FAR_CELL_ERROR = (
    "Error: dataset {path}: sheet 'sheet1' has 16,384 columns; at most 1,000 "
    f"(dataset.limits.max_columns). {LIMITS_HINT}\n"
)


@pytest.mark.parametrize("dimension", ["A1:XFD1048576", "A1", None])
def test_a_far_cell_workbook_is_refused_by_dataset_build(tmp_path: Path, dimension: str) -> None:
    hostile = hostile_xlsx(tmp_path / "u.xlsx", {"A1": "1", "XFD1048576": "2"}, dimension)
    assert hostile.stat().st_size < 2000
    done = run_cli("dataset", "build", "--utilization", hostile, "--events", hostile, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == FAR_CELL_ERROR.format(path=hostile)


def test_a_far_cell_workbook_is_refused_by_predict_and_train(tmp_path: Path) -> None:
    hostile = hostile_xlsx(tmp_path / "w.xlsx", {"A1": "1", "XFD1048576": "2"}, None)
    write_config(tmp_path)  # a project folder: no note about built-in defaults
    for args in (
        ["predict", "--input", hostile, "--output", "o.csv"],
        ["train", "--dataset", hostile],
    ):
        done = run_cli(*args, cwd=tmp_path)
        # (train's progress display leaves a blank line on stderr first)
        expected = FAR_CELL_ERROR.format(path=hostile)
        assert (done.returncode, done.stderr.lstrip("\n")) == (2, expected)
    assert not (tmp_path / "o.csv").exists()


def test_a_workbook_of_too_many_cells_is_refused(tmp_path: Path) -> None:
    hostile = hostile_xlsx(tmp_path / "w.xlsx", {"A1": "1", "ALL100000": "2"}, "A1:B2")
    write_config(tmp_path)
    done = run_cli("predict", "--input", hostile, "--output", "o.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"Error: dataset {hostile}: sheet 'sheet1' spans 100,000 rows by 1,000 columns, "
        "100,000,000 cells; at most 5,000,000 (dataset.limits.max_cells). "
        f"{LIMITS_HINT}\n"
    )


def test_a_workbook_that_unpacks_past_the_limit_is_refused(tmp_path: Path) -> None:
    bomb = hostile_xlsx(tmp_path / "w.xlsx", {"A1": "1"}, None, pad=3_000_000)
    assert bomb.stat().st_size < 20_000
    limits = DatasetConfig(limits=ReadingLimits(max_file_bytes=1_000_000))
    with pytest.raises(DatasetError) as caught:
        read_table(bomb, limits)
    assert caught.value.problem.startswith("the workbook unpacks to 3,00")
    assert str(caught.value).endswith(
        f" bytes; at most 1,000,000 (dataset.limits.max_file_bytes). {LIMITS_HINT}"
    )


def test_an_ordinary_workbook_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "plan.xlsx"
    pd.DataFrame({"date": ["2024-01-01", "2024-01-08"], "acft": [1.5, 2.0]}).to_excel(
        path, index=False
    )
    frame, fmt = read_table(path, dates=["date"])
    assert frame["acft"].tolist() == [1.5, 2.0] and fmt.columns == ("date", "acft")


def test_the_web_plan_answers_a_far_cell_workbook_with_a_400(
    trained_project: Project, tmp_path: Path
) -> None:
    hostile = hostile_xlsx(tmp_path / "plan.xlsx", {"A1": "1", "XFD1048576": "2"}, None)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from fastapi.testclient import TestClient
        from hhforecast.config import load_settings
        from hhforecast.serving import create_app
        app = create_app(load_settings(Path({str(trained_project.config)!r})),
                         follow_production=False)
        with TestClient(app) as client:
            answer = client.post("/web/plan", content=Path({str(hostile)!r}).read_bytes(),
                                 headers={{"x-filename": "plan.xlsx",
                                          "Content-Type": "text/csv"}})
            print(answer.status_code, answer.json()["error"]["message"])
            print(client.get("/health").status_code)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=SOURCE_ENV
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.splitlines() == [
        "400 plan.xlsx: sheet 'sheet1' has 16,384 columns; at most 1,000 "
        "(dataset.limits.max_columns)",
        "200",
    ]


# 12. A YAML alias bomb, and user values echoed whole into errors.


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcd", "bcde", strict=True):
        levels.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(levels) + "\ntraining:\n  variants: {x: *e}\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert time.perf_counter() - started < 2
    assert str(caught.value) == (
        f"{config}: not valid YAML (line 2: aliases (*name) are not allowed in a config file). "
        "Fix the value in the config file (see docs/configuration.md for every key)."
    )


def test_a_long_value_is_cut_in_the_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  epochs: " + "9x" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == (
        f"{config}: key 'training.epochs': Input should be a valid integer, unable to parse "
        "string as an integer (got '" + "9x" * 39 + "…). Fix the value in the config file "
        "(see docs/configuration.md for every key)."
    )


def test_a_config_file_past_a_megabyte_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# " + "x" * 1_000_000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == (
        f"{config}: the file is 1,000,003 bytes; a config file is at most 1,000,000. Check that "
        "--config names the YAML config, not a data file."
    )


def test_reading_limits_are_set_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("dataset:\n  limits:\n    max_columns: 3\n    max_line_bytes: 50\n")
    limits = load_settings(config).dataset.limits
    assert (limits.max_columns, limits.max_line_bytes, limits.max_cells) == (3, 50, 5_000_000)


# 14. Dates past 2262 wrapped around pandas' nanosecond timestamps.


@pytest.mark.parametrize("date", ["9999-01-04", "2500-01-04", "1800-01-06", "04/01/9999"])
def test_dates_outside_1900_to_2200_are_refused(tmp_path: Path, date: str) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(f"date,acft\n2024-01-01,1\n{date},2\n")
    with pytest.raises(DatasetError) as caught:
        read_table(path, DatasetConfig(dayfirst=True), dates=["date"])
    assert str(caught.value) == (
        f"dataset {path}: column 'date', line 3: '{date}' is outside the years 1900 to 2200 "
        "that hhforecast reads. Check the year."
    )


def test_a_plan_dated_9999_is_not_forecast(trained_project: Project, tmp_path: Path, cli) -> None:
    plan = tmp_path / "plan.csv"
    frame = pd.read_csv(sample_dataset_path()).tail(1).drop(columns=["HH"])
    frame.assign(date="9999-12-27").to_csv(plan, index=False)
    result = cli("forecast", "--plan", plan, "--config", trained_project.config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: plan {plan}: column 'date', line 2: '9999-12-27' is outside the years 1900 "
        "to 2200 that hhforecast reads. Check the year.\n"
    )


# 17. Formulas copied into outputs, repeated headers, and files too large to parse.


def test_predict_output_cannot_run_formulas(trained_project: Project, tmp_path: Path) -> None:
    source = tmp_path / "weeks.csv"
    frame = pd.read_csv(sample_dataset_path()).tail(5).drop(columns=["HH"])
    frame["note"] = ['=HYPERLINK("http://x.example","open")', "+1+2", "@SUM(A1)", "-3", "ok"]
    frame["delta"] = [-1.5, 2.0, -3.0, 0.0, 1.0]
    frame.to_csv(source, index=False)
    predict_file(trained_project.settings, source, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert out["note"].tolist() == [
        '\'=HYPERLINK("http://x.example","open")',
        "'+1+2",
        "'@SUM(A1)",
        "-3",
        "ok",
    ]
    assert out["delta"].tolist() == ["-1.5", "2.0", "-3.0", "0.0", "1.0"]


def test_formula_headers_and_control_characters_are_neutralised() -> None:
    frame = pd.DataFrame({"=cmd": ["\tx", "\r=1", "2,5", "a=b"], "n": [-1, 2, 3, 4]})
    safe = neutralise_formulas(frame)
    assert list(safe.columns) == ["'=cmd", "n"]
    assert safe["'=cmd"].tolist() == ["'\tx", "'\r=1", "2,5", "a=b"]
    assert safe["n"].tolist() == [-1, 2, 3, 4]


def test_a_repeated_header_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text("date,acft,acft,Cycles,Cycles\n2024-01-01,1,2,3,4\n")
    with pytest.raises(DatasetError) as caught:
        read_table(path)
    assert str(caught.value) == (
        f"dataset {path}: the header names columns 'acft', 'Cycles' twice. Rename or remove "
        "the repeated column(s): hhforecast will not guess which is meant."
    )


def test_a_repeated_header_in_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weeks.xlsx"
    pd.DataFrame([[1, 2]], columns=["acft", "x"]).rename(columns={"x": "acft"}).to_excel(
        path, index=False
    )
    with pytest.raises(DatasetError, match=r"the header names column 'acft' twice"):
        read_table(path)


def test_a_line_past_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text("date,note\n2024-01-01,ok\n2024-01-08," + "x" * 1_000_000 + "\n")
    with pytest.raises(DatasetError) as caught:
        read_table(path)
    assert str(caught.value) == (
        f"dataset {path}: line 3 is 1,000,011 bytes long; at most 1,000,000 "
        f"(dataset.limits.max_line_bytes). {LIMITS_HINT}"
    )


def test_too_many_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1001)) + "\n" + ",".join("1" * 1001) + "\n")
    with pytest.raises(DatasetError) as caught:
        read_table(path)
    assert str(caught.value) == (
        f"dataset {path}: the file has 1,001 columns; at most 1,000 "
        f"(dataset.limits.max_columns). {LIMITS_HINT}"
    )


def test_file_size_and_cells_have_configurable_limits(tmp_path: Path) -> None:
    path = tmp_path / "weeks.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    small = DatasetConfig(limits=ReadingLimits(max_file_bytes=10))
    with pytest.raises(DatasetError, match=r"the file is 24 bytes; at most 10 are read"):
        read_table(path, small)
    few = DatasetConfig(limits=ReadingLimits(max_cells=10))
    with pytest.raises(DatasetError, match=r"spans 4 rows by 3 columns, 12 cells; at most 10 "):
        read_table(path, few)
    assert read_table(path)[0].shape == (3, 3)


def test_checks_run_a_chunk_at_a_time_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hhforecast.datasets.bounds as bounds
    import hhforecast.datasets.reader as reader

    # Tiny chunks: a character, a line and a bad byte all fall across chunk boundaries.
    monkeypatch.setattr(reader, "_DECODE_CHUNK", 3)
    monkeypatch.setattr(bounds, "_CHUNK", 5)
    path = tmp_path / "voos.csv"
    path.write_bytes("Matrícula;Horas\nPR-ABC;1,5\nPR-ÁÉÍ;22,25\n".encode())
    frame, fmt = read_table(path, numeric=["Horas"])
    assert (fmt.encoding, frame["Matrícula"].tolist()) == ("utf-8", ["PR-ABC", "PR-ÁÉÍ"])
    path.write_bytes(b"a;b\n1;2\n3;" + b"x" * 40 + b"\n4;\x81\x8d\n")
    with pytest.raises(DatasetError, match=r"line 4: byte 0x81 is neither UTF-8 nor cp1252"):
        read_table(path)
    short = DatasetConfig(limits=ReadingLimits(max_line_bytes=20))
    path.write_bytes(b"a;b\n1;2\n3;" + b"x" * 40 + b"\n4;5\n")
    with pytest.raises(DatasetError, match=r"line 3 is 42 bytes long; at most 20 "):
        read_table(path, short)
